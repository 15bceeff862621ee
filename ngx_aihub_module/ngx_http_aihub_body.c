/*
 * The chat request body: read without blocking (at most aihub_body_max
 * bytes, in memory), parsed once for model, stream, max_tokens and
 * stream_options, and rewritten for the provider when it must change (the
 * provider's model id, stream_options.include_usage for streams).
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_body.h"
#include "ngx_http_aihub_body_api.h"
#include "aihub_body_rules.h"

#include <cjson/cJSON.h>


/* an image or audio part counts as this many characters: 765 tokens, a
   high-detail image at OpenAI */


static void ngx_http_aihub_body_done(ngx_http_request_t *r);
static ngx_int_t ngx_http_aihub_body_parse(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_body_options(ngx_http_aihub_ctx_t *ctx,
    cJSON *root);
static ngx_int_t ngx_http_aihub_body_members(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, cJSON *obj);
static int64_t ngx_http_aihub_body_prompt_chars(cJSON *root,
    cJSON *messages);
static void ngx_http_aihub_body_cleanup(void *data);


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


/*
 * What the gateway checks is what the provider reads: no member twice
 * (cJSON reads the first, providers the last), and nothing that routes or
 * bills the call behind the gateway's back.  NGX_DECLINED: refused (the
 * verdict is set).
 */

static ngx_int_t
ngx_http_aihub_body_members(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    cJSON *obj)
{
    u_char      *msg, *name;
    const char  *dup, *what;

    if (!cJSON_IsObject(obj)) {
        return NGX_OK;
    }

    dup = aihub_json_duplicate_member(obj);
    what = "appears more than once";

    if (dup == NULL && obj == ctx->body.json) {
        dup = aihub_body_refused_member(obj);
        what = "is not accepted by this gateway (it would change how the "
               "provider routes or bills the call)";
    }

    if (dup == NULL) {
        return NGX_OK;
    }

    name = ngx_http_aihub_safe_text(r->pool, (u_char *) dup,
                                    ngx_strlen(dup), 64);
    msg = ngx_pnalloc(r->pool, 64 + ngx_strlen(what) + 64);

    if (name == NULL || msg == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(msg, "The member \"%s\" %s.%Z", name, what);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub body: refused: %s", msg);

    ngx_http_aihub_bad_request(ctx, (const char *) msg);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_aihub_body_parse(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    cJSON                       *root, *model, *messages;
    u_char                      *p;
    const char                  *end;
    ngx_str_t                    body;
    ngx_int_t                    rc;
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

    if (body.len == 0) {
        ngx_http_aihub_bad_request(ctx, "The request body is empty: send "
                                        "a JSON object.");
        return NGX_OK;
    }

    if (aihub_json_has_nul_escape(body.data, body.len)) {
        ngx_http_aihub_bad_request(ctx, "The request body holds the escape "
                                        "\\u0000 (NUL), which the gateway "
                                        "does not accept.");
        return NGX_OK;
    }

    root = cJSON_ParseWithLengthOpts((const char *) body.data, body.len,
                                     &end, 0);

    /* one JSON value and nothing but white space after it */

    if (root != NULL) {
        for (p = (u_char *) end; p < body.data + body.len; p++) {
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
                cJSON_Delete(root);
                root = NULL;
                break;
            }
        }
    }

    if (root == NULL) {
        ngx_http_aihub_bad_request(ctx, "We could not parse the JSON body "
                                        "of your request.");
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_aihub_body_cleanup;
    cln->data = root;
    ctx->body.json = root;

    if (!cJSON_IsObject(root)) {
        ngx_http_aihub_bad_request(ctx, "The request body must be a JSON "
                                        "object.");
        return NGX_OK;
    }

    rc = ngx_http_aihub_body_members(r, ctx, root);

    if (rc == NGX_OK) {
        rc = ngx_http_aihub_body_members(r, ctx,
                 cJSON_GetObjectItemCaseSensitive(root, "stream_options"));
    }

    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    model = cJSON_GetObjectItemCaseSensitive(root, "model");

    if (model == NULL) {
        ngx_http_aihub_bad_request(ctx, "You must provide a model "
                                        "parameter.");
        return NGX_OK;
    }

    if (!cJSON_IsString(model) || model->valuestring[0] == '\0') {
        ngx_http_aihub_bad_request(ctx, "The model parameter must be a "
                                        "non-empty string.");
        return NGX_OK;
    }

    ctx->body.model.len = ngx_strlen(model->valuestring);
    ctx->body.model.data = ngx_pnalloc(r->pool, ctx->body.model.len);
    if (ctx->body.model.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->body.model.data, model->valuestring, ctx->body.model.len);

    if (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_EMBEDDINGS) {
        if (ngx_http_aihub_body_embeddings(ctx, root) != NGX_OK) {
            return NGX_OK;
        }

        goto parsed;
    }

    if (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_RESPONSES) {
        if (ngx_http_aihub_body_responses(ctx, root) != NGX_OK) {
            return NGX_OK;
        }

        goto parsed;
    }

    messages = cJSON_GetObjectItemCaseSensitive(root, "messages");

    if (!cJSON_IsArray(messages)) {
        ngx_http_aihub_bad_request(ctx, "The messages parameter must be an "
                                        "array.");
        return NGX_OK;
    }

    ctx->body.prompt_estimate = ngx_http_aihub_body_prompt_chars(root,
                                                                 messages);

    if (ngx_http_aihub_body_options(ctx, root) != NGX_OK) {
        return NGX_OK;
    }

parsed:

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub body: %uz bytes, model \"%V\", stream %ui, "
                   "max_tokens %L", body.len, &ctx->body.model,
                   (ngx_uint_t) ctx->body.stream, ctx->body.max_tokens);

    ctx->flow.step = NGX_HTTP_AIHUB_STEP_MODEL;

    return NGX_OK;
}


/*
 * stream, stream_options.include_usage, max_tokens (or
 * max_completion_tokens).  NGX_DECLINED: refused, the verdict is given.
 */

static ngx_int_t
ngx_http_aihub_body_options(ngx_http_aihub_ctx_t *ctx, cJSON *root)
{
    cJSON  *stream, *max, *opts, *inc;

    stream = cJSON_GetObjectItemCaseSensitive(root, "stream");

    if (stream != NULL && !cJSON_IsBool(stream) && !cJSON_IsNull(stream)) {
        ngx_http_aihub_bad_request(ctx, "The stream parameter must be a "
                                        "boolean.");
        return NGX_DECLINED;
    }

    ctx->body.stream = cJSON_IsTrue(stream);

    opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");

    if (opts != NULL && !cJSON_IsObject(opts) && !cJSON_IsNull(opts)) {
        ngx_http_aihub_bad_request(ctx, "The stream_options parameter must "
                                        "be an object.");
        return NGX_DECLINED;
    }

    inc = cJSON_GetObjectItemCaseSensitive(opts, "include_usage");
    ctx->body.include_usage = cJSON_IsTrue(inc);

    max = cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens");
    if (max == NULL || cJSON_IsNull(max)) {
        max = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    }

    if (max != NULL && !cJSON_IsNull(max)) {
        if (!cJSON_IsNumber(max) || max->valuedouble < 1
            || max->valuedouble > 1e9
            || max->valuedouble != (double) (int64_t) max->valuedouble)
        {
            ngx_http_aihub_bad_request(ctx, "max_tokens must be a positive "
                                            "integer.");
            return NGX_DECLINED;
        }

        ctx->body.max_tokens = (int64_t) max->valuedouble;
    }

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


/* characters (not bytes) of text in the messages, for the estimate */

static int64_t
ngx_http_aihub_body_prompt_chars(cJSON *root, cJSON *messages)
{
    char     *printed;
    int64_t   n;
    cJSON    *msg, *content, *part, *text, *type, *extra;

    static const char  *extras[] = { "tools", "functions", "tool_choice",
                                     "response_format", NULL };
    const char        **name;

    n = 0;

    cJSON_ArrayForEach(msg, messages) {
        content = cJSON_GetObjectItemCaseSensitive(msg, "content");

        if (cJSON_IsString(content)) {
            n += ngx_http_aihub_body_chars(content->valuestring);

        } else if (cJSON_IsArray(content)) {
            cJSON_ArrayForEach(part, content) {
                text = cJSON_GetObjectItemCaseSensitive(part, "text");
                type = cJSON_GetObjectItemCaseSensitive(part, "type");

                if (cJSON_IsString(text)) {
                    n += ngx_http_aihub_body_chars(text->valuestring);

                } else if (cJSON_IsString(type)
                           && ngx_strcmp(type->valuestring, "text") != 0)
                {
                    /* an image or audio part: a flat, high-detail cost */
                    n += NGX_HTTP_AIHUB_MEDIA_CHARS;
                }
            }
        }

        /* a tool call's arguments are prompt too */
        extra = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");

        if (extra != NULL && (printed = cJSON_PrintUnformatted(extra))) {
            n += ngx_http_aihub_body_chars(printed);
            cJSON_free(printed);
        }
    }

    /* tool definitions and schemas reach the model as prompt */

    for (name = extras; *name; name++) {
        extra = cJSON_GetObjectItemCaseSensitive(root, *name);

        if (extra != NULL && !cJSON_IsNull(extra)
            && (printed = cJSON_PrintUnformatted(extra)))
        {
            n += ngx_http_aihub_body_chars(printed);
            cJSON_free(printed);
        }
    }

    return n;
}


/*
 * For the provider: its own model id, and for streams the usage chunk
 * asked for.  The body is left alone when neither changes anything.
 */

ngx_int_t
ngx_http_aihub_body_rewrite(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    char                    *out;
    size_t                   len;
    cJSON                   *root, *opts;
    ngx_buf_t               *b;
    ngx_chain_t             *cl;
    ngx_uint_t               rename, usage;
    ngx_http_aihub_model_t  *m = ctx->route.model;

    root = ctx->body.json;

    rename = (m->upstream.len != ctx->body.model.len
              || ngx_strncmp(m->upstream.data, ctx->body.model.data,
                             ctx->body.model.len) != 0);

    /* only chat completions take stream_options.include_usage */

    usage = (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_CHAT
             || ctx->route.translate)
            && ctx->body.stream && !ctx->body.include_usage;

    if (!rename && !usage && !ctx->route.translate) {
        return NGX_OK;
    }

    if (rename) {
        if (cJSON_ReplaceItemInObjectCaseSensitive(root, "model",
                cJSON_CreateString((const char *) m->upstream.data))
            == 0)
        {
            return NGX_ERROR;
        }
    }

    if (usage) {
        opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");

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

    out = cJSON_PrintUnformatted(root);
    if (out == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(out);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        cJSON_free(out);
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, out, len);
    b->last_buf = 1;
    b->last_in_chain = 1;
    cJSON_free(out);

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
