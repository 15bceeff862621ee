/*
 * ngx_http_aihub_lease_slot.c: the zone of a node's leases, one slot per
 * account and period, and what a slot's lease admits and gives back.
 */

#ifndef NGX_HTTP_AIHUB_LEASE_SLOT_H
#define NGX_HTTP_AIHUB_LEASE_SLOT_H


#include "ngx_http_aihub_common.h"

#include "aihub_period.h"


#define NGX_HTTP_AIHUB_LEASE_SLOTS    1024
#define NGX_HTTP_AIHUB_LEASE_M_LEN    (NGX_INT64_LEN + 1 + AIHUB_PERIOD_ID_LEN)
/*
 * A refill holds what the node admits in this many ms at the rate the
 * lease it replaces was used: its last quarter outlasts a Redis round trip
 * many times over, so a busy account's calls never wait for one.  Up to
 * NGX_HTTP_AIHUB_LEASE_GROW times aihub_lease_calls.  A lease that holds
 * tokens of the global rate limit admits for this long at most.
 */
#define NGX_HTTP_AIHUB_LEASE_SPAN     1000
#define NGX_HTTP_AIHUB_LEASE_GROW     64


typedef struct {
    uint64_t                      account;      /* 0: a free slot */
    int64_t                       period;       /* the period's start */
    u_char                        id[AIHUB_EVENT_ID_LEN];
    u_char                        m[NGX_HTTP_AIHUB_LEASE_M_LEN];
    size_t                        m_len;        /* "<account>:<day>" */
    ngx_uint_t                    granted;      /* 0: no lease */
    ngx_uint_t                    admitted;
    uint64_t                      cost;         /* held against a spend */
    uint64_t                      cost_admitted;  /* cap: the calls' worst */
    uint64_t                      base;         /* calls before the lease */
    uint64_t                      rate_us;      /* global limit: a token */
    int64_t                       rate_left;    /* its tokens left then */
    ngx_msec_t                    rate_reset;   /* its bucket full then */
    ngx_msec_t                    installed;
    ngx_msec_t                    until;        /* admits until then */
    ngx_msec_t                    refill_at;
    ngx_msec_t                    asked;        /* a refill in flight */
    ngx_msec_t                    used;         /* the last admission */
} ngx_http_aihub_lease_slot_t;


typedef struct {
    ngx_http_aihub_lease_slot_t   slots[NGX_HTTP_AIHUB_LEASE_SLOTS];
} ngx_http_aihub_lease_sh_t;


typedef struct {
    ngx_http_aihub_lease_sh_t    *sh;
    ngx_slab_pool_t              *shpool;
} ngx_http_aihub_lease_zone_t;


/*
 * A lease Redis granted: "calls" (and "cost" held against a spend cap)
 * after "base" calls used or leased, living "life" ms; with "rate_us"
 * (the global rate limit's time per request, in µs; 0: none), as many
 * of the limit's tokens, "rate_left" tokens then left in it and
 * "rate_reset" ms until it is full.
 */

typedef struct {
    u_char                       *id;
    ngx_uint_t                    calls;
    uint64_t                      cost;
    uint64_t                      base;
    ngx_msec_t                    life;
    uint64_t                      rate_us;
    int64_t                       rate_left;
    ngx_msec_t                    rate_reset;
} ngx_http_aihub_lease_grant_t;


/* a lease to give back, copied out of the zone before the lock is let go */

typedef struct {
    u_char                        id[AIHUB_EVENT_ID_LEN];
    u_char                        m[NGX_HTTP_AIHUB_LEASE_M_LEN];
    size_t                        m_len;
    ngx_uint_t                    calls;
    uint64_t                      cost;
    uint64_t                      rate_us;      /* the tokens, in time */
} ngx_http_aihub_lease_back_t;


ngx_shm_zone_t *ngx_http_aihub_lease_zone_add(ngx_conf_t *cf,
    ngx_str_t *cache_zone);
void ngx_http_aihub_lease_zone_use(ngx_shm_zone_t *zone);
ngx_http_aihub_lease_zone_t *ngx_http_aihub_lease_zone(void);
ngx_http_aihub_lease_slot_t *ngx_http_aihub_lease_slot(
    ngx_http_aihub_lease_sh_t *sh, uint64_t account, int64_t period,
    ngx_uint_t create, ngx_msec_t now);
ngx_uint_t ngx_http_aihub_lease_admits(ngx_http_aihub_lease_slot_t *s,
    uint64_t worst, ngx_msec_t now);
ngx_uint_t ngx_http_aihub_lease_want(ngx_http_aihub_lease_slot_t *s,
    ngx_uint_t smallest, ngx_msec_t now);
void ngx_http_aihub_lease_install(ngx_http_aihub_lease_slot_t *s,
    ngx_http_aihub_lease_grant_t *g, ngx_msec_t now,
    ngx_http_aihub_lease_back_t *back);
void ngx_http_aihub_lease_unused(ngx_http_aihub_lease_slot_t *s,
    ngx_http_aihub_lease_back_t *back);


#endif /* NGX_HTTP_AIHUB_LEASE_SLOT_H */
