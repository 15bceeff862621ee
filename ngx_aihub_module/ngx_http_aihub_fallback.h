/*
 * ngx_http_aihub_fallback.c: a model's fallback routes, tried when its
 * route fails before the first byte, and the circuit breaker's use.
 */

#ifndef NGX_HTTP_AIHUB_FALLBACK_H
#define NGX_HTTP_AIHUB_FALLBACK_H


#include "ngx_http_aihub_common.h"


char *ngx_http_aihub_fallback_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_aihub_fallback_first(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_fallback_next(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
void ngx_http_aihub_fallback_routed(ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_fallback_answer(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_FALLBACK_H */
