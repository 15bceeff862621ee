/*
 * "aihub-worker migrate": create the database if missing, apply the
 * pending sql/NNN_*.sql files in order, each once, recorded in
 * schema_migrations; then write the model catalog to Redis if reachable.
 */

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mysql.h>

#include "aihub_worker.h"
#include "command.h"
#include "db.h"
#include "redis.h"
#include "sync.h"


/* where the aihub-worker Debian package puts the migrations */
#define AW_SQL_DIR_INSTALLED  "/usr/share/aihub/sql"


static const char  aw_migrate_usage[] =
    "usage: " AW_NAME " migrate [--sql-dir DIR]\n"
    "\n"
    "Creates the database if missing and applies pending migrations\n"
    "(files NNN_name.sql, in order, each once, recorded in the\n"
    "schema_migrations table), then syncs models and plans to Redis.\n"
    "  --sql-dir DIR   default: ../../sql from the binary, then\n"
    "                  " AW_SQL_DIR_INSTALLED ", then ./sql\n";


static int
aw_migration_name_ok(const char *name)
{
    size_t  n;

    n = strlen(name);

    return n > 8 && name[0] >= '0' && name[0] <= '9' && name[1] >= '0'
           && name[1] <= '9' && name[2] >= '0' && name[2] <= '9'
           && name[3] == '_' && strcmp(name + n - 4, ".sql") == 0;
}


static int
aw_strcmp_p(const void *a, const void *b)
{
    return strcmp(*(char * const *) a, *(char * const *) b);
}


static char *
aw_read_file(const char *path, size_t *len)
{
    FILE    *fp;
    char    *data;
    long     n;

    fp = fopen(path, "rb");
    if (fp == NULL) {
        return NULL;
    }

    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);

    data = aw_xmalloc((size_t) n + 1);

    if (n < 0 || fread(data, 1, (size_t) n, fp) != (size_t) n) {
        free(data);
        fclose(fp);
        return NULL;
    }

    data[n] = '\0';
    *len = (size_t) n;
    fclose(fp);

    return data;
}


static void
aw_default_sql_dir(char *out, size_t size)
{
    char     exe[PATH_MAX], *dir;
    ssize_t  n;

    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    if (n > 0) {
        exe[n] = '\0';
        dir = dirname(exe);

        if (strlen(dir) + sizeof("/../../sql") <= size) {
            strcpy(out, dir);
            strcat(out, "/../../sql");

            if (access(out, R_OK) == 0) {
                return;
            }
        }
    }

    /* installed from the aihub-worker package */

    if (access(AW_SQL_DIR_INSTALLED, R_OK) == 0) {
        snprintf(out, size, "%s", AW_SQL_DIR_INSTALLED);
        return;
    }

    snprintf(out, size, "sql");
}


static int
aw_migrate_apply(MYSQL *db, const char *dir, const char *name)
{
    char        path[PATH_MAX];
    char       *sql;
    size_t      len;
    int         status;
    MYSQL_RES  *res;

    if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, name)
        >= sizeof(path))
    {
        aw_log(AW_LOG_ERROR, "migration path too long: \"%s/%s\"", dir,
               name);
        return -1;
    }

    sql = aw_read_file(path, &len);
    if (sql == NULL) {
        aw_log(AW_LOG_ERROR, "cannot read \"%s\": %s", path, strerror(errno));
        return -1;
    }

    status = mysql_real_query(db, sql, (unsigned long) len);
    free(sql);

    /* consume every result of the multi-statement file */

    for ( ;; ) {
        if (status != 0) {
            aw_log(AW_LOG_ERROR, "migration %s failed: %s", name,
                   mysql_error(db));
            return -1;
        }

        res = mysql_store_result(db);
        if (res) {
            mysql_free_result(res);
        }

        status = mysql_next_result(db);

        if (status == -1) {
            break;
        }

        if (status > 0) {
            status = 1;
        }
    }

    return aw_db_exec_params(db, "INSERT INTO schema_migrations (version) "
                             "VALUES (?)", &name, 1);
}


/* the migration files of dir, sorted by name; 0, or -1 logged */

static int
aw_migrations_list(const char *dir, char ***list, size_t *count)
{
    char           **names;
    size_t           n, cap;
    DIR             *d;
    struct dirent   *de;

    d = opendir(dir);
    if (d == NULL) {
        aw_log(AW_LOG_ERROR, "cannot open migrations directory \"%s\": %s",
               dir, strerror(errno));
        return -1;
    }

    names = NULL;
    n = cap = 0;

    while ((de = readdir(d)) != NULL) {
        if (!aw_migration_name_ok(de->d_name)) {
            continue;
        }

        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = realloc(names, cap * sizeof(char *));
            if (names == NULL) {
                abort();
            }
        }

        names[n++] = aw_xstrdup(de->d_name);
    }

    closedir(d);

    if (n > 0) {
        qsort(names, n, sizeof(char *), aw_strcmp_p);
    }

    *list = names;
    *count = n;

    return 0;
}


int
aw_cmd_migrate(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char    *sql_dir;
    char           dir[PATH_MAX], **names;
    int            npos, rc, applied;
    size_t         n, i;
    MYSQL         *db;
    long long      done_before;
    redisContext  *rc_redis;
    aw_buf_t       q;
    aw_opt_t       opts[] = {
        { "--sql-dir", 1, &sql_dir },
        { NULL, 0, NULL }
    };

    sql_dir = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_migrate_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (sql_dir == NULL) {
        aw_default_sql_dir(dir, sizeof(dir));

    } else {
        snprintf(dir, sizeof(dir), "%s", sql_dir);
    }

    if (aw_migrations_list(dir, &names, &n) != 0) {
        return AW_EXIT_FAIL;
    }

    rc = AW_EXIT_FAIL;
    applied = 0;

    if (aw_cmd_connect(ctx) != 0) {
        goto done;
    }

    db = ctx->db;

    /* a name, not a value: it cannot be a parameter; no ` in it */

    aw_buf_init(&q);
    aw_buf_printf(&q, "CREATE DATABASE IF NOT EXISTS `%s` "
                  "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                  aw_cfg.mysql_db);

    if (strchr(aw_cfg.mysql_db, '`') != NULL
        || aw_db_buf_exec(db, &q) != 0
        || mysql_select_db(db, aw_cfg.mysql_db) != 0
        || aw_db_exec(db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      "version VARCHAR(255) NOT NULL PRIMARY KEY, "
                      "applied_at DATETIME NOT NULL "
                      "DEFAULT CURRENT_TIMESTAMP) "
                      "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4") != 0)
    {
        aw_log(AW_LOG_ERROR, "cannot prepare database \"%s\": %s",
               aw_cfg.mysql_db, mysql_error(db));
        aw_buf_free(&q);
        goto done;
    }

    aw_buf_free(&q);

    for (i = 0; i < n; i++) {
        done_before = aw_db_scalar_params(db, -1, "SELECT COUNT(*) FROM "
                                          "schema_migrations WHERE "
                                          "version = ?",
                                          (const char *[]) { names[i] }, 1);

        if (done_before < 0) {
            goto done;
        }

        if (done_before > 0) {
            continue;
        }

        if (aw_migrate_apply(db, dir, names[i]) != 0) {
            goto done;
        }

        printf("applied %s\n", names[i]);
        applied++;
    }

    if (applied == 0) {
        printf("database \"%s\" is up to date\n", aw_cfg.mysql_db);
    }

    fflush(stdout);
    rc = AW_EXIT_OK;

    rc_redis = aw_redis_connect(2000);

    if (rc_redis == NULL) {
        aw_log(AW_LOG_WARN, "Redis at %s unreachable: models not synced "
               "(run \"" AW_NAME " sync\" later)", aw_cfg.redis);

    } else {
        if (aw_sync_models(db, rc_redis) != 0
            || aw_sync_plans(db, rc_redis) != 0
            || aw_publish(rc_redis, AIHUB_INV_ALL) != 0)
        {
            aw_log(AW_LOG_WARN, "syncing models to Redis failed");
        }

        aw_redis_close(rc_redis);
    }

done:

    for (i = 0; i < n; i++) {
        free(names[i]);
    }

    free(names);

    return rc;
}
