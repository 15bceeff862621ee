/*
 * Variables: the proxy target for proxy_pass, and what access logs want to
 * know about a call (account, key prefix, plan, model, provider, tokens,
 * cost, the estimated flag, the request id).
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_variables.h"


static ngx_int_t ngx_http_aihub_variable_str(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_aihub_variable_provider(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_aihub_variable_num(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_aihub_variable_request_id(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_aihub_variable_set(ngx_http_variable_value_t *v,
    u_char *data, size_t len);


#define NGX_HTTP_AIHUB_VAR_PROVIDER_NAME   0
#define NGX_HTTP_AIHUB_VAR_PROVIDER_HOST   1

#define NGX_HTTP_AIHUB_VAR_PROMPT          0
#define NGX_HTTP_AIHUB_VAR_COMPLETION      1
#define NGX_HTTP_AIHUB_VAR_TOTAL           2
#define NGX_HTTP_AIHUB_VAR_COST            3
#define NGX_HTTP_AIHUB_VAR_ESTIMATED       4


static ngx_http_variable_t  ngx_http_aihub_vars[] = {

    { ngx_string("aihub_proxy_url"), NULL, ngx_http_aihub_variable_str,
      offsetof(ngx_http_aihub_ctx_t, route.proxy_url),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_account"), NULL, ngx_http_aihub_variable_str,
      offsetof(ngx_http_aihub_ctx_t, caller.key.account),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_key_prefix"), NULL, ngx_http_aihub_variable_str,
      offsetof(ngx_http_aihub_ctx_t, caller.key.prefix),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_plan"), NULL, ngx_http_aihub_variable_str,
      offsetof(ngx_http_aihub_ctx_t, caller.key.plan),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_model"), NULL, ngx_http_aihub_variable_str,
      offsetof(ngx_http_aihub_ctx_t, body.model), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_provider"), NULL, ngx_http_aihub_variable_provider,
      NGX_HTTP_AIHUB_VAR_PROVIDER_NAME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_provider_host"), NULL,
      ngx_http_aihub_variable_provider,
      NGX_HTTP_AIHUB_VAR_PROVIDER_HOST, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_prompt_tokens"), NULL, ngx_http_aihub_variable_num,
      NGX_HTTP_AIHUB_VAR_PROMPT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_completion_tokens"), NULL,
      ngx_http_aihub_variable_num,
      NGX_HTTP_AIHUB_VAR_COMPLETION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_total_tokens"), NULL, ngx_http_aihub_variable_num,
      NGX_HTTP_AIHUB_VAR_TOTAL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_cost_micros"), NULL, ngx_http_aihub_variable_num,
      NGX_HTTP_AIHUB_VAR_COST, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_estimated"), NULL, ngx_http_aihub_variable_num,
      NGX_HTTP_AIHUB_VAR_ESTIMATED, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aihub_request_id"), NULL,
      ngx_http_aihub_variable_request_id, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_aihub_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_aihub_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aihub_variable_str(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t             *s;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((char *) ctx + data);

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_aihub_variable_set(v, s->data, s->len);
}


static ngx_int_t
ngx_http_aihub_variable_provider(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t             *s;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx == NULL || ctx->route.provider == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (data == NGX_HTTP_AIHUB_VAR_PROVIDER_NAME) ? &ctx->route.provider->name
                                                   : &ctx->route.provider->host;

    return ngx_http_aihub_variable_set(v, s->data, s->len);
}


static ngx_int_t
ngx_http_aihub_variable_num(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                *p;
    int64_t                n;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx == NULL || !ctx->flow.forwarded) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_HTTP_AIHUB_VAR_PROMPT:
        n = ctx->usage.tokens.prompt;
        break;

    case NGX_HTTP_AIHUB_VAR_COMPLETION:
        n = ctx->usage.tokens.completion;
        break;

    case NGX_HTTP_AIHUB_VAR_TOTAL:
        n = ctx->usage.tokens.total;
        break;

    case NGX_HTTP_AIHUB_VAR_COST:
        n = ctx->usage.cost_micros;
        break;

    default: /* NGX_HTTP_AIHUB_VAR_ESTIMATED */
        n = ctx->usage.tokens.estimated;
        break;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_aihub_variable_set(v, p, ngx_sprintf(p, "%L", n) - p);
}


static ngx_int_t
ngx_http_aihub_variable_request_id(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_aihub_variable_set(v, ctx->event_id, AIHUB_EVENT_ID_LEN);
}


static ngx_int_t
ngx_http_aihub_variable_set(ngx_http_variable_value_t *v, u_char *data,
    size_t len)
{
    v->len = len;
    v->data = data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
