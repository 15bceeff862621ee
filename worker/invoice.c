/*
 * Invoices: "aihub-worker invoice close | show | check".
 *
 * Rules (DESIGN.md 2 and 6), per account and calendar month (UTC):
 *   - every plan in force during the period is charged its base fee once
 *     (no proration; a per-account contract price overrides it);
 *   - the allowance is the largest included-calls of those plans (or the
 *     account's override);
 *   - successful calls (2xx) are counted in time order; those beyond the
 *     allowance are billed per token at the model's price in force when
 *     the call happened, if the plan recorded on the call allows overage;
 *     one line per (model, price), rounded once, to cents, half up;
 *   - a spend cap limits the overage (an adjustment line);
 *   - every invoice has a usage line (calls and tokens, amount 0).
 * The events an invoice bills are marked with its id, so "check" can
 * recompute it exactly.  An issued invoice never changes: events arriving
 * late for a closed period are billed in the next close as an adjustment
 * line naming that period (the difference between the period recomputed
 * with them and what was billed for it).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_worker.h"


typedef struct {
    char       kind[12];
    char       model[129];
    long long  price_in;
    long long  price_out;
    long long  prompt_tokens;
    long long  completion_tokens;
    long long  calls;
    long long  amount_cents;
    char       ref_period[8];
    char       description[256];
} aw_line_t;


typedef struct {
    long long   account;
    char        plan[33];
    long long   included;
    long long   calls;
    long long   total_cents;
    aw_line_t  *lines;
    size_t      nlines;
    size_t      cap;
} aw_invoice_t;


/* which events a computation reads */
#define AW_EVENTS_ALL     -1LL     /* every event of the period */
#define AW_EVENTS_BILLED   0LL     /* events some invoice billed */


static const char  aw_invoice_usage[] =
    "usage: " AW_NAME " invoice close --period YYYY-MM [--force]\n"
    "       " AW_NAME " invoice show --period YYYY-MM [--account NAME] "
    "[--json]\n"
    "       " AW_NAME " invoice check [--period YYYY-MM]\n"
    "       " AW_NAME " invoice deliver [--period YYYY-MM]\n"
    "\n"
    "close    issues one invoice per account for an ended month (UTC):\n"
    "         base fees, overage lines per (model, price), adjustments for\n"
    "         late usage of earlier closed months; idempotent.  Refuses\n"
    "         while usage of the month is still in the stream (--force\n"
    "         skips that check).  Delivers to the webhook if configured.\n"
    "show     prints issued invoices (or their JSON)\n"
    "check    recomputes every issued invoice from usage_events; exit 1\n"
    "         and a report of each difference if any\n"
    "deliver  retries webhook deliveries that have not succeeded\n";


static aw_line_t *
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


static void
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
    return aw_db_scalar(db, -1, "SELECT IFNULL(MAX(IFNULL(o.included_calls, "
                        "p.included_calls)), 0) "
                        "FROM subscriptions s JOIN plans p ON p.id = s.plan "
                        "LEFT JOIN account_overrides o ON o.account = "
                        "s.account WHERE s.account = %lld AND s.started_at < "
                        "FROM_UNIXTIME(%lld) AND (s.ended_at IS NULL OR "
                        "s.ended_at > FROM_UNIXTIME(%lld))", account,
                        (long long) end, (long long) start);
}


/* the overage rule of each plan name, with the account's override */

typedef struct {
    struct {
        char  name[33];
        int   overage;
    }           plans[32];
    size_t      nplans;
    long long   cap_micros;
} aw_rules_t;


/*
 * Plans in force during [start, end): one base line per plan (its fee, or
 * the account's contract price).  Returns how many, or -1.
 */

static int
aw_invoice_base(MYSQL *db, aw_invoice_t *inv, const char *period,
    time_t start, time_t end)
{
    MYSQL_RES  *res;
    MYSQL_ROW   row;
    aw_line_t  *l;
    long long   seen[16], id, fee;
    size_t      nseen, i;
    char        money[32];

    res = aw_db_query(db, "SELECT p.id, p.name, "
                      "IFNULL(o.base_fee_cents, p.base_fee_cents) "
                      "FROM subscriptions s JOIN plans p ON p.id = s.plan "
                      "LEFT JOIN account_overrides o ON o.account = "
                      "s.account WHERE s.account = %lld AND s.started_at < "
                      "FROM_UNIXTIME(%lld) AND (s.ended_at IS NULL OR "
                      "s.ended_at > FROM_UNIXTIME(%lld)) "
                      "ORDER BY s.started_at, s.id", inv->account,
                      (long long) end, (long long) start);
    if (res == NULL) {
        return -1;
    }

    nseen = 0;

    while ((row = mysql_fetch_row(res)) != NULL) {
        id = strtoll(row[0], NULL, 10);
        fee = strtoll(row[2], NULL, 10);

        snprintf(inv->plan, sizeof(inv->plan), "%s", row[1]);

        for (i = 0; i < nseen; i++) {
            if (seen[i] == id) {
                break;
            }
        }

        if (i < nseen || nseen == 16) {
            continue;
        }

        seen[nseen++] = id;

        l = aw_invoice_add(inv, "base");
        l->amount_cents = fee;
        aw_money_format(fee, money, sizeof(money));
        snprintf(l->description, sizeof(l->description),
                 "%s plan, %s (base fee $%s)", row[1], period, money);
    }

    mysql_free_result(res);

    return (int) nseen;
}


static int
aw_invoice_rules(MYSQL *db, long long account, aw_rules_t *r)
{
    MYSQL_RES  *res;
    MYSQL_ROW   row;

    res = aw_db_query(db, "SELECT p.name, IFNULL(o.overage, p.overage), "
                      "IFNULL(o.spend_cap_micros, 0) FROM plans p "
                      "LEFT JOIN account_overrides o ON o.account = %lld",
                      account);
    if (res == NULL) {
        return -1;
    }

    r->nplans = 0;
    r->cap_micros = 0;

    while ((row = mysql_fetch_row(res)) != NULL && r->nplans < 32) {
        snprintf(r->plans[r->nplans].name, sizeof(r->plans[0].name), "%s",
                 row[0]);
        r->plans[r->nplans++].overage = row[1][0] == '1';
        r->cap_micros = strtoll(row[2], NULL, 10);
    }

    mysql_free_result(res);

    return 0;
}


/* whether a call recorded under plan may go beyond the allowance */

static int
aw_rules_overage(const aw_rules_t *r, const char *plan, const char *current)
{
    size_t  i;
    int     allowed;

    allowed = -1;

    for (i = 0; i < r->nplans; i++) {
        if (strcmp(r->plans[i].name, plan) == 0) {
            allowed = r->plans[i].overage;
            break;
        }
    }

    if (allowed < 0) {
        /* a plan name MySQL does not know: the current plan's rule */
        for (i = 0; i < r->nplans; i++) {
            if (strcmp(r->plans[i].name, current) == 0) {
                allowed = r->plans[i].overage;
            }
        }
    }

    return allowed > 0;
}


/* feeds the successful calls of [start, end), in time order, to b */

static int
aw_invoice_events(MYSQL *db, const aw_invoice_t *inv, const aw_rules_t *r,
    long long which, time_t start, time_t end, aw_billing_t *b)
{
    MYSQL_RES  *res;
    MYSQL_ROW   row;
    char        filter[64];

    if (which == AW_EVENTS_ALL) {
        filter[0] = '\0';

    } else if (which == AW_EVENTS_BILLED) {
        snprintf(filter, sizeof(filter), "AND e.invoice IS NOT NULL");

    } else {
        snprintf(filter, sizeof(filter), "AND e.invoice = %lld", which);
    }

    res = aw_db_query(db, "SELECT e.model, e.plan, e.prompt_tokens, "
                      "e.completion_tokens, "
                      "IFNULL((SELECT mp.price_in_micros FROM model_prices "
                      "mp WHERE mp.model = e.model AND mp.valid_from <= e.ts "
                      "ORDER BY mp.valid_from DESC LIMIT 1), 0), "
                      "IFNULL((SELECT mp.price_out_micros FROM model_prices "
                      "mp WHERE mp.model = e.model AND mp.valid_from <= e.ts "
                      "ORDER BY mp.valid_from DESC LIMIT 1), 0) "
                      "FROM usage_events e WHERE e.account = %lld "
                      "AND e.ts >= FROM_UNIXTIME(%lld) "
                      "AND e.ts < FROM_UNIXTIME(%lld) "
                      "AND e.status BETWEEN 200 AND 299 %s "
                      "ORDER BY e.ts, e.event_id", inv->account,
                      (long long) start, (long long) end, filter);
    if (res == NULL) {
        return -1;
    }

    while ((row = mysql_fetch_row(res)) != NULL) {
        aw_billing_call(b, row[0], aw_rules_overage(r, row[1], inv->plan),
                        strtoll(row[4], NULL, 10), strtoll(row[5], NULL, 10),
                        strtoll(row[2], NULL, 10), strtoll(row[3], NULL, 10));
    }

    mysql_free_result(res);

    return 0;
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
             "%lld calls (%lld included), %lld prompt + %lld completion "
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
 * Computes the invoice of one account for one period from usage_events.
 * which: AW_EVENTS_ALL, AW_EVENTS_BILLED, or an invoice id (its events).
 * Returns 0, 1 if the account had no subscription in the period, -1.
 */

int
aw_invoice_compute(MYSQL *db, long long account, const char *period,
    long long which, aw_invoice_t *inv)
{
    time_t        start, end;
    int           nplans;
    aw_rules_t    rules;
    aw_billing_t  b;

    memset(inv, 0, sizeof(*inv));
    inv->account = account;

    if (aw_period_bounds(period, &start, &end) != 0) {
        return -1;
    }

    inv->included = aw_account_allowance(db, account, start, end);
    if (inv->included < 0) {
        return -1;
    }

    nplans = aw_invoice_base(db, inv, period, start, end);

    if (nplans < 0) {
        return -1;
    }

    if (nplans == 0) {
        return 1;
    }

    if (aw_invoice_rules(db, account, &rules) != 0) {
        aw_invoice_free(inv);
        return -1;
    }

    aw_billing_init(&b, inv->included);

    if (aw_invoice_events(db, inv, &rules, which, start, end, &b) != 0) {
        aw_billing_free(&b);
        aw_invoice_free(inv);
        return -1;
    }

    aw_invoice_lines(inv, &b, rules.cap_micros);
    aw_billing_free(&b);

    return 0;
}


static int
aw_invoice_insert_line(MYSQL *db, long long invoice, const aw_line_t *l)
{
    aw_buf_t  q;
    int       rc;

    aw_buf_init(&q);
    aw_buf_printf(&q, "INSERT INTO invoice_lines (invoice, kind, model, "
                  "price_in_micros, price_out_micros, prompt_tokens, "
                  "completion_tokens, calls, amount_cents, ref_period, "
                  "description) VALUES (%lld, '%s', ", invoice, l->kind);
    aw_buf_sql_str(&q, db, l->model);
    aw_buf_printf(&q, ", %lld, %lld, %lld, %lld, %lld, %lld, '%s', ",
                  l->price_in, l->price_out, l->prompt_tokens,
                  l->completion_tokens, l->calls, l->amount_cents,
                  l->ref_period);
    aw_buf_sql_str(&q, db, l->description);
    aw_buf_puts(&q, ")");

    rc = aw_db_buf_exec(db, &q);
    aw_buf_free(&q);

    return rc;
}


/*
 * What was billed so far for (account, period): the period's own invoice
 * lines plus adjustments naming the period in later invoices.
 */

static long long
aw_invoice_billed(MYSQL *db, long long account, const char *period)
{
    return aw_db_scalar(db, 0, "SELECT IFNULL(SUM(l.amount_cents), 0) FROM "
                        "invoice_lines l JOIN invoices i ON i.id = l.invoice "
                        "WHERE i.account = %lld AND ((i.period = '%s' AND "
                        "l.ref_period = '') OR l.ref_period = '%s')",
                        account, period, period);
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
    long long      late, billed;
    time_t         qs, qe;
    aw_invoice_t   q;
    aw_line_t     *l;

    res = aw_db_query(db, "SELECT DISTINCT DATE_FORMAT(e.ts, '%%Y-%%m') "
                      "FROM usage_events e JOIN billing_periods bp ON "
                      "bp.period = DATE_FORMAT(e.ts, '%%Y-%%m') "
                      "WHERE e.account = %lld AND e.ts < FROM_UNIXTIME(%lld)"
                      " AND e.invoice IS NULL ORDER BY 1", account,
                      (long long) start);
    if (res == NULL) {
        return -1;
    }

    n = 0;

    while ((row = mysql_fetch_row(res)) != NULL && n < 64) {
        snprintf(periods[n++], 8, "%s", row[0]);
    }

    mysql_free_result(res);

    for (i = 0; i < n; i++) {
        aw_period_bounds(periods[i], &qs, &qe);

        if (aw_db_exec(db, "UPDATE usage_events SET invoice = %lld WHERE "
                       "account = %lld AND ts >= FROM_UNIXTIME(%lld) AND "
                       "ts < FROM_UNIXTIME(%lld) AND invoice IS NULL",
                       invoice, account, (long long) qs, (long long) qe)
            != 0)
        {
            return -1;
        }

        late = (long long) mysql_affected_rows(db);
        billed = aw_invoice_billed(db, account, periods[i]);

        if (aw_invoice_compute(db, account, periods[i], AW_EVENTS_BILLED,
                               &q) < 0)
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
 * The drain has passed the end of the period: nothing at or before the
 * period's end is pending or still unread in the usage stream.
 */

static int
aw_invoice_drained(time_t end, const char *period)
{
    redisContext  *rc;
    redisReply    *r, *g;
    char           stream[128], last[64], endid[48], from[72];
    size_t         i, j;
    int            ok;

    rc = aw_redis_connect(3000);
    if (rc == NULL) {
        aw_log(AW_LOG_ERROR, "cannot check the usage stream; pass --force "
               "to close without the check");
        return 0;
    }

    aw_rkey(stream, sizeof(stream), AIHUB_RK_USAGE, NULL);
    snprintf(endid, sizeof(endid), "%lld", (long long) end * 1000);
    last[0] = '\0';
    ok = 1;

    r = redisCommand(rc, "XINFO GROUPS %s", stream);

    if (r && r->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < r->elements; i++) {
            g = r->element[i];
            int  mine = 0;

            for (j = 0; j + 1 < g->elements; j += 2) {
                if (strcmp(g->element[j]->str, "name") == 0
                    && strcmp(g->element[j + 1]->str, AIHUB_USAGE_GROUP)
                       == 0)
                {
                    mine = 1;
                }
            }

            for (j = 0; mine && j + 1 < g->elements; j += 2) {
                if (strcmp(g->element[j]->str, "last-delivered-id") == 0) {
                    snprintf(last, sizeof(last), "%s",
                             g->element[j + 1]->str);
                }
            }
        }
    }

    if (r) {
        freeReplyObject(r);
    }

    /* unread entries up to the end */

    snprintf(from, sizeof(from), last[0] ? "(%s" : "-", last);
    r = redisCommand(rc, "XRANGE %s %s %s COUNT 1", stream, from, endid);

    if (r == NULL || (r->type == REDIS_REPLY_ARRAY && r->elements > 0)) {
        ok = 0;
    }

    if (r) {
        freeReplyObject(r);
    }

    /* delivered but not yet stored */

    if (ok && last[0]) {
        r = redisCommand(rc, "XPENDING %s %s - %s 1", stream,
                         AIHUB_USAGE_GROUP, endid);

        if (r == NULL || (r->type == REDIS_REPLY_ARRAY && r->elements > 0)) {
            ok = 0;
        }

        if (r) {
            freeReplyObject(r);
        }
    }

    aw_redis_close(rc);

    if (!ok) {
        aw_log(AW_LOG_ERROR, "usage of %s is still in the stream %s: let "
               "the drain catch up (or pass --force)", period, stream);
    }

    return ok;
}


static int
aw_invoice_close(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char    *period, *force;
    int            rc, npos, r;
    time_t         start, end;
    long long      id, total, count, account;
    size_t         i, nacc;
    long long     *accounts;
    char           money[32];
    MYSQL         *db;
    MYSQL_RES     *res;
    MYSQL_ROW      row;
    aw_invoice_t   inv;
    aw_opt_t       opts[] = {
        { "--period", 1, &period },
        { "--force", 0, &force },
        { NULL, 0, NULL }
    };

    period = force = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_invoice_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (period == NULL || aw_period_bounds(period, &start, &end) != 0) {
        aw_usage_error(aw_invoice_usage, "invoice close: --period YYYY-MM "
                       "is required");
        return AW_EXIT_USAGE;
    }

    if (end > time(NULL)) {
        aw_log(AW_LOG_ERROR, "period %s has not ended yet", period);
        return AW_EXIT_FAIL;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    rc = AW_EXIT_FAIL;
    accounts = NULL;

    if (aw_db_scalar(db, -1, "SELECT COUNT(*) FROM billing_periods WHERE "
                     "period = '%s'", period) > 0)
    {
        printf("period %s is already closed\n", period);
        rc = AW_EXIT_OK;
        goto done;
    }

    if (!force && !aw_invoice_drained(end, period)) {
        goto done;
    }

    if (aw_db_exec(db, "START TRANSACTION") != 0) {
        goto done;
    }

    /* the period row first: a concurrent close waits here, then finds it */

    if (aw_db_exec(db, "INSERT INTO billing_periods (period) VALUES ('%s')",
                   period) != 0)
    {
        goto failed;
    }

    res = aw_db_query(db, "SELECT id FROM accounts WHERE created_at < "
                      "FROM_UNIXTIME(%lld) ORDER BY id", (long long) end);
    if (res == NULL) {
        goto failed;
    }

    nacc = (size_t) mysql_num_rows(res);
    accounts = aw_xmalloc((nacc + 1) * sizeof(long long));

    for (i = 0; (row = mysql_fetch_row(res)) != NULL; i++) {
        accounts[i] = strtoll(row[0], NULL, 10);
    }

    mysql_free_result(res);

    count = total = 0;

    for (i = 0; i < nacc; i++) {
        account = accounts[i];

        /* is there anything to bill?  the plan row tells */

        r = aw_invoice_compute(db, account, period, AW_EVENTS_ALL, &inv);
        if (r < 0) {
            goto failed;
        }

        aw_invoice_free(&inv);

        if (r == 1) {
            continue;
        }

        if (aw_db_exec(db, "INSERT INTO invoices (account, period, plan) "
                       "VALUES (%lld, '%s', '')", account, period) != 0)
        {
            goto failed;
        }

        id = (long long) mysql_insert_id(db);

        /* mark what this invoice bills, then compute from exactly that */

        if (aw_db_exec(db, "UPDATE usage_events SET invoice = %lld WHERE "
                       "account = %lld AND ts >= FROM_UNIXTIME(%lld) AND "
                       "ts < FROM_UNIXTIME(%lld) AND invoice IS NULL", id,
                       account, (long long) start, (long long) end) != 0
            || aw_invoice_compute(db, account, period, id, &inv) != 0)
        {
            goto failed;
        }

        if (aw_invoice_adjustments(db, account, id, start, &inv) != 0) {
            aw_invoice_free(&inv);
            goto failed;
        }

        for (size_t k = 0; k < inv.nlines; k++) {
            if (aw_invoice_insert_line(db, id, &inv.lines[k]) != 0) {
                aw_invoice_free(&inv);
                goto failed;
            }
        }

        if (aw_db_exec(db, "UPDATE invoices SET plan = '%s', calls = %lld, "
                       "included_calls = %lld, subtotal_cents = %lld, "
                       "total_cents = %lld WHERE id = %lld", inv.plan,
                       inv.calls, inv.included, inv.total_cents,
                       inv.total_cents, id) != 0)
        {
            aw_invoice_free(&inv);
            goto failed;
        }

        count++;
        total += inv.total_cents;
        aw_invoice_free(&inv);
    }

    if (aw_db_exec(db, "COMMIT") != 0) {
        goto failed;
    }

    aw_money_format(total, money, sizeof(money));
    printf("closed %s: %lld invoices, total $%s\n", period, count, money);
    fflush(stdout);

    rc = AW_EXIT_OK;

    if (aw_cfg.webhook_url[0]) {
        aw_invoice_deliver_all(db, period);
    }

    goto done;

failed:

    aw_db_exec(db, "ROLLBACK");
    aw_log(AW_LOG_ERROR, "closing %s failed; nothing was issued", period);

done:

    free(accounts);

    return rc;
}


/* the JSON of one issued invoice (webhook body, show --json, report) */

cJSON *
aw_invoice_json(MYSQL *db, long long id)
{
    cJSON       *o, *lines, *l, *acct;
    MYSQL_RES   *res;
    MYSQL_ROW    row;
    char         money[32];

    res = aw_db_query(db, "SELECT i.id, i.account, a.name, i.period, i.plan,"
                      " i.status, i.calls, i.included_calls, "
                      "i.subtotal_cents, i.total_cents, "
                      "DATE_FORMAT(i.issued_at, '%%Y-%%m-%%dT%%H:%%i:%%sZ') "
                      "FROM invoices i JOIN accounts a ON a.id = i.account "
                      "WHERE i.id = %lld", id);
    if (res == NULL) {
        return NULL;
    }

    row = mysql_fetch_row(res);

    if (row == NULL) {
        mysql_free_result(res);
        return NULL;
    }

    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double) strtoll(row[0], NULL, 10));
    acct = cJSON_AddObjectToObject(o, "account");
    cJSON_AddNumberToObject(acct, "id", (double) strtoll(row[1], NULL, 10));
    cJSON_AddStringToObject(acct, "name", row[2]);
    cJSON_AddStringToObject(o, "period", row[3]);
    cJSON_AddStringToObject(o, "plan", row[4]);
    cJSON_AddStringToObject(o, "status", row[5]);
    cJSON_AddStringToObject(o, "currency", "USD");
    cJSON_AddNumberToObject(o, "calls", (double) strtoll(row[6], NULL, 10));
    cJSON_AddNumberToObject(o, "included_calls",
                            (double) strtoll(row[7], NULL, 10));
    cJSON_AddNumberToObject(o, "subtotal_cents",
                            (double) strtoll(row[8], NULL, 10));
    cJSON_AddNumberToObject(o, "total_cents",
                            (double) strtoll(row[9], NULL, 10));
    aw_money_format(strtoll(row[9], NULL, 10), money, sizeof(money));
    cJSON_AddStringToObject(o, "total", money);
    cJSON_AddStringToObject(o, "issued_at", row[10]);
    mysql_free_result(res);

    res = aw_db_query(db, "SELECT kind, model, price_in_micros, "
                      "price_out_micros, prompt_tokens, completion_tokens, "
                      "calls, amount_cents, ref_period, description "
                      "FROM invoice_lines WHERE invoice = %lld ORDER BY id",
                      id);
    if (res == NULL) {
        cJSON_Delete(o);
        return NULL;
    }

    lines = cJSON_AddArrayToObject(o, "lines");

    while ((row = mysql_fetch_row(res)) != NULL) {
        l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "kind", row[0]);
        cJSON_AddStringToObject(l, "model", row[1]);
        cJSON_AddNumberToObject(l, "price_in_micros",
                                (double) strtoll(row[2], NULL, 10));
        cJSON_AddNumberToObject(l, "price_out_micros",
                                (double) strtoll(row[3], NULL, 10));
        cJSON_AddNumberToObject(l, "prompt_tokens",
                                (double) strtoll(row[4], NULL, 10));
        cJSON_AddNumberToObject(l, "completion_tokens",
                                (double) strtoll(row[5], NULL, 10));
        cJSON_AddNumberToObject(l, "calls",
                                (double) strtoll(row[6], NULL, 10));
        cJSON_AddNumberToObject(l, "amount_cents",
                                (double) strtoll(row[7], NULL, 10));
        cJSON_AddStringToObject(l, "ref_period", row[8]);
        cJSON_AddStringToObject(l, "description", row[9]);
        cJSON_AddItemToArray(lines, l);
    }

    mysql_free_result(res);

    return o;
}


/*
 * Renders and delivers every issued invoice (of the period, if given) that
 * the webhook has not taken yet.
 */

int
aw_invoice_deliver_all(MYSQL *db, const char *period)
{
    MYSQL_RES   *res;
    MYSQL_ROW    row;
    long long   *ids, done;
    size_t       n, i;
    int          failed;
    char         filter[64], *body;
    cJSON       *json;

    filter[0] = '\0';

    if (period) {
        snprintf(filter, sizeof(filter), "AND i.period = '%s'", period);
    }

    res = aw_db_query(db, "SELECT i.id FROM invoices i WHERE i.status = "
                      "'issued' %s AND NOT EXISTS (SELECT 1 FROM "
                      "webhook_deliveries d WHERE d.invoice = i.id AND "
                      "d.delivered = 1) ORDER BY i.id", filter);
    if (res == NULL) {
        return -1;
    }

    n = (size_t) mysql_num_rows(res);
    ids = aw_xmalloc((n + 1) * sizeof(long long));

    for (i = 0; (row = mysql_fetch_row(res)) != NULL; i++) {
        ids[i] = strtoll(row[0], NULL, 10);
    }

    mysql_free_result(res);

    failed = 0;
    done = 0;

    for (i = 0; i < n; i++) {
        json = aw_invoice_json(db, ids[i]);

        if (json == NULL) {
            failed++;
            continue;
        }

        body = cJSON_PrintUnformatted(json);
        cJSON_Delete(json);

        if (aw_webhook_send(db, ids[i], body) == 0) {
            done++;

        } else {
            failed++;
        }

        free(body);
    }

    free(ids);

    printf("webhook: %lld invoices delivered, %d failed\n", done, failed);

    if (failed) {
        aw_log(AW_LOG_ERROR, "%d invoices not delivered; \"" AW_NAME
               " invoice deliver\" retries", failed);
        return -1;
    }

    return 0;
}


static int
aw_invoice_show(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *period, *account, *json;
    int          rc, npos;
    aw_buf_t     q;
    MYSQL       *db;
    MYSQL_RES   *res, *lres;
    MYSQL_ROW    row, lrow;
    cJSON       *all, *one;
    char        *text, money[32];
    aw_opt_t     opts[] = {
        { "--period", 1, &period },
        { "--account", 1, &account },
        { "--json", 0, &json },
        { NULL, 0, NULL }
    };
    int          y, m;

    period = account = json = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_invoice_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (period && aw_period_parse(period, &y, &m) != 0) {
        aw_usage_error(aw_invoice_usage, "invalid --period \"%s\"", period);
        return AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    aw_buf_init(&q);
    aw_buf_puts(&q, "SELECT i.id, a.name, i.period, i.plan, i.calls, "
                "i.included_calls, i.total_cents FROM invoices i JOIN "
                "accounts a ON a.id = i.account WHERE 1 = 1");

    if (period) {
        aw_buf_printf(&q, " AND i.period = '%s'", period);
    }

    if (account) {
        aw_buf_puts(&q, " AND a.name = ");
        aw_buf_sql_str(&q, db, account);
    }

    aw_buf_puts(&q, " ORDER BY i.period, a.name");

    res = aw_db_query(db, "%s", q.data);
    aw_buf_free(&q);

    if (res == NULL) {
        return AW_EXIT_FAIL;
    }

    all = json ? cJSON_CreateArray() : NULL;

    while ((row = mysql_fetch_row(res)) != NULL) {
        if (json) {
            one = aw_invoice_json(db, strtoll(row[0], NULL, 10));
            if (one) {
                cJSON_AddItemToArray(all, one);
            }
            continue;
        }

        aw_money_format(strtoll(row[6], NULL, 10), money, sizeof(money));
        printf("invoice %s  %s  %s  plan %s  calls %s/%s  total $%s\n",
               row[0], row[2], row[1], row[3], row[4], row[5], money);

        lres = aw_db_query(db, "SELECT kind, amount_cents, description "
                           "FROM invoice_lines WHERE invoice = %s "
                           "ORDER BY id", row[0]);
        if (lres == NULL) {
            continue;
        }

        while ((lrow = mysql_fetch_row(lres)) != NULL) {
            aw_money_format(strtoll(lrow[1], NULL, 10), money,
                            sizeof(money));
            printf("  %-10s %12s  %s\n", lrow[0], money, lrow[2]);
        }

        mysql_free_result(lres);
    }

    mysql_free_result(res);

    if (json) {
        text = cJSON_Print(all);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(all);
    }


    return AW_EXIT_OK;
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
 * Recomputes every issued invoice: its own lines from the events it
 * billed, its total from its lines, and for each (account, period) the
 * period from all billed events against invoice + later adjustments.
 */

static int
aw_invoice_check(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char    *period;
    int            rc, npos, bad, y, m;
    long long      id, account, total, sum, billed, late, checked;
    size_t         k;
    char           where[64], p[8], a[32], b[32];
    MYSQL         *db;
    MYSQL_RES     *res, *lres;
    MYSQL_ROW      row, lrow;
    aw_invoice_t   inv;
    aw_opt_t       opts[] = {
        { "--period", 1, &period },
        { NULL, 0, NULL }
    };

    period = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_invoice_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (period && aw_period_parse(period, &y, &m) != 0) {
        aw_usage_error(aw_invoice_usage, "invalid --period \"%s\"", period);
        return AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    where[0] = '\0';

    if (period) {
        snprintf(where, sizeof(where), "WHERE period = '%s'", period);
    }

    res = aw_db_query(db, "SELECT id, account, period, total_cents FROM "
                      "invoices %s ORDER BY period, account", where);
    if (res == NULL) {
        return AW_EXIT_FAIL;
    }

    bad = 0;
    checked = 0;

    while ((row = mysql_fetch_row(res)) != NULL) {
        id = strtoll(row[0], NULL, 10);
        account = strtoll(row[1], NULL, 10);
        snprintf(p, sizeof(p), "%s", row[2]);
        total = strtoll(row[3], NULL, 10);
        checked++;

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

        if (aw_invoice_compute(db, account, p, id, &inv) < 0) {
            bad++;
            continue;
        }

        lres = aw_db_query(db, "SELECT kind, model, price_in_micros, "
                           "price_out_micros, prompt_tokens, "
                           "completion_tokens, calls, amount_cents, "
                           "description FROM invoice_lines WHERE invoice = "
                           "%lld AND ref_period = '' ORDER BY id", id);

        if (lres == NULL) {
            aw_invoice_free(&inv);
            bad++;
            continue;
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

        /* 3. the period as a whole: all billed usage = all charges */

        if (aw_invoice_compute(db, account, p, AW_EVENTS_BILLED, &inv) < 0) {
            bad++;
            continue;
        }

        billed = aw_invoice_billed(db, account, p);

        if (inv.total_cents != billed) {
            aw_money_format(billed, a, sizeof(a));
            aw_money_format(inv.total_cents, b, sizeof(b));
            printf("MISMATCH account %lld %s: charged $%s with "
                   "adjustments, usage comes to $%s\n", account, p, a, b);
            bad++;
        }

        aw_invoice_free(&inv);

        late = aw_db_scalar(db, 0, "SELECT COUNT(*) FROM usage_events WHERE "
                            "account = %lld AND invoice IS NULL AND "
                            "DATE_FORMAT(ts, '%%Y-%%m') = '%s'", account, p);

        if (late > 0) {
            printf("note: account %lld %s: %lld late events not billed "
                   "yet (next close adjusts)\n", account, p, late);
        }
    }

    mysql_free_result(res);

    if (bad) {
        printf("%d difference%s in %lld invoices\n", bad, bad == 1 ? "" : "s",
               checked);
        return AW_EXIT_FAIL;
    }

    printf("ok: %lld invoices match usage_events\n", checked);

    return AW_EXIT_OK;
}


static int
aw_invoice_deliver(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *period;
    int          rc, npos;
    MYSQL       *db;
    aw_opt_t     opts[] = {
        { "--period", 1, &period },
        { NULL, 0, NULL }
    };

    period = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_invoice_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (aw_cfg.webhook_url[0] == '\0') {
        aw_usage_error(aw_invoice_usage, "no webhook configured "
                       "(--webhook-url or webhook_url in the config)");
        return AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    rc = aw_invoice_deliver_all(db, period) == 0 ? AW_EXIT_OK : AW_EXIT_FAIL;

    return rc;
}


static const aw_cmd_t  aw_invoice_cmds[] = {
    { "close", aw_invoice_close, AW_NEEDS_DB, NULL },
    { "show", aw_invoice_show, AW_NEEDS_DB, NULL },
    { "check", aw_invoice_check, AW_NEEDS_DB, NULL },
    { "deliver", aw_invoice_deliver, AW_NEEDS_DB, NULL },
    { NULL, NULL, 0, NULL }
};


const aw_group_t  aw_invoice_group = {
    "invoice", aw_invoice_usage, aw_invoice_cmds
};
