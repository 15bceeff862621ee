/*
 * The developer endpoints the module answers itself, after the key check:
 *
 *   GET    /v1/models, /api/v1/developer/models   the models this key may use
 *   GET    /v1/models/{id} (and the developer twin) one of them
 *   GET    /api/v1/developer/usage                 the current period
 *
 * and what every endpoint shares (dev_keys.c for the api-keys ones): the
 * JSON answer, the Redis key names, the errors.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_models.h"
#include "ngx_http_aihub_quota.h"
#include "ngx_http_aihub_dev.h"

#include <cjson/cJSON.h>


static void ngx_http_aihub_dev_usage_done(ngx_http_request_t *r,
    redisReply *reply);
static ngx_int_t ngx_http_aihub_dev_send_json(ngx_http_request_t *r,
    ngx_uint_t status, cJSON *json);
static ngx_int_t ngx_http_aihub_dev_no_store(ngx_http_request_t *r);




/* a model this key may call on this node: allowed and servable */

static ngx_uint_t
ngx_http_aihub_dev_model_visible(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_http_aihub_model_t *m)
{
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    return ngx_http_aihub_model_allowed(&ctx->caller.key, m)
           && ngx_http_aihub_model_servable(amcf, m);
}


/* OpenAI's model object, with the catalog's tier, kind and prices */

static cJSON *
ngx_http_aihub_dev_model_object(ngx_http_aihub_model_t *m)
{
    cJSON  *o;

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }

    /* the catalog's strings are NUL-terminated copies */

    cJSON_AddStringToObject(o, "id", (char *) m->id.data);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", (double) m->created);
    cJSON_AddStringToObject(o, "owned_by", (char *) m->provider.data);
    cJSON_AddStringToObject(o, "tier", (char *) m->tier.data);
    cJSON_AddStringToObject(o, "kind",
                            m->kind == NGX_HTTP_AIHUB_MODEL_EMBED
                            ? "embedding" : "chat");
    cJSON_AddNumberToObject(o, "input_price_per_million_micros",
                            (double) m->price_in);
    cJSON_AddNumberToObject(o, "output_price_per_million_micros",
                            (double) m->price_out);

    return o;
}


ngx_int_t
ngx_http_aihub_dev_models(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
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

        if (!ngx_http_aihub_dev_model_visible(r, ctx, &models[i])) {
            continue;
        }

        m = ngx_http_aihub_dev_model_object(&models[i]);
        if (m == NULL) {
            cJSON_Delete(root);
            return NGX_ERROR;
        }

        cJSON_AddItemToArray(data, m);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub dev: models, %d listed", cJSON_GetArraySize(data));

    return ngx_http_aihub_dev_send_json(r, NGX_HTTP_OK, root);
}


/*
 * GET /v1/models/{id}: the id is the rest of the path, slashes and all
 * ("openai/gpt-4o"), as nginx decoded it.  A model the key may not use,
 * or that this node cannot serve, is not found, as OpenAI answers.
 */

ngx_int_t
ngx_http_aihub_dev_model(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char                  *p, *msg, *name;
    cJSON                   *o;
    ngx_str_t                id;
    ngx_http_aihub_model_t  *m;

    if (!ngx_http_aihub_models_loaded()) {
        ngx_http_aihub_dev_unavailable(ctx,
            "The gateway has not loaded its model catalog yet. Please retry "
            "shortly.");
        return NGX_OK;
    }

    /* the endpoint matched "/v1/models/" or "/api/v1/developer/models/" */

    p = r->uri.data + (r->uri.data[1] == 'v' ? sizeof("/v1/models/") - 1
                       : sizeof("/api/v1/developer/models/") - 1);

    id.data = p;
    id.len = r->uri.data + r->uri.len - p;

    m = ngx_http_aihub_model_find(&id);

    if (m == NULL || !ngx_http_aihub_dev_model_visible(r, ctx, m)) {
        name = ngx_http_aihub_safe_text(r->pool, id.data, id.len, 128);
        msg = ngx_pnalloc(r->pool, 128 + 64);

        if (name == NULL || msg == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(msg, "The model \"%s\" does not exist or you do not "
                    "have access to it.%Z", name);

        ngx_http_aihub_deny(ctx, NGX_HTTP_NOT_FOUND, "invalid_request_error",
                            "model_not_found", (const char *) msg);
        return NGX_OK;
    }

    o = ngx_http_aihub_dev_model_object(m);
    if (o == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_aihub_dev_send_json(r, NGX_HTTP_OK, o);
}


ngx_int_t
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
    argv[1] = (const char *) ctx->quota.period_key.data;
    argvlen[1] = ctx->quota.period_key.len;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub dev: usage of \"%V\"", &ctx->quota.period_key);

    rc = ngx_http_aihub_redis_call(r, &ctx->wait,
                                   ngx_http_aihub_dev_usage_done, 1,
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
        AIHUB_CF_CALLS, AIHUB_CF_PROMPT, AIHUB_CF_COMPLETION, AIHUB_CF_TOTAL,
        AIHUB_CF_COST, AIHUB_CF_OVERAGE
    };

    ctx = ngx_http_aihub_get_ctx(r);
    ctx->flow.state = NGX_HTTP_AIHUB_STATE_NEW;

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
    cJSON_AddNumberToObject(root, "account",
                            (double) ctx->caller.key.rec.account_id);

    ngx_sprintf(buf, "%V%Z", &ctx->caller.key.plan);
    cJSON_AddStringToObject(root, "plan", (char *) buf);

    o = cJSON_AddObjectToObject(root, "period");
    ngx_http_time(when, ctx->quota.start);
    ngx_sprintf(buf, "%*s%Z", (size_t) 29, when);
    cJSON_AddStringToObject(o, "start", (char *) buf);
    ngx_http_time(when, ctx->quota.end);
    ngx_sprintf(buf, "%*s%Z", (size_t) 29, when);
    cJSON_AddStringToObject(o, "end", (char *) buf);
    cJSON_AddNumberToObject(o, "start_unix", (double) ctx->quota.start);
    cJSON_AddNumberToObject(o, "end_unix", (double) ctx->quota.end);

    o = cJSON_AddObjectToObject(root, "calls");
    cJSON_AddNumberToObject(o, "used", (double) v[0]);
    cJSON_AddNumberToObject(o, "included",
                            (double) ctx->caller.key.rec.included);
    cJSON_AddNumberToObject(o, "remaining",
                            (double) ((uint64_t) v[0]
                                      < ctx->caller.key.rec.included
                                      ? ctx->caller.key.rec.included - v[0]
                                      : 0));
    cJSON_AddBoolToObject(o, "overage_allowed", ctx->caller.key.rec.overage);

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
                            (double) ctx->caller.key.rec.rpm);
    cJSON_AddNumberToObject(o, "tokens_per_minute",
                            (double) ctx->caller.key.rec.tpm);
    cJSON_AddNumberToObject(o, "max_tokens",
                            (double) ctx->caller.key.rec.max_tokens);
    cJSON_AddNumberToObject(o, "spend_cap_micros",
                            (double) ctx->caller.key.rec.spend_cap);

    ngx_sprintf(buf, "%*s%Z", (size_t) 29, when);
    cJSON_AddStringToObject(root, "resets_at", (char *) buf);

    ngx_http_aihub_dev_answer(r, ctx, NGX_HTTP_OK, root);
    return;

failed:

    ngx_http_aihub_dev_failed(r, ctx);
}


/* a Redis reply completed an endpoint: answer, outside the phases */

void
ngx_http_aihub_dev_answer(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_uint_t status, cJSON *json)
{
    ngx_connection_t  *c;

    ctx->flow.state = NGX_HTTP_AIHUB_STATE_DONE;
    ctx->flow.rc = NGX_DONE;

    c = r->connection;
    (void) ngx_http_aihub_dev_send_json(r, status, json);
    ngx_http_run_posted_requests(c);
}


void
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

    ngx_http_aihub_get_ctx(r)->flow.own_answer = 1;

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

ngx_str_t *
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

ngx_int_t
ngx_http_aihub_dev_sent(ngx_http_aihub_ctx_t *ctx, ngx_int_t rc,
    const char *unavailable)
{
    if (rc == NGX_DECLINED) {
        ngx_http_aihub_dev_unavailable(ctx, unavailable);
        return NGX_OK;
    }

    return (rc == NGX_OK) ? NGX_AGAIN : NGX_ERROR;
}


void
ngx_http_aihub_dev_unavailable(ngx_http_aihub_ctx_t *ctx, const char *message)
{
    ngx_http_aihub_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error",
                        "service_unavailable", message);
}
