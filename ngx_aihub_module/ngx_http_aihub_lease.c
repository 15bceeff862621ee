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

#include "ngx_http_aihub_lease_slot.h"
#include "ngx_http_aihub_limit.h"


#define NGX_HTTP_AIHUB_LEASE_IDLE     2000  /* ms unused: returned */
#define NGX_HTTP_AIHUB_LEASE_TICK     500
#define NGX_HTTP_AIHUB_LEASE_BACK     32    /* slots emptied a lock */


/* a refill in flight: what it is for */

typedef struct {
    uint64_t                      account;
    int64_t                       period;
    u_char                        id[AIHUB_EVENT_ID_LEN];
    u_char                        m[NGX_HTTP_AIHUB_LEASE_M_LEN];
    size_t                        m_len;
    uint64_t                      rate_us;
} ngx_http_aihub_lease_ask_t;


static void ngx_http_aihub_lease_refill(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t want);
static void ngx_http_aihub_lease_granted(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_aihub_lease_tick(ngx_event_t *ev);
static ngx_uint_t ngx_http_aihub_lease_take_back(ngx_uint_t all,
    ngx_log_t *log);
static void ngx_http_aihub_lease_give_back(ngx_http_aihub_lease_back_t *b);


static ngx_event_t        ngx_http_aihub_lease_tick_ev;

/* what a timer's data names in nginx's debug log */
static ngx_connection_t   ngx_http_aihub_lease_ident;


ngx_int_t
ngx_http_aihub_lease_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    ngx_http_aihub_lease_zone_use(amcf->lease_zone);

    if (ngx_http_aihub_lease_zone() == NULL) {
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
 * One call out of the node's lease of the account and period, with no
 * I/O: NGX_OK (ctx->quota names the lease), or NGX_DECLINED when the node
 * holds no usable lease.
 */

ngx_int_t
ngx_http_aihub_lease_admit(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    int64_t                       left;
    uint64_t                      worst, rate_us;
    ngx_uint_t                    want;
    ngx_msec_t                    now, reset;
    ngx_http_aihub_lease_slot_t  *s;
    ngx_http_aihub_lease_zone_t  *zone;
    ngx_http_aihub_main_conf_t   *amcf;

    zone = ngx_http_aihub_lease_zone();

    if (zone == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_aihub_usage_wiped()) {
        /* Redis lost the leases with its data */
        ngx_http_aihub_lease_forget();
        return NGX_DECLINED;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);
    now = ngx_current_msec;
    want = 0;

    /* held out of a lease of calls beyond the included ones */
    worst = ngx_http_aihub_grant_worst_cost(ctx);
    rate_us = ngx_http_aihub_lease_rate_us(r, ctx);

    ngx_shmtx_lock(&zone->shpool->mutex);

    s = ngx_http_aihub_lease_slot(zone->sh, ctx->caller.key.rec.account_id,
                                  ctx->quota.start, 0, now);

    /* under the global rate limit, a lease that holds its tokens only */

    if (s == NULL || !ngx_http_aihub_lease_admits(s, worst, now)
        || (rate_us && s->rate_us == 0))
    {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    s->admitted++;
    s->used = now;

    /* the global limit's tokens left: in Redis, and this lease's not
       admitted */

    left = 0;
    reset = 0;

    if (rate_us) {
        left = s->rate_left + (int64_t) (s->granted - s->admitted);
        reset = (ngx_msec_int_t) (s->rate_reset - now) > 0
                ? s->rate_reset - now : 0;
    }

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

    if (rate_us) {
        ngx_http_aihub_limit_global_passed(r, ctx, left, reset);
    }

    if (want) {
        ngx_http_aihub_lease_refill(r, ctx, want);
    }

    return NGX_OK;
}


/*
 * A lease's tokens of the global rate limit, as the time one stands for
 * in µs (0: the call is not under the global limit)
 */

uint64_t
ngx_http_aihub_lease_rate_us(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (alcf->global_rate_limit != NGX_HTTP_AIHUB_RATE_GLOBAL
        || ctx->caller.key.rec.rpm == 0)
    {
        return 0;
    }

    return ngx_max(60000000 / ctx->caller.key.rec.rpm, 1);
}


/*
 * The grant script's reply (README, "Leases"): the lease's calls into
 * "g" (zeroed first: its id and rate_us are the caller's to set after),
 * or 0 when it granted none
 */

ngx_uint_t
ngx_http_aihub_lease_reply(redisReply *rep, ngx_http_aihub_lease_grant_t *g)
{
    ngx_uint_t  i;

    ngx_memzero(g, sizeof(ngx_http_aihub_lease_grant_t));

    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 9) {
        return 0;
    }

    for (i = 0; i < 9; i++) {
        if (i != 2 && rep->element[i]->type != REDIS_REPLY_INTEGER) {
            return 0;
        }
    }

    if (rep->element[0]->integer != 1 || rep->element[6]->integer <= 0) {
        return 0;
    }

    g->calls = (ngx_uint_t) rep->element[6]->integer;
    g->cost = (uint64_t) rep->element[8]->integer;
    g->base = (uint64_t) rep->element[1]->integer;
    g->life = (ngx_msec_t) rep->element[7]->integer;
    g->rate_left = rep->element[3]->integer;
    g->rate_reset = (ngx_msec_t) ngx_max(rep->element[5]->integer, 0);

    return g->calls;
}


/* the rest of a lease a request waited for: into the zone */

void
ngx_http_aihub_lease_keep(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_http_aihub_lease_grant_t *g)
{
    ngx_msec_t                    now;
    ngx_http_aihub_lease_back_t   back;
    ngx_http_aihub_lease_slot_t  *s;
    ngx_http_aihub_lease_zone_t  *zone;

    back.calls = g->calls - 1;
    back.cost = g->cost - ngx_min(g->cost, ctx->quota.held_cost);
    back.rate_us = back.calls * g->rate_us;
    ngx_memcpy(back.id, ctx->quota.lease, AIHUB_EVENT_ID_LEN);
    back.m_len = ngx_min(ctx->quota.period_m.len, NGX_HTTP_AIHUB_LEASE_M_LEN);
    ngx_memcpy(back.m, ctx->quota.period_m.data, back.m_len);

    zone = ngx_http_aihub_lease_zone();

    if (zone == NULL) {
        ngx_http_aihub_lease_give_back(&back);
        return;
    }

    now = ngx_current_msec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    s = ngx_http_aihub_lease_slot(zone->sh, ctx->caller.key.rec.account_id,
                                  ctx->quota.start, 1, now);

    if (s && !ngx_http_aihub_lease_admits(s, ctx->quota.held_cost, now)) {
        ngx_memcpy(s->m, back.m, back.m_len);
        s->m_len = back.m_len;

        g->id = ctx->quota.lease;
        ngx_http_aihub_lease_install(s, g, now, &back);

        /* this request's call is the new lease's first */
        s->admitted = 1;
        s->cost_admitted = g->cost ? ngx_min(g->cost, ctx->quota.held_cost)
                                   : 0;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    /* the old lease's rest, or this one's when the slot has a better one */

    ngx_http_aihub_lease_give_back(&back);
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
    ask->rate_us = ngx_http_aihub_lease_rate_us(r, ctx);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub lease: asking for the next lease of \"%V\"",
                   &ctx->quota.period_key);

    if (ngx_http_aihub_grant_send(r, ctx, ask->id, want, 2,
                                  ngx_http_aihub_lease_granted, ask, NULL)
        != NGX_OK)
    {
        /* not connected: a later call asks again */
        ngx_free(ask);
        return;
    }

    /* awaited: the watchdog counts it (a refill alone may be all a node
       waits for while it admits calls from the lease it holds) */

    ngx_http_aihub_redis_sent();
}


static void
ngx_http_aihub_lease_granted(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply                    *rep = reply;
    ngx_http_aihub_lease_ask_t    *ask = privdata;

    ngx_uint_t                     n;
    ngx_msec_t                     now;
    ngx_http_aihub_lease_back_t    back;
    ngx_http_aihub_lease_slot_t   *s;
    ngx_http_aihub_lease_zone_t   *zone;
    ngx_http_aihub_lease_grant_t   g;

    ngx_http_aihub_redis_replied(rep != NULL);

    n = ngx_http_aihub_lease_reply(rep, &g);
    g.id = ask->id;
    g.rate_us = ask->rate_us;

    back.calls = n;
    back.cost = g.cost;
    back.rate_us = n * g.rate_us;
    ngx_memcpy(back.id, ask->id, AIHUB_EVENT_ID_LEN);
    ngx_memcpy(back.m, ask->m, ask->m_len);
    back.m_len = ask->m_len;

    if (rep == NULL && n == 0) {
        /* no reply: whatever Redis granted goes back */
        back.calls = NGX_HTTP_AIHUB_GRANT_ALL_CALLS;
        back.cost = NGX_HTTP_AIHUB_GRANT_ALL_COST;
        back.rate_us = NGX_HTTP_AIHUB_GRANT_ALL_RATE;
    }

    if (rep && rep->type == REDIS_REPLY_ERROR) {
        ngx_http_aihub_scripts_check(rep);
    }

    zone = ngx_http_aihub_lease_zone();
    now = ngx_current_msec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    s = ngx_http_aihub_lease_slot(zone->sh, ask->account, ask->period, n > 0,
                                  now);
    if (s) {
        s->asked = 0;

        if (n > 0) {
            ngx_memcpy(s->m, ask->m, ask->m_len);
            s->m_len = ask->m_len;

            ngx_http_aihub_lease_install(s, &g, now, &back);
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
    ngx_uint_t  n, exiting;

    exiting = (ngx_exiting || ngx_quit || ngx_terminate);

    n = ngx_http_aihub_lease_take_back(exiting, ev->log);

    if (!exiting || n == NGX_HTTP_AIHUB_LEASE_BACK) {
        ngx_add_timer(ev, NGX_HTTP_AIHUB_LEASE_TICK);
    }
}


/*
 * Every block of the node goes back now, used or not: the command
 * connection was made again, after which Redis may hold a copy restored
 * from the ledger that knows nothing of them (README "Leases"), or the
 * worker said it restored Redis ("all").  A block Redis still knows gives
 * its unused calls back; one it lost gives nothing back, and the node
 * admits no more from it.  The next calls take fresh blocks.
 */

void
ngx_http_aihub_lease_return_all(ngx_log_t *log)
{
    while (ngx_http_aihub_lease_take_back(1, log)
           == NGX_HTTP_AIHUB_LEASE_BACK)
    {
        /* void */
    }
}


/*
 * Takes up to NGX_HTTP_AIHUB_LEASE_BACK leases out of their slots, all of
 * them or those idle or past their admitting time, and gives back what
 * they did not admit.  Returns how many slots it emptied.
 */

static ngx_uint_t
ngx_http_aihub_lease_take_back(ngx_uint_t all, ngx_log_t *log)
{
    ngx_uint_t                    i, n, taken;
    ngx_msec_t                    now;
    ngx_http_aihub_lease_back_t   back[NGX_HTTP_AIHUB_LEASE_BACK];
    ngx_http_aihub_lease_slot_t  *s;
    ngx_http_aihub_lease_zone_t  *zone;

    zone = ngx_http_aihub_lease_zone();

    if (zone == NULL) {
        return 0;
    }

    now = ngx_current_msec;
    n = 0;
    taken = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < NGX_HTTP_AIHUB_LEASE_SLOTS
                && taken < NGX_HTTP_AIHUB_LEASE_BACK; i++)
    {
        s = &zone->sh->slots[i];

        if (s->account == 0 || s->granted == 0
            || (!all && now - s->used < NGX_HTTP_AIHUB_LEASE_IDLE
                && (ngx_msec_int_t) (now - s->until) < 0))
        {
            continue;
        }

        ngx_http_aihub_lease_unused(s, &back[n]);
        n += (back[n].calls != 0 || back[n].cost != 0);
        taken++;

        s->granted = 0;
        s->admitted = 0;
        s->cost = 0;
        s->cost_admitted = 0;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    for (i = 0; i < n; i++) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                       "aihub lease: %ui unused calls of lease %*s given "
                       "back", back[i].calls, (size_t) 8, back[i].id);
        ngx_http_aihub_lease_give_back(&back[i]);
    }

    return taken;
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

    zone = ngx_http_aihub_lease_zone();

    if (zone == NULL) {
        return;
    }

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
                                b->cost, b->rate_us, NULL);
}
