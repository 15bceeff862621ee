/*
 * "aihub-worker rebuild": restores Redis from MySQL after Redis lost its
 * data: every key record, plan and model (as "sync"), and the current
 * period's counters per account, recomputed from usage_events: calls,
 * tokens, cost and overage (the cost of the successful calls beyond the
 * account's allowance, in time order, as invoices count them).  Counters
 * are merged upward (max of Redis and MySQL per field), so running it on
 * a Redis that did not lose anything never lowers a live counter.  Then
 * it sets the epoch marker (restore.c), which lets the module lease and
 * write again.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_period.h"
#include "aihub_worker.h"
#include "command.h"
#include "db.h"
#include "redis.h"
#include "restore.h"


static const char  aw_rebuild_usage[] =
    "usage: " AW_NAME " rebuild\n"
    "\n"
    "Writes every key record, plan and model from MySQL to Redis and\n"
    "restores the current period's counters (" AIHUB_RK_PERIOD
    "<account>:<YYYYMMDD>:\n"
    "calls, prompt, completion, total, cost, overage) from usage_events,\n"
    "sets the epoch marker (" AIHUB_RK_EPOCH ") and publishes \"all\".\n"
    "The daemon (run) does this by itself when Redis lost its data; run\n"
    "it by hand when no daemon runs.\n";


int
aw_cmd_rebuild(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int            rc, npos, keys;
    long long      counters;
    int64_t        start, end;
    char           period[AIHUB_PERIOD_MONTH_LEN + 1];
    MYSQL         *db;
    redisContext  *r;

    rc = aw_opts_parse(argc, argv, NULL, NULL, 0, &npos, aw_rebuild_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;
    r = ctx->rc;

    rc = AW_EXIT_FAIL;

    if (aw_restore_all(db, r, 0, &keys, &counters) != 0) {
        goto done;
    }

    aihub_period_calendar(time(NULL), &start, &end);
    aihub_period_month(start, period);

    printf("rebuilt %d key records, models, plans and %lld period counters "
           "(%s) in %s\n", keys, counters, period, aw_cfg.redis);
    rc = AW_EXIT_OK;

done:

    return rc;
}
