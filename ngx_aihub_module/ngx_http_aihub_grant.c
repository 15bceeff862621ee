/*
 * The Redis side of the quota's leases: the grant script's arguments (a
 * request waiting for its lease, or a node refilling ahead), the records
 * that settle and return leases (through the batches of
 * ngx_http_aihub_usage.c), and the sweep of expired leases (one worker
 * process per node).  The scripts are ngx_http_aihub_scripts.c's.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_redis_refused.h"
#include "ngx_http_aihub_limit.h"
#include "ngx_http_aihub_usage.h"
#include "ngx_http_aihub_scripts.h"
#include "ngx_http_aihub_grant.h"

#include "aihub_money.h"
#include "aihub_usage_event.h"


static void ngx_http_aihub_swept(redisAsyncContext *ac, void *reply,
    void *privdata);


/* "<prefix>leases-due", and the sweep's timer (one worker process) */

static ngx_str_t    ngx_http_aihub_leases_due;
static ngx_str_t    ngx_http_aihub_sweep_prefix;
static ngx_msec_t   ngx_http_aihub_sweep_every;
static ngx_event_t  ngx_http_aihub_sweep_ev;

/* what a timer's data names in nginx's debug log */
static ngx_connection_t  ngx_http_aihub_sweep_ident;


static void ngx_http_aihub_sweep_handler(ngx_event_t *ev);


ngx_int_t
ngx_http_aihub_grant_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    if (ngx_http_aihub_redis_key(cycle->pool, &amcf->redis_prefix,
                                 AIHUB_RK_LEASES_DUE, 0,
                                 &ngx_http_aihub_leases_due)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_worker != 0) {
        return NGX_OK;
    }

    /* a lease is reclaimed within half a lease time of its expiry */

    ngx_http_aihub_sweep_prefix = amcf->redis_prefix;
    ngx_http_aihub_sweep_every = ngx_max(amcf->lease_time / 2, 500);

    ngx_http_aihub_sweep_ev.handler = ngx_http_aihub_sweep_handler;
    ngx_http_aihub_sweep_ev.log = cycle->log;
    ngx_http_aihub_sweep_ident.fd = (ngx_socket_t) -1;
    ngx_http_aihub_sweep_ev.data = &ngx_http_aihub_sweep_ident;
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

    /*
     * not connected: the next turn tries again; sent, its reply is awaited
     * like a request's, so a connection that went silent while this node
     * is idle is found by the watchdog, not by the next call
     */

    if (ngx_http_aihub_redis_send(ngx_http_aihub_swept, NULL, 5, argv,
                                  argvlen)
        == NGX_OK)
    {
        ngx_http_aihub_redis_sent();
    }

    ngx_add_timer(ev, ngx_http_aihub_sweep_every);
}


static void
ngx_http_aihub_swept(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *rep = reply;

    ngx_http_aihub_redis_replied(rep != NULL);

    if (ngx_http_aihub_redis_for_now(rep)) {
        ngx_http_aihub_redis_refused(ngx_cycle->log, "a sweep", rep->str);

    } else if (rep && rep->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "aihub: sweeping expired leases failed: %s", rep->str);
        ngx_http_aihub_scripts_check(rep);

    } else if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "aihub: swept the expired leases of %L periods",
                      rep->integer);
    }
}


/*
 * The grant script for a lease "id" of up to "want" calls (README,
 * "Leases"); "least" 1 for a request that waits for it (fn NULL: the
 * request is resumed by "handler"), more for a refill ahead (fn gets the
 * reply, and "data").  NGX_OK sent, NGX_ERROR, or NGX_DECLINED when
 * Redis is not connected.
 */

ngx_int_t
ngx_http_aihub_grant_send(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    u_char *id, ngx_uint_t want, ngx_uint_t least, redisCallbackFn *fn,
    void *data, ngx_http_aihub_redis_handler_pt handler)
{
    ngx_int_t                    rc;
    ngx_str_t                    rl_key;
    const char                  *argv[21];
    size_t                       argvlen[21];
    u_char                       nums[11][NGX_INT64_LEN];
    ngx_uint_t                   i;
    uint64_t                     v[11];
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    if (ngx_http_aihub_limit_global_args(r, ctx, &rl_key, &v[4]) != NGX_OK) {
        return NGX_ERROR;
    }

    v[0] = ctx->caller.key.rec.included;
    v[1] = ctx->caller.key.rec.overage ? 0 : 1;
    v[2] = ctx->caller.key.rec.spend_cap;

    /* the counters outlive the period, for the worker */
    v[3] = (uint64_t) (ctx->quota.end - ngx_http_aihub_time(r))
           + AIHUB_PERIOD_KEEP_SEC;

    v[5] = amcf->lease_time;

    /* the call's worst-case cost, held against a spend cap */
    v[6] = ngx_http_aihub_grant_worst_cost(ctx);

    v[7] = want;
    v[8] = least;

    /* the period's end on Redis's clock (this node's may be offset) */
    v[9] = (uint64_t) (ctx->quota.end - ngx_http_aihub_time(r)
                       + ngx_time()) * 1000;

    /* the smallest block: a larger "want" shrinks to it near the edge */
    v[10] = ngx_min(want, amcf->lease_calls);

    argv[0] = "EVALSHA";
    argvlen[0] = sizeof("EVALSHA") - 1;
    argv[1] = (const char *)
              ngx_http_aihub_script_sha(NGX_HTTP_AIHUB_SCRIPT_GRANT);
    argvlen[1] = NGX_HTTP_AIHUB_SCRIPT_SHA_LEN;
    argv[2] = "5";
    argvlen[2] = 1;
    argv[3] = (const char *) ctx->quota.period_key.data;
    argvlen[3] = ctx->quota.period_key.len;
    argv[4] = (const char *) rl_key.data;
    argvlen[4] = rl_key.len;
    argv[5] = (const char *) ctx->quota.leases_key.data;
    argvlen[5] = ctx->quota.leases_key.len;
    argv[6] = (const char *) ngx_http_aihub_leases_due.data;
    argvlen[6] = ngx_http_aihub_leases_due.len;
    argv[7] = (const char *) amcf->epoch_key.data;
    argvlen[7] = amcf->epoch_key.len;

    for (i = 0; i < 5; i++) {
        argv[8 + i] = (const char *) nums[i];
        argvlen[8 + i] = ngx_sprintf(nums[i], "%uL", v[i]) - nums[i];
    }

    argv[13] = (const char *) id;
    argvlen[13] = AIHUB_EVENT_ID_LEN;

    for (i = 5; i < 7; i++) {
        argv[9 + i] = (const char *) nums[i];
        argvlen[9 + i] = ngx_sprintf(nums[i], "%uL", v[i]) - nums[i];
    }

    argv[16] = (const char *) ctx->quota.period_m.data;
    argvlen[16] = ctx->quota.period_m.len;

    for (i = 7; i < 11; i++) {
        argv[10 + i] = (const char *) nums[i];
        argvlen[10 + i] = ngx_sprintf(nums[i], "%uL", v[i]) - nums[i];
    }

    if (fn) {
        return ngx_http_aihub_redis_send(fn, data, 21, argv, argvlen)
               == NGX_OK ? NGX_OK : NGX_DECLINED;
    }

    ctx->quota.held_cost = v[6];

    /* sent again if the connection breaks: a second run cancels the
       first one's lease and grants anew */
    rc = ngx_http_aihub_redis_call(r, &ctx->wait, handler, 1, 21, argv,
                                   argvlen);

    return (rc == NGX_OK || rc == NGX_ERROR) ? rc : NGX_DECLINED;
}


/*
 * What a call may cost at most, held against its account's spend cap (0
 * without a cap): its prompt estimate and the most it may complete, at
 * its model's prices, or at those of model "m" (a fallback route).
 */

uint64_t
ngx_http_aihub_grant_worst_cost(ngx_http_aihub_ctx_t *ctx)
{
    return ngx_http_aihub_grant_worst_cost_at(ctx, ctx->route.model);
}


uint64_t
ngx_http_aihub_grant_worst_cost_at(ngx_http_aihub_ctx_t *ctx,
    ngx_http_aihub_model_t *m)
{
    uint64_t  worst, prompt;

    if (!ctx->caller.key.rec.spend_cap || m == NULL) {
        return 0;
    }

    worst = ngx_http_aihub_limit_worst_tokens(ctx);
    prompt = (uint64_t) (ctx->body.prompt_estimate + 3) / 4;

    return (uint64_t) aihub_money_call_micros(prompt, worst - prompt,
                                              m->price_in, m->price_out);
}


/*
 * A record of the apply script (ngx_http_aihub_scripts.c): "m" the period
 * "<account>:<YYYYMMDD>", the lease, the kind, what it releases of the
 * lease, and a success's tokens and cost (ctx, or NULL: none), or for a
 * return, its unused tokens of the global rate limit as time in µs (in
 * the place of the prompt tokens).
 */

void
ngx_http_aihub_settle_record(ngx_log_t *log, ngx_str_t *m, u_char *id,
    u_char kind, uint64_t calls, uint64_t cost, uint64_t rate_us,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_settle_rec_t  rec;

    if (m->len > sizeof(rec.m)) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "aihub: period \"%V\" too long for a settle record",
                      m);
        return;
    }

    ngx_memcpy(rec.m, m->data, m->len);
    rec.m_len = m->len;
    ngx_memcpy(rec.id, id, AIHUB_EVENT_ID_LEN);
    rec.kind = kind;

    rec.v[0] = (int64_t) calls;
    rec.v[1] = (int64_t) cost;
    rec.v[2] = ctx ? ctx->usage.tokens.prompt : (int64_t) rate_us;
    rec.v[3] = ctx ? ctx->usage.tokens.completion : 0;
    rec.v[4] = ctx ? ctx->usage.tokens.total : 0;
    rec.v[5] = ctx ? ctx->usage.cost_micros : 0;

    if (ngx_http_aihub_usage_record(log, &rec) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "aihub: could not queue the settle of lease %*s; "
                      "it is reclaimed when it expires",
                      (size_t) AIHUB_EVENT_ID_LEN, id);
    }
}
