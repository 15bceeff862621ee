/*
 * The model step, once the body is parsed: what the request asks for
 * against what the key's plan allows (the model, max_tokens).  The call
 * keeps a copy of its catalog entry.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_body.h"
#include "ngx_http_aihub_models.h"
#include "ngx_http_aihub_responses.h"
#include "ngx_http_aihub_model.h"


/*
 * The model step: the model asked for exists, the key's plan allows it,
 * and max_tokens is within the plan's cap.  The quota step follows.
 */

ngx_int_t
ngx_http_aihub_model_step(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char                  *msg, *name;
    ngx_int_t                rc;
    ngx_http_aihub_model_t  *m, *copy;

    m = ngx_http_aihub_model_find(&ctx->body.model);

    if (m == NULL) {
        if (!ngx_http_aihub_models_loaded()) {
            ngx_http_aihub_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "server_error", "service_unavailable",
                                "The gateway has not loaded its model "
                                "catalog yet. Please retry shortly.");
            return NGX_OK;
        }

        name = ngx_http_aihub_safe_text(r->pool, ctx->body.model.data,
                                        ctx->body.model.len, 128);
        msg = ngx_pnalloc(r->pool, 128 + 64);

        if (name == NULL || msg == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(msg, "The model \"%s\" does not exist.%Z", name);

        ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_FOUND,
                            "invalid_request_error", "model_not_found",
                            (const char *) msg);
        return NGX_OK;
    }

    if (!ngx_http_aihub_model_allowed(&ctx->caller.key, m)) {
        msg = ngx_pnalloc(r->pool, ctx->body.model.len
                                   + ctx->caller.key.plan.len + 64);
        if (msg == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(msg, "The model \"%V\" is not available on the "
                    "\"%V\" plan.%Z", &ctx->body.model, &ctx->caller.key.plan);

        ngx_http_aihub_deny(ctx, NGX_HTTP_FORBIDDEN,
                            "invalid_request_error", "model_not_allowed",
                            (const char *) msg);
        return NGX_OK;
    }

    /* an embedding model on chat or responses, a chat model on embeddings */

    if ((m->kind == NGX_HTTP_AIHUB_MODEL_EMBED)
        != (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_EMBEDDINGS))
    {
        msg = ngx_pnalloc(r->pool, ctx->body.model.len + 128);
        if (msg == NULL) {
            return NGX_ERROR;
        }

        if (m->kind == NGX_HTTP_AIHUB_MODEL_EMBED) {
            ngx_sprintf(msg, "The model \"%V\" is an embedding model: call "
                        "it on /v1/embeddings.%Z", &ctx->body.model);

        } else {
            ngx_sprintf(msg, "The model \"%V\" is not an embedding model: "
                        "call it on /v1/chat/completions or /v1/responses."
                        "%Z", &ctx->body.model);
        }

        ngx_http_aihub_bad_request(ctx, (const char *) msg);
        return NGX_OK;
    }

    /*
     * The Responses API for a model whose provider speaks only chat
     * completions: translated, or refused here, before the quota
     */

    if (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_RESPONSES
        && m->api != NGX_HTTP_AIHUB_API_RESPONSES)
    {
        rc = ngx_http_aihub_responses_request(r, ctx);

        if (rc != NGX_OK) {
            return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
        }
    }

    /* the catalog may be reloaded while the call runs: keep a copy */

    copy = ngx_palloc(r->pool, sizeof(ngx_http_aihub_model_t));
    if (copy == NULL) {
        return NGX_ERROR;
    }

    *copy = *m;

    if (ngx_http_aihub_copy_model_strings(r->pool, copy) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->route.model = copy;

    if (ctx->caller.key.rec.max_tokens && ctx->body.max_tokens > 0
        && (uint64_t) ctx->body.max_tokens > ctx->caller.key.rec.max_tokens)
    {
        msg = ngx_pnalloc(r->pool, 128);
        if (msg == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(msg, "%s is limited to %uL on the \"%V\" plan.%Z",
                    ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_RESPONSES
                    ? "max_output_tokens" : "max_tokens",
                    ctx->caller.key.rec.max_tokens, &ctx->caller.key.plan);

        ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST,
                            "invalid_request_error", "max_tokens_exceeded",
                            (const char *) msg);
        return NGX_OK;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub model: \"%V\" allowed, upstream \"%V\"",
                   &ctx->body.model, &copy->upstream);

    ctx->flow.step = NGX_HTTP_AIHUB_STEP_LANE;

    return NGX_OK;
}
