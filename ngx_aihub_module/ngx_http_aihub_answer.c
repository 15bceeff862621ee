/*
 * The answers the module writes itself: errors in the shape the OpenAI
 * SDKs parse,
 *   {"error":{"message":"...","type":"...","param":null,"code":"..."}}
 * the verdict a step gives when it refuses (deny), the one function that
 * sends any such answer, response headers, and the words of the errors
 * nginx answers itself.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"

#include "aihub_usage_event.h"


static ngx_int_t
ngx_http_aihub_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *code, const char *message)
{
    size_t                 len, mlen, esc;
    ngx_buf_t             *b;
    ngx_http_aihub_ctx_t  *ctx;

    static u_char  head[] = "{\"error\":{\"message\":\"";
    static u_char  mid1[] = "\",\"type\":\"";
    static u_char  mid2[] = "\",\"param\":null,\"code\":\"";
    static u_char  tail[] = "\"}}\n";

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx) {
        ctx->flow.own_answer = 1;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    mlen = ngx_strlen(message);
    esc = aihub_event_escaped_len((u_char *) message, mlen);

    len = sizeof(head) - 1 + esc + sizeof(mid1) - 1
          + ngx_strlen(type) + sizeof(mid2) - 1 + ngx_strlen(code)
          + sizeof(tail) - 1;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, head, sizeof(head) - 1);
    b->last = aihub_event_escape(b->last, (u_char *) message, mlen);
    b->last = ngx_cpymem(b->last, mid1, sizeof(mid1) - 1);
    b->last = ngx_cpymem(b->last, type, ngx_strlen(type));
    b->last = ngx_cpymem(b->last, mid2, sizeof(mid2) - 1);
    b->last = ngx_cpymem(b->last, code, ngx_strlen(code));
    b->last = ngx_cpymem(b->last, tail, sizeof(tail) - 1);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    return ngx_http_aihub_send_buf(r, status, "application/json", b);
}


/* sends a whole answer from one buffer; returns what nginx's output gave */

ngx_int_t
ngx_http_aihub_send_buf(ngx_http_request_t *r, ngx_uint_t status,
    const char *content_type, ngx_buf_t *b)
{
    ngx_int_t     rc;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    r->headers_out.content_type.data = (u_char *) content_type;
    r->headers_out.content_type.len = ngx_strlen(content_type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* sends the error and ends the request; for phase handlers: return this */

ngx_int_t
ngx_http_aihub_finalize_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *code, const char *message)
{
    ngx_int_t  rc;

    rc = ngx_http_aihub_send_error(r, status, type, code, message);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


void
ngx_http_aihub_deny(ngx_http_aihub_ctx_t *ctx, ngx_uint_t status,
    const char *type, const char *code, const char *message)
{
    ctx->flow.rc = status;
    ctx->flow.err_type = type;
    ctx->flow.err_code = code;
    ctx->flow.err_message = message;
    ctx->flow.state = NGX_HTTP_AIHUB_STATE_DONE;
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
 * Text from outside (a model name, a provider's message, a key's label)
 * for our own messages: at most max bytes, cut on a character boundary,
 * each byte that is not valid UTF-8 (a surrogate's included) shown as
 * '?'.  NUL-terminated; the JSON
 * escaping is the error writer's.
 */

u_char *
ngx_http_aihub_safe_text(ngx_pool_t *pool, u_char *src, size_t len,
    size_t max)
{
    u_char    *dst, *d, *p, *next, *end;
    uint32_t   c;

    if (len > max) {
        len = max;
    }

    dst = ngx_pnalloc(pool, len + 1);
    if (dst == NULL) {
        return NULL;
    }

    d = dst;
    p = src;
    end = src + len;

    while (p < end) {

        if (*p < 0x80) {
            *d++ = *p++;
            continue;
        }

        next = p;
        c = ngx_utf8_decode(&next, end - p);

        if (c >= 0xd800 && c <= 0xdfff) {
            /* a UTF-16 surrogate: ngx_utf8_decode() takes it, UTF-8 and
               MySQL's utf8mb4 do not */
            c = 0xffffffff;
        }

        if (c > 0x10ffff) {
            if (c == 0xfffffffe) {
                /* a character cut short by the end */
                break;
            }

            *d++ = '?';
            p++;
            continue;
        }

        d = ngx_cpymem(d, p, next - p);
        p = next;
    }

    *d = '\0';

    return dst;
}


/*
 * A used-up quota or spend cap: retrying before the period ends cannot
 * help, so the SDKs are told not to (they retry a 429 twice by default
 * unless "x-should-retry: false"), and when it can.
 */

ngx_int_t
ngx_http_aihub_quota_headers(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    time_t  sec;

    if (ngx_http_aihub_no_retry(r) != NGX_OK) {
        return NGX_ERROR;
    }

    sec = ctx->quota.end - ngx_http_aihub_time(r);

    return ngx_http_aihub_retry_after(r, sec > 0 ? (ngx_int_t) sec : 1);
}


/* an answer that asked again will be the same: the SDKs retry unless told */

ngx_int_t
ngx_http_aihub_no_retry(ngx_http_request_t *r)
{
    return ngx_http_aihub_add_header(r, "x-should-retry", (u_char *) "false",
                                     sizeof("false") - 1);
}


ngx_int_t
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
 * What an error nginx answered itself (a body over client_max_body_size, a
 * malformed request, ...) says in the OpenAI shape.
 */

void
ngx_http_aihub_nginx_error_words(ngx_uint_t status, const char **type,
    const char **code, const char **msg)
{
    *type = "invalid_request_error";

    switch (status) {

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        *code = "request_too_large";
        *msg = "The request body is too large.";
        break;

    case NGX_HTTP_REQUEST_URI_TOO_LARGE:
    case NGX_HTTP_REQUEST_HEADER_TOO_LARGE:
        *code = "request_too_large";
        *msg = "The request line or its headers are too large.";
        break;

    case NGX_HTTP_REQUEST_TIME_OUT:
        *code = "request_timeout";
        *msg = "The request was not received in time.";
        break;

    case NGX_HTTP_NOT_ALLOWED:
        *code = "method_not_allowed";
        *msg = "This method is not allowed here.";
        break;

    case NGX_HTTP_NOT_FOUND:
        *code = "unknown_url";
        *msg = "Unknown request URL.";
        break;

    case NGX_HTTP_FORBIDDEN:
        *code = "forbidden";
        *msg = "The gateway's configuration does not allow this request.";
        break;

    case NGX_HTTP_UNAUTHORIZED:
        /* auth_basic, auth_request: the server's own credentials */
        *code = "unauthorized";
        *msg = "The server requires its own credentials for this request.";
        break;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        /* limit_req, limit_conn with their status set to 429 */
        *type = "requests";
        *code = "rate_limit_exceeded";
        *msg = "Too many requests to the server. Please retry later.";
        break;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        /* limit_req, limit_conn by default */
        *type = "server_error";
        *code = "service_unavailable";
        *msg = "The server is busy. Please retry later.";
        break;

    default:
        if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
            *type = "server_error";
            *code = "internal_error";
            *msg = "The gateway failed to process the request.";

        } else {
            *code = "invalid_request_error";
            *msg = "The request could not be read.";
        }
    }
}
