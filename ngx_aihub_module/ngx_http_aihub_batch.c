/*
 * A batch of the usage buffer on the wire (ngx_http_aihub_batch.h): one
 * transaction (MULTI ... EXEC) on the one Redis connection, so Redis
 * applies all of it or, if the connection breaks before EXEC, none.  The
 * events go by XADD, as one stream entry with one "events" field, one
 * event per line, in order.  The settles go to the apply script (ngx_http_aihub_scripts.c),
 * summed per lease, with the batch's sequence number in its process.  The
 * events do not pass through the script: every byte handed to a script
 * becomes a Lua string that Redis hashes byte by byte, which cost more
 * than all the rest of the batch.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_resp.h"
#include "ngx_http_aihub_scripts.h"
#include "ngx_http_aihub_settle.h"
#include "ngx_http_aihub_batch.h"


/* a settle record is read in place from an entry's data */
_Static_assert(offsetof(ngx_http_aihub_event_t, data) % sizeof(int64_t) == 0,
               "an entry's data is not aligned for a settle record");


#define NGX_HTTP_AIHUB_BATCH_ARGS                                            \
    (9 + 2 * NGX_HTTP_AIHUB_BATCH_MAX * NGX_HTTP_AIHUB_SETTLE_SUM)

/*
 * The buffer's entries (an event some 330 bytes, a settle record some 150,
 * thousands a second, freed a batch at a time) are kept for reuse when
 * they are this small, up to NGX_HTTP_AIHUB_ENTRY_KEEP of them (two full
 * batches' events and settles): freed in batches they went through
 * malloc's slow bins and made it merge them (5 % of the gateway's CPU was
 * malloc and free).  Larger ones come from malloc.
 */
#define NGX_HTTP_AIHUB_ENTRY_SIZE     768
#define NGX_HTTP_AIHUB_ENTRY_KEEP     (4 * NGX_HTTP_AIHUB_BATCH_MAX)


static ngx_int_t ngx_http_aihub_batch_send_events(ngx_http_aihub_batch_t *b,
    ngx_str_t *stream);
static ngx_int_t ngx_http_aihub_batch_word(const char *word,
    redisCallbackFn *fn, void *data);
static void ngx_http_aihub_batch_queued(redisAsyncContext *ac, void *reply,
    void *privdata);


/* the entries kept for reuse, linked through their queue's next */
static ngx_queue_t  *ngx_http_aihub_entries_kept;
static ngx_uint_t    ngx_http_aihub_entries_nkept;


/*
 * The entry the next call will take, brought into the cache now: freed
 * when Redis confirmed its batch, it has left the cache since, and the
 * next event is copied into it (a usage event fills most of it).
 */

static ngx_inline void
ngx_http_aihub_entry_prefetch(void *p)
{
#if defined(__GNUC__)
    size_t  i;

    for (i = 0; i < NGX_HTTP_AIHUB_ENTRY_SIZE; i += 64) {
        __builtin_prefetch((u_char *) p + i, 1);
    }
#endif
}


/* an entry of "len" bytes of data, not initialised but for "kept" */

ngx_http_aihub_event_t *
ngx_http_aihub_entry_alloc(size_t len, ngx_log_t *log)
{
    size_t                   size;
    ngx_queue_t             *q;
    ngx_http_aihub_event_t  *ev;

    size = offsetof(ngx_http_aihub_event_t, data) + len;

    if (size > NGX_HTTP_AIHUB_ENTRY_SIZE) {
        ev = ngx_alloc(size, log);
        if (ev) {
            ev->kept = 0;
        }

        return ev;
    }

    q = ngx_http_aihub_entries_kept;

    if (q) {
        ngx_http_aihub_entries_kept = q->next;
        ngx_http_aihub_entries_nkept--;

        if (q->next) {
            ngx_http_aihub_entry_prefetch(q->next);
        }

        return ngx_queue_data(q, ngx_http_aihub_event_t, queue);
    }

    ev = ngx_alloc(NGX_HTTP_AIHUB_ENTRY_SIZE, log);
    if (ev) {
        ev->kept = 1;
    }

    return ev;
}


void
ngx_http_aihub_entry_free(ngx_http_aihub_event_t *ev)
{
    if (!ev->kept
        || ngx_http_aihub_entries_nkept >= NGX_HTTP_AIHUB_ENTRY_KEEP)
    {
        ngx_free(ev);
        return;
    }

    ev->queue.next = ngx_http_aihub_entries_kept;
    ngx_http_aihub_entries_kept = &ev->queue;
    ngx_http_aihub_entries_nkept++;
}


/*
 * The batch's events (unless Redis has them already), then its settles,
 * in one transaction: "done" hears EXEC's reply (the XADD's, if b->xadd,
 * then the script's), with the batch as its data.
 */

ngx_int_t
ngx_http_aihub_batch_send(ngx_http_aihub_batch_t *b,
    ngx_http_aihub_batch_keys_t *keys, redisCallbackFn *done)
{
    int                             argc;
    u_char                          num[NGX_INT_T_LEN];
    u_char                          seq[NGX_INT64_LEN];
    u_char                          floor[NGX_INT64_LEN];
    ngx_uint_t                      i, nsums;
    ngx_queue_t                    *q;
    ngx_http_aihub_event_t         *ev;

    static const char                   *argv[NGX_HTTP_AIHUB_BATCH_ARGS];
    static size_t                        argvlen[NGX_HTTP_AIHUB_BATCH_ARGS];
    /* a batch ends after its BATCH_MAX-th record, or after the run of a
       call's entries (a few) that this one starts */
    static ngx_http_aihub_settle_sum_t   sums[2 * NGX_HTTP_AIHUB_BATCH_MAX];

    if (ngx_http_aihub_batch_word("MULTI", NULL, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    b->why[0] = '\0';

    b->xadd = (b->nevents && !b->streamed);

    if (b->xadd && ngx_http_aihub_batch_send_events(b, &keys->stream)
                   != NGX_OK)
    {
        goto discard;
    }

    argv[0] = "EVALSHA";
    argvlen[0] = sizeof("EVALSHA") - 1;
    argv[1] = (const char *)
              ngx_http_aihub_script_sha(NGX_HTTP_AIHUB_SCRIPT_APPLY);
    argvlen[1] = NGX_HTTP_AIHUB_SCRIPT_SHA_LEN;
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (const char *) keys->batch_key.data;
    argvlen[3] = keys->batch_key.len;
    argv[4] = (const char *) keys->epoch_key.data;
    argvlen[4] = keys->epoch_key.len;
    argv[5] = (const char *) seq;
    argvlen[5] = ngx_sprintf(seq, "%uL", b->seq) - seq;
    argv[6] = (const char *) keys->prefix.data;
    argvlen[6] = keys->prefix.len;

    /* a period hash the batch creates (Redis lost it) lives 72 days */
    argv[7] = (const char *) num;
    argvlen[7] = ngx_sprintf(num, "%ui", (ngx_uint_t) 72 * 86400) - num;
    argv[8] = (const char *) floor;
    argvlen[8] = ngx_sprintf(floor, "%uL", keys->floor) - floor;

    argc = 9;

    /* the settles summed per lease */

    nsums = 0;

    for (q = ngx_queue_head(&b->entries);
         q != ngx_queue_sentinel(&b->entries);
         q = ngx_queue_next(q))
    {
        ev = ngx_queue_data(q, ngx_http_aihub_event_t, queue);

        if (ev->argc == 0) {
            continue;
        }

        nsums = ngx_http_aihub_settle_add(sums, nsums,
                                          (ngx_http_aihub_settle_rec_t *)
                                          ev->data);
    }

    for (i = 0; i < nsums; i++) {
        ngx_http_aihub_settle_args(&sums[i], &argv[argc], &argvlen[argc]);
        argc += NGX_HTTP_AIHUB_SETTLE_SUM;
    }

    if (ngx_http_aihub_redis_send(ngx_http_aihub_batch_queued, b, argc,
                                  argv, argvlen)
        != NGX_OK
        || ngx_http_aihub_batch_word("EXEC", done, b) != NGX_OK)
    {
        goto discard;
    }

    return NGX_OK;

discard:

    /* no command of anyone else may join the open transaction */
    (void) ngx_http_aihub_batch_word("DISCARD", NULL, NULL);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_aihub_batch_word(const char *word, redisCallbackFn *fn, void *data)
{
    size_t  len;

    len = ngx_strlen(word);

    return ngx_http_aihub_redis_send(fn, data, 1, &word, &len);
}


/*
 * A command's reply as Redis queues it ("+QUEUED"): an error there (at its
 * maxmemory, "OOM ...") makes its EXEC abort with "EXECABORT ... previous
 * errors"; the batch keeps the first, to say why.
 */

static void
ngx_http_aihub_batch_queued(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply              *rep = reply;
    ngx_http_aihub_batch_t  *b = privdata;

    if (rep && rep->type == REDIS_REPLY_ERROR && b->why[0] == '\0') {
        ngx_cpystrn(b->why, (u_char *) rep->str, sizeof(b->why));
    }
}


/*
 * The batch's events: one stream entry, one "events" field, the events in
 * order, one per line (an event is JSON without a raw line break).  Redis
 * stores, returns and deletes one value, not a field per event.  The lines
 * are joined in a buffer the worker process keeps.
 */

static ngx_int_t
ngx_http_aihub_batch_send_events(ngx_http_aihub_batch_t *b,
    ngx_str_t *stream)
{
    u_char                         *p, *lines;
    size_t                          len, argvlen[5];
    ngx_queue_t                    *q;
    const char                     *argv[5];
    ngx_http_aihub_event_t         *ev;

    static ngx_http_aihub_kept_t    kept;

    len = 0;

    for (q = ngx_queue_head(&b->entries);
         q != ngx_queue_sentinel(&b->entries);
         q = ngx_queue_next(q))
    {
        ev = ngx_queue_data(q, ngx_http_aihub_event_t, queue);
        len += (ev->argc == 0) ? ev->len + 1 : 0;
    }

    lines = ngx_http_aihub_kept(&kept, len);
    if (lines == NULL) {
        return NGX_ERROR;
    }

    p = lines;

    for (q = ngx_queue_head(&b->entries);
         q != ngx_queue_sentinel(&b->entries);
         q = ngx_queue_next(q))
    {
        ev = ngx_queue_data(q, ngx_http_aihub_event_t, queue);

        if (ev->argc == 0) {
            p = ngx_cpymem(p, ev->data, ev->len);
            *p++ = '\n';
        }
    }

    argv[0] = "XADD";
    argvlen[0] = sizeof("XADD") - 1;
    argv[1] = (const char *) stream->data;
    argvlen[1] = stream->len;
    argv[2] = "*";
    argvlen[2] = 1;
    argv[3] = AIHUB_USAGE_LINES_FIELD;
    argvlen[3] = sizeof(AIHUB_USAGE_LINES_FIELD) - 1;
    argv[4] = (const char *) lines;
    argvlen[4] = len - 1;               /* no line break after the last */

    return ngx_http_aihub_redis_send(ngx_http_aihub_batch_queued, b, 5, argv,
                                     argvlen);
}
