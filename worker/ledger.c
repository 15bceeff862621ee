/*
 * The ledger: the drain of the usage stream into MySQL, one round at a
 * time (daemon.c runs the rounds and owns the process).  Reads the usage
 * stream with the consumer group, stores each batch in MySQL in one
 * transaction (ledger_store.c: INSERT IGNORE on the UNIQUE event_id; daily
 * rollups for the newly inserted rows only), commits, and only then ACKs.
 * At-least-once delivery from Redis plus the idempotent insert stores
 * every event exactly once.
 *
 *   - a stream entry carries one or more events (AIHUB_USAGE_EVENTS_MAX),
 *     each an "event" field: each is stored or dead-lettered on its own;
 *     a round reads about --batch events' worth of entries and stores
 *     them in batches of at most --batch events, then ACKs the entries
 *   - one multi-row INSERT per batch; row by row only when MySQL refuses
 *     the batch, to find the event it refuses
 *   - invalid events, and events MySQL refuses, go to <prefix>usage:dead
 *     with the reason and are ACKed; nothing is dropped silently
 *   - MySQL down: retry with backoff, ACK nothing
 *   - Redis down: reconnect with backoff, re-read our own pending entries
 *   - entries pending on a dead consumer are claimed after --claim-idle-ms
 *   - a stop request (the daemon's flag) ends every wait; the batch in
 *     hand is finished first, and the round read ahead
 *   - pipelined: while MySQL inserts a round, the round before is ACKed
 *     and the next one read and parsed (aw_drain_overlap); XACK and XDEL
 *     travel together
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "admin.h"
#include "db.h"
#include "redis.h"
#include "sync.h"
#include "restore.h"
#include "ledger_state.h"


#define AW_BACKOFF_MIN_MS   100
#define AW_BACKOFF_MAX_MS   5000

/* the chores between rounds read ahead: at most this long apart (an idle
   drain waits --block-ms between them) */
#define AW_CHORES_MS        100
#define AW_ADD_POLL_MS      10000   /* ledger_additions another worker
                                       left, looked for this often */


static void
aw_backoff(aw_drain_t *d, unsigned *backoff)
{
    unsigned  ms;

    if (*backoff < AW_BACKOFF_MIN_MS) {
        *backoff = AW_BACKOFF_MIN_MS;
    }

    for (ms = 0; ms < *backoff && !*d->stop; ms += 50) {
        usleep(50 * 1000);
    }

    *backoff *= 2;

    if (*backoff > AW_BACKOFF_MAX_MS) {
        *backoff = AW_BACKOFF_MAX_MS;
    }
}


/*
 * Stores the first *n of the n events in d->entries (aw_drain_slice: as
 * many as one transaction may carry on this connection).  0 committed,
 * -1 stopping before it could commit.  MySQL refusing the batch with a
 * data error moves to the events in one transaction, its COMMIT refused
 * to one transaction per event; a lost connection retries the batch.
 */

static int
aw_drain_store(aw_drain_t *d, size_t *n)
{
    int        rc, by_row;
    size_t     max;
    long long  inserted, dups;

    by_row = 0;
    max = *n;

    for ( ;; ) {
        if (d->db == NULL) {
            if (*d->stop) {
                return -1;
            }

            d->db = aw_db_connect(1, 0);

            if (d->db == NULL) {
                aw_backoff(d, &d->db_backoff);
                continue;
            }

            aw_log(AW_LOG_INFO, "connected to MySQL");
        }

        if (d->packet_max == 0) {
            d->packet_max = (size_t) aw_db_scalar(d->db, AW_PACKET_GUESS,
                                                  "SELECT "
                                                  "@@max_allowed_packet");
        }

        if (!by_row) {
            *n = aw_drain_slice(d, d->entries, max);
        }

        if (by_row) {
            rc = aw_drain_store_rows(d, *n, by_row == 2, &inserted, &dups);

            if (rc == 3) {
                by_row = 2;
                continue;
            }

        } else {
            rc = aw_drain_store_batch(d, *n, &inserted, &dups);

            if (rc == 2) {
                by_row = 1;
                continue;
            }
        }

        if (rc == 0) {
            d->db_backoff = 0;
            d->stored += inserted;
            d->duplicates += dups;

            if (dups) {
                aw_log(AW_LOG_INFO, "batch: %lld stored, %lld already "
                       "stored", inserted, dups);
            }

            return 0;
        }

        if (rc > 0) {
            continue;
        }

        aw_drain_db_lost(d);

        if (*d->stop) {
            return -1;
        }

        aw_backoff(d, &d->db_backoff);
    }
}


/*
 * After a round of fewer than half --batch events, the next read waits
 * until --linger-ms have passed since that round began: under a steady
 * load of a few thousand events a second the drain then stores rounds of
 * hundreds, not dozens.  A transaction's fixed cost (its COMMIT's redo
 * log flush, the rollups' upsert, the ACK) is shared by more events:
 * MariaDB spent 15 us of CPU an event in transactions of 50, 8.5-9.7 in
 * transactions of 500 (the bench's drain, --batch 50 against 500).
 */

static void
aw_drain_linger(aw_drain_t *d)
{
    long long  left;

    if (d->linger_ms == 0 || d->round_n == 0
        || d->round_n >= (size_t) d->batch / 2)
    {
        return;
    }

    for ( ;; ) {
        left = d->round_ms + d->linger_ms - aw_now_ms();

        if (left <= 0 || *d->stop) {
            return;
        }

        usleep((useconds_t) (left < 10 ? left : 10) * 1000);
    }
}


/*
 * The round's events in slices of at most --batch (and what one
 * transaction may carry, aw_drain_slice), each slice one transaction
 * (aw_drain_store), all committed before the round's ACK: a
 * stop or crash between two slices ACKs nothing, and the slices already
 * committed come back as counted duplicates.  0 committed, -1 stopping.
 */

static int
aw_drain_store_all(aw_drain_t *d, size_t n)
{
    int     rc;
    size_t  off, len;

    rc = 0;

    for (off = 0; off < n && rc == 0; off += len) {
        len = n - off;
        d->entries = d->all + off;
        rc = aw_drain_store(d, &len);
    }

    d->entries = d->all;

    return rc;
}


/*
 * Stores the round in d->all (the events of reply r), its first INSERT
 * overlapping the ACK of the round before and the read of the next
 * (aw_drain_overlap); once committed, the round is held to be ACKed
 * while the next is stored.  Not committed (stopping): nothing is ACKed.
 */

static void
aw_drain_round(aw_drain_t *d, redisReply *r, size_t n, const char *marker)
{
    int  rc;

    /* the overlap may read the next round (and its marker) meanwhile */
    snprintf(d->store_marker, sizeof(d->store_marker), "%s", marker);

    d->round_ms = aw_now_ms();
    d->round_n = n;

    /* a short round is not read ahead of: the next one lingers instead */
    d->overlap = (d->linger_ms == 0 || n >= (size_t) d->batch / 2);
    rc = aw_drain_store_all(d, n);
    d->overlap = 0;

    /* the store did not come to the overlap (MySQL refused or was gone) */
    aw_drain_ack_done(d);

    /* an INSERT built ahead is only ever for the round read ahead */
    if (d->next_entries != d->ahead.all) {
        d->next_entries = NULL;
    }

    if (rc != 0) {
        freeReplyObject(r);
        return;
    }

    aw_drain_swap(d, &d->done);
    d->done.reply = r;
    d->done.n = n;
}


/* stores the round read ahead, if any (it becomes the round to ACK) */

static void
aw_drain_round_ahead(aw_drain_t *d)
{
    size_t       n;
    redisReply  *r;

    if (d->ahead.reply == NULL) {
        return;
    }

    r = d->ahead.reply;
    n = d->ahead.n;
    d->ahead.reply = NULL;
    d->ahead.n = 0;
    aw_drain_swap(d, &d->ahead);
    aw_drain_round(d, r, n, d->ahead.marker);
}


aw_drain_t *
aw_drain_create(long long batch, long long block_ms, long long linger_ms,
    long long claim_idle_ms, const char *consumer, int text_insert,
    aw_flag_t *stop)
{
    aw_drain_t  *d;

    d = aw_xmalloc(sizeof(aw_drain_t));
    memset(d, 0, sizeof(*d));

    d->stop = stop;
    d->batch = batch;
    d->block_ms = block_ms;
    d->linger_ms = linger_ms;
    d->claim_idle_ms = claim_idle_ms;
    d->consumer = consumer;
    d->bulk_off = text_insert;
    aw_rkey(d->stream, sizeof(d->stream), AIHUB_RK_USAGE, NULL);
    aw_rkey(d->dead, sizeof(d->dead), AIHUB_RK_USAGE_DEAD, NULL);
    snprintf(d->claim_cursor, sizeof(d->claim_cursor), "0-0");
    d->count = aw_usage_read_count(batch, 0, 0);
    aw_drain_reserve(d, (size_t) d->batch);
    d->rollups = aw_xmalloc((size_t) d->batch * sizeof(aw_rollup_t));

    for (d->rollup_hash_size = 16;
         d->rollup_hash_size < 2 * (size_t) d->batch;
         d->rollup_hash_size *= 2)
    { /* void */ }

    d->rollup_hash = aw_xmalloc(d->rollup_hash_size * sizeof(unsigned));
    d->last_report = aw_now_ms();

    return d;
}


/*
 * Redis lost its data (no epoch marker): key records, plans, models and
 * counters from MySQL, then the marker (restore.c).  0 restored (by us or
 * by another worker meanwhile); 1 not yet; -1 Redis failed.
 */

static int
aw_drain_restore(aw_drain_t *d)
{
    int        rc, keys;
    long long  counters;

    if (d->db == NULL) {
        return 1;
    }

    /*
     * A round read ahead before the loss: its calls were in the
     * counters Redis lost, and the module does not send them again,
     * so they go into the ledger before the restore reads it.  (Its
     * ACK, and the one of the round before, find no group: the
     * connection is made again, and the restore follows.)
     */

    if (d->ahead.reply != NULL) {
        aw_drain_round_ahead(d);

        if (d->rc == NULL) {
            return -1;
        }
    }

    rc = aw_restore_all(d->db, d->rc, 1, &keys, &counters);

    if (rc < 0) {
        aw_log(AW_LOG_ERROR, "restoring Redis from MySQL failed; "
               "nothing is drained until it is done; trying again");
        return 1;
    }

    if (rc == 0) {
        aw_log(AW_LOG_WARN, "Redis had lost its data: restored %d key "
               "records, models, plans and %lld period counters from "
               "MySQL", keys, counters);

    } else {
        aw_log(AW_LOG_INFO, "Redis had lost its data: another worker "
               "restored it meanwhile");
    }

    d->synced = 1;

    if (aw_restore_marker(d->rc, d->marker, sizeof(d->marker)) < 0) {
        aw_drain_redis_lost(d);
        return -1;
    }

    return 0;
}


/*
 * Redis in step with MySQL at start and after Redis came back: 0 done, 1
 * MySQL failed, -1 Redis failed.  "prev" is the marker as last read
 * before (the connection lost; "" at start).  The period counters are
 * raised to the ledger, unless a restore wrote them from it since: the
 * marker's epoch went up since "prev", or, at start, the marker is the
 * gate's epoch and that restore is less than AW_RESENT_WITHIN seconds
 * old.  Raised to the ledger again then, they could count twice the calls
 * of batches Redis refused without its data, stored since and sent again
 * by the module within seconds (the max_merge script's rule, restore.c);
 * the rounds this worker stored after that restore are added on their own
 * (ledger_gate.c).
 */

static int
aw_drain_sync(aw_drain_t *d, const char *prev)
{
    int         merge, keys, rc;
    char       *end1, *end2;
    long long   epoch, was, now, counters;

    epoch = aw_restore_epoch(d->db, "");

    if (epoch == -1) {
        aw_drain_db_lost(d);
        return 1;
    }

    was = strtoll(prev, &end1, 10);
    now = strtoll(d->marker, &end2, 10);

    if (d->marker[0] == '\0' || *end2 != '\0') {
        merge = 1;

    } else if (prev[0] != '\0') {
        merge = !(*end1 == '\0' && now > was);

    } else {
        merge = !(now == epoch
                  && epoch + AW_RESENT_WITHIN > (long long) time(NULL));
    }

    if (!merge) {
        aw_log(AW_LOG_INFO, "Redis was restored %s: its period counters "
               "are left as the restore wrote them",
               prev[0] != '\0' ? "since the connection was lost"
                                : "less than a minute ago");
    }

    /*
     * Raised as "rebuild" does, with the gate held (restore.c): the
     * additions kept in the ledger made first, and no drain COMMIT
     * between them and the ledger read, so none is counted twice
     */

    rc = merge ? aw_restore_all(d->db, d->rc, 0, &keys, &counters)
         : aw_sync_all(d->db, d->rc) < 0 ? -1
         : aw_publish(d->rc, AIHUB_INV_ALL);

    if (rc == 0) {
        aw_log(AW_LOG_INFO, "key records, models and plans synced "
               "to Redis%s", merge ? ", period counters at least the "
                             "ledger's" : "");
    }

    /*
     * The marker up to the gate's epoch (never down), before the
     * first round is read: a Redis restarted from an older snapshot
     * has an older one, and rounds read under it would be taken for
     * rounds read before a loss (aw_drain_tag, ledger_store.c).
     */

    if ((epoch >= 0 && aw_restore_marker_raise(d->rc, epoch, 0) != 0)
        || aw_restore_marker(d->rc, d->marker, sizeof(d->marker)) < 0)
    {
        aw_drain_redis_lost(d);
        return -1;
    }

    d->synced = 1;

    return 0;
}


/*
 * Keeps Redis in step with MySQL (restored after Redis lost its data,
 * synced at start and after Redis came back) and applies the developer
 * API's key changes.  0 done; 1 nothing may be drained yet (Redis is
 * without its epoch marker and was not restored); -1 Redis failed (d->rc
 * is then NULL).
 */

static int
aw_drain_chores(aw_drain_t *d)
{
    int        rc, wiped;
    char       prev[AW_MARKER_LEN];
    long long  now_ms;

    /*
     * Redis lost its data (no epoch marker): key records, plans, models
     * and counters from MySQL, then the marker (restore.c).  No event is
     * stored before: the restore reads the ledger, and the module sends
     * again, settles and all, the batches Redis refused meanwhile, whose
     * events it may have taken into the stream (WIPED); stored first, a
     * call would be counted twice.
     */

    memcpy(prev, d->marker, sizeof(prev));
    wiped = aw_restore_marker(d->rc, d->marker, sizeof(d->marker));
    wiped = wiped < 0 ? -1 : !wiped;

    if (wiped < 0) {
        /* logged by aw_redis_argv(), an error reply too */
        aw_drain_redis_lost(d);
        return -1;
    }

    if (wiped) {
        rc = aw_drain_restore(d);

        if (rc != 0) {
            return rc;
        }

        d->add_pending = 0;
    }

    /*
     * Events stored after a restore that missed them, not yet added (no
     * Redis or MySQL then, a failure, or a worker that died first: kept
     * in ledger_additions, aw_drain_add_keep): before the sync below
     * raises counters to the ledger, or it waits; and every
     * AW_ADD_POLL_MS for those another worker left.  A restore just now
     * deleted them: it read them in the ledger.
     */

    now_ms = aw_now_ms();

    if (!wiped && d->db != NULL && !d->add_missing
        && (d->add_pending || !d->synced
            || now_ms - d->add_polled_ms >= AW_ADD_POLL_MS))
    {
        d->add_polled_ms = now_ms;

        if (aw_drain_add_made(d, 0) != 0 && !d->synced) {
            return 1;
        }
    }

    /* the consumer group, made again once Redis has the marker */

    if (!d->grouped) {
        rc = aw_drain_group_make(d);

        if (rc <= 0) {
            if (rc < 0) {
                aw_drain_redis_lost(d);
            }

            return rc < 0 ? -1 : 1;
        }
    }

    if (d->db == NULL) {
        return 0;
    }

    /*
     * Redis in step with MySQL at start (and after Redis came back).  A
     * Redis that restarted from an older snapshot (RDB) has its marker but
     * older counters: they are raised to the ledger (never lowered, so a
     * Redis that lost nothing is left as it is).
     */

    if (!d->synced) {
        rc = aw_drain_sync(d, prev);

        if (rc != 0) {
            return rc;
        }
    }

    /* key changes from the developer API */

    rc = aw_admin_drain(d->rc, d->db, d->consumer, &d->admin_pending);

    if (rc < 0) {
        aw_log(AW_LOG_ERROR, "Redis: %s", d->rc->errstr);
        aw_drain_redis_lost(d);
        return -1;
    }

    if (rc > 0) {
        aw_drain_db_lost(d);
    }

    return 0;
}


/*
 * One round: (re)connect what is missing, the chores (aw_drain_chores:
 * before every round, or every AW_CHORES_MS while rounds read ahead
 * follow each other), store and ACK one batch.  Waits (the stream's
 * BLOCK, backoffs) end early on a stop request.
 */

void
aw_drain_step(aw_drain_t *d)
{
    int          rc;
    size_t       n;
    long long    now;
    redisReply  *r;

    if (d->rc == NULL && aw_drain_redis_open(d) != 0) {
        aw_backoff(d, &d->redis_backoff);
        return;
    }

    /* MySQL between batches: tried at most every 5 s */

    if (d->db == NULL && aw_now_ms() - d->last_db_try_ms >= 5000) {
        d->last_db_try_ms = aw_now_ms();
        d->db = aw_db_connect(1, 0);
    }

    now = aw_now_ms();

    if (d->ahead.reply == NULL || now - d->last_chores_ms >= AW_CHORES_MS) {
        d->last_chores_ms = now;

        rc = aw_drain_chores(d);

        if (rc != 0) {
            if (rc > 0) {
                /* tried again within a second of MySQL's return */
                if (d->restore_backoff > 500) {
                    d->restore_backoff = 500;
                }

                aw_backoff(d, &d->restore_backoff);
            }

            return;
        }

        d->restore_backoff = 0;
    }

    /*
     * The round read ahead, if any; else the last round's ACK first (the
     * read may wait, or re-read our pending entries), then the read
     */

    if (d->ahead.reply != NULL) {
        aw_drain_round_ahead(d);

    } else {
        aw_drain_ack_done(d);
        aw_drain_linger(d);

        r = aw_drain_fetch(d, &n, 1);

        if (r == NULL) {
            if (d->rc == NULL && !*d->stop) {
                aw_backoff(d, &d->redis_backoff);
            }
            return;
        }

        aw_drain_round(d, r, n, d->read_marker);
    }

    if (aw_now_ms() - d->last_report >= 60000) {
        d->last_report = aw_now_ms();
        aw_log(AW_LOG_INFO, "stored %lld events, %lld duplicates, %lld "
               "dead-lettered", d->stored, d->duplicates, d->dead_count);
    }
}


/* logs the totals, closes both connections */

void
aw_drain_destroy(aw_drain_t *d)
{
    /* the round read ahead is stored too, then both are ACKed */

    aw_drain_ack_done(d);
    aw_drain_round_ahead(d);
    aw_drain_ack_done(d);

    aw_log(AW_LOG_INFO, "stopping: stored %lld events, %lld duplicates, "
           "%lld dead-lettered", d->stored, d->duplicates, d->dead_count);

    aw_redis_close(d->rc);
    aw_drain_db_lost(d);
    aw_bulk_destroy(d->bulk);
    free(d->all);
    free(d->ahead.all);
    free(d->done.all);
    aw_buf_free(&d->next_sql);
    free(d->rollups);
    free(d->rollup_hash);
    free(d);
}
