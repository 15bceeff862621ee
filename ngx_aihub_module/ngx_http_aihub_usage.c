/*
 * Usage events (their fields filled in the log phase) and the quota's
 * settle records go into a bounded per-worker buffer, which leaves in
 * batches (ngx_http_aihub_usage_batches.c).  A call is admitted only while
 * the buffer has room (failing closed); overflow is counted and logged.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_metrics.h"
#include "ngx_http_aihub_settle.h"
#include "ngx_http_aihub_batch.h"
#include "ngx_http_aihub_usage.h"
#include "ngx_http_aihub_usage_buffer.h"
#include "aihub_usage_event.h"


static void ngx_http_aihub_usage_queue(ngx_http_aihub_event_t *ev);


ngx_int_t
ngx_http_aihub_usage_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    ngx_queue_init(&us->pending);
    ngx_queue_init(&us->sealed);
    ngx_queue_init(&us->flying);

    us->log = cycle->log;
    us->keys.prefix = amcf->redis_prefix;
    us->keys.epoch_key = amcf->epoch_key;
    us->limit = amcf->event_buffer;
    us->flush_max = amcf->exit_flush;

    /* the calls admitted before it filled are in flight: their events */
    us->hard = us->limit + cycle->connection_n;
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
 * when it can.  Failing closed ("kept"), a call was admitted only while
 * the buffer had room (ngx_http_aihub_usage_full()), and its event is
 * kept up to one a connection beyond aihub_event_buffer; failing open,
 * calls pass anyway, and the buffer keeps aihub_event_buffer events.
 */

ngx_int_t
ngx_http_aihub_usage_emit(ngx_log_t *log, aihub_usage_event_t *e,
    ngx_uint_t kept)
{
    size_t                          len;
    ngx_http_aihub_event_t         *ev;
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    static u_char  scratch[2048];

    if (us->events >= (kept ? us->hard : us->limit)) {
        us->dropped++;
        (void) ngx_atomic_fetch_add(&ngx_http_aihub_metrics()->events_dropped,
                                    1);
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "aihub: usage event buffer full (%ui events), "
                      "event %*s of key %*s dropped, %ui dropped so far",
                      us->events, e->id.len, e->id.data, e->key.len,
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


/*
 * Whether the event of a call that ends now will be kept (as
 * ngx_http_aihub_usage_emit() decides): failing open past a full buffer
 * it is dropped, and the call must go back with it.
 */

ngx_uint_t
ngx_http_aihub_usage_room(ngx_uint_t kept)
{
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    return us->events < (kept ? us->hard : us->limit);
}


/*
 * Whether the buffer holds aihub_event_buffer events (Redis away or
 * refusing them a long while): a call admitted now could not be billed,
 * so none is (ngx_http_aihub_quota.c).  The events of the calls admitted
 * before are kept: up to one a connection more.  Said once a spell.
 */

ngx_uint_t
ngx_http_aihub_usage_full(ngx_log_t *log)
{
    ngx_http_aihub_event_buffer_t  *us = &ngx_http_aihub_usage;

    if (us->events < us->limit) {
        return 0;
    }

    if (!us->full) {
        us->full = 1;
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "aihub: %ui usage events wait for redis, as many as "
                      "aihub_event_buffer: new calls get 503 (failing "
                      "open: pass, and their events are dropped) until it "
                      "takes them", us->events);
    }

    return 1;
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

    /*
     * a call's settle is kept while its event is (up to "hard" of them),
     * and as many more: the give-backs of the blocks besides; a success
     * dropped here would never be counted, its event stored
     */

    if (us->records >= 2 * us->hard) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "aihub: settle buffer full (%ui settles), a settle "
                      "of lease %*s dropped; the lease is reclaimed when "
                      "it expires", us->records,
                      (size_t) AIHUB_EVENT_ID_LEN, rec->id);
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
