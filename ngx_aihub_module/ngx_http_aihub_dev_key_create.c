/*
 * Creating a key (admin scope):
 *
 *   POST /api/v1/developer/api-keys     {"label": "...", "scopes": [...]}
 *
 * One Redis script re-reads the caller's record and refuses a caller that
 * is no longer an active, unexpired admin key (this node's cache may
 * still hold it as one), counts the account's active keys against
 * aihub_max_keys_per_account, then writes the new record with the
 * caller's as its template (same account, plan and limits; never an
 * expiry later than the caller's), indexes it and queues "key.created"
 * on "<prefix>admin" for the worker.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_body.h"
#include "ngx_http_aihub_body_decode.h"
#include "ngx_http_aihub_dev.h"
#include "ngx_http_aihub_dev_keys.h"

#include <cjson/cJSON.h>
#include <openssl/rand.h>


/* "member": of the admin event, its name from aihub_protocol.h */
#define M(name)  "\"" name "\":"

/* what the script answers instead of the new key's expiry */
#define NGX_HTTP_AIHUB_KEY_CALLER_INVALID  -1
#define NGX_HTTP_AIHUB_KEY_LIMIT_REACHED   -2
#define NGX_HTTP_AIHUB_KEY_TOO_MANY        -100    /* minus the seconds to
                                                      wait */

/*
 * Keys an account may create through the API a minute.  Each is a row in
 * MySQL for good and a script over its index on the Redis every node
 * shares: before, one admin key could create and revoke in a loop without
 * bound (the cap counts active keys only).
 */
#define NGX_HTTP_AIHUB_KEY_CREATES_MAX     "30"


static void ngx_http_aihub_dev_key_create_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_aihub_dev_key_options(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static cJSON *ngx_http_aihub_dev_key_json(ngx_str_t *body);
static ngx_uint_t ngx_http_aihub_dev_key_controls(const char *label);
static ngx_int_t ngx_http_aihub_dev_key_parse(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_str_t *body, ngx_uint_t *chat,
    ngx_uint_t *admin);
static ngx_int_t ngx_http_aihub_dev_key_store(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static void ngx_http_aihub_dev_key_created(ngx_http_request_t *r,
    redisReply *reply);


/*
 * The account index (what GET /api/v1/developer/api-keys lists) keeps the
 * revoked and expired keys until it holds twice the cap of active keys
 * (or NGX_HTTP_AIHUB_KEY_INDEX_MAX entries without a cap); the create
 * that finds it so drops them from it, and their records, which only say
 * "refused", from Redis after NGX_HTTP_AIHUB_KEY_DEAD_TTL seconds (MySQL
 * keeps every key).  Without that an account that creates and revokes
 * keys in a loop grew its index without end, and each create, which
 * counts the active keys in it, held Redis for every node ever longer:
 * 368 ms at 100,000 revoked keys.
 */
#define NGX_HTTP_AIHUB_KEY_INDEX_MAX  "1000"
#define NGX_HTTP_AIHUB_KEY_DEAD_TTL   "2592000"       /* 30 days */


/*
 * KEYS: caller's record, new record, account index, admin stream.
 * ARGV: prefix, scopes, label, hash, created, the event JSON without its
 * closing brace (the script adds the expiry), now, the cap (0: none), the
 * key record prefix, the account's count of keys made this minute.
 * Returns the new key's expiry (0: never), or -1 (the caller may not
 * create keys), -2 (the account has its cap of active keys), or -100 - s
 * (it made NGX_HTTP_AIHUB_KEY_CREATES_MAX this minute: s seconds to wait).
 *
 * The new record's name is the hash of a key drawn at random for this
 * request, so a record of that name is this request's own, written by an
 * earlier run of the script whose reply a broken connection lost: the
 * script, sent again (aihub_redis_call's "again"), answers that key's
 * expiry and writes, indexes and counts nothing twice.
 */

static const char  ngx_http_aihub_key_create_script[] =
    "local made = redis.call('HGET', KEYS[2], '" AIHUB_KF_EXPIRES "') "
    "if made then return tonumber(made) end "
    "local rec = redis.call('HGETALL', KEYS[1]) "
    "if #rec == 0 then return -1 end "
    "local f = {} "
    "for i = 1, #rec, 2 do f[rec[i]] = rec[i + 1] end "
    "local now = tonumber(ARGV[7]) "
    "local exp = tonumber(f['" AIHUB_KF_EXPIRES "'] or '0') or 0 "
    "if f['" AIHUB_KF_STATUS "'] ~= 'active' "
    "   or (exp > 0 and exp <= now) "
    "   or not string.find(f['" AIHUB_KF_SCOPES "'] or '', 'admin', 1, true) "
    "then return -1 end "
    "local made_n = redis.call('INCR', ARGV[10]) "
    "if made_n == 1 then redis.call('EXPIRE', ARGV[10], 60) end "
    "if made_n > " NGX_HTTP_AIHUB_KEY_CREATES_MAX " then "
    "  return -100 - math.max(redis.call('TTL', ARGV[10]), 1) end "
    "local cap = tonumber(ARGV[8]) "
    "local bound = cap > 0 and 2 * cap or "
        NGX_HTTP_AIHUB_KEY_INDEX_MAX " "
    "if redis.call('HLEN', KEYS[3]) >= bound then "
    "  local idx = redis.call('HGETALL', KEYS[3]) "
    "  for i = 1, #idx, 2 do "
    "    local r = ARGV[9] .. idx[i + 1] "
    "    local k = redis.call('HMGET', r, '" AIHUB_KF_STATUS "', '"
        AIHUB_KF_EXPIRES "') "
    "    local e = tonumber(k[2] or '0') or 0 "
    "    if k[1] == 'revoked' or (k[1] and e > 0 and e <= now) then "
    "      redis.call('HDEL', KEYS[3], idx[i]) "
    "      redis.call('EXPIRE', r, " NGX_HTTP_AIHUB_KEY_DEAD_TTL ") "
    "    end "
    "  end "
    "end "
    "if cap > 0 then "
    "  local n = 0 "
    "  for _, h in ipairs(redis.call('HVALS', KEYS[3])) do "
    "    local k = redis.call('HMGET', ARGV[9] .. h, '" AIHUB_KF_STATUS
        "', '" AIHUB_KF_EXPIRES "') "
    "    local e = tonumber(k[2] or '0') or 0 "
    "    if k[1] == 'active' and (e == 0 or e > now) then n = n + 1 end "
    "  end "
    "  if n >= cap then return -2 end "
    "end "
    "local es = string.format('%d', exp) "
    "redis.call('HSET', KEYS[2], unpack(rec)) "
    "redis.call('HSET', KEYS[2], '" AIHUB_KF_PREFIX "', ARGV[1], '"
        AIHUB_KF_SCOPES "', ARGV[2], '" AIHUB_KF_STATUS "', 'active', '"
        AIHUB_KF_EXPIRES "', es, '" AIHUB_KF_LABEL "', ARGV[3], '"
        AIHUB_KF_CREATED "', ARGV[5]) "
    "redis.call('HSET', KEYS[3], ARGV[1], ARGV[4]) "
    "redis.call('XADD', KEYS[4], '*', '" AIHUB_ADMIN_FIELD "', "
    "           ARGV[6] .. '," M(AIHUB_AE_EXPIRES) "' .. es .. '}') "
    "return exp";


ngx_int_t
ngx_http_aihub_dev_key_create(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t  rc;

    if (ctx->body.read) {
        /* the phases ran again while the key was being stored */
        return NGX_AGAIN;
    }

    r->request_body_in_single_buf = 1;

    ctx->body.sync = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_aihub_dev_key_create_body);

    ctx->body.sync = 0;

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ctx->flow.state == NGX_HTTP_AIHUB_STATE_DONE) {
        /* read at once and refused */
        return NGX_OK;
    }

    return NGX_AGAIN;
}


/* the body (optional): {"label": "...", "scopes": ["chat", "admin"]} */

static void
ngx_http_aihub_dev_key_create_body(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);

    if (!ctx->body.read) {
        ctx->body.read = 1;
        r->main->count--;
    }

    ctx->flow.state = NGX_HTTP_AIHUB_STATE_NEW;

    rc = ngx_http_aihub_dev_key_options(r, ctx);

    if (rc == NGX_OK) {
        rc = ngx_http_aihub_dev_key_store(r, ctx);
    }

    if (rc == NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub dev: storing key %V", &ctx->dev.prefix);

        ctx->flow.state = NGX_HTTP_AIHUB_STATE_WAIT;
        return;
    }

    if (rc == NGX_ERROR) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", "internal_error",
                            "The gateway failed to process the request.");
    }

    /* NGX_DECLINED: refused or unavailable, the verdict is given */

    if (ctx->body.sync) {
        return;
    }

    ngx_http_aihub_resume(r);
}


/*
 * The label and scopes asked for, into ctx->dev, from the whole body
 * however many buffers it came in.  NGX_DECLINED: the body is refused,
 * the verdict is given.
 */

static ngx_int_t
ngx_http_aihub_dev_key_options(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_str_t                   body;
    ngx_uint_t                  chat, admin;
    ngx_http_aihub_loc_conf_t  *alcf;

    chat = 1;
    admin = 0;

    /* never a NULL label, not even an empty one: it is copied */
    ngx_str_set(&ctx->dev.label, "");

    rc = ngx_http_aihub_body_bytes(r, &body);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                            "invalid_request_error", "request_too_large",
                            "The request body is too large.");
        return NGX_DECLINED;
    }

    /* in a content coding, as a chat body may be */

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    rc = ngx_http_aihub_body_decode(r, ctx, &body, alcf->body_max);

    if (rc != NGX_OK) {
        return rc;
    }

    if (body.len) {
        rc = ngx_http_aihub_dev_key_parse(r, ctx, &body, &chat, &admin);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (!chat && !admin) {
        chat = 1;
    }

    ngx_str_set(&ctx->dev.scopes, "chat");

    if (admin) {
        if (chat) {
            ngx_str_set(&ctx->dev.scopes, "chat,admin");

        } else {
            ngx_str_set(&ctx->dev.scopes, "admin");
        }
    }

    return NGX_OK;
}


/* the body's object, or NULL: not one object alone, a member twice, a BOM */

static cJSON *
ngx_http_aihub_dev_key_json(ngx_str_t *body)
{
    u_char       *p, *last;
    cJSON        *root;
    const char   *end;
    const cJSON  *a, *b;

    p = body->data;
    last = p + body->len;

    if (body->len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
        return NULL;
    }

    root = cJSON_ParseWithLengthOpts((const char *) p, body->len, &end, 0);
    if (root == NULL) {
        return NULL;
    }

    for (p = (u_char *) end; p < last; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(root);
            return NULL;
        }
    }

    for (a = root->child; a; a = a->next) {
        for (b = a->next; b; b = b->next) {
            if (a->string && b->string
                && ngx_strcmp(a->string, b->string) == 0)
            {
                cJSON_Delete(root);
                return NULL;
            }
        }
    }

    return root;
}


/* whether a label holds a control character (C0 or DEL) */

static ngx_uint_t
ngx_http_aihub_dev_key_controls(const char *label)
{
    const u_char  *p;

    for (p = (const u_char *) label; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_aihub_dev_key_parse(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_str_t *body, ngx_uint_t *chat,
    ngx_uint_t *admin)
{
    u_char  *p;
    size_t   len;
    cJSON   *root, *label, *scopes, *s;

    /*
     * one JSON object and nothing after it, each member once, no byte
     * order mark (cJSON skips one): before, {"scopes":["chat"],
     * "scopes":["admin"]} was read as its first, and bytes after the
     * object were let go; the chat endpoints refuse both
     */

    root = ngx_http_aihub_dev_key_json(body);

    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST,
                            "invalid_request_error", "invalid_request_error",
                            "The body must be a JSON object such as "
                            "{\"label\":\"ci\",\"scopes\":[\"chat\"]}.");
        return NGX_DECLINED;
    }

    label = cJSON_GetObjectItemCaseSensitive(root, "label");
    scopes = cJSON_GetObjectItemCaseSensitive(root, "scopes");

    if ((label && !cJSON_IsString(label))
        || (scopes && !cJSON_IsArray(scopes)))
    {
        cJSON_Delete(root);
        ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST,
                            "invalid_request_error", "invalid_request_error",
                            "\"label\" must be a string and \"scopes\" "
                            "an array of \"chat\" and \"admin\".");
        return NGX_DECLINED;
    }

    if (label && ngx_http_aihub_dev_key_controls(label->valuestring)) {
        /*
         * a control character (a line feed, ESC...) in a label printed by
         * "aihub-worker key list" forged rows or cleared the operator's
         * terminal
         */
        cJSON_Delete(root);
        ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST,
                            "invalid_request_error", "invalid_request_error",
                            "\"label\" must be printable text, without "
                            "control characters.");
        return NGX_DECLINED;
    }

    if (label) {
        /* 200 bytes, cut on a character boundary, and UTF-8 only (a
           byte that is not is kept as '?'): the label goes back to
           clients in JSON and into MySQL's utf8mb4 column as it is */

        p = ngx_http_aihub_safe_text(r->pool, (u_char *) label->valuestring,
                                     ngx_strlen(label->valuestring), 200);
        if (p == NULL) {
            cJSON_Delete(root);
            return NGX_ERROR;
        }

        len = ngx_strlen(p);

        if (len) {
            ctx->dev.label.data = p;
            ctx->dev.label.len = len;
        }
    }

    if (scopes) {
        *chat = 0;

        cJSON_ArrayForEach(s, scopes) {
            if (cJSON_IsString(s) && ngx_strcmp(s->valuestring, "chat") == 0)
            {
                *chat = 1;

            } else if (cJSON_IsString(s)
                       && ngx_strcmp(s->valuestring, "admin") == 0)
            {
                *admin = 1;

            } else {
                cJSON_Delete(root);
                ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST,
                                    "invalid_request_error",
                                    "invalid_request_error",
                                    "Scopes are \"chat\" and \"admin\".");
                return NGX_DECLINED;
            }
        }
    }

    cJSON_Delete(root);

    return NGX_OK;
}


/* a new key, stored in Redis with the caller's record as its template */

static ngx_int_t
ngx_http_aihub_dev_key_store(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_str_t                   *rec, *index, *stream, *recs, *made, event;
    ngx_str_t                    hstr;
    ngx_str_t                    caller;
    const char                  *argv[17];
    size_t                       argvlen[17];
    u_char                       entropy[64], md[32];
    u_char                       created[NGX_INT64_LEN], now[NGX_INT64_LEN];
    u_char                       cap[NGX_INT64_LEN];
    char                         key[AIHUB_KEY_LEN + 1];
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    do {
        if (RAND_bytes(entropy, sizeof(entropy)) != 1) {
            return NGX_ERROR;
        }

    } while (aihub_key_make(entropy, sizeof(entropy), key) != 0);

    ngx_http_aihub_sha256(md, (u_char *) key, AIHUB_KEY_LEN);

    ctx->dev.key.len = AIHUB_KEY_LEN;
    ctx->dev.key.data = ngx_pnalloc(r->pool, AIHUB_KEY_LEN);
    hstr.len = AIHUB_SHA256_HEX_LEN;
    hstr.data = ngx_pnalloc(r->pool, AIHUB_SHA256_HEX_LEN);

    if (ctx->dev.key.data == NULL || hstr.data == NULL) {
        ngx_explicit_memzero(key, sizeof(key));
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->dev.key.data, key, AIHUB_KEY_LEN);
    ngx_explicit_memzero(key, sizeof(key));
    ngx_hex_dump(hstr.data, md, sizeof(md));

    ctx->dev.prefix.data = ctx->dev.key.data;
    ctx->dev.prefix.len = AIHUB_KEY_PREFIX_LEN;

    /* the caller's record in Redis: its hash in hex */
    ngx_hex_dump(ctx->caller.hash, ctx->caller.bin, sizeof(ctx->caller.bin));
    caller.data = ctx->caller.hash;
    caller.len = AIHUB_SHA256_HEX_LEN;

    rec = ngx_http_aihub_dev_key_name(r, AIHUB_RK_KEY, &caller);
    ctx->dev.rec = ngx_http_aihub_dev_key_name(r, AIHUB_RK_KEY, &hstr);
    recs = ngx_http_aihub_dev_key_name(r, AIHUB_RK_KEY, NULL);

    index = ngx_http_aihub_dev_key_name(r, AIHUB_RK_ACCOUNT_KEYS,
                                        &ctx->caller.key.account);
    stream = ngx_http_aihub_dev_key_name(r, AIHUB_RK_ADMIN, NULL);
    made = ngx_http_aihub_dev_key_name(r, AIHUB_RK_KEYS_MADE,
                                       &ctx->caller.key.account);

    /* the closing brace is the script's, after the expiry it decides */

    event.data = ngx_pnalloc(r->pool, 256 + 2 * ctx->dev.label.len * 6);
    if (rec == NULL || ctx->dev.rec == NULL || recs == NULL || index == NULL
        || stream == NULL || made == NULL || event.data == NULL)
    {
        return NGX_ERROR;
    }

    p = ngx_sprintf(event.data,
                    "{" M(AIHUB_AE_TYPE) "\"" AIHUB_AE_KEY_CREATED "\","
                    M(AIHUB_AE_ACCOUNT) "%V," M(AIHUB_AE_HASH) "\"%V\","
                    M(AIHUB_AE_PREFIX) "\"%V\"," M(AIHUB_AE_SCOPES) "\"%V\","
                    M(AIHUB_AE_LABEL) "\"", &ctx->caller.key.account, &hstr,
                    &ctx->dev.prefix, &ctx->dev.scopes);
    p = (u_char *) ngx_escape_json(p, ctx->dev.label.data,
                                   ctx->dev.label.len);
    p = ngx_sprintf(p, "\"," M(AIHUB_AE_TS) "%M", ngx_http_aihub_now_ms());
    event.len = p - event.data;

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_aihub_key_create_script;
    argvlen[1] = sizeof(ngx_http_aihub_key_create_script) - 1;
    argv[2] = "4";
    argvlen[2] = 1;
    argv[3] = (const char *) rec->data;
    argvlen[3] = rec->len;
    argv[4] = (const char *) ctx->dev.rec->data;
    argvlen[4] = ctx->dev.rec->len;
    argv[5] = (const char *) index->data;
    argvlen[5] = index->len;
    argv[6] = (const char *) stream->data;
    argvlen[6] = stream->len;

    argv[7] = (const char *) ctx->dev.prefix.data;
    argvlen[7] = ctx->dev.prefix.len;
    argv[8] = (const char *) ctx->dev.scopes.data;
    argvlen[8] = ctx->dev.scopes.len;
    argv[9] = (const char *) ctx->dev.label.data;
    argvlen[9] = ctx->dev.label.len;
    argv[10] = (const char *) hstr.data;
    argvlen[10] = hstr.len;
    argv[11] = (const char *) created;
    argvlen[11] = ngx_sprintf(created, "%T", ngx_time()) - created;
    argv[12] = (const char *) event.data;
    argvlen[12] = event.len;
    argv[13] = (const char *) now;
    argvlen[13] = ngx_sprintf(now, "%T", ngx_http_aihub_time(r)) - now;
    argv[14] = (const char *) cap;
    argvlen[14] = ngx_sprintf(cap, "%ui", amcf->max_keys) - cap;
    argv[15] = (const char *) recs->data;
    argvlen[15] = recs->len;
    argv[16] = (const char *) made->data;
    argvlen[16] = made->len;

    ctx->dev.op = NGX_HTTP_AIHUB_DEV_KEY_CREATE;

    rc = ngx_http_aihub_redis_call(r, &ctx->wait,
                                   ngx_http_aihub_dev_key_created, 1,
                                   17, argv, argvlen);

    if (rc == NGX_DECLINED) {
        ngx_http_aihub_dev_unavailable(ctx,
            "API keys cannot be managed right now. Please retry shortly.");
    }

    return rc;
}


static void
ngx_http_aihub_dev_key_created(ngx_http_request_t *r, redisReply *reply)
{
    cJSON                       *root;
    u_char                       buf[256], *msg;
    ngx_int_t                    wait;
    ngx_http_aihub_ctx_t        *ctx;
    ngx_http_aihub_main_conf_t  *amcf;

    ctx = ngx_http_aihub_get_ctx(r);
    ctx->flow.state = NGX_HTTP_AIHUB_STATE_NEW;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_aihub_dev_unavailable(ctx,
            "API keys cannot be managed right now. Please retry shortly.");
        ngx_http_aihub_resume(r);
        return;
    }

    if (reply->integer == NGX_HTTP_AIHUB_KEY_CALLER_INVALID) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key",
                            "This API key may not create keys: it is "
                            "revoked, suspended or expired, or no longer "
                            "has the \"admin\" scope.");
        ngx_http_aihub_resume(r);
        return;
    }

    if (reply->integer <= NGX_HTTP_AIHUB_KEY_TOO_MANY) {
        wait = (ngx_int_t) (NGX_HTTP_AIHUB_KEY_TOO_MANY - reply->integer);

        if (ngx_http_aihub_retry_after(r, wait) != NGX_OK)
        {
            ngx_http_aihub_dev_failed(r, ctx);
            return;
        }

        ngx_http_aihub_deny(ctx, NGX_HTTP_TOO_MANY_REQUESTS, "requests",
                            "rate_limit_exceeded",
                            "This account created "
                            NGX_HTTP_AIHUB_KEY_CREATES_MAX " API keys this "
                            "minute, the most it may. Retry after the time "
                            "in Retry-After.");
        ngx_http_aihub_resume(r);
        return;
    }

    if (reply->integer == NGX_HTTP_AIHUB_KEY_LIMIT_REACHED) {
        amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

        /* the verdict keeps the message: in the pool, not on the stack */

        msg = ngx_pnalloc(r->pool, 128);
        if (msg == NULL) {
            ngx_http_aihub_dev_failed(r, ctx);
            return;
        }

        ngx_sprintf(msg, "This account has %ui active API keys, the most "
                    "it may have. Revoke one to create another.%Z",
                    amcf->max_keys);
        ngx_http_aihub_deny(ctx, NGX_HTTP_CONFLICT, "invalid_request_error",
                            "key_limit_reached", (char *) msg);
        ngx_http_aihub_resume(r);
        return;
    }

    root = cJSON_CreateObject();
    if (root == NULL) {
        ngx_http_aihub_dev_failed(r, ctx);
        return;
    }

    cJSON_AddStringToObject(root, "object", "api_key");

    ngx_sprintf(buf, "%V%Z", &ctx->dev.key);
    cJSON_AddStringToObject(root, "key", (char *) buf);
    ngx_explicit_memzero(buf, sizeof(buf));

    ngx_sprintf(buf, "%V%Z", &ctx->dev.prefix);
    cJSON_AddStringToObject(root, "prefix", (char *) buf);
    ngx_sprintf(buf, "%V%Z", &ctx->dev.scopes);
    cJSON_AddStringToObject(root, "scopes", (char *) buf);
    ngx_sprintf(buf, "%V%Z", &ctx->dev.label);
    cJSON_AddStringToObject(root, "label", (char *) buf);
    cJSON_AddNumberToObject(root, "expires",
                            (double) ngx_max(reply->integer, 0));
    cJSON_AddStringToObject(root, "note", "Store this key now: it is "
                            "shown only once.");

    ngx_http_aihub_dev_answer(r, ctx, NGX_HTTP_CREATED, root);
}
