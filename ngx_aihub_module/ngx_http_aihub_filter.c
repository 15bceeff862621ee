/*
 * Filters on answers of "aihub on" locations: a header filter that notes
 * what the provider answered and turns provider failures into OpenAI-shaped
 * errors (and adds x-request-id and, from limit.c, the x-ratelimit-*
 * headers), and a body filter that reads the usage as the answer passes.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_limit.h"
#include "ngx_http_aihub_filter.h"


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
static void ngx_http_aihub_hide_header(ngx_http_request_t *r,
    const char *name);
static ngx_int_t ngx_http_aihub_nginx_error(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


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

    if (ctx == NULL || (!ctx->flow.forwarded && !ctx->flow.own_answer)) {
        return ngx_http_aihub_nginx_error(r, ctx);
    }

    /* ours replaces the provider's: one x-request-id, the event id */

    ngx_http_aihub_hide_header(r, "x-request-id");

    if (ngx_http_aihub_add_header(r, "x-request-id", ctx->event_id,
                                  AIHUB_EVENT_ID_LEN)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->caller.known && ngx_http_aihub_limit_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ctx->flow.forwarded || ctx->reply.replace != NULL) {
        return ngx_http_next_header_filter(r);
    }

    u = r->upstream;
    status = r->headers_out.status;

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

    ctx->reply.status = u->headers_in.status_n;

    if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        return ngx_http_aihub_replace(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                      "requests", "rate_limit_exceeded",
                                      "The model provider is rate limiting "
                                      "requests. Please retry shortly.");
    }

    if (status == NGX_HTTP_UNAUTHORIZED || status == NGX_HTTP_FORBIDDEN
        || status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
    {
        return ngx_http_aihub_replace(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                      "server_error", "upstream_error",
                                      "The model provider failed to answer "
                                      "the request.");
    }

    if (status < NGX_HTTP_OK || status >= NGX_HTTP_SPECIAL_RESPONSE) {
        return ngx_http_next_header_filter(r);
    }

    if (r->headers_out.content_type.len >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(r->headers_out.content_type.data,
                           (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1) == 0)
    {
        ctx->reply.streamed = 1;

        ctx->reply.sse = ngx_palloc(r->pool, sizeof(aihub_sse_t));
        if (ctx->reply.sse == NULL) {
            return NGX_ERROR;
        }

        /* the usage chunk we asked for on the client's behalf goes */

        if (ctx->body.stream && !ctx->body.include_usage) {
            hold = ngx_palloc(r->pool, AIHUB_SSE_HOLD_SIZE);
            if (hold == NULL) {
                return NGX_ERROR;
            }

            aihub_sse_init(ctx->reply.sse, hold, AIHUB_SSE_HOLD_SIZE);

            /* the length changes: the answer goes out chunked */
            ngx_http_clear_content_length(r);

        } else {
            aihub_sse_init(ctx->reply.sse, NULL, 0);
        }

    } else {
        ctx->reply.json = ngx_palloc(r->pool, sizeof(aihub_usage_json_t));
        if (ctx->reply.json == NULL) {
            return NGX_ERROR;
        }

        aihub_usage_json_init(ctx->reply.json);
    }

    ctx->reply.scanning = 1;

    return ngx_http_next_header_filter(r);
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


static void
ngx_http_aihub_hide_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash != 0 && h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            h[i].hash = 0;
        }
    }
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
    size_t      len;
    ngx_buf_t  *b;

    len = ngx_strlen(message);

    b = ngx_create_temp_buf(r->pool, len + 128);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_sprintf(b->last,
                          "{\"error\":{\"message\":\"%s\",\"type\":\"%s\","
                          "\"param\":null,\"code\":\"%s\"}}\n",
                          message, type, code);
    b->last_buf = 1;
    b->last_in_chain = 1;

    ctx->reply.replace = b;
    ctx->reply.failed = 1;

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
    ngx_uint_t             last;
    ngx_chain_t           *cl, out;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->reply.replace != NULL) {
        last = 0;

        for (cl = in; cl; cl = cl->next) {
            cl->buf->pos = cl->buf->last;
            cl->buf->file_pos = cl->buf->file_last;

            if (cl->buf->last_buf || cl->buf->last_in_chain) {
                last = 1;
            }
        }

        if (!last || ctx->reply.replace_sent) {
            return ngx_http_next_body_filter(r, NULL);
        }

        ctx->reply.replace_sent = 1;

        out.buf = ctx->reply.replace;
        out.next = NULL;

        return ngx_http_next_body_filter(r, &out);
    }

    if (!ctx->flow.forwarded || !ctx->reply.scanning || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->reply.sse) {
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
 * still be that chunk.
 */

static ngx_int_t
ngx_http_aihub_scan_stream(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t *in, ngx_chain_t **out)
{
    size_t        n;
    ngx_buf_t    *b, *nb;
    ngx_chain_t  *cl, *head, **ll;

    if (ctx->reply.sse->hold == NULL) {
        for (cl = in; cl; cl = cl->next) {
            b = cl->buf;

            if (ngx_buf_in_memory(b) && b->last > b->pos) {
                (void) aihub_sse_feed(ctx->reply.sse, b->pos, b->last - b->pos,
                                      NULL);
            }

            if (b->last_buf) {
                ctx->reply.last_seen = 1;
            }
        }

        *out = in;
        return NGX_OK;
    }

    head = NULL;
    ll = &head;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        nb = ngx_calloc_buf(r->pool);
        if (nb == NULL) {
            return NGX_ERROR;
        }

        n = ngx_buf_in_memory(b) ? (size_t) (b->last - b->pos) : 0;

        if (n || b->last_buf) {
            nb->start = ngx_pnalloc(r->pool,
                                    aihub_sse_out_size(ctx->reply.sse, n) + 1);
            if (nb->start == NULL) {
                return NGX_ERROR;
            }

            nb->pos = nb->start;
            nb->last = nb->start;
            nb->end = nb->start + aihub_sse_out_size(ctx->reply.sse, n) + 1;
            nb->temporary = 1;

            if (n) {
                nb->last += aihub_sse_feed(ctx->reply.sse, b->pos, n, nb->last);
            }

            if (b->last_buf) {
                nb->last += aihub_sse_finish(ctx->reply.sse, nb->last);
                ctx->reply.last_seen = 1;
            }
        }

        /* the provider's buffer is consumed: upstream may reuse it */
        b->pos = b->last;

        if (nb->last == nb->pos) {
            /* all of it held or stripped: only the flags go on */

            if (!b->last_buf && !b->flush && !b->last_in_chain) {
                continue;
            }

            nb->start = NULL;
            nb->pos = NULL;
            nb->last = NULL;
            nb->end = NULL;
            nb->temporary = 0;
            nb->flush = b->flush || !b->last_buf;

        } else {
            nb->flush = 1;
        }

        nb->last_buf = b->last_buf;
        nb->last_in_chain = b->last_in_chain;

        *ll = ngx_alloc_chain_link(r->pool);
        if (*ll == NULL) {
            return NGX_ERROR;
        }

        (*ll)->buf = nb;
        (*ll)->next = NULL;
        ll = &(*ll)->next;
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
            (void) aihub_usage_json_feed(ctx->reply.json, b->pos,
                                         b->last - b->pos);

        } else if (b->in_file && b->file_last > b->file_pos) {
            /* buffered to disk (proxy_buffering on): not read again */
            ctx->reply.unscanned = 1;
        }

        if (b->last_buf) {
            ctx->reply.last_seen = 1;
        }
    }

    return NGX_OK;
}
