/*
 * The ledger's MySQL side: one batch of usage events in one transaction,
 * INSERT IGNORE on the UNIQUE event_id, daily rollups for the rows newly
 * inserted only; row by row when MySQL refuses the batch, to find the
 * event it refuses.  ledger.c retries, commits and ACKs around it.
 *
 * The batch's events go as one bulk execution of a prepared INSERT where
 * the server has it (ledger_bulk.c).  Else, and with --insert text, the
 * batch's multi-row INSERT, like the rollups' multi-row upsert always,
 * carries the events' strings escaped (mysql_real_escape_string, in
 * quotes), not as parameters: the exception to db_stmt.h's rule.  They are
 * the drain's hot path (worker/bench measures it), one statement per
 * batch; a prepared statement's text would change with every batch's size,
 * so it would be prepared per batch (a round trip more for the same bytes).
 * event.c checked every string first (the id is 32 lowercase hex digits,
 * the others bounded in length).  The event-by-event fallback
 * (aw_row_store) follows the rule.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <mysql.h>
#include <openssl/rand.h>

#include "aihub_worker.h"
#include "db.h"
#include "ledger_state.h"


void
aw_drain_db_lost(aw_drain_t *d)
{
    d->next_entries = NULL;
    d->packet_max = 0;
    aw_bulk_close(d->bulk);

    if (d->db) {
        mysql_query(d->db, "ROLLBACK");
        aw_db_close(d->db);
        d->db = NULL;
    }
}


/* MySQL refused the batch: the transaction is gone, nothing is ACKed */

static int
aw_drain_rolled_back(aw_drain_t *d)
{
    aw_log(AW_LOG_ERROR, "MySQL: %s (%u); batch rolled back, nothing ACKed",
           mysql_error(d->db), mysql_errno(d->db));

    return -1;
}


/* the INSERT of a batch's valid entries into q; returns how many */

static size_t
aw_batch_insert(aw_drain_t *d, aw_entry_t *entries, size_t n,
    unsigned long long tag, aw_buf_t *q)
{
    size_t       i, k, valid;
    long long    nums[9];
    aw_entry_t  *en;
    char         ts[32];

    aw_buf_puts(q, "INSERT IGNORE INTO usage_events (event_id, ts, "
                "account, key_prefix, plan, model, provider, prompt_tokens, "
                "completion_tokens, total_tokens, cost_micros, status, "
                "streamed, aborted, estimated, latency_ms, node, "
                "drain_batch) VALUES ");
    valid = 0;

    for (i = 0; i < n; i++) {
        en = &entries[i];

        if (en->reason) {
            continue;
        }

        nums[0] = en->ev.prompt_tokens;
        nums[1] = en->ev.completion_tokens;
        nums[2] = en->ev.total_tokens;
        nums[3] = en->ev.cost_micros;
        nums[4] = en->ev.status;
        nums[5] = en->ev.streamed;
        nums[6] = en->ev.aborted;
        nums[7] = en->ev.estimated;
        nums[8] = en->ev.latency_ms;

        aw_ts_format(en->ev.ts_ms, ts, sizeof(ts));

        /* without printf: a dozen numbers a row, thousands of rows */

        aw_buf_puts(q, valid ? ", ('" : "('");
        aw_buf_puts(q, en->ev.id);
        aw_buf_puts(q, "', '");
        aw_buf_puts(q, ts);
        aw_buf_puts(q, "', ");
        aw_buf_put_ll(q, en->ev.account);
        aw_buf_puts(q, ", ");
        aw_buf_sql_str(q, d->db, en->ev.key);
        aw_buf_puts(q, ", ");
        aw_buf_sql_str(q, d->db, en->ev.plan);
        aw_buf_puts(q, ", ");
        aw_buf_sql_str(q, d->db, en->ev.model);
        aw_buf_puts(q, ", ");
        aw_buf_sql_str(q, d->db, en->ev.provider);

        for (k = 0; k < 9; k++) {
            aw_buf_puts(q, ", ");
            aw_buf_put_ll(q, nums[k]);
        }

        aw_buf_puts(q, ", ");
        aw_buf_sql_str(q, d->db, en->ev.node);
        aw_buf_puts(q, ", ");
        aw_buf_put_ull(q, tag);
        aw_buf_puts(q, ")");
        valid++;
    }

    return valid;
}


/* a random batch id, never 0 (the column's default); -1 on failure */

static int
aw_batch_tag(unsigned long long *tag)
{
    if (RAND_bytes((unsigned char *) tag, sizeof(*tag)) != 1) {
        return -1;
    }

    *tag = (*tag >> 1) | 1;

    return 0;
}


/*
 * While MySQL inserts this batch, after aw_drain_overlap read the next
 * round ahead: that round's first INSERT, built now, is sent as soon as
 * its turn comes (aw_drain_store_batch takes it when the slice is the
 * same).
 */

static void
aw_batch_insert_ahead(aw_drain_t *d)
{
    size_t  n;

    d->next_entries = NULL;

    if (d->ahead.reply == NULL || d->ahead.n == 0
        || aw_batch_tag(&d->next_tag) != 0)
    {
        return;
    }

    n = aw_drain_slice(d, d->ahead.all, d->ahead.n);

    aw_buf_reset(&d->next_sql);
    d->next_valid = aw_batch_insert(d, d->ahead.all, n, d->next_tag,
                                    &d->next_sql);
    d->next_entries = d->ahead.all;
    d->next_n = n;
}


/*
 * The batch's INSERT as text: the one built ahead if it is this batch's
 * (its tag with it), else built now; sent, and while MySQL works the round
 * before is ACKed and the next read and its INSERT built.  Reuses q.
 * 0: executed (*valid rows sent, *inserted stored); 2: no batch id; -1:
 * MySQL failed.
 */

static int
aw_batch_send_text(aw_drain_t *d, size_t n, aw_buf_t *q, size_t *valid,
    long long *inserted, unsigned long long *tag)
{
    int  sent;

    if (d->next_entries == d->entries && d->next_n == n) {
        /* built while MySQL stored the round before */
        aw_buf_free(q);
        *q = d->next_sql;
        *tag = d->next_tag;
        *valid = d->next_valid;
        aw_buf_init(&d->next_sql);
        d->next_entries = NULL;

    } else {
        if (aw_batch_tag(tag) != 0) {
            return 2;
        }

        *valid = aw_batch_insert(d, d->entries, n, *tag, q);
    }

    if (*valid == 0) {
        return 0;
    }

    sent = mysql_send_query(d->db, q->data, q->len) == 0;

    if (sent && d->overlap) {
        aw_drain_overlap(d);
        aw_batch_insert_ahead(d);
    }

    if (!sent || mysql_read_query_result(d->db) != 0) {
        return -1;
    }

    *inserted = (long long) mysql_affected_rows(d->db);

    return 0;
}


/*
 * The batch's INSERT as one bulk execution (ledger_bulk.c), with a batch
 * id of its own.  Its answer is waited for: the round before is ACKed and
 * the next one read first.  Returns as aw_batch_send_text().
 */

static int
aw_batch_send_bulk(aw_drain_t *d, size_t n, size_t *valid,
    long long *inserted, unsigned long long *tag)
{
    if (d->overlap) {
        aw_drain_overlap(d);
    }

    if (aw_batch_tag(tag) != 0) {
        return 2;
    }

    return aw_bulk_insert(d, d->entries, n, *tag, valid, inserted);
}


/* the ids of the valid events of d->entries[0 .. n), quoted, to "ids" */

static void
aw_batch_ids(aw_drain_t *d, size_t n, aw_buf_t *ids)
{
    size_t       i;
    const char  *sep;

    sep = "";

    for (i = 0; i < n; i++) {
        if (d->entries[i].reason == NULL) {
            aw_buf_printf(ids, "%s'%s'", sep, d->entries[i].ev.id);
            sep = ", ";
        }
    }
}


/*
 * The batch as one INSERT IGNORE tagged with a random batch id: one bulk
 * execution where the server has it, else one multi-row statement.
 * When MySQL stored every valid event as sent (affected rows == valid
 * events, no warnings: the normal case) the rollups are summed in C and
 * applied with one multi-row upsert; otherwise (duplicates, or MySQL
 * adjusted a value) the rows carrying the id are the new ones and the
 * rollups are summed from them in SQL.  Either way each stored event is
 * counted once, in the same transaction.  0: committed; 2: MySQL refused
 * the statement (rolled back: store row by row to find the event it
 * refuses); -1: the connection failed.
 */

int
aw_drain_store_batch(aw_drain_t *d, size_t n, long long *inserted,
    long long *dups)
{
    int                  rc, due;
    size_t               i, valid, nroll;
    aw_buf_t             q, ids;
    long long            epoch;
    unsigned long long   tag;

    *inserted = *dups = 0;

    if (mysql_query(d->db, "START TRANSACTION") != 0) {
        goto failed;
    }

    aw_buf_init(&ids);
    aw_rollup_reset(d, &nroll);

    aw_buf_init(&q);

    rc = (!d->bulk_off && aw_bulk_supported(d->db))
         ? aw_batch_send_bulk(d, n, &valid, inserted, &tag)
         : aw_batch_send_text(d, n, &q, &valid, inserted, &tag);

    if (rc == 2) {
        aw_buf_free(&q);
        aw_buf_free(&ids);
        mysql_query(d->db, "ROLLBACK");
        return 2;
    }

    if (rc != 0) {
        aw_buf_free(&q);
        aw_buf_free(&ids);

        if (!aw_db_data_error(d->db)) {
            goto failed;
        }

        aw_log(AW_LOG_WARN, "MySQL refused the batch (%s); storing it "
               "event by event", aw_db_error(d->db));
        mysql_query(d->db, "ROLLBACK");

        return 2;
    }

    *dups = (long long) valid - *inserted;

    if (*inserted > 0 && *inserted == (long long) valid
        && mysql_warning_count(d->db) == 0)
    {
        /* every valid event is a new row, stored as sent */

        for (i = 0; i < n; i++) {
            if (d->entries[i].reason == NULL) {
                aw_rollup_add(d, &nroll, &d->entries[i].ev);
            }
        }

        if (aw_rollup_apply(d, nroll, &q) != 0) {
            aw_buf_free(&q);
            aw_buf_free(&ids);
            goto failed;
        }

    } else if (*inserted > 0) {
        aw_batch_ids(d, n, &ids);

        aw_buf_reset(&q);
        aw_buf_printf(&q, "INSERT INTO usage_daily (account, day, model, "
                      "requests, calls, prompt_tokens, completion_tokens, "
                      "total_tokens, cost_micros) SELECT account, DATE(ts), "
                      "model, COUNT(*), SUM(" AW_SQL_COUNTED("") "), "
                      "SUM(prompt_tokens), SUM(completion_tokens), "
                      "SUM(total_tokens), SUM(cost_micros) FROM usage_events "
                      "WHERE event_id IN (%s) AND drain_batch = %llu "
                      "GROUP BY account, DATE(ts), model" AW_ROLLUP_UPSERT,
                      ids.data, tag);

        if (mysql_real_query(d->db, q.data, q.len) != 0) {
            aw_buf_free(&q);
            aw_buf_free(&ids);
            goto failed;
        }
    }

    aw_buf_free(&q);

    /*
     * The gate just before the COMMIT, held through it (aw_drain_gate);
     * events a restore could not count kept with them (found by their ids,
     * not by a scan of the ledger), and added once committed
     */

    epoch = aw_drain_gate(d);
    due = (*inserted > 0 && aw_drain_add_due(d, epoch));

    if (due) {
        aw_buf_reset(&ids);
        aw_buf_printf(&ids, "drain_batch = %llu AND event_id IN (", tag);
        aw_batch_ids(d, n, &ids);
        aw_buf_printf(&ids, ")");
    }

    if (epoch == -1
        || (due && aw_drain_add_keep(d, epoch, ids.data, tag) != 0)
        || mysql_query(d->db, "COMMIT") != 0)
    {
        aw_buf_free(&ids);
        goto failed;
    }

    aw_buf_free(&ids);

    if (due) {
        (void) aw_drain_add_made(d, tag);
    }

    return 0;

failed:

    if (aw_db_data_error(d->db)) {
        /* a data error (e.g. a rollup out of range): retrying the batch
           would fail forever, so row by row finds the event and
           dead-letters it */
        aw_log(AW_LOG_WARN, "MySQL refused the batch after the insert "
               "(%s); storing it event by event", mysql_error(d->db));
        mysql_query(d->db, "ROLLBACK");

        return 2;
    }

    return aw_drain_rolled_back(d);
}


/*
 * One event's row and, when it is new, its rollup: 1 stored, 0 already
 * stored, -1 MySQL refused it (aw_db_errno() tells why).
 */

static int
aw_row_store(aw_drain_t *d, aw_entry_t *en, aw_buf_t *q)
{
    size_t     nroll;
    char       ts[32];
    aw_stmt_t  st;

    aw_ts_format(en->ev.ts_ms, ts, sizeof(ts));

    aw_stmt_init(&st);
    aw_buf_puts(&st.sql, "INSERT IGNORE INTO usage_events (event_id, ts, "
                "account, key_prefix, plan, model, provider, "
                "prompt_tokens, completion_tokens, total_tokens, "
                "cost_micros, status, streamed, aborted, estimated, "
                "latency_ms, node) VALUES (");
    aw_stmt_str(&st, en->ev.id);
    aw_buf_puts(&st.sql, ", ");
    aw_stmt_str(&st, ts);
    aw_buf_printf(&st.sql, ", %lld, ", en->ev.account);
    aw_stmt_str(&st, en->ev.key);
    aw_buf_puts(&st.sql, ", ");
    aw_stmt_str(&st, en->ev.plan);
    aw_buf_puts(&st.sql, ", ");
    aw_stmt_str(&st, en->ev.model);
    aw_buf_puts(&st.sql, ", ");
    aw_stmt_str(&st, en->ev.provider);
    aw_buf_printf(&st.sql, ", %lld, %lld, %lld, %lld, %d, %d, %d, %d, "
                  "%lld, ", en->ev.prompt_tokens, en->ev.completion_tokens,
                  en->ev.total_tokens, en->ev.cost_micros, en->ev.status,
                  en->ev.streamed, en->ev.aborted, en->ev.estimated,
                  en->ev.latency_ms);
    aw_stmt_str(&st, en->ev.node);
    aw_buf_puts(&st.sql, ")");

    if (aw_stmt_exec(d->db, &st) != 0) {
        return -1;
    }

    if (aw_db_affected_rows() != 1) {
        return 0;
    }

    aw_rollup_reset(d, &nroll);
    aw_rollup_add(d, &nroll, &en->ev);

    return aw_rollup_apply(d, nroll, q) == 0 ? 1 : -1;
}


/* marks en refused with MySQL's reason */

static void
aw_row_refused(aw_drain_t *d, aw_entry_t *en, const char *what)
{
    snprintf(en->reason_buf, sizeof(en->reason_buf),
             "MySQL refused the event%s: %s", what, aw_db_error(d->db));
    en->reason = en->reason_buf;
}


/*
 * The COMMIT of aw_drain_store_rows' events with each == 0: the gate just
 * before it, and the new rows ("add": "event_id IN (...") kept for an
 * addition if a restore missed them (*kept then).  0 committed; 3 the
 * COMMIT was refused with a data error (rolled back); -1 the connection
 * failed.
 */

static int
aw_rows_commit(aw_drain_t *d, aw_buf_t *add, unsigned long long tag,
    int *kept)
{
    long long  epoch;

    epoch = aw_drain_gate(d);

    if (epoch == -1) {
        return -1;
    }

    if (add->len && aw_drain_add_due(d, epoch)) {
        aw_buf_printf(add, ")");

        if (aw_drain_add_keep(d, epoch, add->data, tag) != 0) {
            return -1;
        }

        *kept = 1;
    }

    if (mysql_query(d->db, "COMMIT") != 0) {
        *kept = 0;

        if (!aw_db_data_error(d->db)) {
            return -1;
        }

        aw_log(AW_LOG_WARN, "MySQL refused the COMMIT of the events (%s); "
               "storing each in a transaction of its own",
               mysql_error(d->db));
        mysql_query(d->db, "ROLLBACK");

        return 3;
    }

    return 0;
}


/*
 * The batch event by event (after MySQL refused the whole): finds the
 * event it refuses, its row or its rollup (each new row's rollup is
 * applied right after it, so a rollup MySQL refuses names its event).
 *
 * With each == 0 the events share one transaction: 0 committed; 1 an
 * entry was refused (marked, rolled back: try again without it); 3 the
 * COMMIT was refused with a data error (not the connection: no event is
 * named, so store again with each == 1); -1 the connection failed.
 *
 * With each == 1 every event is a transaction of its own, so a refused
 * COMMIT names its event too: a refused event is marked and the others
 * go on; 0 done, -1 the connection failed (the events committed so far
 * are found already stored on the retry).
 */

int
aw_drain_store_rows(aw_drain_t *d, size_t n, int each, long long *inserted,
    long long *dups)
{
    size_t               i;
    int                  rc, started, kept;
    char                 one[64];
    aw_buf_t             q, add;
    long long            epoch;
    aw_entry_t          *en;
    unsigned long long   tag;

    *inserted = *dups = 0;
    started = 0;
    kept = 0;

    /*
     * The events stored after a restore that missed them, kept with them
     * before the COMMIT (aw_drain_add_keep): with each == 0, every new row
     * (add), if the COMMIT comes after such a restore; with each == 1,
     * each row whose own COMMIT does, at the epoch it saw.
     */
    aw_buf_init(&add);

    if (aw_batch_tag(&tag) != 0) {
        tag = (unsigned long long) aw_now_ms();
    }

    aw_buf_init(&q);

    for (i = 0; i < n; i++) {
        en = &d->entries[i];

        if (en->reason) {
            continue;
        }

        if (!started || each) {
            if (mysql_query(d->db, "START TRANSACTION") != 0) {
                goto failed;
            }

            started = 1;
        }

        rc = aw_row_store(d, en, &q);

        if (rc >= 0 && each) {
            epoch = aw_drain_gate(d);

            if (epoch == -1) {
                goto failed;
            }

            snprintf(one, sizeof(one), "event_id = '%s'", en->ev.id);

            if (rc == 1 && aw_drain_add_due(d, epoch)) {
                if (aw_drain_add_keep(d, epoch, one, tag) != 0) {
                    goto failed;
                }

                kept = 1;
            }

            if (mysql_query(d->db, "COMMIT") != 0) {
                if (!aw_db_data_error(d->db)) {
                    goto failed;
                }

                aw_row_refused(d, en, " at COMMIT");
                mysql_query(d->db, "ROLLBACK");
                continue;
            }
        }

        if (rc >= 0) {
            *inserted += rc;
            *dups += 1 - rc;

            if (rc == 1 && !each) {
                aw_buf_printf(&add, "%s'%s'",
                              add.len ? ", " : "event_id IN (", en->ev.id);
            }

            continue;
        }

        if (!aw_db_data_error(d->db)) {
            goto failed;
        }

        aw_row_refused(d, en, "");
        mysql_query(d->db, "ROLLBACK");

        if (!each) {
            aw_buf_free(&q);
            aw_buf_free(&add);
            return 1;
        }
    }

    aw_buf_free(&q);

    if (!each && started) {
        rc = aw_rows_commit(d, &add, tag, &kept);

        if (rc != 0) {
            aw_buf_free(&add);
            return rc == 3 ? 3 : aw_drain_rolled_back(d);
        }
    }

    aw_buf_free(&add);

    if (kept) {
        (void) aw_drain_add_made(d, tag);
    }

    return 0;

failed:

    aw_buf_free(&q);
    aw_buf_free(&add);

    if (kept) {
        /* committed before: made at the chores */
        d->add_pending = 1;
    }

    return aw_drain_rolled_back(d);
}
