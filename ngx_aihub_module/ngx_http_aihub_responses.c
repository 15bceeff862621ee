/*
 * POST /v1/responses for a model whose provider speaks only chat
 * completions (the catalog's api "chat"): the request is translated into
 * a chat completion request before the quota step (what cannot be
 * translated is 400, never forwarded), and the provider's answer back
 * into the Responses API as it passes, in a body filter step
 * (aihub_responses.c does both translations).
 *
 * The provider's answer is metered as it arrives, before the translation
 * (scan.c), exactly as a chat completion.  A JSON answer is held until it
 * is complete (at most NGX_HTTP_AIHUB_RS_JSON_MAX bytes) and sent as one
 * response object; a stream is translated event by event, in buffers
 * reused once sent, keeping only the answer's text for the final events
 * (at most NGX_HTTP_AIHUB_RS_TEXT_MAX bytes).  Either limit crossed ends
 * the answer with a "failed" response.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_body.h"
#include "ngx_http_aihub_responses.h"
#include "aihub_responses.h"

#include <cjson/cJSON.h>


#define NGX_HTTP_AIHUB_RS_JSON_MAX   (4 * 1024 * 1024)
#define NGX_HTTP_AIHUB_RS_TEXT_MAX   (256 * 1024)
#define NGX_HTTP_AIHUB_RS_EVENT_MAX  (256 * 1024)


static void ngx_http_aihub_responses_cleanup_json(void *data);
static void ngx_http_aihub_responses_cleanup_stream(void *data);
static ngx_int_t ngx_http_aihub_responses_out(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, const u_char *p, size_t n, ngx_uint_t last,
    ngx_chain_t ***ll);
static ngx_int_t ngx_http_aihub_responses_json_end(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t ***ll);


/*
 * The request, in the model step: ctx->body.json becomes the chat
 * completion request.  NGX_DECLINED: it cannot be translated, the verdict
 * is given.
 */

ngx_int_t
ngx_http_aihub_responses_request(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    char                 err[AIHUB_RESPONSES_ERR_LEN];
    u_char              *msg;
    cJSON               *chat;
    ngx_pool_cleanup_t  *cln;

    chat = aihub_responses_request(ctx->body.json, err, sizeof(err));

    if (chat == NULL) {
        msg = ngx_pnalloc(r->pool, sizeof(err));
        if (msg == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(msg, err, sizeof(err));

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub responses: not translated: %s", err);

        ngx_http_aihub_bad_request(ctx, (const char *) msg);
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        cJSON_Delete(chat);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_aihub_responses_cleanup_json;
    cln->data = chat;

    /* the Responses body stays in the pool until its own cleanup */
    ctx->body.json = chat;
    ctx->route.translate = 1;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub responses: translated into chat completions");

    return NGX_OK;
}


static void
ngx_http_aihub_responses_cleanup_json(void *data)
{
    cJSON_Delete(data);
}


/* the answer's header: 200 from the provider, SSE or JSON */

ngx_int_t
ngx_http_aihub_responses_answer(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t stream)
{
    u_char              *id, *model;
    ngx_pool_cleanup_t  *cln;
    aihub_rstream_t     *s;

    /* the length changes: the answer goes out chunked */
    ngx_http_clear_content_length(r);

    id = ngx_pnalloc(r->pool, AIHUB_EVENT_ID_LEN + 1);
    model = ngx_pnalloc(r->pool, ctx->body.model.len + 1);

    if (id == NULL || model == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(id, ctx->event_id, AIHUB_EVENT_ID_LEN);
    id[AIHUB_EVENT_ID_LEN] = '\0';
    ngx_memcpy(model, ctx->body.model.data, ctx->body.model.len);
    model[ctx->body.model.len] = '\0';

    ctx->reply.xlate_id = id;
    ctx->reply.xlate_model = model;

    if (!stream) {
        ctx->reply.xlate_json = ngx_create_temp_buf(r->pool, 4096);
        return ctx->reply.xlate_json ? NGX_OK : NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    s = aihub_rstream_create((char *) id, (char *) model, ngx_time(),
                             NGX_HTTP_AIHUB_RS_EVENT_MAX,
                             NGX_HTTP_AIHUB_RS_TEXT_MAX);
    if (s == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_aihub_responses_cleanup_stream;
    cln->data = s;
    ctx->reply.xlate_stream = s;

    return NGX_OK;
}


static void
ngx_http_aihub_responses_cleanup_stream(void *data)
{
    aihub_rstream_destroy(data);
}


/*
 * The answer's body, after the usage scan: the provider's buffers are
 * consumed, ours go on in *out.
 */

ngx_int_t
ngx_http_aihub_responses_body(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t **out)
{
    size_t                n, size;
    u_char               *p;
    ngx_buf_t            *b, *j;
    ngx_uint_t            last;
    ngx_chain_t          *cl, **ll;
    const unsigned char  *o;

    *out = NULL;
    ll = out;
    last = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;
        n = ngx_buf_in_memory(b) ? (size_t) (b->last - b->pos) : 0;

        if (b->in_file && !ngx_buf_in_memory(b)
            && b->file_last > b->file_pos)
        {
            /* buffered to disk (proxy_buffering on): not read again */
            ctx->reply.xlate_failed = 1;
        }

        if (n && ctx->reply.xlate_stream) {
            if (aihub_rstream_feed(ctx->reply.xlate_stream, b->pos, n) != 0)
            {
                return NGX_ERROR;
            }

            o = aihub_rstream_take(ctx->reply.xlate_stream, &n);

            if (n && ngx_http_aihub_responses_out(r, ctx, o, n, 0, &ll)
                     != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (n && !ctx->reply.xlate_failed) {
            j = ctx->reply.xlate_json;

            /* the limit on every buffer, not only when the copy grows */

            if ((size_t) (j->last - j->pos) + n > NGX_HTTP_AIHUB_RS_JSON_MAX) {
                ctx->reply.xlate_failed = 1;

            } else if ((size_t) (j->end - j->last) < n) {
                size = 2 * ((j->last - j->pos) + n);

                p = ngx_pnalloc(r->pool, size);
                if (p == NULL) {
                    return NGX_ERROR;
                }

                j->last = ngx_cpymem(p, j->pos, j->last - j->pos);
                j->pos = p;
                j->start = p;
                j->end = p + size;
            }

            if (!ctx->reply.xlate_failed) {
                j->last = ngx_cpymem(j->last, b->pos, n);
            }
        }

        b->pos = b->last;
        b->file_pos = b->file_last;

        if (b->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    if (ctx->reply.xlate_json) {
        return ngx_http_aihub_responses_json_end(r, ctx, &ll);
    }

    if (aihub_rstream_finish(ctx->reply.xlate_stream) != 0) {
        return NGX_ERROR;
    }

    o = aihub_rstream_take(ctx->reply.xlate_stream, &n);

    return ngx_http_aihub_responses_out(r, ctx, o, n, 1, &ll);
}


/* the whole chat completion read: the response object, or a failed one */

static ngx_int_t
ngx_http_aihub_responses_json_end(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t ***ll)
{
    char        *doc;
    size_t       len;
    u_char      *buf, *last;
    ngx_int_t    rc;
    ngx_buf_t   *j;

    j = ctx->reply.xlate_json;
    doc = NULL;
    len = 0;

    if (!ctx->reply.xlate_failed) {
        doc = aihub_responses_answer((char *) j->pos, j->last - j->pos,
                                     (char *) ctx->reply.xlate_id,
                                     (char *) ctx->reply.xlate_model,
                                     ngx_time(), &len);
    }

    if (doc == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aihub: the answer of provider \"%V\" could not be "
                      "translated into the Responses API",
                      &ctx->route.provider->name);

        len = ngx_strlen(ctx->reply.xlate_model);
        buf = ngx_pnalloc(r->pool, 512 + len * 6);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        last = ngx_sprintf(buf,
                           "{\"id\":\"resp_%s\",\"object\":\"response\","
                           "\"created_at\":%T,\"status\":\"failed\","
                           "\"error\":{\"code\":\"server_error\","
                           "\"message\":\"The model provider's answer "
                           "could not be translated.\"},"
                           "\"incomplete_details\":null,\"model\":\"",
                           ctx->reply.xlate_id, ngx_time());
        last = (u_char *) ngx_escape_json(last, ctx->reply.xlate_model, len);
        last = ngx_cpymem(last, "\",\"output\":[],\"usage\":null}",
                          sizeof("\",\"output\":[],\"usage\":null}") - 1);

        return ngx_http_aihub_responses_out(r, ctx, buf, last - buf, 1, ll);
    }

    rc = ngx_http_aihub_responses_out(r, ctx, (u_char *) doc, len, 1, ll);
    cJSON_free(doc);

    return rc;
}


/* bytes for the client in a buffer of ours (reused once sent) */

static ngx_int_t
ngx_http_aihub_responses_out(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, const u_char *p, size_t n, ngx_uint_t last,
    ngx_chain_t ***ll)
{
    size_t        size;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = ngx_chain_get_free_buf(r->pool, &ctx->reply.free);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b = cl->buf;
    size = ngx_max(n, 4096);

    if (b->start == NULL || (size_t) (b->end - b->start) < n) {
        b->start = ngx_palloc(r->pool, size);
        if (b->start == NULL) {
            return NGX_ERROR;
        }

        b->end = b->start + size;
    }

    b->pos = b->start;
    b->last = n ? ngx_cpymem(b->start, p, n) : b->start;
    b->tag = (ngx_buf_tag_t) &ngx_http_aihub_module;
    b->temporary = (n != 0);
    b->flush = 1;
    b->last_buf = last;
    b->last_in_chain = last;

    cl->next = NULL;
    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}
