/*
 * ngx_http_aihub_dev_keys.c: the api-keys endpoints;
 * ngx_http_aihub_dev_key_create.c: creating a key.
 */

#ifndef NGX_HTTP_AIHUB_DEV_KEYS_H
#define NGX_HTTP_AIHUB_DEV_KEYS_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_dev_keys(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_dev_key_create(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_DEV_KEYS_H */
