/*
 * The access phase of an "aihub on" location, as a sequence of steps:
 *
 *   KEY    the key from the headers, its checksum (no I/O), the shared
 *          cache, else Redis
 *   CHECK  status, expiry, scope, which endpoint is asked for
 *   BODY   the JSON body, read without blocking and parsed once
 *   LIMIT  model access and per-request caps (the per-key rate limits
 *          are checked in CHECK, before the body is read)
 *   QUOTA  the monthly call reserved in Redis (one round trip)
 *   PROXY  the body rewritten for the provider, its credential set
 *
 * A step that waits (Redis, the body) suspends the phase; its completion
 * records the result and runs the phases again, so this handler carries on
 * from ctx->step.  A verdict, once given, is final (ctx->state DONE).
 */

#include "ngx_http_aihub_module.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>


static ngx_int_t ngx_http_aihub_step_key(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_step_check(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_step_limit(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_step_proxy(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_local_limit(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_uint_t ngx_http_aihub_endpoint(ngx_http_request_t *r);
static ngx_int_t ngx_http_aihub_find_key(ngx_http_request_t *r,
    ngx_str_t *key);
static void ngx_http_aihub_lookup_done(ngx_http_request_t *r,
    redisReply *reply);
static ngx_int_t ngx_http_aihub_read_record(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_aihub_unavailable(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_verdict(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


ngx_int_t
ngx_http_aihub_access_handler(ngx_http_request_t *r)
{
    ngx_http_aihub_ctx_t       *ctx;
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (!alcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx != NULL) {

        if (ctx->state == NGX_HTTP_AIHUB_STATE_WAIT) {
            return NGX_AGAIN;
        }

        if (ctx->state == NGX_HTTP_AIHUB_STATE_DONE) {
            return ngx_http_aihub_verdict(r, ctx);
        }

        return ngx_http_aihub_continue(r, ctx);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_aihub_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_aihub_module);

    ctx->start_ms = ngx_http_aihub_now_ms();
    ctx->http_version = r->http_version;
    ctx->start_sec = ngx_time();

    ngx_http_aihub_request_id(ctx->event_id);

    return ngx_http_aihub_continue(r, ctx);
}


/* runs the steps until one waits or a verdict is given */

ngx_int_t
ngx_http_aihub_continue(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t  rc;

    for ( ;; ) {

        if (ctx->state == NGX_HTTP_AIHUB_STATE_DONE) {
            return ngx_http_aihub_verdict(r, ctx);
        }

        switch (ctx->step) {

        case NGX_HTTP_AIHUB_STEP_KEY:
            rc = ngx_http_aihub_step_key(r, ctx);
            break;

        case NGX_HTTP_AIHUB_STEP_CHECK:
            rc = ngx_http_aihub_step_check(r, ctx);
            break;

        case NGX_HTTP_AIHUB_STEP_BODY:
            rc = ngx_http_aihub_body_read(r, ctx);
            break;

        case NGX_HTTP_AIHUB_STEP_LIMIT:
            rc = ngx_http_aihub_step_limit(r, ctx);
            break;

        case NGX_HTTP_AIHUB_STEP_QUOTA:
            rc = ngx_http_aihub_quota_reserve(r, ctx);
            break;

        case NGX_HTTP_AIHUB_STEP_PROXY:
            rc = ngx_http_aihub_step_proxy(r, ctx);
            break;

        default: /* NGX_HTTP_AIHUB_STEP_SERVE */
            rc = ngx_http_aihub_developer_serve(r, ctx);
            break;
        }

        if (rc == NGX_AGAIN) {
            ctx->state = NGX_HTTP_AIHUB_STATE_WAIT;
            return NGX_AGAIN;
        }

        if (rc == NGX_DONE) {
            /* the step answered the request itself */
            return NGX_DONE;
        }

        if (rc != NGX_OK) {
            ngx_http_aihub_deny(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "server_error", "internal_error",
                                "The gateway failed to process the "
                                "request.");
        }
    }
}


static ngx_int_t
ngx_http_aihub_step_key(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    size_t                       len;
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_str_t                    key;
    const char                  *argv[2];
    size_t                       argvlen[2];
    ngx_http_aihub_main_conf_t  *amcf;

    rc = ngx_http_aihub_find_key(r, &key);

    if (rc == NGX_DECLINED) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "You didn't provide an API key. Send it as "
                            "\"Authorization: Bearer ai-hub-...\".");
        return NGX_OK;
    }

    if (rc == NGX_ABORT) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "The Authorization header must be "
                            "\"Bearer ai-hub-...\".");
        return NGX_OK;
    }

    if (!aihub_key_check((const char *) key.data, key.len)) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "Incorrect API key provided: it is not a "
                            "valid ai-hub key.");
        return NGX_OK;
    }

    ngx_http_aihub_sha256(ctx->key_bin, key.data, key.len);
    ngx_hex_dump(ctx->key_hash, ctx->key_bin, sizeof(ctx->key_bin));

    if (ngx_http_aihub_mask_key(r, key.data) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_aihub_cache_get(r, ctx->key_bin, &ctx->key);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        ctx->key_known = 1;
        ctx->step = NGX_HTTP_AIHUB_STEP_CHECK;
        return NGX_OK;
    }

    /* NGX_AGAIN: a stale record, kept for failing open */

    ctx->from_stale = (rc == NGX_AGAIN);

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    len = amcf->redis_prefix.len + sizeof(AIHUB_RK_KEY) - 1
          + AIHUB_SHA256_HEX_LEN;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    argv[0] = "HGETALL";
    argvlen[0] = sizeof("HGETALL") - 1;
    argv[1] = (const char *) p;
    argvlen[1] = len;

    p = ngx_cpymem(p, amcf->redis_prefix.data, amcf->redis_prefix.len);
    p = ngx_cpymem(p, AIHUB_RK_KEY, sizeof(AIHUB_RK_KEY) - 1);
    ngx_memcpy(p, ctx->key_hash, AIHUB_SHA256_HEX_LEN);

    rc = ngx_http_aihub_redis_call(r, ngx_http_aihub_lookup_done,
                                   2, argv, argvlen);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_aihub_unavailable(r, ctx);
    }

    return NGX_AGAIN;
}


/*
 * The key from "Authorization: Bearer <key>" or "x-api-key: <key>".
 * NGX_DECLINED: no key at all; NGX_ABORT: an Authorization header that is
 * not a Bearer credential.
 */

static ngx_int_t
ngx_http_aihub_find_key(ngx_http_request_t *r, ngx_str_t *key)
{
    u_char           *p, *last;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->headers_in.authorization != NULL) {
        p = r->headers_in.authorization->value.data;
        last = p + r->headers_in.authorization->value.len;

        if (last - p < 7 || ngx_strncasecmp(p, (u_char *) "Bearer ", 7) != 0)
        {
            return NGX_ABORT;
        }

        for (p += 7; p < last && *p == ' '; p++) { /* void */ }
        while (last > p && last[-1] == ' ') { last--; }

        key->data = p;
        key->len = last - p;

        return key->len ? NGX_OK : NGX_DECLINED;
    }

    part = &r->headers_in.headers.part;
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

        if (h[i].key.len == sizeof("x-api-key") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "x-api-key",
                               sizeof("x-api-key") - 1) == 0
            && h[i].value.len)
        {
            *key = h[i].value;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static void
ngx_http_aihub_lookup_done(ngx_http_request_t *r, redisReply *reply)
{
    ngx_int_t              rc;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);
    ctx->state = NGX_HTTP_AIHUB_STATE_NEW;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {

        if (reply) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "aihub: redis key lookup failed: %s", reply->str);
        }

        rc = ngx_http_aihub_unavailable(r, ctx);

    } else {
        rc = ngx_http_aihub_read_record(r, ctx, reply);
    }

    if (rc != NGX_OK) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", "internal_error",
                            "The gateway failed to process the request.");
    }

    ngx_http_aihub_resume(r);
}


static ngx_int_t
ngx_http_aihub_read_record(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    redisReply *reply)
{
    size_t                    i;
    int64_t                   n;
    ngx_str_t                 field, value;
    ngx_http_aihub_record_t  *rec;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "Incorrect API key provided.");
        return NGX_OK;
    }

    ngx_memzero(&ctx->key, sizeof(ngx_http_aihub_key_t));
    rec = &ctx->key.rec;

    for (i = 0; i + 1 < reply->elements; i += 2) {

        if (reply->element[i]->type != REDIS_REPLY_STRING
            || reply->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        field.data = (u_char *) reply->element[i]->str;
        field.len = reply->element[i]->len;
        value.data = (u_char *) reply->element[i + 1]->str;
        value.len = reply->element[i + 1]->len;

        n = ngx_atoi(value.data, value.len);

#define AIHUB_FIELD_IS(name)                                                 \
        (field.len == sizeof(name) - 1                                       \
         && ngx_strncmp(field.data, name, sizeof(name) - 1) == 0)

#define AIHUB_NUMBER  (n == NGX_ERROR ? 0 : (uint64_t) n)

        if (AIHUB_FIELD_IS(AIHUB_KF_ACCOUNT)) {
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            rec->account_id = n;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_PREFIX)) {
            if (value.len > sizeof(rec->prefix)) {
                goto invalid;
            }

            rec->prefix_len = value.len;
            ngx_memcpy(rec->prefix, value.data, value.len);

        } else if (AIHUB_FIELD_IS(AIHUB_KF_PLAN)) {
            rec->plan_len = ngx_min(value.len, sizeof(rec->plan));
            ngx_memcpy(rec->plan, value.data, rec->plan_len);

        } else if (AIHUB_FIELD_IS(AIHUB_KF_SCOPES)) {
            rec->chat = ngx_strlcasestrn(value.data, value.data + value.len,
                                         (u_char *) "chat", 3) != NULL;
            rec->admin = ngx_strlcasestrn(value.data, value.data + value.len,
                                          (u_char *) "admin", 4) != NULL;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_STATUS)) {
            rec->active = (value.len == 6
                           && ngx_strncmp(value.data, "active", 6) == 0);

        } else if (AIHUB_FIELD_IS(AIHUB_KF_EXPIRES)) {
            rec->expires = AIHUB_NUMBER;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_ANCHOR)) {
            rec->anchor = AIHUB_NUMBER;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_RPM)) {
            rec->rpm = AIHUB_NUMBER;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_TPM)) {
            rec->tpm = AIHUB_NUMBER;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_INCLUDED)) {
            rec->included = AIHUB_NUMBER;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_OVERAGE)) {
            rec->overage = (AIHUB_NUMBER != 0);

        } else if (AIHUB_FIELD_IS(AIHUB_KF_SPEND_CAP)) {
            rec->spend_cap = AIHUB_NUMBER;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_MAX_TOKENS)) {
            rec->max_tokens = AIHUB_NUMBER;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_MODELS)) {
            ctx->key.models.data = ngx_pstrdup(r->pool, &value);
            if (ctx->key.models.data == NULL) {
                return NGX_ERROR;
            }

            ctx->key.models.len = value.len;
        }

#undef AIHUB_NUMBER
#undef AIHUB_FIELD_IS
    }

    if (rec->account_id == 0 || rec->prefix_len == 0) {
        goto invalid;
    }

    ngx_http_aihub_key_strings(&ctx->key);

    if (ngx_http_aihub_cache_put(r, ctx->key_bin, &ctx->key) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->key_known = 1;
    ctx->from_stale = 0;
    ctx->step = NGX_HTTP_AIHUB_STEP_CHECK;

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "aihub: invalid key record \"%*s\" in redis",
                  (size_t) AIHUB_SHA256_HEX_LEN, ctx->key_hash);

    ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                        "invalid_request_error", "invalid_api_key",
                        "Incorrect API key provided.");
    return NGX_OK;
}


void
ngx_http_aihub_key_strings(ngx_http_aihub_key_t *key)
{
    key->account.data = key->account_text;
    key->account.len = ngx_sprintf(key->account_text, "%uL",
                                   key->rec.account_id)
                       - key->account_text;

    key->prefix.data = key->rec.prefix;
    key->prefix.len = key->rec.prefix_len;
    key->plan.data = key->rec.plan;
    key->plan.len = key->rec.plan_len;
}


/* Redis cannot be asked: fail open on a cached record, or closed */

static ngx_int_t
ngx_http_aihub_unavailable(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (ctx->from_stale && alcf->failure_mode == NGX_HTTP_AIHUB_FAIL_OPEN) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aihub: redis unavailable, key %V served from the "
                      "cache (failing open)", &ctx->key.prefix);

        ctx->key_known = 1;
        ctx->step = NGX_HTTP_AIHUB_STEP_CHECK;
        return NGX_OK;
    }

    ngx_http_aihub_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                        "server_error", "service_unavailable",
                        "The gateway cannot check API keys right now. "
                        "Please retry shortly.");
    return NGX_OK;
}


static ngx_int_t
ngx_http_aihub_step_check(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_record_t  *rec = &ctx->key.rec;

    if (!rec->active) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "This API key has been revoked.");
        return NGX_OK;
    }

    if (rec->expires && rec->expires <= ngx_http_aihub_time(r)) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "This API key has expired.");
        return NGX_OK;
    }

    ctx->endpoint = ngx_http_aihub_endpoint(r);

    switch (ctx->endpoint) {

    case NGX_HTTP_AIHUB_EP_CHAT:

        if (!rec->chat) {
            ngx_http_aihub_deny(ctx, NGX_HTTP_FORBIDDEN,
                                "invalid_request_error", "insufficient_scope",
                                "This API key lacks the \"chat\" scope.");
            return NGX_OK;
        }

        if (r->method != NGX_HTTP_POST) {
            ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_ALLOWED,
                                "invalid_request_error",
                                "method_not_allowed",
                                "Chat completions take POST.");
            return NGX_OK;
        }

        /* before the body: a key over its limit costs no parsing */

        if (ngx_http_aihub_local_limit(r, ctx) != NGX_OK) {
            return NGX_OK;
        }

        ctx->step = NGX_HTTP_AIHUB_STEP_BODY;
        return NGX_OK;

    case NGX_HTTP_AIHUB_EP_UNKNOWN:
        ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_FOUND,
                            "invalid_request_error", "unknown_url",
                            "Unknown request URL. See the gateway's API "
                            "documentation for the endpoints it serves.");
        return NGX_OK;

    default:
        ctx->step = NGX_HTTP_AIHUB_STEP_SERVE;
        return NGX_OK;
    }
}


static ngx_uint_t
ngx_http_aihub_endpoint(ngx_http_request_t *r)
{
    ngx_str_t  *uri = &r->uri;

#define AIHUB_URI_IS(s)                                                      \
    (uri->len == sizeof(s) - 1 && ngx_strncmp(uri->data, s, uri->len) == 0)

#define AIHUB_URI_STARTS(s)                                                  \
    (uri->len >= sizeof(s) - 1                                               \
     && ngx_strncmp(uri->data, s, sizeof(s) - 1) == 0)

    if (AIHUB_URI_IS("/v1/chat/completions")
        || AIHUB_URI_IS("/api/v1/developer/chat"))
    {
        return NGX_HTTP_AIHUB_EP_CHAT;
    }

    if (AIHUB_URI_IS("/v1/models") || AIHUB_URI_IS("/api/v1/developer/models"))
    {
        return NGX_HTTP_AIHUB_EP_MODELS;
    }

    if (AIHUB_URI_IS("/api/v1/developer/usage")) {
        return NGX_HTTP_AIHUB_EP_USAGE;
    }

    if (AIHUB_URI_IS("/api/v1/developer/api-keys")
        || AIHUB_URI_STARTS("/api/v1/developer/api-keys/"))
    {
        return NGX_HTTP_AIHUB_EP_KEYS;
    }

#undef AIHUB_URI_IS
#undef AIHUB_URI_STARTS

    return NGX_HTTP_AIHUB_EP_UNKNOWN;
}


/*
 * Model access and per-request caps (the body is parsed), then the local
 * per-key rate limits; the quota step follows.
 */

static ngx_int_t
ngx_http_aihub_step_limit(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char                  *msg, *name;
    ngx_http_aihub_model_t  *m, *copy;

    m = ngx_http_aihub_model_find(&ctx->model);

    if (m == NULL) {
        if (!ngx_http_aihub_models_loaded()) {
            ngx_http_aihub_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "server_error", "service_unavailable",
                                "The gateway has not loaded its model "
                                "catalog yet. Please retry shortly.");
            return NGX_OK;
        }

        name = ngx_http_aihub_safe_text(r->pool, ctx->model.data,
                                        ctx->model.len, 128);
        if (name == NULL) {
            return NGX_ERROR;
        }

        msg = ngx_pnalloc(r->pool, 128 + 64);
        if (msg == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(msg, "The model \"%s\" does not exist.%Z", name);

        ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_FOUND,
                            "invalid_request_error", "model_not_found",
                            (const char *) msg);
        return NGX_OK;
    }

    if (!ngx_http_aihub_model_allowed(&ctx->key, m)) {
        msg = ngx_pnalloc(r->pool, ctx->model.len + ctx->key.plan.len + 64);
        if (msg == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(msg, "The model \"%V\" is not available on the "
                    "\"%V\" plan.%Z", &ctx->model, &ctx->key.plan);

        ngx_http_aihub_deny(ctx, NGX_HTTP_FORBIDDEN,
                            "invalid_request_error", "model_not_allowed",
                            (const char *) msg);
        return NGX_OK;
    }

    /* the catalog may be reloaded while the call runs: keep a copy */

    copy = ngx_palloc(r->pool, sizeof(ngx_http_aihub_model_t));
    if (copy == NULL) {
        return NGX_ERROR;
    }

    *copy = *m;

    if (ngx_http_aihub_copy_model_strings(r->pool, copy) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->model_entry = copy;

    if (ctx->key.rec.max_tokens && ctx->max_tokens > 0
        && (uint64_t) ctx->max_tokens > ctx->key.rec.max_tokens)
    {
        msg = ngx_pnalloc(r->pool, 128);
        if (msg == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(msg, "max_tokens is limited to %uL on the \"%V\" "
                    "plan.%Z", ctx->key.rec.max_tokens, &ctx->key.plan);

        ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST,
                            "invalid_request_error", "max_tokens_exceeded",
                            (const char *) msg);
        return NGX_OK;
    }

    ctx->step = NGX_HTTP_AIHUB_STEP_QUOTA;

    return NGX_OK;
}


/*
 * The per-key rate limits kept in the shared zone (exact for this node).
 * NGX_DECLINED: the key is over a limit, the verdict is given.  With
 * "aihub_rate_limit global" the quota script applies the limit instead.
 */

static ngx_int_t
ngx_http_aihub_local_limit(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (alcf->global_rate_limit) {
        return NGX_OK;
    }

    (void) ngx_http_aihub_cache_limit(r, ctx->key_bin, &ctx->key,
                                      &ctx->rl_requests, &ctx->rl_tokens);

    if (ctx->rl_requests.allowed && ctx->rl_tokens.allowed) {
        /* given back if the request is refused later (verdict) */
        ctx->rate_taken = (ctx->key.rec.rpm != 0);
        return NGX_OK;
    }

    ngx_http_aihub_deny(ctx, NGX_HTTP_TOO_MANY_REQUESTS, "requests",
                        "rate_limit_exceeded",
                        ctx->rl_requests.allowed
                        ? "Rate limit reached for tokens per minute. "
                          "Please retry after the time in Retry-After."
                        : "Rate limit reached for requests per minute. "
                          "Please retry after the time in Retry-After.");

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_aihub_step_proxy(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_aihub_provider_select(r, ctx);

    if (rc != NGX_OK || ctx->state == NGX_HTTP_AIHUB_STATE_DONE) {
        return rc;
    }

    if (ngx_http_aihub_body_rewrite(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->rc = NGX_OK;
    ctx->state = NGX_HTTP_AIHUB_STATE_DONE;

    return NGX_OK;
}


void
ngx_http_aihub_deny(ngx_http_aihub_ctx_t *ctx, ngx_uint_t status,
    const char *type, const char *code, const char *message)
{
    ctx->rc = status;
    ctx->err_type = type;
    ctx->err_code = code;
    ctx->err_message = message;
    ctx->state = NGX_HTTP_AIHUB_STATE_DONE;
}


static ngx_int_t
ngx_http_aihub_verdict(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    if (ctx->rc == NGX_OK) {
        ctx->forwarded = 1;
        return NGX_OK;
    }

    if (ctx->rc == NGX_DONE) {
        /* answered by a developer endpoint */
        return NGX_DONE;
    }

    /* a rejected request gives back what it reserved or took */

    if (ctx->reserved) {
        ngx_http_aihub_quota_settle(r, ctx, 0);
    }

    if (ctx->rate_taken) {
        ctx->rate_taken = 0;
        ngx_http_aihub_cache_charge(r, ctx->key_bin, &ctx->key, 0, 1);
    }

    return ngx_http_aihub_finalize_error(r, ctx->rc, ctx->err_type,
                                         ctx->err_code, ctx->err_message);
}


void
ngx_http_aihub_resume(ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


ngx_int_t
ngx_http_aihub_hex_decode(u_char *dst, u_char *src, size_t len)
{
    ngx_int_t  hi, lo;

    for ( /* void */ ; len >= 2; len -= 2) {
        hi = ngx_hextoi(src++, 1);
        lo = ngx_hextoi(src++, 1);

        if (hi == NGX_ERROR || lo == NGX_ERROR) {
            return NGX_ERROR;
        }

        *dst++ = (u_char) (hi * 16 + lo);
    }

    return NGX_OK;
}


time_t
ngx_http_aihub_time(ngx_http_request_t *r)
{
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    return ngx_time() + amcf->time_offset;
}


/*
 * Per worker process: the SHA-256 implementation fetched once (OpenSSL 3
 * looks the algorithm up by name on every SHA256() call), and a reserve of
 * random bytes for request ids, drawn from OpenSSL's CSPRNG 4 KB at a time
 * (one draw per 256 requests instead of one per request).
 */

#define NGX_HTTP_AIHUB_RANDOM_RESERVE  4096

static EVP_MD       *ngx_http_aihub_md;
static EVP_MD_CTX   *ngx_http_aihub_md_ctx;
static u_char        ngx_http_aihub_random[NGX_HTTP_AIHUB_RANDOM_RESERVE];
static size_t        ngx_http_aihub_random_used =
                                          NGX_HTTP_AIHUB_RANDOM_RESERVE;


ngx_int_t
ngx_http_aihub_auth_init_process(ngx_cycle_t *cycle)
{
    ngx_http_aihub_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    ngx_http_aihub_md_ctx = EVP_MD_CTX_new();

    if (ngx_http_aihub_md == NULL || ngx_http_aihub_md_ctx == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "aihub: OpenSSL has no SHA-256");
        return NGX_ERROR;
    }

    /* the reserve is drawn here, after fork: no two workers share it */

    if (RAND_bytes(ngx_http_aihub_random, NGX_HTTP_AIHUB_RANDOM_RESERVE)
        != 1)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "aihub: no random bytes for request ids");
        return NGX_ERROR;
    }

    ngx_http_aihub_random_used = 0;

    return NGX_OK;
}


void
ngx_http_aihub_auth_exit_process(void)
{
    EVP_MD_CTX_free(ngx_http_aihub_md_ctx);
    EVP_MD_free(ngx_http_aihub_md);
    ngx_http_aihub_md_ctx = NULL;
    ngx_http_aihub_md = NULL;
}


void
ngx_http_aihub_sha256(u_char *dst, u_char *src, size_t len)
{
    unsigned int  n;

    if (ngx_http_aihub_md_ctx == NULL
        || EVP_DigestInit_ex2(ngx_http_aihub_md_ctx, ngx_http_aihub_md, NULL)
           != 1
        || EVP_DigestUpdate(ngx_http_aihub_md_ctx, src, len) != 1
        || EVP_DigestFinal_ex(ngx_http_aihub_md_ctx, dst, &n) != 1)
    {
        SHA256(src, len, dst);
    }
}


/*
 * A request id, unique across nodes and restarts: 128 random bits (32 hex
 * digits, the usage event's id).  It says nothing about the worker or how
 * many requests it served.
 */

void
ngx_http_aihub_request_id(u_char *dst)
{
    size_t  n = AIHUB_EVENT_ID_LEN / 2;

    if (ngx_http_aihub_random_used + n > NGX_HTTP_AIHUB_RANDOM_RESERVE) {
        if (RAND_bytes(ngx_http_aihub_random, NGX_HTTP_AIHUB_RANDOM_RESERVE)
            != 1)
        {
            /* OpenSSL's CSPRNG does not fail once seeded; if it ever
               does, ids stay unique, if guessable */
            for (n = 0; n < NGX_HTTP_AIHUB_RANDOM_RESERVE; n++) {
                ngx_http_aihub_random[n] = (u_char) ngx_random();
            }

            n = AIHUB_EVENT_ID_LEN / 2;
        }

        ngx_http_aihub_random_used = 0;
    }

    ngx_hex_dump(dst, ngx_http_aihub_random + ngx_http_aihub_random_used, n);

    /* used bytes are wiped: a later read of this memory finds no id */
    ngx_memzero(ngx_http_aihub_random + ngx_http_aihub_random_used, n);
    ngx_http_aihub_random_used += n;
}
