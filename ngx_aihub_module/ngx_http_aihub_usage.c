/*
 * The usage event: built in the log phase, XADDed to the usage stream.
 * Sending never waits: events go into a bounded per-worker buffer and are
 * pipelined to Redis as soon as it is connected; an event leaves the buffer
 * only when Redis confirmed it, so a lost connection sends it again (the
 * worker stores each event id once).  Overflow is counted and logged.
 * Quota settles travel in the same buffer, in order with the events, as
 * commands of their own (ngx_http_aihub_usage_command()); the settle
 * script applies each lease's settle once, so a resent one is harmless.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_metrics.h"
#include "ngx_http_aihub_scripts.h"
#include "ngx_http_aihub_usage.h"
#include "aihub_usage_event.h"


#define NGX_HTTP_AIHUB_FLUSH_STEP      100
#define NGX_HTTP_AIHUB_FLUSH_MAX       5000
#define NGX_HTTP_AIHUB_COMMAND_ARGS    24


/*
 * An entry of the buffer: a usage event (argc 0, data is its JSON), or a
 * command (data holds argc arguments, each a size_t length, unaligned, and
 * its bytes).
 */

typedef struct {
    ngx_queue_t                   queue;
    ngx_uint_t                    argc;
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
} ngx_http_aihub_event_buffer_t;


static void ngx_http_aihub_usage_send(void);
static void ngx_http_aihub_usage_sent(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_aihub_usage_arm(void);
static void ngx_http_aihub_usage_flush_handler(ngx_event_t *ev);
static ngx_http_aihub_event_t *ngx_http_aihub_usage_build(
    ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx);


static ngx_http_aihub_event_buffer_t  ngx_http_aihub_usage;


ngx_int_t
ngx_http_aihub_usage_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    u_char                  *p;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

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
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

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


/* a settled call's event goes into the buffer, and out when it can */

ngx_int_t
ngx_http_aihub_usage_emit(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_http_aihub_event_t         *ev;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    if (us->npending + us->ninflight >= us->limit) {
        us->dropped++;
        (void) ngx_atomic_fetch_add(&ngx_http_aihub_metrics()->events_dropped,
                                    1);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aihub: usage event buffer full (%ui events), "
                      "event %*s of key %V dropped, %ui dropped so far",
                      us->limit, (size_t) AIHUB_EVENT_ID_LEN, ctx->event_id,
                      &ctx->caller.key.prefix, us->dropped);
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


/* a command that must reach Redis: into the buffer, and out when it can */

ngx_int_t
ngx_http_aihub_usage_command(ngx_log_t *log, int argc, const char **argv,
    const size_t *argvlen)
{
    u_char                         *p;
    size_t                          len;
    ngx_int_t                       i;
    ngx_http_aihub_event_t         *ev;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    if (argc <= 0 || argc > NGX_HTTP_AIHUB_COMMAND_ARGS) {
        return NGX_ERROR;
    }

    if (us->npending + us->ninflight >= us->limit) {
        us->dropped++;
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "aihub: usage event buffer full (%ui entries), "
                      "a \"%*s\" command dropped", us->limit,
                      argvlen[0], argv[0]);
        return NGX_OK;
    }

    len = 0;

    for (i = 0; i < argc; i++) {
        len += sizeof(size_t) + argvlen[i];
    }

    ev = ngx_alloc(offsetof(ngx_http_aihub_event_t, data) + len, us->log);
    if (ev == NULL) {
        return NGX_ERROR;
    }

    ev->argc = argc;
    ev->len = len;

    p = ev->data;

    for (i = 0; i < argc; i++) {
        p = ngx_cpymem(p, &argvlen[i], sizeof(size_t));
        p = ngx_cpymem(p, argv[i], argvlen[i]);
    }

    ngx_queue_insert_tail(&us->pending, &ev->queue);
    us->npending++;

    ngx_http_aihub_usage_send();
    ngx_http_aihub_usage_arm();

    return NGX_OK;
}


/* the event's contents for the engine, which renders it */

static ngx_http_aihub_event_t *
ngx_http_aihub_usage_build(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    ngx_msec_int_t                  latency;
    aihub_usage_event_t             e;
    ngx_http_aihub_event_t         *ev;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    ngx_memzero(&e, sizeof(aihub_usage_event_t));

    if (ctx->route.provider) {
        e.provider.data = ctx->route.provider->name.data;
        e.provider.len = ctx->route.provider->name.len;
    }

    latency = (ngx_msec_int_t) (ngx_http_aihub_now_ms() - ctx->start_ms);
    if (latency < 0) {
        latency = 0;
    }

    e.id.data = ctx->event_id;
    e.id.len = AIHUB_EVENT_ID_LEN;
    e.ts_ms = ctx->start_ms;
    e.node.data = us->node.data;
    e.node.len = us->node.len;
    e.account = ctx->caller.key.rec.account_id;
    e.key.data = ctx->caller.key.prefix.data;
    e.key.len = ctx->caller.key.prefix.len;
    e.plan.data = ctx->caller.key.plan.data;
    e.plan.len = ctx->caller.key.plan.len;
    e.model.data = ctx->body.model.data;
    e.model.len = ctx->body.model.len;
    e.prompt_tokens = ctx->usage.tokens.prompt;
    e.completion_tokens = ctx->usage.tokens.completion;
    e.total_tokens = ctx->usage.tokens.total;
    e.cost_micros = ctx->usage.cost_micros;
    e.status = r->headers_out.status ? r->headers_out.status
                                     : ctx->reply.status;
    e.streamed = ctx->reply.streamed;
    e.aborted = ctx->usage.aborted;
    e.estimated = ctx->usage.tokens.estimated;
    e.latency_ms = (uint64_t) latency;

    ev = ngx_alloc(offsetof(ngx_http_aihub_event_t, data)
                   + aihub_usage_event_len(&e), us->log);
    if (ev == NULL) {
        return NULL;
    }

    ev->argc = 0;
    ev->len = aihub_usage_event_render(ev->data, &e);

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
    int                      argc;
    u_char                  *p;
    ngx_uint_t               i;
    ngx_queue_t             *q;
    const char              *argv[NGX_HTTP_AIHUB_COMMAND_ARGS];
    size_t                   argvlen[NGX_HTTP_AIHUB_COMMAND_ARGS];
    ngx_http_aihub_event_t  *ev;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    while (!ngx_queue_empty(&us->pending)) {

        if (!ngx_http_aihub_redis_ready()) {
            return;
        }

        q = ngx_queue_head(&us->pending);
        ev = ngx_queue_data(q, ngx_http_aihub_event_t, queue);

        if (ev->argc == 0) {
            argv[0] = "XADD";
            argvlen[0] = sizeof("XADD") - 1;
            argv[1] = (const char *) us->stream.data;
            argvlen[1] = us->stream.len;
            argv[2] = "*";
            argvlen[2] = 1;
            argv[3] = AIHUB_USAGE_FIELD;
            argvlen[3] = sizeof(AIHUB_USAGE_FIELD) - 1;
            argv[4] = (const char *) ev->data;
            argvlen[4] = ev->len;
            argc = 5;

        } else {
            p = ev->data;

            for (i = 0; i < ev->argc; i++) {
                ngx_memcpy(&argvlen[i], p, sizeof(size_t));
                p += sizeof(size_t);
                argv[i] = (const char *) p;
                p += argvlen[i];
            }

            argc = (int) ev->argc;
        }

        if (ngx_http_aihub_redis_send(ngx_http_aihub_usage_sent, ev,
                                      argc, argv, argvlen)
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
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    us->ninflight--;

    if (rep == NULL) {
        /* the connection went away: send it again when it is back */
        ngx_queue_insert_head(&us->pending, &ev->queue);
        us->npending++;
        ngx_http_aihub_usage_arm();
        return;
    }

    if (ev->argc) {
        if (rep->type == REDIS_REPLY_ERROR
            && ngx_strncmp(rep->str, "NOSCRIPT", 8) == 0)
        {
            /* the scripts are loaded again before it is resent */
            ngx_http_aihub_scripts_load();
            ngx_queue_insert_head(&us->pending, &ev->queue);
            us->npending++;
            ngx_http_aihub_usage_arm();
            return;
        }

        if (rep->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, us->log, 0,
                          "aihub: redis refused a buffered command: %s",
                          rep->str);
        }

        ngx_free(ev);
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
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    if (!us->flush.timer_set && (us->npending || us->ninflight)) {
        ngx_add_timer(&us->flush, NGX_HTTP_AIHUB_FLUSH_STEP);
    }
}


static void
ngx_http_aihub_usage_flush_handler(ngx_event_t *ev)
{
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

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
