/*
 * Invoices: the rules and the arithmetic, from MySQL to MySQL (the
 * commands are cmd_invoice.c's).
 *
 * Rules (DESIGN.md 2 and 6, README "Invoices and reports"), per account
 * and calendar month (UTC):
 *   - the plan in force at the month's end is charged its base fee once
 *     (no proration; a per-account contract price replaces it, once);
 *   - the allowance is the largest included-calls of the plans in force
 *     (or the account's override);
 *   - successful calls (2xx) are counted in time order; those beyond the
 *     allowance are billed per token at the model's price in force when
 *     the call happened (none: the close fails), if the plan recorded on
 *     the call allows overage: prompt tokens at the input price, total -
 *     prompt at the output price; one line per (model, price), rounded
 *     once, to cents, half up; MySQL does the sums, so memory does not
 *     grow with the number of calls;
 *   - a spend cap limits the overage (an adjustment line);
 *   - every invoice has a usage line (calls and tokens, amount 0).
 * The terms (plan, base fee, allowance, cap, overage rules) are stored
 * with the invoice; the events an invoice bills are marked with its id,
 * so "check" can recompute it exactly, on its own terms.  An issued
 * invoice never changes: events arriving late for a closed period are
 * billed in the next close as an adjustment line naming that period (the
 * difference between the period recomputed with them, on that period's
 * terms, and what was billed for it).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "db.h"
#include "invoice.h"
#include "webhook.h"


aw_line_t *
aw_invoice_add(aw_invoice_t *inv, const char *kind)
{
    aw_line_t  *l;

    if (inv->nlines == inv->cap) {
        inv->cap = inv->cap ? inv->cap * 2 : 8;
        inv->lines = realloc(inv->lines, inv->cap * sizeof(aw_line_t));
        if (inv->lines == NULL) {
            abort();
        }
    }

    l = &inv->lines[inv->nlines++];
    memset(l, 0, sizeof(*l));
    snprintf(l->kind, sizeof(l->kind), "%s", kind);

    return l;
}


void
aw_invoice_free(aw_invoice_t *inv)
{
    free(inv->lines);
    memset(inv, 0, sizeof(*inv));
}


/*
 * The account's allowance for a period [start, end): the largest
 * included-calls of the plans in force during it (each with the account's
 * override).  Used by invoices and by "rebuild" (the overage counter).
 * Returns it, 0 if no subscription was in force, or -1.
 */

long long
aw_account_allowance(MYSQL *db, long long account, time_t start, time_t end)
{
    char  te[AW_SQL_TIME_LEN], ts[AW_SQL_TIME_LEN];

    return aw_db_scalar(db, -1, "SELECT IFNULL(MAX(IFNULL(o.included_calls, "
                        "p.included_calls)), 0) "
                        "FROM subscriptions s JOIN plans p ON p.id = s.plan "
                        "LEFT JOIN account_overrides o ON o.account = "
                        "s.account WHERE s.account = %lld AND s.started_at < "
                        "%s AND (s.ended_at IS NULL OR s.ended_at > %s)",
                        account, aw_sql_time(end, te),
                        aw_sql_time(start, ts));
}


/*
 * The terms of an account for [start, end) from today's tables: the plan
 * in force at the period's end (the last one that started before it) and
 * its base fee or the contract price, the allowance, the spend cap, the
 * overage rule of every plan.  Returns 0, 1 if no subscription was in
 * force during the period, or -1.
 */

int
aw_terms_load(MYSQL *db, long long account, time_t start, time_t end,
    aw_terms_t *t)
{
    MYSQL_RES  *res;
    MYSQL_ROW   row;
    char        te[AW_SQL_TIME_LEN], ts[AW_SQL_TIME_LEN];

    memset(t, 0, sizeof(*t));

    res = aw_db_query(db, "SELECT p.name, "
                      "IFNULL(o.base_fee_cents, p.base_fee_cents) "
                      "FROM subscriptions s JOIN plans p ON p.id = s.plan "
                      "LEFT JOIN account_overrides o ON o.account = "
                      "s.account WHERE s.account = %lld AND s.started_at < "
                      "%s AND (s.ended_at IS NULL OR s.ended_at > %s) "
                      "ORDER BY s.started_at DESC, s.id DESC LIMIT 1",
                      account, aw_sql_time(end, te), aw_sql_time(start, ts));
    if (res == NULL) {
        return -1;
    }

    row = mysql_fetch_row(res);

    if (row == NULL) {
        mysql_free_result(res);
        return 1;
    }

    snprintf(t->plan, sizeof(t->plan), "%s", row[0]);
    t->base_cents = strtoll(row[1], NULL, 10);
    mysql_free_result(res);

    t->included = aw_account_allowance(db, account, start, end);
    if (t->included < 0) {
        return -1;
    }

    res = aw_db_query(db, "SELECT p.name, IFNULL(o.overage, p.overage), "
                      "IFNULL(o.spend_cap_micros, 0) FROM plans p "
                      "LEFT JOIN account_overrides o ON o.account = %lld "
                      "ORDER BY p.id", account);
    if (res == NULL) {
        return -1;
    }

    while ((row = mysql_fetch_row(res)) != NULL) {

        if (t->nplans == AW_TERMS_PLANS) {
            /* a plan left out would bill its calls no overage */
            aw_log(AW_LOG_ERROR, "more than %d plans: the terms of an "
                   "invoice hold at most %d", AW_TERMS_PLANS,
                   AW_TERMS_PLANS);
            mysql_free_result(res);
            return -1;
        }

        snprintf(t->plans[t->nplans].name, sizeof(t->plans[0].name), "%s",
                 row[0]);
        t->plans[t->nplans++].overage = row[1][0] == '1';
        t->cap_micros = strtoll(row[2], NULL, 10);
    }

    mysql_free_result(res);

    return 0;
}


/*
 * The stored form, one line of words:
 *   v1 plan=pro base_cents=1900 included=10000 cap_micros=0
 *   overage=free:0,pro:1,enterprise:1
 * Plan names are words without ' ', '=', ',' and ':'.  Returns 0, or -1
 * if a name cannot be stored or out is too small.
 */

int
aw_terms_format(const aw_terms_t *t, char *out, size_t size)
{
    size_t  i, n;
    int     k;

    k = snprintf(out, size, "v1 plan=%s base_cents=%lld included=%lld "
                 "cap_micros=%lld overage=", t->plan, t->base_cents,
                 t->included, t->cap_micros);

    if (k < 0 || (size_t) k >= size
        || strpbrk(t->plan, " =,:") != NULL || t->plan[0] == '\0')
    {
        return -1;
    }

    n = (size_t) k;

    for (i = 0; i < t->nplans; i++) {
        if (strpbrk(t->plans[i].name, " =,:") != NULL) {
            return -1;
        }

        k = snprintf(out + n, size - n, "%s%s:%d", i ? "," : "",
                     t->plans[i].name, t->plans[i].overage);

        if (k < 0 || (size_t) k >= size - n) {
            return -1;
        }

        n += (size_t) k;
    }

    return 0;
}


int
aw_terms_parse(const char *s, aw_terms_t *t)
{
    const char  *p, *e;
    size_t       len;
    int          n;

    memset(t, 0, sizeof(*t));

    n = 0;

    if (sscanf(s, "v1 plan=%32s base_cents=%lld included=%lld "
               "cap_micros=%lld overage=%n", t->plan, &t->base_cents,
               &t->included, &t->cap_micros, &n) != 4
        || n == 0)
    {
        return -1;
    }

    for (p = s + n; *p != '\0' && t->nplans < AW_TERMS_PLANS; p = e + 1) {
        e = strchr(p, ':');

        if (e == NULL || (len = (size_t) (e - p)) == 0
            || len >= sizeof(t->plans[0].name)
            || (e[1] != '0' && e[1] != '1'))
        {
            return -1;
        }

        memcpy(t->plans[t->nplans].name, p, len);
        t->plans[t->nplans].name[len] = '\0';
        t->plans[t->nplans++].overage = e[1] == '1';

        e += 2;

        if (*e == '\0') {
            break;
        }

        if (*e != ',') {
            return -1;
        }
    }

    return 0;
}


/*
 * The terms stored in table (invoices, terms_held) for (account, period):
 * 0, 1 if the invoice was issued without a subscription (AW_TERMS_NONE),
 * 2 if none are stored, or -1.
 */

static int
aw_terms_stored(MYSQL *db, const char *table, long long account,
    const char *period, aw_terms_t *t)
{
    int          rc;
    char         sql[160], **row;
    aw_rows_t   *res;

    snprintf(sql, sizeof(sql), "SELECT terms FROM %s WHERE account = %lld "
             "AND terms IS NOT NULL AND period = ?", table, account);

    res = aw_db_select_params(db, sql, &period, 1);
    if (res == NULL) {
        return -1;
    }

    row = aw_rows_next(res);

    if (row == NULL) {
        aw_rows_free(res);
        return 2;
    }

    if (strcmp(row[0], AW_TERMS_NONE) == 0) {
        /* issued for late usage alone, in a month without a subscription */
        aw_rows_free(res);
        memset(t, 0, sizeof(*t));
        return 1;
    }

    rc = aw_terms_parse(row[0], t);
    aw_rows_free(res);

    if (rc != 0) {
        aw_log(AW_LOG_ERROR, "account %lld, %s: unreadable terms in %s",
               account, period, table);
    }

    return rc;
}


/*
 * The terms the issued invoice of (account, period) was computed with; an
 * invoice issued before they were stored (NULL), or no invoice at all,
 * falls back to the terms at the month's end (aw_terms_at_end).  Returns
 * 0, 1 (no subscription), -1.
 */

int
aw_terms_of_invoice(MYSQL *db, long long account, const char *period,
    aw_terms_t *t)
{
    int     rc;
    time_t  start, end;

    if (aw_period_bounds(period, &start, &end) != 0) {
        return -1;
    }

    rc = aw_terms_stored(db, "invoices", account, period, t);

    return rc != 2 ? rc : aw_terms_at_end(db, account, period, start, end, t);
}


/*
 * The terms of an account for the month [start, end) as they were at its
 * end: held by a change made since (terms_held.c), or today's tables.
 * Returns 0, 1 if no subscription was in force, or -1.
 */

int
aw_terms_at_end(MYSQL *db, long long account, const char *period,
    time_t start, time_t end, aw_terms_t *t)
{
    int  rc;

    rc = aw_terms_stored(db, "terms_held", account, period, t);

    return rc != 2 ? rc : aw_terms_load(db, account, start, end, t);
}


/* the base line: the plan's fee or the contract price, once */

static void
aw_invoice_base(aw_invoice_t *inv, const aw_terms_t *t, const char *period)
{
    aw_line_t  *l;
    char        money[32];

    snprintf(inv->plan, sizeof(inv->plan), "%s", t->plan);

    l = aw_invoice_add(inv, "base");
    l->amount_cents = t->base_cents;
    aw_money_format(t->base_cents, money, sizeof(money));
    snprintf(l->description, sizeof(l->description),
             "%s plan, %s (base fee $%s)", t->plan, period, money);
}


/* whether a call recorded under plan may go beyond the allowance */

static int
aw_terms_overage(const aw_terms_t *t, const char *plan)
{
    size_t  i;
    int     allowed;

    allowed = -1;

    for (i = 0; i < t->nplans; i++) {
        if (strcmp(t->plans[i].name, plan) == 0) {
            allowed = t->plans[i].overage;
            break;
        }
    }

    if (allowed < 0) {
        /* a plan name MySQL does not know: the invoice plan's rule */
        for (i = 0; i < t->nplans; i++) {
            if (strcmp(t->plans[i].name, t->plan) == 0) {
                allowed = t->plans[i].overage;
            }
        }
    }

    return allowed > 0;
}


/* output tokens in SQL: the rule of aw_billing_output_tokens() */
#define AW_SQL_OUTPUT                                                        \
    "GREATEST(CAST(e.completion_tokens AS SIGNED), "                         \
    "CAST(e.total_tokens AS SIGNED) - CAST(e.prompt_tokens AS SIGNED))"


/*
 * Sums the successful calls of [start, end) into b, in bounded memory:
 * MySQL aggregates them.  1. all calls: count, prompt and output tokens;
 * 2. the first call beyond the allowance, in time order (ts, event_id);
 * 3. the calls from it on, per model, plan and price in force (the
 * model_prices row with the latest valid_from at or before the call).  A
 * group that may go beyond the allowance but whose model had no price at
 * the time is an error: billing it $0 would be silent.
 */

static int
aw_invoice_events(MYSQL *db, const aw_invoice_t *inv, const aw_terms_t *t,
    long long which, time_t start, time_t end, aw_billing_t *b)
{
    MYSQL_RES   *res;
    MYSQL_ROW    row;
    char         filter[64], where[512], sql[2048], ts[32], id[40];
    char         t0[AW_SQL_TIME_LEN], t1[AW_SQL_TIME_LEN];
    int          rc, allowed;
    aw_rows_t   *rs;

    if (which == AW_EVENTS_ALL) {
        filter[0] = '\0';

    } else if (which == AW_EVENTS_BILLED) {
        snprintf(filter, sizeof(filter), "AND e.invoice IS NOT NULL");

    } else {
        snprintf(filter, sizeof(filter), "AND e.invoice = %lld", which);
    }

    snprintf(where, sizeof(where), "e.account = %lld AND e.ts >= %s AND "
             "e.ts < %s AND " AW_SQL_COUNTED("e.") " %s", inv->account,
             aw_sql_time(start, t0), aw_sql_time(end, t1), filter);

    res = aw_db_query(db, "SELECT COUNT(*), IFNULL(SUM(e.prompt_tokens), 0), "
                      "IFNULL(SUM(" AW_SQL_OUTPUT "), 0) FROM usage_events e "
                      "WHERE %s", where);
    if (res == NULL) {
        return -1;
    }

    row = mysql_fetch_row(res);
    b->calls = row ? strtoll(row[0], NULL, 10) : 0;
    b->prompt_tokens = row ? strtoll(row[1], NULL, 10) : 0;
    b->completion_tokens = row ? strtoll(row[2], NULL, 10) : 0;
    mysql_free_result(res);

    if (b->calls <= b->included) {
        return 0;
    }

    res = aw_db_query(db, "SELECT e.ts, e.event_id FROM usage_events e "
                      "WHERE %s ORDER BY e.ts, e.event_id LIMIT 1 "
                      "OFFSET %lld", where, b->included);
    if (res == NULL) {
        return -1;
    }

    row = mysql_fetch_row(res);

    if (row == NULL) {
        mysql_free_result(res);
        return -1;
    }

    /* a DATETIME(3) and an event id, as MySQL gave them: parameters */
    snprintf(ts, sizeof(ts), "%s", row[0] ? row[0] : "");
    snprintf(id, sizeof(id), "%s", row[1] ? row[1] : "");
    mysql_free_result(res);

    snprintf(sql, sizeof(sql), "SELECT g.model, g.plan, mp.price_in_micros, "
             "mp.price_out_micros, g.n, g.prompt, g.output, "
             "g.first FROM (SELECT e.model, e.plan, "
             "(SELECT MAX(p.valid_from) FROM model_prices p "
             "WHERE p.model = e.model AND p.valid_from <= e.ts) "
             "AS vf, COUNT(*) AS n, SUM(e.prompt_tokens) AS prompt, "
             "SUM(" AW_SQL_OUTPUT ") AS output, MIN(e.ts) AS first "
             "FROM usage_events e WHERE %s AND (e.ts > ? OR "
             "(e.ts = ? AND e.event_id >= ?)) "
             "GROUP BY e.model, e.plan, vf) g "
             "LEFT JOIN model_prices mp ON mp.model = g.model AND "
             "mp.valid_from = g.vf ORDER BY g.first, g.model, "
             "g.plan", where);

    rs = aw_db_select_params(db, sql, (const char *[]) { ts, ts, id }, 3);
    if (rs == NULL) {
        return -1;
    }

    rc = 0;

    while ((row = aw_rows_next(rs)) != NULL) {
        allowed = aw_terms_overage(t, row[1]);

        if (allowed && (row[2] == NULL || row[3] == NULL)) {
            aw_log(AW_LOG_ERROR, "no price for model \"%s\" at %s (account "
                   "%lld): a call beyond the allowance cannot be billed; "
                   "add the model's price (model_prices) and close again",
                   row[0], row[7], inv->account);
            rc = -1;
            break;
        }

        aw_billing_over(b, row[0], allowed,
                        row[2] ? strtoll(row[2], NULL, 10) : 0,
                        row[3] ? strtoll(row[3], NULL, 10) : 0,
                        strtoll(row[4], NULL, 10), strtoll(row[5], NULL, 10),
                        strtoll(row[6], NULL, 10));
    }

    aw_rows_free(rs);

    return rc;
}


/* the usage line, the overage lines, the spend cap, the total */

static void
aw_invoice_lines(aw_invoice_t *inv, aw_billing_t *b, long long cap_micros)
{
    aw_line_t  *l;
    long long   over, cap_cents;
    size_t      i;
    char        money[32];

    over = aw_billing_finish(b);
    inv->calls = b->calls;

    l = aw_invoice_add(inv, "usage");
    l->calls = b->calls;
    l->prompt_tokens = b->prompt_tokens;
    l->completion_tokens = b->completion_tokens;
    snprintf(l->description, sizeof(l->description),
             "%lld calls (%lld included), %lld prompt + %lld output "
             "tokens", b->calls, inv->included, b->prompt_tokens,
             b->completion_tokens);

    for (i = 0; i < b->nlines; i++) {
        l = aw_invoice_add(inv, "overage");
        snprintf(l->model, sizeof(l->model), "%s", b->lines[i].model);
        l->price_in = b->lines[i].price_in;
        l->price_out = b->lines[i].price_out;
        l->prompt_tokens = b->lines[i].prompt_tokens;
        l->completion_tokens = b->lines[i].completion_tokens;
        l->calls = b->lines[i].calls;
        l->amount_cents = b->lines[i].amount_cents;
        snprintf(l->description, sizeof(l->description),
                 "overage %s: %lld calls beyond the %lld included, "
                 "%lld in / %lld out tokens", l->model, l->calls,
                 inv->included, l->prompt_tokens, l->completion_tokens);
    }

    cap_cents = aihub_money_micros_to_cents(cap_micros);

    if (cap_micros > 0 && over > cap_cents) {
        l = aw_invoice_add(inv, "adjustment");
        l->amount_cents = cap_cents - over;
        aw_money_format(cap_cents, money, sizeof(money));
        snprintf(l->description, sizeof(l->description),
                 "spend cap: overage limited to $%s", money);
    }

    for (i = 0; i < inv->nlines; i++) {
        inv->total_cents += inv->lines[i].amount_cents;
    }
}


/*
 * Computes the invoice of one account for one period from usage_events,
 * with the given terms.  which: AW_EVENTS_ALL, AW_EVENTS_BILLED, or an
 * invoice id (its events).  Returns 0 or -1 (logged).
 */

int
aw_invoice_compute(MYSQL *db, long long account, const char *period,
    long long which, const aw_terms_t *terms, aw_invoice_t *inv)
{
    time_t        start, end;
    aw_billing_t  b;

    memset(inv, 0, sizeof(*inv));
    inv->account = account;

    if (aw_period_bounds(period, &start, &end) != 0) {
        return -1;
    }

    inv->included = terms->included;
    aw_invoice_base(inv, terms, period);

    aw_billing_init(&b, inv->included);

    if (aw_invoice_events(db, inv, terms, which, start, end, &b) != 0) {
        aw_billing_free(&b);
        aw_invoice_free(inv);
        return -1;
    }

    aw_invoice_lines(inv, &b, terms->cap_micros);
    aw_billing_free(&b);

    return 0;
}
