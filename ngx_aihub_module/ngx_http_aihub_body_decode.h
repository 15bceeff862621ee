/*
 * ngx_http_aihub_body_decode.c: a request body in a content coding (gzip,
 * deflate, zstd), decoded before anything reads it.
 */

#ifndef NGX_HTTP_AIHUB_BODY_DECODE_H
#define NGX_HTTP_AIHUB_BODY_DECODE_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_body_decode(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_str_t *body, size_t max);


#endif /* NGX_HTTP_AIHUB_BODY_DECODE_H */
