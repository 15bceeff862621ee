/*
 * ngx_http_aihub_grant.c: the Redis side of the quota's leases: the grant
 * script's arguments, the settle and return records, the sweep.
 */

#ifndef NGX_HTTP_AIHUB_GRANT_H
#define NGX_HTTP_AIHUB_GRANT_H


#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_settle.h"


/* a return of all a lease holds (the apply script takes the least) */
#define NGX_HTTP_AIHUB_GRANT_ALL_CALLS  NGX_MAX_INT32_VALUE
#define NGX_HTTP_AIHUB_GRANT_ALL_COST   ((uint64_t) 1 << 52)
/* and all its tokens of the global rate limit, as their time in µs */
#define NGX_HTTP_AIHUB_GRANT_ALL_RATE   ((uint64_t) 1 << 52)


ngx_int_t ngx_http_aihub_grant_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
ngx_int_t ngx_http_aihub_grant_send(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, u_char *id, ngx_uint_t want,
    ngx_uint_t least, redisCallbackFn *fn, void *data,
    ngx_http_aihub_redis_handler_pt handler);
uint64_t ngx_http_aihub_grant_worst_cost(ngx_http_aihub_ctx_t *ctx);
uint64_t ngx_http_aihub_grant_worst_cost_at(ngx_http_aihub_ctx_t *ctx,
    ngx_http_aihub_model_t *m);
void ngx_http_aihub_settle_record(ngx_log_t *log, ngx_str_t *m, u_char *id,
    u_char kind, uint64_t calls, uint64_t cost, uint64_t rate_us,
    ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_GRANT_H */
