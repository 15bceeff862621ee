/*
 * The catalog commands' link to the servers: the fallback rules checked
 * against the models in MySQL, a committed change published the way
 * key changes are (sync.c writes Redis, the invalidate channel tells
 * every nginx node), and the --models lists of plans and accounts
 * checked against the catalog.
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


int
aw_catalog_models_set(MYSQL *db, const char *models, const char *usage,
    aw_stmt_t *st, aw_buf_t *keep)
{
    int        rc;
    char       bad[AW_CATALOG_ID_MAX + 2], *item, *save;
    aw_buf_t   list;
    long long  n;

    if (models == NULL) {
        return 0;
    }

    aw_buf_puts(&st->sql, st->sql.len ? ", " : "");
    aw_buf_puts(&st->sql, "models = ");

    if (strcmp(models, "default") == 0) {
        aw_buf_puts(&st->sql, "NULL");
        return 0;
    }

    if (strcmp(models, "*") == 0) {
        aw_buf_puts(&st->sql, "'*'");
        return 0;
    }

    aw_buf_init(&list);
    rc = 0;

    if (aw_catalog_fallbacks_parse(models, &list, bad, sizeof(bad)) != 0
        && strncmp(bad, "tier:", 5) != 0)
    {
        rc = aw_usage_error(usage, "invalid --models \"%s\"%s%s%s",
                            models, bad[0] ? ": \"" : " (an empty item)",
                            bad, bad[0] ? "\" is malformed or repeated" : "");
        goto done;
    }

    /* the list again, item by item: tiers are words, models exist */

    aw_buf_reset(&list);
    aw_buf_puts(&list, models);

    for (item = strtok_r(list.data, ", ", &save); item;
         item = strtok_r(NULL, ", ", &save))
    {
        if (strncmp(item, "tier:", 5) == 0) {
            if (aw_catalog_word_ok(item + 5, "basic|premium") != 0) {
                rc = aw_usage_error(usage, "invalid --models entry "
                                    "\"%s\" (tier:basic or tier:premium)",
                                    item);
                goto done;
            }

            continue;
        }

        n = aw_db_scalar_params(db, -1, "SELECT COUNT(*) FROM models "
                                "WHERE public_id = ?",
                                (const char *[]) { item }, 1);

        if (n < 0) {
            rc = -2;
            goto done;
        }

        if (n == 0) {
            rc = aw_usage_error(usage, "--models: no model \"%s\" "
                                "in the catalog (see \"" AW_NAME " model "
                                "list\")", item);
            goto done;
        }
    }

    /* stored as given, without the spaces (kept until the statement ran) */

    aw_buf_reset(keep);

    for (item = (char *) models; *item; item++) {
        if (*item != ' ') {
            aw_buf_append(keep, item, 1);
        }
    }

    aw_buf_puts(keep, "");
    aw_stmt_str(st, keep->data);

done:

    aw_buf_free(&list);

    return rc;
}
