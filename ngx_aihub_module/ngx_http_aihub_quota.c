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
#include "ngx_http_aihub_limit.h"
#include "ngx_http_aihub_usage.h"
#include "ngx_http_aihub_scripts.h"
#include "ngx_http_aihub_lease.h"
#include "ngx_http_aihub_quota.h"

#include "aihub_period.h"
#include "aihub_money.h"


static void ngx_http_aihub_quota_done(ngx_http_request_t *r,
    redisReply *reply);
static void ngx_http_aihub_quota_cleanup(void *data);
static void ngx_http_aihub_swept(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_aihub_quota_give_back(ngx_log_t *log,
    ngx_http_aihub_ctx_t *ctx);
static void ngx_http_aihub_quota_send_settle(ngx_log_t *log,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t success);
static void ngx_http_aihub_quota_granted(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, redisReply *reply);
static ngx_uint_t ngx_http_aihub_quota_leasable(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);




/* "<prefix>leases-due", and the sweep's timer (one worker process) */

static ngx_str_t    ngx_http_aihub_leases_due;
static ngx_str_t    ngx_http_aihub_sweep_prefix;
static ngx_msec_t   ngx_http_aihub_sweep_every;
static ngx_event_t  ngx_http_aihub_sweep_ev;


static void ngx_http_aihub_sweep_handler(ngx_event_t *ev);


ngx_int_t
ngx_http_aihub_quota_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    u_char  *p;

    ngx_http_aihub_leases_due.len = amcf->redis_prefix.len
                                    + sizeof(AIHUB_RK_LEASES_DUE) - 1;
    ngx_http_aihub_leases_due.data = ngx_pnalloc(cycle->pool,
                                          ngx_http_aihub_leases_due.len);
    if (ngx_http_aihub_leases_due.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(ngx_http_aihub_leases_due.data, amcf->redis_prefix.data,
                   amcf->redis_prefix.len);
    ngx_memcpy(p, AIHUB_RK_LEASES_DUE, sizeof(AIHUB_RK_LEASES_DUE) - 1);

    if (ngx_worker != 0) {
        return NGX_OK;
    }

    /* a lease is reclaimed within half a lease time of its expiry */

    ngx_http_aihub_sweep_prefix = amcf->redis_prefix;
    ngx_http_aihub_sweep_every = ngx_max(amcf->lease_time / 2, 500);

    ngx_http_aihub_sweep_ev.handler = ngx_http_aihub_sweep_handler;
    ngx_http_aihub_sweep_ev.log = cycle->log;
    ngx_http_aihub_sweep_ev.data = NULL;
    ngx_http_aihub_sweep_ev.cancelable = 1;

    ngx_add_timer(&ngx_http_aihub_sweep_ev, ngx_http_aihub_sweep_every);

    return NGX_OK;
}


static void
ngx_http_aihub_sweep_handler(ngx_event_t *ev)
{
    const char  *argv[5];
    size_t       argvlen[5];

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    argv[0] = "EVALSHA";
    argvlen[0] = sizeof("EVALSHA") - 1;
    argv[1] = (const char *)
              ngx_http_aihub_script_sha(NGX_HTTP_AIHUB_SCRIPT_SWEEP);
    argvlen[1] = NGX_HTTP_AIHUB_SCRIPT_SHA_LEN;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (const char *) ngx_http_aihub_leases_due.data;
    argvlen[3] = ngx_http_aihub_leases_due.len;
    argv[4] = (const char *) ngx_http_aihub_sweep_prefix.data;
    argvlen[4] = ngx_http_aihub_sweep_prefix.len;

    /* not connected: the next turn tries again */

    (void) ngx_http_aihub_redis_send(ngx_http_aihub_swept, NULL, 5, argv,
                                     argvlen);

    ngx_add_timer(ev, ngx_http_aihub_sweep_every);
}


static void
ngx_http_aihub_swept(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *rep = reply;

    if (rep && rep->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "aihub: sweeping expired leases failed: %s", rep->str);
        ngx_http_aihub_scripts_check(rep);

    } else if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "aihub: swept the expired leases of %L periods",
                      rep->integer);
    }
}


ngx_int_t
ngx_http_aihub_period_key(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char                      *p;
    size_t                       len;
    time_t                       now;
    char                         id[AIHUB_PERIOD_ID_LEN + 1];
    int64_t                      start, end;
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);
    now = ngx_http_aihub_time(r);

    if (ctx->caller.key.rec.anchor > 0 && ctx->caller.key.rec.anchor <= now) {
        (void) aihub_period_current(ctx->caller.key.rec.anchor, now,
                                    &start, &end);

    } else {
        aihub_period_calendar(now, &start, &end);
    }

    ctx->quota.start = start;
    ctx->quota.end = end;

    (void) aihub_period_id(start, id);

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
    ngx_sprintf(p, AIHUB_RK_PERIOD "%V:%*s", &ctx->caller.key.account,
                (size_t) AIHUB_PERIOD_ID_LEN, id);

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
    p = ngx_sprintf(p, AIHUB_RK_LEASES "%V:%*s", &ctx->caller.key.account,
                    (size_t) AIHUB_PERIOD_ID_LEN, id);
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
    ngx_http_aihub_loc_conf_t   *alcf;
    ngx_http_aihub_main_conf_t  *amcf;

    if (ctx->quota.reserved) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub quota: already reserved");
        ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;
        return NGX_OK;
    }

    /* the worst case of tokens held against the TPM limit first */

    if (ngx_http_aihub_limit_hold(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->flow.state == NGX_HTTP_AIHUB_STATE_DONE) {
        return NGX_OK;
    }

    if (ngx_http_aihub_period_key(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);
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
        ctx->quota.reserved = 1;
        ctx->quota.held_cost = 0;
        ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;
        return NGX_OK;
    }

    /* else a lease for this request: a block the node keeps, if it may */

    ngx_memcpy(ctx->quota.lease, ctx->event_id, AIHUB_EVENT_ID_LEN);

    rc = ngx_http_aihub_quota_grant(r, ctx, ctx->quota.lease,
                                    leasable ? amcf->lease_calls : 1, 1,
                                    NULL, NULL);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        ctx->quota.pending = 1;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub quota: asking for a lease in \"%V\"",
                       &ctx->quota.period_key);
        return NGX_AGAIN;
    }

    /* Redis is not connected */

    if (alcf->failure_mode == NGX_HTTP_AIHUB_FAIL_OPEN) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aihub: redis unavailable, call of key %V passed "
                      "without a quota reservation (failing open)",
                      &ctx->caller.key.prefix);
        ctx->caller.from_stale = 1;
        ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;
        return NGX_OK;
    }

    ngx_http_aihub_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error",
                        "service_unavailable",
                        "The gateway cannot check quotas right now. "
                        "Please retry shortly.");
    return NGX_OK;
}


/*
 * Whether the node may keep a block lease for the account: not with the
 * Redis-global rate limit, whose every call must pass Redis.
 */

static ngx_uint_t
ngx_http_aihub_quota_leasable(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_loc_conf_t   *alcf;
    ngx_http_aihub_main_conf_t  *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    return amcf->lease_zone != NULL && amcf->lease_calls > 1
           && (alcf->global_rate_limit != NGX_HTTP_AIHUB_RATE_GLOBAL
               || ctx->caller.key.rec.rpm == 0);
}


/*
 * The grant script for a lease "id" of up to "want" calls (README,
 * "Leases"); "least" 1 for a request that waits for it (fn NULL: the
 * request is resumed by ngx_http_aihub_quota_done()), more for a refill
 * ahead (fn gets the reply).  NGX_OK sent, NGX_ERROR, or NGX_DECLINED when
 * Redis is not connected.
 */

ngx_int_t
ngx_http_aihub_quota_grant(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    u_char *id, ngx_uint_t want, ngx_uint_t least, redisCallbackFn *fn,
    void *data)
{
    ngx_int_t                    rc;
    ngx_str_t                    rl_key;
    const char                  *argv[19];
    size_t                       argvlen[19];
    u_char                       nums[10][NGX_INT64_LEN];
    ngx_uint_t                   i;
    uint64_t                     v[10], worst, prompt;
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    if (ngx_http_aihub_limit_global_args(r, ctx, &rl_key, &v[4]) != NGX_OK) {
        return NGX_ERROR;
    }

    v[0] = ctx->caller.key.rec.included;
    v[1] = ctx->caller.key.rec.overage ? 0 : 1;
    v[2] = ctx->caller.key.rec.spend_cap;

    /* the counters outlive the period by 40 days, for the worker */
    v[3] = (uint64_t) (ctx->quota.end - ngx_http_aihub_time(r))
           + 40 * 86400;

    v[5] = amcf->lease_time;

    /* the call's worst-case cost, held against a spend cap */

    v[6] = 0;

    if (ctx->caller.key.rec.spend_cap && ctx->route.model) {
        worst = ngx_http_aihub_limit_worst_tokens(ctx);
        prompt = (uint64_t) (ctx->body.prompt_estimate + 3) / 4;

        v[6] = (uint64_t) aihub_money_call_micros(prompt, worst - prompt,
                                             ctx->route.model->price_in,
                                             ctx->route.model->price_out);
    }

    v[7] = want;
    v[8] = least;

    /* the period's end on Redis's clock (this node's may be offset) */
    v[9] = (uint64_t) (ctx->quota.end - ngx_http_aihub_time(r)
                       + ngx_time()) * 1000;

    argv[0] = "EVALSHA";
    argvlen[0] = sizeof("EVALSHA") - 1;
    argv[1] = (const char *)
              ngx_http_aihub_script_sha(NGX_HTTP_AIHUB_SCRIPT_GRANT);
    argvlen[1] = NGX_HTTP_AIHUB_SCRIPT_SHA_LEN;
    argv[2] = "4";
    argvlen[2] = 1;
    argv[3] = (const char *) ctx->quota.period_key.data;
    argvlen[3] = ctx->quota.period_key.len;
    argv[4] = (const char *) rl_key.data;
    argvlen[4] = rl_key.len;
    argv[5] = (const char *) ctx->quota.leases_key.data;
    argvlen[5] = ctx->quota.leases_key.len;
    argv[6] = (const char *) ngx_http_aihub_leases_due.data;
    argvlen[6] = ngx_http_aihub_leases_due.len;

    for (i = 0; i < 5; i++) {
        argv[7 + i] = (const char *) nums[i];
        argvlen[7 + i] = ngx_sprintf(nums[i], "%uL", v[i]) - nums[i];
    }

    argv[12] = (const char *) id;
    argvlen[12] = AIHUB_EVENT_ID_LEN;

    for (i = 5; i < 7; i++) {
        argv[8 + i] = (const char *) nums[i];
        argvlen[8 + i] = ngx_sprintf(nums[i], "%uL", v[i]) - nums[i];
    }

    argv[15] = (const char *) ctx->quota.period_m.data;
    argvlen[15] = ctx->quota.period_m.len;

    for (i = 7; i < 10; i++) {
        argv[9 + i] = (const char *) nums[i];
        argvlen[9 + i] = ngx_sprintf(nums[i], "%uL", v[i]) - nums[i];
    }

    if (fn) {
        return ngx_http_aihub_redis_send(fn, data, 19, argv, argvlen)
               == NGX_OK ? NGX_OK : NGX_DECLINED;
    }

    ctx->quota.held_cost = v[6];

    rc = ngx_http_aihub_redis_call(r, &ctx->wait, ngx_http_aihub_quota_done,
                                   19, argv, argvlen);

    return (rc == NGX_OK || rc == NGX_ERROR) ? rc : NGX_DECLINED;
}


static void
ngx_http_aihub_quota_done(ngx_http_request_t *r, redisReply *reply)
{
    redisReply                 *e;
    ngx_http_aihub_ctx_t       *ctx;
    ngx_http_aihub_loc_conf_t  *alcf;

    ctx = ngx_http_aihub_get_ctx(r);
    ctx->flow.state = NGX_HTTP_AIHUB_STATE_NEW;
    ctx->quota.pending = 0;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (reply == NULL) {
        /*
         * no answer in time, or the connection lost: if Redis ran the
         * script, the lease it granted is given back (after the grant, on
         * the same connection, or a no-op on a new one)
         */
        ngx_http_aihub_quota_give_back(r->connection->log, ctx);
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || (reply->elements != 6 && reply->elements != 8)
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_INTEGER
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "aihub: quota script failed: %s", reply->str);
            ngx_http_aihub_scripts_check(reply);
        }

        if (alcf->failure_mode == NGX_HTTP_AIHUB_FAIL_OPEN) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "aihub: no quota answer from redis, call of key "
                          "%V passed (failing open)", &ctx->caller.key.prefix);
            ctx->caller.from_stale = 1;
            ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;

        } else {
            ngx_http_aihub_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "server_error", "service_unavailable",
                                "The gateway cannot check quotas right "
                                "now. Please retry shortly.");
        }

        ngx_http_aihub_resume(r);
        return;
    }

    e = reply->element[2];

    if (reply->element[0]->integer == 1) {
        ngx_http_aihub_quota_granted(r, ctx, reply);

    } else if (e->len == 4 && ngx_strncmp(e->str, "rate", 4) == 0) {
        ngx_http_aihub_limit_global_refused(r, ctx,
                                            reply->element[4]->integer,
                                            reply->element[5]->integer);

    } else if (ngx_http_aihub_quota_leasable(r, ctx)
               && ngx_http_aihub_lease_admit(r, ctx) == NGX_OK)
    {
        /* what is left of the budget is leased to this node already */
        ctx->quota.reserved = 1;
        ctx->quota.held_cost = 0;
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


/* the request's lease granted: its first call is this request's */

static void
ngx_http_aihub_quota_granted(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, redisReply *reply)
{
    uint64_t    base;
    ngx_uint_t  n;

    ctx->quota.reserved = 1;
    ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;

    base = (uint64_t) reply->element[1]->integer;
    n = (reply->elements == 8
         && reply->element[6]->type == REDIS_REPLY_INTEGER
         && reply->element[7]->type == REDIS_REPLY_INTEGER)
        ? (ngx_uint_t) reply->element[6]->integer : 1;

    /* a call beyond the included ones: its cost counts as overage */
    ctx->quota.overage_call = (base + 1 > ctx->caller.key.rec.included);

    /* as the script decided: held only by a call beyond the included */
    if (!ctx->quota.overage_call || !ctx->caller.key.rec.spend_cap) {
        ctx->quota.held_cost = 0;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub quota: lease of %ui calls after %uL used or "
                   "leased, of %uL included", n, base,
                   ctx->caller.key.rec.included);

    if (n > 1) {
        ngx_http_aihub_lease_keep(r, ctx, n, base,
                               (ngx_msec_t) reply->element[7]->integer);
    }

    if (reply->elements == 8) {
        ngx_http_aihub_limit_global_passed(r, ctx,
                                           reply->element[3]->integer,
                                           reply->element[5]->integer);
    }
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

    ctx = ngx_http_aihub_get_ctx(r);

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
 * and whether it held a cost, are unknown) goes back; the script gives
 * back at most what the lease holds, nothing if it does not exist.
 */

static void
ngx_http_aihub_quota_give_back(ngx_log_t *log, ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_quota_record(log, &ctx->quota.period_m, ctx->quota.lease,
                                'r', NGX_MAX_INT32_VALUE, NGX_MAX_INT32_VALUE,
                                NULL);
}


static void
ngx_http_aihub_quota_send_settle(ngx_log_t *log, ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t success)
{
    u_char  kind;

    kind = success ? (ctx->quota.overage_call ? 'o' : 's') : 'f';

    ngx_http_aihub_quota_record(log, &ctx->quota.period_m, ctx->quota.lease,
                                kind, 1, ctx->quota.held_cost,
                                success ? ctx : NULL);
}


/*
 * A record of the apply script (ngx_http_aihub_scripts.c): "m" the period
 * "<account>:<YYYYMMDD>", the lease, the kind, what it releases of the
 * lease, and a success's tokens and cost (ctx, or NULL: none).
 */

void
ngx_http_aihub_quota_record(ngx_log_t *log, ngx_str_t *m, u_char *id,
    u_char kind, uint64_t calls, uint64_t cost, ngx_http_aihub_ctx_t *ctx)
{
    ngx_uint_t   i;
    const char  *argv[NGX_HTTP_AIHUB_QUOTA_RECORD];
    size_t       argvlen[NGX_HTTP_AIHUB_QUOTA_RECORD];
    int64_t      v[6];
    u_char       nums[6][NGX_INT64_LEN + 1];

    v[0] = (int64_t) calls;
    v[1] = (int64_t) cost;
    v[2] = ctx ? ctx->usage.tokens.prompt : 0;
    v[3] = ctx ? ctx->usage.tokens.completion : 0;
    v[4] = ctx ? ctx->usage.tokens.total : 0;
    v[5] = ctx ? ctx->usage.cost_micros : 0;

    argv[0] = (const char *) m->data;
    argvlen[0] = m->len;
    argv[1] = (const char *) id;
    argvlen[1] = AIHUB_EVENT_ID_LEN;
    argv[2] = (const char *) &kind;
    argvlen[2] = 1;

    for (i = 0; i < 6; i++) {
        argv[3 + i] = (const char *) nums[i];
        argvlen[3 + i] = ngx_sprintf(nums[i], "%L", v[i]) - nums[i];
    }

    if (ngx_http_aihub_usage_record(log, argv, argvlen) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "aihub: could not queue the settle of lease %*s; "
                      "it is reclaimed when it expires",
                      (size_t) AIHUB_EVENT_ID_LEN, id);
    }
}
