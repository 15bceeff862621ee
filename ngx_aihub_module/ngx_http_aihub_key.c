/*
 * The key steps.  KEY: the key from the headers, its checksum (no I/O),
 * the shared cache, else its record from Redis (failing open on a stale
 * record when the location says so).  CHECK: the key's status, expiry and
 * scope, and which endpoint is asked for.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_key_hash.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_redis_refused.h"
#include "ngx_http_aihub_scripts.h"
#include "ngx_http_aihub_resp.h"
#include "ngx_http_aihub_zone.h"
#include "ngx_http_aihub_forward.h"
#include "ngx_http_aihub_key.h"


static ngx_int_t ngx_http_aihub_find_key(ngx_http_request_t *r,
    ngx_str_t *key);
static void ngx_http_aihub_lookup_done(ngx_http_request_t *r,
    redisReply *reply);
static ngx_int_t ngx_http_aihub_read_record(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_aihub_unavailable(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_uint_t ngx_http_aihub_endpoint(ngx_http_request_t *r);


ngx_int_t
ngx_http_aihub_key_step(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    size_t                       len;
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_str_t                    key;
    const char                  *argv[5];
    size_t                       argvlen[5];
    ngx_http_aihub_main_conf_t  *amcf;

    rc = ngx_http_aihub_find_key(r, &key);

    /* "key" still points to what the client sent */

    if (ngx_http_aihub_mask_credentials(r) != NGX_OK) {
        return NGX_ERROR;
    }

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

    /*
     * A key the shared zone holds passed the format check when it was
     * looked up, so the check (its letters, its checksum) is made only of
     * a key the zone does not hold, before Redis is asked: a made-up key
     * of the right length costs a hash and a lookup in the zone, never a
     * Redis command (unless its maker computed its checksum, which is no
     * secret: then one read), and a known key no check (a CRC-32 through
     * a table that a request's other work has pushed out of the caches)
     */

    if (key.len != AIHUB_KEY_LEN) {
        goto malformed;
    }

    ngx_http_aihub_key_hash(ctx->caller.bin, key.data, key.len);

    rc = ngx_http_aihub_zone_get(r, ctx->caller.bin, &ctx->caller.key,
                                 &ctx->caller.heard);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED
        && !aihub_key_check((const char *) key.data, key.len))
    {
        goto malformed;
    }

    if (rc == NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub key: %V from the shared cache",
                       &ctx->caller.key.prefix);

        ctx->caller.known = 1;
        ctx->flow.step = NGX_HTTP_AIHUB_STEP_CHECK;
        return NGX_OK;
    }

    /*
     * NGX_AGAIN: a stale record, kept for failing open; NGX_BUSY: one
     * changed at the source, which failing open must not serve
     */

    ctx->caller.from_stale = (rc == NGX_AGAIN);

    /* the hash in hex names the record in Redis (a cached key needs none) */
    ngx_hex_dump(ctx->caller.hash, ctx->caller.bin, sizeof(ctx->caller.bin));

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    len = amcf->redis_prefix.len + sizeof(AIHUB_RK_KEY) - 1
          + AIHUB_SHA256_HEX_LEN;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* the record, or 0 when Redis lost its data (no epoch marker) */

    argv[0] = "EVALSHA";
    argvlen[0] = sizeof("EVALSHA") - 1;
    argv[1] = (const char *)
              ngx_http_aihub_script_sha(NGX_HTTP_AIHUB_SCRIPT_LOOKUP);
    argvlen[1] = NGX_HTTP_AIHUB_SCRIPT_SHA_LEN;
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (const char *) p;
    argvlen[3] = len;
    argv[4] = (const char *) amcf->epoch_key.data;
    argvlen[4] = amcf->epoch_key.len;

    p = ngx_cpymem(p, amcf->redis_prefix.data, amcf->redis_prefix.len);
    p = ngx_cpymem(p, AIHUB_RK_KEY, sizeof(AIHUB_RK_KEY) - 1);
    ngx_memcpy(p, ctx->caller.hash, AIHUB_SHA256_HEX_LEN);

    rc = ngx_http_aihub_redis_call(r, &ctx->wait, ngx_http_aihub_lookup_done,
                                   1, 5, argv, argvlen);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_aihub_unavailable(r, ctx);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub key: %s, asking redis",
                   ctx->caller.from_stale ? "stale in the cache"
                                          : "not in the cache");

    return NGX_AGAIN;

malformed:

    ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                        "invalid_request_error", "invalid_api_key",
                        "Incorrect API key provided: it is not a "
                        "valid ai-hub key.");
    return NGX_OK;
}


/*
 * The key from "Authorization: Bearer <key>", else from "x-api-key: <key>"
 * (the first with a value).  NGX_DECLINED: no key at all; NGX_ABORT: an
 * Authorization header that is not a Bearer credential, and no x-api-key.
 * Before, any Authorization header hid the x-api-key beside it (a proxy's
 * Basic credential: 401).
 */

static ngx_int_t
ngx_http_aihub_find_key(ngx_http_request_t *r, ngx_str_t *key)
{
    u_char                        *p, *last;
    ngx_int_t                      none;
    ngx_table_elt_t               *h;
    ngx_http_aihub_header_iter_t   it;

    none = NGX_DECLINED;

    if (r->headers_in.authorization != NULL) {
        p = r->headers_in.authorization->value.data;
        last = p + r->headers_in.authorization->value.len;

        if (last - p < 7 || !ngx_http_aihub_bearer(p) || p[6] != ' ') {
            none = NGX_ABORT;

        } else {
            for (p += 7; p < last && *p == ' '; p++) { /* void */ }
            while (last > p && last[-1] == ' ') { last--; }

            if (last > p) {
                key->data = p;
                key->len = last - p;
                return NGX_OK;
            }
        }
    }

    it.part = NULL;

    for ( ;; ) {
        h = ngx_http_aihub_header_next(&r->headers_in.headers, &it,
                                       (u_char *) "x-api-key",
                                       sizeof("x-api-key") - 1);
        if (h == NULL) {
            return none;
        }

        if (h->value.len) {
            *key = h->value;
            return NGX_OK;
        }
    }
}


static void
ngx_http_aihub_lookup_done(ngx_http_request_t *r, redisReply *reply)
{
    ngx_int_t              rc;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);
    ctx->flow.state = NGX_HTTP_AIHUB_STATE_NEW;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {

        if (reply) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "aihub: redis key lookup failed: %s", reply->str);
            ngx_http_aihub_scripts_check(reply);
        }

        rc = ngx_http_aihub_unavailable(r, ctx);

    } else if (reply->type == REDIS_REPLY_INTEGER) {
        /* no record because Redis lost its data: not an unknown key */
        ngx_http_aihub_redis_refused(r->connection->log, "a key lookup",
                                     "it lost its data (no epoch marker), "
                                     "keys not cached are not known until "
                                     "aihub-worker restores it");

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
    aihub_rstr_t             *elts;
    aihub_key_record_t        kr;
    ngx_http_aihub_record_t  *rec;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "Incorrect API key provided.");
        return NGX_OK;
    }

    ngx_memzero(&ctx->caller.key, sizeof(ngx_http_aihub_key_t));
    rec = &ctx->caller.key.rec;

    /* the fields are parsed in the engine (aihub_record.c) */

    elts = ngx_http_aihub_reply_strings(r->pool, reply);
    if (elts == NULL) {
        return NGX_ERROR;
    }

    if (aihub_key_record_parse(&kr, elts, reply->elements) != 0) {
        goto invalid;
    }

    rec->account_id = kr.account_id;
    rec->expires = kr.expires;
    rec->anchor = kr.anchor;
    rec->rpm = kr.rpm;
    rec->tpm = kr.tpm;
    rec->included = kr.included;
    rec->spend_cap = kr.spend_cap;
    rec->max_tokens = kr.max_tokens;
    rec->priority = kr.priority;
    rec->active = kr.active;
    rec->overage = kr.overage;
    rec->admin = kr.admin;
    rec->chat = kr.chat;

    rec->prefix_len = kr.prefix.len;
    ngx_memcpy(rec->prefix, kr.prefix.data, kr.prefix.len);

    rec->plan_len = ngx_min(kr.plan.len, sizeof(rec->plan));
    if (rec->plan_len) {
        ngx_memcpy(rec->plan, kr.plan.data, rec->plan_len);
    }

    if (kr.models.len) {
        ctx->caller.key.models.data = ngx_pnalloc(r->pool, kr.models.len);
        if (ctx->caller.key.models.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ctx->caller.key.models.data, kr.models.data,
                   kr.models.len);
        ctx->caller.key.models.len = kr.models.len;
    }

    ngx_http_aihub_key_strings(&ctx->caller.key);

    if (ngx_http_aihub_zone_put(r, ctx->caller.bin, &ctx->caller.key,
                                ctx->caller.heard)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub key: %V read from redis", &ctx->caller.key.prefix);

    ctx->caller.known = 1;
    ctx->caller.from_stale = 0;
    ctx->flow.step = NGX_HTTP_AIHUB_STEP_CHECK;

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "aihub: invalid key record \"%*s\" in redis",
                  (size_t) AIHUB_SHA256_HEX_LEN, ctx->caller.hash);

    ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                        "invalid_request_error", "invalid_api_key",
                        "Incorrect API key provided.");
    return NGX_OK;
}


/* Redis cannot be asked: fail open on a cached record, or closed */

static ngx_int_t
ngx_http_aihub_unavailable(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_uint_t                  more;
    ngx_http_aihub_loc_conf_t  *alcf;

    static ngx_http_aihub_redis_said_t  said;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (ctx->caller.from_stale
        && alcf->failure_mode == NGX_HTTP_AIHUB_FAIL_OPEN)
    {
        if (ngx_http_aihub_redis_say(&said, &more)) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "aihub: redis unavailable, key %V served from the "
                          "cache (failing open), and %ui keys more since the "
                          "last such line", &ctx->caller.key.prefix, more);
        }

        ctx->caller.known = 1;
        ctx->flow.step = NGX_HTTP_AIHUB_STEP_CHECK;
        return NGX_OK;
    }

    ngx_http_aihub_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                        "server_error", "service_unavailable",
                        "The gateway cannot check API keys right now. "
                        "Please retry shortly.");
    return NGX_OK;
}


ngx_int_t
ngx_http_aihub_key_check(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_record_t  *rec = &ctx->caller.key.rec;

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

    ctx->flow.endpoint = ngx_http_aihub_endpoint(r);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub check: key %V active, endpoint %ui",
                   &ctx->caller.key.prefix, (ngx_uint_t) ctx->flow.endpoint);

    switch (ctx->flow.endpoint) {

    case NGX_HTTP_AIHUB_EP_CHAT:
    case NGX_HTTP_AIHUB_EP_RESPONSES:
    case NGX_HTTP_AIHUB_EP_EMBEDDINGS:

        /* model calls: the same scope, limits, quota and metering */

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
                                ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_CHAT
                                ? "Chat completions take POST."
                                : "This endpoint takes POST.");
            return NGX_OK;
        }

        /* the limit before the body: a key over it costs no parsing */

        ctx->flow.step = NGX_HTTP_AIHUB_STEP_LIMIT;
        return NGX_OK;

    case NGX_HTTP_AIHUB_EP_UNKNOWN:
        ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_FOUND,
                            "invalid_request_error", "unknown_url",
                            "Unknown request URL. See the gateway's API "
                            "documentation for the endpoints it serves.");
        return NGX_OK;

    default:
        ctx->flow.step = NGX_HTTP_AIHUB_STEP_SERVE;
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

    /* .../chat/completions too: what an SDK whose base URL is
       /api/v1/developer asks for */

    if (AIHUB_URI_IS("/v1/chat/completions")
        || AIHUB_URI_IS("/api/v1/developer/chat")
        || AIHUB_URI_IS("/api/v1/developer/chat/completions"))
    {
        return NGX_HTTP_AIHUB_EP_CHAT;
    }

    if (AIHUB_URI_IS("/v1/responses")
        || AIHUB_URI_IS("/api/v1/developer/responses"))
    {
        return NGX_HTTP_AIHUB_EP_RESPONSES;
    }

    if (AIHUB_URI_IS("/v1/embeddings")
        || AIHUB_URI_IS("/api/v1/developer/embeddings"))
    {
        return NGX_HTTP_AIHUB_EP_EMBEDDINGS;
    }

    if (AIHUB_URI_IS("/v1/models") || AIHUB_URI_IS("/api/v1/developer/models"))
    {
        return NGX_HTTP_AIHUB_EP_MODELS;
    }

    /* a model id holds slashes ("openai/gpt-4o"): the rest of the path */

    if ((AIHUB_URI_STARTS("/v1/models/")
         && uri->len > sizeof("/v1/models/") - 1)
        || (AIHUB_URI_STARTS("/api/v1/developer/models/")
            && uri->len > sizeof("/api/v1/developer/models/") - 1))
    {
        return NGX_HTTP_AIHUB_EP_MODEL;
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
