/*
 * Usage events (their fields filled in the log phase) and the quota's
 * settle records go into a bounded per-worker buffer and leave it in
 * batches of two pipelined commands: an XADD of its events as one stream
 * entry, then the apply script (ngx_http_aihub_scripts.c) with its
 * settles, summed per lease.  A batch goes out when none is in flight and
 * the last left NGX_HTTP_AIHUB_BATCH_GAP ms ago, or when
 * NGX_HTTP_AIHUB_BATCH_MAX calls' entries wait.  It leaves the buffer when Redis
 * confirmed both; after a lost connection the same batch goes again,
 * under the same id: the script applies an id once, and its events go
 * again only if their XADD was not confirmed (a confirmation lost with the
 * connection makes a duplicate entry, which aihub-worker counts and drops
 * by event id).  When Redis lost its data (the script says WIPED) the
 * whole batch goes again once the worker restored it, its events too: the
 * entry may have been lost with the data.  Overflow is counted and logged.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_metrics.h"
#include "ngx_http_aihub_scripts.h"
#include "ngx_http_aihub_settle.h"
#include "ngx_http_aihub_batch.h"
#include "ngx_http_aihub_usage.h"
#include "aihub_usage_event.h"


#define NGX_HTTP_AIHUB_FLUSH_STEP      100
#define NGX_HTTP_AIHUB_FLUSH_MAX       5000
#define NGX_HTTP_AIHUB_BATCH_GAP       10       /* ms between batches */


typedef struct {
    ngx_queue_t                   pending;      /* in no batch yet */
    ngx_queue_t                   sealed;       /* batches not sent */
    ngx_uint_t                    nloose;       /* entries in pending */
    ngx_uint_t                    npending;     /* entries not sent */
    ngx_uint_t                    ninflight;    /* sent, not confirmed */
    ngx_uint_t                    events;       /* held, not confirmed */
    ngx_uint_t                    records;      /* held, not confirmed */
    ngx_uint_t                    batches;      /* batches in flight */
    ngx_uint_t                    wiped;        /* Redis lost its data */
    ngx_uint_t                    held;         /* queued, not sent yet */
    ngx_msec_t                    last_sent;
    uint64_t                      seq;          /* the last batch's */
    ngx_http_aihub_batch_keys_t   keys;
    ngx_event_t                   gap;          /* the next batch */
    ngx_uint_t                    limit;
    ngx_uint_t                    emitted;
    ngx_uint_t                    dropped;
    ngx_uint_t                    failed;
    ngx_str_t                     node;
    ngx_event_t                   flush;        /* shutdown: keeps the */
    ngx_msec_t                    flush_until;  /* worker alive a while */
    ngx_log_t                    *log;
} ngx_http_aihub_event_buffer_t;


static void ngx_http_aihub_usage_send(void);
static void ngx_http_aihub_usage_queue(ngx_http_aihub_event_t *ev);
static ngx_http_aihub_batch_t *ngx_http_aihub_usage_seal(void);
static void ngx_http_aihub_usage_streamed(ngx_http_aihub_batch_t *b,
    redisReply *rep);
static void ngx_http_aihub_usage_requeue(ngx_http_aihub_batch_t *b);
static void ngx_http_aihub_usage_free(ngx_http_aihub_batch_t *b);
static void ngx_http_aihub_usage_gap_handler(ngx_event_t *ev);
static void ngx_http_aihub_usage_sent(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_aihub_usage_arm(void);
static void ngx_http_aihub_usage_flush_handler(ngx_event_t *ev);


static ngx_http_aihub_event_buffer_t  ngx_http_aihub_usage;


ngx_int_t
ngx_http_aihub_usage_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    ngx_queue_init(&us->pending);
    ngx_queue_init(&us->sealed);

    us->log = cycle->log;
    us->keys.prefix = amcf->redis_prefix;
    us->keys.epoch_key = amcf->epoch_key;
    us->limit = amcf->event_buffer;
    us->node = amcf->node;

    /*
     * the batch key ends in an id of this process: the script keeps there
     * the number of its last batch applied
     */

    if (ngx_http_aihub_redis_key(cycle->pool, &amcf->redis_prefix,
                                 AIHUB_RK_USAGE, 0, &us->keys.stream)
        != NGX_OK
        || ngx_http_aihub_redis_key(cycle->pool, &amcf->redis_prefix,
                                    AIHUB_RK_BATCH, AIHUB_EVENT_ID_LEN,
                                    &us->keys.batch_key)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_aihub_request_id(us->keys.batch_key.data
                              + us->keys.batch_key.len - AIHUB_EVENT_ID_LEN);

    us->flush.handler = ngx_http_aihub_usage_flush_handler;
    us->flush.log = cycle->log;
    us->flush.data = us;

    us->gap.handler = ngx_http_aihub_usage_gap_handler;
    us->gap.log = cycle->log;
    us->gap.data = us;
    us->gap.cancelable = 1;

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

    if (us->events || us->records) {
        ngx_log_error(NGX_LOG_ERR, us->log, 0,
                      "aihub: exiting with %ui usage events and %ui "
                      "settles not confirmed by redis; the ids already "
                      "sent are stored once by the worker, the leases "
                      "expire", us->events, us->records);
    }

    (void) ngx_atomic_fetch_add(&ngx_http_aihub_metrics()->events_lost,
                                us->events);

    while (!ngx_queue_empty(&us->sealed)) {
        q = ngx_queue_head(&us->sealed);
        ngx_queue_remove(q);
        ngx_http_aihub_usage_free(ngx_queue_data(q, ngx_http_aihub_batch_t,
                                                 queue));
    }

    while (!ngx_queue_empty(&us->pending)) {
        q = ngx_queue_head(&us->pending);
        ngx_queue_remove(q);
        ngx_http_aihub_entry_free(
            ngx_queue_data(q, ngx_http_aihub_event_t, queue));
    }

    us->npending = 0;
    us->nloose = 0;
    us->events = 0;
    us->records = 0;
}


/*
 * A settled call's event (its fields filled by ngx_http_aihub_log.c, the
 * node's name here) goes into the buffer, rendered by the engine, and out
 * when it can.
 */

ngx_int_t
ngx_http_aihub_usage_emit(ngx_log_t *log, aihub_usage_event_t *e)
{
    size_t                          len;
    ngx_http_aihub_event_t         *ev;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    static u_char  scratch[2048];

    if (us->events >= us->limit) {
        us->dropped++;
        (void) ngx_atomic_fetch_add(&ngx_http_aihub_metrics()->events_dropped,
                                    1);
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "aihub: usage event buffer full (%ui events), "
                      "event %*s of key %*s dropped, %ui dropped so far",
                      us->limit, e->id.len, e->id.data, e->key.len,
                      e->key.data, us->dropped);
        return NGX_OK;
    }

    e->node.data = us->node.data;
    e->node.len = us->node.len;

    if (aihub_usage_event_bound(e) <= sizeof(scratch)) {
        /* rendered once and copied: cheaper than measuring the escapes */
        len = aihub_usage_event_render(scratch, e);

        ev = ngx_http_aihub_entry_alloc(len, us->log);
        if (ev == NULL) {
            return NGX_ERROR;
        }

        ev->len = len;
        ngx_memcpy(ev->data, scratch, len);

    } else {
        ev = ngx_http_aihub_entry_alloc(aihub_usage_event_len(e), us->log);
        if (ev == NULL) {
            return NGX_ERROR;
        }

        ev->len = aihub_usage_event_render(ev->data, e);
    }

    ev->argc = 0;
    ev->paired = 0;

    us->emitted++;
    (void) ngx_atomic_fetch_add(&ngx_http_aihub_metrics()->events_emitted, 1);

    ngx_http_aihub_usage_queue(ev);

    return NGX_OK;
}


/*
 * What is queued between hold and release leaves in one batch (a call's
 * settle and its event): seal never ends a batch inside such a run.
 */

void
ngx_http_aihub_usage_hold(void)
{
    ngx_http_aihub_usage.held = 1;
}


void
ngx_http_aihub_usage_release(void)
{
    ngx_queue_t                    *q;
    ngx_http_aihub_event_t         *ev;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    us->held = 0;

    /* the run's last entry ends it */
    if (!ngx_queue_empty(&us->pending)) {
        q = ngx_queue_last(&us->pending);
        ev = ngx_queue_data(q, ngx_http_aihub_event_t, queue);
        ev->paired = 0;
    }

    ngx_http_aihub_usage_send();
    ngx_http_aihub_usage_arm();
}


/* whether Redis said it lost its data (the last batch was refused) */

ngx_uint_t
ngx_http_aihub_usage_wiped(void)
{
    return ngx_http_aihub_usage.wiped;
}


/* a settle record that must reach Redis: into the buffer, and out */

ngx_int_t
ngx_http_aihub_usage_record(ngx_log_t *log,
    const ngx_http_aihub_settle_rec_t *rec)
{
    ngx_http_aihub_event_t         *ev;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    if (us->log == NULL) {
        return NGX_ERROR;
    }

    if (us->records >= us->limit) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "aihub: settle buffer full (%ui settles), a settle "
                      "of lease %*s dropped; the lease is reclaimed when "
                      "it expires", us->limit, (size_t) AIHUB_EVENT_ID_LEN,
                      rec->id);
        return NGX_OK;
    }

    ev = ngx_http_aihub_entry_alloc(sizeof(ngx_http_aihub_settle_rec_t),
                                    us->log);
    if (ev == NULL) {
        return NGX_ERROR;
    }

    ev->argc = NGX_HTTP_AIHUB_SETTLE_RECORD;
    ev->paired = 0;
    ev->len = sizeof(ngx_http_aihub_settle_rec_t);

    ngx_memcpy(ev->data, rec, sizeof(ngx_http_aihub_settle_rec_t));

    ngx_http_aihub_usage_queue(ev);

    return NGX_OK;
}


static void
ngx_http_aihub_usage_queue(ngx_http_aihub_event_t *ev)
{
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    ngx_queue_insert_tail(&us->pending, &ev->queue);
    us->npending++;
    us->nloose++;

    if (ev->argc == 0) {
        us->events++;

    } else {
        us->records++;
    }

    if (us->held) {
        ev->paired = 1;
        return;
    }

    ngx_http_aihub_usage_send();
    ngx_http_aihub_usage_arm();
}


void
ngx_http_aihub_usage_flush(void)
{
    ngx_http_aihub_usage_send();
}


/*
 * Sends what waits: the batches sealed before (resends first), then a new
 * batch of what is pending, when one is due (see the top of this file).
 */

static void
ngx_http_aihub_usage_send(void)
{
    ngx_queue_t                    *q;
    ngx_msec_t                      now;
    ngx_http_aihub_batch_t         *b;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    for ( ;; ) {
        if (!ngx_http_aihub_redis_ready()) {
            return;
        }

        if (ngx_queue_empty(&us->sealed)) {
            if (us->nloose == 0) {
                return;
            }

            now = ngx_current_msec;

            if (us->nloose < 2 * NGX_HTTP_AIHUB_BATCH_MAX
                && (us->batches
                    || now - us->last_sent < NGX_HTTP_AIHUB_BATCH_GAP))
            {
                /* the next batch when this one is confirmed, or soon */

                if (!us->gap.timer_set && us->batches == 0) {
                    ngx_add_timer(&us->gap, NGX_HTTP_AIHUB_BATCH_GAP
                                            - (now - us->last_sent));
                }

                ngx_log_debug2(NGX_LOG_DEBUG_HTTP, us->log, 0,
                               "aihub usage: %ui entries wait for the next "
                               "batch (%ui in flight)", us->nloose,
                               us->batches);
                return;
            }

            b = ngx_http_aihub_usage_seal();
            if (b == NULL) {
                return;
            }

        } else {
            q = ngx_queue_head(&us->sealed);
            b = ngx_queue_data(q, ngx_http_aihub_batch_t, queue);
            ngx_queue_remove(q);
        }

        if (ngx_http_aihub_batch_send(b, &us->keys,
                                      ngx_http_aihub_usage_sent)
            != NGX_OK)
        {
            ngx_queue_insert_head(&us->sealed, &b->queue);
            return;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, us->log, 0,
                       "aihub usage: batch %uL sent, %ui entries",
                       b->seq, b->nentries);

        /* the watchdog waits for its EXEC's reply too */
        ngx_http_aihub_redis_sent();

        us->last_sent = ngx_current_msec;
        us->batches++;
        us->npending -= b->nentries;
        us->ninflight += b->nentries;
    }
}


/*
 * Pending entries, under a new id: up to NGX_HTTP_AIHUB_BATCH_MAX events
 * and as many settle records (a call makes one of each)
 */

static ngx_http_aihub_batch_t *
ngx_http_aihub_usage_seal(void)
{
    ngx_uint_t                      paired;
    ngx_queue_t                    *q;
    ngx_http_aihub_batch_t         *b;
    ngx_http_aihub_event_t         *ev;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    b = ngx_alloc(sizeof(ngx_http_aihub_batch_t), us->log);
    if (b == NULL) {
        return NULL;
    }

    ngx_queue_init(&b->entries);
    b->nentries = 0;
    b->nevents = 0;
    b->streamed = 0;
    b->counted = 0;
    b->xadd = 0;
    b->seq = ++us->seq;

    paired = 0;

    while (!ngx_queue_empty(&us->pending)
           && ((b->nevents < NGX_HTTP_AIHUB_BATCH_MAX
                && b->nentries - b->nevents < NGX_HTTP_AIHUB_BATCH_MAX)
               || paired))
    {
        q = ngx_queue_head(&us->pending);
        ev = ngx_queue_data(q, ngx_http_aihub_event_t, queue);
        paired = ev->paired;

        ngx_queue_remove(q);
        ngx_queue_insert_tail(&b->entries, q);

        b->nentries++;
        b->nevents += (ev->argc == 0);
        us->nloose--;
    }

    return b;
}


/*
 * EXEC's reply: the XADD's (if the batch sent its events) and the apply
 * script's.  A batch refused (WIPED, NOSCRIPT) was not applied and goes
 * again under a new number; one whose reply was lost goes again under the
 * same number, which the script applies once.
 */

static void
ngx_http_aihub_usage_sent(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply                     *rep = reply, *apply;
    ngx_http_aihub_batch_t         *b = privdata;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    us->batches--;
    us->ninflight -= b->nentries;

    ngx_http_aihub_redis_replied(rep != NULL);

    if (rep == NULL) {
        /* the connection went away: the same batch again */
        ngx_http_aihub_usage_requeue(b);
        return;
    }

    if (rep->type == REDIS_REPLY_ERROR) {
        /*
         * EXEC itself failed (LOADING, EXECABORT: a Redis not ready, out
         * of memory): nothing of the transaction ran, the same batch again
         */
        ngx_log_error(NGX_LOG_WARN, us->log, 0,
                      "aihub: redis did not run a batch: %s", rep->str);
        ngx_http_aihub_usage_requeue(b);
        return;
    }

    apply = rep;

    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1u + b->xadd) {
        if (b->xadd) {
            ngx_http_aihub_usage_streamed(b, rep->element[0]);
        }

        apply = rep->element[b->xadd];
    }

    if (apply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(apply->str, "WIPED", 5) == 0)
    {
        /* Redis lost its data: again once the worker restored it */
        if (!us->wiped) {
            ngx_log_error(NGX_LOG_WARN, us->log, 0,
                          "aihub: %s; usage events and settles wait",
                          apply->str + 6);
        }

        us->wiped = 1;

        /* the stream entry may have gone with the data: it goes again */
        b->streamed = 0;
        b->seq = ++us->seq;

        ngx_http_aihub_usage_requeue(b);
        return;
    }

    us->wiped = 0;

    if (apply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(apply->str, "NOSCRIPT", 8) == 0)
    {
        /* Redis lost the scripts: loaded again first, then the batch */
        ngx_http_aihub_scripts_check(apply);
        b->seq = ++us->seq;
        ngx_http_aihub_usage_requeue(b);
        return;
    }

    if (apply->type == REDIS_REPLY_ERROR) {
        if (!b->counted) {
            ngx_http_aihub_usage_streamed(b, apply);
        }

        ngx_log_error(NGX_LOG_ERR, us->log, 0,
                      "aihub: redis refused a batch of %ui settles: %s",
                      b->nentries - b->nevents, apply->str);
    }

    ngx_http_aihub_usage_free(b);

    /* what waited for this batch */
    ngx_http_aihub_usage_send();
}


/* the XADD's reply: the events are in the stream, or refused for good */

static void
ngx_http_aihub_usage_streamed(ngx_http_aihub_batch_t *b, redisReply *rep)
{
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    b->streamed = 1;

    if (b->counted) {
        return;
    }

    b->counted = 1;

    if (rep->type == REDIS_REPLY_ERROR) {
        us->failed += b->nevents;
        (void) ngx_atomic_fetch_add(&ngx_http_aihub_metrics()->events_refused,
                                    b->nevents);
        ngx_log_error(NGX_LOG_ERR, us->log, 0,
                      "aihub: redis refused a batch of %ui usage events: %s",
                      b->nevents, rep->str);
        return;
    }

    (void) ngx_atomic_fetch_add(&ngx_http_aihub_metrics()->events_confirmed,
                                b->nevents);
}


/* back among the batches to send, in the order of their numbers */

static void
ngx_http_aihub_usage_requeue(ngx_http_aihub_batch_t *b)
{
    ngx_queue_t                    *q;
    ngx_http_aihub_batch_t         *next;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    for (q = ngx_queue_head(&us->sealed);
         q != ngx_queue_sentinel(&us->sealed);
         q = ngx_queue_next(q))
    {
        next = ngx_queue_data(q, ngx_http_aihub_batch_t, queue);

        if (next->seq > b->seq) {
            break;
        }
    }

    /* before q: the first with a larger number, or the sentinel (the end) */
    ngx_queue_insert_tail(q, &b->queue);

    us->npending += b->nentries;
    ngx_http_aihub_usage_arm();
}


static void
ngx_http_aihub_usage_free(ngx_http_aihub_batch_t *b)
{
    ngx_queue_t                    *q;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    while (!ngx_queue_empty(&b->entries)) {
        q = ngx_queue_head(&b->entries);
        ngx_queue_remove(q);
        ngx_http_aihub_entry_free(
            ngx_queue_data(q, ngx_http_aihub_event_t, queue));
    }

    us->events -= b->nevents;
    us->records -= b->nentries - b->nevents;

    ngx_free(b);
}


static void
ngx_http_aihub_usage_gap_handler(ngx_event_t *ev)
{
    ngx_http_aihub_usage_send();
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
