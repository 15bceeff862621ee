/*
 * The billing terms of an ended month that is not closed yet, held as they
 * were at its end (sql/006_terms_held.sql).
 *
 * A month is billed on the plan in force at its end, with that plan's fee,
 * allowance and overage rule and the account's contract values.  Plans and
 * overrides keep no history, and a month can only be closed after it has
 * ended: a "plan set" or "account override" made in between (a new price
 * from the 1st, entered on the 1st) was billed to the month before it.  So
 * each of them, before it changes anything, holds the terms of every ended
 * month not yet closed (of the last 24) for the accounts it touches, computed from the
 * tables as they still are; the first change after a month's end holds
 * them (later ones find them held), and the close bills on them.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "db.h"
#include "db_stmt.h"
#include "invoice.h"


/*
 * the ended months looked back over, newest first; a closed one is
 * passed over, not the end of the walk: months may be closed out of
 * order (one whose close was refused, for a model without a price, stays
 * open behind a later one), and the walk stopped at the later one: the
 * open month was billed on the new terms
 */
#define AW_TERMS_HELD_MONTHS  24


static int aw_terms_hold_month(MYSQL *db, const char *period,
    const char *where, const char *value);


/*
 * where: a condition on the subscription s (and its plan p) that names the
 * accounts a change touches, with one "?" bound to value.  Returns 0 or -1
 * (then the change must not be made).
 */

int
aw_terms_hold(MYSQL *db, const char *where, const char *value)
{
    int        i;
    long long  closed;
    char       period[16], prev[16];

    aw_period_of(time(NULL), period, sizeof(period));

    for (i = 0; i < AW_TERMS_HELD_MONTHS; i++) {
        aw_period_prev(period, prev, sizeof(prev));
        memcpy(period, prev, sizeof(period));

        if (period[0] == '\0') {
            return -1;
        }

        closed = aw_db_scalar_params(db, -1, "SELECT COUNT(*) FROM "
                                     "billing_periods WHERE period = ?",
                                     (const char *[]) { period }, 1);
        if (closed < 0) {
            return -1;
        }

        if (closed > 0) {
            continue;
        }

        if (aw_terms_hold_month(db, period, where, value) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
aw_terms_hold_month(MYSQL *db, const char *period, const char *where,
    const char *value)
{
    int          r;
    char         sql[512], text[AW_TERMS_TEXT], id[24], **row;
    char         te[AW_SQL_TIME_LEN], ts[AW_SQL_TIME_LEN];
    time_t       start, end;
    long long    account;
    aw_rows_t   *res;
    aw_terms_t   t;
    const char  *v[3];

    if (aw_period_bounds(period, &start, &end) != 0) {
        return -1;
    }

    snprintf(sql, sizeof(sql), "SELECT DISTINCT s.account FROM "
             "subscriptions s JOIN plans p ON p.id = s.plan WHERE "
             "s.started_at < %s AND (s.ended_at IS NULL OR s.ended_at > %s) "
             "AND %s ORDER BY s.account", aw_sql_time(end, te),
             aw_sql_time(start, ts), where);

    res = aw_db_select_params(db, sql, &value, 1);
    if (res == NULL) {
        return -1;
    }

    while ((row = aw_rows_next(res)) != NULL) {
        account = strtoll(row[0], NULL, 10);

        r = aw_terms_load(db, account, start, end, &t);

        if (r == 1) {
            continue;
        }

        if (r != 0 || aw_terms_format(&t, text, sizeof(text)) != 0) {
            aw_log(AW_LOG_ERROR, "account %lld, %s: the terms at the "
                   "month's end cannot be held", account, period);
            aw_rows_free(res);
            return -1;
        }

        snprintf(id, sizeof(id), "%lld", account);
        v[0] = id;
        v[1] = period;
        v[2] = text;

        /* a change made before, since the month's end, held them first */

        if (aw_db_exec_params(db, "INSERT IGNORE INTO terms_held (account, "
                              "period, terms) VALUES (?, ?, ?)", v, 3)
            != 0)
        {
            aw_rows_free(res);
            return -1;
        }
    }

    aw_rows_free(res);

    return 0;
}
