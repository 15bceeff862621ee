/*
 * Monthly quotas.  One Redis hash per account and billing period,
 * "<prefix>period:<account>:<YYYYMMDD>", holds calls, prompt, completion,
 * total, cost and overage in micro-dollars (overage: the cost of the calls
 * beyond the included ones, which an optional spend cap limits).  A call
 * is reserved by one Lua script that checks and increments in one step, so
 * concurrent requests can never pass a hard quota; the same script applies
 * the Redis-global rate limit when a location asks for one.  The
 * reservation is released when the call fails; the tokens and cost are
 * added when it succeeded.
 */

#include "ngx_http_aihub_module.h"
#include "aihub_money.h"

#include <openssl/sha.h>


static void ngx_http_aihub_quota_done(ngx_http_request_t *r,
    redisReply *reply);
static void ngx_http_aihub_scripts_loaded(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_aihub_scripts_check(redisReply *reply);
static void ngx_http_aihub_settled(redisAsyncContext *ac, void *reply,
    void *privdata);


/*
 * KEYS[1] period hash, KEYS[2] rate limit state (may be unused)
 * ARGV: included, hard (0|1), spend cap, ttl seconds, global rpm (0: none)
 * Returns {allowed, calls, reason, remaining, retry_ms, reset_ms}.
 */

static const char  ngx_http_aihub_reserve_script[] =
    "local calls = tonumber(redis.call('HGET', KEYS[1], 'calls') or '0') "
    "local included = tonumber(ARGV[1]) "
    "local rpm = tonumber(ARGV[5]) "
    "local remaining, reset = 0, 0 "
    "if ARGV[2] == '1' and calls >= included then "
    "  return {0, calls, 'quota', 0, 0, 0} end "
    "local cap = tonumber(ARGV[3]) "
    "if cap > 0 and calls >= included then "
    "  local o = tonumber(redis.call('HGET', KEYS[1], 'overage') or '0') "
    "  if o >= cap then return {0, calls, 'spend', 0, 0, 0} end "
    "end "
    "if rpm > 0 then "
    "  local t = redis.call('TIME') "
    "  local now = t[1] * 1000 + math.floor(t[2] / 1000) "
    "  local interval = 60000 / rpm "
    "  local tat = tonumber(redis.call('GET', KEYS[2]) or '0') "
    "  if tat < now then tat = now end "
    "  if tat + interval - now > 60000 then "
    "    return {0, calls, 'rate', 0, "
    "            math.ceil(tat + interval - now - 60000), "
    "            math.ceil(tat - now)} end "
    "  tat = tat + interval "
    "  redis.call('SET', KEYS[2], tostring(tat), 'PX', 60000) "
    "  remaining = math.floor((60000 - (tat - now)) / interval) "
    "  reset = math.ceil(tat - now) "
    "end "
    "calls = redis.call('HINCRBY', KEYS[1], 'calls', 1) "
    "if calls == 1 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end "
    "return {1, calls, 'ok', remaining, 0, reset}";


static const char  ngx_http_aihub_settle_script[] =
    "for i = 1, #ARGV, 2 do "
    "  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) "
    "end "
    "return 1";


/*
 * The scripts run by their SHA1 (EVALSHA): Redis neither parses nor hashes
 * the text on every call.  They are loaded on every new connection, before
 * anything else is sent on it, so a restarted Redis has them again.
 */

typedef struct {
    const char                   *text;
    size_t                        len;
    u_char                        sha[2 * SHA_DIGEST_LENGTH];
} ngx_http_aihub_script_t;


static ngx_http_aihub_script_t  ngx_http_aihub_scripts[] = {
    { ngx_http_aihub_reserve_script,
      sizeof(ngx_http_aihub_reserve_script) - 1, "" },
    { ngx_http_aihub_settle_script,
      sizeof(ngx_http_aihub_settle_script) - 1, "" },
};

#define ngx_http_aihub_reserve  (&ngx_http_aihub_scripts[0])
#define ngx_http_aihub_settle   (&ngx_http_aihub_scripts[1])


void
ngx_http_aihub_scripts_init(void)
{
    u_char      md[SHA_DIGEST_LENGTH];
    ngx_uint_t  i;

    for (i = 0; i < sizeof(ngx_http_aihub_scripts)
                    / sizeof(ngx_http_aihub_script_t); i++)
    {
        SHA1((u_char *) ngx_http_aihub_scripts[i].text,
             ngx_http_aihub_scripts[i].len, md);
        ngx_hex_dump(ngx_http_aihub_scripts[i].sha, md, sizeof(md));
    }
}


void
ngx_http_aihub_scripts_load(void)
{
    ngx_uint_t   i;
    const char  *argv[3];
    size_t       argvlen[3];

    argv[0] = "SCRIPT";
    argvlen[0] = sizeof("SCRIPT") - 1;
    argv[1] = "LOAD";
    argvlen[1] = sizeof("LOAD") - 1;

    for (i = 0; i < sizeof(ngx_http_aihub_scripts)
                    / sizeof(ngx_http_aihub_script_t); i++)
    {
        argv[2] = ngx_http_aihub_scripts[i].text;
        argvlen[2] = ngx_http_aihub_scripts[i].len;

        (void) ngx_http_aihub_redis_send(ngx_http_aihub_scripts_loaded,
                                         &ngx_http_aihub_scripts[i],
                                         3, argv, argvlen);
    }
}


static void
ngx_http_aihub_scripts_loaded(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply               *rep = reply;
    ngx_http_aihub_script_t  *script = privdata;

    if (rep == NULL) {
        return;
    }

    if (rep->type != REDIS_REPLY_STRING
        || rep->len != sizeof(script->sha)
        || ngx_strncmp(rep->str, script->sha, sizeof(script->sha)) != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "aihub: redis did not load a script: %s",
                      rep->type == REDIS_REPLY_ERROR ? rep->str
                                                     : "unexpected reply");
    }
}


/* NOSCRIPT: someone flushed the scripts; load them again */

static void
ngx_http_aihub_scripts_check(redisReply *reply)
{
    if (reply && reply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "aihub: redis lost the quota scripts, loading them "
                      "again");
        ngx_http_aihub_scripts_load();
    }
}


ngx_int_t
ngx_http_aihub_period_key(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char                      *p;
    time_t                       now;
    char                         id[AIHUB_PERIOD_ID_LEN + 1];
    int64_t                      start, end;
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);
    now = ngx_http_aihub_time(r);

    if (ctx->key.rec.anchor > 0 && ctx->key.rec.anchor <= now) {
        (void) aihub_period_current(ctx->key.rec.anchor, now, &start, &end);

    } else {
        aihub_period_calendar(now, &start, &end);
    }

    ctx->period_start = start;
    ctx->period_end = end;

    (void) aihub_period_id(start, id);

    ctx->period_key.len = amcf->redis_prefix.len + sizeof("period::") - 1
                          + ctx->key.account.len + AIHUB_PERIOD_ID_LEN;
    ctx->period_key.data = ngx_pnalloc(r->pool, ctx->period_key.len);
    if (ctx->period_key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(ctx->period_key.data, amcf->redis_prefix.data,
                   amcf->redis_prefix.len);
    ngx_sprintf(p, "period:%V:%*s", &ctx->key.account,
                (size_t) AIHUB_PERIOD_ID_LEN, id);

    return NGX_OK;
}


ngx_int_t
ngx_http_aihub_quota_reserve(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_str_t                    rl_key;
    const char                  *argv[10];
    size_t                       argvlen[10];
    u_char                       nums[5][NGX_INT64_LEN];
    ngx_uint_t                   i;
    uint64_t                     v[5];
    ngx_http_aihub_loc_conf_t   *alcf;
    ngx_http_aihub_main_conf_t  *amcf;

    if (ctx->reserved) {
        ctx->step = NGX_HTTP_AIHUB_STEP_PROXY;
        return NGX_OK;
    }

    if (ngx_http_aihub_period_key(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    rl_key.len = amcf->redis_prefix.len + sizeof("rl:") - 1
                 + AIHUB_SHA256_HEX_LEN;
    rl_key.data = ngx_pnalloc(r->pool, rl_key.len);
    if (rl_key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(rl_key.data, amcf->redis_prefix.data,
                   amcf->redis_prefix.len);
    p = ngx_cpymem(p, "rl:", 3);
    ngx_memcpy(p, ctx->key_hash, AIHUB_SHA256_HEX_LEN);

    v[0] = ctx->key.rec.included;
    v[1] = ctx->key.rec.overage ? 0 : 1;
    v[2] = ctx->key.rec.spend_cap;

    /* the counters outlive the period by 40 days, for the worker */
    v[3] = (uint64_t) (ctx->period_end - ngx_http_aihub_time(r))
           + 40 * 86400;
    v[4] = alcf->global_rate_limit ? ctx->key.rec.rpm : 0;

    argv[0] = "EVALSHA";
    argvlen[0] = sizeof("EVALSHA") - 1;
    argv[1] = (const char *) ngx_http_aihub_reserve->sha;
    argvlen[1] = sizeof(ngx_http_aihub_reserve->sha);
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (const char *) ctx->period_key.data;
    argvlen[3] = ctx->period_key.len;
    argv[4] = (const char *) rl_key.data;
    argvlen[4] = rl_key.len;

    for (i = 0; i < 5; i++) {
        argv[5 + i] = (const char *) nums[i];
        argvlen[5 + i] = ngx_sprintf(nums[i], "%uL", v[i]) - nums[i];
    }

    rc = ngx_http_aihub_redis_call(r, ngx_http_aihub_quota_done,
                                   10, argv, argvlen);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        return NGX_AGAIN;
    }

    /* Redis is not connected */

    if (alcf->failure_mode == NGX_HTTP_AIHUB_FAIL_OPEN) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aihub: redis unavailable, call of key %V passed "
                      "without a quota reservation (failing open)",
                      &ctx->key.prefix);
        ctx->from_stale = 1;
        ctx->step = NGX_HTTP_AIHUB_STEP_PROXY;
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
    ctx->state = NGX_HTTP_AIHUB_STATE_NEW;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

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
                          "%V passed (failing open)", &ctx->key.prefix);
            ctx->from_stale = 1;
            ctx->step = NGX_HTTP_AIHUB_STEP_PROXY;

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
        ctx->reserved = 1;
        ctx->step = NGX_HTTP_AIHUB_STEP_PROXY;

        /* a call beyond the included ones: its cost counts as overage */
        ctx->overage_call = (reply->element[1]->type == REDIS_REPLY_INTEGER
                             && (uint64_t) reply->element[1]->integer
                                > ctx->key.rec.included);

        if (alcf->global_rate_limit && ctx->key.rec.rpm) {
            ctx->rl_requests.allowed = 1;
            ctx->rl_requests.limit = ctx->key.rec.rpm;
            ctx->rl_requests.remaining = reply->element[3]->integer;
            ctx->rl_requests.reset_ms = reply->element[5]->integer;
        }

    } else if (e->len == 4 && ngx_strncmp(e->str, "rate", 4) == 0) {
        ctx->rl_requests.allowed = 0;
        ctx->rl_requests.limit = ctx->key.rec.rpm;
        ctx->rl_requests.remaining = 0;
        ctx->rl_requests.retry_after_ms = reply->element[4]->integer;
        ctx->rl_requests.reset_ms = reply->element[5]->integer;

        ngx_http_aihub_deny(ctx, NGX_HTTP_TOO_MANY_REQUESTS, "requests",
                            "rate_limit_exceeded",
                            "Rate limit reached for requests per minute. "
                            "Please retry after the time in Retry-After.");

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

    ngx_http_aihub_resume(r);
}


/*
 * After the call: a success adds its tokens and cost to the period, any
 * other outcome gives the reserved call back.  Fire-and-forget; the worker
 * can recompute the counters from the ledger ("aihub-worker rebuild").
 */

void
ngx_http_aihub_quota_settle(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t success)
{
    ngx_uint_t   i, n, last;
    const char  *argv[16];
    size_t       argvlen[16];
    int64_t      v[6];
    u_char       nums[6][NGX_INT64_LEN + 1];

    static const char  *fields[] = {
        "calls", "prompt", "completion", "total", "cost", "overage"
    };

    if (!ctx->reserved || ctx->period_key.len == 0) {
        return;
    }

    ctx->reserved = 0;

    argv[0] = "EVALSHA";
    argvlen[0] = sizeof("EVALSHA") - 1;
    argv[1] = (const char *) ngx_http_aihub_settle->sha;
    argvlen[1] = sizeof(ngx_http_aihub_settle->sha);
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (const char *) ctx->period_key.data;
    argvlen[3] = ctx->period_key.len;

    v[0] = -1;
    v[1] = ctx->tokens.prompt;
    v[2] = ctx->tokens.completion;
    v[3] = ctx->tokens.total;
    v[4] = ctx->cost_micros;
    v[5] = ctx->cost_micros;

    /* success: the sums (overage too for a call beyond the included
     * ones); failure: the call given back */

    n = 4;
    last = success ? (ctx->overage_call ? 6 : 5) : 1;

    for (i = success ? 1 : 0; i < last; i++) {
        argv[n] = fields[i];
        argvlen[n++] = ngx_strlen(fields[i]);
        argv[n] = (const char *) nums[i];
        argvlen[n++] = ngx_sprintf(nums[i], "%L", v[i]) - nums[i];
    }

    (void) ngx_http_aihub_redis_send(ngx_http_aihub_settled, NULL, (int) n,
                                     argv, argvlen);
}


static void
ngx_http_aihub_settled(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *rep = reply;

    if (rep && rep->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "aihub: settling a call in redis failed: %s; "
                      "\"aihub-worker rebuild\" restores the counters",
                      rep->str);
        ngx_http_aihub_scripts_check(rep);
    }
}


/*
 * Cost in micro-dollars from prices per million tokens: prompt tokens at
 * the input price, everything else the provider counted (completion and,
 * when total exceeds prompt + completion, thinking tokens) at the output
 * price; rounded once, half up.
 */

int64_t
ngx_http_aihub_cost(ngx_http_aihub_model_t *m, ngx_http_aihub_tokens_t *t)
{
    if (m == NULL) {
        return 0;
    }

    return aihub_money_call_micros((uint64_t) t->prompt,
                                   (uint64_t) (t->total - t->prompt),
                                   m->price_in, m->price_out);
}
