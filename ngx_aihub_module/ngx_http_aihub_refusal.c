/*
 * A provider's 400, 409, 413 or 422, read to its end (64 KB kept), is
 * judged: an OpenAI-shaped error about the request itself is the
 * developer's to see, as our 400 quoting the provider's message; anything
 * that speaks of API keys, credentials, authentication, permissions,
 * accounts, projects, organizations, billing, payment, credit or quota,
 * and any other shape, is the operator's problem, never shown (a 502 the
 * SDKs are told not to retry: see ngx_http_aihub_replace()).  Gemini wraps its
 * errors in a JSON array of one ([{"error": {...}}]), a bad credential
 * ("API key not valid", reason API_KEY_INVALID) and a bad request alike:
 * the error is read inside it.
 *
 * A provider's 429 is judged too: a rate limit is the developer's to see
 * (429, retry), but OpenAI also answers 429 when the operator's account
 * has no credit left, "insufficient_quota" in its error's type and code:
 * that is the operator's problem, and no retry will mend it.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_refusal.h"

#include <cjson/cJSON.h>


#define NGX_HTTP_AIHUB_REFUSAL_TEXT    256   /* of its message passed on */
#define NGX_HTTP_AIHUB_PROVIDER_RETRY  1     /* s, when the provider's 429
                                                says no Retry-After */


static cJSON *ngx_http_aihub_refusal_error(ngx_buf_t *held, cJSON **root);
static ngx_int_t ngx_http_aihub_refusal_first_byte(
    ngx_http_aihub_reply_t *reply, u_char c);
static ngx_int_t ngx_http_aihub_refusal_message(ngx_http_request_t *r,
    ngx_buf_t *held, u_char **message);
static ngx_uint_t ngx_http_aihub_refusal_no_credit(ngx_buf_t *held);
static ngx_uint_t ngx_http_aihub_refusal_code(ngx_buf_t *held);
static ngx_int_t ngx_http_aihub_refusal_flagged(ngx_http_request_t *r,
    ngx_buf_t *held, u_char **message);


/*
 * Words of the operator's problems, looked for anywhere in the answer, any
 * case.  Not "key" or "auth" alone: a developer's JSON schema error says
 * "every key in properties" and names fields such as "author".
 */

static const char  *ngx_http_aihub_operator_words[] = {
    "api key", "api_key", "api-key", "apikey", "secret key",
    "subscription key", "access key", "credential", "authenticat",
    "unauthori", "permission", "billing", "quota", "organization",
    "project", "account", "payment", "credit", NULL
};


/*
 * The verdict on a held answer (a 400-class one, a 429, or a 200 whose body
 * is an error), read to its end: what the developer gets instead.  A 429's
 * Retry-After is set here.
 */

ngx_int_t
ngx_http_aihub_refusal_judge(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_buf_t *held, ngx_http_aihub_refusal_t *v)
{
    u_char      *msg;
    ngx_int_t    rc;
    ngx_uint_t   status;

    v->status = NGX_HTTP_BAD_GATEWAY;
    v->type = "server_error";
    v->code = "upstream_error";
    v->message = "The model provider failed to answer the request.";

    /* a 200 that is an error: the status its error gives (OpenRouter's
       "code"), a failure when it gives none */
    status = (ctx->reply.status < 300) ? ngx_http_aihub_refusal_code(held)
                                       : ctx->reply.status;

    if (status == NGX_HTTP_TOO_MANY_REQUESTS) {

        /* the operator's account out of credit: no retry mends it */

        if (ngx_http_aihub_refusal_no_credit(held)) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "aihub: provider \"%V\" says the operator's "
                          "account has no credit left (insufficient_quota)",
                          &ctx->route.provider->name);
            return NGX_OK;
        }

        /* a rate limit: its Retry-After, or 1 s */

        if (ngx_http_aihub_retry_after(r, ctx->forward.retry_after > 0
                                          ? ctx->forward.retry_after
                                          : NGX_HTTP_AIHUB_PROVIDER_RETRY)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        v->status = NGX_HTTP_TOO_MANY_REQUESTS;
        v->type = "requests";
        v->code = "rate_limit_exceeded";
        v->message = "The model provider is rate limiting requests. "
                     "Please retry shortly.";
        return NGX_OK;
    }

    if (status == NGX_HTTP_BAD_REQUEST || status == NGX_HTTP_CONFLICT
        || status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE || status == 422)
    {
        rc = ngx_http_aihub_refusal_message(r, held, &msg);

    } else if (status == NGX_HTTP_FORBIDDEN) {
        rc = ngx_http_aihub_refusal_flagged(r, held, &msg);

    } else {
        rc = NGX_DECLINED;
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "aihub: provider \"%V\" refused the request with %ui%s%s",
                  &ctx->route.provider->name, ctx->reply.status,
                  ctx->reply.status < 300 ? " and an error for its body" : "",
                  rc == NGX_OK ? "" : ", a problem of the gateway's own");

    if (rc == NGX_OK) {
        v->status = NGX_HTTP_BAD_REQUEST;
        v->type = "invalid_request_error";
        v->code = "provider_rejected_request";
        v->message = (const char *) msg;
    }

    return NGX_OK;
}


/*
 * The first bytes of a JSON answer, which tell whether it is OpenRouter's
 * failure once the model has begun (a 200 whose body is {"error": {...}}),
 * read across buffers: white space first (OpenRouter's keep-alives while
 * a slow model works), the member cut at a buffer's end.  Until they
 * tell, they are gathered (NGX_HTTP_AIHUB_FIRST_MAX bytes at most: past
 * it, the answer goes on as another) and consumed from "in"; once they
 * do, *out is the answer from its first byte.  NGX_OK: the error first;
 * NGX_DECLINED: another object; NGX_ABORT: not an object (nothing but
 * white space, a cut object, HTML, nothing before the provider went);
 * NGX_AGAIN: not yet told.  Before,
 * only the first buffer was looked at: one of white space alone sent the
 * header on, and the error reached the client raw, with a 200, naming
 * the operator's account.
 */

ngx_int_t
ngx_http_aihub_refusal_first(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t *in, ngx_chain_t **out)
{
    u_char       *p;
    size_t        bytes;
    ngx_buf_t    *head;
    ngx_int_t     rc;
    ngx_uint_t    last;
    ngx_chain_t  *cl;

    rc = NGX_AGAIN;
    last = 0;
    bytes = 0;

    for (cl = in; cl && rc == NGX_AGAIN; cl = cl->next) {

        if (cl->buf->last_buf) {
            last = 1;
        }

        if (!ngx_buf_in_memory(cl->buf)) {
            continue;
        }

        bytes += cl->buf->last - cl->buf->pos;

        for (p = cl->buf->pos; p < cl->buf->last && rc == NGX_AGAIN; p++) {
            rc = ngx_http_aihub_refusal_first_byte(&ctx->reply, *p);
        }
    }

    head = ctx->reply.head;

    /*
     * the end, or the provider gone before its body told (a connection
     * cut after the header: nginx flushes, then ends the request with an
     * error): our 502.  Before, the header held was never sent, the
     * client got no answer at all, and the call was billed as a 200.
     */

    if (rc == NGX_AGAIN
        && (last || r->upstream == NULL
            || r->upstream->peer.connection == NULL))
    {
        return NGX_ABORT;
    }

    if (rc == NGX_AGAIN) {
        if (head == NULL) {
            head = ngx_create_temp_buf(r->pool, NGX_HTTP_AIHUB_FIRST_MAX);
            if (head == NULL) {
                return NGX_ERROR;
            }

            ctx->reply.head = head;
        }

        if (bytes <= (size_t) (head->end - head->last)) {
            for (cl = in; cl; cl = cl->next) {
                if (ngx_buf_in_memory(cl->buf)) {
                    head->last = ngx_cpymem(head->last, cl->buf->pos,
                                            cl->buf->last - cl->buf->pos);
                }

                cl->buf->pos = cl->buf->last;
            }

            return NGX_AGAIN;
        }

        /* white space without end: it goes on, as another object */
        rc = NGX_DECLINED;
    }

    *out = in;

    if (head != NULL && head->last > head->pos) {
        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = head;
        cl->next = in;
        *out = cl;
    }

    ctx->reply.head = NULL;

    return rc;
}


/* one byte of the answer's first ones, as ngx_http_aihub_refusal_first() */

static ngx_int_t
ngx_http_aihub_refusal_first_byte(ngx_http_aihub_reply_t *reply, u_char c)
{
    ngx_uint_t  space;

    static u_char  name[] = "\"error\"";

    space = (c == ' ' || c == '\t' || c == '\r' || c == '\n');

    switch (reply->first) {

    case NGX_HTTP_AIHUB_FIRST_OBJECT:
        if (space) {
            return NGX_AGAIN;
        }

        if (c != '{') {
            return NGX_ABORT;
        }

        reply->first = NGX_HTTP_AIHUB_FIRST_MEMBER;
        return NGX_AGAIN;

    case NGX_HTTP_AIHUB_FIRST_MEMBER:
        if (space) {
            return NGX_AGAIN;
        }

        reply->first = NGX_HTTP_AIHUB_FIRST_NAME;
        reply->first_at = 0;

        /* fall through */

    case NGX_HTTP_AIHUB_FIRST_NAME:
        if (c != name[reply->first_at]) {
            return NGX_DECLINED;
        }

        if (++reply->first_at == sizeof(name) - 1) {
            reply->first = NGX_HTTP_AIHUB_FIRST_COLON;
        }

        return NGX_AGAIN;

    case NGX_HTTP_AIHUB_FIRST_COLON:
        if (space) {
            return NGX_AGAIN;
        }

        if (c != ':') {
            return NGX_DECLINED;
        }

        reply->first = NGX_HTTP_AIHUB_FIRST_VALUE;
        return NGX_AGAIN;

    default: /* NGX_HTTP_AIHUB_FIRST_VALUE */
        if (space) {
            return NGX_AGAIN;
        }

        return c == '{' ? NGX_OK : NGX_DECLINED;
    }
}


/*
 * NGX_OK: *message is ours to send in a 400; NGX_DECLINED: a 502 that says
 * no more.  held must have a byte free after its data.
 */

static ngx_int_t
ngx_http_aihub_refusal_message(ngx_http_request_t *r, ngx_buf_t *held,
    u_char **message)
{
    u_char      *text, *msg;
    cJSON       *root, *err, *m;
    ngx_uint_t   i;

    *held->last = '\0';
    *message = NULL;

    err = ngx_http_aihub_refusal_error(held, &root);
    m = cJSON_IsObject(err)
        ? cJSON_GetObjectItemCaseSensitive(err, "message") : NULL;

    if (!cJSON_IsString(m) || m->valuestring[0] == '\0') {
        cJSON_Delete(root);
        return NGX_DECLINED;
    }

    for (i = 0; ngx_http_aihub_operator_words[i]; i++) {
        if (ngx_strcasestrn(held->pos,
                            (char *) ngx_http_aihub_operator_words[i],
                            ngx_strlen(ngx_http_aihub_operator_words[i]) - 1)
            != NULL)
        {
            cJSON_Delete(root);
            return NGX_DECLINED;
        }
    }

    text = ngx_http_aihub_safe_text(r->pool, (u_char *) m->valuestring,
                                    ngx_strlen(m->valuestring),
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

    *message = msg;

    return NGX_OK;
}


/* 1 if a held 429 is OpenAI's "insufficient_quota": the account's credit */

static ngx_uint_t
ngx_http_aihub_refusal_no_credit(ngx_buf_t *held)
{
    cJSON       *root, *err, *v;
    ngx_uint_t   i, found;

    static const char  *fields[] = { "type", "code", NULL };

    err = ngx_http_aihub_refusal_error(held, &root);

    found = 0;

    for (i = 0; fields[i] && cJSON_IsObject(err); i++) {
        v = cJSON_GetObjectItemCaseSensitive(err, fields[i]);

        if (cJSON_IsString(v)
            && ngx_strcmp(v->valuestring, "insufficient_quota") == 0)
        {
            found = 1;
        }
    }

    cJSON_Delete(root);

    return found;
}


/*
 * The held answer parsed (*root, for cJSON_Delete()), and the "error"
 * member of its {"error": ...} or of Gemini's [{"error": ...}], or NULL.
 */

static cJSON *
ngx_http_aihub_refusal_error(ngx_buf_t *held, cJSON **root)
{
    cJSON  *top;

    *root = cJSON_ParseWithLength((const char *) held->pos,
                                  held->last - held->pos);
    top = *root;

    if (cJSON_IsArray(top) && cJSON_GetArraySize(top) == 1) {
        top = cJSON_GetArrayItem(top, 0);
    }

    return cJSON_IsObject(top)
           ? cJSON_GetObjectItemCaseSensitive(top, "error") : NULL;
}


/* the number in a held error's "code" (OpenRouter's status), or 0 */

static ngx_uint_t
ngx_http_aihub_refusal_code(ngx_buf_t *held)
{
    cJSON       *root, *err, *code;
    ngx_uint_t   n;

    err = ngx_http_aihub_refusal_error(held, &root);
    code = cJSON_IsObject(err)
           ? cJSON_GetObjectItemCaseSensitive(err, "code") : NULL;

    n = (cJSON_IsNumber(code) && code->valuedouble >= 100
         && code->valuedouble < 600)
        ? (ngx_uint_t) code->valuedouble : 0;

    cJSON_Delete(root);

    return n;
}


/*
 * A 403 of OpenRouter's moderation: the input was flagged, its reasons in
 * the error's metadata ({"error": {"code": 403, "metadata": {"reasons":
 * ["violence"], "flagged_input": ...}}}).  NGX_OK: *message names the
 * reasons (the flagged text is not repeated); NGX_DECLINED: another 403,
 * the operator's (a key, a region, a model not allowed).
 */

static ngx_int_t
ngx_http_aihub_refusal_flagged(ngx_http_request_t *r, ngx_buf_t *held,
    u_char **message)
{
    u_char      *p, *last, *text;
    cJSON       *root, *err, *meta, *reasons, *reason;
    ngx_int_t    rc;
    ngx_uint_t   n;

    *message = NULL;

    err = ngx_http_aihub_refusal_error(held, &root);
    meta = cJSON_IsObject(err)
           ? cJSON_GetObjectItemCaseSensitive(err, "metadata") : NULL;
    reasons = cJSON_IsObject(meta)
              ? cJSON_GetObjectItemCaseSensitive(meta, "reasons") : NULL;

    if (!cJSON_IsArray(reasons) || cJSON_GetArraySize(reasons) == 0) {
        cJSON_Delete(root);
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(r->pool, NGX_HTTP_AIHUB_REFUSAL_TEXT + 64);
    if (p == NULL) {
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    *message = p;
    last = p + NGX_HTTP_AIHUB_REFUSAL_TEXT;
    p = ngx_cpymem(p, "The model provider's moderation flagged the input: ",
                   sizeof("The model provider's moderation flagged the "
                          "input: ") - 1);
    rc = NGX_OK;
    n = 0;

    cJSON_ArrayForEach(reason, reasons) {
        if (!cJSON_IsString(reason)) {
            continue;
        }

        text = ngx_http_aihub_safe_text(r->pool, (u_char *) reason->valuestring,
                                        ngx_strlen(reason->valuestring), 64);
        if (text == NULL) {
            rc = NGX_ERROR;
            break;
        }

        if (p + ngx_strlen(text) + 3 > last) {
            break;
        }

        if (n++) {
            p = ngx_cpymem(p, ", ", 2);
        }

        p = ngx_cpymem(p, text, ngx_strlen(text));
    }

    *p++ = '.';
    *p = '\0';

    cJSON_Delete(root);

    return rc;
}
