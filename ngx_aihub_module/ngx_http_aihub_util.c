/*
 * The base every other file stands on: the request context, the clock
 * (with the tests' offset), SHA-256 and request ids per worker process,
 * hex, the key's string views, and resuming the phases after a wait.
 * Nothing here calls another file of the module.
 */

/* SHA256_Init() and the rest: deprecated by OpenSSL 3, as nginx's own
   SHA-1 calls are (nginx defines this too, when built with OpenSSL) */
#ifndef OPENSSL_SUPPRESS_DEPRECATED
#define OPENSSL_SUPPRESS_DEPRECATED
#endif

#include "ngx_http_aihub_common.h"
#include "aihub_usage_event.h"
#include "ngx_http_aihub_util.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#if (defined(__GLIBC__))
#include <malloc.h>
#endif


/*
 * Per worker process: a reserve of random bytes for request ids, drawn
 * from OpenSSL's CSPRNG 4 KB at a time (one draw per 256 requests instead
 * of one per request).
 */

#define NGX_HTTP_AIHUB_RANDOM_RESERVE  4096

static u_char        ngx_http_aihub_random[NGX_HTTP_AIHUB_RANDOM_RESERVE];
static size_t        ngx_http_aihub_random_used =
                                          NGX_HTTP_AIHUB_RANDOM_RESERVE;


/*
 * nginx clears every module's context on an internal redirect; a call
 * that reached a provider keeps its own in another "aihub on" location
 * (the error_page that sends a failed call to its fallback route), found
 * again through the pool cleanup that anchors it.
 */

ngx_http_aihub_ctx_t *
ngx_http_aihub_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_aihub_ctx_t       *ctx;
    ngx_http_aihub_loc_conf_t  *alcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aihub_module);

    if (ctx != NULL || r != r->main) {
        return ctx;
    }

    /* only into a location of the gateway ("aihub on") */

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (alcf == NULL || alcf->enable != 1) {
        return NULL;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != ngx_http_aihub_ctx_anchor_handler) {
            continue;
        }

        ctx = cln->data;

        if (!ctx->flow.forwarded) {
            return NULL;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_aihub_module);
        return ctx;
    }

    return NULL;
}


/*
 * The request's state wherever an internal redirect took it, for what
 * must be given back or written when it ends: the log phase finds it
 * again and sets it back, so the cleanups that run as the request's pool
 * goes (r->pool is NULL then) find it too.  Before, an error_page into a
 * location without "aihub on" (nginx's own "error_page 502 /50x.html")
 * left the call's lane place, its call of the quota and its rate limit
 * slot held for good, the lane refusing every call at capacity.
 */

ngx_http_aihub_ctx_t *
ngx_http_aihub_get_ctx_anchored(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t    *cln;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aihub_module);

    if (ctx != NULL || r != r->main || r->pool == NULL) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_aihub_ctx_anchor_handler) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_aihub_module);
            return ctx;
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_aihub_ctx_anchor(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_aihub_ctx_anchor_handler;
    cln->data = ctx;

    return NGX_OK;
}


void
ngx_http_aihub_ctx_anchor_handler(void *data)
{
    /* only a mark */
}


ngx_msec_t
ngx_http_aihub_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (ngx_msec_t) tp->sec * 1000 + tp->msec;
}


time_t
ngx_http_aihub_time(ngx_http_request_t *r)
{
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    return ngx_time() + amcf->time_offset;
}


void
ngx_http_aihub_resume(ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


ngx_int_t
ngx_http_aihub_hex_decode(u_char *dst, u_char *src, size_t len)
{
    ngx_int_t  hi, lo;

    for ( /* void */ ; len >= 2; len -= 2) {
        hi = ngx_hextoi(src++, 1);
        lo = ngx_hextoi(src++, 1);

        if (hi == NGX_ERROR || lo == NGX_ERROR) {
            return NGX_ERROR;
        }

        *dst++ = (u_char) (hi * 16 + lo);
    }

    return NGX_OK;
}


void
ngx_http_aihub_key_strings(ngx_http_aihub_key_t *key)
{
    key->account.data = key->account_text;
    key->account.len = aihub_event_uint(key->account_text,
                                        key->rec.account_id)
                       - key->account_text;

    key->prefix.data = key->rec.prefix;
    key->prefix.len = key->rec.prefix_len;
    key->plan.data = key->rec.plan;
    key->plan.len = key->rec.plan_len;
}


/*
 * glibc gives the top of the heap back to the system whenever more than
 * M_TRIM_THRESHOLD (128 KB) of it lies free after a free(), and takes it
 * again on the next malloc(), each page with a fault.  A metered call
 * allocates more than a bare proxy, and under load the top of a worker's
 * heap swings by more than that: the benchmark saw phases of half a page
 * fault a call, a third more CPU a call, all of it in the kernel.  So a
 * worker keeps up to NGX_HTTP_AIHUB_HEAP_KEEP of free heap for its next
 * calls.  Setting the trim threshold also fixes glibc's sliding mmap()
 * threshold (128 KB, rising as mapped blocks are freed): it is set where
 * the slide would take it, above the largest body aihub_body_max allows by
 * default, so a large body's buffer still comes from the heap.
 */

#define NGX_HTTP_AIHUB_HEAP_KEEP  (32 * 1024 * 1024)
#define NGX_HTTP_AIHUB_HEAP_MMAP  (4 * 1024 * 1024)

static void
ngx_http_aihub_heap_init(ngx_log_t *log)
{
#if (defined(__GLIBC__) && defined(M_TRIM_THRESHOLD) \
     && defined(M_MMAP_THRESHOLD))

    if (mallopt(M_TRIM_THRESHOLD, NGX_HTTP_AIHUB_HEAP_KEEP) != 1
        || mallopt(M_MMAP_THRESHOLD, NGX_HTTP_AIHUB_HEAP_MMAP) != 1)
    {
        /* a sanitizer's allocator, which ignores them */
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "aihub: mallopt() refused the heap's thresholds");
    }

#endif
}


ngx_int_t
ngx_http_aihub_util_init_process(ngx_cycle_t *cycle)
{
    /* the reserve is drawn here, after fork: no two workers share it */

    if (RAND_bytes(ngx_http_aihub_random, NGX_HTTP_AIHUB_RANDOM_RESERVE)
        != 1)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "aihub: no random bytes for request ids");
        return NGX_ERROR;
    }

    ngx_http_aihub_random_used = 0;

    ngx_http_aihub_heap_init(cycle->log);

    return NGX_OK;
}


/* Retry-After's seconds, or its HTTP-date (RFC 9110) as the seconds until
   it; 0 if neither, or already past */

ngx_int_t
ngx_http_aihub_retry_after_value(ngx_str_t *value)
{
    ngx_int_t  n;

    n = ngx_atoi(value->data, value->len);

    if (n == NGX_ERROR) {
        n = ngx_parse_http_time(value->data, value->len);
        n = (n == NGX_ERROR) ? 0 : n - ngx_time();
    }

    return n > 0 ? n : 0;
}


/*
 * SHA-256 with OpenSSL's low-level calls: the same code (its CPU's SHA
 * instructions) with no allocation and no lookup, where EVP_DigestInit
 * allocates and frees its provider's context on every digest (about 900
 * instructions of a call's 2,957 under callgrind)
 */

void
ngx_http_aihub_sha256(u_char *dst, u_char *src, size_t len)
{
    SHA256_CTX  sha;

    SHA256_Init(&sha);
    SHA256_Update(&sha, src, len);
    SHA256_Final(dst, &sha);
}


/*
 * A request id, unique across nodes and restarts, 32 hex digits (the usage
 * event's id): the time in milliseconds (48 bits, 12 digits) then 80 random
 * bits, as UUIDv7 orders them.  The ledger's UNIQUE index on the id then
 * grows at its end as the clock does: with 128 random bits every insert
 * landed on a random page of it, and once the index outgrew MariaDB's
 * buffer pool each row cost a page read (t/bench/ledger_ids.pl, a million
 * rows, a 64 MB pool: 14.2 -> 38.4 us of MariaDB's CPU a row; 10.9-12.1
 * in time order).  It says nothing about the worker or how many requests it
 * served; its time is the answer's Date.
 */

/*
 * Lowercase hex, two digits a byte from a table: ngx_hex_dump() takes a
 * dozen instructions a byte, and each call's id is 16 bytes
 */

u_char *
ngx_http_aihub_hex(u_char *dst, const u_char *src, size_t len)
{
    size_t  i;

    static const char  pairs[] =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
        "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
        "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
        "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

    for (i = 0; i < len; i++) {
        ngx_memcpy(dst, &pairs[2 * src[i]], 2);
        dst += 2;
    }

    return dst;
}


#define NGX_HTTP_AIHUB_ID_TIME    6      /* bytes of milliseconds */
#define NGX_HTTP_AIHUB_ID_RANDOM                                              \
    (AIHUB_EVENT_ID_LEN / 2 - NGX_HTTP_AIHUB_ID_TIME)

void
ngx_http_aihub_request_id(u_char *dst)
{
    u_char       ms[NGX_HTTP_AIHUB_ID_TIME];
    size_t       i, n = NGX_HTTP_AIHUB_ID_RANDOM;
    uint64_t     t;
    ngx_time_t  *tp;

    tp = ngx_timeofday();
    t = (uint64_t) tp->sec * 1000 + tp->msec;

    for (i = NGX_HTTP_AIHUB_ID_TIME; i-- > 0; t >>= 8) {
        ms[i] = (u_char) t;
    }

    dst = ngx_http_aihub_hex(dst, ms, NGX_HTTP_AIHUB_ID_TIME);

    if (ngx_http_aihub_random_used + n > NGX_HTTP_AIHUB_RANDOM_RESERVE) {
        if (RAND_bytes(ngx_http_aihub_random, NGX_HTTP_AIHUB_RANDOM_RESERVE)
            != 1)
        {
            /* OpenSSL's CSPRNG does not fail once seeded; if it ever
               does, ids stay unique, if guessable */
            for (n = 0; n < NGX_HTTP_AIHUB_RANDOM_RESERVE; n++) {
                ngx_http_aihub_random[n] = (u_char) ngx_random();
            }

            n = NGX_HTTP_AIHUB_ID_RANDOM;
        }

        ngx_http_aihub_random_used = 0;
    }

    ngx_http_aihub_hex(dst, ngx_http_aihub_random + ngx_http_aihub_random_used,
                       n);

    /* used bytes are wiped: a later read of this memory finds no id */
    ngx_memzero(ngx_http_aihub_random + ngx_http_aihub_random_used, n);
    ngx_http_aihub_random_used += n;
}


/* the answer's Content-Type is text/event-stream (any parameters) */

ngx_uint_t
ngx_http_aihub_answer_is_sse(ngx_http_request_t *r)
{
    ngx_str_t  *ct = &r->headers_out.content_type;

    return ct->len >= sizeof("text/event-stream") - 1
           && ngx_strncasecmp(ct->data, (u_char *) "text/event-stream",
                              sizeof("text/event-stream") - 1) == 0;
}


/* the answer's Content-Type is application/json (any parameters) */

ngx_uint_t
ngx_http_aihub_answer_is_json(ngx_http_request_t *r)
{
    ngx_str_t  *ct = &r->headers_out.content_type;

    /* (as providers write it, compared as bytes first) */
    return ct->len >= sizeof("application/json") - 1
           && (ngx_memcmp(ct->data, "application/json",
                          sizeof("application/json") - 1) == 0
               || ngx_strncasecmp(ct->data, (u_char *) "application/json",
                                  sizeof("application/json") - 1) == 0);
}


/* the first header named name (any case) in a header list, or NULL */

ngx_table_elt_t *
ngx_http_aihub_header_find(ngx_list_t *headers, u_char *name, size_t len)
{
    ngx_http_aihub_header_iter_t  it;

    it.part = NULL;

    return ngx_http_aihub_header_next(headers, &it, name, len);
}


/*
 * The next header named name after the one the iterator stands on (the
 * first, with it.part NULL), or NULL: every line of a repeated header
 */

ngx_table_elt_t *
ngx_http_aihub_header_next(ngx_list_t *headers,
    ngx_http_aihub_header_iter_t *it, u_char *name, size_t len)
{
    ngx_table_elt_t  *h;

    if (it->part == NULL) {
        it->part = &headers->part;
        it->i = 0;

    } else {
        it->i++;
    }

    h = it->part->elts;

    for ( /* void */ ; /* void */ ; it->i++) {

        if (it->i >= it->part->nelts) {
            if (it->part->next == NULL) {
                return NULL;
            }

            it->part = it->part->next;
            h = it->part->elts;
            it->i = 0;
        }

        if (ngx_http_aihub_header_is(&h[it->i], (char *) name, len)) {
            return &h[it->i];
        }
    }
}


/* "<prefix><name>", and "extra" bytes after it, from the pool */

ngx_int_t
ngx_http_aihub_redis_key(ngx_pool_t *pool, ngx_str_t *prefix,
    const char *name, size_t extra, ngx_str_t *key)
{
    size_t  len;

    len = ngx_strlen(name);

    key->len = prefix->len + len + extra;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(key->data, prefix->data, prefix->len), name, len);

    return NGX_OK;
}
