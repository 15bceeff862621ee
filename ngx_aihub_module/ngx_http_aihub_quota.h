/*
 * ngx_http_aihub_quota.c: the quota step (a call admitted from a lease),
 * the grant script's arguments, settling the call, the period's counters.
 */

#ifndef NGX_HTTP_AIHUB_QUOTA_H
#define NGX_HTTP_AIHUB_QUOTA_H


#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis.h"


/* the arguments of one record of the apply script */
#define NGX_HTTP_AIHUB_QUOTA_RECORD  9


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
ngx_int_t ngx_http_aihub_quota_grant(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, u_char *id, ngx_uint_t want,
    ngx_uint_t least, redisCallbackFn *fn, void *data);
void ngx_http_aihub_quota_record(ngx_log_t *log, ngx_str_t *m, u_char *id,
    u_char kind, uint64_t calls, uint64_t cost, ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_QUOTA_H */
