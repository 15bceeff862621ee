/*
 * The usage event: built in the log phase, XADDed to the usage stream.
 * Sending never waits: events go into a bounded per-worker buffer and are
 * pipelined to Redis as soon as it is connected; an event leaves the buffer
 * only when Redis confirmed it, so a lost connection sends it again (the
 * worker stores each event id once).  Overflow is counted and logged.
 */

#include "ngx_http_aihub_module.h"


#define NGX_HTTP_AIHUB_FLUSH_STEP      100
#define NGX_HTTP_AIHUB_FLUSH_MAX       5000


typedef struct {
    ngx_queue_t                   queue;
    size_t                        len;
    u_char                        data[1];
} ngx_http_aihub_event_t;


typedef struct {
    ngx_queue_t                   pending;      /* not sent yet */
    ngx_uint_t                    npending;
    ngx_uint_t                    ninflight;    /* sent, not confirmed */
    ngx_uint_t                    limit;
    ngx_uint_t                    emitted;
    ngx_uint_t                    dropped;
    ngx_uint_t                    failed;
    ngx_str_t                     stream;       /* "<prefix>usage" */
    ngx_str_t                     node;
    ngx_event_t                   flush;        /* shutdown: keeps the */
    ngx_msec_t                    flush_until;  /* worker alive a while */
    ngx_log_t                    *log;
} ngx_http_aihub_usage_t;


static void ngx_http_aihub_usage_send(void);
static void ngx_http_aihub_usage_sent(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_aihub_usage_arm(void);
static void ngx_http_aihub_usage_flush_handler(ngx_event_t *ev);
static ngx_http_aihub_event_t *ngx_http_aihub_usage_build(
    ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx);


static ngx_http_aihub_usage_t  ngx_http_aihub_usage;


ngx_int_t
ngx_http_aihub_usage_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    u_char                  *p;
    ngx_http_aihub_usage_t  *us = &ngx_http_aihub_usage;

    ngx_queue_init(&us->pending);

    us->log = cycle->log;
    us->limit = amcf->event_buffer;
    us->node = amcf->node;

    us->stream.len = amcf->redis_prefix.len + sizeof(AIHUB_RK_USAGE) - 1;
    us->stream.data = ngx_pnalloc(cycle->pool, us->stream.len);
    if (us->stream.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(us->stream.data, amcf->redis_prefix.data,
                   amcf->redis_prefix.len);
    ngx_memcpy(p, AIHUB_RK_USAGE, sizeof(AIHUB_RK_USAGE) - 1);

    us->flush.handler = ngx_http_aihub_usage_flush_handler;
    us->flush.log = cycle->log;
    us->flush.data = us;

    return NGX_OK;
}


void
ngx_http_aihub_usage_exit_process(void)
{
    ngx_queue_t             *q;
    ngx_http_aihub_usage_t  *us = &ngx_http_aihub_usage;

    if (us->log == NULL) {
        return;
    }

    if (us->npending || us->ninflight) {
        ngx_log_error(NGX_LOG_ERR, us->log, 0,
                      "aihub: exiting with %ui usage events not confirmed "
                      "by redis (%ui unsent); the ids already sent are "
                      "stored once by the worker",
                      us->npending + us->ninflight, us->npending);
    }

    (void) ngx_atomic_fetch_add(&ngx_http_aihub_metrics()->events_lost,
                                us->npending + us->ninflight);

    while (!ngx_queue_empty(&us->pending)) {
        q = ngx_queue_head(&us->pending);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_aihub_event_t, queue));
    }

    us->npending = 0;
}


/*
 * The log phase settles a call: a call the provider answered successfully
 * keeps its reserved quota and adds its tokens and cost; anything else
 * gives the reservation back.  Every call the provider answered becomes a
 * usage event.
 */

ngx_int_t
ngx_http_aihub_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t               success;
    ngx_http_aihub_ctx_t    *ctx;
    ngx_http_aihub_event_t  *ev;
    ngx_http_aihub_usage_t  *us = &ngx_http_aihub_usage;

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx == NULL || r != r->main || !ctx->forwarded || ctx->emitted) {
        return NGX_OK;
    }

    ctx->emitted = 1;

    if (ctx->provider_status == 0 && r->upstream != NULL
        && r->upstream->request_sent
        && (r->connection->error
            || r->headers_out.status == NGX_HTTP_CLIENT_CLOSED_REQUEST))
    {
        /*
         * the client went away after the call reached the provider and
         * before its answer began: the provider works (and bills) on, so
         * the prompt is billed as estimated and the event flagged
         */
        ctx->aborted = 1;
        ctx->tokens.prompt = (ctx->prompt_estimate + 3) / 4;
        ctx->tokens.completion = 0;
        ctx->tokens.total = ctx->tokens.prompt;
        ctx->tokens.estimated = 1;
        ctx->provider_status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
        success = 1;

    } else {
        if (ctx->provider_status >= 200 && ctx->provider_status < 300
            && !ctx->failed)
        {
            ngx_http_aihub_tokens_settle(r, ctx);
        }

        success = (ctx->provider_status >= 200
                   && ctx->provider_status < 300 && !ctx->failed);
    }

    if (!success) {
        ngx_memzero(&ctx->tokens, sizeof(ngx_http_aihub_tokens_t));
        ctx->cost_micros = 0;
        ngx_http_aihub_quota_settle(r, ctx, 0);

        if (ctx->provider_status == 0) {
            /* the provider was never reached: nothing to record */
            return NGX_OK;
        }

    } else {
        /*
         * the client went away: its connection failed (a write error, or
         * the upstream module saw it close); a stream the provider cut
         * short is estimated but not aborted
         */

        if (r->connection->error) {
            ctx->aborted = 1;
        }

        ctx->cost_micros = ngx_http_aihub_cost(ctx->model_entry,
                                               &ctx->tokens);

        ngx_http_aihub_quota_settle(r, ctx, 1);
        ngx_http_aihub_cache_charge(r, ctx->key_bin, &ctx->key,
                                    (uint64_t) ctx->tokens.total, 0);
    }

    if (us->npending + us->ninflight >= us->limit) {
        us->dropped++;
        (void) ngx_atomic_fetch_add(&ngx_http_aihub_metrics()->events_dropped,
                                    1);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aihub: usage event buffer full (%ui events), "
                      "event %*s of key %V dropped, %ui dropped so far",
                      us->limit, (size_t) AIHUB_EVENT_ID_LEN, ctx->event_id,
                      &ctx->key.prefix, us->dropped);
        return NGX_OK;
    }

    ev = ngx_http_aihub_usage_build(r, ctx);
    if (ev == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&us->pending, &ev->queue);
    us->npending++;
    us->emitted++;
    (void) ngx_atomic_fetch_add(&ngx_http_aihub_metrics()->events_emitted, 1);

    ngx_http_aihub_usage_send();
    ngx_http_aihub_usage_arm();

    return NGX_OK;
}


/*
 * The numbers billed (aihub_usage_finalize() has the rule, README.md
 * "Metering" documents it): what the provider reported, total at least
 * prompt + completion; estimated from the text when the provider sent
 * nothing; clamped and flagged when absurd.  A provider error object sent
 * in place of an answer bills nothing; one sent after content was
 * delivered bills what was delivered.
 */

void
ngx_http_aihub_tokens_settle(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    aihub_usage_t  *u;

    if (ctx->sse) {
        if (!ctx->last_seen) {
            /* cut short: what the current event held counts too */
            (void) aihub_sse_finish(ctx->sse, NULL);
        }

        u = &ctx->sse->usage;

    } else if (ctx->json_scan) {
        u = &ctx->json_scan->usage;

    } else {
        return;
    }

    if (u->error && !u->found && u->delivered_chars == 0) {
        /* an error in place of an answer: nothing to bill */
        ctx->failed = 1;
        return;
    }

    /* an error after content: what was delivered is billed, estimated */

    aihub_usage_finalize(u, (ctx->prompt_estimate + 3) / 4);

    ctx->tokens.prompt = u->prompt;
    ctx->tokens.completion = u->completion;
    ctx->tokens.total = u->total;
    ctx->tokens.found = u->found;
    ctx->tokens.estimated = u->estimated || ctx->unscanned;
}


#define ngx_http_aihub_json_str_len(s)                                       \
    ((s)->len + ngx_escape_json(NULL, (s)->data, (s)->len))


static ngx_http_aihub_event_t *
ngx_http_aihub_usage_build(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    size_t                   len;
    u_char                  *p;
    ngx_str_t                provider;
    ngx_msec_int_t           latency;
    ngx_http_aihub_event_t  *ev;
    ngx_http_aihub_usage_t  *us = &ngx_http_aihub_usage;

    if (ctx->provider) {
        provider = ctx->provider->name;

    } else {
        ngx_str_null(&provider);
    }

    latency = (ngx_msec_int_t) (ngx_http_aihub_now_ms() - ctx->start_ms);
    if (latency < 0) {
        latency = 0;
    }

    len = sizeof("{\"v\":1,\"id\":\"\",\"ts\":,\"node\":\"\",\"account\":,"
                 "\"key\":\"\",\"plan\":\"\",\"model\":\"\","
                 "\"provider\":\"\",\"prompt_tokens\":,"
                 "\"completion_tokens\":,\"total_tokens\":,"
                 "\"cost_micros\":,\"status\":,\"streamed\":false,"
                 "\"aborted\":false,\"estimated\":false,"
                 "\"latency_ms\":}")
          + AIHUB_EVENT_ID_LEN + 6 * NGX_INT64_LEN
          + NGX_INT64_LEN + NGX_INT_T_LEN
          + ngx_http_aihub_json_str_len(&us->node)
          + ngx_http_aihub_json_str_len(&ctx->key.account)
          + ngx_http_aihub_json_str_len(&ctx->key.prefix)
          + ngx_http_aihub_json_str_len(&ctx->key.plan)
          + ngx_http_aihub_json_str_len(&ctx->model)
          + ngx_http_aihub_json_str_len(&provider);

    ev = ngx_alloc(offsetof(ngx_http_aihub_event_t, data) + len, us->log);
    if (ev == NULL) {
        return NULL;
    }

    p = ev->data;

    p = ngx_sprintf(p, "{\"v\":%d,\"id\":\"%*s\",\"ts\":%M,\"node\":\"",
                    AIHUB_EVENT_VERSION, (size_t) AIHUB_EVENT_ID_LEN,
                    ctx->event_id, ctx->start_ms);
    p = (u_char *) ngx_escape_json(p, us->node.data, us->node.len);

    /* the account id is digits: checked when the record was read */

    p = ngx_sprintf(p, "\",\"account\":%V,\"key\":\"", &ctx->key.account);
    p = (u_char *) ngx_escape_json(p, ctx->key.prefix.data,
                                   ctx->key.prefix.len);
    p = ngx_cpymem(p, "\",\"plan\":\"", sizeof("\",\"plan\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, ctx->key.plan.data, ctx->key.plan.len);
    p = ngx_cpymem(p, "\",\"model\":\"", sizeof("\",\"model\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, ctx->model.data, ctx->model.len);
    p = ngx_cpymem(p, "\",\"provider\":\"",
                   sizeof("\",\"provider\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, provider.data, provider.len);

    p = ngx_sprintf(p, "\",\"prompt_tokens\":%L,\"completion_tokens\":%L,"
                    "\"total_tokens\":%L,\"cost_micros\":%L,\"status\":%ui,"
                    "\"streamed\":%s,\"aborted\":%s,\"estimated\":%s,"
                    "\"latency_ms\":%M}",
                    ctx->tokens.prompt, ctx->tokens.completion,
                    ctx->tokens.total, ctx->cost_micros,
                    r->headers_out.status ? r->headers_out.status
                                          : ctx->provider_status,
                    ctx->streamed ? "true" : "false",
                    ctx->aborted ? "true" : "false",
                    ctx->tokens.estimated ? "true" : "false",
                    (ngx_msec_t) latency);

    ev->len = p - ev->data;

    return ev;
}


void
ngx_http_aihub_usage_flush(void)
{
    ngx_http_aihub_usage_send();
}


/* pipelines every pending event; replies confirm them one by one */

static void
ngx_http_aihub_usage_send(void)
{
    ngx_queue_t             *q;
    const char              *argv[5];
    size_t                   argvlen[5];
    ngx_http_aihub_event_t  *ev;
    ngx_http_aihub_usage_t  *us = &ngx_http_aihub_usage;

    argv[0] = "XADD";
    argvlen[0] = sizeof("XADD") - 1;
    argv[1] = (const char *) us->stream.data;
    argvlen[1] = us->stream.len;
    argv[2] = "*";
    argvlen[2] = 1;
    argv[3] = AIHUB_USAGE_FIELD;
    argvlen[3] = sizeof(AIHUB_USAGE_FIELD) - 1;

    while (!ngx_queue_empty(&us->pending)) {

        if (!ngx_http_aihub_redis_ready()) {
            return;
        }

        q = ngx_queue_head(&us->pending);
        ev = ngx_queue_data(q, ngx_http_aihub_event_t, queue);

        argv[4] = (const char *) ev->data;
        argvlen[4] = ev->len;

        if (ngx_http_aihub_redis_send(ngx_http_aihub_usage_sent, ev,
                                      5, argv, argvlen)
            != NGX_OK)
        {
            return;
        }

        ngx_queue_remove(q);
        us->npending--;
        us->ninflight++;
    }
}


static void
ngx_http_aihub_usage_sent(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply              *rep = reply;
    ngx_http_aihub_event_t  *ev = privdata;
    ngx_http_aihub_usage_t  *us = &ngx_http_aihub_usage;

    us->ninflight--;

    if (rep == NULL) {
        /* the connection went away: send it again when it is back */
        ngx_queue_insert_head(&us->pending, &ev->queue);
        us->npending++;
        ngx_http_aihub_usage_arm();
        return;
    }

    if (rep->type == REDIS_REPLY_ERROR) {
        us->failed++;
        (void) ngx_atomic_fetch_add(&ngx_http_aihub_metrics()->events_refused,
                                    1);
        ngx_log_error(NGX_LOG_ERR, us->log, 0,
                      "aihub: redis refused usage event: %s; event: %*s",
                      rep->str, ev->len, ev->data);
    }

    if (rep->type != REDIS_REPLY_ERROR) {
        (void) ngx_atomic_fetch_add(
                   &ngx_http_aihub_metrics()->events_confirmed, 1);
    }

    ngx_free(ev);
}


/*
 * While the buffer holds events a non-cancelable timer is armed: it retries
 * sending, and it keeps the worker process alive through a graceful
 * shutdown or reload until Redis confirmed every event, for
 * NGX_HTTP_AIHUB_FLUSH_MAX ms at the most.
 */

static void
ngx_http_aihub_usage_arm(void)
{
    ngx_http_aihub_usage_t  *us = &ngx_http_aihub_usage;

    if (!us->flush.timer_set && (us->npending || us->ninflight)) {
        ngx_add_timer(&us->flush, NGX_HTTP_AIHUB_FLUSH_STEP);
    }
}


static void
ngx_http_aihub_usage_flush_handler(ngx_event_t *ev)
{
    ngx_http_aihub_usage_t  *us = &ngx_http_aihub_usage;

    ngx_http_aihub_usage_send();

    if (us->npending == 0 && us->ninflight == 0) {
        return;
    }

    if (ngx_exiting || ngx_quit || ngx_terminate) {

        if (us->flush_until == 0) {
            us->flush_until = ngx_http_aihub_now_ms()
                              + NGX_HTTP_AIHUB_FLUSH_MAX;
        }

        if (ngx_http_aihub_now_ms() >= us->flush_until) {
            ngx_log_error(NGX_LOG_ERR, us->log, 0,
                          "aihub: gave up flushing %ui usage events "
                          "at exit", us->npending + us->ninflight);
            return;
        }
    }

    ngx_add_timer(&us->flush, NGX_HTTP_AIHUB_FLUSH_STEP);
}
