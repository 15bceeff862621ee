/*
 * Invoices: the rules and the arithmetic, from MySQL to MySQL (the
 * commands are cmd_invoice.c's).
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
