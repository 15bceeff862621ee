/*
 * The priority lane: a provider declared with "capacity=N" takes at most N
 * calls in flight, counted in the shared zone across worker processes (a
 * provider without it has no lane: its calls are neither counted nor held
 * back, and its 429 is passed on as it is).
 * Calls of a free plan (priority 0 in the key record) may use only the
 * provider's "free_share=" of it; paid calls may use all of it.  When the
 * provider is full, a paid call waits in a short queue (at most "queue=",
 * at most "aihub_lane_wait"), served by plan priority, then by arrival; a
 * free call is refused at once with 429 and Retry-After, and so is every
 * call that would pass a waiting paid one.  A provider that answers 429
 * is saturated for its Retry-After ("aihub_lane_backoff" without one):
 * free calls are refused, paid calls wait.
 *
 * A waiting call polls the zone on a timer (no I/O, never blocking); it
 * leaves the queue when it gets its place, when it has waited too long,
 * or when the client goes away (the request's cleanup).  Its place in
 * flight is given back exactly once: when the answer's last buffer
 * passes the body filter, or else by the same cleanup, whatever ended the
 * request.  The step runs before the quota, so a call that never got
 * a place reserved nothing and is never billed.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_zone.h"
#include "ngx_http_aihub_provider.h"
#include "ngx_http_aihub_lane.h"


#define NGX_HTTP_AIHUB_LANE_POLL      20    /* ms between looks at the zone */
#define NGX_HTTP_AIHUB_LANE_REAP      2000  /* ms after the longest wait: a
                                               waiter that is still there
                                               died with its process */


static ngx_int_t ngx_http_aihub_lane_admit(ngx_http_aihub_ctx_t *ctx,
    ngx_http_aihub_provider_t *p, ngx_msec_t now, ngx_msec_t max_age);
static ngx_int_t ngx_http_aihub_lane_enqueue(ngx_http_aihub_ctx_t *ctx,
    ngx_msec_t now);
static void ngx_http_aihub_lane_dequeue(ngx_http_aihub_ctx_t *ctx);
static void ngx_http_aihub_lane_poll(ngx_event_t *ev);
static ngx_int_t ngx_http_aihub_lane_refuse(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_msec_t until, ngx_msec_t now);
static ngx_int_t ngx_http_aihub_lane_cleanup_add(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
static void ngx_http_aihub_lane_cleanup(void *data);
static ngx_uint_t ngx_http_aihub_lane_declared(
    ngx_http_aihub_lane_sh_t *lane);
static ngx_http_aihub_lane_plan_sh_t *ngx_http_aihub_lane_plan_get(
    ngx_http_aihub_lane_plan_sh_t *plans, ngx_str_t *name);


ngx_int_t
ngx_http_aihub_lane_step(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_msec_t                      now, until;
    ngx_shmtx_t                    *mutex;
    ngx_http_aihub_provider_t      *p;
    ngx_http_aihub_lane_sh_t       *lanes;
    ngx_http_aihub_main_conf_t     *amcf;
    ngx_http_aihub_lane_plan_sh_t  *plans;

    ctx->flow.step = NGX_HTTP_AIHUB_STEP_QUOTA;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    p = ngx_http_aihub_provider_find(r, ctx->route.model);

    mutex = ngx_http_aihub_zone_lanes(amcf->shm_zone, &lanes, &plans);

    if (p == NULL || p->capacity == 0 || mutex == NULL || ctx->lane.held) {
        /* no lane; no provider: the proxy step says so */
        return NGX_OK;
    }

    if (ngx_http_aihub_lane_cleanup_add(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->lane.free = (ctx->caller.key.rec.priority == 0);
    now = ngx_http_aihub_now_ms();
    until = 0;

    ngx_shmtx_lock(mutex);

    ctx->lane.lane = ngx_http_aihub_lane_find(lanes, &p->name, 1);
    ctx->lane.plan = ngx_http_aihub_lane_plan_get(plans,
                                                  &ctx->caller.key.plan);

    if (ctx->lane.lane == NULL) {
        ngx_shmtx_unlock(mutex);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aihub: no room for the lane of provider \"%V\" "
                      "(at most %d providers)", &p->name,
                      NGX_HTTP_AIHUB_LANES);
        return NGX_OK;
    }

    rc = ngx_http_aihub_lane_admit(ctx, p, now,
                                   amcf->lane_wait
                                   + NGX_HTTP_AIHUB_LANE_REAP);

    if (rc == NGX_DECLINED) {
        if (!ctx->lane.free && amcf->lane_wait
            && ctx->lane.lane->queued < p->queue)
        {
            rc = ngx_http_aihub_lane_enqueue(ctx, now);

        } else {
            until = ctx->lane.lane->saturated_until;

            if (ctx->lane.plan) {
                ctx->lane.plan->refusals++;
            }
        }
    }

    ngx_shmtx_unlock(mutex);

    if (rc == NGX_OK) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub lane: \"%V\" call admitted, free %ui",
                       &p->name, (ngx_uint_t) ctx->lane.free);
        return NGX_OK;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_aihub_lane_refuse(r, ctx, until, now);
    }

    /* queued: poll until a place is ours or the wait is over */

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub lane: \"%V\" full, waits with ticket %uL",
                   &p->name, ctx->lane.ticket);

    ctx->lane.since = now;
    ctx->lane.poll.handler = ngx_http_aihub_lane_poll;
    ctx->lane.poll.data = r;
    ctx->lane.poll.log = r->connection->log;

    /*
     * not cancelable: a worker process that quits waits for its queued
     * calls (at most aihub_lane_wait) rather than leave them in the zone
     */

    ngx_add_timer(&ctx->lane.poll, NGX_HTTP_AIHUB_LANE_POLL);

    /* a client that goes away ends the request, and its wait */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_AGAIN;
}


/*
 * Under the lock: a place in flight, or NGX_DECLINED.  A paid call passes
 * no waiting call of a higher priority, nor an earlier one of its own; a
 * free call passes no waiting call at all.
 */

static ngx_int_t
ngx_http_aihub_lane_admit(ngx_http_aihub_ctx_t *ctx,
    ngx_http_aihub_provider_t *p, ngx_msec_t now, ngx_msec_t max_age)
{
    uint64_t                       prio, ticket;
    ngx_uint_t                     i;
    ngx_http_aihub_lane_sh_t      *lane;
    ngx_http_aihub_lane_waiter_t  *w;

    lane = ctx->lane.lane;

    if (lane->saturated_until > now) {
        return NGX_DECLINED;
    }

    if (p->capacity) {
        if (lane->in_flight >= p->capacity) {
            return NGX_DECLINED;
        }

        if (ctx->lane.free
            && lane->free_in_flight >= p->capacity * p->free_share / 100)
        {
            return NGX_DECLINED;
        }
    }

    prio = ctx->caller.key.rec.priority;
    ticket = ctx->lane.ticket ? ctx->lane.ticket : (uint64_t) -1;

    for (i = 0; i < NGX_HTTP_AIHUB_LANE_QUEUE && lane->queued; i++) {
        w = &lane->waiters[i];

        if (w->ticket == 0 || w->ticket == ctx->lane.ticket) {
            continue;
        }

        if (now > w->since && now - w->since > max_age) {
            /* its worker process died with it */
            w->ticket = 0;
            lane->queued--;
            continue;
        }

        if (ctx->lane.free || w->priority > prio
            || (w->priority == prio && w->ticket < ticket))
        {
            return NGX_DECLINED;
        }
    }

    lane->in_flight++;

    if (ctx->lane.free) {
        lane->free_in_flight++;
    }

    ctx->lane.held = 1;

    return NGX_OK;
}


/* under the lock: a place in the queue; NGX_AGAIN, or NGX_DECLINED: full */

static ngx_int_t
ngx_http_aihub_lane_enqueue(ngx_http_aihub_ctx_t *ctx, ngx_msec_t now)
{
    ngx_uint_t                     i;
    ngx_http_aihub_lane_sh_t      *lane;
    ngx_http_aihub_lane_waiter_t  *w;

    lane = ctx->lane.lane;

    for (i = 0; i < NGX_HTTP_AIHUB_LANE_QUEUE; i++) {
        w = &lane->waiters[i];

        if (w->ticket != 0) {
            continue;
        }

        w->ticket = ++lane->tickets;
        w->priority = ctx->caller.key.rec.priority;
        w->since = now;
        lane->queued++;

        ctx->lane.ticket = w->ticket;

        if (ctx->lane.plan) {
            ctx->lane.plan->waits++;
            ctx->lane.plan->queued++;
        }

        return NGX_AGAIN;
    }

    return NGX_DECLINED;
}


/* under the lock: the call leaves the queue */

static void
ngx_http_aihub_lane_dequeue(ngx_http_aihub_ctx_t *ctx)
{
    ngx_uint_t                 i;
    ngx_http_aihub_lane_sh_t  *lane;

    lane = ctx->lane.lane;

    for (i = 0; i < NGX_HTTP_AIHUB_LANE_QUEUE; i++) {
        if (lane->waiters[i].ticket == ctx->lane.ticket) {
            lane->waiters[i].ticket = 0;
            lane->queued--;
            break;
        }
    }

    if (ctx->lane.plan && ctx->lane.plan->queued) {
        ctx->lane.plan->queued--;
    }

    ctx->lane.ticket = 0;
}


static void
ngx_http_aihub_lane_poll(ngx_event_t *ev)
{
    ngx_int_t                       rc;
    ngx_msec_t                      now, until;
    ngx_shmtx_t                    *mutex;
    ngx_http_request_t             *r;
    ngx_http_aihub_ctx_t           *ctx;
    ngx_http_aihub_lane_sh_t       *lanes;
    ngx_http_aihub_provider_t      *p;
    ngx_http_aihub_main_conf_t     *amcf;
    ngx_http_aihub_lane_plan_sh_t  *plans;

    r = ev->data;
    ctx = ngx_http_aihub_get_ctx(r);

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);
    p = ngx_http_aihub_provider_find(r, ctx->route.model);
    mutex = ngx_http_aihub_zone_lanes(amcf->shm_zone, &lanes, &plans);

    now = ngx_http_aihub_now_ms();
    until = 0;

    ngx_shmtx_lock(mutex);

    rc = ngx_http_aihub_lane_admit(ctx, p, now,
                                   amcf->lane_wait
                                   + NGX_HTTP_AIHUB_LANE_REAP);

    if (rc == NGX_OK) {
        ngx_http_aihub_lane_dequeue(ctx);

    } else if (now >= ctx->lane.since + amcf->lane_wait) {
        ngx_http_aihub_lane_dequeue(ctx);
        until = ctx->lane.lane->saturated_until;

        if (ctx->lane.plan) {
            ctx->lane.plan->timeouts++;
        }

        rc = NGX_DONE;
    }

    ngx_shmtx_unlock(mutex);

    if (rc == NGX_DECLINED) {
        ngx_add_timer(ev, NGX_HTTP_AIHUB_LANE_POLL);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub lane: waited %M ms, %s", now - ctx->lane.since,
                   rc == NGX_OK ? "admitted" : "too long");

    r->read_event_handler = ngx_http_block_reading;
    ctx->flow.state = NGX_HTTP_AIHUB_STATE_NEW;

    if (rc == NGX_DONE
        && ngx_http_aihub_lane_refuse(r, ctx, until, now) != NGX_OK)
    {
        ngx_http_aihub_deny(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", "internal_error",
                            "The gateway failed to process the request.");
    }

    ngx_http_aihub_resume(r);
}


static ngx_int_t
ngx_http_aihub_lane_refuse(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_msec_t until, ngx_msec_t now)
{
    ngx_int_t  sec;

    sec = (until > now) ? (ngx_int_t) ((until - now + 999) / 1000) : 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub lane: refused, retry after %i s", sec);

    if (ngx_http_aihub_retry_after(r, sec) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_aihub_deny(ctx, NGX_HTTP_TOO_MANY_REQUESTS, "requests",
                        "rate_limit_exceeded",
                        ctx->lane.free
                        ? "The model provider is at capacity for your "
                          "plan. Please retry after the time in "
                          "Retry-After."
                        : "The model provider is at capacity. Please "
                          "retry after the time in Retry-After.");
    return NGX_OK;
}


/* the call's place in flight, given back once; safe to call again */

void
ngx_http_aihub_lane_release(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_shmtx_t                    *mutex;
    ngx_http_aihub_lane_sh_t       *lanes;
    ngx_http_aihub_main_conf_t     *amcf;
    ngx_http_aihub_lane_plan_sh_t  *plans;

    if (ctx->lane.lane == NULL || (!ctx->lane.held && !ctx->lane.ticket)) {
        return;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);
    mutex = ngx_http_aihub_zone_lanes(amcf->shm_zone, &lanes, &plans);

    ngx_shmtx_lock(mutex);

    if (ctx->lane.ticket) {
        ngx_http_aihub_lane_dequeue(ctx);
    }

    if (ctx->lane.held) {
        ctx->lane.held = 0;

        if (ctx->lane.lane->in_flight) {
            ctx->lane.lane->in_flight--;
        }

        if (ctx->lane.free && ctx->lane.lane->free_in_flight) {
            ctx->lane.lane->free_in_flight--;
        }
    }

    ngx_shmtx_unlock(mutex);
}


/*
 * The answer's last buffer passes the body filter: the provider is done
 * with the call, its place is free before the client has the last byte
 * (so a client that calls again at once finds it free).
 */

void
ngx_http_aihub_lane_body(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_chain_t  *cl;

    if (!ctx->lane.held) {
        return;
    }

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf) {
            ngx_http_aihub_lane_release(r, ctx);
            return;
        }
    }
}


static ngx_int_t
ngx_http_aihub_lane_cleanup_add(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    if (ctx->lane.cleanup_added) {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_aihub_lane_cleanup;
    cln->data = r;
    ctx->lane.cleanup_added = 1;

    return NGX_OK;
}


/* the request ends, however: out of the queue, its place given back */

static void
ngx_http_aihub_lane_cleanup(void *data)
{
    ngx_http_request_t *r = data;

    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx_anchored(r);

    if (ctx == NULL) {
        return;
    }

    if (ctx->lane.poll.timer_set) {
        ngx_del_timer(&ctx->lane.poll);
    }

    ngx_http_aihub_lane_release(r, ctx);
}


/*
 * under the lock: the provider's lane, made on first use if "create";
 * NULL: none (or no room)
 */

ngx_http_aihub_lane_sh_t *
ngx_http_aihub_lane_find(ngx_http_aihub_lane_sh_t *lanes, ngx_str_t *name,
    ngx_uint_t create)
{
    ngx_uint_t  i;

    if (name->len == 0 || name->len > NGX_HTTP_AIHUB_NAME_LEN) {
        /* no declared provider has such a name */
        return NULL;
    }

    for (i = 0; i < NGX_HTTP_AIHUB_LANES; i++) {

        if (lanes[i].name_len == 0) {
            if (!create) {
                return NULL;
            }

            ngx_memcpy(lanes[i].name, name->data, name->len);
            lanes[i].name_len = name->len;
            return &lanes[i];
        }

        if (lanes[i].name_len == name->len
            && ngx_strncmp(lanes[i].name, name->data, name->len) == 0)
        {
            return &lanes[i];
        }
    }

    if (!create) {
        return NULL;
    }

    /*
     * All taken: the zone outlives reloads, and a provider renamed or
     * removed by one keeps its lane.  One that this configuration does not
     * declare and that has no call in flight or waiting is taken over.
     */

    for (i = 0; i < NGX_HTTP_AIHUB_LANES; i++) {
        if (lanes[i].in_flight == 0 && lanes[i].queued == 0
            && !ngx_http_aihub_lane_declared(&lanes[i]))
        {
            ngx_memzero(&lanes[i], sizeof(ngx_http_aihub_lane_sh_t));
            ngx_memcpy(lanes[i].name, name->data, name->len);
            lanes[i].name_len = name->len;
            return &lanes[i];
        }
    }

    return NULL;
}


/* whether this configuration declares the lane's provider */

static ngx_uint_t
ngx_http_aihub_lane_declared(ngx_http_aihub_lane_sh_t *lane)
{
    ngx_uint_t                   i;
    ngx_http_aihub_provider_t   *p;
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_aihub_module);
    p = amcf->providers.elts;

    for (i = 0; i < amcf->providers.nelts; i++) {
        if (p[i].name.len == lane->name_len
            && ngx_strncmp(p[i].name.data, lane->name, lane->name_len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* under the lock: a plan's counters, made on first use; NULL: full */

static ngx_http_aihub_lane_plan_sh_t *
ngx_http_aihub_lane_plan_get(ngx_http_aihub_lane_plan_sh_t *plans,
    ngx_str_t *name)
{
    ngx_uint_t  i;

    if (name->len == 0 || name->len > NGX_HTTP_AIHUB_PLAN_LEN) {
        return NULL;
    }

    for (i = 0; i < NGX_HTTP_AIHUB_LANE_PLANS; i++) {

        if (plans[i].name_len == 0) {
            ngx_memcpy(plans[i].name, name->data, name->len);
            plans[i].name_len = name->len;
            return &plans[i];
        }

        if (plans[i].name_len == name->len
            && ngx_strncmp(plans[i].name, name->data, name->len) == 0)
        {
            return &plans[i];
        }
    }

    return NULL;
}
