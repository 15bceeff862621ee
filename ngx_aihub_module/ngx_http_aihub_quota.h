/*
 * ngx_http_aihub_quota.c: the quota step (a call admitted from a lease,
 * or a request waiting for its own), settling the call, the period's
 * counters.
 */

#ifndef NGX_HTTP_AIHUB_QUOTA_H
#define NGX_HTTP_AIHUB_QUOTA_H


#include "ngx_http_aihub_common.h"


void ngx_http_aihub_scripts_init(void);
void ngx_http_aihub_scripts_load(void);
ngx_int_t ngx_http_aihub_quota_step(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
void ngx_http_aihub_quota_settle(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t success);
ngx_int_t ngx_http_aihub_period_key(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_QUOTA_H */
