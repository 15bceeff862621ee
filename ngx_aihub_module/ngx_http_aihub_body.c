/*
 * The chat request body: read without blocking (at most aihub_body_max
 * bytes, in memory), parsed once for model, stream, max_tokens and
 * stream_options, and rewritten for the provider when it must change (the
 * provider's model id, stream_options.include_usage for streams).  The
 * decisions are the engine's (aihub_body.c); this step reads the body,
 * asks, and acts on the answer.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_body.h"
#include "ngx_http_aihub_body_decode.h"
#include "ngx_http_aihub_body_api.h"
#include "ngx_http_aihub_json.h"
#include "aihub_body.h"
#include "aihub_body_rules.h"
#include "aihub_thought_sign.h"


/* the largest max_tokens (or max_completion_tokens) a request may ask */
#define NGX_HTTP_AIHUB_MAX_TOKENS_MAX  1000000000


/* chat completions: the engine checks every member it knows */
static const aihub_body_policy_t  ngx_http_aihub_body_policy = {
    NGX_HTTP_AIHUB_MAX_TOKENS_MAX, 1, 0, 0, AIHUB_STORE_AS_SENT, 0, NULL, NULL,
    0
};

/* embeddings and responses: the engine checks what every body must hold
   (one JSON object, each member once, nothing that routes or bills, a
   model), ngx_http_aihub_body_api.c the rest */
static const aihub_body_policy_t  ngx_http_aihub_body_policy_api = {
    NGX_HTTP_AIHUB_MAX_TOKENS_MAX, 0, 1, 0, AIHUB_STORE_AS_SENT, 0, NULL, NULL,
    0
};


#define ngx_http_aihub_body_policy_of(ctx)                                       ((ctx)->flow.endpoint == NGX_HTTP_AIHUB_EP_CHAT                               ? &ngx_http_aihub_body_policy : &ngx_http_aihub_body_policy_api)


static void ngx_http_aihub_body_done(ngx_http_request_t *r);
static ngx_int_t ngx_http_aihub_body_parse(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_body_refuse(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, aihub_body_t *b);
static ngx_int_t ngx_http_aihub_body_translated(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_body_replace(ngx_http_request_t *r,
    u_char *out, size_t len);
static void ngx_http_aihub_body_cleanup(void *data);
static void ngx_http_aihub_body_cap(ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t chat, aihub_body_policy_t *policy);


ngx_int_t
ngx_http_aihub_body_read(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_http_aihub_loc_conf_t  *alcf;

    if (ctx->body.read) {
        return ngx_http_aihub_body_parse(r, ctx);
    }

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (r->headers_in.content_length_n > (off_t) alcf->body_max) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                            "invalid_request_error", "request_too_large",
                            "The request body is too large.");
        return NGX_OK;
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_aihub_body_done);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ngx_http_aihub_deny(ctx, rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
                                 ? NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
                                 : NGX_HTTP_BAD_REQUEST,
                            "invalid_request_error",
                            rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
                            ? "request_too_large" : "invalid_request_error",
                            "The request body could not be read.");
        return NGX_OK;
    }

    if (rc == NGX_AGAIN) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub body: reading");
        ctx->body.waiting = 1;
        return NGX_AGAIN;
    }

    /* read at once: ngx_http_aihub_body_done() has run */

    return ngx_http_aihub_body_parse(r, ctx);
}


static void
ngx_http_aihub_body_done(ngx_http_request_t *r)
{
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);

    ctx->body.read = 1;
    r->main->count--;

    if (ctx->body.waiting) {
        ctx->body.waiting = 0;
        ctx->flow.state = NGX_HTTP_AIHUB_STATE_NEW;
        ngx_http_aihub_resume(r);
    }
}


static ngx_int_t
ngx_http_aihub_body_parse(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_str_t                    body;
    ngx_int_t                    rc;
    aihub_body_t                 b;
    aihub_body_policy_t          policy;
    ngx_pool_cleanup_t          *cln;
    ngx_http_aihub_loc_conf_t   *alcf;

    rc = ngx_http_aihub_body_bytes(r, &body);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (rc == NGX_DECLINED || body.len > alcf->body_max) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                            "invalid_request_error", "request_too_large",
                            "The request body is too large.");
        return NGX_OK;
    }

    /* a body in a content coding: decoded, checked and sent plain */

    rc = ngx_http_aihub_body_decode(r, ctx, &body, alcf->body_max);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (ctx->body.decoded) {
        if (ngx_http_aihub_body_replace(r, body.data, body.len) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_pfree(r->pool, body.data);
        body.data = r->request_body->buf->pos;
    }

    /* the tree lives as long as the request: in its pool */

    ngx_http_aihub_json_pool(r->pool);

    policy = *ngx_http_aihub_body_policy_of(ctx);
    policy.stored_objects = alcf->stored_objects ? 1 : 0;

    aihub_body_check(&b, body.data, body.len, &policy);

    ngx_http_aihub_json_pool(NULL);

    if (b.json != NULL) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            aihub_body_free(&b);
            return NGX_ERROR;
        }

        cln->handler = ngx_http_aihub_body_cleanup;
        cln->data = b.json;
        ctx->body.json = b.json;
    }

    /* what was read before a refusal stays, for the log */

    if (b.model != NULL) {
        ctx->body.model.len = b.model_len;
        ctx->body.model.data = ngx_pnalloc(r->pool, b.model_len);
        if (ctx->body.model.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ctx->body.model.data, b.model, b.model_len);
    }

    ctx->body.prompt_estimate = b.prompt_chars;
    ctx->body.stream = b.stream;
    ctx->body.include_usage = b.include_usage;
    ctx->body.store = b.store;
    ctx->body.max_tokens = b.max_tokens;

    if (b.verdict != AIHUB_BODY_OK) {
        return ngx_http_aihub_body_refuse(r, ctx, &b);
    }

    if (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_EMBEDDINGS
        && ngx_http_aihub_body_embeddings(ctx, b.json) != NGX_OK)
    {
        return NGX_OK;
    }

    if (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_RESPONSES
        && ngx_http_aihub_body_responses(ctx, b.json) != NGX_OK)
    {
        return NGX_OK;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub body: %uz bytes, model \"%V\", stream %ui, "
                   "max_tokens %L", body.len, &ctx->body.model,
                   (ngx_uint_t) ctx->body.stream, ctx->body.max_tokens);

    ctx->flow.step = NGX_HTTP_AIHUB_STEP_MODEL;

    return NGX_OK;
}


/* a refused body: 400 with the engine's message */

static ngx_int_t
ngx_http_aihub_body_refuse(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    aihub_body_t *b)
{
    u_char      *msg, *name;
    const char  *what;

    what = aihub_body_message(b->verdict);

    if (b->verdict != AIHUB_BODY_DUPLICATE
        && b->verdict != AIHUB_BODY_REFUSED
        && b->verdict != AIHUB_BODY_STORED
        && b->verdict != AIHUB_BODY_TOOL)
    {
        ngx_http_aihub_bad_request(ctx, what);
        return NGX_OK;
    }

    name = ngx_http_aihub_safe_text(r->pool, (u_char *) b->member,
                                    ngx_strlen(b->member), 64);
    msg = ngx_pnalloc(r->pool, 64 + ngx_strlen(what) + 64);

    if (name == NULL || msg == NULL) {
        return NGX_ERROR;
    }

    if (b->verdict == AIHUB_BODY_TOOL) {
        ngx_sprintf(msg, "The tool type \"%s\" %s.%Z", name, what);

    } else {
        ngx_sprintf(msg, "The member \"%s\" %s.%Z", name, what);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub body: refused: %s", msg);

    ngx_http_aihub_bad_request(ctx, (const char *) msg);

    return NGX_OK;
}


/*
 * The body as one piece of memory.  NGX_DECLINED: it went to a temporary
 * file (larger than client_body_buffer_size), which we do not read.
 */

ngx_int_t
ngx_http_aihub_body_bytes(ngx_http_request_t *r, ngx_str_t *body)
{
    size_t        len;
    u_char       *p;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    if (r->request_body->temp_file) {
        return NGX_DECLINED;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file && !ngx_buf_in_memory(b)) {
            return NGX_DECLINED;
        }

        len += b->last - b->pos;
    }

    if (r->request_body->bufs->next == NULL) {
        body->data = r->request_body->bufs->buf->pos;
        body->len = len;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;
    body->len = len;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        /* the last buffer of a chunked body may be empty, pos NULL */
        if (cl->buf->last != cl->buf->pos) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    return NGX_OK;
}


/*
 * For the provider: its own model id, for streams the usage chunk asked
 * for, and "store": false on the Responses API (below).  The body is left
 * alone when none of them changes anything, and otherwise edited only
 * where it changes (aihub_body_rewrite()).
 */

ngx_int_t
ngx_http_aihub_body_rewrite(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    int                      rc;
    char                    *out;
    size_t                   len;
    ngx_int_t                   done;
    ngx_str_t                   in;
    aihub_body_t                body;
    aihub_body_policy_t         policy;
    ngx_http_aihub_model_t     *m = ctx->route.model;
    ngx_http_aihub_loc_conf_t  *alcf;

    if (ctx->route.translate) {
        return ngx_http_aihub_body_translated(r, ctx);
    }

    /*
     * With aihub_stored_objects off nothing is kept in the provider
     * account on a developer's behalf: every developer's calls go to that
     * one account, and none could name what was kept there again through
     * the gateway.  A chat completion asks for it with "store": true; the
     * Responses API stores unless told "store": false.
     */

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    policy = *ngx_http_aihub_body_policy_of(ctx);

    if (!alcf->stored_objects) {
        if (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_RESPONSES) {
            policy.no_store = AIHUB_STORE_FALSE;

        } else if (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_CHAT) {
            policy.no_store = AIHUB_STORE_NOT_TRUE;
        }
    }

    /* a provider that refuses stream_options is not sent one */

    if (ctx->route.provider != NULL
        && ctx->route.provider->no_stream_options)
    {
        policy.stream_usage = 0;
        policy.no_stream_options = 1;
    }

    if (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_CHAT
        || ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_RESPONSES)
    {
        ngx_http_aihub_body_cap(ctx,
                                ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_CHAT,
                                &policy);
    }

    /* what the check found, as the context keeps it */

    ngx_memzero(&body, sizeof(aihub_body_t));
    body.json = ctx->body.json;
    body.model = (const char *) ctx->body.model.data;
    body.model_len = ctx->body.model.len;
    body.stream = ctx->body.stream;
    body.include_usage = ctx->body.include_usage;
    body.store = ctx->body.store;
    body.max_tokens = ctx->body.max_tokens;

    /* the bytes that were checked, to be edited */

    if (ngx_http_aihub_body_bytes(r, &in) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = aihub_body_rewrite(&body, &policy, in.data, in.len,
                            (const char *) m->upstream.data, &out, &len);

    if (rc == 0) {
        return NGX_OK;
    }

    if (rc == -1) {
        return NGX_ERROR;
    }

    done = ngx_http_aihub_body_replace(r, (u_char *) out, len);
    ngx_free(out);

    return done;
}


/*
 * A Responses request translated into a chat completion (the model step
 * put the translation in ctx->body.json): the provider gets it printed
 * whole, with its own model id, and for a stream the usage chunk asked.
 */

static ngx_int_t
ngx_http_aihub_body_translated(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    int                      signed_calls;
    char                    *out;
    cJSON                   *root, *opts;
    ngx_int_t                rc;
    aihub_body_policy_t      policy;
    ngx_http_aihub_model_t  *m = ctx->route.model;

    root = ctx->body.json;

    if (cJSON_ReplaceItemInObjectCaseSensitive(root, "model",
            cJSON_CreateString((const char *) m->upstream.data))
        == 0)
    {
        return NGX_ERROR;
    }

    /* Gemini 3: a call passed back without its thought signature */

    if (ctx->route.provider != NULL
        && ctx->route.provider->kind == NGX_HTTP_AIHUB_KIND_GEMINI
        && aihub_thought_sign_checked((const char *) m->upstream.data))
    {
        signed_calls = aihub_thought_sign_calls(root);

        if (signed_calls < 0) {
            return NGX_ERROR;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub responses: %d calls signed for Gemini 3",
                       signed_calls);
    }

    if (ctx->body.stream && !ctx->body.include_usage
        && !(ctx->route.provider != NULL
             && ctx->route.provider->no_stream_options))
    {
        opts = aihub_json_get(root, "stream_options");

        if (!cJSON_IsObject(opts)) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, "stream_options");

            opts = cJSON_AddObjectToObject(root, "stream_options");
            if (opts == NULL) {
                return NGX_ERROR;
            }
        }

        cJSON_DeleteItemFromObjectCaseSensitive(opts, "include_usage");

        if (cJSON_AddTrueToObject(opts, "include_usage") == NULL) {
            return NGX_ERROR;
        }
    }

    /* a chat completion now: the plan's cap by a chat member's name */

    ngx_memzero(&policy, sizeof(aihub_body_policy_t));
    ngx_http_aihub_body_cap(ctx, 1, &policy);

    if (policy.cap > 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, "max_tokens");
        cJSON_DeleteItemFromObjectCaseSensitive(root,
                                                "max_completion_tokens");

        if (cJSON_AddNumberToObject(root, policy.cap_name,
                                    (double) policy.cap)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    out = cJSON_PrintUnformatted(root);
    if (out == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_aihub_body_replace(r, (u_char *) out, ngx_strlen(out));
    cJSON_free(out);

    return rc;
}


/*
 * The plan's (or the account's) max_tokens cap, sent with a body that
 * asked no limit: without it the provider's default, up to the model's
 * whole output, would be the limit, and not the plan's.  A chat
 * completion names it max_tokens, as every OpenAI-compatible API reads
 * it, or max_completion_tokens for a provider that says so (OpenAI's
 * reasoning models refuse max_tokens); the Responses API
 * max_output_tokens.
 */

static void
ngx_http_aihub_body_cap(ngx_http_aihub_ctx_t *ctx, ngx_uint_t chat,
    aihub_body_policy_t *policy)
{
    uint64_t    cap;
    ngx_uint_t  completion;

    cap = ctx->caller.key.rec.max_tokens;

    if (cap == 0 || cap > NGX_HTTP_AIHUB_MAX_TOKENS_MAX
        || ctx->body.max_tokens != 0)
    {
        return;
    }

    if (chat) {
        completion = (ctx->route.provider != NULL
                      && ctx->route.provider->cap_completion);

        policy->cap_name = completion ? "max_completion_tokens"
                                      : "max_tokens";
        policy->cap_other = completion ? "max_tokens"
                                       : "max_completion_tokens";

    } else {
        policy->cap_name = "max_output_tokens";
        policy->cap_other = NULL;
    }

    policy->cap = (int64_t) cap;
}


/* the request body the provider is sent: len bytes of out, copied */

static ngx_int_t
ngx_http_aihub_body_replace(ngx_http_request_t *r, u_char *out, size_t len)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, out, len);
    b->last_buf = 1;
    b->last_in_chain = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    r->request_body->bufs = cl;
    r->request_body->buf = b;
    r->headers_in.content_length_n = len;

    if (r->headers_in.content_length) {
        r->headers_in.content_length->value.data = ngx_pnalloc(r->pool,
                                                               NGX_INT64_LEN);
        if (r->headers_in.content_length->value.data == NULL) {
            return NGX_ERROR;
        }

        r->headers_in.content_length->value.len =
            ngx_sprintf(r->headers_in.content_length->value.data, "%uz", len)
            - r->headers_in.content_length->value.data;
    }

    return NGX_OK;
}


static void
ngx_http_aihub_body_cleanup(void *data)
{
    cJSON_Delete(data);
}
