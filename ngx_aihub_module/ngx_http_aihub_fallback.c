/*
 * Fallback routes.  A model's catalog entry may name fallbacks (a comma
 * list of public ids: the same model at another provider, or another
 * model of the tier).  A call whose route fails before its first byte
 * reached the client (no connection, a timeout, a 5xx or a 429) is sent
 * on the next one, with nginx's own machinery: the location intercepts
 * those answers and sends the request to a named location with
 * "error_page ... = @name", whose access phase comes back here (the
 * context survives the redirect, see ngx_http_aihub_get_ctx()).  A new
 * upstream request is made there by the proxy module, with the body
 * rewritten for the new route's model.
 *
 * Bounded by "aihub_fallback attempts=N time=T": N routes in all, none
 * started after T from the call's start.  A route that failed
 * "breaker=N" times in a row is left out for "breaker_time=" (shared by
 * all worker processes); a route its provider saturated with a 429 is
 * passed over by paid calls while another is up.  The call is billed once,
 * at the model and price of the route that answered; the answer carries
 * "x-aihub-route".
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_models.h"
#include "ngx_http_aihub_lane.h"
#include "ngx_http_aihub_route.h"
#include "ngx_http_aihub_grant.h"
#include "ngx_http_aihub_fallback.h"

#include "aihub_usage_event.h"


static ngx_http_aihub_model_t *ngx_http_aihub_fallback_find(
    ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx, ngx_uint_t avoid_busy);
static ngx_int_t ngx_http_aihub_fallback_use(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_http_aihub_model_t *m);
static ngx_int_t ngx_http_aihub_fallback_retry_after(ngx_http_upstream_t *u);
static void ngx_http_aihub_fallback_give_up(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t provider_status,
    ngx_uint_t gateway_status, ngx_int_t retry_after);


/* aihub_fallback [attempts=N] [time=T] [breaker=N] [breaker_time=T]; */

char *
ngx_http_aihub_fallback_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_aihub_main_conf_t *amcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value, v;
    ngx_uint_t   i;
    ngx_msec_t   ms;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "attempts=", 9) == 0) {
            n = ngx_atoi(value[i].data + 9, value[i].len - 9);
            if (n <= 0) {
                goto invalid;
            }

            amcf->fb_attempts = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "breaker=", 8) == 0) {
            n = ngx_atoi(value[i].data + 8, value[i].len - 8);
            if (n == NGX_ERROR) {
                goto invalid;
            }

            amcf->breaker_fails = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "time=", 5) == 0) {
            v.data = value[i].data + 5;
            v.len = value[i].len - 5;

            ms = ngx_parse_time(&v, 0);
            if (ms == (ngx_msec_t) NGX_ERROR) {
                goto invalid;
            }

            amcf->fb_time = ms;
            continue;
        }

        if (ngx_strncmp(value[i].data, "breaker_time=", 13) == 0) {
            v.data = value[i].data + 13;
            v.len = value[i].len - 13;

            ms = ngx_parse_time(&v, 0);
            if (ms == (ngx_msec_t) NGX_ERROR) {
                goto invalid;
            }

            amcf->breaker_time = ms;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" of aihub_fallback",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * Before the first attempt: a paid call whose provider is saturated, or
 * any call whose provider's breaker is open, takes the first fallback
 * that is up, if there is one.
 */

ngx_int_t
ngx_http_aihub_fallback_first(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t                state;
    ngx_http_aihub_model_t  *m;

    if (ctx->route.asked == NULL) {
        ctx->route.asked = ctx->route.model;
        ctx->route.attempts = 1;
    }

    if (ctx->route.model == NULL || ctx->route.model->fallbacks.len == 0) {
        return NGX_OK;
    }

    state = ngx_http_aihub_route_state(r, &ctx->route.model->provider);

    if (state == NGX_OK
        || (state == NGX_BUSY && ctx->caller.key.rec.priority == 0))
    {
        return NGX_OK;
    }

    m = ngx_http_aihub_fallback_find(r, ctx, 1);

    if (m == NULL) {
        /* nothing better: the route asked for, as it is */
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aihub: provider \"%V\" is %s, model \"%V\" takes "
                  "fallback \"%V\"", &ctx->route.model->provider,
                  state == NGX_BUSY ? "saturated" : "out (breaker open)",
                  &ctx->route.asked->id, &m->id);

    return ngx_http_aihub_fallback_use(r, ctx, m);
}


/*
 * Back in the access phase after a route failed (the error_page sent the
 * request here): the next route, or the call's last answer.  NGX_OK: a
 * route is ready for the proxy step; NGX_DECLINED: the call is refused
 * (ctx->flow has the answer).
 */

ngx_int_t
ngx_http_aihub_fallback_next(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t                    retry_after;
    ngx_uint_t                   provider_status, gateway_status;
    ngx_http_upstream_t         *u;
    ngx_http_aihub_model_t      *m;
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    u = r->upstream;
    ctx->route.failed = u;

    provider_status = u->headers_in.status_n;
    gateway_status = u->state ? u->state->status : 0;

    if (provider_status == 0 && gateway_status == 0) {
        gateway_status = NGX_HTTP_BAD_GATEWAY;
    }

    retry_after = ngx_http_aihub_fallback_retry_after(u);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aihub: route %ui of model \"%V\" (provider \"%V\") "
                  "failed: provider status %ui, gateway status %ui",
                  ctx->route.attempts, &ctx->route.model->id,
                  &ctx->route.provider->name, provider_status,
                  gateway_status);

    if (provider_status == NGX_HTTP_TOO_MANY_REQUESTS) {
        ngx_http_aihub_route_saturate(r, &ctx->route.provider->name,
                                     retry_after);

    } else {
        ngx_http_aihub_route_result(r, &ctx->route.provider->name, 0);
    }

    /* the failed route's place in its lane is given back now */
    ngx_http_aihub_lane_release(r, ctx);

    m = NULL;

    if (ctx->route.attempts < amcf->fb_attempts
        && ngx_http_aihub_now_ms() - ctx->start_ms < amcf->fb_time)
    {
        m = ngx_http_aihub_fallback_find(r, ctx, 0);
    }

    if (m == NULL) {
        ngx_http_aihub_fallback_give_up(r, ctx, provider_status,
                                        gateway_status, retry_after);
        return NGX_DECLINED;
    }

    ctx->route.attempts++;

    ngx_memzero(&ctx->reply, sizeof(ngx_http_aihub_reply_t));
    ctx->forward.retry_after = 0;

    return ngx_http_aihub_fallback_use(r, ctx, m);
}


/*
 * The next fallback of the model asked for that exists, that the key's
 * plan allows, whose breaker is closed (and, if asked, that is not
 * saturated).
 */

static ngx_http_aihub_model_t *
ngx_http_aihub_fallback_find(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t avoid_busy)
{
    u_char                  *p, *end, *comma;
    ngx_int_t                state;
    ngx_str_t                id;
    ngx_uint_t               n;
    ngx_http_aihub_model_t  *m;

    p = ctx->route.asked->fallbacks.data;
    end = p + ctx->route.asked->fallbacks.len;

    for (n = 0; p < end; n++, p = comma + 1) {

        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        id.data = p;
        id.len = comma - p;

        while (id.len && id.data[0] == ' ') {
            id.data++;
            id.len--;
        }

        while (id.len && id.data[id.len - 1] == ' ') {
            id.len--;
        }

        if (n < ctx->route.next || id.len == 0) {
            continue;
        }

        ctx->route.next = n + 1;

        m = ngx_http_aihub_model_find(&id);

        if (m == NULL || !ngx_http_aihub_model_allowed(&ctx->caller.key, m)) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "aihub: fallback \"%V\" of model \"%V\" is not "
                          "in the catalog or not on the plan", &id,
                          &ctx->route.asked->id);
            continue;
        }

        /*
         * a call beyond the included ones holds its worst case against the
         * spend cap at the first route's prices: a dearer route could
         * pass the cap by what it holds too little
         */

        if (ctx->quota.overage_call
            && ngx_http_aihub_grant_worst_cost_at(ctx, m)
               > ctx->quota.held_cost)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aihub: fallback \"%V\" of model \"%V\" left "
                          "out: its worst case is above what the call holds "
                          "against the spend cap", &id,
                          &ctx->route.asked->id);
            continue;
        }

        state = ngx_http_aihub_route_state(r, &m->provider);

        if (state == NGX_DECLINED || (state == NGX_BUSY && avoid_busy)) {
            continue;
        }

        return m;
    }

    return NULL;
}


/* the call goes on route "m": a copy of it, and the body's model for it */

static ngx_int_t
ngx_http_aihub_fallback_use(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_http_aihub_model_t *m)
{
    ngx_http_aihub_model_t  *copy;

    copy = ngx_palloc(r->pool, sizeof(ngx_http_aihub_model_t));
    if (copy == NULL) {
        return NGX_ERROR;
    }

    *copy = *m;

    if (ngx_http_aihub_copy_model_strings(r->pool, copy) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->route.model = copy;

    /*
     * the body still names the model of the last route: an empty name
     * makes the body rewrite put the new one in; the usage event names
     * the model that answered
     */

    ctx->body.model.len = 0;

    return NGX_OK;
}


/* the served route's public id goes back into the body's model name */

void
ngx_http_aihub_fallback_routed(ngx_http_aihub_ctx_t *ctx)
{
    if (ctx->body.model.len == 0 && ctx->route.model != NULL) {
        ctx->body.model = ctx->route.model->id;
    }
}


static ngx_int_t
ngx_http_aihub_fallback_retry_after(ngx_http_upstream_t *u)
{
    ngx_table_elt_t  *h;

    h = ngx_http_aihub_header_find(&u->headers_in.headers,
                                   (u_char *) "retry-after",
                                   sizeof("retry-after") - 1);

    return h ? ngx_http_aihub_retry_after_value(&h->value) : 0;
}


/* no route left: the answer of the last failure, in our words */

static void
ngx_http_aihub_fallback_give_up(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t provider_status,
    ngx_uint_t gateway_status, ngx_int_t retry_after)
{
    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "aihub: model \"%V\": no route left after %ui attempts",
                  &ctx->route.asked->id, ctx->route.attempts);

    if (provider_status == NGX_HTTP_TOO_MANY_REQUESTS
        && ngx_http_aihub_retry_after(r, retry_after > 0 ? retry_after : 1)
           == NGX_OK)
    {
        ngx_http_aihub_deny(ctx, NGX_HTTP_TOO_MANY_REQUESTS, "requests",
                            "rate_limit_exceeded",
                            "The model provider is rate limiting requests. "
                            "Please retry shortly.");
        return;
    }

    if (provider_status == 0 && gateway_status == NGX_HTTP_GATEWAY_TIME_OUT) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_GATEWAY_TIME_OUT, "server_error",
                            "upstream_timeout", "The model provider did not "
                            "answer in time.");
        return;
    }

    ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_GATEWAY, "server_error",
                        "upstream_error", provider_status
                        ? "The model provider failed to answer the request."
                        : "The model provider could not be reached.");
}


/*
 * A provider's answer as the header filter sees it: its route is up (a
 * 2xx), down (a 5xx, for the breaker) or saturated (a 429); and the
 * client is told which route answered.
 */

ngx_int_t
ngx_http_aihub_fallback_answer(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    u_char      *p, *q;
    size_t       len;
    ngx_uint_t   status, used;

    status = ctx->reply.status;

    if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        ngx_http_aihub_route_saturate(r, &ctx->route.provider->name,
                                     ctx->forward.retry_after);

    } else if (status >= 200 && status < 300) {
        /*
         * a stream is a success; a JSON answer's result is told by its
         * first bytes (filter.c): a 200 whose body is an error is a
         * failure, as is an answer no client can use (HTML, a 204).
         * Before, each was counted a success, and a provider failing
         * every call so never tripped the breaker.
         */
        used = (status == NGX_HTTP_OK || status == NGX_HTTP_CREATED);

        if (!used || !ngx_http_aihub_answer_is_json(r)) {
            ngx_http_aihub_route_result(r, &ctx->route.provider->name,
                                        used
                                        && ngx_http_aihub_answer_is_sse(r));
        }

    } else if (status >= 500) {
        ngx_http_aihub_route_result(r, &ctx->route.provider->name, 0);
    }

    len = ctx->route.provider->name.len + ctx->route.model->id.len
          + sizeof("; model=; attempt=") - 1 + NGX_INT_T_LEN;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    q = ngx_cpymem(p, ctx->route.provider->name.data,
                   ctx->route.provider->name.len);
    q = ngx_cpymem(q, "; model=", sizeof("; model=") - 1);
    q = ngx_cpymem(q, ctx->route.model->id.data, ctx->route.model->id.len);
    q = ngx_cpymem(q, "; attempt=", sizeof("; attempt=") - 1);
    q = aihub_event_int(q, (int64_t) (ctx->route.attempts
                                      ? ctx->route.attempts : 1));
    len = q - p;

    return ngx_http_aihub_add_header(r, "x-aihub-route", p, len);
}
