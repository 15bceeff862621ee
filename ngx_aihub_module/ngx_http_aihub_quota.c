/*
 * Monthly quotas.  One Redis hash per account and billing period,
 * "<prefix>period:<account>:<YYYYMMDD>", holds calls, prompt, completion,
 * total, cost and overage in micro-dollars (overage: the cost of the calls
 * beyond the included ones, which an optional spend cap limits).  A call
 * is reserved by one Lua script that checks and increments in one step, so
 * concurrent requests can never pass a hard quota; the same script applies
 * the Redis-global rate limit when a location asks for one.
 *
 * Each reservation is a lease of one call (README, "Leases"): its id is
 * the request's event id, and it is listed with its expiry in
 * "<prefix>leases:<account>:<YYYYMMDD>".  The reserve script first
 * reclaims the account's expired leases (their calls given back), so a
 * reservation whose request is gone, whose reply was lost, or whose worker
 * process was killed heals within aihub_lease_time.  The settle (the call
 * given back on failure; its tokens and cost added on success) names the
 * lease, goes through the confirmed, resent buffer of the usage events,
 * and applies once: a resent settle finds its lease gone and does nothing.
 * A reserve that timed out, or whose request went away before its reply,
 * is given back the same way at once.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_limit.h"
#include "ngx_http_aihub_usage.h"
#include "ngx_http_aihub_scripts.h"
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




/* "<prefix>leases-due", and the sweep's timer (one worker process) */

static ngx_str_t    ngx_http_aihub_leases_due;
static ngx_str_t    ngx_http_aihub_sweep_prefix;
static ngx_msec_t   ngx_http_aihub_sweep_every;
static ngx_uint_t   ngx_http_aihub_sweep_ttl;
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
    ngx_http_aihub_sweep_ttl = 72 * 86400;

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
    u_char       ttl[NGX_INT_T_LEN];
    const char  *argv[6];
    size_t       argvlen[6];

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
    argv[5] = (const char *) ttl;
    argvlen[5] = ngx_sprintf(ttl, "%ui", ngx_http_aihub_sweep_ttl) - ttl;

    /* not connected: the next turn tries again */

    (void) ngx_http_aihub_redis_send(ngx_http_aihub_swept, NULL, 6, argv,
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
                                      2 * amcf->redis_prefix.len + 2 * len
                                      + sizeof(AIHUB_RK_LEASES) - 1
                                      + sizeof(AIHUB_RK_LEASES_RECLAIMED)
                                      - 1);
    if (ctx->quota.leases_key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(ctx->quota.leases_key.data, amcf->redis_prefix.data,
                   amcf->redis_prefix.len);
    p = ngx_sprintf(p, AIHUB_RK_LEASES "%V:%*s", &ctx->caller.key.account,
                    (size_t) AIHUB_PERIOD_ID_LEN, id);
    ctx->quota.leases_key.len = p - ctx->quota.leases_key.data;

    ctx->quota.reclaimed_key.data = p;
    p = ngx_cpymem(p, amcf->redis_prefix.data, amcf->redis_prefix.len);
    p = ngx_sprintf(p, AIHUB_RK_LEASES_RECLAIMED "%V:%*s",
                    &ctx->caller.key.account, (size_t) AIHUB_PERIOD_ID_LEN,
                    id);
    ctx->quota.reclaimed_key.len = p - ctx->quota.reclaimed_key.data;

    return NGX_OK;
}


ngx_int_t
ngx_http_aihub_quota_step(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t                    rc;
    ngx_str_t                    rl_key;
    size_t                       skip;
    const char                  *argv[17];
    size_t                       argvlen[17];
    u_char                       nums[7][NGX_INT64_LEN];
    ngx_uint_t                   i;
    uint64_t                     v[7], worst, prompt;
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
        /* a reserve whose request goes away is given back */
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_http_aihub_quota_cleanup;
        cln->data = r;
        ctx->quota.cleanup = 1;
    }

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

    argv[0] = "EVALSHA";
    argvlen[0] = sizeof("EVALSHA") - 1;
    argv[1] = (const char *)
              ngx_http_aihub_script_sha(NGX_HTTP_AIHUB_SCRIPT_RESERVE);
    argvlen[1] = NGX_HTTP_AIHUB_SCRIPT_SHA_LEN;
    argv[2] = "5";
    argvlen[2] = 1;
    argv[3] = (const char *) ctx->quota.period_key.data;
    argvlen[3] = ctx->quota.period_key.len;
    argv[4] = (const char *) rl_key.data;
    argvlen[4] = rl_key.len;
    argv[5] = (const char *) ctx->quota.leases_key.data;
    argvlen[5] = ctx->quota.leases_key.len;
    argv[6] = (const char *) ctx->quota.reclaimed_key.data;
    argvlen[6] = ctx->quota.reclaimed_key.len;
    argv[7] = (const char *) ngx_http_aihub_leases_due.data;
    argvlen[7] = ngx_http_aihub_leases_due.len;

    for (i = 0; i < 5; i++) {
        argv[8 + i] = (const char *) nums[i];
        argvlen[8 + i] = ngx_sprintf(nums[i], "%uL", v[i]) - nums[i];
    }

    argv[13] = (const char *) ctx->event_id;
    argvlen[13] = AIHUB_EVENT_ID_LEN;
    argv[14] = (const char *) nums[5];
    argvlen[14] = ngx_sprintf(nums[5], "%uL", v[5]) - nums[5];
    argv[15] = (const char *) nums[6];
    argvlen[15] = ngx_sprintf(nums[6], "%uL", v[6]) - nums[6];

    /* "<account>:<YYYYMMDD>", the period key after "<prefix>period:" */

    skip = amcf->redis_prefix.len + sizeof(AIHUB_RK_PERIOD) - 1;
    argv[16] = (const char *) ctx->quota.period_key.data + skip;
    argvlen[16] = ctx->quota.period_key.len - skip;

    ctx->quota.held_cost = v[6];

    rc = ngx_http_aihub_redis_call(r, &ctx->wait, ngx_http_aihub_quota_done,
                                   17, argv, argvlen);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        ctx->quota.pending = 1;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub quota: reserving in \"%V\"",
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
         * script, the lease it granted is given back (after the reserve,
         * on the same connection, or a no-op on a new one)
         */
        ngx_http_aihub_quota_give_back(r->connection->log, ctx);
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 6
        || reply->element[0]->type != REDIS_REPLY_INTEGER
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
        ctx->quota.reserved = 1;
        ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;

        /* a call beyond the included ones: its cost counts as overage */
        ctx->quota.overage_call =
            (reply->element[1]->type == REDIS_REPLY_INTEGER
             && (uint64_t) reply->element[1]->integer
                > ctx->caller.key.rec.included);

        /* as the script decided: held only by a call beyond the included */
        if (!ctx->quota.overage_call || !ctx->caller.key.rec.spend_cap) {
            ctx->quota.held_cost = 0;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub quota: call %L of %uL included reserved",
                       reply->element[1]->integer,
                       ctx->caller.key.rec.included);

        ngx_http_aihub_limit_global_passed(r, ctx,
                                           reply->element[3]->integer,
                                           reply->element[5]->integer);

    } else if (e->len == 4 && ngx_strncmp(e->str, "rate", 4) == 0) {
        ngx_http_aihub_limit_global_refused(r, ctx,
                                            reply->element[4]->integer,
                                            reply->element[5]->integer);

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


/*
 * After the call: a success adds its tokens and cost to the period, any
 * other outcome gives the reserved call back.  Through the confirmed
 * buffer of the usage events: resent until Redis confirms it, applied
 * once (by lease id).
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


/* the request is gone: a reserve still in flight, or held, goes back */

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
                       "aihub quota: request gone, lease given back");

        ctx->quota.reserved = 0;
        ngx_http_aihub_quota_send_settle(ngx_cycle->log, ctx, 0);
    }
}


/*
 * A reserve whose reply never came: whether the script held a cost for it
 * (a call beyond the included ones) is unknown, so both forms of its lease
 * are given back; the one that does not exist is a no-op.
 */

static void
ngx_http_aihub_quota_give_back(ngx_log_t *log, ngx_http_aihub_ctx_t *ctx)
{
    uint64_t  held;

    held = ctx->quota.held_cost;

    ngx_http_aihub_quota_send_settle(log, ctx, 0);

    if (held) {
        ctx->quota.held_cost = 0;
        ngx_http_aihub_quota_send_settle(log, ctx, 0);
        ctx->quota.held_cost = held;
    }
}


static void
ngx_http_aihub_quota_send_settle(ngx_log_t *log, ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t success)
{
    ngx_uint_t   i, n;
    const char  *argv[19];
    size_t       argvlen[19];
    int64_t      v[5];
    u_char       nums[5][NGX_INT64_LEN + 1];
    u_char       lease[AIHUB_EVENT_ID_LEN + 1 + NGX_INT64_LEN];
    u_char       held[NGX_INT64_LEN];

    static const char  *fields[] = {
        AIHUB_CF_PROMPT, AIHUB_CF_COMPLETION, AIHUB_CF_TOTAL,
        AIHUB_CF_COST, AIHUB_CF_OVERAGE
    };

    argv[0] = "EVALSHA";
    argvlen[0] = sizeof("EVALSHA") - 1;
    argv[1] = (const char *)
              ngx_http_aihub_script_sha(NGX_HTTP_AIHUB_SCRIPT_SETTLE);
    argvlen[1] = NGX_HTTP_AIHUB_SCRIPT_SHA_LEN;
    argv[2] = "3";
    argvlen[2] = 1;
    argv[3] = (const char *) ctx->quota.period_key.data;
    argvlen[3] = ctx->quota.period_key.len;
    argv[4] = (const char *) ctx->quota.leases_key.data;
    argvlen[4] = ctx->quota.leases_key.len;
    argv[5] = (const char *) ctx->quota.reclaimed_key.data;
    argvlen[5] = ctx->quota.reclaimed_key.len;
    argv[6] = (const char *) lease;
    argvlen[6] = ngx_sprintf(lease, "%*s:%uL", (size_t) AIHUB_EVENT_ID_LEN,
                             ctx->event_id, ctx->quota.held_cost)
                 - lease;
    argv[7] = success ? "1" : "0";
    argvlen[7] = 1;
    argv[8] = (const char *) held;
    argvlen[8] = ngx_sprintf(held, "%uL", ctx->quota.held_cost) - held;

    n = 9;

    if (success) {
        v[0] = ctx->usage.tokens.prompt;
        v[1] = ctx->usage.tokens.completion;
        v[2] = ctx->usage.tokens.total;
        v[3] = ctx->usage.cost_micros;
        v[4] = ctx->usage.cost_micros;

        /* the overage too for a call beyond the included ones */

        for (i = 0; i < (ctx->quota.overage_call ? 5 : 4); i++) {
            argv[n] = fields[i];
            argvlen[n++] = ngx_strlen(fields[i]);
            argv[n] = (const char *) nums[i];
            argvlen[n++] = ngx_sprintf(nums[i], "%L", v[i]) - nums[i];
        }
    }

    if (ngx_http_aihub_usage_command(log, (int) n, argv, argvlen) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "aihub: could not queue the settle of lease %*s; "
                      "it is reclaimed when it expires",
                      (size_t) AIHUB_EVENT_ID_LEN, ctx->event_id);
    }
}
