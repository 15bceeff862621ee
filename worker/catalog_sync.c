/*
 * The catalog commands' link to the servers: the fallback rules checked
 * against the models in MySQL, and a committed change published the way
 * key changes are (sync.c writes Redis, the invalidate channel tells
 * every nginx node).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "catalog.h"
#include "db.h"
#include "redis.h"
#include "sync.h"


int
aw_catalog_check_db(MYSQL *db, const char *about, aw_buf_t *err, int *own)
{
    int                  problems;
    size_t               n, i, first;
    MYSQL_RES           *res;
    MYSQL_ROW            row;
    aw_catalog_model_t  *m;

    res = aw_db_query(db, "SELECT public_id, kind, tier, fallbacks "
                      "FROM models WHERE enabled = 1");
    if (res == NULL) {
        return -1;
    }

    n = (size_t) mysql_num_rows(res);
    m = aw_xmalloc((n ? n : 1) * sizeof(aw_catalog_model_t));

    for (i = 0; i < n && (row = mysql_fetch_row(res)) != NULL; i++) {
        m[i].id = row[0];
        m[i].kind = row[1];
        m[i].tier = row[2];
        m[i].fallbacks = row[3];
    }

    first = 0;
    problems = aw_catalog_check(m, i, about, err, &first);
    *own = problems > 0 && strcmp(m[first].id, about) == 0;

    free(m);
    mysql_free_result(res);

    return problems;
}


int
aw_catalog_publish(MYSQL *db, const char *plan, const char *removed)
{
    int            rc;
    char           key[256];
    const char    *argv[2];
    redisContext  *r;
    redisReply    *reply;

    r = aw_redis_connect(3000);

    if (r == NULL) {
        aw_log(AW_LOG_ERROR, "MySQL is updated but Redis is not: run \""
               AW_NAME " sync\" when Redis is back");
        return -1;
    }

    if (removed != NULL) {
        /* gone from MySQL: its record goes too */

        argv[0] = "DEL";
        argv[1] = aw_rkey(key, sizeof(key),
                          plan ? AIHUB_RK_PLAN : AIHUB_RK_MODEL, removed);
        reply = aw_redis_argv(r, 2, argv);

        if (reply != NULL) {
            freeReplyObject(reply);
        }
    }

    if (plan == NULL) {
        rc = aw_sync_models(db, r) == 0
             && aw_publish(r, AIHUB_INV_MODELS) == 0;

    } else {
        /* the key records carry the plan's numbers: rewrite its keys */

        rc = aw_sync_plans(db, r) == 0
             && aw_sync_keys(db, r, "p.name = ?", plan) >= 0
             && aw_publish(r, AIHUB_INV_ALL) == 0;
    }

    aw_redis_close(r);

    if (!rc) {
        aw_log(AW_LOG_ERROR, "MySQL is updated but Redis is not: run \""
               AW_NAME " sync\"");
        return -1;
    }

    return 0;
}
