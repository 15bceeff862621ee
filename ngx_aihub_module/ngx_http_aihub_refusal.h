/*
 * ngx_http_aihub_refusal.c: a provider's 400-class answer (or 429, or a 200
 * whose body is an error) judged, the developer's mistake or the
 * operator's problem.
 */

#ifndef NGX_HTTP_AIHUB_REFUSAL_H
#define NGX_HTTP_AIHUB_REFUSAL_H


#include "ngx_http_aihub_common.h"


#define NGX_HTTP_AIHUB_REFUSAL_MAX   65536   /* bytes of a 4xx body read:
                                                Google lists each field at
                                                fault (200 bytes each) */


#define NGX_HTTP_AIHUB_FIRST_MAX     4096    /* bytes gathered before a JSON
                                                answer tells what it is:
                                                keep-alive white space */


/* what the developer gets instead of a held answer */

typedef struct {
    ngx_uint_t                    status;
    const char                   *type;
    const char                   *code;
    const char                   *message;
} ngx_http_aihub_refusal_t;


ngx_int_t ngx_http_aihub_refusal_judge(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_buf_t *held, ngx_http_aihub_refusal_t *v);
ngx_int_t ngx_http_aihub_refusal_first(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t **out);


#endif /* NGX_HTTP_AIHUB_REFUSAL_H */
