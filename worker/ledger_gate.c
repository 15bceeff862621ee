/*
 * The drain's side of the order between a restore of Redis and the
 * drain's commits (sql/008_ledger_gate.sql, restore.c): the gate read
 * before each COMMIT, and the events a restore could not count added to
 * the counters once committed (README, "Leases").
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "db.h"
#include "ledger_state.h"
#include "restore.h"


/*
 * The gate's epoch in share mode (sql/008_ledger_gate.sql), read just
 * before a drain transaction's COMMIT and held through it: a restore (which
 * holds the gate exclusively from raising the epoch until it has read the
 * ledger and set the marker) reads the ledger either after this COMMIT, or
 * before it, and then this read waits for the restore and sees its epoch.
 * Held only for the COMMIT, so a drain that stalls (a MariaDB lock, a
 * stopped process) before it does not hold a restore up.  -2: not migrated
 * (no gate); -1 MySQL failed.
 */

long long
aw_drain_gate(aw_drain_t *d)
{
    long long  epoch;

    epoch = aw_restore_epoch(d->db, " LOCK IN SHARE MODE");

    if (epoch > d->gate_epoch) {
        d->gate_epoch = epoch;
    }

    if (epoch == -2 && !d->gate_warned) {
        d->gate_warned = 1;
        aw_log(AW_LOG_WARN, "no table ledger_gate (run \"" AW_NAME
               " migrate\"): a restore of Redis is not ordered against "
               "the drain");
    }

    return epoch;
}


/*
 * Whether a transaction that saw the gate at "epoch" stores events that
 * the counters lack: the round was read while the marker held an older
 * epoch (d->store_marker), so Redis lost their calls since, and the
 * restore that raised the epoch read the ledger before this transaction.
 */

int
aw_drain_add_due(aw_drain_t *d, long long epoch)
{
    char       *end;
    long long   read_at;

    if (epoch < 0 || d->store_marker[0] == '\0') {
        return 0;
    }

    read_at = strtoll(d->store_marker, &end, 10);

    return *end == '\0' && epoch > read_at;
}


/* kept for the chores (ledger.c) to add once Redis is there again */

static void
aw_drain_add_keep(aw_drain_t *d, long long epoch, const char *where,
    unsigned long long tag)
{
    if (d->add.len && d->add_epoch != epoch) {
        /* a restore more meanwhile: it read the events kept before */
        aw_buf_reset(&d->add);
    }

    if (d->add.len == 0) {
        d->add_tag = tag;
    }

    d->add_epoch = epoch;
    aw_buf_printf(&d->add, "%s(%s)", d->add.len ? " OR " : "", where);
}


/*
 * After the COMMIT: the committed events of "where" into the counters.
 * Without Redis now, or if Redis or MySQL fails, kept (d->add) for the
 * chores to add once the connection is made again, before anything else
 * raises a counter: added after the sync raised the counters to the
 * ledger, they would count twice.  (The accounts added to already are
 * not added to again: the guard of restore.c's script.)
 */

void
aw_drain_add(aw_drain_t *d, long long epoch, const char *where,
    unsigned long long tag)
{
    if (d->rc == NULL || aw_drain_add_now(d, epoch, where, tag) != 0) {
        aw_drain_add_keep(d, epoch, where, tag);
    }
}


/* 0 added (or nothing to add any more), -1 failed */

int
aw_drain_add_now(aw_drain_t *d, long long epoch, const char *where,
    unsigned long long tag)
{
    long long  n;

    n = aw_restore_add(d->db, d->rc, epoch, where, tag);

    if (n < 0) {
        aw_log(AW_LOG_ERROR, "adding events stored after a restore of "
               "Redis to the period counters failed; trying again once "
               "Redis and MySQL are there");
        return -1;
    }

    aw_log(AW_LOG_WARN, "events read before Redis lost its data, stored "
           "after its restore: added to the period counters of %lld "
           "accounts", n);

    return 0;
}
