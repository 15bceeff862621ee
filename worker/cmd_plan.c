/*
 * "aihub-worker plan add | set | list | remove": the plans accounts
 * subscribe to.  A change is made in MySQL, then the plans and the key
 * records of the plan's accounts (they carry its numbers) are rewritten
 * in Redis and "all" is published, so every nginx node applies it at
 * once.  Account-level values stay in "account override".
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "catalog.h"
#include "command.h"
#include "db.h"
#include "invoice.h"


static const char  aw_plan_usage[] =
    "usage: " AW_NAME " plan add NAME [--base-fee USD] [--included N] "
    "[--rpm N] [--tpm N]\n"
    "             [--model-tier basic|all] [--overage on|off] "
    "[--max-tokens N]\n"
    "             [--hard-quota on|off] [--priority N]\n"
    "             [--models LIST|*|default]\n"
    "       " AW_NAME " plan set NAME [the options of add]\n"
    "       " AW_NAME " plan list [--json]\n"
    "       " AW_NAME " plan remove NAME\n"
    "\n"
    "NAME          [a-z0-9_-], at most 32 characters\n"
    "--base-fee    US dollars a month (\"19\", \"19.90\"); default 0\n"
    "--included    calls included a month; default 0\n"
    "--rpm, --tpm  requests and tokens a minute per key; default 60 and\n"
    "              100000\n"
    "--model-tier  basic: basic models only; all: every model; default\n"
    "              basic\n"
    "--models      instead of the tier: model ids and tier:basic,\n"
    "              tier:premium entries, comma separated, or *; default\n"
    "              clears (an account's own list: account override\n"
    "              --models)\n"
    "--overage     on: calls beyond the included ones are billed at the\n"
    "              models' prices; off (default): they are refused\n"
    "--hard-quota  on (default): the included calls are a hard stop\n"
    "              unless overage is on\n"
    "--max-tokens  cap on a call's max_tokens; 0 (default): none\n"
    "--priority    0-127, higher is served first when a provider is\n"
    "              saturated; default 0\n"
    "remove        refused while any account has (or had) the plan\n"
    "\n"
    "Every change reaches every nginx node within a second.\n";


typedef struct {
    const char  *base_fee;
    const char  *included;
    const char  *rpm;
    const char  *tpm;
    const char  *model_tier;
    const char  *overage;
    const char  *max_tokens;
    const char  *hard_quota;
    const char  *priority;
    const char  *models;
} aw_plan_args_t;


/* one "col = n" into the SET list; -1 if the value is not valid */

static int
aw_plan_num(aw_buf_t *set, const char *col, const char *opt, const char *v,
    long long max)
{
    long long  n;

    if (v == NULL) {
        return 0;
    }

    if (aw_parse_int(v, 0, max, &n) != 0) {
        return aw_usage_error(aw_plan_usage, "invalid %s \"%s\": an "
                              "integer from 0 to %lld", opt, v, max);
    }

    aw_buf_printf(set, "%s%s = %lld", set->len ? ", " : "", col, n);

    return 0;
}


static int
aw_plan_flag(aw_buf_t *set, const char *col, const char *opt, const char *v)
{
    int  on;

    if (v == NULL) {
        return 0;
    }

    if (aw_catalog_flag_parse(v, &on) != 0) {
        return aw_usage_error(aw_plan_usage, "invalid %s \"%s\" (on or off)",
                              opt, v);
    }

    aw_buf_printf(set, "%s%s = %d", set->len ? ", " : "", col, on);

    return 0;
}


/* the options as a SET list; 0, or -1 with the usage error printed */

static int
aw_plan_set_list(const aw_plan_args_t *a, aw_stmt_t *st)
{
    long long   cents;
    aw_buf_t   *set;

    set = &st->sql;

    if (a->base_fee) {
        if (aw_money_fee_parse(a->base_fee, &cents) != 0) {
            return aw_usage_error(aw_plan_usage, "invalid --base-fee \"%s\""
                                  ": US dollars, not negative, at most two "
                                  "decimals", a->base_fee);
        }

        aw_buf_printf(set, "base_fee_cents = %lld", cents);
    }

    if (aw_plan_num(set, "included_calls", "--included", a->included,
                    1LL << 50) != 0
        || aw_plan_num(set, "rpm", "--rpm", a->rpm, 4294967295LL) != 0
        || aw_plan_num(set, "tpm", "--tpm", a->tpm, 4294967295LL) != 0
        || aw_plan_num(set, "max_tokens", "--max-tokens", a->max_tokens,
                       4294967295LL) != 0
        || aw_plan_num(set, "priority", "--priority", a->priority, 127) != 0
        || aw_plan_flag(set, "overage", "--overage", a->overage) != 0
        || aw_plan_flag(set, "hard_quota", "--hard-quota", a->hard_quota)
           != 0)
    {
        return -1;
    }

    if (a->model_tier) {
        if (aw_catalog_word_ok(a->model_tier, "basic|all") != 0) {
            return aw_usage_error(aw_plan_usage, "invalid --model-tier "
                                  "\"%s\" (basic or all)", a->model_tier);
        }

        aw_buf_printf(set, "%smodel_tier = ", set->len ? ", " : "");
        aw_stmt_str(st, a->model_tier);
    }

    return 0;
}


/*
 * Reads NAME and the options into a SET list; 1 and *exit_code when the
 * command is done (help, usage error), else 0.
 */

static int
aw_plan_args(int argc, char **argv, int with_values, const char **name,
    aw_stmt_t *set, const char **models, int *exit_code)
{
    char            *pos[1];
    int              rc, npos;
    aw_plan_args_t   a;
    aw_opt_t         opts[] = {
        { "--base-fee", 1, &a.base_fee },
        { "--included", 1, &a.included },
        { "--rpm", 1, &a.rpm },
        { "--tpm", 1, &a.tpm },
        { "--model-tier", 1, &a.model_tier },
        { "--overage", 1, &a.overage },
        { "--max-tokens", 1, &a.max_tokens },
        { "--hard-quota", 1, &a.hard_quota },
        { "--priority", 1, &a.priority },
        { "--models", 1, &a.models },
        { NULL, 0, NULL }
    };

    memset(&a, 0, sizeof(a));
    *models = NULL;

    rc = aw_opts_parse(argc, argv, with_values ? opts : NULL, pos, 1, &npos,
                       aw_plan_usage);
    if (rc != 0) {
        *exit_code = rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
        return 1;
    }

    if (npos != 1 || !aw_catalog_name_ok(pos[0])) {
        aw_usage_error(aw_plan_usage, "a valid plan NAME is required");
        *exit_code = AW_EXIT_USAGE;
        return 1;
    }

    *name = pos[0];

    if (aw_plan_set_list(&a, set) != 0) {
        *exit_code = AW_EXIT_USAGE;
        return 1;
    }

    *models = a.models;

    return 0;
}


/* sql's one "?" is the plan's name */

static long long
aw_plan_count(MYSQL *db, const char *sql, const char *name)
{
    return aw_db_scalar_params(db, -1, sql, &name, 1);
}


static int
aw_plan_add(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int          rc;
    aw_stmt_t    set, q;
    aw_buf_t     keep;
    MYSQL       *db;
    const char  *name, *models;

    aw_stmt_init(&set);
    aw_stmt_init(&q);
    aw_buf_init(&keep);

    if (aw_plan_args(argc, argv, 1, &name, &set, &models, &rc)) {
        goto done;
    }

    rc = AW_EXIT_FAIL;

    if (aw_cmd_connect(ctx) != 0) {
        goto done;
    }

    db = ctx->db;

    if (aw_plan_count(db, "SELECT COUNT(*) FROM plans WHERE name = ?", name)
        != 0)
    {
        aw_log(AW_LOG_ERROR, "plan \"%s\" exists: change it with \"" AW_NAME
               " plan set\"", name);
        goto done;
    }

    if (aw_db_scalar(db, -1, "SELECT COUNT(*) FROM plans")
        >= AW_TERMS_PLANS)
    {
        /* an invoice stores the overage rule of every plan */
        aw_log(AW_LOG_ERROR, "there are %d plans, as many as there may be",
               AW_TERMS_PLANS);
        goto done;
    }

    rc = aw_catalog_models_set(db, models, aw_plan_usage, &set, &keep);

    if (rc != 0) {
        rc = rc == -2 ? AW_EXIT_FAIL : AW_EXIT_USAGE;
        goto done;
    }

    rc = AW_EXIT_FAIL;

    aw_buf_puts(&q.sql, "INSERT INTO plans SET name = ");
    aw_stmt_str(&q, name);

    if (set.sql.len) {
        aw_buf_puts(&q.sql, ", ");
        aw_stmt_append(&q, &set);
    }

    if (aw_stmt_exec(db, &q) != 0
        || aw_catalog_publish(db, name, NULL) != 0)
    {
        goto done;
    }

    printf("plan %s added\n", name);
    rc = AW_EXIT_OK;

done:

    aw_buf_free(&set.sql);
    aw_buf_free(&q.sql);
    aw_buf_free(&keep);

    return rc;
}


static int
aw_plan_set(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int          rc;
    aw_stmt_t    set, q;
    aw_buf_t     keep;
    MYSQL       *db;
    const char  *name, *models;

    aw_stmt_init(&set);
    aw_stmt_init(&q);
    aw_buf_init(&keep);

    if (aw_plan_args(argc, argv, 1, &name, &set, &models, &rc)) {
        goto done;
    }

    if (set.sql.len == 0 && models == NULL) {
        aw_usage_error(aw_plan_usage, "plan set: nothing to set");
        rc = AW_EXIT_USAGE;
        goto done;
    }

    rc = AW_EXIT_FAIL;

    if (aw_cmd_connect(ctx) != 0) {
        goto done;
    }

    db = ctx->db;

    if (aw_plan_count(db, "SELECT COUNT(*) FROM plans WHERE name = ?", name)
        != 1)
    {
        aw_log(AW_LOG_ERROR, "no plan \"%s\" (see \"" AW_NAME " plan "
               "list\")", name);
        goto done;
    }

    rc = aw_catalog_models_set(db, models, aw_plan_usage, &set, &keep);

    if (rc != 0) {
        rc = rc == -2 ? AW_EXIT_FAIL : AW_EXIT_USAGE;
        goto done;
    }

    rc = AW_EXIT_FAIL;

    /* an ended month not closed yet is billed on the plan as it was */

    if (aw_terms_hold(db, "p.name = ?", name) != 0) {
        aw_log(AW_LOG_ERROR, "plan \"%s\" not changed: the terms of the "
               "ended months not closed yet could not be held", name);
        goto done;
    }

    aw_buf_puts(&q.sql, "UPDATE plans SET ");
    aw_stmt_append(&q, &set);
    aw_buf_puts(&q.sql, " WHERE name = ");
    aw_stmt_str(&q, name);

    if (aw_stmt_exec(db, &q) != 0
        || aw_catalog_publish(db, name, NULL) != 0)
    {
        goto done;
    }

    printf("plan %s updated; its accounts' keys follow at once\n", name);
    rc = AW_EXIT_OK;

done:

    aw_buf_free(&set.sql);
    aw_buf_free(&q.sql);
    aw_buf_free(&keep);

    return rc;
}


static int
aw_plan_remove(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int          rc;
    long long    now, ever;
    aw_stmt_t    set, q;
    aw_buf_t     keep;
    MYSQL       *db;
    const char  *name, *models;

    aw_stmt_init(&set);
    aw_stmt_init(&q);
    aw_buf_init(&keep);

    if (aw_plan_args(argc, argv, 0, &name, &set, &models, &rc)) {
        goto done;
    }

    rc = AW_EXIT_FAIL;

    if (aw_cmd_connect(ctx) != 0) {
        goto done;
    }

    db = ctx->db;

    if (aw_plan_count(db, "SELECT COUNT(*) FROM plans WHERE name = ?", name)
        != 1)
    {
        aw_log(AW_LOG_ERROR, "no plan \"%s\" (see \"" AW_NAME " plan "
               "list\")", name);
        goto done;
    }

    now = aw_plan_count(db, "SELECT COUNT(*) FROM subscriptions s JOIN "
                        "plans p ON p.id = s.plan WHERE s.ended_at IS NULL "
                        "AND p.name = ?", name);
    ever = aw_plan_count(db, "SELECT COUNT(*) FROM subscriptions s JOIN "
                         "plans p ON p.id = s.plan WHERE p.name = ?", name);

    if (now < 0 || ever < 0) {
        goto done;
    }

    if (now > 0) {
        aw_log(AW_LOG_ERROR, "plan \"%s\" has %lld account%s: move %s to "
               "another plan first (" AW_NAME " account plan NAME --plan "
               "...)", name, now, now == 1 ? "" : "s",
               now == 1 ? "it" : "them");
        goto done;
    }

    if (ever > 0) {
        aw_log(AW_LOG_ERROR, "plan \"%s\" is in the subscription history "
               "of %lld account%s (their invoices name it): it stays",
               name, ever, ever == 1 ? "" : "s");
        goto done;
    }

    aw_buf_puts(&q.sql, "DELETE FROM plans WHERE name = ");
    aw_stmt_str(&q, name);

    if (aw_stmt_exec(db, &q) != 0
        || aw_catalog_publish(db, name, name) != 0)
    {
        goto done;
    }

    printf("plan %s removed\n", name);
    rc = AW_EXIT_OK;

done:

    aw_buf_free(&set.sql);
    aw_buf_free(&q.sql);
    aw_buf_free(&keep);

    return rc;
}


static int
aw_plan_list(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int          rc, npos, i;
    char         fee[32];
    const char  *json, *cells[11];
    MYSQL_RES   *res;
    MYSQL_ROW    row;
    aw_table_t   t;
    cJSON       *arr, *o;
    aw_opt_t     opts[] = {
        { "--json", 0, &json },
        { NULL, 0, NULL }
    };
    static const char *const  head[11] = {
        "PLAN", "BASE_FEE", "INCLUDED", "RPM", "TPM", "MODELS", "OVERAGE",
        "HARD_QUOTA", "MAX_TOKENS", "PRIORITY", "ACCOUNTS"
    };
    static const char *const  num[] = {
        "base_fee_cents", "included_calls", "rpm", "tpm", NULL,
        NULL, NULL, "max_tokens", "priority", "accounts"
    };

    json = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_plan_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    res = aw_db_query(ctx->db, "SELECT p.name, p.base_fee_cents, "
                      "p.included_calls, p.rpm, p.tpm, "
                      "IFNULL(p.models, p.model_tier), "
                      "p.overage, p.hard_quota, p.max_tokens, p.priority, "
                      "(SELECT COUNT(*) FROM subscriptions s WHERE s.plan = "
                      "p.id AND s.ended_at IS NULL), p.model_tier, "
                      "p.models FROM plans p "
                      "ORDER BY p.priority, p.base_fee_cents, p.name");
    if (res == NULL) {
        return AW_EXIT_FAIL;
    }

    arr = cJSON_CreateArray();
    aw_table_init(&t, 11, head);

    while ((row = mysql_fetch_row(res)) != NULL) {
        aw_money_format(strtoll(row[1], NULL, 10), fee, sizeof(fee));

        memcpy(cells, row, 11 * sizeof(char *));
        cells[1] = fee;
        cells[6] = row[6][0] == '1' ? "on" : "off";
        cells[7] = row[7][0] == '1' ? "on" : "off";
        aw_table_add(&t, cells);

        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", row[0]);

        for (i = 0; i < 10; i++) {
            if (num[i]) {
                cJSON_AddNumberToObject(o, num[i],
                                        (double) strtoll(row[i + 1], NULL,
                                                         10));
            }
        }

        cJSON_AddStringToObject(o, "model_tier", row[11]);

        if (row[12]) {
            cJSON_AddStringToObject(o, "models", row[12]);

        } else {
            cJSON_AddNullToObject(o, "models");
        }

        cJSON_AddBoolToObject(o, "overage", row[6][0] == '1');
        cJSON_AddBoolToObject(o, "hard_quota", row[7][0] == '1');
        cJSON_AddItemToArray(arr, o);
    }

    mysql_free_result(res);

    aw_table_emit(&t, arr, json != NULL);

    return AW_EXIT_OK;
}


static const aw_cmd_t  aw_plan_cmds[] = {
    { "add", aw_plan_add, AW_NEEDS_DB, NULL },
    { "set", aw_plan_set, AW_NEEDS_DB, NULL },
    { "list", aw_plan_list, AW_NEEDS_DB, NULL },
    { "remove", aw_plan_remove, AW_NEEDS_DB, NULL },
    { NULL, NULL, 0, NULL }
};


const aw_group_t  aw_plan_group = {
    "plan", aw_plan_usage, aw_plan_cmds
};
