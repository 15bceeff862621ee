/*
 * The model catalog, one copy per worker process, read from Redis in one
 * round trip when the connection is made, on an invalidation and every
 * minute.  A request checks its model against it with no I/O, and keeps a
 * copy of the entry it uses, so a reload never pulls strings away from a
 * running call.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_resp.h"
#include "ngx_http_aihub_models.h"


#define NGX_HTTP_AIHUB_MODELS_REFRESH  60000


static void ngx_http_aihub_models_loaded_cb(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_aihub_models_timer(ngx_event_t *ev);


/* every enabled model with its record, in one round trip */

static const char  ngx_http_aihub_models_script[] =
    "local ids = redis.call('SMEMBERS', KEYS[1]) "
    "if #ids == 0 and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end "
    "local out = {} "
    "for _, id in ipairs(ids) do "
    "  out[#out + 1] = id "
    "  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. id) "
    "end "
    "return out";


typedef struct {
    ngx_pool_t                   *pool;
    ngx_array_t                  *models;       /* ngx_http_aihub_model_t */
    ngx_uint_t                    loaded;
    ngx_uint_t                    loading;
    ngx_uint_t                    again;    /* asked for while loading */
    ngx_str_t                     set_key;
    ngx_str_t                     record_prefix;
    ngx_str_t                     epoch_key;
    ngx_event_t                   refresh;
    ngx_log_t                    *log;
} ngx_http_aihub_catalog_t;


static void ngx_http_aihub_models_apply(ngx_http_aihub_catalog_t *cat,
    void *reply);


static ngx_http_aihub_catalog_t  ngx_http_aihub_catalog;

/* what a timer's data names in nginx's debug log */
static ngx_connection_t          ngx_http_aihub_models_ident;


ngx_int_t
ngx_http_aihub_models_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    u_char                    *p;
    ngx_http_aihub_catalog_t  *cat = &ngx_http_aihub_catalog;

    cat->log = cycle->log;

    cat->set_key.len = amcf->redis_prefix.len + sizeof(AIHUB_RK_MODELS) - 1;
    cat->record_prefix.len = amcf->redis_prefix.len
                             + sizeof(AIHUB_RK_MODEL) - 1;

    p = ngx_pnalloc(cycle->pool, cat->set_key.len + cat->record_prefix.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    cat->set_key.data = p;
    p = ngx_cpymem(p, amcf->redis_prefix.data, amcf->redis_prefix.len);
    p = ngx_cpymem(p, AIHUB_RK_MODELS, sizeof(AIHUB_RK_MODELS) - 1);

    cat->record_prefix.data = p;
    p = ngx_cpymem(p, amcf->redis_prefix.data, amcf->redis_prefix.len);
    ngx_memcpy(p, AIHUB_RK_MODEL, sizeof(AIHUB_RK_MODEL) - 1);

    cat->epoch_key = amcf->epoch_key;

    cat->refresh.handler = ngx_http_aihub_models_timer;
    cat->refresh.log = cycle->log;
    ngx_http_aihub_models_ident.fd = (ngx_socket_t) -1;
    cat->refresh.data = &ngx_http_aihub_models_ident;
    cat->refresh.cancelable = 1;

    ngx_add_timer(&cat->refresh, NGX_HTTP_AIHUB_MODELS_REFRESH);

    return NGX_OK;
}


/* on connect and on invalidations; ac is the command connection or NULL */

void
ngx_http_aihub_models_load(redisAsyncContext *ac)
{
    const char                *argv[6];
    size_t                     argvlen[6];
    ngx_http_aihub_catalog_t  *cat = &ngx_http_aihub_catalog;

    if (cat->loading) {
        /* the load in flight may have read what just changed */
        cat->again = 1;
        return;
    }

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_aihub_models_script;
    argvlen[1] = sizeof(ngx_http_aihub_models_script) - 1;
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (const char *) cat->set_key.data;
    argvlen[3] = cat->set_key.len;
    argv[4] = (const char *) cat->epoch_key.data;
    argvlen[4] = cat->epoch_key.len;
    argv[5] = (const char *) cat->record_prefix.data;
    argvlen[5] = cat->record_prefix.len;

    if (ngx_http_aihub_redis_send(ngx_http_aihub_models_loaded_cb, cat,
                                  6, argv, argvlen)
        == NGX_OK)
    {
        cat->loading = 1;
    }
}


static void
ngx_http_aihub_models_timer(ngx_event_t *ev)
{
    ngx_http_aihub_models_load(NULL);

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_HTTP_AIHUB_MODELS_REFRESH);
    }
}


static ngx_int_t
ngx_http_aihub_models_str(ngx_pool_t *pool, ngx_str_t *dst,
    const aihub_rstr_t *s)
{
    dst->len = s->len;
    dst->data = ngx_pnalloc(pool, s->len + 1);

    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    if (s->len) {
        ngx_memcpy(dst->data, s->data, s->len);
    }

    dst->data[s->len] = '\0';

    return NGX_OK;
}


static void
ngx_http_aihub_models_loaded_cb(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_aihub_catalog_t  *cat = privdata;

    cat->loading = 0;

    ngx_http_aihub_models_apply(cat, reply);

    if (cat->again) {
        cat->again = 0;
        ngx_http_aihub_models_load(NULL);
    }
}


static void
ngx_http_aihub_models_apply(ngx_http_aihub_catalog_t *cat, void *reply)
{
    size_t                     i;
    ngx_pool_t                *pool;
    ngx_array_t               *models;
    redisReply                *rep = reply, *rec;
    aihub_rstr_t              *elts, id;
    aihub_model_record_t       mr;
    ngx_http_aihub_model_t    *m;

    if (rep == NULL) {
        return;
    }

    if (rep->type == REDIS_REPLY_INTEGER) {
        /* Redis lost its data: the catalog held stays until it is back */
        ngx_log_error(NGX_LOG_WARN, cat->log, 0,
                      "aihub: redis lost its data (no epoch marker), the "
                      "model catalog held is kept");
        return;
    }

    if (rep->type == REDIS_REPLY_ERROR
        && ngx_strncmp(rep->str, "NOAUTH", 6) == 0)
    {
        /* sent behind AUTH, which Redis refused: said by the connection */
        ngx_http_aihub_redis_no_credentials(rep->str);
        return;
    }

    if (rep->type != REDIS_REPLY_ARRAY) {
        ngx_log_error(NGX_LOG_ERR, cat->log, 0,
                      "aihub: loading the model catalog failed: %s",
                      rep->type == REDIS_REPLY_ERROR ? rep->str
                                                     : "unexpected reply");
        return;
    }

    pool = ngx_create_pool(4096, cat->log);
    if (pool == NULL) {
        return;
    }

    models = ngx_array_create(pool, rep->elements / 2 + 1,
                              sizeof(ngx_http_aihub_model_t));
    if (models == NULL) {
        goto failed;
    }

    for (i = 0; i + 1 < rep->elements; i += 2) {
        rec = rep->element[i + 1];

        if (rep->element[i]->type != REDIS_REPLY_STRING
            || rec->type != REDIS_REPLY_ARRAY || rec->elements == 0)
        {
            continue;
        }

        /* the fields are parsed in the engine (aihub_record.c) */

        elts = ngx_http_aihub_reply_strings(pool, rec);
        if (elts == NULL) {
            goto failed;
        }

        if (aihub_model_record_parse(&mr, elts, rec->elements) != 0) {
            ngx_log_error(NGX_LOG_ERR, cat->log, 0,
                          "aihub: invalid catalog entry \"%*s\" in redis",
                          rep->element[i]->len, rep->element[i]->str);
            continue;
        }

        m = ngx_array_push(models);
        if (m == NULL) {
            goto failed;
        }

        ngx_memzero(m, sizeof(ngx_http_aihub_model_t));

        id.data = (const unsigned char *) rep->element[i]->str;
        id.len = rep->element[i]->len;

        if (ngx_http_aihub_models_str(pool, &m->id, &id) != NGX_OK) {
            goto failed;
        }

        if (ngx_http_aihub_models_str(pool, &m->provider, &mr.provider)
               != NGX_OK
            || ngx_http_aihub_models_str(pool, &m->upstream, &mr.upstream)
               != NGX_OK
            || ngx_http_aihub_models_str(pool, &m->tier, &mr.tier) != NGX_OK
            || ngx_http_aihub_models_str(pool, &m->fallbacks, &mr.fallbacks)
               != NGX_OK)
        {
            goto failed;
        }

        m->price_in = mr.price_in;
        m->price_out = mr.price_out;
        m->created = mr.created;

        m->kind = (mr.kind.len == sizeof("embedding") - 1
                   && ngx_strncmp(mr.kind.data, "embedding", mr.kind.len) == 0)
                  ? NGX_HTTP_AIHUB_MODEL_EMBED
                  : NGX_HTTP_AIHUB_MODEL_CHAT;

        m->api = (mr.api.len == sizeof("responses") - 1
                  && ngx_strncmp(mr.api.data, "responses", mr.api.len) == 0)
                 ? NGX_HTTP_AIHUB_API_RESPONSES
                 : NGX_HTTP_AIHUB_API_CHAT;

        if (m->upstream.len == 0) {
            m->upstream = m->id;
        }
    }

    /* the old catalog lives in the old pool: compare before freeing it */

    if (!cat->loaded || cat->models->nelts != models->nelts) {
        ngx_log_error(NGX_LOG_INFO, cat->log, 0,
                      "aihub: model catalog loaded, %ui models",
                      models->nelts);
    }

    if (cat->pool) {
        ngx_destroy_pool(cat->pool);
    }

    cat->pool = pool;
    cat->models = models;
    cat->loaded = 1;

    return;

failed:

    ngx_destroy_pool(pool);
}


ngx_uint_t
ngx_http_aihub_models_loaded(void)
{
    return ngx_http_aihub_catalog.loaded;
}


ngx_array_t *
ngx_http_aihub_models_all(void)
{
    return ngx_http_aihub_catalog.models;
}


ngx_http_aihub_model_t *
ngx_http_aihub_model_find(ngx_str_t *id)
{
    ngx_uint_t                 i;
    ngx_http_aihub_model_t    *m;
    ngx_http_aihub_catalog_t  *cat = &ngx_http_aihub_catalog;

    if (!cat->loaded || id->len == 0) {
        return NULL;
    }

    m = cat->models->elts;

    for (i = 0; i < cat->models->nelts; i++) {
        if (m[i].id.len == id->len
            && ngx_strncmp(m[i].id.data, id->data, id->len) == 0)
        {
            return &m[i];
        }
    }

    return NULL;
}


/*
 * The key record's "models": "*" for all, or a comma list of model ids
 * and "tier:<tier>" entries.
 */

ngx_uint_t
ngx_http_aihub_model_allowed(ngx_http_aihub_key_t *key,
    ngx_http_aihub_model_t *m)
{
    u_char     *p, *last, *e;
    ngx_str_t   item;

    p = key->models.data;
    last = p + key->models.len;

    while (p < last) {
        e = ngx_strlchr(p, last, ',');
        if (e == NULL) {
            e = last;
        }

        item.data = p;
        item.len = e - p;

        while (item.len && item.data[0] == ' ') {
            item.data++;
            item.len--;
        }

        while (item.len && item.data[item.len - 1] == ' ') {
            item.len--;
        }

        if (item.len == 1 && item.data[0] == '*') {
            return 1;
        }

        if (item.len > 5 && ngx_strncmp(item.data, "tier:", 5) == 0) {
            if (item.len - 5 == m->tier.len
                && ngx_strncmp(item.data + 5, m->tier.data, m->tier.len) == 0)
            {
                return 1;
            }

        } else if (item.len == m->id.len
                   && ngx_strncmp(item.data, m->id.data, m->id.len) == 0)
        {
            return 1;
        }

        p = e + 1;
    }

    return 0;
}


/*
 * A model this node can serve: its provider is declared here and has a
 * credential (a provider's key_env may be unset on this node).  The lists
 * and the lookup show only these, so a client never picks a model that
 * would answer 502.
 */

ngx_uint_t
ngx_http_aihub_model_servable(ngx_http_aihub_main_conf_t *amcf,
    ngx_http_aihub_model_t *m)
{
    ngx_uint_t                  i;
    ngx_http_aihub_provider_t  *p;

    p = amcf->providers.elts;

    for (i = 0; i < amcf->providers.nelts; i++) {

        if (m->provider.len == 0) {
            /* no provider named: the first declared serves it */
            return p[i].authorization.len != 0;
        }

        if (p[i].name.len == m->provider.len
            && ngx_strncmp(p[i].name.data, m->provider.data, m->provider.len)
               == 0)
        {
            return p[i].authorization.len != 0;
        }
    }

    return 0;
}


ngx_int_t
ngx_http_aihub_copy_model_strings(ngx_pool_t *pool, ngx_http_aihub_model_t *m)
{
    ngx_str_t  *s[4];
    ngx_uint_t  i;
    u_char     *p;

    s[0] = &m->id;
    s[1] = &m->provider;
    s[2] = &m->upstream;
    s[3] = &m->tier;

    for (i = 0; i < 4; i++) {
        p = ngx_pnalloc(pool, s[i]->len + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, s[i]->data, s[i]->len);
        p[s[i]->len] = '\0';
        s[i]->data = p;
    }

    return NGX_OK;
}
