/*
 * The chat request body: read without blocking (at most aihub_body_max
 * bytes, in memory), parsed once for model, stream, max_tokens and
 * stream_options, and rewritten for the provider when it must change (the
 * provider's model id, stream_options.include_usage for streams).
 */

#include "ngx_http_aihub_module.h"

#include <cjson/cJSON.h>


static void ngx_http_aihub_body_done(ngx_http_request_t *r);
static ngx_int_t ngx_http_aihub_body_parse(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_body_bytes(ngx_http_request_t *r,
    ngx_str_t *body);
static int64_t ngx_http_aihub_body_prompt_chars(cJSON *messages);
static int64_t ngx_http_aihub_utf8_chars(const char *s);
static void ngx_http_aihub_body_cleanup(void *data);


ngx_int_t
ngx_http_aihub_body_read(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_http_aihub_loc_conf_t  *alcf;

    if (ctx->body_read) {
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
        ctx->body_waiting = 1;
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

    ctx->body_read = 1;
    r->main->count--;

    if (ctx->body_waiting) {
        ctx->body_waiting = 0;
        ctx->state = NGX_HTTP_AIHUB_STATE_NEW;
        ngx_http_aihub_resume(r);
    }
}


#define ngx_http_aihub_bad_request(ctx, msg)                                 \
    ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST, "invalid_request_error", \
                        "invalid_request_error", msg)


static ngx_int_t
ngx_http_aihub_body_parse(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    cJSON                       *root, *model, *stream, *max, *opts, *inc;
    cJSON                       *messages;
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
    ctx->json = root;

    if (!cJSON_IsObject(root)) {
        ngx_http_aihub_bad_request(ctx, "The request body must be a JSON "
                                        "object.");
        return NGX_OK;
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

    ctx->model.len = ngx_strlen(model->valuestring);
    ctx->model.data = ngx_pnalloc(r->pool, ctx->model.len);
    if (ctx->model.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->model.data, model->valuestring, ctx->model.len);

    messages = cJSON_GetObjectItemCaseSensitive(root, "messages");

    if (!cJSON_IsArray(messages)) {
        ngx_http_aihub_bad_request(ctx, "The messages parameter must be an "
                                        "array.");
        return NGX_OK;
    }

    ctx->prompt_estimate = ngx_http_aihub_body_prompt_chars(messages);

    stream = cJSON_GetObjectItemCaseSensitive(root, "stream");

    if (stream != NULL && !cJSON_IsBool(stream) && !cJSON_IsNull(stream)) {
        ngx_http_aihub_bad_request(ctx, "The stream parameter must be a "
                                        "boolean.");
        return NGX_OK;
    }

    ctx->stream_requested = cJSON_IsTrue(stream);

    opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");

    if (opts != NULL && !cJSON_IsObject(opts) && !cJSON_IsNull(opts)) {
        ngx_http_aihub_bad_request(ctx, "The stream_options parameter must "
                                        "be an object.");
        return NGX_OK;
    }

    inc = cJSON_GetObjectItemCaseSensitive(opts, "include_usage");
    ctx->include_usage = cJSON_IsTrue(inc);

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
            return NGX_OK;
        }

        ctx->max_tokens = (int64_t) max->valuedouble;
    }

    ctx->step = NGX_HTTP_AIHUB_STEP_LIMIT;

    return NGX_OK;
}


/*
 * The body as one piece of memory.  NGX_DECLINED: it went to a temporary
 * file (larger than client_body_buffer_size), which we do not read.
 */

static ngx_int_t
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
ngx_http_aihub_body_prompt_chars(cJSON *messages)
{
    int64_t   n;
    cJSON    *msg, *content, *part, *text;

    n = 0;

    cJSON_ArrayForEach(msg, messages) {
        content = cJSON_GetObjectItemCaseSensitive(msg, "content");

        if (cJSON_IsString(content)) {
            n += ngx_http_aihub_utf8_chars(content->valuestring);
            continue;
        }

        if (cJSON_IsArray(content)) {
            cJSON_ArrayForEach(part, content) {
                text = cJSON_GetObjectItemCaseSensitive(part, "text");

                if (cJSON_IsString(text)) {
                    n += ngx_http_aihub_utf8_chars(text->valuestring);
                }
            }
        }
    }

    return n;
}


/* UTF-8 continuation bytes (10xxxxxx) do not start a character */

static int64_t
ngx_http_aihub_utf8_chars(const char *s)
{
    int64_t        n;
    const u_char  *p;

    n = 0;

    for (p = (const u_char *) s; *p; p++) {
        n += ((*p & 0xc0) != 0x80);
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
    ngx_http_aihub_model_t  *m = ctx->model_entry;

    root = ctx->json;

    rename = (m->upstream.len != ctx->model.len
              || ngx_strncmp(m->upstream.data, ctx->model.data,
                             ctx->model.len) != 0);

    usage = ctx->stream_requested && !ctx->include_usage;

    if (!rename && !usage) {
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
