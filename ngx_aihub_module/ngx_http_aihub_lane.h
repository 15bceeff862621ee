/*
 * ngx_http_aihub_lane.c: the priority lane of each provider: calls in
 * flight, paid calls waiting by plan priority, free calls refused when
 * the provider is full or saturated.
 */

#ifndef NGX_HTTP_AIHUB_LANE_H
#define NGX_HTTP_AIHUB_LANE_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_lane_step(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_http_aihub_lane_sh_t *ngx_http_aihub_lane_find(
    ngx_http_aihub_lane_sh_t *lanes, ngx_str_t *name, ngx_uint_t create);
void ngx_http_aihub_lane_body(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t *in);
void ngx_http_aihub_lane_release(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_LANE_H */
