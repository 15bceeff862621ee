/*
 * The access phase of an "aihub on" location: take the key, check its
 * format with no I/O, look its hash up without blocking, and give the
 * verdict.  Waiting for Redis suspends the phase; the reply handler records
 * the verdict and runs the phases again, so this handler sees its own
 * answer on re-entry (ctx->state).
 */

#include "ngx_http_aihub_module.h"

#include <openssl/rand.h>
#include <openssl/sha.h>


static ngx_int_t ngx_http_aihub_start(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_find_key(ngx_http_request_t *r,
    ngx_str_t *key);
static void ngx_http_aihub_lookup_done(ngx_http_request_t *r,
    redisReply *reply);
static ngx_int_t ngx_http_aihub_read_record(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_aihub_unavailable(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static void ngx_http_aihub_deny(ngx_http_aihub_ctx_t *ctx, ngx_uint_t status,
    const char *type, const char *code, const char *message);
static ngx_int_t ngx_http_aihub_verdict(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static void ngx_http_aihub_resume(ngx_http_request_t *r);
static void ngx_http_aihub_sha256_hex(u_char *dst, u_char *src, size_t len);


ngx_int_t
ngx_http_aihub_access_handler(ngx_http_request_t *r)
{
    u_char                      rnd[AIHUB_EVENT_ID_LEN / 2];
    ngx_http_aihub_ctx_t       *ctx;
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (!alcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx != NULL) {

        switch (ctx->state) {

        case NGX_HTTP_AIHUB_STATE_DONE:
            return ngx_http_aihub_verdict(r, ctx);

        default:
            /* still waiting for Redis */
            return NGX_AGAIN;
        }
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_aihub_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_aihub_module);

    ctx->start_ms = ngx_http_aihub_now_ms();
    ctx->start_sec = ngx_time();

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_hex_dump(ctx->event_id, rnd, sizeof(rnd));

    return ngx_http_aihub_start(r, ctx);
}


static ngx_int_t
ngx_http_aihub_start(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
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
        return ngx_http_aihub_verdict(r, ctx);
    }

    if (rc == NGX_ABORT) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "The Authorization header must be "
                            "\"Bearer ai-hub-...\".");
        return ngx_http_aihub_verdict(r, ctx);
    }

    if (!aihub_key_check((const char *) key.data, key.len)) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "Incorrect API key provided: it is not a "
                            "valid ai-hub key.");
        return ngx_http_aihub_verdict(r, ctx);
    }

    ngx_http_aihub_sha256_hex(ctx->key_hash, key.data, key.len);

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    len = amcf->redis_prefix.len + sizeof(AIHUB_RK_KEY) - 1
          + AIHUB_SHA256_HEX_LEN;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
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
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_aihub_unavailable(r, ctx);
    }

    ctx->state = NGX_HTTP_AIHUB_STATE_LOOKUP;

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

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {

        if (reply) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "aihub: redis key lookup failed: %s", reply->str);
        }

        rc = ngx_http_aihub_unavailable(r, ctx);

    } else {
        rc = ngx_http_aihub_read_record(r, ctx, reply);
    }

    if (rc == NGX_ERROR) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", "internal_error",
                            "The gateway failed to process the request.");
    }

    ctx->state = NGX_HTTP_AIHUB_STATE_DONE;

    ngx_http_aihub_resume(r);
}


static ngx_int_t
ngx_http_aihub_read_record(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    redisReply *reply)
{
    size_t                 i;
    ngx_str_t              field, value, *dst;
    ngx_http_aihub_key_t  *k = &ctx->key;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "Incorrect API key provided.");
        return NGX_OK;
    }

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

#define AIHUB_FIELD_IS(name)                                                 \
        (field.len == sizeof(name) - 1                                       \
         && ngx_strncmp(field.data, name, sizeof(name) - 1) == 0)

        dst = NULL;

        if (AIHUB_FIELD_IS(AIHUB_KF_ACCOUNT)) {
            dst = &k->account;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_PREFIX)) {
            dst = &k->prefix;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_PLAN)) {
            dst = &k->plan;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_SCOPES)) {
            dst = &k->scopes;

        } else if (AIHUB_FIELD_IS(AIHUB_KF_STATUS)) {
            k->active = (value.len == 6
                         && ngx_strncmp(value.data, "active", 6) == 0);

        } else if (AIHUB_FIELD_IS(AIHUB_KF_EXPIRES)) {
            k->expires = ngx_atotm(value.data, value.len);

            if (k->expires == NGX_ERROR) {
                k->expires = 0;
            }
        }

#undef AIHUB_FIELD_IS

        if (dst != NULL) {
            dst->data = ngx_pstrdup(r->pool, &value);
            if (dst->data == NULL) {
                return NGX_ERROR;
            }

            dst->len = value.len;
        }
    }

    if (k->account.len == 0 || k->prefix.len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aihub: key record without account or prefix");
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "Incorrect API key provided.");
        return NGX_OK;
    }

    if (!k->active) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "This API key has been revoked.");
        return NGX_OK;
    }

    if (k->expires && k->expires <= ngx_time()) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "This API key has expired.");
        return NGX_OK;
    }

    return ngx_http_aihub_provider_select(r, ctx);
}


static ngx_int_t
ngx_http_aihub_unavailable(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                        "server_error", "service_unavailable",
                        "The gateway cannot check API keys right now. "
                        "Please retry shortly.");

    ctx->state = NGX_HTTP_AIHUB_STATE_DONE;

    return ngx_http_aihub_verdict(r, ctx);
}


static void
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

    return ngx_http_aihub_finalize_error(r, ctx->rc, ctx->err_type,
                                         ctx->err_code, ctx->err_message);
}


static void
ngx_http_aihub_resume(ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_aihub_sha256_hex(u_char *dst, u_char *src, size_t len)
{
    u_char  md[SHA256_DIGEST_LENGTH];

    SHA256(src, len, md);
    ngx_hex_dump(dst, md, sizeof(md));
}
