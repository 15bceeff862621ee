/*
 * The developer endpoints the module answers itself, after the key check:
 *
 *   GET    /v1/models, /api/v1/developer/models   the models this key may use
 *   GET    /api/v1/developer/usage                 the current period
 *   POST   /api/v1/developer/api-keys              create (admin scope)
 *   GET    /api/v1/developer/api-keys              list, masked
 *   DELETE /api/v1/developer/api-keys/{prefix}     revoke
 *
 * Keys created or revoked here change Redis at once (one script each) and
 * are queued on "<prefix>admin" for the worker to write to MySQL.
 */

#include "ngx_http_aihub_module.h"

#include <cjson/cJSON.h>
#include <openssl/rand.h>


static ngx_int_t ngx_http_aihub_dev_models(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_dev_usage(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static void ngx_http_aihub_dev_usage_done(ngx_http_request_t *r,
    redisReply *reply);
static ngx_int_t ngx_http_aihub_dev_keys(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_dev_key_create(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static void ngx_http_aihub_dev_key_create_body(ngx_http_request_t *r);
static void ngx_http_aihub_dev_keys_done(ngx_http_request_t *r,
    redisReply *reply);
static ngx_int_t ngx_http_aihub_dev_send_json(ngx_http_request_t *r,
    ngx_uint_t status, cJSON *json);
static void ngx_http_aihub_dev_answer(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t status, cJSON *json);
static void ngx_http_aihub_dev_failed(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static ngx_int_t ngx_http_aihub_dev_no_store(ngx_http_request_t *r);
static ngx_str_t *ngx_http_aihub_dev_key_name(ngx_http_request_t *r,
    const char *kind, ngx_str_t *id);
static void ngx_http_aihub_dev_unavailable(ngx_http_aihub_ctx_t *ctx,
    const char *message);
static ngx_int_t ngx_http_aihub_dev_sent(ngx_http_aihub_ctx_t *ctx,
    ngx_int_t rc, const char *unavailable);


/* KEYS: caller's record, new record, account index, admin stream */

static const char  ngx_http_aihub_key_create_script[] =
    "local rec = redis.call('HGETALL', KEYS[1]) "
    "if #rec == 0 then return redis.error_reply('caller record gone') end "
    "redis.call('HSET', KEYS[2], unpack(rec)) "
    "redis.call('HSET', KEYS[2], 'prefix', ARGV[1], 'scopes', ARGV[2], "
    "           'status', 'active', 'expires', '0', 'label', ARGV[3], "
    "           'created', ARGV[5]) "
    "redis.call('HSET', KEYS[3], ARGV[1], ARGV[4]) "
    "redis.call('XADD', KEYS[4], '*', 'event', ARGV[6]) "
    "return 1";

/* KEYS: account index; ARGV: key record prefix */

static const char  ngx_http_aihub_key_list_script[] =
    "local idx = redis.call('HGETALL', KEYS[1]) "
    "local out = {} "
    "for i = 1, #idx, 2 do "
    "  local f = redis.call('HMGET', ARGV[1] .. idx[i + 1], 'prefix', "
    "                       'scopes', 'status', 'label', 'created') "
    "  if f[1] then out[#out + 1] = f end "
    "end "
    "return out";

/*
 * KEYS: account index, admin stream; ARGV: display prefix, key record
 * prefix, invalidation channel, event JSON
 */

static const char  ngx_http_aihub_key_revoke_script[] =
    "local h = redis.call('HGET', KEYS[1], ARGV[1]) "
    "if not h then return 0 end "
    "redis.call('HSET', ARGV[2] .. h, 'status', 'revoked') "
    "redis.call('PUBLISH', ARGV[3], 'key:' .. h) "
    "redis.call('XADD', KEYS[2], '*', 'event', ARGV[4]) "
    "return 1";


ngx_int_t
ngx_http_aihub_developer_serve(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    switch (ctx->endpoint) {

    case NGX_HTTP_AIHUB_EP_MODELS:
        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            break;
        }

        return ngx_http_aihub_dev_models(r, ctx);

    case NGX_HTTP_AIHUB_EP_USAGE:
        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            break;
        }

        return ngx_http_aihub_dev_usage(r, ctx);

    default: /* NGX_HTTP_AIHUB_EP_KEYS */
        return ngx_http_aihub_dev_keys(r, ctx);
    }

    ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_ALLOWED, "invalid_request_error",
                        "method_not_allowed",
                        "This endpoint takes GET.");
    return NGX_OK;
}


static ngx_int_t
ngx_http_aihub_dev_models(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    char                    *id;
    cJSON                   *root, *data, *m;
    ngx_uint_t               i;
    ngx_array_t             *all;
    ngx_http_aihub_model_t  *models;

    if (!ngx_http_aihub_models_loaded()) {
        ngx_http_aihub_dev_unavailable(ctx,
            "The gateway has not loaded its model catalog yet. Please retry "
            "shortly.");
        return NGX_OK;
    }

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NGX_ERROR;
    }

    cJSON_AddStringToObject(root, "object", "list");
    data = cJSON_AddArrayToObject(root, "data");

    all = ngx_http_aihub_models_all();
    models = all->elts;

    for (i = 0; i < all->nelts; i++) {

        if (!ngx_http_aihub_model_allowed(&ctx->key, &models[i])) {
            continue;
        }

        m = cJSON_CreateObject();
        if (m == NULL) {
            cJSON_Delete(root);
            return NGX_ERROR;
        }

        id = (char *) models[i].id.data;   /* NUL-terminated copies */

        cJSON_AddStringToObject(m, "id", id);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by",
                                (char *) models[i].provider.data);
        cJSON_AddStringToObject(m, "tier", (char *) models[i].tier.data);
        cJSON_AddNumberToObject(m, "input_price_per_million_micros",
                                (double) models[i].price_in);
        cJSON_AddNumberToObject(m, "output_price_per_million_micros",
                                (double) models[i].price_out);
        cJSON_AddItemToArray(data, m);
    }

    return ngx_http_aihub_dev_send_json(r, NGX_HTTP_OK, root);
}


static ngx_int_t
ngx_http_aihub_dev_usage(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t    rc;
    const char  *argv[2];
    size_t       argvlen[2];

    if (ngx_http_aihub_period_key(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    argv[0] = "HGETALL";
    argvlen[0] = 7;
    argv[1] = (const char *) ctx->period_key.data;
    argvlen[1] = ctx->period_key.len;

    rc = ngx_http_aihub_redis_call(r, ngx_http_aihub_dev_usage_done,
                                   2, argv, argvlen);

    return ngx_http_aihub_dev_sent(ctx, rc, "Usage is not available right "
                                   "now. Please retry shortly.");
}


static void
ngx_http_aihub_dev_usage_done(ngx_http_request_t *r, redisReply *reply)
{
    size_t                 i, j;
    int64_t                v[6];
    ngx_int_t              n;
    cJSON                 *root, *o;
    u_char                 buf[64], when[32];
    ngx_http_aihub_ctx_t  *ctx;

    static const char  *fields[] = {
        "calls", "prompt", "completion", "total", "cost", "overage"
    };

    ctx = ngx_http_aihub_get_ctx(r);
    ctx->state = NGX_HTTP_AIHUB_STATE_NEW;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_aihub_dev_unavailable(ctx,
            "Usage is not available right now. Please retry shortly.");
        ngx_http_aihub_resume(r);
        return;
    }

    ngx_memzero(v, sizeof(v));

    for (i = 0; i + 1 < reply->elements; i += 2) {
        for (j = 0; j < 6; j++) {
            if (reply->element[i]->len == ngx_strlen(fields[j])
                && ngx_strncmp(reply->element[i]->str, fields[j],
                               reply->element[i]->len) == 0)
            {
                n = ngx_atoi((u_char *) reply->element[i + 1]->str,
                             reply->element[i + 1]->len);
                v[j] = (n == NGX_ERROR) ? 0 : n;
            }
        }
    }

    root = cJSON_CreateObject();
    if (root == NULL) {
        goto failed;
    }

    cJSON_AddStringToObject(root, "object", "usage");
    cJSON_AddNumberToObject(root, "account", (double) ctx->key.rec.account_id);

    ngx_sprintf(buf, "%V%Z", &ctx->key.plan);
    cJSON_AddStringToObject(root, "plan", (char *) buf);

    o = cJSON_AddObjectToObject(root, "period");
    ngx_http_time(when, ctx->period_start);
    ngx_sprintf(buf, "%*s%Z", (size_t) 29, when);
    cJSON_AddStringToObject(o, "start", (char *) buf);
    ngx_http_time(when, ctx->period_end);
    ngx_sprintf(buf, "%*s%Z", (size_t) 29, when);
    cJSON_AddStringToObject(o, "end", (char *) buf);
    cJSON_AddNumberToObject(o, "start_unix", (double) ctx->period_start);
    cJSON_AddNumberToObject(o, "end_unix", (double) ctx->period_end);

    o = cJSON_AddObjectToObject(root, "calls");
    cJSON_AddNumberToObject(o, "used", (double) v[0]);
    cJSON_AddNumberToObject(o, "included", (double) ctx->key.rec.included);
    cJSON_AddNumberToObject(o, "remaining",
                            (double) ((uint64_t) v[0] < ctx->key.rec.included
                                      ? ctx->key.rec.included - v[0] : 0));
    cJSON_AddBoolToObject(o, "overage_allowed", ctx->key.rec.overage);

    o = cJSON_AddObjectToObject(root, "tokens");
    cJSON_AddNumberToObject(o, "prompt", (double) v[1]);
    cJSON_AddNumberToObject(o, "completion", (double) v[2]);
    cJSON_AddNumberToObject(o, "total", (double) v[3]);

    o = cJSON_AddObjectToObject(root, "cost");
    cJSON_AddNumberToObject(o, "micros", (double) v[4]);
    ngx_sprintf(buf, "%L.%06L%Z", v[4] / 1000000, v[4] % 1000000);
    cJSON_AddStringToObject(o, "usd", (char *) buf);
    cJSON_AddNumberToObject(o, "overage_micros", (double) v[5]);

    o = cJSON_AddObjectToObject(root, "limits");
    cJSON_AddNumberToObject(o, "requests_per_minute",
                            (double) ctx->key.rec.rpm);
    cJSON_AddNumberToObject(o, "tokens_per_minute",
                            (double) ctx->key.rec.tpm);
    cJSON_AddNumberToObject(o, "max_tokens",
                            (double) ctx->key.rec.max_tokens);
    cJSON_AddNumberToObject(o, "spend_cap_micros",
                            (double) ctx->key.rec.spend_cap);

    ngx_sprintf(buf, "%*s%Z", (size_t) 29, when);
    cJSON_AddStringToObject(root, "resets_at", (char *) buf);

    ngx_http_aihub_dev_answer(r, ctx, NGX_HTTP_OK, root);
    return;

failed:

    ngx_http_aihub_dev_failed(r, ctx);
}


static ngx_int_t
ngx_http_aihub_dev_keys(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_str_t                    prefix, *index, *stream, *channel;
    ngx_str_t                    rec_prefix, event;
    const char                  *argv[9];
    size_t                       argvlen[9];
    ngx_http_aihub_main_conf_t  *amcf;

    static ngx_str_t  base = ngx_string("/api/v1/developer/api-keys");

    if (!ctx->key.rec.admin) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_FORBIDDEN, "invalid_request_error",
                            "insufficient_scope",
                            "Managing API keys needs a key with the "
                            "\"admin\" scope.");
        return NGX_OK;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    index = ngx_http_aihub_dev_key_name(r, AIHUB_RK_ACCOUNT_KEYS,
                                        &ctx->key.account);
    if (index == NULL) {
        return NGX_ERROR;
    }

    rec_prefix.len = amcf->redis_prefix.len + sizeof(AIHUB_RK_KEY) - 1;
    rec_prefix.data = ngx_pnalloc(r->pool, rec_prefix.len);
    if (rec_prefix.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(rec_prefix.data, amcf->redis_prefix.data,
                   amcf->redis_prefix.len);
    ngx_memcpy(p, AIHUB_RK_KEY, sizeof(AIHUB_RK_KEY) - 1);

    if (r->uri.len == base.len) {

        if (r->method == NGX_HTTP_POST) {
            return ngx_http_aihub_dev_key_create(r, ctx);
        }

        if (r->method != NGX_HTTP_GET) {
            ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_ALLOWED,
                                "invalid_request_error", "method_not_allowed",
                                "This endpoint takes GET or POST.");
            return NGX_OK;
        }

        argv[0] = "EVAL";
        argvlen[0] = 4;
        argv[1] = ngx_http_aihub_key_list_script;
        argvlen[1] = sizeof(ngx_http_aihub_key_list_script) - 1;
        argv[2] = "1";
        argvlen[2] = 1;
        argv[3] = (const char *) index->data;
        argvlen[3] = index->len;
        argv[4] = (const char *) rec_prefix.data;
        argvlen[4] = rec_prefix.len;

        ctx->dev_op = 1;

        rc = ngx_http_aihub_redis_call(r, ngx_http_aihub_dev_keys_done,
                                       5, argv, argvlen);
        goto sent;
    }

    /* DELETE /api/v1/developer/api-keys/{prefix} */

    if (r->method != NGX_HTTP_DELETE) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_ALLOWED,
                            "invalid_request_error", "method_not_allowed",
                            "A key is revoked with DELETE.");
        return NGX_OK;
    }

    prefix.data = r->uri.data + base.len + 1;
    prefix.len = r->uri.len - base.len - 1;

    if (prefix.len != AIHUB_KEY_PREFIX_LEN
        || ngx_strncmp(prefix.data, AIHUB_KEY_TAG, AIHUB_KEY_TAG_LEN) != 0)
    {
        ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_FOUND, "invalid_request_error",
                            "key_not_found",
                            "No such API key in this account: give its "
                            "prefix, as listed.");
        return NGX_OK;
    }

    ctx->dev_prefix = prefix;

    stream = ngx_http_aihub_dev_key_name(r, AIHUB_RK_ADMIN, NULL);
    channel = ngx_http_aihub_dev_key_name(r, AIHUB_RK_INVALIDATE, NULL);

    event.data = ngx_pnalloc(r->pool, 128 + prefix.len);
    if (stream == NULL || channel == NULL || event.data == NULL) {
        return NGX_ERROR;
    }

    event.len = ngx_sprintf(event.data,
                            "{\"type\":\"key.revoked\",\"account\":%V,"
                            "\"prefix\":\"%V\",\"ts\":%M}",
                            &ctx->key.account, &prefix,
                            ngx_http_aihub_now_ms())
                - event.data;

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_aihub_key_revoke_script;
    argvlen[1] = sizeof(ngx_http_aihub_key_revoke_script) - 1;
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (const char *) index->data;
    argvlen[3] = index->len;
    argv[4] = (const char *) stream->data;
    argvlen[4] = stream->len;
    argv[5] = (const char *) prefix.data;
    argvlen[5] = prefix.len;
    argv[6] = (const char *) rec_prefix.data;
    argvlen[6] = rec_prefix.len;
    argv[7] = (const char *) channel->data;
    argvlen[7] = channel->len;
    argv[8] = (const char *) event.data;
    argvlen[8] = event.len;

    ctx->dev_op = 2;

    rc = ngx_http_aihub_redis_call(r, ngx_http_aihub_dev_keys_done,
                                   9, argv, argvlen);

sent:

    return ngx_http_aihub_dev_sent(ctx, rc, "API keys cannot be managed "
                                   "right now. Please retry shortly.");
}


static ngx_int_t
ngx_http_aihub_dev_key_create(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t  rc;

    if (ctx->body_read) {
        /* the phases ran again while the key was being stored */
        return NGX_AGAIN;
    }

    r->request_body_in_single_buf = 1;

    ctx->body_sync = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_aihub_dev_key_create_body);

    ctx->body_sync = 0;

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ctx->state == NGX_HTTP_AIHUB_STATE_DONE) {
        /* read at once and refused */
        return NGX_OK;
    }

    return NGX_AGAIN;
}


/* the body (optional): {"label": "...", "scopes": ["chat", "admin"]} */

static void
ngx_http_aihub_dev_key_create_body(ngx_http_request_t *r)
{
    u_char                      *p;
    cJSON                       *root, *label, *scopes, *s;
    ngx_int_t                    rc;
    ngx_str_t                   *rec, *index, *stream, event, lab, sc;
    ngx_uint_t                   chat, admin;
    const char                  *argv[10];
    size_t                       argvlen[10];
    u_char                       entropy[64], md[32];
    u_char                       hash[AIHUB_SHA256_HEX_LEN];
    u_char                       created[NGX_INT64_LEN];
    size_t                       created_len;
    char                         key[AIHUB_KEY_LEN + 1];
    ngx_str_t                    hstr;
    ngx_http_aihub_ctx_t        *ctx;

    ctx = ngx_http_aihub_get_ctx(r);

    if (!ctx->body_read) {
        ctx->body_read = 1;
        r->main->count--;
    }

    ctx->state = NGX_HTTP_AIHUB_STATE_NEW;

    root = NULL;
    chat = 1;
    admin = 0;
    ngx_str_set(&lab, "");        /* not NULL: it is copied with %*s */

    if (r->request_body && r->request_body->bufs
        && r->request_body->bufs->buf->last > r->request_body->bufs->buf->pos
        && !r->request_body->temp_file)
    {
        root = cJSON_ParseWithLength(
                   (const char *) r->request_body->bufs->buf->pos,
                   r->request_body->bufs->buf->last
                   - r->request_body->bufs->buf->pos);

        if (root == NULL || !cJSON_IsObject(root)) {
            cJSON_Delete(root);
            ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST,
                                "invalid_request_error",
                                "invalid_request_error",
                                "The body must be a JSON object such as "
                                "{\"label\":\"ci\",\"scopes\":[\"chat\"]}.");
            goto resume;
        }

        label = cJSON_GetObjectItemCaseSensitive(root, "label");
        scopes = cJSON_GetObjectItemCaseSensitive(root, "scopes");

        if ((label && !cJSON_IsString(label))
            || (scopes && !cJSON_IsArray(scopes)))
        {
            cJSON_Delete(root);
            ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST,
                                "invalid_request_error",
                                "invalid_request_error",
                                "\"label\" must be a string and \"scopes\" "
                                "an array of \"chat\" and \"admin\".");
            goto resume;
        }

        if (label) {
            lab.len = ngx_min(ngx_strlen(label->valuestring), 200);
            lab.data = ngx_pnalloc(r->pool, lab.len);
            if (lab.data == NULL) {
                cJSON_Delete(root);
                goto failed;
            }

            ngx_memcpy(lab.data, label->valuestring, lab.len);
        }

        if (scopes) {
            chat = 0;

            cJSON_ArrayForEach(s, scopes) {
                if (cJSON_IsString(s)
                    && ngx_strcmp(s->valuestring, "chat") == 0)
                {
                    chat = 1;

                } else if (cJSON_IsString(s)
                           && ngx_strcmp(s->valuestring, "admin") == 0)
                {
                    admin = 1;

                } else {
                    cJSON_Delete(root);
                    ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST,
                                        "invalid_request_error",
                                        "invalid_request_error",
                                        "Scopes are \"chat\" and "
                                        "\"admin\".");
                    goto resume;
                }
            }
        }

        cJSON_Delete(root);
    }

    if (!chat && !admin) {
        chat = 1;
    }

    ngx_str_set(&sc, "chat");

    if (admin) {
        if (chat) {
            ngx_str_set(&sc, "chat,admin");

        } else {
            ngx_str_set(&sc, "admin");
        }
    }

    do {
        if (RAND_bytes(entropy, sizeof(entropy)) != 1) {
            goto failed;
        }

    } while (aihub_key_make(entropy, sizeof(entropy), key) != 0);

    ngx_http_aihub_sha256(md, (u_char *) key, AIHUB_KEY_LEN);
    ngx_hex_dump(hash, md, sizeof(md));

    hstr.data = hash;
    hstr.len = AIHUB_SHA256_HEX_LEN;

    ctx->dev_key.len = AIHUB_KEY_LEN;
    ctx->dev_key.data = ngx_pnalloc(r->pool, AIHUB_KEY_LEN);
    if (ctx->dev_key.data == NULL) {
        goto failed;
    }

    ngx_memcpy(ctx->dev_key.data, key, AIHUB_KEY_LEN);
    ngx_explicit_memzero(key, sizeof(key));

    ctx->dev_prefix.data = ctx->dev_key.data;
    ctx->dev_prefix.len = AIHUB_KEY_PREFIX_LEN;
    ctx->dev_label = lab;
    ctx->dev_scopes = sc;

    hstr.data = ngx_pnalloc(r->pool, AIHUB_SHA256_HEX_LEN);
    if (hstr.data == NULL) {
        goto failed;
    }

    ngx_memcpy(hstr.data, hash, AIHUB_SHA256_HEX_LEN);

    {
        ngx_str_t  caller;

        caller.data = ctx->key_hash;
        caller.len = AIHUB_SHA256_HEX_LEN;

        rec = ngx_http_aihub_dev_key_name(r, AIHUB_RK_KEY, &caller);
        ctx->dev_rec = ngx_http_aihub_dev_key_name(r, AIHUB_RK_KEY, &hstr);
    }

    index = ngx_http_aihub_dev_key_name(r, AIHUB_RK_ACCOUNT_KEYS,
                                        &ctx->key.account);
    stream = ngx_http_aihub_dev_key_name(r, AIHUB_RK_ADMIN, NULL);

    created_len = ngx_sprintf(created, "%T", ngx_time()) - created;

    event.data = ngx_pnalloc(r->pool, 256 + 2 * lab.len * 6);
    if (rec == NULL || ctx->dev_rec == NULL || index == NULL
        || stream == NULL || event.data == NULL)
    {
        goto failed;
    }

    p = ngx_sprintf(event.data,
                    "{\"type\":\"key.created\",\"account\":%V,"
                    "\"hash\":\"%V\",\"prefix\":\"%V\",\"scopes\":\"%V\","
                    "\"label\":\"", &ctx->key.account, &hstr,
                    &ctx->dev_prefix, &sc);
    p = (u_char *) ngx_escape_json(p, lab.data, lab.len);
    p = ngx_sprintf(p, "\",\"ts\":%M}", ngx_http_aihub_now_ms());
    event.len = p - event.data;

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_aihub_key_create_script;
    argvlen[1] = sizeof(ngx_http_aihub_key_create_script) - 1;
    argv[2] = "4";
    argvlen[2] = 1;
    argv[3] = (const char *) rec->data;
    argvlen[3] = rec->len;
    argv[4] = (const char *) ctx->dev_rec->data;
    argvlen[4] = ctx->dev_rec->len;
    argv[5] = (const char *) index->data;
    argvlen[5] = index->len;
    argv[6] = (const char *) stream->data;
    argvlen[6] = stream->len;

    /* ARGV: prefix, scopes, label, hash, created, event */

    argv[7] = (const char *) ctx->dev_prefix.data;
    argvlen[7] = ctx->dev_prefix.len;
    argv[8] = (const char *) sc.data;
    argvlen[8] = sc.len;
    argv[9] = lab.len ? (const char *) lab.data : "";
    argvlen[9] = lab.len;

    {
        const char  *argv2[13];
        size_t       argvlen2[13];
        ngx_uint_t   i;

        for (i = 0; i < 10; i++) {
            argv2[i] = argv[i];
            argvlen2[i] = argvlen[i];
        }

        argv2[10] = (const char *) hstr.data;
        argvlen2[10] = hstr.len;
        argv2[11] = (const char *) created;
        argvlen2[11] = created_len;
        argv2[12] = (const char *) event.data;
        argvlen2[12] = event.len;

        ctx->dev_op = 3;

        rc = ngx_http_aihub_redis_call(r, ngx_http_aihub_dev_keys_done,
                                       13, argv2, argvlen2);
    }

    if (rc == NGX_OK) {
        ctx->state = NGX_HTTP_AIHUB_STATE_WAIT;
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_aihub_dev_unavailable(ctx,
            "API keys cannot be managed right now. Please retry shortly.");
        goto resume;
    }

failed:

    ngx_http_aihub_deny(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR, "server_error",
                        "internal_error", "The gateway failed to process "
                        "the request.");

resume:

    if (ctx->body_sync) {
        return;
    }

    ngx_http_aihub_resume(r);
}


static void
ngx_http_aihub_dev_keys_done(ngx_http_request_t *r, redisReply *reply)
{
    size_t                 i;
    cJSON                 *root, *data, *k;
    u_char                 buf[256];
    ngx_int_t              n;
    redisReply            *f;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);
    ctx->state = NGX_HTTP_AIHUB_STATE_NEW;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_http_aihub_dev_unavailable(ctx,
            "API keys cannot be managed right now. Please retry shortly.");
        ngx_http_aihub_resume(r);
        return;
    }

    root = cJSON_CreateObject();
    if (root == NULL) {
        goto failed;
    }

    switch (ctx->dev_op) {

    case 1: /* list */
        cJSON_AddStringToObject(root, "object", "list");
        data = cJSON_AddArrayToObject(root, "data");

        for (i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements;
             i++)
        {
            f = reply->element[i];

            if (f->type != REDIS_REPLY_ARRAY || f->elements != 5
                || f->element[0]->type != REDIS_REPLY_STRING)
            {
                continue;
            }

            k = cJSON_CreateObject();
            if (k == NULL) {
                cJSON_Delete(root);
                goto failed;
            }

            ngx_sprintf(buf, "%*s%Z", ngx_min(f->element[0]->len, 64),
                        f->element[0]->str);
            cJSON_AddStringToObject(k, "prefix", (char *) buf);
            ngx_sprintf(buf, "%*s...%Z", ngx_min(f->element[0]->len, 64),
                        f->element[0]->str);
            cJSON_AddStringToObject(k, "masked", (char *) buf);

            if (f->element[1]->type == REDIS_REPLY_STRING) {
                cJSON_AddStringToObject(k, "scopes", f->element[1]->str);
            }

            if (f->element[2]->type == REDIS_REPLY_STRING) {
                cJSON_AddStringToObject(k, "status", f->element[2]->str);
            }

            if (f->element[3]->type == REDIS_REPLY_STRING) {
                cJSON_AddStringToObject(k, "label", f->element[3]->str);
            }

            if (f->element[4]->type == REDIS_REPLY_STRING) {
                n = ngx_atoi((u_char *) f->element[4]->str,
                             f->element[4]->len);
                cJSON_AddNumberToObject(k, "created",
                                        n == NGX_ERROR ? 0 : (double) n);
            }

            cJSON_AddItemToArray(data, k);
        }

        break;

    case 2: /* revoke */
        if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1) {
            cJSON_Delete(root);
            ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_FOUND,
                                "invalid_request_error", "key_not_found",
                                "No such API key in this account.");
            ngx_http_aihub_resume(r);
            return;
        }

        ngx_sprintf(buf, "%V%Z", &ctx->dev_prefix);
        cJSON_AddStringToObject(root, "object", "api_key");
        cJSON_AddStringToObject(root, "prefix", (char *) buf);
        cJSON_AddStringToObject(root, "status", "revoked");
        break;

    default: /* 3: create */
        cJSON_AddStringToObject(root, "object", "api_key");

        ngx_sprintf(buf, "%V%Z", &ctx->dev_key);
        cJSON_AddStringToObject(root, "key", (char *) buf);
        ngx_explicit_memzero(buf, sizeof(buf));

        ngx_sprintf(buf, "%V%Z", &ctx->dev_prefix);
        cJSON_AddStringToObject(root, "prefix", (char *) buf);
        ngx_sprintf(buf, "%V%Z", &ctx->dev_scopes);
        cJSON_AddStringToObject(root, "scopes", (char *) buf);
        ngx_sprintf(buf, "%*s%Z", ngx_min(ctx->dev_label.len, 200),
                    ctx->dev_label.data);
        cJSON_AddStringToObject(root, "label", (char *) buf);
        cJSON_AddStringToObject(root, "note", "Store this key now: it is "
                                "shown only once.");
        break;
    }

    ngx_http_aihub_dev_answer(r, ctx, ctx->dev_op == 3 ? NGX_HTTP_CREATED
                                                       : NGX_HTTP_OK,
                              root);
    return;

failed:

    ngx_http_aihub_dev_failed(r, ctx);
}


/* a Redis reply completed an endpoint: answer, outside the phases */

static void
ngx_http_aihub_dev_answer(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t status, cJSON *json)
{
    ngx_connection_t  *c;

    ctx->state = NGX_HTTP_AIHUB_STATE_DONE;
    ctx->rc = NGX_DONE;

    c = r->connection;
    (void) ngx_http_aihub_dev_send_json(r, status, json);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_aihub_dev_failed(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_deny(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR, "server_error",
                        "internal_error", "The gateway failed to process "
                        "the request.");
    ngx_http_aihub_resume(r);
}


/* sends the JSON and ends the request; the JSON is freed */

static ngx_int_t
ngx_http_aihub_dev_send_json(ngx_http_request_t *r, ngx_uint_t status,
    cJSON *json)
{
    char       *out;
    size_t      len;
    ngx_int_t   rc;
    ngx_buf_t  *b;

    out = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);

    if (out == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    len = ngx_strlen(out);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        cJSON_free(out);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    b->last = ngx_cpymem(b->last, out, len);
    *b->last++ = '\n';
    b->last_buf = 1;
    b->last_in_chain = 1;

    ngx_explicit_memzero(out, len);
    cJSON_free(out);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    ngx_http_aihub_get_ctx(r)->own_answer = 1;

    /* a new key is a secret: no cache keeps a copy of this answer */

    if (ngx_http_aihub_dev_no_store(r) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    rc = ngx_http_aihub_send_buf(r, status, "application/json", b);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_aihub_dev_no_store(ngx_http_request_t *r)
{
    return ngx_http_aihub_add_header(r, "Cache-Control", (u_char *) "no-store",
                                     sizeof("no-store") - 1);
}


/* "<prefix><kind><id>" in the request pool */

static ngx_str_t *
ngx_http_aihub_dev_key_name(ngx_http_request_t *r, const char *kind,
    ngx_str_t *id)
{
    u_char                      *p;
    size_t                       klen;
    ngx_str_t                   *s;
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    klen = ngx_strlen(kind);

    s = ngx_palloc(r->pool, sizeof(ngx_str_t));
    if (s == NULL) {
        return NULL;
    }

    s->len = amcf->redis_prefix.len + klen + (id ? id->len : 0);
    s->data = ngx_pnalloc(r->pool, s->len);
    if (s->data == NULL) {
        return NULL;
    }

    p = ngx_cpymem(s->data, amcf->redis_prefix.data, amcf->redis_prefix.len);
    p = ngx_cpymem(p, kind, klen);

    if (id) {
        ngx_memcpy(p, id->data, id->len);
    }

    return s;
}


/* what a step returns once its Redis command went out (or could not) */

static ngx_int_t
ngx_http_aihub_dev_sent(ngx_http_aihub_ctx_t *ctx, ngx_int_t rc,
    const char *unavailable)
{
    if (rc == NGX_DECLINED) {
        ngx_http_aihub_dev_unavailable(ctx, unavailable);
        return NGX_OK;
    }

    return (rc == NGX_OK) ? NGX_AGAIN : NGX_ERROR;
}


static void
ngx_http_aihub_dev_unavailable(ngx_http_aihub_ctx_t *ctx, const char *message)
{
    ngx_http_aihub_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error",
                        "service_unavailable", message);
}
