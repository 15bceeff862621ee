/*
 * Every rate limit, in one place: requests and tokens per minute.  The
 * limits are the account's (the plan's, or the account's override): all
 * keys of an account draw on one state, so minting keys never multiplies
 * them.
 *
 * Local (the default, "aihub_rate_limit local"): exact for this node, the
 * state in the shared zone, the arithmetic in aihub_ratelimit.c.  The limit
 * step takes a request slot before the body is read, so a key over its
 * limit costs no parsing; tokens per minute are only checked there (the
 * bucket must not be overdrawn).  Once the body is known, the call's worst
 * case of tokens is held (charged) before it is forwarded, so concurrent
 * calls cannot pass the limit together, and the log phase replaces it by
 * the actual usage; a request refused later gives its slot and its tokens
 * back (the verdict).
 *
 * Global ("aihub_rate_limit global"): requests per minute for the whole
 * cluster, in Redis.  The check must be atomic with the quota reservation
 * (a call refused by its quota takes no slot), so its Lua text below runs
 * inside the quota script, and the quota step hands its answer here.
 * Tokens per minute stay local, checked, held and charged as above.
 *
 * Either way the answer carries the x-ratelimit-* headers, and Retry-After
 * on our own 429.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_zone.h"
#include "ngx_http_aihub_limit.h"


typedef struct {
    ngx_http_aihub_ctx_t         *ctx;
    uint64_t                      now;
    uint64_t                      tokens;
    uint64_t                      held;
    ngx_uint_t                    refund_request;
    ngx_uint_t                    requests;     /* checked here (local) */
} ngx_http_aihub_limit_op_t;


/* a call that names no bound on its answer is held at this many tokens */
#define NGX_HTTP_AIHUB_WORST_ANSWER   4096


static void ngx_http_aihub_limit_cleanup(void *data);
static void ngx_http_aihub_limit_check(aihub_rl_state_t *sreq,
    aihub_rl_state_t *stok, void *data);
static void ngx_http_aihub_limit_update(aihub_rl_state_t *sreq,
    aihub_rl_state_t *stok, void *data);
static void ngx_http_aihub_limit_hold_tokens(aihub_rl_state_t *sreq,
    aihub_rl_state_t *stok, void *data);


/*
 * The limit step.  NGX_OK always: over a limit, the verdict is given.  With
 * "aihub_rate_limit global" the quota step applies the requests' limit
 * instead, and only the tokens' is checked here.
 */

ngx_int_t
ngx_http_aihub_limit_step(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_aihub_limit_t     *lim = &ctx->limit;
    ngx_http_aihub_limit_op_t   op;
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    ctx->flow.step = NGX_HTTP_AIHUB_STEP_BODY;

    op.requests = (alcf->global_rate_limit != NGX_HTTP_AIHUB_RATE_GLOBAL);

    if (!op.requests && ctx->caller.key.rec.tpm == 0) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub limit: global, left to the quota step");
        return NGX_OK;
    }

    ngx_memzero(&lim->requests, sizeof(aihub_rl_result_t));
    ngx_memzero(&lim->tokens, sizeof(aihub_rl_result_t));
    lim->requests.allowed = 1;
    lim->tokens.allowed = 1;

    op.ctx = ctx;
    op.now = ngx_http_aihub_now_ms();

    (void) ngx_http_aihub_zone_rate(r, ctx->caller.key.rec.account_id,
                                    ngx_http_aihub_limit_check, &op);

    if (lim->requests.allowed && lim->tokens.allowed) {
        /* given back if the request is refused later (verdict) */
        lim->taken = (op.requests && ctx->caller.key.rec.rpm != 0);

        if (!lim->cleanup
            && (lim->taken || ctx->caller.key.rec.tpm != 0))
        {
            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln == NULL) {
                return NGX_ERROR;
            }

            cln->handler = ngx_http_aihub_limit_cleanup;
            cln->data = r;
            lim->cleanup = 1;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub limit: passed, %uL requests and %uL tokens "
                       "left", lim->requests.remaining,
                       lim->tokens.remaining);
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub limit: refused, %s per minute",
                   lim->requests.allowed ? "tokens" : "requests");

    ngx_http_aihub_deny(ctx, NGX_HTTP_TOO_MANY_REQUESTS, "requests",
                        "rate_limit_exceeded",
                        lim->requests.allowed
                        ? "Rate limit reached for tokens per minute. "
                          "Please retry after the time in Retry-After."
                        : "Rate limit reached for requests per minute. "
                          "Please retry after the time in Retry-After.");

    return NGX_OK;
}


/* under the zone's lock */

static void
ngx_http_aihub_limit_check(aihub_rl_state_t *sreq, aihub_rl_state_t *stok,
    void *data)
{
    ngx_http_aihub_limit_op_t  *op = data;

    uint64_t                  now;
    aihub_rl_state_t          local_req, local_tok;
    aihub_rl_result_t        *req, *tok;
    ngx_http_aihub_record_t  *rec;

    now = op->now;
    rec = &op->ctx->caller.key.rec;
    req = &op->ctx->limit.requests;
    tok = &op->ctx->limit.tokens;

    if (sreq == NULL) {
        /* no room in the zone: limit this request on its own */
        ngx_memzero(&local_req, sizeof(aihub_rl_state_t));
        ngx_memzero(&local_tok, sizeof(aihub_rl_state_t));
        sreq = &local_req;
        stok = &local_tok;
    }

    if (rec->tpm) {
        aihub_rl_check(stok, now, rec->tpm, 1, tok);

        /* a check, not a charge: give the probe unit back */
        if (tok->allowed) {
            aihub_rl_refund(stok, now, rec->tpm, 1);
            tok->remaining++;

            if (tok->remaining >= rec->tpm) {
                tok->remaining = rec->tpm;
                tok->reset_ms = 0;
            }
        }
    }

    if (rec->rpm && op->requests && tok->allowed) {
        aihub_rl_check(sreq, now, rec->rpm, 1, req);
    }
}


/*
 * The most tokens a call can use: the prompt estimate (the rule of
 * README "Estimates") plus its bound on the answer (max_completion_tokens
 * or max_tokens, else the plan's max_tokens, else a default).
 */

uint64_t
ngx_http_aihub_limit_worst_tokens(ngx_http_aihub_ctx_t *ctx)
{
    uint64_t  answer;

    if (ctx->body.max_tokens > 0) {
        answer = (uint64_t) ctx->body.max_tokens;

    } else if (ctx->caller.key.rec.max_tokens) {
        answer = ctx->caller.key.rec.max_tokens;

    } else {
        answer = NGX_HTTP_AIHUB_WORST_ANSWER;
    }

    return (uint64_t) (ctx->body.prompt_estimate + 3) / 4 + answer;
}


/*
 * Before the call is forwarded: its worst case of tokens, at most the
 * whole limit (so a call with no bound can still pass an idle minute), is
 * charged to the tokens-per-minute limit.  NGX_OK always: over the limit,
 * the verdict is given.
 */

ngx_int_t
ngx_http_aihub_limit_hold(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    uint64_t                    worst;
    ngx_http_aihub_limit_op_t   op;

    if (ctx->caller.key.rec.tpm == 0 || ctx->limit.held) {
        return NGX_OK;
    }

    worst = ngx_http_aihub_limit_worst_tokens(ctx);

    if (worst > ctx->caller.key.rec.tpm) {
        worst = ctx->caller.key.rec.tpm;
    }

    op.ctx = ctx;
    op.now = ngx_http_aihub_now_ms();
    op.tokens = worst;

    ngx_memzero(&ctx->limit.tokens, sizeof(aihub_rl_result_t));
    ctx->limit.tokens.allowed = 1;

    (void) ngx_http_aihub_zone_rate(r, ctx->caller.key.rec.account_id,
                                    ngx_http_aihub_limit_hold_tokens, &op);

    if (ctx->limit.tokens.allowed) {
        ctx->limit.held = worst;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub limit: %uL tokens held", worst);
        return NGX_OK;
    }

    ngx_http_aihub_deny(ctx, NGX_HTTP_TOO_MANY_REQUESTS, "tokens",
                        "rate_limit_exceeded",
                        "Rate limit reached for tokens per minute. "
                        "Please retry after the time in Retry-After.");

    return NGX_OK;
}


static void
ngx_http_aihub_limit_hold_tokens(aihub_rl_state_t *sreq,
    aihub_rl_state_t *stok, void *data)
{
    ngx_http_aihub_limit_op_t  *op = data;

    aihub_rl_state_t  local;

    if (stok == NULL) {
        ngx_memzero(&local, sizeof(aihub_rl_state_t));
        stok = &local;
    }

    aihub_rl_check(stok, op->now, op->ctx->caller.key.rec.tpm, op->tokens,
                   &op->ctx->limit.tokens);
}


/*
 * A request gone before it reached the provider (its client left while
 * its body came, while it waited in a priority lane or for its grant):
 * its request slot and held tokens go back, as a refused call's do.
 * Before, they stayed taken for the minute.
 */

static void
ngx_http_aihub_limit_cleanup(void *data)
{
    ngx_http_request_t *r = data;

    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx_anchored(r);

    if (ctx != NULL && !ctx->flow.forwarded) {
        ngx_http_aihub_limit_refund(r, ctx);
    }
}


/* a refused request gives its request slot and its held tokens back */

void
ngx_http_aihub_limit_refund(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_limit_op_t  op;

    if (!ctx->limit.taken && !ctx->limit.held) {
        return;
    }

    op.ctx = ctx;
    op.now = ngx_http_aihub_now_ms();
    op.tokens = 0;
    op.held = ctx->limit.held;
    op.refund_request = ctx->limit.taken;

    ctx->limit.taken = 0;
    ctx->limit.held = 0;

    (void) ngx_http_aihub_zone_rate(r, ctx->caller.key.rec.account_id,
                                    ngx_http_aihub_limit_update, &op);
}


/*
 * A settled call charges the tokens it used, in place of those it held
 * (a failed call: 0, its held tokens go back).
 */

void
ngx_http_aihub_limit_charge(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    uint64_t tokens)
{
    ngx_http_aihub_limit_op_t  op;

    op.ctx = ctx;
    op.now = ngx_http_aihub_now_ms();
    op.tokens = tokens;
    op.held = ctx->limit.held;
    op.refund_request = 0;

    ctx->limit.held = 0;

    (void) ngx_http_aihub_zone_rate(r, ctx->caller.key.rec.account_id,
                                    ngx_http_aihub_limit_update, &op);
}


static void
ngx_http_aihub_limit_update(aihub_rl_state_t *sreq, aihub_rl_state_t *stok,
    void *data)
{
    ngx_http_aihub_limit_op_t  *op = data;

    ngx_http_aihub_record_t  *rec;

    if (sreq == NULL) {
        return;
    }

    rec = &op->ctx->caller.key.rec;

    if (rec->tpm && op->tokens > op->held) {
        aihub_rl_charge(stok, op->now, rec->tpm, op->tokens - op->held);

    } else if (rec->tpm && op->held > op->tokens) {
        aihub_rl_refund(stok, op->now, rec->tpm, op->held - op->tokens);
    }

    if (rec->rpm && op->refund_request) {
        aihub_rl_refund(sreq, op->now, rec->rpm, 1);
    }
}


/*
 * The global limit's arguments to the quota script: the key of its state in
 * Redis, and the rate (0: no global limit for this call).
 */

ngx_int_t
ngx_http_aihub_limit_global_args(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_str_t *key, uint64_t *rpm)
{
    u_char                      *p;
    ngx_http_aihub_loc_conf_t   *alcf;
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    /* the account's: every key of it shares the limit */

    key->data = ngx_pnalloc(r->pool, amcf->redis_prefix.len
                                     + sizeof(AIHUB_RK_RATE) - 1
                                     + NGX_INT64_LEN);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, amcf->redis_prefix.data,
                   amcf->redis_prefix.len);
    p = ngx_sprintf(p, AIHUB_RK_RATE "%uL", ctx->caller.key.rec.account_id);
    key->len = p - key->data;

    *rpm = (alcf->global_rate_limit == NGX_HTTP_AIHUB_RATE_GLOBAL)
           ? ctx->caller.key.rec.rpm : 0;

    return NGX_OK;
}


/* the quota script let the call pass: what the global limit has left */

void
ngx_http_aihub_limit_global_passed(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, int64_t remaining, int64_t reset_ms)
{
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (alcf->global_rate_limit != NGX_HTTP_AIHUB_RATE_GLOBAL
        || ctx->caller.key.rec.rpm == 0)
    {
        return;
    }

    ctx->limit.requests.allowed = 1;
    ctx->limit.requests.limit = ctx->caller.key.rec.rpm;
    ctx->limit.requests.remaining = remaining;
    ctx->limit.requests.reset_ms = reset_ms;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub limit: global, passed, %L requests left",
                   remaining);
}


/* the quota script refused the call on the global limit */

void
ngx_http_aihub_limit_global_refused(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, int64_t retry_ms, int64_t reset_ms)
{
    ctx->limit.requests.allowed = 0;
    ctx->limit.requests.limit = ctx->caller.key.rec.rpm;
    ctx->limit.requests.remaining = 0;
    ctx->limit.requests.retry_after_ms = retry_ms;
    ctx->limit.requests.reset_ms = reset_ms;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub limit: global, refused, retry in %L ms", retry_ms);

    ngx_http_aihub_deny(ctx, NGX_HTTP_TOO_MANY_REQUESTS, "requests",
                        "rate_limit_exceeded",
                        "Rate limit reached for requests per minute. "
                        "Please retry after the time in Retry-After.");
}


/*
 * x-ratelimit-{limit,remaining,reset}-{requests,tokens} as OpenAI sends
 * them, and Retry-After on our own 429.
 */

ngx_int_t
ngx_http_aihub_limit_headers(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char             *p;
    size_t              len;
    ngx_uint_t          i;
    aihub_rl_result_t  *res;
    uint64_t            limit, retry;

    static const char  *names[2][3] = {
        { "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
          "x-ratelimit-reset-requests" },
        { "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
          "x-ratelimit-reset-tokens" }
    };

    retry = 0;

    for (i = 0; i < 2; i++) {
        res = (i == 0) ? &ctx->limit.requests : &ctx->limit.tokens;
        limit = (i == 0) ? ctx->caller.key.rec.rpm : ctx->caller.key.rec.tpm;

        if (limit == 0 || res->limit == 0) {
            continue;
        }

        p = ngx_pnalloc(r->pool, 2 * NGX_INT64_LEN + AIHUB_DURATION_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        len = ngx_sprintf(p, "%uL", res->limit) - p;
        if (ngx_http_aihub_add_header(r, names[i][0], p, len) != NGX_OK) {
            return NGX_ERROR;
        }

        p += len;
        len = ngx_sprintf(p, "%uL", res->remaining) - p;
        if (ngx_http_aihub_add_header(r, names[i][1], p, len) != NGX_OK) {
            return NGX_ERROR;
        }

        p += len;
        len = aihub_fmt_duration(res->reset_ms, (char *) p);
        if (ngx_http_aihub_add_header(r, names[i][2], p, len) != NGX_OK) {
            return NGX_ERROR;
        }

        if (!res->allowed && res->retry_after_ms > retry) {
            retry = res->retry_after_ms;
        }
    }

    if (retry && r->headers_out.status == NGX_HTTP_TOO_MANY_REQUESTS) {
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        len = ngx_sprintf(p, "%uL", retry == AIHUB_RL_NEVER
                                    ? 60 : aihub_rl_retry_after_sec(retry))
              - p;

        if (ngx_http_aihub_add_header(r, "Retry-After", p, len) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
