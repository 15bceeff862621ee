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
#include <mysqld_error.h>

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


/* no table ledger_additions: said once, and nothing is kept */

static void
aw_drain_add_missing(aw_drain_t *d)
{
    if (!d->add_missing) {
        d->add_missing = 1;
        aw_log(AW_LOG_WARN, "no table ledger_additions (run \"" AW_NAME
               " migrate\"): events stored after a restore of Redis that "
               "missed them are not added to the period counters");
    }
}


/*
 * Before the COMMIT of a transaction whose events a restore could not
 * count (aw_drain_add_due): those of "where" kept in ledger_additions
 * (sql/009_ledger_additions.sql) with the epoch, in the same transaction,
 * to be added once committed (aw_drain_add_made).  Kept in the ledger, an
 * addition outlives this process.  0 kept (or the table missing: said
 * once, and not added), -1 MySQL failed.
 */

int
aw_drain_add_keep(aw_drain_t *d, long long epoch, const char *where,
    unsigned long long tag)
{
    if (aw_db_exec(d->db, "INSERT IGNORE INTO ledger_additions (batch, "
                   "epoch, event_id) SELECT %llu, %lld, event_id FROM "
                   "usage_events WHERE %s", tag, epoch, where) == 0)
    {
        return 0;
    }

    if (mysql_errno(d->db) != ER_NO_SUCH_TABLE) {
        return -1;
    }

    aw_drain_add_missing(d);

    return 0;
}


/*
 * The kept additions made: of "tag" after its COMMIT, of every batch (0)
 * at the chores (those of a worker that died or lost Redis before it made
 * them, this one's too).  0 done, -1 some left (no Redis or MySQL now, or
 * a failure): the chores try again, before anything raises a counter to
 * the ledger.
 */

int
aw_drain_add_made(aw_drain_t *d, unsigned long long tag)
{
    long long  n;

    n = (d->rc == NULL || d->db == NULL) ? -1
        : aw_restore_additions(d->db, d->rc, tag);

    if (n == -2) {
        aw_drain_add_missing(d);
        d->add_pending = 0;
        return 0;
    }

    if (n < 0) {
        if (!d->add_pending) {
            aw_log(AW_LOG_ERROR, "adding events stored after a restore of "
                   "Redis to the period counters failed; trying again once "
                   "Redis and MySQL are there");
        }

        d->add_pending = 1;
        return -1;
    }

    if (tag == 0) {
        d->add_pending = 0;
    }

    if (n > 0) {
        aw_log(AW_LOG_WARN, "events read before Redis lost its data, stored "
               "after its restore: added to the period counters of %lld "
               "accounts", n);
    }

    return 0;
}
