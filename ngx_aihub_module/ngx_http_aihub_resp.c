/*
 * A Redis command in RESP, formatted into one buffer reused by every
 * command of the worker process (no allocation per command), handed to
 * hiredis as it is.
 */

#include "ngx_http_aihub_common.h"
#include "aihub_usage_event.h"
#include "ngx_http_aihub_resp.h"


/*
 * The kept buffer with room for len bytes, its old data not kept.  Kept:
 * allocated and freed a batch at a time (tens of kB), such a buffer is at
 * the top of the heap, which malloc gives back to the kernel and takes
 * again, a page fault every few calls.
 */

u_char *
ngx_http_aihub_kept(ngx_http_aihub_kept_t *k, size_t len)
{
    u_char  *p;

    if (len > k->size) {
        p = ngx_alloc(len, ngx_cycle->log);
        if (p == NULL) {
            return NULL;
        }

        ngx_free(k->data);
        k->data = p;
        k->size = len;
    }

    return k->data;
}


/* argv in RESP, in the process's buffer (valid until the next command) */

u_char *
ngx_http_aihub_resp_format(int argc, const char **argv, const size_t *argvlen,
    size_t *lenp)
{
    int      i;
    size_t   len;
    u_char  *p, *buf;

    static ngx_http_aihub_kept_t  kept;

    len = sizeof("*\r\n") - 1 + NGX_INT_T_LEN;

    for (i = 0; i < argc; i++) {
        len += sizeof("$\r\n\r\n") - 1 + NGX_SIZE_T_LEN + argvlen[i];
    }

    buf = ngx_http_aihub_kept(&kept, len);
    if (buf == NULL) {
        return NULL;
    }

    /* no printf: a batch's command has dozens of arguments */

    p = buf;
    *p++ = '*';
    p = aihub_event_uint(p, (uint64_t) argc);
    *p++ = '\r';
    *p++ = '\n';

    for (i = 0; i < argc; i++) {
        *p++ = '$';
        p = aihub_event_uint(p, argvlen[i]);
        *p++ = '\r';
        *p++ = '\n';
        p = ngx_cpymem(p, argv[i], argvlen[i]);
        *p++ = '\r';
        *p++ = '\n';
    }

    *lenp = p - buf;

    return buf;
}


int
ngx_http_aihub_redis_command(redisAsyncContext *ac, redisCallbackFn *fn,
    void *data, int argc, const char **argv, const size_t *argvlen)
{
    size_t   len;
    u_char  *cmd;

    cmd = ngx_http_aihub_resp_format(argc, argv, argvlen, &len);
    if (cmd == NULL) {
        return REDIS_ERR;
    }

    return redisAsyncFormattedCommand(ac, fn, data, (char *) cmd, len);
}


/*
 * The elements of an array reply as byte strings for the engine's record
 * parsers (aihub_record.h): an element that is not a string has data NULL.
 */

aihub_rstr_t *
ngx_http_aihub_reply_strings(ngx_pool_t *pool, redisReply *reply)
{
    size_t         i;
    redisReply    *e;
    aihub_rstr_t  *s;

    s = ngx_pcalloc(pool, (reply->elements + 1) * sizeof(aihub_rstr_t));
    if (s == NULL) {
        return NULL;
    }

    for (i = 0; i < reply->elements; i++) {
        e = reply->element[i];

        if (e->type == REDIS_REPLY_STRING) {
            s[i].data = (const unsigned char *) e->str;
            s[i].len = e->len;
        }
    }

    return s;
}
