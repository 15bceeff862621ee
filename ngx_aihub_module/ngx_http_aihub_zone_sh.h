/*
 * The layout of the shared zone (ngx_http_aihub_zone.c), for the files that
 * keep its parts: ngx_http_aihub_zone.c (the key cache, the counters, the
 * lanes) and ngx_http_aihub_zone_rate.c (the accounts' rate state).
 */

#ifndef NGX_HTTP_AIHUB_ZONE_SH_H
#define NGX_HTTP_AIHUB_ZONE_SH_H


#include "ngx_http_aihub_common.h"


typedef struct {
    ngx_rbtree_node_t             node;
    ngx_queue_t                   queue;
    u_char                        hash[NGX_HTTP_AIHUB_SHA256_LEN];
    ngx_msec_t                    fetched;
    ngx_uint_t                    generation;
    ngx_uint_t                    stale;
    ngx_http_aihub_record_t       rec;
    size_t                        models_len;
    u_char                        models[1];
} ngx_http_aihub_zone_node_t;


/* an account's rate limiter state; node.key is the account id */

typedef struct {
    ngx_rbtree_node_t             node;
    ngx_queue_t                   queue;
    aihub_rl_state_t              rl_requests;
    aihub_rl_state_t              rl_tokens;
} ngx_http_aihub_zone_account_t;


typedef struct {
    ngx_rbtree_t                  rbtree;
    ngx_rbtree_node_t             sentinel;
    ngx_queue_t                   queue;
    ngx_uint_t                    generation;
    ngx_uint_t                    invalidations; /* heard, of any kind */
    ngx_uint_t                    entries;
    ngx_rbtree_t                  accounts;
    ngx_rbtree_node_t             accounts_sentinel;
    ngx_queue_t                   accounts_queue;
    ngx_http_aihub_metrics_t      metrics;
    ngx_http_aihub_lane_sh_t      lanes[NGX_HTTP_AIHUB_LANES];
    ngx_http_aihub_lane_plan_sh_t lane_plans[NGX_HTTP_AIHUB_LANE_PLANS];
} ngx_http_aihub_zone_sh_t;


typedef struct {
    ngx_http_aihub_zone_sh_t    *sh;
    ngx_slab_pool_t              *shpool;
} ngx_http_aihub_zone_t;


void ngx_http_aihub_zone_free(ngx_http_aihub_zone_t *cache,
    ngx_http_aihub_zone_node_t *cn);


#endif /* NGX_HTTP_AIHUB_ZONE_SH_H */
