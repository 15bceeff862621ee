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
#include "ngx_http_aihub_forward.h"
#include "ngx_http_aihub_scan.h"
#include "ngx_http_aihub_refusal.h"
#include "ngx_http_aihub_lane.h"
#include "ngx_http_aihub_inflate.h"
#include "ngx_http_aihub_fallback.h"
#include "ngx_http_aihub_route.h"
#include "ngx_http_aihub_responses.h"
#include "ngx_http_aihub_filter.h"

#include "aihub_usage_event.h"


static ngx_int_t ngx_http_aihub_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_aihub_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_aihub_body_pass(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_aihub_replace(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t status, const char *type,
    const char *code, const char *message);
static ngx_int_t ngx_http_aihub_provider_answer(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_nginx_error(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_hold_first(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t **in);
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
    ngx_http_aihub_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx != NULL && ctx->flow.forwarded && r->upstream == NULL) {
        /*
         * refused after our phase by another module of the access phase
         * (auth_basic, allow/deny, auth_request): it never reached the
         * provider, and its rate limit slot, lane place and call go
         * back.  Before, a 502 "the provider could not be reached".
         */
        ctx->flow.forwarded = 0;
    }

    if (ctx == NULL || (!ctx->flow.forwarded && !ctx->flow.own_answer)) {
        return ngx_http_aihub_nginx_error(r, ctx);
    }

    /* the provider's headers stay behind, but an allow-list */

    if (ctx->flow.forwarded) {
        ngx_http_aihub_forward_answer_headers(r, ctx);
    }

    if (ngx_http_aihub_add_header(r, "x-request-id", ctx->event_id,
                                  AIHUB_EVENT_ID_LEN)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->caller.known && ngx_http_aihub_limit_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->flow.own_answer && ctx->flow.err_code != NULL
        && ngx_strcmp(ctx->flow.err_code, "insufficient_quota") == 0
        && ngx_http_aihub_quota_headers(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the SDKs retry a 409 (a lock timeout, to them): a key limit stays */

    if (ctx->flow.own_answer && ctx->flow.err_code != NULL
        && ngx_strcmp(ctx->flow.err_code, "key_limit_reached") == 0
        && ngx_http_aihub_no_retry(r) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!ctx->flow.forwarded || ctx->reply.replace != NULL) {
        return ngx_http_next_header_filter(r);
    }

    return ngx_http_aihub_provider_answer(r, ctx);
}


/*
 * What the provider's answer becomes for the client: a failure in our
 * words, a 400-class answer held to be judged, or the answer itself, read
 * for its usage as it passes (a JSON answer's header held for its first
 * byte).
 */

static ngx_int_t
ngx_http_aihub_provider_answer(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t             rc;
    ngx_uint_t            status;
    ngx_http_upstream_t  *u;

    u = r->upstream;
    status = r->headers_out.status;

    if (u != NULL && u->headers_in.status_n == 0
        && r->http_version == NGX_HTTP_VERSION_9
        && ctx->forward.http_version >= NGX_HTTP_VERSION_10)
    {
        /* a status line no parser accepts: never passed on raw */
        r->http_version = ctx->forward.http_version;
        ctx->reply.status = NGX_HTTP_BAD_GATEWAY;

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

    ctx->reply.status = u->headers_in.status_n;

    /* compressed unasked: read plain, or refused when it cannot be */

    rc = ngx_http_aihub_inflate_start(r, &ctx->reply.inflate);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED
        && (status == NGX_HTTP_OK || status == NGX_HTTP_CREATED))
    {
        return ngx_http_aihub_replace(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                      "server_error", "upstream_error",
                                      "The model provider sent an answer "
                                      "in a coding the gateway cannot "
                                      "read.");
    }

    if (ngx_http_aihub_fallback_answer(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (status == NGX_HTTP_BAD_REQUEST || status == NGX_HTTP_CONFLICT
        || status == NGX_HTTP_TOO_MANY_REQUESTS || status == NGX_HTTP_FORBIDDEN
        || status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE || status == 422)
    {
        /* the developer's mistake (or a rate limit, or input a provider's
           moderation flagged), or the operator's: its body tells */
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub filter: provider %ui held to be judged",
                       status);
        ctx->reply.hold = NGX_HTTP_AIHUB_HOLD_REFUSAL;
        ctx->reply.failed = 1;
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

    /* the Responses API translated: the client gets another answer */

    if (ctx->route.translate
        && ngx_http_aihub_responses_answer(r, ctx,
                                           ngx_http_aihub_answer_is_sse(r))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_aihub_scan_start(r, ctx);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_aihub_replace(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                      "server_error", "upstream_error",
                                      "The model provider sent an answer "
                                      "that is not JSON.");
    }

    if (rc == NGX_AGAIN) {
        /* the header waits for the first byte: "{" or our 502 */
        return NGX_OK;
    }

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

        /* refused before our phase (limit_req...): an id of its own, not
           32 NULs in the access log */
        ngx_http_aihub_request_id(ctx->event_id);
    }

    if (ngx_http_aihub_add_header(r, "x-request-id", ctx->event_id,
                                  AIHUB_EVENT_ID_LEN)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_aihub_nginx_error_words(status, &type, &code, &msg);

    return ngx_http_aihub_replace(r, ctx, status, type, code, msg);
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
    esc = aihub_event_escaped_len((u_char *) message, len);

    b = ngx_create_temp_buf(r->pool, esc + 128);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, "{\"error\":{\"message\":\"",
                         sizeof("{\"error\":{\"message\":\"") - 1);
    b->last = aihub_event_escape(b->last, (u_char *) message, len);
    b->last = ngx_sprintf(b->last,
                          "\",\"type\":\"%s\",\"param\":null,"
                          "\"code\":\"%s\"}}\n", type, code);
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

    /*
     * A provider's refusal made a 502 (its 401, 403, 404, a 400 about the
     * operator's credential or account, a 429 "insufficient_quota"): asked
     * again, it answers the same.  The SDKs retry a 502 twice, after a
     * backoff, unless told not to.  A 408, a 5xx, a timeout or a provider
     * not reached may well pass on a retry.
     */

    if (status == NGX_HTTP_BAD_GATEWAY
        && ctx->reply.status >= NGX_HTTP_BAD_REQUEST
        && ctx->reply.status < NGX_HTTP_INTERNAL_SERVER_ERROR
        && ctx->reply.status != NGX_HTTP_REQUEST_TIME_OUT
        && ngx_http_aihub_no_retry(r) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_aihub_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t              rc, broken;
    ngx_chain_t           *plain;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->reply.inflate == NULL) {
        return ngx_http_aihub_body_pass(r, ctx, in);
    }

    /* a compressed answer: everything below sees it plain */

    broken = ngx_http_aihub_inflate_body(r, ctx->reply.inflate, in, &plain);

    if (broken == NGX_ERROR) {
        return NGX_ERROR;
    }

    rc = ngx_http_aihub_body_pass(r, ctx, plain);

    ngx_http_aihub_inflate_sent(r, ctx->reply.inflate, plain);

    if (broken == NGX_ABORT && r->header_sent) {
        /*
         * the coded data broke once the answer had begun: what came plain
         * before went on, and the answer ends without its end (no last
         * chunk), as when a provider cuts it, so that the client knows it
         * is not whole.  (Broken before its first byte, it is an answer
         * that is not JSON: 502, as the scan decides at its end.)
         */
        ctx->reply.broken = 1;
        return NGX_ERROR;
    }

    return rc;
}


static ngx_int_t
ngx_http_aihub_body_pass(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_int_t     rc;
    ngx_uint_t    last;
    ngx_chain_t  *cl, *out, one;

    ngx_http_aihub_lane_body(r, ctx, in);

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

        one.buf = ctx->reply.replace;
        one.next = NULL;

        return ngx_http_next_body_filter(r, &one);
    }

    if (ctx->reply.hold == NGX_HTTP_AIHUB_HOLD_REFUSAL) {

        if (ctx->reply.scanning
            && ngx_http_aihub_scan_json(ctx, in) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_aihub_hold_refusal(r, ctx, in);
    }

    if (ctx->reply.hold == NGX_HTTP_AIHUB_HOLD_FIRST) {
        rc = ngx_http_aihub_hold_first(r, ctx, &in);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (!ctx->flow.forwarded || !ctx->reply.scanning || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->reply.sse && ctx->reply.sse->hold != NULL) {
        if (ngx_http_aihub_scan_stream(r, ctx, in, &out) != NGX_OK) {
            return NGX_ERROR;
        }

        goto ours;
    }

    if (ctx->reply.sse) {
        if (ngx_http_aihub_scan_stream(r, ctx, in, &in) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (ngx_http_aihub_scan_json(ctx, in) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ctx->route.translate) {
        return ngx_http_next_body_filter(r, in);
    }

    /* metered above as chat, then translated for the client */

    if (ngx_http_aihub_responses_body(r, ctx, in, &out) != NGX_OK) {
        return NGX_ERROR;
    }

ours:

    rc = ngx_http_next_body_filter(r, out);

    /* our copies are reused once sent: memory stays flat */
    ngx_chain_update_chains(r->pool, &ctx->reply.free, &ctx->reply.busy,
                            &out, (ngx_buf_tag_t) &ngx_http_aihub_module);
    return rc;
}


/*
 * A JSON answer's header waits for its first bytes: an object goes on as
 * it came, anything else (an HTML page, white space alone, nothing at
 * all) becomes our 502 and is never billed.  An object whose first member
 * is "error" with an object for its value is OpenRouter's failure once
 * the model has begun (a 200 whose body is the error, naming the upstream
 * and the operator's account): it is held to its end and judged by the
 * error's code.  White space before it (OpenRouter's keep-alives) waits
 * with the header (ngx_http_aihub_refusal_first).  NGX_DECLINED: the
 * header went on, go on with *in.
 */

static ngx_int_t
ngx_http_aihub_hold_first(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t **in)
{
    ngx_int_t     rc;
    ngx_chain_t  *cl, *out;

    rc = ngx_http_aihub_refusal_first(r, ctx, *in, &out);

    switch (rc) {

    case NGX_AGAIN:
        return NGX_OK;

    case NGX_OK:
        ctx->reply.hold = NGX_HTTP_AIHUB_HOLD_REFUSAL;

        if (ngx_http_aihub_scan_json(ctx, out) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_aihub_hold_refusal(r, ctx, out);

    case NGX_DECLINED:
        ctx->reply.hold = NGX_HTTP_AIHUB_HOLD_NONE;
        ngx_http_aihub_route_result(r, &ctx->route.provider->name, 1);

        rc = ngx_http_next_header_filter(r);

        if (rc == NGX_ERROR || rc > NGX_OK) {
            return rc;
        }

        *in = out;
        return NGX_DECLINED;

    case NGX_ABORT:
        ngx_http_aihub_route_result(r, &ctx->route.provider->name, 0);
        break;

    default:
        return NGX_ERROR;
    }

    ctx->reply.hold = NGX_HTTP_AIHUB_HOLD_NONE;

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "aihub: provider \"%V\" answered %ui with a body that is "
                  "not a JSON object", &ctx->route.provider->name,
                  ctx->reply.status);

    ctx->reply.scanning = 0;

    for (cl = *in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    return ngx_http_aihub_send_replace(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                       "server_error", "upstream_error",
                                       "The model provider sent an answer "
                                       "that is not JSON.");
}


/* a provider's 400-class answer (or a 200 that is an error), read to its
   end, then judged */

static ngx_int_t
ngx_http_aihub_hold_refusal(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t                     n;
    ngx_buf_t                 *held;
    ngx_uint_t                 last;
    ngx_chain_t               *cl;
    ngx_http_aihub_refusal_t   v;

    if (ctx->reply.held == NULL) {
        ctx->reply.held = ngx_create_temp_buf(r->pool,
                                              NGX_HTTP_AIHUB_REFUSAL_MAX + 1);
        if (ctx->reply.held == NULL) {
            return NGX_ERROR;
        }
    }

    held = ctx->reply.held;
    last = 0;

    for (cl = in; cl; cl = cl->next) {

        if (ngx_buf_in_memory(cl->buf)) {
            n = ngx_min((size_t) (cl->buf->last - cl->buf->pos),
                        (size_t) (held->end - held->last - 1));
            held->last = ngx_cpymem(held->last, cl->buf->pos, n);
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

    ctx->reply.hold = NGX_HTTP_AIHUB_HOLD_NONE;

    if (ngx_http_aihub_refusal_judge(r, ctx, held, &v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->reply.status < 300) {
        /* a 200 whose body is an error: the provider's failure, or the
           request's (then the provider is up) */
        ngx_http_aihub_route_result(r, &ctx->route.provider->name,
                                    v.status < 500);
    }

    return ngx_http_aihub_send_replace(r, ctx, v.status, v.type, v.code,
                                       v.message);
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

    ctx->reply.replace_sent = 1;

    out.buf = ctx->reply.replace;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}
