/*
 * "aihub-worker key create | list | revoke".  A key is shown once, on
 * stdout, at creation; MySQL and Redis keep only its SHA-256 and its
 * display prefix.  Nothing here logs a key.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mysql.h>

#include "aihub_worker.h"
#include "account.h"
#include "command.h"
#include "db.h"
#include "sync.h"


static const char  aw_key_usage[] =
    "usage: " AW_NAME " key create --account NAME [--plan PLAN]\n"
    "                            [--scopes chat|admin|chat,admin]\n"
    "                            [--label TEXT] [--expires UNIX]\n"
    "       " AW_NAME " key list --account NAME\n"
    "       " AW_NAME " key revoke PREFIX\n"
    "\n"
    "create  makes the account (on --plan, default free) if missing and\n"
    "        prints the new key once, alone on the first line of stdout;\n"
    "        --scopes: chat (default) calls the models, admin manages the\n"
    "        account's keys through the developer API\n"
    "list    shows the account's keys, masked\n"
    "revoke  revokes a key by its display prefix (ai-hub-XXXXXXXX), at\n"
    "        once on every nginx node\n";


static int
aw_scopes_ok(const char *s)
{
    return strcmp(s, "chat") == 0 || strcmp(s, "chat,admin") == 0
           || strcmp(s, "admin") == 0;
}


/*
 * The account a new key goes to, created on plan (default free) if
 * missing; an existing account keeps its plan, and one without a
 * subscription is refused.  Its id, or -1.
 */

static long long
aw_key_account(MYSQL *db, const char *account, const char *plan)
{
    long long   account_id;
    char        cur[33];
    MYSQL_RES  *res;
    MYSQL_ROW   row;

    account_id = aw_account_id(db, account);
    if (account_id < 0) {
        return -1;
    }

    if (account_id == 0) {
        account_id = aw_account_create(db, account, plan ? plan : "free");
        if (account_id < 0) {
            return -1;
        }

        aw_log(AW_LOG_INFO, "created account \"%s\" (id %lld) on plan %s",
               account, account_id, plan ? plan : "free");

    } else {
        /* its plan now: none once its subscription was ended */

        res = aw_db_query(db, "SELECT p.name FROM subscriptions s JOIN "
                          "plans p ON p.id = s.plan WHERE s.account = %lld "
                          "AND s.ended_at IS NULL", account_id);
        if (res == NULL) {
            return -1;
        }

        row = mysql_fetch_row(res);
        snprintf(cur, sizeof(cur), "%s", row && row[0] ? row[0] : "");
        mysql_free_result(res);

        if (cur[0] == '\0') {
            aw_log(AW_LOG_ERROR, "account \"%s\" has no subscription, so "
                   "no key of it would be served: give it a plan first "
                   "(\"" AW_NAME " account plan %s --plan PLAN\")", account,
                   account);
            return -1;
        }

        if (plan && strcmp(cur, plan) != 0) {
            aw_log(AW_LOG_WARN, "account \"%s\" exists on plan %s; --plan "
                   "%s ignored (use \"" AW_NAME " account plan\")", account,
                   cur, plan);
        }
    }

    return account_id;
}


/* a fresh key for the account in MySQL; 0, or -1 with the error logged */

static int
aw_key_insert(MYSQL *db, long long account_id, const char *label,
    const char *scopes, long long exp, char *key, char *hash, char *prefix)
{
    int        tries;
    char       te[AW_SQL_TIME_LEN];
    aw_stmt_t  q;

    for (tries = 0; ; tries++) {
        if (aw_key_generate(key) != 0) {
            return -1;
        }

        aw_sha256_hex(key, AIHUB_KEY_LEN, hash);
        memcpy(prefix, key, AIHUB_KEY_PREFIX_LEN);
        prefix[AIHUB_KEY_PREFIX_LEN] = '\0';

        aw_stmt_init(&q);
        aw_buf_printf(&q.sql, "INSERT INTO api_keys (account, key_hash, "
                      "prefix, label, scopes, expires_at) VALUES (%lld, ",
                      account_id);
        aw_stmt_str(&q, hash);
        aw_buf_puts(&q.sql, ", ");
        aw_stmt_str(&q, prefix);
        aw_buf_puts(&q.sql, ", ");
        aw_stmt_str(&q, label ? label : "");
        aw_buf_puts(&q.sql, ", ");
        aw_stmt_str(&q, scopes);

        if (exp) {
            aw_buf_printf(&q.sql, ", %s)", aw_sql_time(exp, te));

        } else {
            aw_buf_puts(&q.sql, ", NULL)");
        }

        if (aw_stmt_exec(db, &q) == 0) {
            break;
        }

        /* a prefix collision (1 in 62^8) gets a fresh key */

        if (aw_db_errno(db) != 1062 || tries >= 3) {
            return -1;
        }
    }

    return 0;
}


static int
aw_key_create(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *account, *plan, *scopes, *label, *expires;
    char         key[AIHUB_KEY_LEN + 1], hash[AIHUB_SHA256_HEX_LEN + 1];
    char         prefix[AIHUB_KEY_PREFIX_LEN + 1];
    int          rc, npos;
    long long    account_id, exp;
    MYSQL       *db;
    aw_opt_t     opts[] = {
        { "--account", 1, &account },
        { "--plan", 1, &plan },
        { "--scopes", 1, &scopes },
        { "--label", 1, &label },
        { "--expires", 1, &expires },
        { NULL, 0, NULL }
    };

    account = plan = scopes = label = expires = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_key_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (account == NULL) {
        aw_usage_error(aw_key_usage, "key create: --account is required");
        return AW_EXIT_USAGE;
    }

    if (!aw_account_name_ok(account)) {
        aw_usage_error(aw_key_usage, "invalid account name");
        return AW_EXIT_USAGE;
    }

    if (scopes == NULL) {
        scopes = "chat";

    } else if (!aw_scopes_ok(scopes)) {
        aw_usage_error(aw_key_usage, "invalid scopes \"%s\" (chat, admin "
                       "or chat,admin)", scopes);
        return AW_EXIT_USAGE;
    }

    if (label && (strlen(label) > 255 || aw_has_control(label))) {
        aw_usage_error(aw_key_usage, "label longer than 255 bytes, or with "
                       "control characters");
        return AW_EXIT_USAGE;
    }

    exp = 0;

    if (expires && aw_parse_int(expires, 0, 253402300799LL, &exp) != 0) {
        aw_usage_error(aw_key_usage, "invalid --expires \"%s\" (unix "
                       "seconds, 0 = never)", expires);
        return AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    /* the plans are rows ("plan list"), not a fixed set */

    if (plan && aw_plan_id(db, plan) <= 0) {
        aw_usage_error(aw_key_usage, "unknown plan \"%s\"", plan);
        return AW_EXIT_USAGE;
    }

    rc = AW_EXIT_FAIL;

    account_id = aw_key_account(db, account, plan);
    if (account_id < 0) {
        goto done;
    }

    if (aw_key_insert(db, account_id, label, scopes, exp, key, hash, prefix)
        != 0)
    {
        goto done;
    }

    if (aw_sync_after_change(db, "k.key_hash = ?", hash, NULL) != 0) {
        aw_db_exec_params(db, "DELETE FROM api_keys WHERE key_hash = ?",
                          (const char *[]) { hash }, 1);
        aw_log(AW_LOG_ERROR, "key not created");
        goto done;
    }

    printf("%s\n", key);
    fflush(stdout);
    memset(key, 0, sizeof(key));

    aw_log(AW_LOG_INFO, "key %s created for account \"%s\" (id %lld), "
           "scopes %s", prefix, account, account_id, scopes);

    rc = AW_EXIT_OK;

done:

    return rc;
}


static int
aw_key_list(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    char        *p;
    const char  *account;
    int          rc, npos;
    long long    account_id;
    MYSQL       *db;
    MYSQL_RES   *res;
    MYSQL_ROW    row;
    aw_opt_t     opts[] = {
        { "--account", 1, &account },
        { NULL, 0, NULL }
    };

    account = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_key_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (account == NULL) {
        aw_usage_error(aw_key_usage, "key list: --account is required");
        return AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    rc = AW_EXIT_FAIL;

    account_id = aw_account_id(db, account);

    if (account_id == 0) {
        aw_log(AW_LOG_ERROR, "no account \"%s\"", account);
    }

    if (account_id <= 0) {
        goto done;
    }

    res = aw_db_query(db, "SELECT prefix, status, scopes, created_at, "
                      "IFNULL(expires_at, 'never'), "
                      "IFNULL(revoked_at, '-'), source, label "
                      "FROM api_keys WHERE account = %lld ORDER BY id",
                      account_id);
    if (res == NULL) {
        goto done;
    }

    printf("%-20s %-8s %-11s %-19s %-19s %-19s %-6s %s\n", "KEY", "STATUS",
           "SCOPES", "CREATED", "EXPIRES", "REVOKED", "SOURCE", "LABEL");

    while ((row = mysql_fetch_row(res)) != NULL) {
        /* a label stored before control characters were refused: shown
           as '?', not obeyed by the terminal */

        for (p = row[7]; p && *p; p++) {
            if ((unsigned char) *p < 0x20 || *p == 0x7f) {
                *p = '?';
            }
        }

        printf("%s\xe2\x80\xa6%-4s %-8s %-11s %-19s %-19s %-19s %-6s %s\n",
               row[0], "", row[1], row[2], row[3], row[4], row[5], row[6],
               row[7]);
    }

    mysql_free_result(res);
    rc = AW_EXIT_OK;

done:

    return rc;
}


static int
aw_key_revoke(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    char          prefix[64], hash[AIHUB_SHA256_HEX_LEN + 1];
    char          msg[128];
    char         *pos[1], **row;
    int           rc, npos;
    size_t        n;
    MYSQL        *db;
    aw_rows_t    *res;

    rc = aw_opts_parse(argc, argv, NULL, pos, 1, &npos, aw_key_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (npos != 1) {
        aw_usage_error(aw_key_usage, "key revoke: the key prefix is "
                       "required");
        return AW_EXIT_USAGE;
    }

    /* accept "ai-hub-XXXXXXXX", the masked "ai-hub-XXXXXXXX…", a full key */

    n = strlen(pos[0]);

    if (n == AIHUB_KEY_LEN && aihub_key_check(pos[0], n)) {
        n = AIHUB_KEY_PREFIX_LEN;

    } else if (n == AIHUB_KEY_PREFIX_LEN + 3
               && strcmp(pos[0] + AIHUB_KEY_PREFIX_LEN, "\xe2\x80\xa6") == 0)
    {
        n = AIHUB_KEY_PREFIX_LEN;
    }

    if (n != AIHUB_KEY_PREFIX_LEN
        || strncmp(pos[0], AIHUB_KEY_TAG, AIHUB_KEY_TAG_LEN) != 0
        || strspn(pos[0] + AIHUB_KEY_TAG_LEN,
                  "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                  "abcdefghijklmnopqrstuvwxyz") < 8)
    {
        aw_usage_error(aw_key_usage, "invalid key prefix (expected "
                       AIHUB_KEY_TAG "XXXXXXXX)");
        return AW_EXIT_USAGE;
    }

    memcpy(prefix, pos[0], n);
    prefix[n] = '\0';

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    rc = AW_EXIT_FAIL;

    res = aw_db_select_params(db, "SELECT key_hash, status FROM api_keys "
                              "WHERE prefix = ?",
                              (const char *[]) { prefix }, 1);

    if (res == NULL) {
        goto done;
    }

    row = aw_rows_next(res);

    if (row == NULL || row[0] == NULL) {
        aw_rows_free(res);
        aw_log(AW_LOG_ERROR, "no key %s", prefix);
        goto done;
    }

    snprintf(hash, sizeof(hash), "%s", row[0]);
    aw_rows_free(res);

    if (aw_db_exec_params(db, "UPDATE api_keys SET status = 'revoked', "
                          "revoked_at = IFNULL(revoked_at, "
                          "UTC_TIMESTAMP()) WHERE key_hash = ?",
                          (const char *[]) { hash }, 1) != 0)
    {
        goto done;
    }

    snprintf(msg, sizeof(msg), AIHUB_INV_KEY "%s", hash);

    if (aw_sync_after_revoke(db, hash, msg) != 0) {
        goto done;
    }

    printf("revoked %s\n", prefix);
    rc = AW_EXIT_OK;

done:

    return rc;
}


static const aw_cmd_t  aw_key_cmds[] = {
    { "create", aw_key_create, AW_NEEDS_DB, NULL },
    { "list", aw_key_list, AW_NEEDS_DB, NULL },
    { "revoke", aw_key_revoke, AW_NEEDS_DB, NULL },
    { NULL, NULL, 0, NULL }
};


const aw_group_t  aw_key_group = {
    "key", aw_key_usage, aw_key_cmds
};
