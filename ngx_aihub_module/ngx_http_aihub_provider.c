/*
 * Providers: what an operator declares with "aihub_provider", where its
 * credential comes from, and what a request sent to it looks like (the
 * proxy URL, the Host, the Authorization header).  nginx's proxy module does
 * the proxying; this file only prepares it.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_provider.h"
#include "ngx_http_aihub_forward.h"


static ngx_int_t ngx_http_aihub_provider_url(ngx_conf_t *cf,
    ngx_http_aihub_provider_t *p, ngx_str_t *arg);
static char *ngx_http_aihub_provider_key_file(ngx_conf_t *cf,
    ngx_http_aihub_provider_t *p);
static ngx_int_t ngx_http_aihub_provider_name(ngx_conf_t *cf,
    ngx_str_t *name);
static ngx_int_t ngx_http_aihub_provider_lane_param(
    ngx_http_aihub_provider_t *p, ngx_str_t *v);
static ngx_int_t ngx_http_aihub_provider_dialect_param(
    ngx_http_aihub_provider_t *p, ngx_str_t *v);
static ngx_int_t ngx_http_aihub_proxy_url(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


/* "url=URL": the base the request's path is appended to, and its host */

static ngx_int_t
ngx_http_aihub_provider_url(ngx_conf_t *cf, ngx_http_aihub_provider_t *p,
    ngx_str_t *arg)
{
    u_char     *s, *e;
    ngx_str_t   v;

    v.data = arg->data + 4;
    v.len = arg->len - 4;

    if (v.len > 8 && ngx_strncmp(v.data, "https://", 8) == 0) {
        s = v.data + 8;

    } else if (v.len > 7 && ngx_strncmp(v.data, "http://", 7) == 0) {
        s = v.data + 7;

    } else {
        goto invalid;
    }

    /* the request's path (and query string) is appended to it */

    if (ngx_strlchr(s, v.data + v.len, '?') != NULL
        || ngx_strlchr(s, v.data + v.len, '#') != NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aihub provider \"%V\": \"%V\" has a query "
                           "string or fragment: the request's path is "
                           "appended to the url", &p->name, arg);
        return NGX_ERROR;
    }

    /* no trailing slash: the request path is appended */

    while (v.len && v.data[v.len - 1] == '/') {
        v.len--;
    }

    p->url = v;

    if (p->host.len == 0) {
        for (e = s; e < v.data + v.len && *e != '/'; e++) {
            /* void */
        }

        p->host.data = s;
        p->host.len = e - s;

        if (p->host.len == 0) {
            goto invalid;
        }
    }

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" of aihub provider \"%V\"",
                       arg, &p->name);
    return NGX_ERROR;
}


/*
 * A provider whose url's host is neither an upstream block nor an IP
 * address is resolved on each call, by the resolver of the location that
 * proxies it ("proxy_pass $aihub_proxy_url" takes a variable).  A location
 * with "aihub on" and no "resolver" would fail each call given to such a
 * provider with 502 ("no resolver defined to resolve ..."): said once a
 * provider when nginx reads its configuration, a warning (the provider may
 * serve no model of the catalog yet).  The URL is read as
 * ngx_http_proxy_eval() reads it and matched against the upstream blocks
 * as ngx_http_upstream_init_request() matches it.
 */

void
ngx_http_aihub_provider_resolver_check(ngx_conf_t *cf,
    ngx_http_core_loc_conf_t *clcf)
{
    size_t                           skip;
    in_port_t                        port;
    ngx_url_t                        u;
    ngx_uint_t                       i, k, named;
    ngx_http_aihub_provider_t       *p;
    ngx_http_aihub_main_conf_t      *amcf;
    ngx_http_upstream_srv_conf_t   **uscfp, *uscf;
    ngx_http_upstream_main_conf_t   *umcf;

    /* a location (not a server's or http's defaults) with no resolver */

    if (clcf->name.len == 0 || clcf->resolver == NULL
        || clcf->resolver->connections.nelts)
    {
        return;
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aihub_module);
    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);

    p = amcf->providers.elts;
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < amcf->providers.nelts; i++) {

        if (p[i].resolver_said) {
            continue;
        }

        skip = (p[i].url.data[4] == 's') ? sizeof("https://") - 1
                                         : sizeof("http://") - 1;

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url.data = p[i].url.data + skip;
        u.url.len = p[i].url.len - skip;
        u.default_port = (skip == sizeof("https://") - 1) ? 443 : 80;
        u.uri_part = 1;
        u.no_resolve = 1;

        /* an address needs no resolver; a URL nginx refuses is refused
           on each call, with its own message */

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.addrs != NULL) {
            continue;
        }

        port = u.no_port ? u.default_port : u.port;
        named = 0;

        for (k = 0; k < umcf->upstreams.nelts; k++) {
            uscf = uscfp[k];

            if (uscf->host.len != u.host.len
                || ngx_strncasecmp(uscf->host.data, u.host.data, u.host.len)
                   != 0)
            {
                continue;
            }

            if ((uscf->port == 0 && u.no_port) || uscf->port == port) {
                break;
            }

            /* an upstream block, which a url with a port does not name */
            named = 1;
        }

        if (k < umcf->upstreams.nelts) {
            continue;
        }

        p[i].resolver_said = 1;

        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "aihub provider \"%V\": its host \"%V\" is neither "
                      "an \"upstream\" block nor an IP address%s, and "
                      "location \"%V\" has \"aihub on\" and no "
                      "\"resolver\": each call given to it would fail with "
                      "502 (\"no resolver defined\"); add an upstream "
                      "block named \"%V\" or a \"resolver\"",
                      &p[i].name, &u.host,
                      named ? " (an upstream block is named by a url "
                              "without a port)" : "",
                      &clcf->name, &u.host);
    }
}


/* the catalog names providers as [a-z0-9_-] (README "Models") */

static ngx_int_t
ngx_http_aihub_provider_name(ngx_conf_t *cf, ngx_str_t *name)
{
    u_char      c;
    ngx_uint_t  i;

    for (i = 0; i < name->len; i++) {
        c = name->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
              || c == '-'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "aihub provider name \"%V\": only a-z, 0-9, "
                               "\"_\" and \"-\", as the catalog names "
                               "providers", name);
            return NGX_ERROR;
        }
    }

    if (name->len == 0 || name->len > NGX_HTTP_AIHUB_NAME_LEN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aihub provider name \"%V\" is empty or longer "
                           "than %d characters", name,
                           NGX_HTTP_AIHUB_NAME_LEN);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * aihub_provider NAME url=URL [kind=openai|gemini] [host=HOST]
 *                [key_env=VAR | key_file=PATH] [stream_options=off]
 *                [max_tokens_as=max_tokens|max_completion_tokens]
 *                [capacity=N [free_share=P%] [queue=N]];
 */

char *
ngx_http_aihub_provider_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_aihub_main_conf_t *amcf = conf;

    ngx_str_t                  *value;
    ngx_uint_t                  i, lane_opts;
    ngx_http_aihub_provider_t  *p;

    value = cf->args->elts;
    lane_opts = 0;

    p = amcf->providers.elts;

    for (i = 0; i < amcf->providers.nelts; i++) {
        if (p[i].name.len == value[1].len
            && ngx_strncmp(p[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate aihub provider \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    /* each provider has its state (lane, breaker) in the shared zone */

    if (amcf->providers.nelts == NGX_HTTP_AIHUB_LANES) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many aihub providers: at most %d",
                           NGX_HTTP_AIHUB_LANES);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aihub_provider_name(cf, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    p = ngx_array_push(&amcf->providers);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(p, sizeof(ngx_http_aihub_provider_t));

    p->name = value[1];
    p->kind = NGX_HTTP_AIHUB_KIND_OPENAI;
    p->free_share = 50;
    p->queue = 32;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "url=", 4) == 0) {
            if (ngx_http_aihub_provider_url(cf, p, &value[i]) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "host=", 5) == 0) {
            p->host.data = value[i].data + 5;
            p->host.len = value[i].len - 5;
            continue;
        }

        if (ngx_http_aihub_provider_dialect_param(p, &value[i]) == NGX_OK) {
            continue;
        }

        if (ngx_strncmp(value[i].data, "key_env=", 8) == 0
            && value[i].len > 8)
        {
            p->key_env.data = value[i].data + 8;
            p->key_env.len = value[i].len - 8;
            continue;
        }

        if (ngx_strncmp(value[i].data, "key_file=", 9) == 0
            && value[i].len > 9)
        {
            p->key_file.data = value[i].data + 9;
            p->key_file.len = value[i].len - 9;
            continue;
        }

        if (ngx_http_aihub_provider_lane_param(p, &value[i]) == NGX_OK) {
            lane_opts |= (ngx_strncmp(value[i].data, "capacity=", 9) != 0);
            continue;
        }

        goto invalid;
    }

    if (lane_opts && p->capacity == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aihub provider \"%V\": \"free_share=\" and "
                           "\"queue=\" shape a lane, which only "
                           "\"capacity=\" gives", &p->name);
        return NGX_CONF_ERROR;
    }

    if (p->url.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aihub provider \"%V\" has no \"url=\"",
                           &p->name);
        return NGX_CONF_ERROR;
    }

    if (p->key_env.len && p->key_file.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aihub provider \"%V\" has both \"key_env=\" "
                           "and \"key_file=\"", &p->name);
        return NGX_CONF_ERROR;
    }

    if (p->key_file.len == 0) {
        return NGX_CONF_OK;
    }

    return ngx_http_aihub_provider_key_file(cf, p);

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" of aihub provider \"%V\"",
                       &value[i], &value[1]);
    return NGX_CONF_ERROR;
}


/*
 * What the provider's API speaks: kind=openai|gemini, stream_options=off
 * (it refuses the member), max_tokens_as=max_tokens|max_completion_tokens
 * (the name under which a plan's cap goes to it).  NGX_DECLINED: not one
 * of these.
 */

static ngx_int_t
ngx_http_aihub_provider_dialect_param(ngx_http_aihub_provider_t *p,
    ngx_str_t *v)
{
    if (ngx_strcmp(v->data, "kind=openai") == 0) {
        p->kind = NGX_HTTP_AIHUB_KIND_OPENAI;
        return NGX_OK;
    }

    if (ngx_strcmp(v->data, "kind=gemini") == 0) {
        p->kind = NGX_HTTP_AIHUB_KIND_GEMINI;
        return NGX_OK;
    }

    if (ngx_strcmp(v->data, "stream_options=off") == 0) {
        p->no_stream_options = 1;
        return NGX_OK;
    }

    if (ngx_strcmp(v->data, "max_tokens_as=max_tokens") == 0) {
        p->cap_completion = 0;
        return NGX_OK;
    }

    if (ngx_strcmp(v->data, "max_tokens_as=max_completion_tokens") == 0) {
        p->cap_completion = 1;
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* "capacity=4", "free_share=50%", "queue=32": the provider's lane */

static ngx_int_t
ngx_http_aihub_provider_lane_param(ngx_http_aihub_provider_t *p,
    ngx_str_t *v)
{
    size_t     len;
    ngx_int_t  n;

    if (v->len > 9 && ngx_strncmp(v->data, "capacity=", 9) == 0) {
        n = ngx_atoi(v->data + 9, v->len - 9);
        if (n <= 0) {
            return NGX_ERROR;
        }

        p->capacity = n;
        return NGX_OK;
    }

    if (v->len > 11 && ngx_strncmp(v->data, "free_share=", 11) == 0) {
        len = v->len - 11;

        if (v->data[v->len - 1] == '%') {
            len--;
        }

        n = ngx_atoi(v->data + 11, len);
        if (n == NGX_ERROR || n > 100) {
            return NGX_ERROR;
        }

        p->free_share = n;
        return NGX_OK;
    }

    if (v->len > 6 && ngx_strncmp(v->data, "queue=", 6) == 0) {
        n = ngx_atoi(v->data + 6, v->len - 6);
        if (n == NGX_ERROR || n > NGX_HTTP_AIHUB_LANE_QUEUE) {
            return NGX_ERROR;
        }

        p->queue = n;
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * "key_file=": read once, at configuration time, by the master (no disk
 * I/O in a worker process).
 */

static char *
ngx_http_aihub_provider_key_file(ngx_conf_t *cf, ngx_http_aihub_provider_t *p)
{
    ssize_t           n;
    ngx_str_t         path;
    ngx_file_t        file;
    ngx_file_info_t   fi;
    u_char            buf[4096];

    path = p->key_file;

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = path;
    file.log = cf->log;

    file.fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open key file \"%V\" of aihub provider "
                           "\"%V\"", &path, &p->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) >= (off_t) sizeof(buf))
    {
        ngx_close_file(file.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" of aihub provider \"%V\" is "
                           "unreadable or too large", &path, &p->name);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, buf, sizeof(buf) - 1, 0);
    ngx_close_file(file.fd);

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'
                     || buf[n - 1] == ' '))
    {
        n--;
    }

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" of aihub provider \"%V\" "
                           "is empty", &path, &p->name);
        return NGX_CONF_ERROR;
    }

    p->authorization.len = sizeof("Bearer ") - 1 + n;
    p->authorization.data = ngx_pnalloc(cf->pool, p->authorization.len);
    if (p->authorization.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(ngx_cpymem(p->authorization.data, "Bearer ", 7), buf, n);

    return NGX_CONF_OK;
}


/* environment credentials: nginx's "env" directive passes them to workers */

ngx_int_t
ngx_http_aihub_provider_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    u_char                     *name, *val;
    size_t                      len;
    ngx_uint_t                  i;
    ngx_http_aihub_provider_t  *p;

    p = amcf->providers.elts;

    for (i = 0; i < amcf->providers.nelts; i++) {

        if (p[i].key_env.len == 0) {
            continue;
        }

        name = ngx_pnalloc(cycle->pool, p[i].key_env.len + 1);
        if (name == NULL) {
            return NGX_ERROR;
        }

        ngx_cpystrn(name, p[i].key_env.data, p[i].key_env.len + 1);

        val = (u_char *) getenv((char *) name);

        if (val == NULL || *val == '\0') {
            ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                          "aihub provider \"%V\": environment variable "
                          "\"%s\" is not set (is it passed with the "
                          "\"env\" directive?)", &p[i].name, name);
            continue;
        }

        len = ngx_strlen(val);

        p[i].authorization.len = sizeof("Bearer ") - 1 + len;
        p[i].authorization.data = ngx_pnalloc(cycle->pool,
                                              p[i].authorization.len);
        if (p[i].authorization.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ngx_cpymem(p[i].authorization.data, "Bearer ", 7),
                   val, len);
    }

    return NGX_OK;
}


/* the model's provider; without one, the first declared; NULL: none */

ngx_http_aihub_provider_t *
ngx_http_aihub_provider_find(ngx_http_request_t *r,
    ngx_http_aihub_model_t *model)
{
    ngx_uint_t                   i;
    ngx_str_t                   *name;
    ngx_http_aihub_provider_t   *p;
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    p = amcf->providers.elts;

    if (model == NULL || model->provider.len == 0) {
        return &p[0];
    }

    name = &model->provider;

    for (i = 0; i < amcf->providers.nelts; i++) {
        if (p[i].name.len == name->len
            && ngx_strncmp(p[i].name.data, name->data, name->len) == 0)
        {
            return &p[i];
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_aihub_provider_select(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ctx->route.provider = ngx_http_aihub_provider_find(r, ctx->route.model);

    if (ctx->route.provider == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aihub: model \"%V\" needs provider \"%V\", which "
                      "no \"aihub_provider\" declares", &ctx->body.model,
                      &ctx->route.model->provider);
        return NGX_DECLINED;
    }

    if (ctx->route.provider->authorization.len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aihub: provider \"%V\" has no credential",
                      &ctx->route.provider->name);
        return NGX_DECLINED;
    }

    if (ngx_http_aihub_proxy_url(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_aihub_forward_prepare(r, ctx);
}


/* "/v1/chat/completions" -> "<url>/chat/completions", args kept */

static ngx_int_t
ngx_http_aihub_proxy_url(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char                     *p;
    ngx_str_t                   tail;
    ngx_http_aihub_provider_t  *pv = ctx->route.provider;

    static ngx_str_t  developer_chat = ngx_string("/api/v1/developer/chat");
    static ngx_str_t  developer = ngx_string("/api/v1/developer");

    tail = r->uri;

    if (ctx->route.translate
        || (tail.len >= developer_chat.len
            && ngx_strncmp(tail.data, developer_chat.data,
                           developer_chat.len)
               == 0))
    {
        /* chat, or the Responses API translated into chat */
        ngx_str_set(&tail, "/chat/completions");

    } else if (tail.len > developer.len
               && ngx_strncmp(tail.data, developer.data, developer.len) == 0)
    {
        /* /api/v1/developer/responses, .../embeddings */
        tail.data += developer.len;
        tail.len -= developer.len;

    } else if (tail.len > 3 && ngx_strncmp(tail.data, "/v1/", 4) == 0) {
        tail.data += 3;
        tail.len -= 3;
    }

    ctx->route.proxy_url.len = pv->url.len + tail.len
                         + (r->args.len ? 1 + r->args.len : 0);

    ctx->route.proxy_url.data = ngx_pnalloc(r->pool, ctx->route.proxy_url.len);
    if (ctx->route.proxy_url.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(ctx->route.proxy_url.data, pv->url.data, pv->url.len);
    p = ngx_cpymem(p, tail.data, tail.len);

    if (r->args.len) {
        *p++ = '?';
        ngx_memcpy(p, r->args.data, r->args.len);
    }

    return NGX_OK;
}
