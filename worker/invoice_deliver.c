/*
 * An issued invoice as JSON (the webhook body, show --json, the report)
 * and the delivery of a month's invoices to the webhook, bounded in time.
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
 * the webhook has not taken yet, within budget_ms in all: what is left
 * when the time is up waits for the next "invoice deliver".  period, if
 * given, is a valid YYYY-MM (the caller checked).
 */

int
aw_invoice_deliver_all(MYSQL *db, const char *period, long long budget_ms)
{
    aw_rows_t   *res;
    long long   *ids, done, deadline;
    size_t       n, i;
    int          failed, left, r;
    char         sql[256], *body, **row;
    cJSON       *json;

    snprintf(sql, sizeof(sql), "SELECT i.id FROM invoices i WHERE "
             "i.status = 'issued' %s AND NOT EXISTS (SELECT 1 FROM "
             "webhook_deliveries d WHERE d.invoice = i.id AND "
             "d.delivered = 1) ORDER BY i.id",
             period ? "AND i.period = ?" : "");

    res = aw_db_select_params(db, sql, &period, period ? 1 : 0);
    if (res == NULL) {
        return -1;
    }

    n = res->nrows;
    ids = aw_xmalloc((n + 1) * sizeof(long long));

    for (i = 0; (row = aw_rows_next(res)) != NULL; i++) {
        ids[i] = row[0] ? strtoll(row[0], NULL, 10) : 0;
    }

    aw_rows_free(res);

    failed = 0;
    left = 0;
    done = 0;
    deadline = aw_webhook_clock_ms() + budget_ms;

    for (i = 0; i < n; i++) {
        json = aw_invoice_json(db, ids[i]);

        if (json == NULL) {
            failed++;
            continue;
        }

        body = cJSON_PrintUnformatted(json);
        cJSON_Delete(json);

        r = aw_webhook_send(db, ids[i], body, deadline);

        if (r == 0) {
            done++;

        } else if (r > 0) {
            left++;

        } else {
            failed++;
        }

        free(body);
    }

    free(ids);

    printf("webhook: %lld invoices delivered, %d failed", done, failed);

    if (left) {
        printf(", %d not attempted (out of time)", left);
    }

    printf("\n");

    if (failed || left) {
        aw_log(AW_LOG_ERROR, "%d invoices not delivered; \"" AW_NAME
               " invoice deliver\" retries", failed + left);
        return -1;
    }

    return 0;
}
