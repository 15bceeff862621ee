/*
 * ngx_http_aihub_dev.c: the models and usage endpoints, and what every
 * developer endpoint shares.
 */

#ifndef NGX_HTTP_AIHUB_DEV_H
#define NGX_HTTP_AIHUB_DEV_H


#include "ngx_http_aihub_common.h"

#include <cjson/cJSON.h>


ngx_int_t ngx_http_aihub_dev_model(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_dev_models(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_dev_usage(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);

void ngx_http_aihub_dev_answer(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t status, cJSON *json);
void ngx_http_aihub_dev_failed(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_str_t *ngx_http_aihub_dev_key_name(ngx_http_request_t *r,
    const char *kind, ngx_str_t *id);
ngx_int_t ngx_http_aihub_dev_sent(ngx_http_aihub_ctx_t *ctx, ngx_int_t rc,
    const char *unavailable);
void ngx_http_aihub_dev_unavailable(ngx_http_aihub_ctx_t *ctx,
    const char *message);


#endif /* NGX_HTTP_AIHUB_DEV_H */
