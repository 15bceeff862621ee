/*
 * ngx_http_aihub_util.c: the request context, the clock, hashing, request
 * ids, resuming the phases.
 */

#ifndef NGX_HTTP_AIHUB_UTIL_H
#define NGX_HTTP_AIHUB_UTIL_H


#include "ngx_http_aihub_common.h"


/* where ngx_http_aihub_header_next() stands in a header list */
typedef struct {
    ngx_list_part_t              *part;         /* NULL: not started */
    ngx_uint_t                    i;
} ngx_http_aihub_header_iter_t;


ngx_int_t ngx_http_aihub_util_init_process(ngx_cycle_t *cycle);

ngx_http_aihub_ctx_t *ngx_http_aihub_get_ctx(ngx_http_request_t *r);
ngx_http_aihub_ctx_t *ngx_http_aihub_get_ctx_anchored(ngx_http_request_t *r);
ngx_int_t ngx_http_aihub_ctx_anchor(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
void ngx_http_aihub_ctx_anchor_handler(void *data);
ngx_msec_t ngx_http_aihub_now_ms(void);
time_t ngx_http_aihub_time(ngx_http_request_t *r);
void ngx_http_aihub_resume(ngx_http_request_t *r);

ngx_int_t ngx_http_aihub_retry_after_value(ngx_str_t *value);
void ngx_http_aihub_sha256(u_char *dst, u_char *src, size_t len);
void ngx_http_aihub_request_id(u_char *dst);
u_char *ngx_http_aihub_hex(u_char *dst, const u_char *src, size_t len);
ngx_int_t ngx_http_aihub_redis_key(ngx_pool_t *pool, ngx_str_t *prefix,
    const char *name, size_t extra, ngx_str_t *key);
ngx_int_t ngx_http_aihub_hex_decode(u_char *dst, u_char *src, size_t len);
void ngx_http_aihub_key_strings(ngx_http_aihub_key_t *key);


ngx_uint_t ngx_http_aihub_answer_is_sse(ngx_http_request_t *r);
ngx_uint_t ngx_http_aihub_answer_is_json(ngx_http_request_t *r);

/*
 * A header's name is lower (lowercase, len bytes), in any case: by its
 * lowercase copy, which nginx makes of every header it parses (request
 * headers, whatever the HTTP version, and an upstream's), else by its name.
 */

static ngx_inline ngx_uint_t
ngx_http_aihub_header_is(ngx_table_elt_t *h, const char *lower, size_t len)
{
    if (h->key.len != len) {
        return 0;
    }

    if (h->lowcase_key != NULL) {
        return ngx_memcmp(h->lowcase_key, lower, len) == 0;
    }

    return ngx_strncasecmp(h->key.data, (u_char *) lower, len) == 0;
}


/*
 * "Bearer" in any case at p (6 bytes there): each byte with bit 5 set is
 * the lowercase letter, which only the letter in either case gives
 */

static ngx_inline ngx_uint_t
ngx_http_aihub_bearer(const u_char *p)
{
    return (p[0] | 0x20) == 'b' && (p[1] | 0x20) == 'e'
           && (p[2] | 0x20) == 'a' && (p[3] | 0x20) == 'r'
           && (p[4] | 0x20) == 'e' && (p[5] | 0x20) == 'r';
}


ngx_table_elt_t *ngx_http_aihub_header_find(ngx_list_t *headers,
    u_char *name, size_t len);
ngx_table_elt_t *ngx_http_aihub_header_next(ngx_list_t *headers,
    ngx_http_aihub_header_iter_t *it, u_char *name, size_t len);


#endif /* NGX_HTTP_AIHUB_UTIL_H */
