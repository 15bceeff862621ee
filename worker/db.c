/*
 * MySQL/MariaDB helpers (libmariadb, synchronous: the worker may block).
 * Every session runs in UTC, so DATETIME columns and the literals of
 * aw_sql_time() agree.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>
#include <errmsg.h>

#include "aihub_worker.h"
#include "db.h"


MYSQL *
aw_db_connect(int with_db, int multi)
{
    MYSQL         *db;
    unsigned int   timeout;
    unsigned long  flags;
    const char    *sock;

    db = mysql_init(NULL);
    if (db == NULL) {
        aw_log(AW_LOG_ERROR, "mysql_init() failed");
        return NULL;
    }

    timeout = 5;
    mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    timeout = 60;
    mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &timeout);
    mysql_options(db, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
    mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4");

    flags = CLIENT_FOUND_ROWS;
    if (multi) {
        flags |= CLIENT_MULTI_STATEMENTS;
    }

    sock = aw_cfg.mysql_socket[0] ? aw_cfg.mysql_socket : NULL;

    if (mysql_real_connect(db, sock ? "localhost" : aw_cfg.mysql_host,
                           aw_cfg.mysql_user, aw_cfg.mysql_password,
                           with_db ? aw_cfg.mysql_db : NULL,
                           (unsigned int) aw_cfg.mysql_port, sock, flags)
        == NULL)
    {
        aw_log(AW_LOG_ERROR, "cannot connect to MySQL at %s: %s",
               sock ? sock : aw_cfg.mysql_host, mysql_error(db));
        mysql_close(db);
        return NULL;
    }

    if (mysql_query(db, "SET time_zone = '+00:00', "
                    "group_concat_max_len = 1048576") != 0)
    {
        aw_log(AW_LOG_ERROR, "MySQL: %s", mysql_error(db));
        mysql_close(db);
        return NULL;
    }

    return db;
}


void
aw_db_close(MYSQL *db)
{
    if (db != NULL) {
        mysql_close(db);
    }
}


/* 1 if the last error means the connection is gone (retry elsewhere) */

int
aw_db_conn_error(MYSQL *db)
{
    unsigned int  e;

    e = aw_db_errno(db);

    return e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST
           || e == CR_CONNECTION_ERROR || e == CR_CONN_HOST_ERROR
           || e == CR_COMMANDS_OUT_OF_SYNC || e == 1053 /* shutdown */
           || e == 1927 /* connection killed */ || e == 1205 /* lock wait */
           || e == 1213 /* deadlock */ || e == 2000;
}


/*
 * 1 if the last error is about a value of the statement (a number out of
 * range, a string too long or not UTF-8, a bad time, a NULL, a missing
 * account): the event that holds it is refused, dead-lettered.  Any other
 * error (the connection, a read-only server in a failover, a privilege
 * taken away, a table missing, a full disk, a killed query) is no event's
 * fault: the batch is retried as it is, later.  Before, only a lost
 * connection was retried, and a read-only MariaDB dead-lettered every
 * event of the stream.
 */

int
aw_db_data_error(MYSQL *db)
{
    switch (aw_db_errno(db)) {

    case 1048:      /* column cannot be null */
    case 1180:      /* COMMIT refused (an engine or a hook: t/70) */
    case 1264:      /* out of range value for column */
    case 1265:      /* data truncated */
    case 1292:      /* truncated incorrect value */
    case 1365:      /* division by 0 */
    case 1366:      /* incorrect string or integer value */
    case 1367:      /* illegal value */
    case 1406:      /* data too long */
    case 1411:      /* incorrect datetime value */
    case 1451:      /* a foreign key: a row refers to it */
    case 1452:      /* a foreign key: the account does not exist */
    case 1369:      /* CHECK OPTION failed (a view) */
    case 1644:      /* SIGNAL: a trigger refused the row (t/77) */
    case 1690:      /* BIGINT value out of range (a rollup's sum) */
    case 3819:      /* a CHECK constraint (MySQL) */
    case 4025:      /* a CHECK constraint (MariaDB) */
        return 1;

    default:
        return 0;
    }
}


int
aw_db_buf_exec(MYSQL *db, aw_buf_t *q)
{
    if (mysql_real_query(db, q->data, q->len) != 0) {
        aw_log(AW_LOG_ERROR, "MySQL: %s (%u)", mysql_error(db),
               mysql_errno(db));
        return -1;
    }

    return 0;
}


static int
aw_db_vexec(MYSQL *db, const char *fmt, va_list ap)
{
    aw_buf_t  q;
    va_list   cp;
    int       n, rc;

    va_copy(cp, ap);
    n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);

    aw_buf_init(&q);
    q.data = aw_xmalloc((size_t) n + 1);
    q.cap = (size_t) n + 1;
    vsnprintf(q.data, q.cap, fmt, ap);
    q.len = (size_t) n;

    rc = aw_db_buf_exec(db, &q);
    aw_buf_free(&q);

    return rc;
}


int
aw_db_exec(MYSQL *db, const char *fmt, ...)
{
    va_list  ap;
    int      rc;

    va_start(ap, fmt);
    rc = aw_db_vexec(db, fmt, ap);
    va_end(ap);

    return rc;
}


MYSQL_RES *
aw_db_query(MYSQL *db, const char *fmt, ...)
{
    va_list     ap;
    int         rc;
    MYSQL_RES  *res;

    va_start(ap, fmt);
    rc = aw_db_vexec(db, fmt, ap);
    va_end(ap);

    if (rc != 0) {
        return NULL;
    }

    res = mysql_store_result(db);
    if (res == NULL) {
        aw_log(AW_LOG_ERROR, "MySQL: %s", mysql_errno(db) ? mysql_error(db)
                                          : "query returned no result set");
    }

    return res;
}


/* the first column of the first row as an integer, dflt when none/NULL */

long long
aw_db_scalar(MYSQL *db, long long dflt, const char *fmt, ...)
{
    va_list     ap;
    int         rc;
    long long   v;
    MYSQL_RES  *res;
    MYSQL_ROW   row;

    va_start(ap, fmt);
    rc = aw_db_vexec(db, fmt, ap);
    va_end(ap);

    if (rc != 0 || (res = mysql_store_result(db)) == NULL) {
        return dflt;
    }

    row = mysql_fetch_row(res);
    v = (row && row[0]) ? strtoll(row[0], NULL, 10) : dflt;
    mysql_free_result(res);

    return v;
}


/* appends s as a quoted, escaped SQL string literal */

void
aw_buf_sql_str(aw_buf_t *b, MYSQL *db, const char *s)
{
    size_t   n;
    char    *t;

    n = strlen(s);
    t = aw_xmalloc(2 * n + 1);
    n = mysql_real_escape_string(db, t, s, (unsigned long) n);

    aw_buf_append(b, "'", 1);
    aw_buf_append(b, t, n);
    aw_buf_append(b, "'", 1);

    free(t);
}
