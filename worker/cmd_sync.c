/*
 * "aihub-worker sync": every key record, plan and model from MySQL to
 * Redis (sync.c), then the invalidation "all".
 */

#include <stdio.h>

#include "aihub_worker.h"
#include "command.h"
#include "db.h"
#include "redis.h"
#include "sync.h"


static const char  aw_sync_usage[] =
    "usage: " AW_NAME " sync\n"
    "\n"
    "Writes every key record, plan and model from MySQL to Redis and\n"
    "publishes the invalidation \"all\".\n";


int
aw_cmd_sync(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int            rc, npos, n;
    MYSQL         *db;
    redisContext  *r;

    rc = aw_opts_parse(argc, argv, NULL, NULL, 0, &npos, aw_sync_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;
    r = ctx->rc;

    rc = AW_EXIT_FAIL;

    n = aw_sync_all(db, r);

    if (n >= 0 && aw_publish(r, AIHUB_INV_ALL) == 0)
    {
        printf("synced %d keys, models and plans to %s\n", n, aw_cfg.redis);
        rc = AW_EXIT_OK;
    }

    return rc;
}
