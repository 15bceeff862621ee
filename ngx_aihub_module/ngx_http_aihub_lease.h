/*
 * ngx_http_aihub_lease.c: the node's block leases of calls, shared by its
 * worker processes in a zone of their own, admitted with no I/O.
 */

#ifndef NGX_HTTP_AIHUB_LEASE_H
#define NGX_HTTP_AIHUB_LEASE_H


#include "ngx_http_aihub_common.h"


ngx_shm_zone_t *ngx_http_aihub_lease_zone_add(ngx_conf_t *cf,
    ngx_str_t *cache_zone);
ngx_int_t ngx_http_aihub_lease_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
ngx_int_t ngx_http_aihub_lease_admit(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
void ngx_http_aihub_lease_forget(void);
void ngx_http_aihub_lease_keep(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t granted, uint64_t base,
    ngx_msec_t life, uint64_t cost);


#endif /* NGX_HTTP_AIHUB_LEASE_H */
