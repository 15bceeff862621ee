/*
 * Shared account look-ups for the admin commands.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include "aihub_worker.h"
#include "account.h"
#include "db.h"


/* account id by name; 0 if none, -1 on error */

long long
aw_account_id(MYSQL *db, const char *name)
{
    aw_buf_t    q;
    MYSQL_RES  *res;
    MYSQL_ROW   row;
    long long   id;

    aw_buf_init(&q);
    aw_buf_puts(&q, "SELECT id FROM accounts WHERE name = ");
    aw_buf_sql_str(&q, db, name);

    if (aw_db_buf_exec(db, &q) != 0
        || (res = mysql_store_result(db)) == NULL)
    {
        aw_buf_free(&q);
        return -1;
    }

    aw_buf_free(&q);

    row = mysql_fetch_row(res);
    id = row ? strtoll(row[0], NULL, 10) : 0;
    mysql_free_result(res);

    return id;
}


/* plan id by name; 0 if none, -1 on error */

long long
aw_plan_id(MYSQL *db, const char *name)
{
    aw_buf_t   q;
    long long  id;

    aw_buf_init(&q);
    aw_buf_puts(&q, "SELECT id FROM plans WHERE name = ");
    aw_buf_sql_str(&q, db, name);
    id = aw_db_scalar(db, 0, "%s", q.data);
    aw_buf_free(&q);

    return id;
}


int
aw_account_name_ok(const char *name)
{
    size_t  i, n;

    n = strlen(name);

    if (n == 0 || n > 64) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if ((unsigned char) name[i] < 0x20 || name[i] == 0x7f) {
            return 0;
        }
    }

    return 1;
}


/*
 * Creates the account with a subscription on the plan, anchored now, in
 * one transaction.  Returns the new id, or -1 (logged).
 */

long long
aw_account_create(MYSQL *db, const char *name, const char *plan)
{
    long long  plan_id, id;
    aw_buf_t   q;

    plan_id = aw_plan_id(db, plan);

    if (plan_id <= 0) {
        aw_log(AW_LOG_ERROR, "unknown plan \"%s\"", plan);
        return -1;
    }

    if (aw_db_exec(db, "START TRANSACTION") != 0) {
        return -1;
    }

    aw_buf_init(&q);
    aw_buf_puts(&q, "INSERT INTO accounts (name) VALUES (");
    aw_buf_sql_str(&q, db, name);
    aw_buf_puts(&q, ")");

    if (aw_db_buf_exec(db, &q) != 0) {
        aw_buf_free(&q);
        aw_db_exec(db, "ROLLBACK");
        return -1;
    }

    aw_buf_free(&q);
    id = (long long) mysql_insert_id(db);

    if (aw_db_exec(db, "INSERT INTO subscriptions (account, plan, "
                   "started_at) VALUES (%lld, %lld, UTC_TIMESTAMP())",
                   id, plan_id) != 0
        || aw_db_exec(db, "COMMIT") != 0)
    {
        aw_db_exec(db, "ROLLBACK");
        return -1;
    }

    return id;
}
