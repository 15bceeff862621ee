/*
 * MySQL/MariaDB helpers (db.c).
 */

#ifndef AW_DB_H
#define AW_DB_H

#include "aihub_worker.h"
#include "db_stmt.h"


/* db.c */

typedef struct st_mysql  MYSQL;
typedef struct st_mysql_res  MYSQL_RES;

MYSQL *aw_db_connect(int with_db, int multi);
void aw_db_close(MYSQL *db);
int aw_db_exec(MYSQL *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
MYSQL_RES *aw_db_query(MYSQL *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int aw_db_buf_exec(MYSQL *db, aw_buf_t *q);
void aw_buf_sql_str(aw_buf_t *b, MYSQL *db, const char *s);
int aw_db_conn_error(MYSQL *db);
int aw_db_data_error(MYSQL *db);

long long aw_db_scalar(MYSQL *db, long long dflt, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


#endif /* AW_DB_H */
