/*
 * "aihub-worker rebuild": restores Redis from MySQL after Redis lost its
 * data: every key record, plan and model (as "sync"), and the current
 * period's counters per account, recomputed from usage_events: calls,
 * tokens, cost and overage (the cost of the successful calls beyond the
 * account's allowance, in time order, as invoices count them).  Counters
 * are merged upward (max of Redis and MySQL per field), so running it on
 * a Redis that did not lose anything never lowers a live counter.
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
#include "invoice.h"
#include "redis.h"
#include "sync.h"


static const char  aw_rebuild_usage[] =
    "usage: " AW_NAME " rebuild\n"
    "\n"
    "Writes every key record, plan and model from MySQL to Redis and\n"
    "restores the current period's counters (" AIHUB_RK_PERIOD
    "<account>:<YYYYMMDD>:\n"
    "calls, prompt, completion, total, cost, overage) from usage_events,\n"
    "then publishes \"all\".  Run it after Redis lost\n"
    "its data, once the drain has stored what was left in the stream.\n";


static const char  aw_max_merge[] =
    "for i = 1, #ARGV, 2 do "
    "local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') "
    "if tonumber(ARGV[i + 1]) > cur then "
    "redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end "
    "end "
    "return 1";


int
aw_cmd_rebuild(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int            rc, npos, keys;
    long long      counters, account, calls, included, overage;
    int64_t        start, end;
    char           id[AIHUB_PERIOD_ID_LEN + 1], key[128], over[32];
    char           period[AIHUB_PERIOD_MONTH_LEN + 1];
    MYSQL         *db;
    MYSQL_RES     *res;
    MYSQL_ROW      row;
    redisContext  *r;
    redisReply    *reply;
    const char    *cargv[16];

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

    keys = aw_sync_all(db, r);

    if (keys < 0) {
        goto done;
    }

    /* the current calendar month: key anchors are month starts */

    aihub_period_calendar(time(NULL), &start, &end);
    aihub_period_id(start, id);
    aihub_period_month(start, period);

    res = aw_db_query(db, "SELECT account, COUNT(*), SUM(prompt_tokens), "
                      "SUM(completion_tokens), SUM(total_tokens), "
                      "SUM(cost_micros) FROM usage_events WHERE ts >= "
                      "FROM_UNIXTIME(%lld) AND ts < FROM_UNIXTIME(%lld) AND "
                      "status BETWEEN 200 AND 299 GROUP BY account",
                      (long long) start, (long long) end);
    if (res == NULL) {
        goto done;
    }

    counters = 0;

    while ((row = mysql_fetch_row(res)) != NULL) {
        snprintf(key, sizeof(key), "%s%s%s:%s", aw_cfg.redis_prefix,
                 AIHUB_RK_PERIOD, row[0], id);

        /* overage: the cost of the calls beyond the allowance, in time
         * order (the allowance is the invoices' own rule) */

        account = strtoll(row[0], NULL, 10);
        calls = strtoll(row[1], NULL, 10);
        included = aw_account_allowance(db, account, start, end);
        overage = 0;

        if (included >= 0 && calls > included) {
            overage = aw_db_scalar(db, -1, "SELECT IFNULL(SUM(cost_micros), "
                                   "0) FROM (SELECT cost_micros FROM "
                                   "usage_events WHERE account = %lld AND "
                                   "ts >= FROM_UNIXTIME(%lld) AND ts < "
                                   "FROM_UNIXTIME(%lld) AND status BETWEEN "
                                   "200 AND 299 ORDER BY ts, id LIMIT %lld, "
                                   "18446744073709551615) beyond", account,
                                   (long long) start, (long long) end,
                                   included);
        }

        if (included < 0 || overage < 0) {
            mysql_free_result(res);
            goto done;
        }

        snprintf(over, sizeof(over), "%lld", overage);

        cargv[0] = "EVAL";
        cargv[1] = aw_max_merge;
        cargv[2] = "1";
        cargv[3] = key;
        cargv[4] = AIHUB_CF_CALLS;
        cargv[5] = row[1];
        cargv[6] = AIHUB_CF_PROMPT;
        cargv[7] = row[2];
        cargv[8] = AIHUB_CF_COMPLETION;
        cargv[9] = row[3];
        cargv[10] = AIHUB_CF_TOTAL;
        cargv[11] = row[4];
        cargv[12] = AIHUB_CF_COST;
        cargv[13] = row[5];
        cargv[14] = AIHUB_CF_OVERAGE;
        cargv[15] = over;

        reply = aw_redis_argv(r, 16, cargv);

        if (reply == NULL) {
            mysql_free_result(res);
            goto done;
        }

        freeReplyObject(reply);
        counters++;
    }

    mysql_free_result(res);

    if (aw_publish(r, AIHUB_INV_ALL) != 0) {
        goto done;
    }

    printf("rebuilt %d key records, models, plans and %lld period counters "
           "(%s) in %s\n", keys, counters, period, aw_cfg.redis);
    rc = AW_EXIT_OK;

done:

    return rc;
}
