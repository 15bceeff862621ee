/*
 * The access phase of an "aihub on" location, as a sequence of steps:
 *
 *   KEY    the key from the headers, its checksum (no I/O), the shared
 *          cache, else Redis                                 (key.c)
 *   CHECK  status, expiry, scope, which endpoint is asked for (key.c)
 *   LIMIT  the per-key rate limits, before the body is read  (limit.c)
 *   BODY   the JSON body, read without blocking and parsed once (body.c)
 *   MODEL  the model exists and the plan allows it, max_tokens (model.c)
 *   LANE   a place at the provider, paid plans first; may wait (lane.c)
 *   QUOTA  the monthly call reserved in Redis (one round trip) (quota.c)
 *   PROXY  the provider chosen, the body rewritten for it    (here)
 *          again on a fallback route, when an error_page brings a failed
 *          call back                                    (fallback.c)
 *   SERVE  a developer endpoint answers instead        (dev.c, dev_keys.c)
 *
 * A step that waits (Redis, the body) suspends the phase; its completion
 * records the result and runs the phases again, so this handler carries on
 * from ctx->flow.step.  A verdict, once given, is final (state DONE): a
 * refused request gives back what it reserved or took, and gets its error.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_provider.h"
#include "ngx_http_aihub_key.h"
#include "ngx_http_aihub_limit.h"
#include "ngx_http_aihub_body.h"
#include "ngx_http_aihub_model.h"
#include "ngx_http_aihub_lane.h"
#include "ngx_http_aihub_fallback.h"
#include "ngx_http_aihub_quota.h"
#include "ngx_http_aihub_dev.h"
#include "ngx_http_aihub_dev_keys.h"
#include "ngx_http_aihub_access.h"


static ngx_int_t ngx_http_aihub_continue(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_proxy_step(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_reroute(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_serve_step(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_verdict(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


#if (NGX_DEBUG)

static const char  *ngx_http_aihub_step_names[] = {
    "key", "check", "limit", "body", "model", "lane", "quota", "proxy",
    "serve"
};

#endif


ngx_int_t
ngx_http_aihub_access_handler(ngx_http_request_t *r)
{
    ngx_http_aihub_ctx_t       *ctx;
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (!alcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx != NULL) {

        if (ctx->flow.forwarded && r->upstream != NULL
            && (void *) r->upstream != ctx->route.failed)
        {
            /* its route failed, an error_page brought it here */
            return ngx_http_aihub_reroute(r, ctx);
        }

        if (ctx->flow.state == NGX_HTTP_AIHUB_STATE_WAIT) {
            return NGX_AGAIN;
        }

        if (ctx->flow.state == NGX_HTTP_AIHUB_STATE_DONE) {
            return ngx_http_aihub_verdict(r, ctx);
        }

        return ngx_http_aihub_continue(r, ctx);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_aihub_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_aihub_module);

    if (ngx_http_aihub_ctx_anchor(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->start_ms = ngx_http_aihub_now_ms();
    ctx->forward.http_version = r->http_version;
    ctx->start_sec = ngx_time();

    ngx_http_aihub_request_id(ctx->event_id);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub request %*s", (size_t) AIHUB_EVENT_ID_LEN,
                   ctx->event_id);

    return ngx_http_aihub_continue(r, ctx);
}


/* runs the steps until one waits or a verdict is given */

static ngx_int_t
ngx_http_aihub_continue(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t  rc;

    for ( ;; ) {

        if (ctx->flow.state == NGX_HTTP_AIHUB_STATE_DONE) {
            return ngx_http_aihub_verdict(r, ctx);
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub step: %s",
                       ngx_http_aihub_step_names[ctx->flow.step]);

        switch (ctx->flow.step) {

        case NGX_HTTP_AIHUB_STEP_KEY:
            rc = ngx_http_aihub_key_step(r, ctx);
            break;

        case NGX_HTTP_AIHUB_STEP_CHECK:
            rc = ngx_http_aihub_key_check(r, ctx);
            break;

        case NGX_HTTP_AIHUB_STEP_LIMIT:
            rc = ngx_http_aihub_limit_step(r, ctx);
            break;

        case NGX_HTTP_AIHUB_STEP_BODY:
            rc = ngx_http_aihub_body_read(r, ctx);
            break;

        case NGX_HTTP_AIHUB_STEP_MODEL:
            rc = ngx_http_aihub_model_step(r, ctx);
            break;

        case NGX_HTTP_AIHUB_STEP_LANE:
            rc = ngx_http_aihub_fallback_first(r, ctx);

            if (rc == NGX_OK) {
                rc = ngx_http_aihub_lane_step(r, ctx);
            }

            break;

        case NGX_HTTP_AIHUB_STEP_QUOTA:
            rc = ngx_http_aihub_quota_step(r, ctx);
            break;

        case NGX_HTTP_AIHUB_STEP_PROXY:
            rc = ngx_http_aihub_proxy_step(r, ctx);
            break;

        default: /* NGX_HTTP_AIHUB_STEP_SERVE */
            rc = ngx_http_aihub_serve_step(r, ctx);
            break;
        }

        if (rc == NGX_AGAIN) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "aihub step: %s waits",
                           ngx_http_aihub_step_names[ctx->flow.step]);

            ctx->flow.state = NGX_HTTP_AIHUB_STATE_WAIT;
            return NGX_AGAIN;
        }

        if (rc == NGX_DONE) {
            /* the step answered the request itself */
            return NGX_DONE;
        }

        if (rc != NGX_OK) {
            ngx_http_aihub_deny(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "server_error", "internal_error",
                                "The gateway failed to process the "
                                "request.");
        }
    }
}


/* the provider of the model, its credential, the body for it */

static ngx_int_t
ngx_http_aihub_proxy_step(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_aihub_provider_select(r, ctx);

    if (rc == NGX_DECLINED) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_GATEWAY, "server_error",
                            "upstream_error", "The provider of this model "
                            "is not configured on this gateway.");
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_aihub_body_rewrite(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_aihub_fallback_routed(ctx);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub proxy: to provider \"%V\", \"%V\"",
                   &ctx->route.provider->name, &ctx->route.proxy_url);

    ctx->flow.rc = NGX_OK;
    ctx->flow.state = NGX_HTTP_AIHUB_STATE_DONE;

    return NGX_OK;
}


/* the next route of a call whose route failed, or its last answer */

static ngx_int_t
ngx_http_aihub_reroute(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t  rc;

    ctx->flow.forwarded = 0;

    rc = ngx_http_aihub_fallback_next(r, ctx);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_aihub_verdict(r, ctx);
    }

    ctx->flow.state = NGX_HTTP_AIHUB_STATE_NEW;
    ctx->flow.step = NGX_HTTP_AIHUB_STEP_PROXY;

    return ngx_http_aihub_continue(r, ctx);
}


static ngx_int_t
ngx_http_aihub_serve_step(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    switch (ctx->flow.endpoint) {

    case NGX_HTTP_AIHUB_EP_MODELS:
        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            break;
        }

        return ngx_http_aihub_dev_models(r, ctx);

    case NGX_HTTP_AIHUB_EP_MODEL:
        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            break;
        }

        return ngx_http_aihub_dev_model(r, ctx);

    case NGX_HTTP_AIHUB_EP_USAGE:
        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            break;
        }

        return ngx_http_aihub_dev_usage(r, ctx);

    default: /* NGX_HTTP_AIHUB_EP_KEYS */
        return ngx_http_aihub_dev_keys(r, ctx);
    }

    ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_ALLOWED, "invalid_request_error",
                        "method_not_allowed",
                        "This endpoint takes GET.");
    return NGX_OK;
}


static ngx_int_t
ngx_http_aihub_verdict(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    if (ctx->flow.rc == NGX_OK) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub verdict: forwarded");

        ctx->flow.forwarded = 1;
        return NGX_OK;
    }

    if (ctx->flow.rc == NGX_DONE) {
        /* answered by a developer endpoint */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub verdict: answered by an endpoint");
        return NGX_DONE;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub verdict: %i \"%s\" at step %s", ctx->flow.rc,
                   ctx->flow.err_code,
                   ngx_http_aihub_step_names[ctx->flow.step]);

    /* a rejected request gives back what it reserved or took */

    if (ctx->quota.reserved) {
        ngx_http_aihub_quota_settle(r, ctx, 0);
    }

    ngx_http_aihub_limit_refund(r, ctx);

    return ngx_http_aihub_finalize_error(r, ctx->flow.rc, ctx->flow.err_type,
                                         ctx->flow.err_code,
                                         ctx->flow.err_message);
}
