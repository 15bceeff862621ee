/*
 * The log phase settles a call: a call the provider answered successfully
 * keeps its reserved quota and adds its tokens and cost (and charges the
 * tokens-per-minute limit); anything else gives the reservation back.
 * Every call the provider answered becomes a usage event.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_usage.h"
#include "ngx_http_aihub_limit.h"
#include "ngx_http_aihub_quota.h"
#include "ngx_http_aihub_log.h"
#include "aihub_money.h"


static ngx_int_t ngx_http_aihub_log_call(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_log_event(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static void ngx_http_aihub_tokens_settle(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static int64_t ngx_http_aihub_cost(ngx_http_aihub_model_t *m,
    ngx_http_aihub_tokens_t *t);


/*
 * The log phase settles a call: a call the provider answered successfully
 * keeps its reserved quota and adds its tokens and cost; anything else
 * gives the reservation back.  Every call the provider answered becomes a
 * usage event.
 */

ngx_int_t
ngx_http_aihub_log_handler(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx_anchored(r);

    if (ctx == NULL || r != r->main || !ctx->flow.forwarded
        || ctx->usage.emitted)
    {
        return NGX_OK;
    }

    ctx->usage.emitted = 1;

    /*
     * the call's settle and its event leave in the same batch, applied
     * at once: the counters and the stream (the ledger) always agree
     */

    ngx_http_aihub_usage_hold();
    rc = ngx_http_aihub_log_call(r, ctx);
    ngx_http_aihub_usage_release();

    return rc;
}


static ngx_int_t
ngx_http_aihub_log_call(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_uint_t                  success;
    ngx_http_aihub_loc_conf_t  *alcf;

    if (ctx->reply.status == 0 && r->upstream != NULL
        && r->upstream->request_sent
        && (r->connection->error
            || r->headers_out.status == NGX_HTTP_CLIENT_CLOSED_REQUEST))
    {
        /*
         * the client went away after the call reached the provider and
         * before its answer began: the provider works (and bills) on, so
         * the prompt is billed as estimated and the event flagged
         */
        ctx->usage.aborted = 1;
        ctx->usage.tokens.prompt = (ctx->body.prompt_estimate + 3) / 4;
        ctx->usage.tokens.completion = 0;
        ctx->usage.tokens.total = ctx->usage.tokens.prompt;
        ctx->usage.tokens.estimated = 1;
        ctx->reply.status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
        success = 1;

    } else {
        if (ctx->reply.status >= 200 && ctx->reply.status < 300
            && !ctx->reply.failed)
        {
            ngx_http_aihub_tokens_settle(r, ctx);
        }

        success = (ctx->reply.status >= 200 && ctx->reply.status < 300
                   && !ctx->reply.failed);
    }

    if (!success) {
        ngx_memzero(&ctx->usage.tokens, sizeof(ngx_http_aihub_tokens_t));
        ctx->usage.cost_micros = 0;
        ngx_http_aihub_quota_settle(r, ctx, 0);
        ngx_http_aihub_limit_charge(r, ctx, 0);

        if (ctx->reply.status == 0) {
            /* the provider was never reached: nothing to record */
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "aihub log: provider never reached, "
                           "reservation given back");
            return NGX_OK;
        }

    } else {
        /*
         * the client went away: its connection failed (a write error, or
         * the upstream module saw it close); a stream the provider cut
         * short, or whose coded data broke (the connection ended by the
         * body filter), is estimated but not aborted
         */

        if (r->connection->error && !ctx->reply.broken) {
            ctx->usage.aborted = 1;
        }

        ctx->usage.cost_micros = ngx_http_aihub_cost(ctx->route.model,
                                                     &ctx->usage.tokens);

        /*
         * failing open past a full buffer its event is dropped: the call
         * goes back to the quota too, in neither the counters nor the
         * ledger (README).  Before, a call admitted while the buffer had
         * room and ended after it filled was counted, never billed.  Its
         * tokens still count against the rate limit: the provider used
         * them.
         */

        alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

        ngx_http_aihub_quota_settle(r, ctx,
                                    ngx_http_aihub_usage_room(
                                        alcf->failure_mode
                                        != NGX_HTTP_AIHUB_FAIL_OPEN));
        ngx_http_aihub_limit_charge(r, ctx,
                                    (uint64_t) ctx->usage.tokens.total);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub log: settled, %L tokens, %L micro-dollars, "
                   "provider status %ui, success %ui",
                   ctx->usage.tokens.total, ctx->usage.cost_micros,
                   ctx->reply.status, success);

    return ngx_http_aihub_log_event(r, ctx);
}


/* the event's contents for the engine, which renders it */

static ngx_int_t
ngx_http_aihub_log_event(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_msec_int_t              latency;
    aihub_usage_event_t         e;
    ngx_http_aihub_loc_conf_t  *alcf;

    ngx_memzero(&e, sizeof(aihub_usage_event_t));

    if (ctx->route.provider) {
        e.provider.data = ctx->route.provider->name.data;
        e.provider.len = ctx->route.provider->name.len;
    }

    latency = (ngx_msec_int_t) (ngx_http_aihub_now_ms() - ctx->start_ms);
    if (latency < 0) {
        latency = 0;
    }

    e.id.data = ctx->event_id;
    e.id.len = AIHUB_EVENT_ID_LEN;
    e.ts_ms = ctx->quota.at_ms ? ctx->quota.at_ms : ctx->start_ms;
    e.account = ctx->caller.key.rec.account_id;
    e.key.data = ctx->caller.key.prefix.data;
    e.key.len = ctx->caller.key.prefix.len;
    e.plan.data = ctx->caller.key.plan.data;
    e.plan.len = ctx->caller.key.plan.len;
    e.model.data = ctx->body.model.data;
    e.model.len = ctx->body.model.len;
    e.prompt_tokens = ctx->usage.tokens.prompt;
    e.completion_tokens = ctx->usage.tokens.completion;
    e.total_tokens = ctx->usage.tokens.total;
    e.cost_micros = ctx->usage.cost_micros;
    e.status = r->headers_out.status ? r->headers_out.status
                                     : ctx->reply.status;

    /*
     * a 200 whose stream held an error in place of any content (its head
     * was sent before the error came): failed, given back to the quota,
     * and so not a call in the ledger either, which counts 2xx
     */

    if (ctx->reply.failed && !ctx->usage.aborted
        && e.status >= NGX_HTTP_OK && e.status < NGX_HTTP_SPECIAL_RESPONSE)
    {
        e.status = NGX_HTTP_BAD_GATEWAY;
    }
    e.streamed = ctx->reply.streamed;
    e.aborted = ctx->usage.aborted;
    e.estimated = ctx->usage.tokens.estimated;
    e.latency_ms = (uint64_t) latency;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    /* failing closed, the call was admitted only if the buffer had room */
    return ngx_http_aihub_usage_emit(r->connection->log, &e,
                                     alcf->failure_mode
                                     != NGX_HTTP_AIHUB_FAIL_OPEN);
}


/*
 * The numbers billed (aihub_usage_finalize() has the rule, README.md
 * "Metering" documents it): what the provider reported, total at least
 * prompt + completion; estimated from the text when the provider sent
 * nothing; clamped and flagged when absurd.  A provider error object sent
 * in place of an answer bills nothing; one sent after content was
 * delivered bills what was delivered.
 */

static void
ngx_http_aihub_tokens_settle(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    aihub_usage_t  *u;

    if (ctx->reply.sse) {
        if (!ctx->reply.last_seen) {
            /* cut short: what the current event held counts too */
            (void) aihub_sse_finish(ctx->reply.sse, NULL);
        }

        u = &ctx->reply.sse->usage;

    } else if (ctx->reply.json) {
        u = &ctx->reply.json->usage;

    } else {
        return;
    }

    if (u->error && !u->found && u->delivered_chars == 0) {
        /* an error in place of an answer: nothing to bill */
        ctx->reply.failed = 1;
        return;
    }

    if (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_EMBEDDINGS
        && !u->has_completion)
    {
        /* an embedding generates nothing: 0 completion tokens, exactly */
        u->completion = 0;
        u->has_completion = 1;
    }

    /* an error after content: what was delivered is billed, estimated */

    aihub_usage_finalize(u, (ctx->body.prompt_estimate + 3) / 4);

    ctx->usage.tokens.prompt = u->prompt;
    ctx->usage.tokens.completion = u->completion;
    ctx->usage.tokens.total = u->total;
    ctx->usage.tokens.found = u->found;
    ctx->usage.tokens.estimated = u->estimated || ctx->reply.unscanned;
}


/*
 * Cost in micro-dollars from prices per million tokens: prompt tokens at
 * the input price, everything else the provider counted (completion and,
 * when total exceeds prompt + completion, thinking tokens) at the output
 * price; rounded once, half up.
 */

static int64_t
ngx_http_aihub_cost(ngx_http_aihub_model_t *m, ngx_http_aihub_tokens_t *t)
{
    if (m == NULL) {
        return 0;
    }

    return aihub_money_call_micros((uint64_t) t->prompt,
                                   (uint64_t) (t->total - t->prompt),
                                   m->price_in, m->price_out);
}
