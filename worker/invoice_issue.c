/*
 * Issuing and checking invoices (the rules are invoice.c's): an issued
 * invoice never changes; events arriving late for a closed period are
 * billed in the next close as an adjustment line naming that period.
 */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mysql.h>

#include "aihub_worker.h"
#include "db.h"
#include "invoice.h"


static int
aw_invoice_insert_line(MYSQL *db, long long invoice, const aw_line_t *l)
{
    char         n[8][24];
    const char  *v[11];

    snprintf(n[0], sizeof(n[0]), "%lld", invoice);
    snprintf(n[1], sizeof(n[1]), "%lld", l->price_in);
    snprintf(n[2], sizeof(n[2]), "%lld", l->price_out);
    snprintf(n[3], sizeof(n[3]), "%lld", l->prompt_tokens);
    snprintf(n[4], sizeof(n[4]), "%lld", l->completion_tokens);
    snprintf(n[5], sizeof(n[5]), "%lld", l->calls);
    snprintf(n[6], sizeof(n[6]), "%lld", l->amount_cents);

    v[0] = n[0];
    v[1] = l->kind;
    v[2] = l->model;
    v[3] = n[1];
    v[4] = n[2];
    v[5] = n[3];
    v[6] = n[4];
    v[7] = n[5];
    v[8] = n[6];
    v[9] = l->ref_period;
    v[10] = l->description;

    return aw_db_exec_params(db, "INSERT INTO invoice_lines (invoice, kind, "
                             "model, price_in_micros, price_out_micros, "
                             "prompt_tokens, completion_tokens, calls, "
                             "amount_cents, ref_period, description) VALUES "
                             "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", v, 11);
}


/*
 * What was billed so far for (account, period): the period's own invoice
 * lines plus adjustments naming the period in later invoices.  -1 if the
 * query failed (never taken as nothing billed: the adjustment would bill
 * the whole month again).
 */

static int
aw_invoice_billed(MYSQL *db, long long account, const char *period,
    long long *billed)
{
    char  sql[256];

    snprintf(sql, sizeof(sql), "SELECT IFNULL(SUM(l.amount_cents), 0) FROM "
             "invoice_lines l JOIN invoices i ON i.id = l.invoice WHERE "
             "i.account = %lld AND ((i.period = ? AND l.ref_period = '') OR "
             "l.ref_period = ?)", account);

    *billed = aw_db_scalar_params(db, LLONG_MIN, sql,
                                  (const char *[]) { period, period }, 2);

    return *billed == LLONG_MIN ? -1 : 0;
}


/*
 * (account, period) computed from the events "which" on terms; a month
 * without a subscription in force (nosub) charges nothing: no lines.
 */

static int
aw_invoice_recompute(MYSQL *db, long long account, const char *period,
    long long which, int nosub, const aw_terms_t *terms, aw_invoice_t *inv)
{
    if (nosub) {
        memset(inv, 0, sizeof(*inv));
        inv->account = account;
        return 0;
    }

    return aw_invoice_compute(db, account, period, which, terms, inv);
}


/*
 * How many events of the account's closed months before start no invoice
 * billed yet (late usage, which aw_invoice_adjustments() bills), or -1.
 */

static long long
aw_invoice_late_waiting(MYSQL *db, long long account, time_t start)
{
    char  t0[AW_SQL_TIME_LEN];

    return aw_db_scalar(db, -1, "SELECT COUNT(*) FROM usage_events e JOIN "
                        "billing_periods b ON b.period = "
                        "DATE_FORMAT(e.ts, '%%Y-%%m') WHERE e.account = "
                        "%lld AND e.invoice IS NULL AND e.ts < %s", account,
                        aw_sql_time(start, t0));
}


/*
 * Late usage: events of earlier closed periods that no invoice billed yet
 * become adjustment lines on this invoice, one per period.
 */

static int
aw_invoice_adjustments(MYSQL *db, long long account, long long invoice,
    time_t start, aw_invoice_t *inv)
{
    MYSQL_RES     *res;
    MYSQL_ROW      row;
    char           periods[64][8];
    size_t         n, i;
    int            r;
    long long      late, billed;
    time_t         qs, qe;
    char           t0[AW_SQL_TIME_LEN], t1[AW_SQL_TIME_LEN];
    aw_terms_t     terms;
    aw_invoice_t   q;
    aw_line_t     *l;

    /* the (account, invoice, ts) index: this account's unbilled events
       before the month, not its whole history */

    res = aw_db_query(db, "SELECT DISTINCT DATE_FORMAT(e.ts, '%%Y-%%m') "
                      "FROM usage_events e WHERE e.account = %lld AND "
                      "e.invoice IS NULL AND e.ts < %s ORDER BY 1", account,
                      aw_sql_time(start, t0));
    if (res == NULL) {
        return -1;
    }

    n = 0;

    while ((row = mysql_fetch_row(res)) != NULL && n < 64) {
        snprintf(periods[n], 8, "%s", row[0]);

        /* only closed months: an open one is billed by its own close */
        r = (int) aw_db_scalar_params(db, -1, "SELECT COUNT(*) FROM "
                                      "billing_periods WHERE period = ?",
                                      (const char *[]) { periods[n] }, 1);
        if (r < 0) {
            mysql_free_result(res);
            return -1;
        }

        n += r > 0;
    }

    mysql_free_result(res);

    for (i = 0; i < n; i++) {
        aw_period_bounds(periods[i], &qs, &qe);

        if (aw_db_exec(db, "UPDATE usage_events SET invoice = %lld WHERE "
                       "account = %lld AND ts >= %s AND ts < %s AND "
                       "invoice IS NULL", invoice, account,
                       aw_sql_time(qs, t0), aw_sql_time(qe, t1))
            != 0)
        {
            return -1;
        }

        late = (long long) mysql_affected_rows(db);

        if (aw_invoice_billed(db, account, periods[i], &billed) != 0) {
            return -1;
        }

        /* the month recomputed on the terms its invoice was issued with */

        r = aw_terms_of_invoice(db, account, periods[i], &terms);

        if (r < 0) {
            return -1;
        }

        /* no subscription in that month (r == 1): nothing to charge */

        if (aw_invoice_recompute(db, account, periods[i], AW_EVENTS_BILLED,
                                 r == 1, &terms, &q) != 0)
        {
            return -1;
        }

        l = aw_invoice_add(inv, "adjustment");
        snprintf(l->ref_period, sizeof(l->ref_period), "%.7s", periods[i]);
        l->calls = late;
        l->amount_cents = q.total_cents - billed;
        snprintf(l->description, sizeof(l->description),
                 "adjustment for %.7s: %lld late usage events", periods[i],
                 late);
        inv->total_cents += l->amount_cents;

        aw_invoice_free(&q);
    }

    return 0;
}


/*
 * Issues the invoice of one account for an ended period, inside the
 * caller's transaction: marks the events it bills, computes it from
 * exactly those, adds the adjustments for late usage of earlier closed
 * periods, writes it.  A month without a subscription in force gets an
 * invoice only if late usage waits (of the month its subscription ended,
 * say): then one of adjustments alone, as no later close would bill that
 * usage either.  Returns 1 and adds to *total when issued, 0 when nothing
 * is to be billed, -1 on error.
 */

int
aw_invoice_issue(MYSQL *db, long long account, const char *period,
    time_t start, time_t end, long long *total)
{
    int            r, nosub;
    long long      id, late;
    size_t         k;
    aw_terms_t     terms;
    aw_invoice_t   inv;
    char           text[AW_TERMS_TEXT], n[4][24], sql[128];
    char           t0[AW_SQL_TIME_LEN], t1[AW_SQL_TIME_LEN];
    const char    *v[7];

    /* is there anything to bill?  the plan in force tells */

    r = aw_terms_at_end(db, account, period, start, end, &terms);
    if (r < 0) {
        return -1;
    }

    nosub = (r == 1);

    if (nosub) {
        late = aw_invoice_late_waiting(db, account, start);

        if (late <= 0) {
            return late < 0 ? -1 : 0;
        }

        snprintf(text, sizeof(text), "%s", AW_TERMS_NONE);

    } else if (aw_terms_format(&terms, text, sizeof(text)) != 0) {
        aw_log(AW_LOG_ERROR, "account %lld, %s: the terms cannot be stored "
               "(a plan name with a space, '=', ',' or ':')", account,
               period);
        return -1;
    }

    snprintf(sql, sizeof(sql), "INSERT INTO invoices (account, period, "
             "plan) VALUES (%lld, ?, '')", account);

    if (aw_db_exec_params(db, sql, &period, 1) != 0)
    {
        return -1;
    }

    id = (long long) mysql_insert_id(db);

    /* mark what this invoice bills, then compute from exactly that (a
       month without a subscription marks nothing: it charges nothing) */

    if ((!nosub
         && aw_db_exec(db, "UPDATE usage_events SET invoice = %lld WHERE "
                       "account = %lld AND ts >= %s AND ts < %s AND "
                       "invoice IS NULL", id, account,
                       aw_sql_time(start, t0), aw_sql_time(end, t1)) != 0)
        || aw_invoice_recompute(db, account, period, id, nosub, &terms, &inv)
           != 0)
    {
        return -1;
    }

    if (aw_invoice_adjustments(db, account, id, start, &inv) != 0) {
        aw_invoice_free(&inv);
        return -1;
    }

    for (k = 0; k < inv.nlines; k++) {
        if (aw_invoice_insert_line(db, id, &inv.lines[k]) != 0) {
            aw_invoice_free(&inv);
            return -1;
        }
    }

    snprintf(n[0], sizeof(n[0]), "%lld", inv.calls);
    snprintf(n[1], sizeof(n[1]), "%lld", inv.included);
    snprintf(n[2], sizeof(n[2]), "%lld", inv.total_cents);
    snprintf(n[3], sizeof(n[3]), "%lld", id);
    v[0] = inv.plan;
    v[1] = text;
    v[2] = n[0];
    v[3] = n[1];
    v[4] = n[2];
    v[5] = n[2];
    v[6] = n[3];

    r = aw_db_exec_params(db, "UPDATE invoices SET plan = ?, terms = ?, "
                          "calls = ?, included_calls = ?, subtotal_cents = "
                          "?, total_cents = ? WHERE id = ?", v, 7);

    if (r != 0 || aw_invoice_seal(db, id, period) != 0) {
        aw_invoice_free(&inv);
        return -1;
    }

    *total += inv.total_cents;
    aw_invoice_free(&inv);

    return 1;
}


static int
aw_line_same(const aw_line_t *a, MYSQL_ROW row)
{
    return strcmp(a->kind, row[0]) == 0 && strcmp(a->model, row[1]) == 0
           && a->price_in == strtoll(row[2], NULL, 10)
           && a->price_out == strtoll(row[3], NULL, 10)
           && a->prompt_tokens == strtoll(row[4], NULL, 10)
           && a->completion_tokens == strtoll(row[5], NULL, 10)
           && a->calls == strtoll(row[6], NULL, 10)
           && a->amount_cents == strtoll(row[7], NULL, 10);
}


/*
 * What an issued invoice's header states (plan, calls, included calls,
 * subtotal) against its recomputation inv; prints each difference and
 * returns how many, or -1 if the header cannot be read.
 */

static int
aw_invoice_check_header(MYSQL *db, long long id, long long account,
    const char *p, long long total, const aw_invoice_t *inv)
{
    int         bad;
    char        a[32], b[32];
    MYSQL_RES  *lres;
    MYSQL_ROW   lrow;

    bad = 0;

    lres = aw_db_query(db, "SELECT plan, calls, included_calls, "
                       "subtotal_cents FROM invoices WHERE id = %lld", id);

    if (lres == NULL) {
        return -1;
    }

    lrow = mysql_fetch_row(lres);

    if (lrow != NULL) {
        if (strcmp(lrow[0], inv->plan) != 0) {
            printf("MISMATCH invoice %lld (account %lld, %s): plan %s, "
                   "recomputed %s\n", id, account, p, lrow[0], inv->plan);
            bad++;
        }

        if (strtoll(lrow[1], NULL, 10) != inv->calls) {
            printf("MISMATCH invoice %lld (account %lld, %s): %s calls, "
                   "recomputed %lld\n", id, account, p, lrow[1],
                   inv->calls);
            bad++;
        }

        if (strtoll(lrow[2], NULL, 10) != inv->included) {
            printf("MISMATCH invoice %lld (account %lld, %s): %s calls "
                   "included, recomputed %lld\n", id, account, p, lrow[2],
                   inv->included);
            bad++;
        }

        if (strtoll(lrow[3], NULL, 10) != total) {
            aw_money_format(strtoll(lrow[3], NULL, 10), a, sizeof(a));
            aw_money_format(total, b, sizeof(b));
            printf("MISMATCH invoice %lld (account %lld, %s): subtotal "
                   "$%s, total $%s\n", id, account, p, a, b);
            bad++;
        }
    }

    mysql_free_result(lres);

    return bad;
}


/*
 * Recomputes one issued invoice: its total from its lines, its own lines
 * from the events it billed, and its (account, period) from all billed
 * events against invoice + later adjustments.  Prints each difference;
 * returns how many.
 */

int
aw_invoice_check_one(MYSQL *db, long long id, long long account,
    const char *p, long long total)
{
    int            bad, n, r;
    long long      sum, billed, late;
    size_t         k;
    time_t         start, end;
    char           a[32], b[32];
    char           t0[AW_SQL_TIME_LEN], t1[AW_SQL_TIME_LEN];
    MYSQL_RES     *lres;
    MYSQL_ROW      lrow;
    aw_terms_t     terms;
    aw_invoice_t   inv;

    bad = 0;

    r = aw_period_bounds(p, &start, &end) != 0
        ? -1 : aw_terms_of_invoice(db, account, p, &terms);

    /* r == 1: issued for late usage alone, without a subscription */

    if (r < 0) {
        printf("MISMATCH invoice %lld (account %lld, %s): its terms "
               "cannot be read\n", id, account, p);
        return 1;
    }

    /* 1. the total is the sum of the lines */

    sum = aw_db_scalar(db, 0, "SELECT IFNULL(SUM(amount_cents), 0) FROM "
                       "invoice_lines WHERE invoice = %lld", id);

    if (sum != total) {
        aw_money_format(total, a, sizeof(a));
        aw_money_format(sum, b, sizeof(b));
        printf("MISMATCH invoice %lld (account %lld, %s): total $%s, "
               "lines sum to $%s\n", id, account, p, a, b);
        bad++;
    }

    /* 2. its own lines, recomputed from the events it billed */

    if (aw_invoice_recompute(db, account, p, id, r == 1, &terms, &inv) < 0) {
        return bad + 1;
    }

    /* 3. what its header states: plan, calls, allowance, subtotal */

    n = aw_invoice_check_header(db, id, account, p, total, &inv);

    if (n < 0) {
        aw_invoice_free(&inv);
        return bad + 1;
    }

    bad += n;

    /* 4. what was issued: its digest and status */

    bad += aw_invoice_audit_one(db, id, account, p);

    lres = aw_db_query(db, "SELECT kind, model, price_in_micros, "
                       "price_out_micros, prompt_tokens, "
                       "completion_tokens, calls, amount_cents, "
                       "description FROM invoice_lines WHERE invoice = "
                       "%lld AND ref_period = '' ORDER BY id", id);

    if (lres == NULL) {
        aw_invoice_free(&inv);
        return bad + 1;
    }

    k = 0;

    while ((lrow = mysql_fetch_row(lres)) != NULL) {
        if (k >= inv.nlines || !aw_line_same(&inv.lines[k], lrow)) {
            aw_money_format(strtoll(lrow[7], NULL, 10), a, sizeof(a));

            if (k < inv.nlines) {
                aw_money_format(inv.lines[k].amount_cents, b, sizeof(b));
            } else {
                snprintf(b, sizeof(b), "(no such line)");
            }

            printf("MISMATCH invoice %lld (account %lld, %s) line %zu "
                   "\"%s\": issued $%s, recomputed $%s\n", id, account,
                   p, k + 1, lrow[8], a, b);
            bad++;
        }

        k++;
    }

    if (k != inv.nlines) {
        printf("MISMATCH invoice %lld (account %lld, %s): %zu lines "
               "issued, %zu recomputed\n", id, account, p, k,
               inv.nlines);
        bad++;
    }

    mysql_free_result(lres);
    aw_invoice_free(&inv);

    /* 5. the period as a whole: all billed usage = all charges */

    if (aw_invoice_recompute(db, account, p, AW_EVENTS_BILLED, r == 1,
                             &terms, &inv)
        < 0)
    {
        return bad + 1;
    }

    if (aw_invoice_billed(db, account, p, &billed) != 0) {
        aw_invoice_free(&inv);
        return bad + 1;
    }

    if (inv.total_cents != billed) {
        aw_money_format(billed, a, sizeof(a));
        aw_money_format(inv.total_cents, b, sizeof(b));
        printf("MISMATCH account %lld %s: charged $%s with "
               "adjustments, usage comes to $%s\n", account, p, a, b);
        bad++;
    }

    aw_invoice_free(&inv);

    late = aw_db_scalar(db, 0, "SELECT COUNT(*) FROM usage_events WHERE "
                        "account = %lld AND invoice IS NULL AND ts >= %s "
                        "AND ts < %s", account, aw_sql_time(start, t0),
                        aw_sql_time(end, t1));

    if (late > 0) {
        printf("note: account %lld %s: %lld late events not billed "
               "yet (next close adjusts)\n", account, p, late);
    }

    return bad;
}
