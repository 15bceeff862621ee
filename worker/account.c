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
    char       **row;
    long long    id;
    aw_rows_t   *rs;

    rs = aw_db_select_params(db, "SELECT id FROM accounts WHERE name = ?",
                             (const char *[]) { name }, 1);
    if (rs == NULL) {
        return -1;
    }

    row = aw_rows_next(rs);
    id = (row && row[0]) ? strtoll(row[0], NULL, 10) : 0;
    aw_rows_free(rs);

    return id;
}


/* plan id by name; 0 if none, -1 on error */

long long
aw_plan_id(MYSQL *db, const char *name)
{
    return aw_db_scalar_params(db, 0, "SELECT id FROM plans WHERE name = ?",
                               (const char *[]) { name }, 1);
}


int
aw_account_name_ok(const char *name)
{
    size_t  n;

    n = strlen(name);

    return n > 0 && n <= 64 && !aw_has_control(name);
}


/* whether s holds a control character (C0 or DEL): a terminal obeys it */

int
aw_has_control(const char *s)
{
    for ( /* void */ ; *s; s++) {
        if ((unsigned char) *s < 0x20 || *s == 0x7f) {
            return 1;
        }
    }

    return 0;
}


/*
 * Creates the account with a subscription on the plan, anchored now, in
 * one transaction.  Returns the new id, or -1 (logged).
 */

long long
aw_account_create(MYSQL *db, const char *name, const char *plan)
{
    long long  plan_id, id;

    plan_id = aw_plan_id(db, plan);

    if (plan_id <= 0) {
        aw_log(AW_LOG_ERROR, "unknown plan \"%s\"", plan);
        return -1;
    }

    if (aw_db_exec(db, "START TRANSACTION") != 0) {
        return -1;
    }

    if (aw_db_exec_params(db, "INSERT INTO accounts (name) VALUES (?)",
                          (const char *[]) { name }, 1) != 0)
    {
        aw_db_exec(db, "ROLLBACK");
        return -1;
    }

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
