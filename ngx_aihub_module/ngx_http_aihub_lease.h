/*
 * ngx_http_aihub_lease.c: the node's block leases of calls, shared by its
 * worker processes in a zone of their own, admitted with no I/O.
 */

#ifndef NGX_HTTP_AIHUB_LEASE_H
#define NGX_HTTP_AIHUB_LEASE_H


#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_lease_slot.h"


ngx_int_t ngx_http_aihub_lease_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
ngx_int_t ngx_http_aihub_lease_admit(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
void ngx_http_aihub_lease_forget(void);
void ngx_http_aihub_lease_return_all(ngx_log_t *log);
void ngx_http_aihub_lease_keep(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_http_aihub_lease_grant_t *g);
uint64_t ngx_http_aihub_lease_rate_us(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_uint_t ngx_http_aihub_lease_reply(redisReply *rep,
    ngx_http_aihub_lease_grant_t *g);


#endif /* NGX_HTTP_AIHUB_LEASE_H */
