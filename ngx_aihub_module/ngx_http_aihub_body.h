/*
 * ngx_http_aihub_body.c: the BODY step (read and parse the chat request
 * body) and its rewrite for the provider.
 */

#ifndef NGX_HTTP_AIHUB_BODY_H
#define NGX_HTTP_AIHUB_BODY_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_body_read(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_body_rewrite(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_body_bytes(ngx_http_request_t *r, ngx_str_t *body);


/* a malformed request: 400 in OpenAI's shape */
#define ngx_http_aihub_bad_request(ctx, msg)                                 \
    ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST, "invalid_request_error", \
                        "invalid_request_error", msg)

/* an image or audio part of a prompt: a flat, high-detail cost */
#define NGX_HTTP_AIHUB_MEDIA_CHARS  (765 * 4)


#endif /* NGX_HTTP_AIHUB_BODY_H */
