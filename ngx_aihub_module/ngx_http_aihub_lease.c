/*
 * Block leases (README, "Leases"): a node takes a block of an account's
 * period budget from Redis (the grant script) and its worker processes
 * admit calls from it under the lock of a zone of their own, with no I/O.
 * One slot per account and period, in a fixed table (open addressing; a
 * node with more accounts active at once than the table holds leases one
 * call per request for the others, which is exact, only slower).
 *
 * A lease is admitted from until half its lifetime is gone, so the calls
 * it admitted are settled before Redis reclaims it.  When three quarters
 * of it are used, or a quarter of its lifetime is gone, the process that
 * admits the call asks for the next one without holding the request (one
 * ask per slot at a time); the new lease replaces the old one, whose unused
 * calls are returned.  A lease nobody used for NGX_HTTP_AIHUB_LEASE_IDLE ms is
 * returned; so is every lease when a worker process exits gracefully (a
 * reload or shutdown: the new processes take fresh ones).
 * Returns travel in the confirmed, resent batches of the usage events.
 * Whatever a crash keeps, Redis reclaims when the lease expires.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_scripts.h"
#include "ngx_http_aihub_grant.h"
#include "ngx_http_aihub_usage.h"
#include "ngx_http_aihub_lease.h"

#include "aihub_period.h"


#define NGX_HTTP_AIHUB_LEASE_SLOTS    1024
#define NGX_HTTP_AIHUB_LEASE_PROBE    8
#define NGX_HTTP_AIHUB_LEASE_IDLE     2000  /* ms unused: returned */
#define NGX_HTTP_AIHUB_LEASE_TICK     500
/*
 * A refill holds what the node admits in this many ms at the rate the
 * lease it replaces was used: its last quarter outlasts a Redis round trip
 * many times over, so a busy account's calls never wait for one.  Up to
 * NGX_HTTP_AIHUB_LEASE_GROW times aihub_lease_calls.
 */
#define NGX_HTTP_AIHUB_LEASE_SPAN     1000
#define NGX_HTTP_AIHUB_LEASE_GROW     64
#define NGX_HTTP_AIHUB_LEASE_M_LEN    (NGX_INT64_LEN + 1 + AIHUB_PERIOD_ID_LEN)


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


/* a refill in flight: what it is for */

typedef struct {
    uint64_t                      account;
    int64_t                       period;
    u_char                        id[AIHUB_EVENT_ID_LEN];
    u_char                        m[NGX_HTTP_AIHUB_LEASE_M_LEN];
    size_t                        m_len;
} ngx_http_aihub_lease_ask_t;


/* a lease to give back, copied out of the zone before the lock is let go */

typedef struct {
    u_char                        id[AIHUB_EVENT_ID_LEN];
    u_char                        m[NGX_HTTP_AIHUB_LEASE_M_LEN];
    size_t                        m_len;
    ngx_uint_t                    calls;
    uint64_t                      cost;
} ngx_http_aihub_lease_back_t;


static ngx_int_t ngx_http_aihub_lease_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_aihub_lease_slot_t *ngx_http_aihub_lease_slot(
    ngx_http_aihub_lease_sh_t *sh, uint64_t account, int64_t period,
    ngx_uint_t create, ngx_msec_t now);
static ngx_uint_t ngx_http_aihub_lease_admits(ngx_http_aihub_lease_slot_t *s,
    uint64_t worst, ngx_msec_t now);
static ngx_uint_t ngx_http_aihub_lease_want(ngx_http_aihub_lease_slot_t *s,
    ngx_uint_t smallest, ngx_msec_t now);
static void ngx_http_aihub_lease_refill(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t want);
static void ngx_http_aihub_lease_granted(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_aihub_lease_install(ngx_http_aihub_lease_slot_t *s,
    u_char *id, ngx_uint_t granted, uint64_t cost, uint64_t base,
    ngx_msec_t life, ngx_msec_t now, ngx_http_aihub_lease_back_t *back);
static void ngx_http_aihub_lease_unused(ngx_http_aihub_lease_slot_t *s,
    ngx_http_aihub_lease_back_t *back);
static void ngx_http_aihub_lease_tick(ngx_event_t *ev);
static void ngx_http_aihub_lease_give_back(ngx_http_aihub_lease_back_t *b);


static ngx_shm_zone_t    *ngx_http_aihub_lease_shm;
static ngx_event_t        ngx_http_aihub_lease_tick_ev;

/* what a timer's data names in nginx's debug log */
static ngx_connection_t   ngx_http_aihub_lease_ident;


ngx_shm_zone_t *
ngx_http_aihub_lease_zone_add(ngx_conf_t *cf, ngx_str_t *cache_zone)
{
    size_t           size;
    ngx_str_t        name;
    ngx_shm_zone_t  *zone;

    name.len = cache_zone->len + sizeof("_leases") - 1;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NULL;
    }

    ngx_sprintf(name.data, "%V_leases", cache_zone);

    size = ngx_align(sizeof(ngx_http_aihub_lease_sh_t), ngx_pagesize)
           + 16 * ngx_pagesize;

    zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_aihub_module);
    if (zone == NULL) {
        return NULL;
    }

    zone->init = ngx_http_aihub_lease_init_zone;
    zone->data = ngx_pcalloc(cf->pool, sizeof(ngx_http_aihub_lease_zone_t));
    if (zone->data == NULL) {
        return NULL;
    }

    ngx_http_aihub_lease_shm = zone;

    return zone;
}


static ngx_int_t
ngx_http_aihub_lease_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aihub_lease_zone_t  *ozone = data;

    ngx_http_aihub_lease_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    zone->sh = ngx_slab_calloc(zone->shpool,
                               sizeof(ngx_http_aihub_lease_sh_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    return NGX_OK;
}


ngx_int_t
ngx_http_aihub_lease_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    if (ngx_http_aihub_lease_shm == NULL) {
        return NGX_OK;
    }

    ngx_http_aihub_lease_tick_ev.handler = ngx_http_aihub_lease_tick;
    ngx_http_aihub_lease_tick_ev.log = cycle->log;
    ngx_http_aihub_lease_ident.fd = (ngx_socket_t) -1;
    ngx_http_aihub_lease_tick_ev.data = &ngx_http_aihub_lease_ident;

    ngx_add_timer(&ngx_http_aihub_lease_tick_ev, NGX_HTTP_AIHUB_LEASE_TICK);

    return NGX_OK;
}


/*
 * The slot of an account and period; with "create", a free one (or one
 * whose lease is over) is taken for it.  Under the lock.
 */

static ngx_http_aihub_lease_slot_t *
ngx_http_aihub_lease_slot(ngx_http_aihub_lease_sh_t *sh, uint64_t account,
    int64_t period, ngx_uint_t create, ngx_msec_t now)
{
    ngx_uint_t                    i, h;
    ngx_http_aihub_lease_slot_t  *s, *free;

    h = (ngx_uint_t) ((account * 0x9e3779b97f4a7c15ULL)
                      ^ (uint64_t) period) % NGX_HTTP_AIHUB_LEASE_SLOTS;
    free = NULL;

    for (i = 0; i < NGX_HTTP_AIHUB_LEASE_PROBE; i++) {
        s = &sh->slots[(h + i) % NGX_HTTP_AIHUB_LEASE_SLOTS];

        if (s->account == account && s->period == period) {
            return s;
        }

        if (free == NULL
            && (s->account == 0
                || (s->granted == 0 && s->asked == 0)))
        {
            free = s;
        }
    }

    if (!create || free == NULL) {
        return NULL;
    }

    ngx_memzero(free, sizeof(ngx_http_aihub_lease_slot_t));
    free->account = account;
    free->period = period;
    free->used = now;

    return free;
}


/*
 * One call out of the node's lease of the account and period, with no
 * I/O: NGX_OK (ctx->quota names the lease), or NGX_DECLINED when the node
 * holds no usable lease.
 */

ngx_int_t
ngx_http_aihub_lease_admit(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    uint64_t                      worst;
    ngx_uint_t                    want;
    ngx_msec_t                    now;
    ngx_http_aihub_lease_slot_t  *s;
    ngx_http_aihub_lease_zone_t  *zone;
    ngx_http_aihub_main_conf_t   *amcf;

    if (ngx_http_aihub_lease_shm == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_aihub_usage_wiped()) {
        /* Redis lost the leases with its data */
        ngx_http_aihub_lease_forget();
        return NGX_DECLINED;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);
    zone = ngx_http_aihub_lease_shm->data;
    now = ngx_current_msec;
    want = 0;

    /* held out of a lease of calls beyond the included ones */
    worst = ngx_http_aihub_grant_worst_cost(ctx);

    ngx_shmtx_lock(&zone->shpool->mutex);

    s = ngx_http_aihub_lease_slot(zone->sh, ctx->caller.key.rec.account_id,
                                  ctx->quota.start, 0, now);

    if (s == NULL || !ngx_http_aihub_lease_admits(s, worst, now)) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    s->admitted++;
    s->used = now;

    if (s->cost) {
        s->cost_admitted += worst;
    }

    ngx_memcpy(ctx->quota.lease, s->id, AIHUB_EVENT_ID_LEN);
    ctx->quota.overage_call = (s->base + s->admitted
                               > ctx->caller.key.rec.included);
    ctx->quota.held_cost = s->cost ? worst : 0;

    if ((s->granted - s->admitted <= s->granted / 4
         || (s->cost && s->cost - s->cost_admitted <= s->cost / 4)
         || (ngx_msec_int_t) (now - s->refill_at) >= 0)
        && (s->asked == 0 || now - s->asked > 10000)
        && ngx_http_aihub_redis_ready())
    {
        /* (not connected: the next call asks, not one 10 s later) */
        s->asked = now;
        want = ngx_http_aihub_lease_want(s, amcf->lease_calls, now);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub lease: call %ui of %ui admitted from lease %*s",
                   s->admitted, s->granted, (size_t) 8, s->id);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (want) {
        ngx_http_aihub_lease_refill(r, ctx, want);
    }

    return NGX_OK;
}


/*
 * Whether a slot's lease admits a call (whose worst-case cost is "worst"):
 * calls left, in the first half of its life, and, for a lease of calls
 * beyond the included ones of an account with a spend cap, cost left to
 * hold the call's.  Under the lock.
 */

static ngx_uint_t
ngx_http_aihub_lease_admits(ngx_http_aihub_lease_slot_t *s, uint64_t worst,
    ngx_msec_t now)
{
    return s->granted != 0 && s->admitted < s->granted
           && (ngx_msec_int_t) (now - s->until) < 0
           && (s->cost == 0 || s->cost_admitted + worst <= s->cost);
}


/*
 * The size of the next block: what the current one admitted per ms since
 * it came, times NGX_HTTP_AIHUB_LEASE_SPAN, between the smallest block
 * and NGX_HTTP_AIHUB_LEASE_GROW times it.  Under the lock.
 */

static ngx_uint_t
ngx_http_aihub_lease_want(ngx_http_aihub_lease_slot_t *s,
    ngx_uint_t smallest, ngx_msec_t now)
{
    ngx_uint_t  want;
    ngx_msec_t  age;

    age = now - s->installed;

    want = (age == 0) ? NGX_MAX_UINT32_VALUE
                      : s->admitted * NGX_HTTP_AIHUB_LEASE_SPAN / age;

    want = ngx_min(want, smallest * NGX_HTTP_AIHUB_LEASE_GROW);

    return ngx_max(want, smallest);
}


/* the rest of a lease a request waited for: into the zone */

void
ngx_http_aihub_lease_keep(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t granted, uint64_t base, ngx_msec_t life, uint64_t cost)
{
    ngx_msec_t                    now;
    ngx_http_aihub_lease_back_t   back;
    ngx_http_aihub_lease_slot_t  *s;
    ngx_http_aihub_lease_zone_t  *zone;

    back.calls = granted - 1;
    back.cost = cost - ngx_min(cost, ctx->quota.held_cost);
    ngx_memcpy(back.id, ctx->quota.lease, AIHUB_EVENT_ID_LEN);
    back.m_len = ngx_min(ctx->quota.period_m.len, NGX_HTTP_AIHUB_LEASE_M_LEN);
    ngx_memcpy(back.m, ctx->quota.period_m.data, back.m_len);

    if (ngx_http_aihub_lease_shm == NULL) {
        ngx_http_aihub_lease_give_back(&back);
        return;
    }

    zone = ngx_http_aihub_lease_shm->data;
    now = ngx_current_msec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    s = ngx_http_aihub_lease_slot(zone->sh, ctx->caller.key.rec.account_id,
                                  ctx->quota.start, 1, now);

    if (s && !ngx_http_aihub_lease_admits(s, ctx->quota.held_cost, now)) {
        ngx_memcpy(s->m, back.m, back.m_len);
        s->m_len = back.m_len;

        ngx_http_aihub_lease_install(s, ctx->quota.lease, granted, cost, base,
                                     life, now, &back);

        /* this request's call is the new lease's first */
        s->admitted = 1;
        s->cost_admitted = cost ? ngx_min(cost, ctx->quota.held_cost) : 0;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    /* the old lease's rest, or this one's when the slot has a better one */

    ngx_http_aihub_lease_give_back(&back);
}


/*
 * A new lease into its slot (under the lock); what the old one did not
 * admit goes into "back" (calls and cost 0: nothing).
 */

static void
ngx_http_aihub_lease_install(ngx_http_aihub_lease_slot_t *s, u_char *id,
    ngx_uint_t granted, uint64_t cost, uint64_t base, ngx_msec_t life,
    ngx_msec_t now, ngx_http_aihub_lease_back_t *back)
{
    ngx_http_aihub_lease_unused(s, back);

    ngx_memcpy(s->id, id, AIHUB_EVENT_ID_LEN);
    s->granted = granted;
    s->admitted = 0;
    s->cost = cost;
    s->cost_admitted = 0;
    s->base = base;
    s->installed = now;
    s->until = now + life / 2;
    s->refill_at = now + life / 4;
    s->used = now;
}


/*
 * what a slot's lease did not admit, to give back (calls and cost 0:
 * nothing)
 */

static void
ngx_http_aihub_lease_unused(ngx_http_aihub_lease_slot_t *s,
    ngx_http_aihub_lease_back_t *back)
{
    back->calls = 0;
    back->cost = 0;

    if (s->granted > s->admitted || s->cost > s->cost_admitted) {
        back->calls = s->granted - ngx_min(s->admitted, s->granted);
        back->cost = s->cost - ngx_min(s->cost_admitted, s->cost);
        ngx_memcpy(back->id, s->id, AIHUB_EVENT_ID_LEN);
        ngx_memcpy(back->m, s->m, s->m_len);
        back->m_len = s->m_len;
    }
}


/* the next lease, asked for while the current one still admits */

static void
ngx_http_aihub_lease_refill(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t want)
{
    ngx_http_aihub_lease_ask_t  *ask;

    ask = ngx_alloc(sizeof(ngx_http_aihub_lease_ask_t), r->connection->log);
    if (ask == NULL) {
        return;
    }

    ask->account = ctx->caller.key.rec.account_id;
    ask->period = ctx->quota.start;
    ask->m_len = ngx_min(ctx->quota.period_m.len, NGX_HTTP_AIHUB_LEASE_M_LEN);
    ngx_memcpy(ask->m, ctx->quota.period_m.data, ask->m_len);
    ngx_http_aihub_request_id(ask->id);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub lease: asking for the next lease of \"%V\"",
                   &ctx->quota.period_key);

    if (ngx_http_aihub_grant_send(r, ctx, ask->id, want, 2,
                                  ngx_http_aihub_lease_granted, ask, NULL)
        != NGX_OK)
    {
        /* not connected: a later call asks again */
        ngx_free(ask);
    }
}


static void
ngx_http_aihub_lease_granted(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply                   *rep = reply;
    ngx_http_aihub_lease_ask_t   *ask = privdata;

    uint64_t                      cost;
    ngx_msec_t                    now;
    ngx_uint_t                    n;
    ngx_http_aihub_lease_back_t   back;
    ngx_http_aihub_lease_slot_t  *s;
    ngx_http_aihub_lease_zone_t  *zone;

    n = 0;
    cost = 0;

    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 9
        && rep->element[0]->type == REDIS_REPLY_INTEGER
        && rep->element[0]->integer == 1
        && rep->element[1]->type == REDIS_REPLY_INTEGER
        && rep->element[6]->type == REDIS_REPLY_INTEGER
        && rep->element[7]->type == REDIS_REPLY_INTEGER
        && rep->element[8]->type == REDIS_REPLY_INTEGER
        && rep->element[6]->integer > 0)
    {
        n = (ngx_uint_t) rep->element[6]->integer;
        cost = (uint64_t) rep->element[8]->integer;
    }

    back.calls = n;
    back.cost = cost;
    ngx_memcpy(back.id, ask->id, AIHUB_EVENT_ID_LEN);
    ngx_memcpy(back.m, ask->m, ask->m_len);
    back.m_len = ask->m_len;

    if (rep == NULL && n == 0) {
        /* no reply: whatever Redis granted goes back */
        back.calls = NGX_HTTP_AIHUB_GRANT_ALL_CALLS;
        back.cost = NGX_HTTP_AIHUB_GRANT_ALL_COST;
    }

    if (rep && rep->type == REDIS_REPLY_ERROR) {
        ngx_http_aihub_scripts_check(rep);
    }

    zone = ngx_http_aihub_lease_shm->data;
    now = ngx_current_msec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    s = ngx_http_aihub_lease_slot(zone->sh, ask->account, ask->period, n > 0,
                                  now);
    if (s) {
        s->asked = 0;

        if (n > 0) {
            ngx_memcpy(s->m, ask->m, ask->m_len);
            s->m_len = ask->m_len;

            ngx_http_aihub_lease_install(s, ask->id, n, cost,
                                    (uint64_t) rep->element[1]->integer,
                                    (ngx_msec_t) rep->element[7]->integer,
                                    now, &back);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "aihub lease: next lease of %ui calls for \"%*s\"", n,
                   ask->m_len, ask->m);

    ngx_http_aihub_lease_give_back(&back);
    ngx_free(ask);
}


/*
 * Every half second: the leases nobody used for a while go back, and
 * every lease when this process is exiting (a graceful reload or
 * shutdown).  The timer is not cancelable, so an exiting process runs it
 * once more (its exit waits for it, half a second at most) and gives its
 * node's leases back before it goes; the new processes take fresh ones.
 */

static void
ngx_http_aihub_lease_tick(ngx_event_t *ev)
{
    ngx_uint_t                    i, n, exiting;
    ngx_msec_t                    now;
    ngx_http_aihub_lease_back_t   back[32];
    ngx_http_aihub_lease_slot_t  *s;
    ngx_http_aihub_lease_zone_t  *zone;

    exiting = (ngx_exiting || ngx_quit || ngx_terminate);
    zone = ngx_http_aihub_lease_shm->data;
    now = ngx_current_msec;
    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < NGX_HTTP_AIHUB_LEASE_SLOTS && n < 32; i++) {
        s = &zone->sh->slots[i];

        if (s->account == 0 || s->granted == 0
            || (!exiting && now - s->used < NGX_HTTP_AIHUB_LEASE_IDLE
                && (ngx_msec_int_t) (now - s->until) < 0))
        {
            continue;
        }

        ngx_http_aihub_lease_unused(s, &back[n]);
        n += (back[n].calls != 0 || back[n].cost != 0);

        s->granted = 0;
        s->admitted = 0;
        s->cost = 0;
        s->cost_admitted = 0;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    for (i = 0; i < n; i++) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "aihub lease: %ui unused calls of lease %*s given "
                       "back", back[i].calls, (size_t) 8, back[i].id);
        ngx_http_aihub_lease_give_back(&back[i]);
    }

    if (!exiting || n == 32) {
        ngx_add_timer(ev, NGX_HTTP_AIHUB_LEASE_TICK);
    }
}


/*
 * Redis lost its data: the leases it granted are gone with it, so the node
 * admits nothing more from them (their calls in flight are settled as
 * calls without a lease).
 */

void
ngx_http_aihub_lease_forget(void)
{
    ngx_uint_t                    i;
    ngx_http_aihub_lease_zone_t  *zone;

    if (ngx_http_aihub_lease_shm == NULL) {
        return;
    }

    zone = ngx_http_aihub_lease_shm->data;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < NGX_HTTP_AIHUB_LEASE_SLOTS; i++) {
        zone->sh->slots[i].granted = 0;
        zone->sh->slots[i].admitted = 0;
        zone->sh->slots[i].cost = 0;
        zone->sh->slots[i].cost_admitted = 0;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


static void
ngx_http_aihub_lease_give_back(ngx_http_aihub_lease_back_t *b)
{
    ngx_str_t  m;

    if (b->calls == 0 && b->cost == 0) {
        return;
    }

    m.data = b->m;
    m.len = b->m_len;

    ngx_http_aihub_settle_record(ngx_cycle->log, &m, b->id, 'r', b->calls,
                                b->cost, NULL);
}
