/*
 * Prepared statements (db_stmt.c).
 *
 * The rule: a value from outside the worker (a command-line option, the
 * configuration, an event's content, a Redis reply, a row read back) meets
 * SQL only as a parameter of a prepared statement, never inside the
 * statement's text.  Only numbers already parsed into C integers (and
 * constants of the worker's own) may be formatted into the text, with
 * %lld / %llu.  The one exception is the drain's multi-row INSERT of
 * events and upsert of rollups (ledger_store.c), see there; its bulk INSERT
 * (ledger_bulk.c) follows the rule.
 *
 * Short to write:
 *
 *     aw_stmt_t  s;
 *
 *     aw_stmt_init(&s);
 *     aw_buf_printf(&s.sql, "UPDATE plans SET base_fee_cents = %lld "
 *                   "WHERE name = ", fee);
 *     aw_stmt_str(&s, name);
 *     rc = aw_stmt_exec(db, &s);    (empties s, as aw_stmt_select and
 *                                    aw_stmt_scalar do)
 *
 * A failed statement is logged; aw_db_errno() and aw_db_error() tell its
 * error (mysql_stmt_close() clears the connection's own), and
 * aw_db_conn_error() reads them.
 *
 * or, with the statement written out: aw_db_exec_params(db, "... = ?",
 * (const char *[]) { name }, 1), aw_db_select_params, aw_db_scalar_params.
 */

#ifndef AW_DB_STMT_H
#define AW_DB_STMT_H

#include "aihub_worker.h"


#define AW_STMT_PARAMS   32
#define AW_ROWS_COLUMNS  64

typedef struct st_mysql  MYSQL;
typedef struct st_mysql_stmt  MYSQL_STMT;

/* a SELECT's result, read whole: rows of column strings (NULL: SQL NULL) */

typedef struct {
    char          ***rows;
    size_t           nrows;
    size_t           next;
    unsigned int     ncols;
} aw_rows_t;

typedef struct {
    aw_buf_t      sql;
    const char   *params[AW_STMT_PARAMS];
    size_t        n;
    int           overflow;
} aw_stmt_t;

int aw_db_exec_params(MYSQL *db, const char *sql, const char *const *params,
    size_t n);
aw_rows_t *aw_db_select_params(MYSQL *db, const char *sql,
    const char *const *params, size_t n);
long long aw_db_scalar_params(MYSQL *db, long long dflt, const char *sql,
    const char *const *params, size_t n);
unsigned long long aw_db_affected_rows(void);
unsigned int aw_db_errno(MYSQL *db);
const char *aw_db_error(MYSQL *db);
void aw_db_stmt_error(MYSQL *db, MYSQL_STMT *st);
char **aw_rows_next(aw_rows_t *rs);
void aw_rows_free(aw_rows_t *rs);

void aw_stmt_init(aw_stmt_t *s);
void aw_stmt_str(aw_stmt_t *s, const char *v);
void aw_stmt_append(aw_stmt_t *s, const aw_stmt_t *src);
void aw_stmt_reset(aw_stmt_t *s);
void aw_stmt_free(aw_stmt_t *s);
int aw_stmt_exec(MYSQL *db, aw_stmt_t *s);
aw_rows_t *aw_stmt_select(MYSQL *db, aw_stmt_t *s);
long long aw_stmt_scalar(MYSQL *db, long long dflt, aw_stmt_t *s);


#endif /* AW_DB_STMT_H */
