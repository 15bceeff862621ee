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
static u_char *ngx_http_aihub_refusal_space(u_char *p, u_char *last);
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
 * Whether an object's first member is "error" with an object for its value,
 * as far as the bytes from its "{" tell (cut by the end of the buffer, it
 * is taken for another: the answer goes on).  An answer that begins with
 * "error": null goes on too.
 */

ngx_uint_t
ngx_http_aihub_refusal_error_first(u_char *p, u_char *last)
{
    static u_char  name[] = "\"error\"";

    p = ngx_http_aihub_refusal_space(p + 1, last);

    if ((size_t) (last - p) < sizeof(name) - 1
        || ngx_strncmp(p, name, sizeof(name) - 1) != 0)
    {
        return 0;
    }

    p = ngx_http_aihub_refusal_space(p + sizeof(name) - 1, last);

    if (p == last || *p != ':') {
        return 0;
    }

    p = ngx_http_aihub_refusal_space(p + 1, last);

    return p < last && *p == '{';
}


static u_char *
ngx_http_aihub_refusal_space(u_char *p, u_char *last)
{
    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    {
        p++;
    }

    return p;
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
