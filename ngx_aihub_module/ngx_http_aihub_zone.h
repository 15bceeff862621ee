/*
 * ngx_http_aihub_zone.c: the shared zone of all worker processes: the key
 * cache, each account's rate limiter state, the shared counters.
 */

#ifndef NGX_HTTP_AIHUB_ZONE_H
#define NGX_HTTP_AIHUB_ZONE_H


#include "ngx_http_aihub_common.h"


/* runs under the zone's lock; NULL states: no room in the zone */

typedef void (*ngx_http_aihub_zone_rate_pt)(aihub_rl_state_t *requests,
    aihub_rl_state_t *tokens, void *data);


void *ngx_http_aihub_zone_create(ngx_conf_t *cf);
ngx_int_t ngx_http_aihub_zone_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_int_t ngx_http_aihub_zone_get(ngx_http_request_t *r, u_char *hash,
    ngx_http_aihub_key_t *key, ngx_uint_t *heard);
ngx_int_t ngx_http_aihub_zone_put(ngx_http_request_t *r, u_char *hash,
    ngx_http_aihub_key_t *key, ngx_uint_t heard);
void ngx_http_aihub_zone_trust(ngx_shm_zone_t *zone, ngx_uint_t trusted);
void ngx_http_aihub_zone_invalidate(ngx_shm_zone_t *zone, u_char *msg,
    size_t len);
ngx_int_t ngx_http_aihub_zone_rate(ngx_http_request_t *r, uint64_t account,
    ngx_http_aihub_zone_rate_pt handler, void *data);
ngx_http_aihub_metrics_t *ngx_http_aihub_zone_metrics(ngx_shm_zone_t *zone);
void ngx_http_aihub_zone_stats(ngx_shm_zone_t *zone, ngx_uint_t *entries,
    size_t *size);
ngx_shmtx_t *ngx_http_aihub_zone_lanes(ngx_shm_zone_t *zone,
    ngx_http_aihub_lane_sh_t **lanes, ngx_http_aihub_lane_plan_sh_t **plans);


#endif /* NGX_HTTP_AIHUB_ZONE_H */
