/*
 * Filters on answers of "aihub on" locations: a header filter that notes
 * what the provider answered and turns provider failures into OpenAI-shaped
 * errors, and a body filter that reads the usage as the answer passes.
 */

#include "ngx_http_aihub_module.h"

#include "aihub_sse.h"

#include <cjson/cJSON.h>


#define NGX_HTTP_AIHUB_PROVIDER_RETRY  1     /* s, when the provider's 429
                                                says no Retry-After */
#define NGX_HTTP_AIHUB_REFUSAL_MAX     8192  /* bytes of a 4xx body read */
#define NGX_HTTP_AIHUB_REFUSAL_TEXT    256   /* of its message passed on */
#define NGX_HTTP_AIHUB_STREAM_BUF      16384 /* our copies of a stream */


static ngx_int_t ngx_http_aihub_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_aihub_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_aihub_replace(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t status, const char *type,
    const char *code, const char *message);
static ngx_int_t ngx_http_aihub_scan_stream(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t **out);
static ngx_int_t ngx_http_aihub_scan_json(ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t *in);
static ngx_int_t ngx_http_aihub_rate_headers(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_nginx_error(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_uint_t ngx_http_aihub_is_json(ngx_http_request_t *r);
static ngx_int_t ngx_http_aihub_retry_after(ngx_http_request_t *r,
    ngx_int_t sec);
static ngx_int_t ngx_http_aihub_quota_headers(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_hold_first(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_aihub_hold_refusal(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_aihub_send_replace(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t status, const char *type,
    const char *code, const char *message);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_aihub_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_aihub_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_aihub_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aihub_header_filter(ngx_http_request_t *r)
{
    u_char                *hold;
    ngx_uint_t             status;
    ngx_http_upstream_t   *u;
    ngx_http_aihub_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx == NULL || (!ctx->forwarded && !ctx->own_answer)) {
        return ngx_http_aihub_nginx_error(r, ctx);
    }

    /* the provider's headers stay behind, but an allow-list */

    if (ctx->forwarded) {
        ngx_http_aihub_forward_answer_headers(r, ctx);
    }

    if (ngx_http_aihub_add_header(r, "x-request-id", ctx->event_id,
                                  AIHUB_EVENT_ID_LEN)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->key_known && ngx_http_aihub_rate_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->own_answer && ctx->err_code != NULL
        && ngx_strcmp(ctx->err_code, "insufficient_quota") == 0
        && ngx_http_aihub_quota_headers(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!ctx->forwarded || ctx->replace != NULL) {
        return ngx_http_next_header_filter(r);
    }

    u = r->upstream;
    status = r->headers_out.status;

    if (u != NULL && u->headers_in.status_n == 0
        && r->http_version == NGX_HTTP_VERSION_9
        && ctx->http_version >= NGX_HTTP_VERSION_10)
    {
        /* a status line no parser accepts: never passed on raw */
        r->http_version = ctx->http_version;
        ctx->provider_status = NGX_HTTP_BAD_GATEWAY;

        return ngx_http_aihub_replace(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                      "server_error", "upstream_error",
                                      "The model provider sent an answer "
                                      "that is not HTTP.");
    }

    if (u == NULL || u->headers_in.status_n == 0) {

        /* nginx's own answer: the provider could not be reached */

        if (status == NGX_HTTP_GATEWAY_TIME_OUT) {
            return ngx_http_aihub_replace(r, ctx, NGX_HTTP_GATEWAY_TIME_OUT,
                                          "server_error", "upstream_timeout",
                                          "The model provider did not answer "
                                          "in time.");
        }

        if (status >= NGX_HTTP_SPECIAL_RESPONSE) {
            return ngx_http_aihub_replace(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                          "server_error", "upstream_error",
                                          "The model provider could not be "
                                          "reached.");
        }

        return ngx_http_next_header_filter(r);
    }

    ctx->provider_status = u->headers_in.status_n;

    if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        if (ngx_http_aihub_retry_after(r, ctx->provider_retry_after > 0
                                          ? ctx->provider_retry_after
                                          : NGX_HTTP_AIHUB_PROVIDER_RETRY)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_aihub_replace(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                      "requests", "rate_limit_exceeded",
                                      "The model provider is rate limiting "
                                      "requests. Please retry shortly.");
    }

    if (status == NGX_HTTP_BAD_REQUEST || status == NGX_HTTP_CONFLICT
        || status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
        || status == 422)
    {
        /* the developer's mistake, or the operator's: its body tells */
        ctx->hold = NGX_HTTP_AIHUB_HOLD_REFUSAL;
        ctx->failed = 1;
        return NGX_OK;
    }

    if (status != NGX_HTTP_OK && status != NGX_HTTP_CREATED) {
        /* a credential, account or catalog problem (401, 403, 404, ...),
           a failure (5xx), or an answer no client can use (1xx, 204,
           3xx): the developer is told the provider failed, no more */
        return ngx_http_aihub_replace(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                      "server_error", "upstream_error",
                                      "The model provider failed to answer "
                                      "the request.");
    }

    if (r->headers_out.content_type.len >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(r->headers_out.content_type.data,
                           (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1) == 0)
    {
        ctx->streamed = 1;

        ctx->sse = ngx_palloc(r->pool, sizeof(aihub_sse_t));
        if (ctx->sse == NULL) {
            return NGX_ERROR;
        }

        /* the usage chunk we asked for on the client's behalf goes */

        if (ctx->stream_requested && !ctx->include_usage) {
            hold = ngx_palloc(r->pool, AIHUB_SSE_HOLD_SIZE);
            if (hold == NULL) {
                return NGX_ERROR;
            }

            aihub_sse_init(ctx->sse, hold, AIHUB_SSE_HOLD_SIZE);

            /* the length changes: the answer goes out chunked */
            ngx_http_clear_content_length(r);

        } else {
            aihub_sse_init(ctx->sse, NULL, 0);
        }

    } else {
        if (!ngx_http_aihub_is_json(r)) {
            return ngx_http_aihub_replace(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                          "server_error", "upstream_error",
                                          "The model provider sent an "
                                          "answer that is not JSON.");
        }

        ctx->json_scan = ngx_palloc(r->pool, sizeof(aihub_usage_json_t));
        if (ctx->json_scan == NULL) {
            return NGX_ERROR;
        }

        aihub_usage_json_init(ctx->json_scan);

        /* the header waits for the first byte: "{" or our 502 */
        ctx->hold = NGX_HTTP_AIHUB_HOLD_FIRST;
        ctx->scanning = 1;

        return NGX_OK;
    }

    ctx->scanning = 1;

    return ngx_http_next_header_filter(r);
}


static ngx_uint_t
ngx_http_aihub_is_json(ngx_http_request_t *r)
{
    ngx_str_t  *ct = &r->headers_out.content_type;

    return ct->len >= sizeof("application/json") - 1
           && ngx_strncasecmp(ct->data, (u_char *) "application/json",
                              sizeof("application/json") - 1) == 0;
}


/*
 * A used-up quota or spend cap: retrying before the period ends cannot
 * help, so the SDKs are told not to (they retry a 429 twice by default
 * unless "x-should-retry: false"), and when it can.
 */

static ngx_int_t
ngx_http_aihub_quota_headers(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    time_t  sec;

    if (ngx_http_aihub_add_header(r, "x-should-retry", (u_char *) "false",
                                  sizeof("false") - 1)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    sec = ctx->period_end - ngx_http_aihub_time(r);

    return ngx_http_aihub_retry_after(r, sec > 0 ? (ngx_int_t) sec : 1);
}


static ngx_int_t
ngx_http_aihub_retry_after(ngx_http_request_t *r, ngx_int_t sec)
{
    u_char  *p;
    size_t   len;

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = ngx_sprintf(p, "%i", sec) - p;

    return ngx_http_aihub_add_header(r, "Retry-After", p, len);
}


/*
 * An error nginx answered itself in an aihub location (a body over
 * client_max_body_size, a malformed request, a body nginx failed to read)
 * goes out in the OpenAI shape too, not as nginx's HTML page.
 */

static ngx_int_t
ngx_http_aihub_nginx_error(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_uint_t                  status;
    const char                 *type, *code, *msg;
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);
    status = r->headers_out.status;

    if (!alcf->enable || status < NGX_HTTP_BAD_REQUEST) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_aihub_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_aihub_module);
    }

    type = "invalid_request_error";

    switch (status) {

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        code = "request_too_large";
        msg = "The request body is too large.";
        break;

    case NGX_HTTP_REQUEST_URI_TOO_LARGE:
    case NGX_HTTP_REQUEST_HEADER_TOO_LARGE:
        code = "request_too_large";
        msg = "The request line or its headers are too large.";
        break;

    case NGX_HTTP_REQUEST_TIME_OUT:
        code = "request_timeout";
        msg = "The request was not received in time.";
        break;

    case NGX_HTTP_NOT_ALLOWED:
        code = "method_not_allowed";
        msg = "This method is not allowed here.";
        break;

    case NGX_HTTP_NOT_FOUND:
        code = "unknown_url";
        msg = "Unknown request URL.";
        break;

    case NGX_HTTP_FORBIDDEN:
        code = "forbidden";
        msg = "The gateway's configuration does not allow this request.";
        break;

    default:
        if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
            type = "server_error";
            code = "internal_error";
            msg = "The gateway failed to process the request.";

        } else {
            code = "invalid_request_error";
            msg = "The request could not be read.";
        }
    }

    return ngx_http_aihub_replace(r, ctx, status, type, code, msg);
}


/*
 * x-ratelimit-{limit,remaining,reset}-{requests,tokens} as OpenAI sends
 * them, and Retry-After on our own 429.
 */

static ngx_int_t
ngx_http_aihub_rate_headers(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
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
        res = (i == 0) ? &ctx->rl_requests : &ctx->rl_tokens;
        limit = (i == 0) ? ctx->key.rec.rpm : ctx->key.rec.tpm;

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


ngx_int_t
ngx_http_aihub_add_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = value;
    h->value.len = len;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * The provider's failure becomes our error; its body (which may say
 * anything, credentials included) is dropped by the body filter.
 */

static ngx_int_t
ngx_http_aihub_replace(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t status, const char *type, const char *code,
    const char *message)
{
    size_t      len, esc;
    ngx_buf_t  *b;

    len = ngx_strlen(message);
    esc = ngx_escape_json(NULL, (u_char *) message, len);

    b = ngx_create_temp_buf(r->pool, len + esc + 128);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, "{\"error\":{\"message\":\"",
                         sizeof("{\"error\":{\"message\":\"") - 1);
    b->last = (u_char *) ngx_escape_json(b->last, (u_char *) message, len);
    b->last = ngx_sprintf(b->last,
                          "\",\"type\":\"%s\",\"param\":null,"
                          "\"code\":\"%s\"}}\n", type, code);
    b->last_buf = 1;
    b->last_in_chain = 1;

    ctx->replace = b;
    ctx->failed = 1;

    r->headers_out.status = status;
    r->headers_out.status_line.len = 0;
    r->headers_out.content_length_n = b->last - b->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    if (r->headers_out.content_encoding) {
        r->headers_out.content_encoding->hash = 0;
        r->headers_out.content_encoding = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_aihub_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t              rc;
    ngx_uint_t             last;
    ngx_chain_t           *cl, *out, one;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->replace != NULL) {
        last = 0;

        for (cl = in; cl; cl = cl->next) {
            cl->buf->pos = cl->buf->last;
            cl->buf->file_pos = cl->buf->file_last;

            if (cl->buf->last_buf || cl->buf->last_in_chain) {
                last = 1;
            }
        }

        if (!last || ctx->replace_sent) {
            return ngx_http_next_body_filter(r, NULL);
        }

        ctx->replace_sent = 1;

        one.buf = ctx->replace;
        one.next = NULL;

        return ngx_http_next_body_filter(r, &one);
    }

    if (ctx->hold == NGX_HTTP_AIHUB_HOLD_REFUSAL) {
        return ngx_http_aihub_hold_refusal(r, ctx, in);
    }

    if (ctx->hold == NGX_HTTP_AIHUB_HOLD_FIRST) {
        rc = ngx_http_aihub_hold_first(r, ctx, in);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (!ctx->forwarded || !ctx->scanning || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->sse && ctx->sse->hold != NULL) {
        if (ngx_http_aihub_scan_stream(r, ctx, in, &out) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_next_body_filter(r, out);

        /* our copies are reused once sent: memory stays flat */
        ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                                (ngx_buf_tag_t) &ngx_http_aihub_module);
        return rc;
    }

    if (ctx->sse) {
        if (ngx_http_aihub_scan_stream(r, ctx, in, &in) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (ngx_http_aihub_scan_json(ctx, in) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_body_filter(r, in);
}


/*
 * A streamed answer is scanned as it passes, never buffered.  Without
 * stripping the buffers go on untouched; with it, each buffer's bytes go on
 * less the usage chunk, held back only while the event they belong to could
 * still be that chunk, in copies of ours that are reused once sent, so a
 * stream of any length needs a few buffers.
 */

static ngx_int_t
ngx_http_aihub_scan_stream(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t *in, ngx_chain_t **out)
{
    size_t        n, size;
    ngx_buf_t    *b, *nb;
    ngx_chain_t  *cl, *ncl, *head, **ll;

    if (ctx->sse->hold == NULL) {
        for (cl = in; cl; cl = cl->next) {
            b = cl->buf;

            if (ngx_buf_in_memory(b) && b->last > b->pos) {
                (void) aihub_sse_feed(ctx->sse, b->pos, b->last - b->pos,
                                      NULL);
            }

            if (b->last_buf) {
                ctx->last_seen = 1;
            }
        }

        *out = in;
        return NGX_OK;
    }

    head = NULL;
    ll = &head;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        n = ngx_buf_in_memory(b) ? (size_t) (b->last - b->pos) : 0;

        if (n == 0 && !b->last_buf && !b->flush && !b->last_in_chain) {
            continue;
        }

        /* a buffer of ours that has been sent, or a new one */

        ncl = ngx_chain_get_free_buf(r->pool, &ctx->free);
        if (ncl == NULL) {
            return NGX_ERROR;
        }

        nb = ncl->buf;
        size = aihub_sse_out_size(ctx->sse, n) + 1;

        if (nb->start == NULL || (size_t) (nb->end - nb->start) < size) {
            nb->start = ngx_palloc(r->pool,
                                   ngx_max(size, NGX_HTTP_AIHUB_STREAM_BUF));
            if (nb->start == NULL) {
                return NGX_ERROR;
            }

            nb->end = nb->start + ngx_max(size, NGX_HTTP_AIHUB_STREAM_BUF);
        }

        nb->pos = nb->start;
        nb->last = nb->start;
        nb->tag = (ngx_buf_tag_t) &ngx_http_aihub_module;
        nb->temporary = 1;
        nb->flush = 0;
        nb->last_buf = 0;
        nb->last_in_chain = 0;

        if (n) {
            nb->last += aihub_sse_feed(ctx->sse, b->pos, n, nb->last);
        }

        if (b->last_buf) {
            nb->last += aihub_sse_finish(ctx->sse, nb->last);
            ctx->last_seen = 1;
        }

        /* the provider's buffer is consumed: upstream may reuse it */
        b->pos = b->last;

        if (nb->last == nb->pos) {
            /* all of it held or stripped: only the flags go on */

            if (!b->last_buf && !b->flush && !b->last_in_chain) {
                ncl->next = ctx->free;
                ctx->free = ncl;
                continue;
            }

            nb->temporary = 0;
            nb->flush = b->flush || !b->last_buf;

        } else {
            nb->flush = 1;
        }

        nb->last_buf = b->last_buf;
        nb->last_in_chain = b->last_in_chain;

        ncl->next = NULL;
        *ll = ncl;
        ll = &ncl->next;
    }

    *out = head;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aihub_scan_json(ngx_http_aihub_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            (void) aihub_usage_json_feed(ctx->json_scan, b->pos,
                                         b->last - b->pos);

        } else if (b->in_file && b->file_last > b->file_pos) {
            /* buffered to disk (proxy_buffering on): not read again */
            ctx->unscanned = 1;
        }

        if (b->last_buf) {
            ctx->last_seen = 1;
        }
    }

    return NGX_OK;
}


/*
 * A JSON answer's header waits for its first byte: an object goes on as
 * it came, anything else (an HTML page, nothing at all) becomes our 502
 * and is never billed.  NGX_DECLINED: the header went on, go on.
 */

static ngx_int_t
ngx_http_aihub_hold_first(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t *in)
{
    u_char       *p;
    ngx_int_t     rc;
    ngx_uint_t    last;
    ngx_chain_t  *cl;

    last = 0;

    for (cl = in; cl; cl = cl->next) {

        if (cl->buf->last_buf) {
            last = 1;
        }

        if (!ngx_buf_in_memory(cl->buf)) {
            continue;
        }

        for (p = cl->buf->pos; p < cl->buf->last; p++) {

            if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
                continue;
            }

            ctx->hold = NGX_HTTP_AIHUB_HOLD_NONE;

            if (*p != '{') {
                goto refuse;
            }

            rc = ngx_http_next_header_filter(r);

            if (rc == NGX_ERROR || rc > NGX_OK) {
                return rc;
            }

            return NGX_DECLINED;
        }
    }

    if (!last) {
        /* nothing but white space yet: it waits with the header */
        if (in == NULL) {
            return NGX_OK;
        }

        ctx->hold = NGX_HTTP_AIHUB_HOLD_NONE;

        rc = ngx_http_next_header_filter(r);

        if (rc == NGX_ERROR || rc > NGX_OK) {
            return rc;
        }

        return NGX_DECLINED;
    }

    ctx->hold = NGX_HTTP_AIHUB_HOLD_NONE;

refuse:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "aihub: provider \"%V\" answered %ui with a body that is "
                  "not a JSON object", &ctx->provider->name,
                  ctx->provider_status);

    ctx->scanning = 0;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    return ngx_http_aihub_send_replace(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                       "server_error", "upstream_error",
                                       "The model provider sent an answer "
                                       "that is not JSON.");
}


/*
 * A provider's 400, 409, 413 or 422 is read to its end (8 KB kept) and
 * judged: an OpenAI-shaped error about the request itself is the
 * developer's to see, as a 400 with the provider's message; anything that
 * speaks of credentials, keys, accounts, billing or quota, and any other
 * shape (Gemini answers a bad key with a 400 and a JSON array), is the
 * operator's problem: a 502 that says no more.
 */

static ngx_int_t
ngx_http_aihub_hold_refusal(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t *in)
{
    u_char       *text, *msg;
    size_t        n;
    cJSON        *root, *err, *m;
    ngx_int_t     rc;
    ngx_uint_t    last, i;
    ngx_chain_t  *cl;

    static const char  *operator_words[] = {
        "key", "credential", "auth", "permission", "billing", "quota",
        "organization", "project", "account", "payment", "credit", NULL
    };

    if (ctx->held == NULL) {
        ctx->held = ngx_create_temp_buf(r->pool,
                                        NGX_HTTP_AIHUB_REFUSAL_MAX + 1);
        if (ctx->held == NULL) {
            return NGX_ERROR;
        }
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {

        if (ngx_buf_in_memory(cl->buf)) {
            n = ngx_min((size_t) (cl->buf->last - cl->buf->pos),
                        (size_t) (ctx->held->end - ctx->held->last - 1));
            ctx->held->last = ngx_cpymem(ctx->held->last, cl->buf->pos, n);
        }

        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    ctx->hold = NGX_HTTP_AIHUB_HOLD_NONE;
    *ctx->held->last = '\0';

    msg = NULL;
    root = cJSON_ParseWithLength((const char *) ctx->held->pos,
                                 ctx->held->last - ctx->held->pos);

    err = cJSON_IsObject(root)
          ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
    m = cJSON_IsObject(err)
        ? cJSON_GetObjectItemCaseSensitive(err, "message") : NULL;

    if (cJSON_IsString(m) && m->valuestring[0] != '\0') {
        msg = (u_char *) m->valuestring;

        for (i = 0; operator_words[i]; i++) {
            if (ngx_strcasestrn(ctx->held->pos, (char *) operator_words[i],
                                ngx_strlen(operator_words[i]) - 1)
                != NULL)
            {
                msg = NULL;
                break;
            }
        }
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "aihub: provider \"%V\" refused the request with %ui%s",
                  &ctx->provider->name, ctx->provider_status,
                  msg ? "" : ", a problem of the gateway's own");

    if (msg == NULL) {
        cJSON_Delete(root);

        return ngx_http_aihub_send_replace(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                           "server_error", "upstream_error",
                                           "The model provider failed to "
                                           "answer the request.");
    }

    text = ngx_http_aihub_safe_text(r->pool, msg, ngx_strlen(msg),
                                    NGX_HTTP_AIHUB_REFUSAL_TEXT);
    cJSON_Delete(root);

    if (text == NULL) {
        return NGX_ERROR;
    }

    msg = ngx_pnalloc(r->pool, NGX_HTTP_AIHUB_REFUSAL_TEXT + 64);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(msg, "The model provider rejected the request: %s%Z", text);

    rc = ngx_http_aihub_send_replace(r, ctx, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request_error",
                                     "provider_rejected_request",
                                     (const char *) msg);
    return rc;
}


/* our answer instead of the provider's, from inside the body filter */

static ngx_int_t
ngx_http_aihub_send_replace(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t status, const char *type, const char *code,
    const char *message)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    rc = ngx_http_aihub_replace(r, ctx, status, type, code, message);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    ctx->replace_sent = 1;

    out.buf = ctx->replace;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}
