/*
 * The api-keys endpoints (admin scope):
 *
 *   POST   /api/v1/developer/api-keys              create (dev_key_create.c)
 *   GET    /api/v1/developer/api-keys              list, masked
 *   DELETE /api/v1/developer/api-keys/{prefix}     revoke
 *
 * Keys created or revoked here change Redis at once (one script each) and
 * are queued on "<prefix>admin" for the worker to write to MySQL.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_dev.h"
#include "ngx_http_aihub_dev_keys.h"

#include <cjson/cJSON.h>


/* "member": of the admin event, its name from aihub_protocol.h */
#define M(name)  "\"" name "\":"


static void ngx_http_aihub_dev_keys_done(ngx_http_request_t *r,
    redisReply *reply);


/* KEYS: account index; ARGV: key record prefix */

static const char  ngx_http_aihub_key_list_script[] =
    "local idx = redis.call('HGETALL', KEYS[1]) "
    "local out = {} "
    "for i = 1, #idx, 2 do "
    "  local f = redis.call('HMGET', ARGV[1] .. idx[i + 1], '"
        AIHUB_KF_PREFIX "', '" AIHUB_KF_SCOPES "', '" AIHUB_KF_STATUS "', '"
        AIHUB_KF_LABEL "', '" AIHUB_KF_CREATED "', '" AIHUB_KF_EXPIRES
        "') "
    "  if f[1] then out[#out + 1] = f end "
    "end "
    "return out";

/*
 * KEYS: account index, admin stream; ARGV: display prefix, key record
 * prefix, invalidation channel, event JSON.  The first write deletes the
 * status, then it is set: Redis at its maxmemory refuses a script whose
 * first write adds data, and lets one that has written finish, so a key
 * is revoked even then (a few bytes over the limit).
 */

static const char  ngx_http_aihub_key_revoke_script[] =
    "local h = redis.call('HGET', KEYS[1], ARGV[1]) "
    "if not h then return 0 end "
    "redis.call('HDEL', ARGV[2] .. h, '" AIHUB_KF_STATUS "') "
    "redis.call('HSET', ARGV[2] .. h, '" AIHUB_KF_STATUS "', 'revoked') "
    "redis.call('PUBLISH', ARGV[3], '" AIHUB_INV_KEY "' .. h) "
    "redis.call('XADD', KEYS[2], '*', '" AIHUB_ADMIN_FIELD "', ARGV[4]) "
    "return 1";


ngx_int_t
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

    if (!ctx->caller.key.rec.admin) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_FORBIDDEN, "invalid_request_error",
                            "insufficient_scope",
                            "Managing API keys needs a key with the "
                            "\"admin\" scope.");
        return NGX_OK;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    index = ngx_http_aihub_dev_key_name(r, AIHUB_RK_ACCOUNT_KEYS,
                                        &ctx->caller.key.account);
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

        ctx->dev.op = NGX_HTTP_AIHUB_DEV_KEY_LIST;

        rc = ngx_http_aihub_redis_call(r, &ctx->wait,
                                       ngx_http_aihub_dev_keys_done, 1,
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

    ctx->dev.prefix = prefix;

    stream = ngx_http_aihub_dev_key_name(r, AIHUB_RK_ADMIN, NULL);
    channel = ngx_http_aihub_dev_key_name(r, AIHUB_RK_INVALIDATE, NULL);

    event.data = ngx_pnalloc(r->pool, 128 + prefix.len);
    if (stream == NULL || channel == NULL || event.data == NULL) {
        return NGX_ERROR;
    }

    event.len = ngx_sprintf(event.data,
                            "{" M(AIHUB_AE_TYPE) "\"" AIHUB_AE_KEY_REVOKED
                            "\"," M(AIHUB_AE_ACCOUNT) "%V,"
                            M(AIHUB_AE_PREFIX) "\"%V\"," M(AIHUB_AE_TS) "%M}",
                            &ctx->caller.key.account, &prefix,
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

    ctx->dev.op = NGX_HTTP_AIHUB_DEV_KEY_REVOKE;

    rc = ngx_http_aihub_redis_call(r, &ctx->wait, ngx_http_aihub_dev_keys_done,
                                   0, 9, argv, argvlen);

sent:

    return ngx_http_aihub_dev_sent(ctx, rc, "API keys cannot be managed "
                                   "right now. Please retry shortly.");
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
    ctx->flow.state = NGX_HTTP_AIHUB_STATE_NEW;

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

    switch (ctx->dev.op) {

    case NGX_HTTP_AIHUB_DEV_KEY_LIST:
        cJSON_AddStringToObject(root, "object", "list");
        data = cJSON_AddArrayToObject(root, "data");

        for (i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements;
             i++)
        {
            f = reply->element[i];

            if (f->type != REDIS_REPLY_ARRAY || f->elements != 6
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

            /*
             * its expiry, 0 never; an active key past it says "expired"
             * (its record keeps "active": before, the list said so of a
             * key that got 401)
             */

            n = 0;

            if (f->element[5]->type == REDIS_REPLY_STRING) {
                n = ngx_atoi((u_char *) f->element[5]->str,
                             f->element[5]->len);
                n = (n == NGX_ERROR) ? 0 : n;
            }

            cJSON_AddNumberToObject(k, "expires", (double) n);

            if (f->element[2]->type == REDIS_REPLY_STRING) {
                cJSON_AddStringToObject(k, "status",
                    (n > 0 && n <= ngx_http_aihub_time(r)
                     && ngx_strcmp(f->element[2]->str, "active") == 0)
                    ? "expired" : f->element[2]->str);
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

    case NGX_HTTP_AIHUB_DEV_KEY_REVOKE:
        if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1) {
            cJSON_Delete(root);
            ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_FOUND,
                                "invalid_request_error", "key_not_found",
                                "No such API key in this account.");
            ngx_http_aihub_resume(r);
            return;
        }

        ngx_sprintf(buf, "%V%Z", &ctx->dev.prefix);
        cJSON_AddStringToObject(root, "object", "api_key");
        cJSON_AddStringToObject(root, "prefix", (char *) buf);
        cJSON_AddStringToObject(root, "status", "revoked");
        break;

    default:
        cJSON_Delete(root);
        goto failed;
    }

    ngx_http_aihub_dev_answer(r, ctx, NGX_HTTP_OK, root);
    return;

failed:

    ngx_http_aihub_dev_failed(r, ctx);
}
