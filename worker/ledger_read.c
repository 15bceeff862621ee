/*
 * The ledger's reading side: the next round of usage stream entries (our
 * own pending ones first, then those of dead consumers, then new ones),
 * every event of an entry its own aw_entry_t, over the connection of
 * ledger_connect.c.  ledger.c stores and ACKs them.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "aihub_worker.h"
#include "redis.h"
#include "ledger_state.h"


/* an entry of a stream reply as [id, fields]; fields is nil when deleted */

static int
aw_drain_entry_ok(const redisReply *e)
{
    return e->type == REDIS_REPLY_ARRAY && e->elements >= 2
           && e->element[0]->type == REDIS_REPLY_STRING;
}


/*
 * The events field j of an entry's fields carries: 1 for an "event"
 * field, one per line for an "events" field, 0 for any other field.
 */

static size_t
aw_drain_field_events(const redisReply *f, size_t j)
{
    size_t             k;
    const char        *p, *end;
    const redisReply  *v;

    v = f->element[j + 1];

    if (f->element[j]->type != REDIS_REPLY_STRING
        || v->type != REDIS_REPLY_STRING)
    {
        return 0;
    }

    if (strcmp(f->element[j]->str, AIHUB_USAGE_FIELD) == 0) {
        return 1;
    }

    if (strcmp(f->element[j]->str, AIHUB_USAGE_LINES_FIELD) != 0) {
        return 0;
    }

    k = 1;
    end = v->str + v->len;

    for (p = v->str; (p = memchr(p, '\n', (size_t) (end - p))); p++) {
        k++;
    }

    return k;
}


/* the aw_entry_t slots an entry takes: its events, at least 1 */

static size_t
aw_drain_entry_events(const redisReply *e)
{
    size_t             j, k;
    const redisReply  *f;

    f = e->element[1];
    k = 0;

    if (f->type == REDIS_REPLY_ARRAY) {
        for (j = 0; j + 1 < f->elements; j += 2) {
            k += aw_drain_field_events(f, j);
        }
    }

    return k ? k : 1;
}


/* d->all holds at least need events; its contents are not kept */

void
aw_drain_reserve(aw_drain_t *d, size_t need)
{
    size_t  size;

    size = (size_t) d->batch;

    if (need <= d->all_size && (d->all_size <= 4 * size || need > size)) {
        return;
    }

    /* grows to fit; back to batch after a round that needed far more */

    while (size < need) {
        size *= 2;
    }

    free(d->all);
    d->all = aw_xmalloc(size * sizeof(aw_entry_t));
    d->all_size = size;
    d->entries = d->all;
}


static aw_entry_t *
aw_drain_event_add(aw_drain_t *d, size_t *n, const char *stream_id)
{
    aw_entry_t  *en;

    en = &d->all[(*n)++];
    memset(en, 0, sizeof(*en));
    en->stream_id = stream_id;

    return en;
}


/* the k-th event of an entry of total, raw its JSON */

static void
aw_drain_event_one(aw_drain_t *d, size_t *n, const char *id,
    const char *raw, size_t len, size_t k, size_t total)
{
    aw_entry_t  *en;

    en = aw_drain_event_add(d, n, id);
    en->raw = raw;
    en->raw_len = len;

    if (k > AIHUB_USAGE_EVENTS_MAX) {
        snprintf(en->reason_buf, sizeof(en->reason_buf),
                 "event %zu of %zu in one stream entry: an entry carries "
                 "at most %d", k, total, AIHUB_USAGE_EVENTS_MAX);
        en->reason = en->reason_buf;

    } else if (aw_event_parse(raw, len, &en->ev, &en->reason) != 0) {
        snprintf(en->reason_buf, sizeof(en->reason_buf), "%s", en->reason);
        en->reason = en->reason_buf;
    }
}


/*
 * Fills d->all from an array of [id, [field, value, ...]], every entry of
 * it (an entry read and not collected would stay pending, unACKed): each
 * "event" field, and each line of an "events" field, is an event of its
 * own, in order, validated on its own; those beyond AIHUB_USAGE_EVENTS_MAX
 * in one entry are dead-lettered, as is an entry without any.  Other fields are ignored.  Returns the events;
 * *entries the stream entries they came from.
 */

static size_t
aw_drain_collect(aw_drain_t *d, redisReply *list, size_t *entries)
{
    size_t        i, j, k, m, n, need, total;
    const char   *id, *p, *end, *line;
    redisReply   *e, *f, *v;
    aw_entry_t   *en;

    need = 0;

    for (i = 0; i < list->elements; i++) {
        if (aw_drain_entry_ok(list->element[i])) {
            need += aw_drain_entry_events(list->element[i]);
        }
    }

    aw_drain_reserve(d, need);

    n = 0;
    *entries = 0;

    for (i = 0; i < list->elements; i++) {
        e = list->element[i];

        if (!aw_drain_entry_ok(e)) {
            continue;
        }

        (*entries)++;
        id = e->element[0]->str;
        f = e->element[1];

        if (f->type != REDIS_REPLY_ARRAY) {
            /* the entry was deleted from the stream: nothing to store */
            en = aw_drain_event_add(d, &n, id);
            snprintf(en->reason_buf, sizeof(en->reason_buf),
                     "entry deleted from the stream");
            en->reason = en->reason_buf;
            continue;
        }

        k = 0;
        total = aw_drain_entry_events(e);

        for (j = 0; j + 1 < f->elements; j += 2) {
            m = aw_drain_field_events(f, j);
            v = f->element[j + 1];
            p = v->str;
            end = v->str + v->len;

            /* an "event" field, or an "events" field line by line */

            while (m-- > 0) {
                line = (m > 0) ? memchr(p, '\n', (size_t) (end - p)) : NULL;
                aw_drain_event_one(d, &n, id, p,
                                   (size_t) ((line ? line : end) - p),
                                   ++k, total);
                p = line ? line + 1 : end;
            }
        }

        if (k == 0) {
            en = aw_drain_event_add(d, &n, id);
            en->reason = "no \"" AIHUB_USAGE_FIELD "\" or \""
                         AIHUB_USAGE_LINES_FIELD "\" field";
        }
    }

    if (*entries > 0) {
        d->count = aw_usage_read_count(d->batch, *entries, n);
    }

    return n;
}


/* entries pending on dead consumers are due to be looked for */

static int
aw_drain_claim_due(aw_drain_t *d, long long now)
{
    return !d->read_pending && now - d->last_claim_ms >= d->claim_idle_ms / 2;
}


/*
 * The epoch marker of the round just read (d->read_marker), asked right
 * after the read: its value if the marker had it before the read as well
 * (d->marker: no restore between the two) and the drain has brought the
 * marker up to the gate's epoch since it connected (the chores' sync);
 * else "" (not known: the round's store adds nothing to the counters,
 * ledger_store.c).
 */

static void
aw_drain_tag(aw_drain_t *d)
{
    int    rc;
    char   now[AW_MARKER_LEN], *end;

    rc = aw_restore_marker(d->rc, now, sizeof(now));

    if (rc == 1 && strtoll(now, &end, 10) < d->gate_epoch && *end == '\0') {
        /*
         * A marker below an epoch the gate has had: Redis went back to an
         * older snapshot without the connection breaking (DEBUG RELOAD).
         * Synced again, as after a restart: the counters raised to the
         * ledger, the marker to the gate's epoch.  (Its rounds add nothing
         * meanwhile: restore.c's script adds only while the marker holds
         * the epoch the store saw.)
         */
        aw_log(AW_LOG_WARN, "Redis's epoch marker went back (%s): an older "
               "snapshot; syncing again", now);
        d->synced = 0;
        d->last_chores_ms = 0;
    }

    if (rc == 1 && d->synced && strcmp(now, d->marker) == 0) {
        memcpy(d->read_marker, now, sizeof(now));

    } else {
        d->read_marker[0] = '\0';
    }

    if (rc >= 0) {
        memcpy(d->marker, now, sizeof(now));
    }
}


/*
 * Next batch: our own pending entries first (after a start or a Redis
 * reconnect), then entries of dead consumers, then new ones; without
 * may_block, only new ones, and none when the stream has none now.  Returns
 * the reply that owns the entries (the caller frees it), or NULL with
 * *n = 0 when there is nothing or Redis failed (d->rc is then NULL, as it
 * may be already when called).
 */

redisReply *
aw_drain_fetch(aw_drain_t *d, size_t *n, int may_block)
{
    char          count[32], block[32], idle[32];
    size_t        entries;
    const char   *argv[12];
    redisReply   *r, *list;
    long long     now;

    *n = 0;

    /* the ACK just before may have found the connection gone */

    if (d->rc == NULL) {
        return NULL;
    }

    /* every entry read is collected this round: d->count keeps a round
       near --batch events whether entries carry one event or many */

    snprintf(count, sizeof(count), "%lld", d->count);
    snprintf(block, sizeof(block), "%lld", d->block_ms);
    snprintf(idle, sizeof(idle), "%lld", d->claim_idle_ms);

    now = aw_now_ms();

    if (may_block && aw_drain_claim_due(d, now)) {
        argv[0] = "XAUTOCLAIM";
        argv[1] = d->stream;
        argv[2] = AIHUB_USAGE_GROUP;
        argv[3] = d->consumer;
        argv[4] = idle;
        argv[5] = d->claim_cursor;
        argv[6] = "COUNT";
        argv[7] = count;

        r = redisCommandArgv(d->rc, 8, argv, NULL);

        if (r == NULL) {
            aw_log(AW_LOG_ERROR, "Redis XAUTOCLAIM: %s", d->rc->errstr);
            aw_drain_redis_lost(d);
            return NULL;
        }

        if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2
            && r->element[0]->type == REDIS_REPLY_STRING
            && r->element[1]->type == REDIS_REPLY_ARRAY)
        {
            snprintf(d->claim_cursor, sizeof(d->claim_cursor), "%s",
                     r->element[0]->str);

            if (strcmp(d->claim_cursor, "0-0") == 0) {
                d->last_claim_ms = now;
            }

            *n = aw_drain_collect(d, r->element[1], &entries);

            if (*n > 0) {
                aw_log(AW_LOG_INFO, "claimed %zu entries (%zu events) idle "
                       "for more than %lld ms", entries, *n,
                       d->claim_idle_ms);
                aw_drain_tag(d);
                return r;
            }

        } else {
            if (r->type == REDIS_REPLY_ERROR) {
                aw_log(AW_LOG_ERROR, "Redis XAUTOCLAIM: %s", r->str);
            }

            d->last_claim_ms = now;
        }

        freeReplyObject(r);
    }

    argv[0] = "XREADGROUP";
    argv[1] = "GROUP";
    argv[2] = AIHUB_USAGE_GROUP;
    argv[3] = d->consumer;
    argv[4] = "COUNT";
    argv[5] = count;

    if (d->read_pending || !may_block) {
        argv[6] = "STREAMS";
        argv[7] = d->stream;
        argv[8] = d->read_pending ? "0" : ">";
        r = redisCommandArgv(d->rc, 9, argv, NULL);

    } else {
        argv[6] = "BLOCK";
        argv[7] = block;
        argv[8] = "STREAMS";
        argv[9] = d->stream;
        argv[10] = ">";
        r = redisCommandArgv(d->rc, 11, argv, NULL);
    }

    if (r == NULL) {
        if (*d->stop) {
            return NULL;
        }

        aw_log(AW_LOG_ERROR, "Redis XREADGROUP: %s", d->rc->errstr);
        aw_drain_redis_lost(d);
        return NULL;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        aw_log(AW_LOG_ERROR, "Redis XREADGROUP: %s", r->str);
        freeReplyObject(r);

        /* NOGROUP: the stream was deleted (Redis wiped): create again */
        aw_drain_redis_lost(d);
        return NULL;
    }

    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0
        && r->element[0]->type == REDIS_REPLY_ARRAY
        && r->element[0]->elements >= 2)
    {
        list = r->element[0]->element[1];

        if (list->type == REDIS_REPLY_ARRAY) {
            *n = aw_drain_collect(d, list, &entries);
        }
    }

    if (d->read_pending && *n == 0) {
        d->read_pending = 0;
    }

    if (*n == 0) {
        freeReplyObject(r);
        return NULL;
    }

    aw_drain_tag(d);

    return r;
}


/* the round in d->all and the one held in x change places */

void
aw_drain_swap(aw_drain_t *d, aw_round_t *x)
{
    aw_entry_t  *all;
    size_t       size;

    all = d->all;
    size = d->all_size;
    d->all = x->all;
    d->all_size = x->size;
    x->all = all;
    x->size = size;
    d->entries = d->all;
}


/* hiredis could not take a command (out of memory): as if Redis failed */

static int
aw_drain_unsent(aw_drain_t *d, const char *what)
{
    aw_log(AW_LOG_ERROR, "Redis %s: %s", what,
           d->rc->errstr[0] ? d->rc->errstr : "cannot format the command");
    aw_drain_redis_lost(d);

    return -1;
}


/* sends the commands appended to d->rc, reads their n replies; 0 all ok */

static int
aw_drain_replies(aw_drain_t *d, int n, const char *what)
{
    int          i, rc;
    redisReply  *r;

    rc = 0;

    for (i = 0; i < n; i++) {
        if (redisGetReply(d->rc, (void **) &r) != REDIS_OK) {
            aw_log(AW_LOG_ERROR, "Redis %s: %s", what, d->rc->errstr);
            aw_drain_redis_lost(d);
            return -1;
        }

        if (r->type == REDIS_REPLY_ERROR) {
            aw_log(AW_LOG_ERROR, "Redis %s: %s", what, r->str);
            rc = -1;
        }

        freeReplyObject(r);
    }

    if (rc != 0) {
        aw_drain_redis_lost(d);
    }

    return rc;
}


/*
 * The replies to a round's dead-letter XADDs, in the order of its refused
 * events.  One Redis refuses (at its maxmemory, OOM) is written to the log
 * instead, the event whole, and the round goes on: kept pending, the
 * entry would be read again and refused again, and the stream, never
 * trimmed behind it, would keep Redis full.  0, or -1 the connection
 * failed (d->rc is then NULL).
 */

static int
aw_drain_dead_replies(aw_drain_t *d, aw_entry_t *all, size_t n)
{
    size_t       i;
    redisReply  *r;

    for (i = 0; i < n; i++) {
        if (all[i].reason == NULL) {
            continue;
        }

        if (redisGetReply(d->rc, (void **) &r) != REDIS_OK) {
            aw_log(AW_LOG_ERROR, "Redis XADD (dead letter): %s",
                   d->rc->errstr);
            aw_drain_redis_lost(d);
            return -1;
        }

        if (r->type == REDIS_REPLY_ERROR) {
            aw_log(AW_LOG_ERROR, "Redis refused the dead letter of stream "
                   "entry %s (%s): %s; the event: %.*s", all[i].stream_id,
                   all[i].reason, r->str,
                   all[i].raw ? (int) all[i].raw_len : 0,
                   all[i].raw ? all[i].raw : "");
        }

        freeReplyObject(r);
        d->dead_count++;
    }

    return 0;
}


/*
 * A committed round: dead-letters its refused events (all their XADDs in
 * one round trip), then, only once every one is in the dead letters (or,
 * refused there, in the log: aw_drain_dead_replies), ACKs
 * and deletes its entries, each id once (the events of an entry are
 * consecutive and share its stream_id pointer), XACK and XDEL in one
 * round trip.  0 done; -1 Redis failed (d->rc is then NULL: the entries
 * stay pending and are read again, their events found already stored).
 */

int
aw_drain_ack(aw_drain_t *d, aw_entry_t *all, size_t n)
{
    int           dead;
    size_t        i, acks;
    const char  **argv;
    aw_entry_t   *en;

    dead = 0;

    for (i = 0; i < n; i++) {
        en = &all[i];

        if (en->reason == NULL) {
            continue;
        }

        aw_log(AW_LOG_WARN, "dead-lettering stream entry %s: %s",
               en->stream_id, en->reason);

        if (redisAppendCommand(d->rc, "XADD %s * event %b reason %s "
                               "stream_id %s", d->dead,
                               en->raw ? en->raw : "",
                               en->raw ? en->raw_len : (size_t) 0,
                               en->reason, en->stream_id)
            != REDIS_OK)
        {
            return aw_drain_unsent(d, "XADD (dead letter)");
        }

        dead++;
    }

    if (dead > 0 && aw_drain_dead_replies(d, all, n) != 0) {
        return -1;
    }

    argv = aw_xmalloc((n + 3) * sizeof(char *));
    argv[0] = "XACK";
    argv[1] = d->stream;
    argv[2] = AIHUB_USAGE_GROUP;
    acks = 3;

    for (i = 0; i < n; i++) {
        if (i == 0 || all[i].stream_id != all[i - 1].stream_id) {
            argv[acks++] = all[i].stream_id;
        }
    }

    if (redisAppendCommandArgv(d->rc, (int) acks, argv, NULL) != REDIS_OK) {
        free(argv);
        return aw_drain_unsent(d, "XACK");
    }

    /*
     * An ACKed entry is stored (or dead-lettered) for good: delete it, or
     * the stream keeps every event ever sent until Redis refuses XADD.
     * Only this round's entries, sent after their ACK: an entry not yet
     * read, or pending on any consumer, stays.
     */

    argv[2] = d->stream;
    argv[1] = "XDEL";
    if (redisAppendCommandArgv(d->rc, (int) acks - 1, argv + 1, NULL)
        != REDIS_OK)
    {
        free(argv);
        return aw_drain_unsent(d, "XDEL");
    }

    free(argv);

    return aw_drain_replies(d, 2, "XACK/XDEL");
}


/* ACKs the round committed last, if any (when Redis is there) */

void
aw_drain_ack_done(aw_drain_t *d)
{
    if (d->done.reply == NULL) {
        return;
    }

    if (d->rc != NULL) {
        aw_drain_ack(d, d->done.all, d->done.n);
    }

    freeReplyObject(d->done.reply);
    d->done.reply = NULL;
    d->done.n = 0;
}


/*
 * While MySQL stores a round (aw_drain_store_batch calls this between
 * sending its INSERT and reading the answer; once a round): ACK the round
 * committed before, then read the next round's new entries into d->ahead
 * without waiting for any.  Never our own pending entries (the round in
 * MySQL is among them) nor a claim: those wait for the next round's
 * aw_drain_fetch.  Read ahead, entries are pending on this consumer as
 * any entry read is: a crash before their round commits leaves them to
 * be read again.
 */

void
aw_drain_overlap(aw_drain_t *d)
{
    size_t       n;
    aw_entry_t  *entries;
    redisReply  *r;

    if (!d->overlap) {
        return;
    }

    d->overlap = 0;

    aw_drain_ack_done(d);

    if (d->rc == NULL || d->read_pending || *d->stop
        || d->ahead.reply != NULL || aw_drain_claim_due(d, aw_now_ms()))
    {
        return;
    }

    entries = d->entries;
    aw_drain_swap(d, &d->ahead);
    r = aw_drain_fetch(d, &n, 0);
    aw_drain_swap(d, &d->ahead);
    d->entries = entries;

    d->ahead.reply = r;
    d->ahead.n = r ? n : 0;
    memcpy(d->ahead.marker, d->read_marker, sizeof(d->read_marker));
}
