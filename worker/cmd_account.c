/*
 * "aihub-worker account create | show | list | plan | override | suspend
 * | resume | cancel".  Every change is made in MySQL first, then the
 * account's key records are rewritten in Redis and "account:<id>" is
 * published so the change takes effect at once on every nginx node.
 */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include "aihub_worker.h"
#include "account.h"
#include "catalog.h"
#include "command.h"
#include "db.h"
#include "invoice.h"
#include "sync.h"


static const char  aw_account_usage[] =
    "usage: " AW_NAME " account create NAME [--plan PLAN]\n"
    "       " AW_NAME " account show NAME\n"
    "       " AW_NAME " account list\n"
    "       " AW_NAME " account plan NAME --plan PLAN\n"
    "       " AW_NAME " account override NAME [--included N] [--rpm N]"
    " [--tpm N]\n"
    "             [--models LIST|*] [--base-fee DOLLARS] [--spend-cap "
    "DOLLARS]\n"
    "             [--max-tokens N] [--overage 0|1]   (value \"default\" "
    "clears)\n"
    "       " AW_NAME " account suspend NAME\n"
    "       " AW_NAME " account resume NAME\n"
    "       " AW_NAME " account cancel NAME\n"
    "\n"
    "plan     changes the plan now: the old subscription ends, a new one\n"
    "         starts; every key of the account follows at once\n"
    "cancel   ends the subscription now and suspends the account: its keys\n"
    "         are refused at once; this month is billed on the plan it\n"
    "         ended on, later months are not (\"plan\", then \"resume\",\n"
    "         starts it again)\n"
    "override sets enterprise contract values; unset ones follow the plan\n"
    "         --models: model ids of the catalog and tier:basic,\n"
    "         tier:premium entries, comma separated, or * (as plan --models)\n"
    "         --spend-cap: above 0 (--overage 0 refuses the calls beyond\n"
    "         the included ones)\n";


static int
aw_account_sync(MYSQL *db, long long id)
{
    char  where[64], msg[64];

    snprintf(where, sizeof(where), "k.account = %lld", id);
    snprintf(msg, sizeof(msg), AIHUB_INV_ACCOUNT "%lld", id);

    return aw_sync_after_change(db, where, NULL, msg);
}


/* parses NAME, connects, looks the account up; returns the id or <= 0 */

static long long
aw_account_open(aw_cmd_ctx_t *ctx, int argc, char **argv, aw_opt_t *opts,
    MYSQL **dbp, const char **name, int *exit_code)
{
    char      *pos[1];
    int        rc, npos;
    long long  id;

    *dbp = NULL;

    rc = aw_opts_parse(argc, argv, opts, pos, 1, &npos, aw_account_usage);
    if (rc != 0) {
        *exit_code = rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
        return 0;
    }

    if (npos != 1) {
        aw_usage_error(aw_account_usage, "the account name is required");
        *exit_code = AW_EXIT_USAGE;
        return 0;
    }

    *name = pos[0];
    *exit_code = AW_EXIT_FAIL;

    if (aw_cmd_connect(ctx) != 0) {
        return 0;
    }

    *dbp = ctx->db;

    id = aw_account_id(*dbp, pos[0]);

    if (id == 0) {
        aw_log(AW_LOG_ERROR, "no account \"%s\"", pos[0]);
    }

    return id;
}


static int
aw_account_create_cmd(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *plan;
    char        *pos[1];
    int          rc, npos;
    long long    id;
    MYSQL       *db;
    aw_opt_t     opts[] = {
        { "--plan", 1, &plan },
        { NULL, 0, NULL }
    };

    plan = NULL;

    rc = aw_opts_parse(argc, argv, opts, pos, 1, &npos, aw_account_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (npos != 1 || !aw_account_name_ok(pos[0])) {
        aw_usage_error(aw_account_usage, "account create: a valid NAME is "
                       "required");
        return AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    rc = AW_EXIT_FAIL;
    id = aw_account_id(db, pos[0]);

    if (id > 0) {
        aw_log(AW_LOG_ERROR, "account \"%s\" exists (id %lld)", pos[0], id);

    } else if (id == 0) {
        if (plan && aw_plan_id(db, plan) <= 0) {
            aw_usage_error(aw_account_usage, "unknown plan \"%s\"", plan);
            return AW_EXIT_USAGE;
        }

        id = aw_account_create(db, pos[0], plan ? plan : "free");

        if (id > 0) {
            printf("%lld\n", id);
            rc = AW_EXIT_OK;
        }
    }

    return rc;
}


static void
aw_print_rows(MYSQL_RES *res)
{
    MYSQL_ROW      row;
    MYSQL_FIELD   *f;
    unsigned int   i, n;

    n = mysql_num_fields(res);
    f = mysql_fetch_fields(res);

    while ((row = mysql_fetch_row(res)) != NULL) {
        for (i = 0; i < n; i++) {
            printf("%-16s %s\n", f[i].name, row[i] ? row[i] : "-");
        }
    }
}


static int
aw_account_show(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *name;
    int          rc;
    long long    id;
    MYSQL       *db;
    MYSQL_RES   *res;
    MYSQL_ROW    row;

    id = aw_account_open(ctx, argc, argv, NULL, &db, &name, &rc);

    if (id <= 0) {
        return rc;
    }

    rc = AW_EXIT_FAIL;

    res = aw_db_query(db, "SELECT a.id, a.name, a.status, p.name AS plan, "
                      "s.started_at AS plan_since, a.created_at, "
                      "IFNULL(o.included_calls, p.included_calls) "
                      "AS included_calls, IFNULL(o.rpm, p.rpm) AS rpm, "
                      "IFNULL(o.tpm, p.tpm) AS tpm, "
                      "IFNULL(o.base_fee_cents, p.base_fee_cents) "
                      "AS base_fee_cents, IFNULL(o.overage, p.overage) "
                      "AS overage, o.spend_cap_micros, "
                      "IFNULL(o.max_tokens, p.max_tokens) AS max_tokens, "
                      "IFNULL(o.models, IFNULL(p.models, IF(p.model_tier "
                      "= 'all', '*', CONCAT('tier:', p.model_tier)))) "
                      "AS models, "
                      "(SELECT COUNT(*) FROM api_keys k WHERE k.account = "
                      "a.id AND k.status = 'active') AS active_keys "
                      "FROM accounts a LEFT JOIN subscriptions s ON "
                      "s.account = a.id AND s.ended_at IS NULL LEFT JOIN "
                      "plans p ON p.id = s.plan LEFT JOIN account_overrides "
                      "o ON o.account = a.id WHERE a.id = %lld", id);
    if (res == NULL) {
        goto done;
    }

    aw_print_rows(res);
    mysql_free_result(res);

    res = aw_db_query(db, "SELECT COUNT(*), IFNULL(SUM(total_tokens), 0), "
                      "IFNULL(SUM(cost_micros), 0) FROM usage_events "
                      "WHERE account = %lld AND " AW_SQL_COUNTED("")
                      " AND ts >= DATE_FORMAT(UTC_TIMESTAMP(), "
                      "'%%Y-%%m-01')", id);
    if (res == NULL) {
        goto done;
    }

    row = mysql_fetch_row(res);

    if (row) {
        printf("%-16s %s\n%-16s %s\n%-16s %s\n", "calls_this_month", row[0],
               "tokens_month", row[1], "cost_micros", row[2]);
    }

    mysql_free_result(res);
    rc = AW_EXIT_OK;

done:

    return rc;
}


static int
aw_account_list(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int         rc, npos;
    MYSQL      *db;
    MYSQL_RES  *res;
    MYSQL_ROW   row;

    rc = aw_opts_parse(argc, argv, NULL, NULL, 0, &npos, aw_account_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    res = aw_db_query(db, "SELECT a.id, a.name, a.status, p.name, "
                      "a.created_at, (SELECT COUNT(*) FROM api_keys k "
                      "WHERE k.account = a.id AND k.status = 'active') "
                      "FROM accounts a LEFT JOIN subscriptions s ON "
                      "s.account = a.id AND s.ended_at IS NULL LEFT JOIN "
                      "plans p ON p.id = s.plan ORDER BY a.id");
    if (res == NULL) {
        return AW_EXIT_FAIL;
    }

    printf("%-6s %-24s %-10s %-11s %-19s %s\n", "ID", "NAME", "STATUS",
           "PLAN", "CREATED", "KEYS");

    while ((row = mysql_fetch_row(res)) != NULL) {
        /* no plan: its subscription was ended ("-") */
        printf("%-6s %-24s %-10s %-11s %-19s %s\n", row[0], row[1], row[2],
               row[3] ? row[3] : "-", row[4], row[5]);
    }

    mysql_free_result(res);

    return AW_EXIT_OK;
}


static int
aw_account_plan(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *plan, *name;
    int          rc;
    long long    id, plan_id, cur;
    MYSQL       *db;
    aw_opt_t     opts[] = {
        { "--plan", 1, &plan },
        { NULL, 0, NULL }
    };

    plan = NULL;

    id = aw_account_open(ctx, argc, argv, opts, &db, &name, &rc);

    if (id <= 0) {
        return rc;
    }

    if (plan == NULL) {
        aw_usage_error(aw_account_usage, "account plan: --plan is required");
        return AW_EXIT_USAGE;
    }

    plan_id = aw_plan_id(db, plan);

    if (plan_id <= 0) {
        aw_usage_error(aw_account_usage, "unknown plan \"%s\"", plan);
        return AW_EXIT_USAGE;
    }

    rc = AW_EXIT_FAIL;

    cur = aw_db_scalar(db, -1, "SELECT plan FROM subscriptions WHERE "
                       "account = %lld AND ended_at IS NULL", id);

    if (cur == plan_id) {
        printf("account \"%s\" is already on plan %s\n", name, plan);
        rc = AW_EXIT_OK;
        goto done;
    }

    if (aw_db_exec(db, "START TRANSACTION") != 0
        || aw_db_exec(db, "UPDATE subscriptions SET ended_at = "
                      "UTC_TIMESTAMP() WHERE account = %lld AND ended_at "
                      "IS NULL", id) != 0
        || aw_db_exec(db, "INSERT INTO subscriptions (account, plan, "
                      "started_at) VALUES (%lld, %lld, UTC_TIMESTAMP())",
                      id, plan_id) != 0
        || aw_db_exec(db, "COMMIT") != 0)
    {
        aw_db_exec(db, "ROLLBACK");
        goto done;
    }

    if (aw_account_sync(db, id) != 0) {
        goto done;
    }

    printf("account \"%s\" is now on plan %s\n", name, plan);
    rc = AW_EXIT_OK;

done:

    return rc;
}


/* the account's status in MySQL, then its key records in Redis: 0 or -1 */

static int
aw_account_set_status(MYSQL *db, long long id, const char *status)
{
    char  sql[96];

    snprintf(sql, sizeof(sql), "UPDATE accounts SET status = ? WHERE id = "
             "%lld", id);

    if (aw_db_exec_params(db, sql, &status, 1) != 0) {
        return -1;
    }

    return aw_account_sync(db, id);
}


static int
aw_account_status(aw_cmd_ctx_t *ctx, int argc, char **argv, const char *status)
{
    const char  *name;
    int          rc;
    long long    id, subs;
    MYSQL       *db;

    id = aw_account_open(ctx, argc, argv, NULL, &db, &name, &rc);

    if (id <= 0) {
        return rc;
    }

    rc = AW_EXIT_FAIL;

    /* active without a subscription: its keys would not be served */

    if (strcmp(status, "active") == 0) {
        subs = aw_db_scalar(db, -1, "SELECT COUNT(*) FROM subscriptions "
                            "WHERE account = %lld AND ended_at IS NULL", id);

        if (subs == 0) {
            aw_log(AW_LOG_ERROR, "account \"%s\" has no subscription: give "
                   "it a plan first (\"" AW_NAME " account plan %s --plan "
                   "PLAN\")", name, name);
        }

        if (subs <= 0) {
            return rc;
        }
    }

    if (aw_account_set_status(db, id, status) == 0) {
        printf("account \"%s\" is %s\n", name, status);
        rc = AW_EXIT_OK;
    }

    return rc;
}


/* one override value into the SET list: a number, "default" (NULL) */

static int
aw_override_num(aw_buf_t *b, const char *col, const char *v, long long max,
    int money)
{
    long long  n;

    if (v == NULL) {
        return 0;
    }

    if (b->len) {
        aw_buf_puts(b, ", ");
    }

    if (strcmp(v, "default") == 0) {
        aw_buf_printf(b, "%s = NULL", col);
        return 0;
    }

    if (money == 1) {
        if (aw_money_fee_parse(v, &n) != 0) {
            return -1;
        }

    } else if (money == 2) {
        /* dollars to micros via cents */
        if (aw_money_fee_parse(v, &n) != 0) {
            return -1;
        }
        n *= 10000;

    } else if (aw_parse_int(v, 0, max, &n) != 0) {
        return -1;
    }

    aw_buf_printf(b, "%s = %lld", col, n);

    return 0;
}


static int
aw_account_override(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *name, *included, *rpm, *tpm, *models, *fee, *cap, *maxt;
    const char  *overage;
    int          rc;
    long long    id, n;
    aw_buf_t     keep, q;
    aw_stmt_t    set, u;
    MYSQL       *db;
    char         idtext[24];
    aw_opt_t     opts[] = {
        { "--included", 1, &included },
        { "--rpm", 1, &rpm },
        { "--tpm", 1, &tpm },
        { "--models", 1, &models },
        { "--base-fee", 1, &fee },
        { "--spend-cap", 1, &cap },
        { "--max-tokens", 1, &maxt },
        { "--overage", 1, &overage },
        { NULL, 0, NULL }
    };

    included = rpm = tpm = models = fee = cap = maxt = overage = NULL;

    id = aw_account_open(ctx, argc, argv, opts, &db, &name, &rc);

    if (id <= 0) {
        return rc;
    }

    /*
     * A spend cap is above $0: the module and invoices read 0 as no cap
     * at all, so a cap of 0 would leave the overage unlimited.
     */

    if (cap && strcmp(cap, "default") != 0
        && (aw_money_fee_parse(cap, &n) != 0 || n == 0))
    {
        aw_usage_error(aw_account_usage, "account override: invalid "
                       "--spend-cap \"%s\": US dollars above 0, at most "
                       "9223372036854.77, two decimals at most (a cap of 0 "
                       "would be no cap: --overage 0 refuses the calls "
                       "beyond the included ones, --spend-cap default "
                       "clears the cap)", cap);
        return AW_EXIT_USAGE;
    }

    aw_stmt_init(&set);
    aw_stmt_init(&u);
    aw_buf_init(&keep);
    aw_buf_init(&q);

    if (aw_override_num(&set.sql, "included_calls", included, 1LL << 50, 0)
        || aw_override_num(&set.sql, "rpm", rpm, 4294967295LL, 0)
        || aw_override_num(&set.sql, "tpm", tpm, 4294967295LL, 0)
        || aw_override_num(&set.sql, "base_fee_cents", fee, 0, 1)
        || aw_override_num(&set.sql, "spend_cap_micros", cap, 0, 2)
        || aw_override_num(&set.sql, "max_tokens", maxt, 4294967295LL, 0)
        || aw_override_num(&set.sql, "overage", overage, 1, 0))
    {
        aw_usage_error(aw_account_usage, "account override: invalid value");
        rc = AW_EXIT_USAGE;
        goto done;
    }

    if (set.sql.len == 0 && models == NULL) {
        aw_usage_error(aw_account_usage, "account override: nothing to "
                       "set");
        rc = AW_EXIT_USAGE;
        goto done;
    }

    /* the list as "plan --models" takes it: catalog ids, tiers, "*" */

    rc = aw_catalog_models_set(db, models, aw_account_usage, &set, &keep);

    if (rc != 0) {
        rc = rc == -2 ? AW_EXIT_FAIL : AW_EXIT_USAGE;
        goto done;
    }

    rc = AW_EXIT_FAIL;

    /* an ended month not closed yet is billed on the contract as it was */

    snprintf(idtext, sizeof(idtext), "%lld", id);

    if (aw_terms_hold(db, "s.account = ?", idtext) != 0) {
        aw_log(AW_LOG_ERROR, "account \"%s\" not changed: the terms of the "
               "ended months not closed yet could not be held", name);
        goto done;
    }

    aw_buf_printf(&q, "INSERT INTO account_overrides (account) VALUES "
                  "(%lld) ON DUPLICATE KEY UPDATE account = account", id);

    if (aw_db_buf_exec(db, &q) != 0) {
        goto done;
    }

    aw_buf_puts(&u.sql, "UPDATE account_overrides SET ");
    aw_stmt_append(&u, &set);
    aw_buf_printf(&u.sql, " WHERE account = %lld", id);

    if (aw_stmt_exec(db, &u) == 0 && aw_account_sync(db, id) == 0) {
        printf("account \"%s\" overrides updated\n", name);
        rc = AW_EXIT_OK;
    }

done:

    aw_stmt_free(&set);
    aw_stmt_free(&u);
    aw_buf_free(&keep);
    aw_buf_free(&q);

    return rc;
}


static int
aw_account_suspend(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    return aw_account_status(ctx, argc, argv, "suspended");
}


static int
aw_account_resume(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    return aw_account_status(ctx, argc, argv, "active");
}


/*
 * The customer leaves: the account is suspended first, while the key sync
 * still writes its keys (it writes only the keys of accounts with a
 * subscription), so every node refuses them at once and their records
 * stay refused; then the subscription ends.  Idempotent.
 */

static int
aw_account_cancel(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *name;
    int          rc;
    long long    id;
    MYSQL       *db;

    id = aw_account_open(ctx, argc, argv, NULL, &db, &name, &rc);

    if (id <= 0) {
        return rc;
    }

    rc = AW_EXIT_FAIL;

    if (aw_account_set_status(db, id, "suspended") != 0) {
        return rc;
    }

    if (aw_db_exec(db, "UPDATE subscriptions SET ended_at = UTC_TIMESTAMP() "
                   "WHERE account = %lld AND ended_at IS NULL", id) != 0)
    {
        return rc;
    }

    if (mysql_affected_rows(db) == 0) {
        printf("account \"%s\" has no subscription; it is suspended\n",
               name);

    } else {
        printf("account \"%s\" is cancelled: its keys are refused, its "
               "subscription ended now\n", name);
    }

    return AW_EXIT_OK;
}


static const aw_cmd_t  aw_account_cmds[] = {
    { "create", aw_account_create_cmd, AW_NEEDS_DB, NULL },
    { "show", aw_account_show, AW_NEEDS_DB, NULL },
    { "list", aw_account_list, AW_NEEDS_DB, NULL },
    { "plan", aw_account_plan, AW_NEEDS_DB, NULL },
    { "override", aw_account_override, AW_NEEDS_DB, NULL },
    { "suspend", aw_account_suspend, AW_NEEDS_DB, NULL },
    { "resume", aw_account_resume, AW_NEEDS_DB, NULL },
    { "cancel", aw_account_cancel, AW_NEEDS_DB, NULL },
    { NULL, NULL, 0, NULL }
};


const aw_group_t  aw_account_group = {
    "account", aw_account_usage, aw_account_cmds
};
