/*
 * Monthly quotas.  One Redis hash per account and billing period,
 * "<prefix>period:<account>:<YYYYMMDD>", holds the calls used, prompt,
 * completion, total, cost and overage in micro-dollars (overage: the cost
 * of the calls beyond the included ones, which an optional spend cap
 * limits), and what the outstanding leases hold (leased_calls,
 * leased_cost).
 *
 * Calls are admitted from leases (README, "Leases"): the grant script
 * gives a lease only out of what is neither used nor leased, so
 * concurrent requests can never pass a hard quota; the same script
 * applies the Redis-global rate limit when a location asks for one (then
 * every call is its own lease).  Far from the edge a node holds a block
 * lease in its zone (ngx_http_aihub_lease.c) and admits calls with no I/O;
 * a request waits on Redis only when its node holds no usable lease, and
 * near the edge every call is its own lease of one call.  The lease's id
 * names the settle (its call counted on success, given back otherwise,
 * with its tokens and cost), which travels in the confirmed, resent,
 * applied-once batches of the usage events.  Every lease expires, and
 * what an expired lease still holds is reclaimed (by the account's next
 * grant, or by the sweep), so a request gone, a reply lost or a worker
 * process killed heals within aihub_lease_time.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_redis_refused.h"
#include "ngx_http_aihub_limit.h"
#include "ngx_http_aihub_usage.h"
#include "ngx_http_aihub_scripts.h"
#include "ngx_http_aihub_lease.h"
#include "ngx_http_aihub_grant.h"
#include "ngx_http_aihub_metrics.h"
#include "ngx_http_aihub_quota.h"

#include "aihub_period.h"
#include "aihub_money.h"


static void ngx_http_aihub_quota_done(ngx_http_request_t *r,
    redisReply *reply);
static void ngx_http_aihub_quota_cleanup(void *data);
static void ngx_http_aihub_quota_give_back(ngx_log_t *log,
    ngx_http_aihub_ctx_t *ctx);
static void ngx_http_aihub_quota_send_settle(ngx_log_t *log,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t success);
static void ngx_http_aihub_quota_granted(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, redisReply *reply);
static void ngx_http_aihub_quota_unavailable(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_uint_t ngx_http_aihub_quota_leasable(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


ngx_int_t
ngx_http_aihub_period_key(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char                      *p;
    size_t                       len;
    time_t                       now;
    char                         id[AIHUB_PERIOD_ID_LEN + 1];
    int64_t                      start, end, anchor;
    ngx_http_aihub_main_conf_t  *amcf;

    /* the last period worked out, in this worker process: most calls are
       in the same one as the call before */
    static int64_t  last_anchor = -1, last_start, last_end;
    static char     last_id[AIHUB_PERIOD_ID_LEN + 1];

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);
    now = ngx_http_aihub_time(r);

    /*
     * the call belongs to the period of this moment (after its body was
     * read, and any wait in a priority lane), and so does its usage
     * event: the month that counts it is the month that bills it
     */
    ctx->quota.at_ms = ngx_http_aihub_now_ms();

    anchor = (ctx->caller.key.rec.anchor > 0
              && ctx->caller.key.rec.anchor <= now)
             ? ctx->caller.key.rec.anchor : 0;

    if (anchor == last_anchor && now >= last_start && now < last_end) {
        start = last_start;
        end = last_end;
        ngx_memcpy(id, last_id, sizeof(id));

    } else {
        if (anchor > 0) {
            (void) aihub_period_current(anchor, now, &start, &end);

        } else {
            aihub_period_calendar(now, &start, &end);
        }

        (void) aihub_period_id(start, id);

        last_anchor = anchor;
        last_start = start;
        last_end = end;
        ngx_memcpy(last_id, id, sizeof(id));
    }

    ctx->quota.start = start;
    ctx->quota.end = end;

    ctx->quota.period_key.len = amcf->redis_prefix.len
                                + sizeof(AIHUB_RK_PERIOD ":") - 1
                          + ctx->caller.key.account.len + AIHUB_PERIOD_ID_LEN;
    ctx->quota.period_key.data = ngx_pnalloc(r->pool,
                                             ctx->quota.period_key.len);
    if (ctx->quota.period_key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(ctx->quota.period_key.data, amcf->redis_prefix.data,
                   amcf->redis_prefix.len);
    p = ngx_cpymem(p, AIHUB_RK_PERIOD, sizeof(AIHUB_RK_PERIOD) - 1);
    p = ngx_cpymem(p, ctx->caller.key.account.data,
                   ctx->caller.key.account.len);
    *p++ = ':';
    ngx_memcpy(p, id, AIHUB_PERIOD_ID_LEN);

    /* the period's leases, under the same "<account>:<day>" */

    len = ctx->caller.key.account.len + 1 + AIHUB_PERIOD_ID_LEN;

    ctx->quota.leases_key.data = ngx_pnalloc(r->pool,
                                             amcf->redis_prefix.len + len
                                             + sizeof(AIHUB_RK_LEASES) - 1);
    if (ctx->quota.leases_key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(ctx->quota.leases_key.data, amcf->redis_prefix.data,
                   amcf->redis_prefix.len);
    p = ngx_cpymem(p, AIHUB_RK_LEASES, sizeof(AIHUB_RK_LEASES) - 1);
    p = ngx_cpymem(p, ctx->caller.key.account.data,
                   ctx->caller.key.account.len);
    *p++ = ':';
    p = ngx_cpymem(p, id, AIHUB_PERIOD_ID_LEN);
    ctx->quota.leases_key.len = p - ctx->quota.leases_key.data;

    /* "<account>:<YYYYMMDD>", the period key after "<prefix>period:" */

    len = amcf->redis_prefix.len + sizeof(AIHUB_RK_PERIOD) - 1;
    ctx->quota.period_m.data = ctx->quota.period_key.data + len;
    ctx->quota.period_m.len = ctx->quota.period_key.len - len;

    return NGX_OK;
}


ngx_int_t
ngx_http_aihub_quota_step(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t                    rc;
    ngx_uint_t                   leasable;
    ngx_pool_cleanup_t          *cln;
    ngx_http_aihub_metrics_t    *m;
    ngx_http_aihub_main_conf_t  *amcf;

    if (ctx->quota.reserved) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub quota: already reserved");
        ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;
        return NGX_OK;
    }

    /*
     * the worst case of tokens held against the TPM limit first, before a
     * full event buffer can let the call through failing open (it held
     * nothing then, and concurrent calls passed the limit together)
     */

    if (ngx_http_aihub_limit_hold(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->flow.state == NGX_HTTP_AIHUB_STATE_DONE) {
        return NGX_OK;
    }

    if (ngx_http_aihub_usage_full(r->connection->log)) {
        ngx_http_aihub_quota_unavailable(r, ctx);
        return NGX_OK;
    }

    if (ngx_http_aihub_period_key(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    if (!ctx->quota.cleanup) {
        /* a lease whose request goes away is given back */
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_http_aihub_quota_cleanup;
        cln->data = r;
        ctx->quota.cleanup = 1;
    }

    /* far from the edge: a call out of the node's lease, with no I/O */

    leasable = ngx_http_aihub_quota_leasable(r, ctx);

    if (leasable && ngx_http_aihub_lease_admit(r, ctx) == NGX_OK) {
        m = ngx_http_aihub_metrics();
        (void) ngx_atomic_fetch_add(&m->quota_from_lease, 1);
        ctx->quota.reserved = 1;
        ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;
        return NGX_OK;
    }

    /* else a lease for this request: a block the node keeps, if it may */

    ngx_memcpy(ctx->quota.lease, ctx->event_id, AIHUB_EVENT_ID_LEN);

    rc = ngx_http_aihub_grant_send(r, ctx, ctx->quota.lease,
                                   leasable ? amcf->lease_calls : 1, 1,
                                   NULL, NULL, ngx_http_aihub_quota_done);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        m = ngx_http_aihub_metrics();
        (void) ngx_atomic_fetch_add(&m->quota_from_redis, 1);
        ctx->quota.pending = 1;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub quota: asking for a lease in \"%V\"",
                       &ctx->quota.period_key);
        return NGX_AGAIN;
    }

    /* Redis is not connected */

    ngx_http_aihub_quota_unavailable(r, ctx);
    return NGX_OK;
}


/*
 * Whether the node may keep a block lease for the account: with a lease
 * zone and blocks of more than one call (under the global rate limit,
 * a block also holds as many of its tokens, ngx_http_aihub_lease.c).
 */

static ngx_uint_t
ngx_http_aihub_quota_leasable(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    return amcf->lease_zone != NULL && amcf->lease_calls > 1;
}


static void
ngx_http_aihub_quota_done(ngx_http_request_t *r, redisReply *reply)
{
    redisReply            *e;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);
    ctx->flow.state = NGX_HTTP_AIHUB_STATE_NEW;
    ctx->quota.pending = 0;

    if (reply == NULL) {
        /*
         * no answer in time, or the connection lost: if Redis ran the
         * script, the lease it granted is given back (after the grant, on
         * the same connection, or a no-op on a new one)
         */
        ngx_http_aihub_quota_give_back(r->connection->log, ctx);
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || (reply->elements != 6 && reply->elements != 9)
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_INTEGER
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        if (ngx_http_aihub_redis_for_now(reply)) {
            ngx_http_aihub_redis_refused(r->connection->log, "a lease",
                                         reply->str);

        } else if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "aihub: quota script failed: %s", reply->str);
            ngx_http_aihub_scripts_check(reply);
        }

        ngx_http_aihub_quota_unavailable(r, ctx);
        ngx_http_aihub_resume(r);
        return;
    }

    e = reply->element[2];

    if (reply->element[0]->integer == 1) {
        ngx_http_aihub_quota_granted(r, ctx, reply);

    } else if (e->len == 5 && ngx_strncmp(e->str, "wiped", 5) == 0) {
        /* Redis lost its data: nothing until the worker restored it */
        ngx_http_aihub_lease_forget();
        ngx_http_aihub_redis_refused(r->connection->log, "a lease",
                                     "it lost its data (no epoch marker), "
                                     "no lease until aihub-worker restores "
                                     "it");
        ngx_http_aihub_quota_unavailable(r, ctx);

    } else if (e->len == 4 && ngx_strncmp(e->str, "rate", 4) == 0) {
        ngx_http_aihub_limit_global_refused(r, ctx,
                                            reply->element[4]->integer,
                                            reply->element[5]->integer);

    } else if (ngx_http_aihub_quota_leasable(r, ctx)
               && ngx_http_aihub_lease_admit(r, ctx) == NGX_OK)
    {
        /* what is left of the budget is leased to this node already */
        ctx->quota.reserved = 1;
        ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;

    } else if (e->len == 5 && ngx_strncmp(e->str, "spend", 5) == 0) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                            "insufficient_quota", "insufficient_quota",
                            "You exceeded your monthly spend cap. Raise "
                            "the cap or wait for the next billing period.");

    } else {
        ngx_http_aihub_deny(ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                            "insufficient_quota", "insufficient_quota",
                            "You exceeded your monthly quota of calls for "
                            "your plan. Upgrade your plan or wait for the "
                            "next billing period.");
    }

    if (ctx->flow.state == NGX_HTTP_AIHUB_STATE_DONE) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub quota: refused (%*s)", (size_t) e->len,
                       e->str);
    }

    ngx_http_aihub_resume(r);
}


/* no usable answer from Redis: fail open, or 503 */

static void
ngx_http_aihub_quota_unavailable(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_uint_t                  more;
    ngx_http_aihub_loc_conf_t  *alcf;

    static ngx_http_aihub_redis_said_t  said;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (alcf->failure_mode == NGX_HTTP_AIHUB_FAIL_OPEN) {
        if (ngx_http_aihub_redis_say(&said, &more)) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "aihub: no quota answer from redis, call of key "
                          "%V passed (failing open), and %ui calls more "
                          "since the last such line", &ctx->caller.key.prefix,
                          more);
        }

        ctx->caller.from_stale = 1;
        ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;
        return;
    }

    ngx_http_aihub_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error",
                        "service_unavailable",
                        "The gateway cannot check quotas right now. Please "
                        "retry shortly.");
}


/* the request's lease granted: its first call is this request's */

static void
ngx_http_aihub_quota_granted(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, redisReply *reply)
{
    ngx_uint_t                    n;
    ngx_http_aihub_lease_grant_t  g;

    ctx->quota.reserved = 1;
    ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;

    n = ngx_http_aihub_lease_reply(reply, &g);

    if (n == 0) {
        /* not a block: the request's call alone */
        n = 1;
        g.base = (uint64_t) reply->element[1]->integer;
        g.rate_left = reply->element[3]->integer;
        g.rate_reset = (ngx_msec_t) ngx_max(reply->element[5]->integer, 0);
    }

    /* a call beyond the included ones: its cost counts as overage */
    ctx->quota.overage_call = (g.base + 1 > ctx->caller.key.rec.included);

    /* as the script decided: held only by a call beyond the included */
    if (!ctx->quota.overage_call || !ctx->caller.key.rec.spend_cap) {
        ctx->quota.held_cost = 0;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub quota: lease of %ui calls after %uL used or "
                   "leased, of %uL included", n, g.base,
                   ctx->caller.key.rec.included);

    g.rate_us = ngx_http_aihub_lease_rate_us(r, ctx);

    if (n > 1) {
        ngx_http_aihub_lease_keep(r, ctx, &g);
    }

    /* the limit's tokens left: in Redis, and the rest of this lease */
    ngx_http_aihub_limit_global_passed(r, ctx, g.rate_left + (n - 1),
                                       (int64_t) g.rate_reset);
}


/*
 * After the call: a success counts its call and adds its tokens and cost
 * to the period, any other outcome gives the call back.  Through the
 * confirmed batches of the usage events: resent until Redis confirms
 * them, applied once.
 */

void
ngx_http_aihub_quota_settle(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t success)
{
    if (!ctx->quota.reserved || ctx->quota.period_key.len == 0) {
        return;
    }

    ctx->quota.reserved = 0;

    ngx_http_aihub_quota_send_settle(r->connection->log, ctx, success);
}


/* the request is gone: a grant still in flight, or a call held, goes back */

static void
ngx_http_aihub_quota_cleanup(void *data)
{
    ngx_http_request_t *r = data;

    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx_anchored(r);

    if (ctx == NULL || ctx->quota.period_key.len == 0) {
        return;
    }

    if (ctx->quota.pending) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub quota: request gone before the reply, "
                       "lease given back");

        ctx->quota.pending = 0;
        ngx_http_aihub_quota_give_back(ngx_cycle->log, ctx);
    }

    if (ctx->quota.reserved) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub quota: request gone, its call given back");

        ctx->quota.reserved = 0;
        ngx_http_aihub_quota_send_settle(ngx_cycle->log, ctx, 0);
    }
}


/*
 * A grant whose reply never came: whatever it granted (how many calls,
 * whether it held a cost or tokens of the global rate limit, are unknown)
 * goes back; the script gives back at most what the lease holds, nothing
 * if it does not exist.
 */

static void
ngx_http_aihub_quota_give_back(ngx_log_t *log, ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_settle_record(log, &ctx->quota.period_m, ctx->quota.lease,
                                'r', NGX_HTTP_AIHUB_GRANT_ALL_CALLS,
                                NGX_HTTP_AIHUB_GRANT_ALL_COST,
                                NGX_HTTP_AIHUB_GRANT_ALL_RATE, NULL);
}


static void
ngx_http_aihub_quota_send_settle(ngx_log_t *log, ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t success)
{
    u_char  kind;

    kind = success ? (ctx->quota.overage_call ? 'o' : 's') : 'f';

    ngx_http_aihub_settle_record(log, &ctx->quota.period_m, ctx->quota.lease,
                                kind, 1, ctx->quota.held_cost, 0,
                                success ? ctx : NULL);
}
