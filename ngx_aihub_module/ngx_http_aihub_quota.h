/*
 * ngx_http_aihub_quota.c: the quota step (the monthly call reserved in
 * Redis), settling the reservation, the period's counters.
 */

#ifndef NGX_HTTP_AIHUB_QUOTA_H
#define NGX_HTTP_AIHUB_QUOTA_H


#include "ngx_http_aihub_common.h"


void ngx_http_aihub_scripts_init(void);
ngx_int_t ngx_http_aihub_quota_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
void ngx_http_aihub_scripts_load(void);
ngx_int_t ngx_http_aihub_quota_step(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
void ngx_http_aihub_quota_settle(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t success);
ngx_int_t ngx_http_aihub_period_key(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_QUOTA_H */
