/*
 * Prepared statements for the statements where a value from outside (a
 * name, a description, a reason, a URL, an error text) meets SQL: the
 * value travels as a parameter, never inside the statement's text.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include "aihub_worker.h"
#include "db.h"


#define AW_STMT_PARAMS  16


/*
 * Executes sql with its n "?" bound to params, each a string (MySQL
 * converts it to the column's type; NULL is SQL NULL).  Returns 0, or -1
 * logged; mysql_errno(db) tells a lost connection from a refused value.
 */

int
aw_db_exec_params(MYSQL *db, const char *sql, const char *const *params,
    size_t n)
{
    MYSQL_STMT     *st;
    MYSQL_BIND      bind[AW_STMT_PARAMS];
    unsigned long   len[AW_STMT_PARAMS];
    my_bool         null[AW_STMT_PARAMS];
    size_t          i;
    int             rc;

    if (n > AW_STMT_PARAMS) {
        aw_log(AW_LOG_ERROR, "MySQL: %zu parameters, at most %d", n,
               AW_STMT_PARAMS);
        return -1;
    }

    st = mysql_stmt_init(db);
    if (st == NULL) {
        aw_log(AW_LOG_ERROR, "MySQL: mysql_stmt_init() failed");
        return -1;
    }

    rc = -1;

    if (mysql_stmt_prepare(st, sql, (unsigned long) strlen(sql)) != 0
        || mysql_stmt_param_count(st) != n)
    {
        goto failed;
    }

    memset(bind, 0, sizeof(bind));

    for (i = 0; i < n; i++) {
        null[i] = params[i] == NULL;
        len[i] = params[i] ? (unsigned long) strlen(params[i]) : 0;
        bind[i].buffer_type = MYSQL_TYPE_STRING;
        bind[i].buffer = (void *) (params[i] ? params[i] : "");
        bind[i].buffer_length = len[i];
        bind[i].length = &len[i];
        bind[i].is_null = &null[i];
    }

    if (mysql_stmt_bind_param(st, bind) != 0 || mysql_stmt_execute(st) != 0)
    {
        goto failed;
    }

    rc = 0;

failed:

    if (rc != 0) {
        aw_log(AW_LOG_ERROR, "MySQL: %s (%u)", mysql_stmt_error(st),
               mysql_stmt_errno(st));
    }

    mysql_stmt_close(st);

    return rc;
}
