/*
 * ngx_http_aihub_key.c: the KEY step (the key and its record) and the
 * CHECK step (status, expiry, scope, endpoint).
 */

#ifndef NGX_HTTP_AIHUB_KEY_H
#define NGX_HTTP_AIHUB_KEY_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_key_step(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_key_check(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_KEY_H */
