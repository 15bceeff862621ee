/*
 * The usage buffer's batches (ngx_http_aihub_usage_buffer.h), each two
 * pipelined commands in one transaction (ngx_http_aihub_batch.c): an XADD
 * of its events as one stream entry, then the apply script
 * (ngx_http_aihub_scripts.c) with its settles, summed per lease.  A batch
 * goes out when none is in flight and the last left
 * NGX_HTTP_AIHUB_BATCH_GAP ms ago, or when NGX_HTTP_AIHUB_BATCH_MAX calls'
 * entries wait.  It leaves the buffer when Redis confirmed both.  A batch
 * keeps its number until Redis applied it: after a lost connection it
 * goes again under it, and the script applies a number once; its events
 * go again only if their XADD was not confirmed (a confirmation lost with
 * the connection makes a duplicate entry, which aihub-worker counts and
 * drops by event id).  A batch Redis did not run goes again before those
 * behind it, which the script refuses until it has (GAP).  When Redis
 * lost its data (the script says WIPED) the whole batch goes again once
 * the worker restored it, its events too: the entry may have been lost
 * with the data.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_redis_refused.h"
#include "ngx_http_aihub_metrics.h"
#include "ngx_http_aihub_scripts.h"
#include "ngx_http_aihub_batch.h"
#include "ngx_http_aihub_usage_buffer.h"


#define NGX_HTTP_AIHUB_FLUSH_STEP      100
/* while Redis is without its data, batches go again after a wait that
   doubles from the flush step up to this (ms) */
#define NGX_HTTP_AIHUB_WIPED_WAIT_MAX  2000
#define NGX_HTTP_AIHUB_BATCH_GAP       10       /* ms between batches */


static uint64_t ngx_http_aihub_usage_floor(ngx_http_aihub_batch_t *b);
static ngx_http_aihub_batch_t *ngx_http_aihub_usage_seal(void);
static void ngx_http_aihub_usage_streamed(ngx_http_aihub_batch_t *b,
    redisReply *rep);
static void ngx_http_aihub_usage_requeue(ngx_http_aihub_batch_t *b);
static void ngx_http_aihub_usage_sent(redisAsyncContext *ac, void *reply,
    void *privdata);


ngx_http_aihub_event_buffer_t  ngx_http_aihub_usage;


/*
 * Sends what waits: the batches sealed before (resends first), then a new
 * batch of what is pending, when one is due (see the top of this file).
 */

void
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

        if (us->wiped && (ngx_msec_int_t) (ngx_current_msec - us->wiped_next)
                         < 0)
        {
            /* Redis still without its data: the flush timer comes back */
            ngx_http_aihub_usage_arm();
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

        us->keys.floor = ngx_http_aihub_usage_floor(b);

        if (ngx_http_aihub_batch_send(b, &us->keys,
                                      ngx_http_aihub_usage_sent)
            != NGX_OK)
        {
            ngx_queue_insert_head(&us->sealed, &b->queue);
            return;
        }

        ngx_queue_insert_tail(&us->flying, &b->queue);

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
 * The lowest number of the batches not known applied, b about to go
 * (those sealed after it have higher numbers): the apply script applies
 * that one first when it remembers none of this process's batches.
 */

static uint64_t
ngx_http_aihub_usage_floor(ngx_http_aihub_batch_t *b)
{
    uint64_t                        floor;
    ngx_queue_t                    *q;
    ngx_http_aihub_batch_t         *f;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    floor = b->seq;

    for (q = ngx_queue_head(&us->flying);
         q != ngx_queue_sentinel(&us->flying);
         q = ngx_queue_next(q))
    {
        f = ngx_queue_data(q, ngx_http_aihub_batch_t, queue);
        floor = ngx_min(floor, f->seq);
    }

    return floor;
}


/*
 * EXEC's reply: the XADD's (if the batch sent its events) and the apply
 * script's.  A batch keeps its number until Redis applied it or refused
 * it for good.  One whose reply was lost goes again under it, and the
 * script applies it once.  One Redis did not apply goes again, in the
 * order of the numbers: a transaction Redis did not run (out of memory,
 * loading), a script it refused before it wrote (out of memory), one
 * that came before an earlier batch was applied (GAP), Redis without
 * its data (WIPED) or its scripts (NOSCRIPT).
 */

static void
ngx_http_aihub_usage_sent(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply                     *rep = reply, *apply;
    ngx_http_aihub_batch_t         *b = privdata;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    ngx_queue_remove(&b->queue);

    us->batches--;
    us->ninflight -= b->nentries;

    ngx_http_aihub_redis_replied(rep != NULL);

    if (rep == NULL) {
        /* the connection went away: the same batch again */
        ngx_http_aihub_usage_requeue(b);
        return;
    }

    if (rep->type == REDIS_REPLY_ERROR) {
        /* EXEC itself failed: nothing of the transaction ran */
        ngx_http_aihub_redis_refused(us->log, "a batch",
                                     b->why[0] ? (char *) b->why : rep->str);
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
        ngx_http_aihub_redis_refused(us->log, "a batch", apply->str + 6);

        /*
         * not again at once: each time, a batch whose events went to the
         * stream before goes with them again (every 100 ms, Redis grew
         * by the whole buffer ten times a second until the worker
         * restored it)
         */

        us->wiped_wait = us->wiped ? ngx_min(2 * us->wiped_wait,
                                             NGX_HTTP_AIHUB_WIPED_WAIT_MAX)
                                   : NGX_HTTP_AIHUB_FLUSH_STEP;
        us->wiped_next = ngx_current_msec + us->wiped_wait;
        us->wiped = 1;

        /*
         * a stream entry sent before may have gone with the data: it goes
         * again; one this transaction added is in the stream Redis has
         * now (sent again with each retry, every 100 ms, it was added
         * once more each time until the worker restored Redis)
         */

        if (!b->xadd) {
            b->streamed = 0;
        }

        ngx_http_aihub_usage_requeue(b);
        return;
    }

    us->wiped = 0;

    if (apply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(apply->str, "NOSCRIPT", 8) == 0)
    {
        /* Redis lost the scripts: loaded again first, then the batch */
        ngx_http_aihub_scripts_check(apply);
        ngx_http_aihub_usage_requeue(b);
        return;
    }

    if (apply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(apply->str, "GAP", 3) == 0)
    {
        /* an earlier batch was not applied: it goes first, then this */
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, us->log, 0,
                       "aihub usage: batch %uL waits: %s", b->seq,
                       apply->str);
        ngx_http_aihub_usage_requeue(b);
        return;
    }

    if (ngx_http_aihub_redis_for_now(apply)) {
        ngx_http_aihub_redis_refused(us->log, "a batch", apply->str);
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

    } else {
        ngx_http_aihub_redis_accepted(us->log);
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


void
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

    if (us->full && us->events < us->limit / 2) {
        us->full = 0;
        ngx_log_error(NGX_LOG_NOTICE, us->log, 0,
                      "aihub: usage event buffer has room again (%ui events "
                      "wait)", us->events);
    }

    ngx_free(b);
}


void
ngx_http_aihub_usage_gap_handler(ngx_event_t *ev)
{
    ngx_http_aihub_usage_send();
}


/*
 * While the buffer holds events a non-cancelable timer is armed: it retries
 * sending, and it keeps the worker process alive through a graceful
 * shutdown or reload until Redis confirmed every event, for
 * aihub_exit_flush_timeout at the most (Redis away during a reload: the
 * old processes wait for it, as they would for a long call).
 */

void
ngx_http_aihub_usage_arm(void)
{
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    if (!us->flush.timer_set && (us->npending || us->ninflight)) {
        ngx_add_timer(&us->flush, NGX_HTTP_AIHUB_FLUSH_STEP);
    }
}


void
ngx_http_aihub_usage_flush_handler(ngx_event_t *ev)
{
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    ngx_http_aihub_usage_send();

    if (us->npending == 0 && us->ninflight == 0) {
        return;
    }

    if (ngx_exiting || ngx_quit || ngx_terminate) {

        if (us->flush_until == 0) {
            us->flush_until = ngx_http_aihub_now_ms() + us->flush_max;
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
