/*
 * ngx_http_aihub_route.c: the shared state of each route (provider): its
 * 429 saturation and its circuit breaker.
 */

#ifndef NGX_HTTP_AIHUB_ROUTE_H
#define NGX_HTTP_AIHUB_ROUTE_H


#include "ngx_http_aihub_common.h"


void ngx_http_aihub_route_saturate(ngx_http_request_t *r,
    ngx_str_t *provider, ngx_int_t sec);
ngx_int_t ngx_http_aihub_route_state(ngx_http_request_t *r,
    ngx_str_t *provider);
void ngx_http_aihub_route_result(ngx_http_request_t *r,
    ngx_str_t *provider, ngx_uint_t ok);


#endif /* NGX_HTTP_AIHUB_ROUTE_H */
