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


/*
 * mysql_stmt_close() clears the connection's error: the error of the last
 * statement that failed is kept here for aw_db_errno() and aw_db_error().
 */

static unsigned long long   aw_stmt_affected;
static MYSQL               *aw_stmt_err_db;
static unsigned int         aw_stmt_err_no;
static char                 aw_stmt_err_msg[512];


/* the connection's error, else that of its last failed statement */

unsigned int
aw_db_errno(MYSQL *db)
{
    unsigned int  e;

    e = mysql_errno(db);

    return (e == 0 && db == aw_stmt_err_db) ? aw_stmt_err_no : e;
}


const char *
aw_db_error(MYSQL *db)
{
    return (mysql_errno(db) == 0 && db == aw_stmt_err_db)
           ? aw_stmt_err_msg : mysql_error(db);
}


/*
 * Keeps a statement's error for aw_db_errno() and aw_db_error() and logs
 * it; st NULL: the connection's last statement worked, nothing is kept.
 */

void
aw_db_stmt_error(MYSQL *db, MYSQL_STMT *st)
{
    if (st == NULL) {
        aw_stmt_err_db = NULL;
        return;
    }

    aw_stmt_err_db = db;
    aw_stmt_err_no = mysql_stmt_errno(st);

    if (aw_stmt_err_no == 0) {
        aw_stmt_err_no = 2034;  /* CR_INVALID_PARAMETER_NO */
        snprintf(aw_stmt_err_msg, sizeof(aw_stmt_err_msg),
                 "the statement's parameters do not match");

    } else {
        snprintf(aw_stmt_err_msg, sizeof(aw_stmt_err_msg), "%s",
                 mysql_stmt_error(st));
    }

    aw_log(AW_LOG_ERROR, "MySQL: %s (%u)", aw_stmt_err_msg, aw_stmt_err_no);
}


/* logs and keeps a statement's error, closes the statement */

static void
aw_stmt_failed(MYSQL *db, MYSQL_STMT *st)
{
    aw_db_stmt_error(db, st);
    mysql_stmt_close(st);
}


/*
 * Prepares and executes sql with its n "?" bound to params, each a string
 * (MySQL converts it to the column's type; NULL is SQL NULL).  Returns the
 * executed statement, or NULL logged (errno in *err when err is set).
 */

static MYSQL_STMT *
aw_stmt_run(MYSQL *db, const char *sql, const char *const *params, size_t n)
{
    MYSQL_STMT     *st;
    MYSQL_BIND      bind[AW_STMT_PARAMS];
    unsigned long   len[AW_STMT_PARAMS];
    my_bool         null[AW_STMT_PARAMS];
    size_t          i;

    if (n > AW_STMT_PARAMS) {
        aw_log(AW_LOG_ERROR, "MySQL: %zu parameters, at most %d", n,
               AW_STMT_PARAMS);
        return NULL;
    }

    st = mysql_stmt_init(db);
    if (st == NULL) {
        aw_log(AW_LOG_ERROR, "MySQL: mysql_stmt_init() failed");
        return NULL;
    }

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

    if ((n > 0 && mysql_stmt_bind_param(st, bind) != 0)
        || mysql_stmt_execute(st) != 0)
    {
        goto failed;
    }

    aw_stmt_err_db = NULL;

    return st;

failed:

    aw_stmt_failed(db, st);

    return NULL;
}


/*
 * Executes sql with its n "?" bound to params.  Returns 0, or -1 logged;
 * mysql_errno(db) tells a lost connection from a refused value.
 */

int
aw_db_exec_params(MYSQL *db, const char *sql, const char *const *params,
    size_t n)
{
    MYSQL_STMT  *st;

    st = aw_stmt_run(db, sql, params, n);
    if (st == NULL) {
        return -1;
    }

    aw_stmt_affected = mysql_stmt_affected_rows(st);
    mysql_stmt_close(st);

    return 0;
}


/*
 * The rows the last aw_db_exec_params changed (mysql_stmt_close() loses
 * the connection's count; its insert id stays: mysql_insert_id()).
 */

unsigned long long
aw_db_affected_rows(void)
{
    return aw_stmt_affected;
}


/* one row of a result: its columns as strings (NULL is SQL NULL) */

static int
aw_rows_fetch_row(MYSQL_STMT *st, aw_rows_t *rs)
{
    unsigned int    i;
    unsigned long   len[AW_ROWS_COLUMNS];
    my_bool         null[AW_ROWS_COLUMNS];
    MYSQL_BIND      bind[AW_ROWS_COLUMNS], col;
    char          **row, ***rows;
    int             rc;

    memset(bind, 0, sizeof(bind));

    for (i = 0; i < rs->ncols; i++) {
        bind[i].buffer_type = MYSQL_TYPE_STRING;
        bind[i].length = &len[i];
        bind[i].is_null = &null[i];
    }

    if (mysql_stmt_bind_result(st, bind) != 0) {
        return -1;
    }

    rc = mysql_stmt_fetch(st);

    if (rc == MYSQL_NO_DATA) {
        return 0;
    }

    if (rc != 0 && rc != MYSQL_DATA_TRUNCATED) {
        return -1;
    }

    row = calloc(rs->ncols ? rs->ncols : 1, sizeof(char *));
    rows = realloc(rs->rows, (rs->nrows + 1) * sizeof(char **));

    if (row == NULL || rows == NULL) {
        free(row);
        rs->rows = rows ? rows : rs->rows;
        return -1;
    }

    rs->rows = rows;
    rs->rows[rs->nrows++] = row;

    for (i = 0; i < rs->ncols; i++) {
        if (null[i]) {
            continue;
        }

        row[i] = malloc(len[i] + 1);
        if (row[i] == NULL) {
            return -1;
        }

        memset(&col, 0, sizeof(col));
        col.buffer_type = MYSQL_TYPE_STRING;
        col.buffer = row[i];
        col.buffer_length = len[i] + 1;

        if (len[i] > 0 && mysql_stmt_fetch_column(st, &col, i, 0) != 0) {
            return -1;
        }

        row[i][len[i]] = '\0';
    }

    return 1;
}


/*
 * Runs a SELECT with its n "?" bound to params; returns its rows (read
 * them with aw_rows_next, free with aw_rows_free), or NULL logged.
 */

aw_rows_t *
aw_db_select_params(MYSQL *db, const char *sql, const char *const *params,
    size_t n)
{
    int          rc;
    MYSQL_STMT  *st;
    aw_rows_t   *rs;

    st = aw_stmt_run(db, sql, params, n);
    if (st == NULL) {
        return NULL;
    }

    rs = calloc(1, sizeof(aw_rows_t));
    if (rs == NULL) {
        mysql_stmt_close(st);
        return NULL;
    }

    rs->ncols = mysql_stmt_field_count(st);

    if (rs->ncols > AW_ROWS_COLUMNS) {
        aw_log(AW_LOG_ERROR, "MySQL: %u columns, at most %d", rs->ncols,
               AW_ROWS_COLUMNS);
        goto failed;
    }

    if (mysql_stmt_store_result(st) != 0) {
        goto failed;
    }

    while ((rc = aw_rows_fetch_row(st, rs)) > 0) { /* void */ }

    if (rc == 0) {
        mysql_stmt_close(st);
        return rs;
    }

failed:

    aw_stmt_failed(db, st);
    aw_rows_free(rs);

    return NULL;
}


/* the next row (as a MYSQL_ROW: an array of column strings), or NULL */

char **
aw_rows_next(aw_rows_t *rs)
{
    return rs->next < rs->nrows ? rs->rows[rs->next++] : NULL;
}


void
aw_rows_free(aw_rows_t *rs)
{
    size_t        i;
    unsigned int  c;

    if (rs == NULL) {
        return;
    }

    for (i = 0; i < rs->nrows; i++) {
        for (c = 0; c < rs->ncols; c++) {
            free(rs->rows[i][c]);
        }

        free(rs->rows[i]);
    }

    free(rs->rows);
    free(rs);
}


/* the first column of the first row as an integer; dflt when none/NULL */

long long
aw_db_scalar_params(MYSQL *db, long long dflt, const char *sql,
    const char *const *params, size_t n)
{
    char       **row;
    long long    v;
    aw_rows_t   *rs;

    rs = aw_db_select_params(db, sql, params, n);
    if (rs == NULL) {
        return dflt;
    }

    row = aw_rows_next(rs);
    v = (row && row[0]) ? strtoll(row[0], NULL, 10) : dflt;
    aw_rows_free(rs);

    return v;
}


/* a statement built in parts: text in s->sql, values as "?" */

void
aw_stmt_init(aw_stmt_t *s)
{
    aw_buf_init(&s->sql);
    s->n = 0;
    s->overflow = 0;
}


/* appends "?" to the statement and v as its value (kept by pointer) */

void
aw_stmt_str(aw_stmt_t *s, const char *v)
{
    if (s->n == AW_STMT_PARAMS) {
        s->overflow = 1;
        return;
    }

    s->params[s->n++] = v;
    aw_buf_puts(&s->sql, "?");
}


/* appends src's text and values to s */

void
aw_stmt_append(aw_stmt_t *s, const aw_stmt_t *src)
{
    size_t  i;

    aw_buf_append(&s->sql, src->sql.data ? src->sql.data : "",
                  src->sql.len);

    for (i = 0; i < src->n; i++) {
        if (s->n == AW_STMT_PARAMS) {
            s->overflow = 1;
            return;
        }

        s->params[s->n++] = src->params[i];
    }

    s->overflow |= src->overflow;
}


/* empties s for a new statement (aw_stmt_exec and the like do it too) */

void
aw_stmt_reset(aw_stmt_t *s)
{
    aw_buf_reset(&s->sql);
    s->n = 0;
    s->overflow = 0;
}


void
aw_stmt_free(aw_stmt_t *s)
{
    aw_buf_free(&s->sql);
    s->n = 0;
    s->overflow = 0;
}


int
aw_stmt_exec(MYSQL *db, aw_stmt_t *s)
{
    int  rc;

    rc = s->overflow ? -1
                     : aw_db_exec_params(db, s->sql.data, s->params, s->n);
    aw_stmt_free(s);

    return rc;
}


aw_rows_t *
aw_stmt_select(MYSQL *db, aw_stmt_t *s)
{
    aw_rows_t  *rs;

    rs = s->overflow ? NULL
                     : aw_db_select_params(db, s->sql.data, s->params, s->n);
    aw_stmt_free(s);

    return rs;
}


long long
aw_stmt_scalar(MYSQL *db, long long dflt, aw_stmt_t *s)
{
    long long  v;

    v = s->overflow ? dflt
                    : aw_db_scalar_params(db, dflt, s->sql.data, s->params,
                                          s->n);
    aw_stmt_free(s);

    return v;
}
