/*
 * "aihub-worker invoice close | show | check | deliver | void": the
 * commands.
 * The rules and the arithmetic are invoice.c's; this file reads the
 * arguments, holds the transaction of a close and prints.
 */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "command.h"
#include "db.h"
#include "invoice.h"
#include "redis.h"
#include "webhook.h"


static const char  aw_invoice_usage[] =
    "usage: " AW_NAME " invoice close --period YYYY-MM [--force]\n"
    "       " AW_NAME " invoice show [--period YYYY-MM] [--account NAME] "
    "[--json]\n"
    "       " AW_NAME " invoice check [--period YYYY-MM]\n"
    "       " AW_NAME " invoice deliver [--period YYYY-MM]\n"
    "       " AW_NAME " invoice void --id N --reason TEXT\n"
    "\n"
    "close    issues one invoice per account for an ended month (UTC):\n"
    "         base fees, overage lines per (model, price), adjustments for\n"
    "         late usage of earlier closed months; idempotent.  Refuses\n"
    "         while usage of the month is still in the stream (--force\n"
    "         skips that check).  Delivers to the webhook if configured.\n"
    "show     prints issued invoices (or their JSON), of every period\n"
    "         without --period\n"
    "check    recomputes every issued invoice from usage_events; exit 1\n"
    "         and a report of each difference if any\n"
    "deliver  retries webhook deliveries that have not succeeded\n"
    "void     marks an issued invoice void, with the reason (recorded;\n"
    "         the invoice itself does not change, reports leave it out)\n";


/* an optional --period is YYYY-MM; the usage error said if not */

static int
aw_invoice_period_ok(const char *period)
{
    int  y, m;

    if (period && aw_period_parse(period, &y, &m) != 0) {
        aw_usage_error(aw_invoice_usage, "invalid --period \"%s\"", period);
        return 0;
    }

    return 1;
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


/*
 * The period row, first in the close's transaction: a concurrent close
 * waits here, then finds it.  Waiting longer than innodb_lock_wait_timeout
 * (50 s; a close of a million events takes longer) it waits again:
 * before, it failed (exit 1) while the other close issued every invoice.
 * 0: the month is this close's; 1: closed by another; -1: MySQL failed.
 */

static int
aw_invoice_claim(MYSQL *db, const char *period)
{
    while (aw_db_exec_params(db, "INSERT INTO billing_periods (period) "
                             "VALUES (?)", (const char *[]) { period }, 1)
           != 0)
    {
        if (aw_db_errno(db) == 1205) {      /* lock wait timeout */
            aw_log(AW_LOG_INFO, "another close of %s is running; waiting "
                   "for it", period);
            continue;
        }

        return aw_db_errno(db) == 1062 ? 1 : -1;    /* duplicate entry */
    }

    return 0;
}


static int
aw_invoice_close(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *period, *force;
    int          rc, npos, r;
    time_t       start, end;
    long long    total, count;
    size_t       i, nacc;
    long long   *accounts;
    char         money[32], te[AW_SQL_TIME_LEN];
    MYSQL       *db;
    MYSQL_RES   *res;
    MYSQL_ROW    row;
    aw_opt_t     opts[] = {
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

    if (aw_db_scalar_params(db, -1, "SELECT COUNT(*) FROM billing_periods "
                            "WHERE period = ?",
                            (const char *[]) { period }, 1) > 0)
    {
        printf("period %s is already closed\n", period);
        rc = AW_EXIT_OK;
        goto done;
    }

    if (!force && !aw_invoice_drained(end, period)) {
        goto done;
    }

    /*
     * READ COMMITTED: the close locks the events it marks and nothing
     * else.  Under REPEATABLE READ each account's UPDATE also locked the
     * gap after its events, where that account's next calls are stored,
     * so the drain waited for the whole close (minutes on a large ledger,
     * a lock wait timeout beyond innodb_lock_wait_timeout).  What the
     * close bills is what it marked; an event of the month stored
     * meanwhile stays unmarked and is billed as late usage by the next
     * close, as one drained after it would be.
     */

    if (aw_db_exec(db, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED") != 0
        || aw_db_exec(db, "START TRANSACTION") != 0)
    {
        goto done;
    }

    r = aw_invoice_claim(db, period);

    if (r == 1) {
        /* closed by the other meanwhile: as if it had been before */
        aw_db_exec(db, "ROLLBACK");
        printf("period %s is already closed\n", period);
        rc = AW_EXIT_OK;
        goto done;
    }

    if (r != 0) {
        goto failed;
    }

    res = aw_db_query(db, "SELECT id FROM accounts WHERE created_at < %s "
                      "ORDER BY id", aw_sql_time(end, te));
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
        r = aw_invoice_issue(db, accounts[i], period, start, end, &total);
        if (r < 0) {
            goto failed;
        }

        count += r;
    }

    if (aw_period_seal(db, period) != 0 || aw_db_exec(db, "COMMIT") != 0) {
        goto failed;
    }

    aw_money_format(total, money, sizeof(money));
    printf("closed %s: %lld invoices, total $%s\n", period, count, money);
    fflush(stdout);

    rc = AW_EXIT_OK;

    if (aw_cfg.webhook_url[0]) {
        /* bounded: close never waits long on a receiver */
        aw_invoice_deliver_all(db, period, AW_WEBHOOK_CLOSE_MS);
    }

    goto done;

failed:

    aw_db_exec(db, "ROLLBACK");
    aw_log(AW_LOG_ERROR, "closing %s failed; nothing was issued", period);

done:

    free(accounts);

    return rc;
}


static int
aw_invoice_show(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *period, *account, *json;
    int          rc, npos;
    char       **row;
    aw_stmt_t    q;
    MYSQL       *db;
    MYSQL_RES   *lres;
    MYSQL_ROW    lrow;
    aw_rows_t   *res;
    cJSON       *all, *one;
    char        *text, money[32];
    aw_opt_t     opts[] = {
        { "--period", 1, &period },
        { "--account", 1, &account },
        { "--json", 0, &json },
        { NULL, 0, NULL }
    };

    period = account = json = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_invoice_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (!aw_invoice_period_ok(period)) {
        return AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    aw_stmt_init(&q);
    aw_buf_puts(&q.sql, "SELECT i.id, a.name, i.period, i.plan, i.calls, "
                "i.included_calls, i.total_cents FROM invoices i JOIN "
                "accounts a ON a.id = i.account WHERE 1 = 1");

    if (period) {
        aw_buf_puts(&q.sql, " AND i.period = ");
        aw_stmt_str(&q, period);
    }

    if (account) {
        aw_buf_puts(&q.sql, " AND a.name = ");
        aw_stmt_str(&q, account);
    }

    aw_buf_puts(&q.sql, " ORDER BY i.period, a.name");

    res = aw_stmt_select(db, &q);

    if (res == NULL) {
        return AW_EXIT_FAIL;
    }

    all = json ? cJSON_CreateArray() : NULL;

    while ((row = aw_rows_next(res)) != NULL) {
        if (json) {
            one = aw_invoice_json(db, strtoll(row[0], NULL, 10));
            if (one) {
                cJSON_AddItemToArray(all, one);
            }
            continue;
        }

        aw_money_format(strtoll(row[6], NULL, 10), money, sizeof(money));
        printf("invoice %s  %s  %s  plan %s  calls %s/%s  total $%s\n",
               row[0], row[2], row[1],
               row[3][0] ? row[3] : AW_INVOICE_NO_PLAN, row[4], row[5],
               money);

        lres = aw_db_query(db, "SELECT kind, amount_cents, description "
                           "FROM invoice_lines WHERE invoice = %lld "
                           "ORDER BY id", strtoll(row[0], NULL, 10));
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

    aw_rows_free(res);

    if (json) {
        text = cJSON_Print(all);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(all);
    }

    return AW_EXIT_OK;
}


/* recomputes every issued invoice (of the period, if given) */

static int
aw_invoice_check(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *period;
    int          rc, npos, bad;
    long long    id, account, total, checked;
    char         p[8], **row;
    size_t       n;
    MYSQL       *db;
    aw_rows_t   *res;
    aw_opt_t     opts[] = {
        { "--period", 1, &period },
        { NULL, 0, NULL }
    };

    period = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_invoice_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (!aw_invoice_period_ok(period)) {
        return AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    /*
     * one snapshot for every query: a close committing between two of
     * them (its invoices read, then its chain) was reported a MISMATCH
     */

    if (aw_db_exec(db, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ") != 0
        || aw_db_exec(db, "START TRANSACTION WITH CONSISTENT SNAPSHOT, "
                      "READ ONLY") != 0)
    {
        return AW_EXIT_FAIL;
    }

    n = period ? 1 : 0;
    res = aw_db_select_params(db, period
                              ? "SELECT id, account, period, total_cents "
                                "FROM invoices WHERE period = ? ORDER BY "
                                "period, account"
                              : "SELECT id, account, period, total_cents "
                                "FROM invoices ORDER BY period, account",
                              &period, n);
    if (res == NULL) {
        return AW_EXIT_FAIL;
    }

    bad = 0;
    checked = 0;

    while ((row = aw_rows_next(res)) != NULL) {
        id = strtoll(row[0], NULL, 10);
        account = strtoll(row[1], NULL, 10);
        snprintf(p, sizeof(p), "%s", row[2]);
        total = strtoll(row[3], NULL, 10);
        checked++;

        bad += aw_invoice_check_one(db, id, account, p, total);
    }

    aw_rows_free(res);

    /* every closed month's chain: deleted or added invoices */

    res = aw_db_select_params(db, period
                              ? "SELECT period FROM billing_periods WHERE "
                                "period = ? ORDER BY period"
                              : "SELECT period FROM billing_periods ORDER "
                                "BY period", &period, n);
    if (res == NULL) {
        return AW_EXIT_FAIL;
    }

    while ((row = aw_rows_next(res)) != NULL) {
        bad += aw_period_audit(db, row[0]);
    }

    aw_rows_free(res);

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

    if (!aw_invoice_period_ok(period)) {
        return AW_EXIT_USAGE;
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

    rc = aw_invoice_deliver_all(db, period, AW_WEBHOOK_DELIVER_MS) == 0
         ? AW_EXIT_OK : AW_EXIT_FAIL;

    return rc;
}


/* issued -> void, recorded with its reason in invoice_voids */

static int
aw_invoice_void(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *idarg, *reason, *v[2];
    int          rc, npos;
    long long    id;
    char         num[24];
    MYSQL       *db;
    aw_opt_t     opts[] = {
        { "--id", 1, &idarg },
        { "--reason", 1, &reason },
        { NULL, 0, NULL }
    };

    idarg = reason = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_invoice_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (idarg == NULL || aw_parse_int(idarg, 1, LLONG_MAX, &id) != 0
        || reason == NULL || reason[0] == '\0' || strlen(reason) > 255)
    {
        aw_usage_error(aw_invoice_usage, "invoice void: --id N and --reason "
                       "TEXT (at most 255 bytes) are required");
        return AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    if (aw_db_exec(db, "START TRANSACTION") != 0) {
        return AW_EXIT_FAIL;
    }

    if (aw_db_scalar(db, 0, "SELECT COUNT(*) FROM invoices WHERE id = %lld "
                     "AND status = 'issued' FOR UPDATE", id) != 1)
    {
        aw_db_exec(db, "ROLLBACK");
        aw_log(AW_LOG_ERROR, "invoice %lld: no such issued invoice", id);
        return AW_EXIT_FAIL;
    }

    snprintf(num, sizeof(num), "%lld", id);
    v[0] = num;
    v[1] = reason;
    rc = aw_db_exec_params(db, "INSERT INTO invoice_voids (invoice, reason) "
                           "VALUES (?, ?)", v, 2);

    if (rc != 0
        || aw_db_exec(db, "UPDATE invoices SET status = 'void' WHERE id = "
                      "%lld", id) != 0
        || aw_db_exec(db, "COMMIT") != 0)
    {
        aw_db_exec(db, "ROLLBACK");
        return AW_EXIT_FAIL;
    }

    printf("invoice %lld is void\n", id);

    return AW_EXIT_OK;
}


static const aw_cmd_t  aw_invoice_cmds[] = {
    { "close", aw_invoice_close, AW_NEEDS_DB, NULL },
    { "show", aw_invoice_show, AW_NEEDS_DB, NULL },
    { "check", aw_invoice_check, AW_NEEDS_DB, NULL },
    { "deliver", aw_invoice_deliver, AW_NEEDS_DB, NULL },
    { "void", aw_invoice_void, AW_NEEDS_DB, NULL },
    { NULL, NULL, 0, NULL }
};


const aw_group_t  aw_invoice_group = {
    "invoice", aw_invoice_usage, aw_invoice_cmds
};
