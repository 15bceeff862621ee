/*
 * Redis restored from MySQL after it lost its data (README, "Leases").
 * The epoch marker ("<prefix>epoch") says that Redis holds a full copy of
 * what MySQL holds for it: every key record, plan and model, and the
 * current period's counters recomputed from the ledger.  While the marker
 * is missing the module reads no missing key or model as unknown, leases
 * nothing and holds its batches of usage events and settles, so no valid
 * key gets 401, no listed model 404, and no used-up quota is given again.
 * The daemon looks for the marker at every round and restores what is
 * missing; "rebuild" does the same by hand.
 *
 * Counters are merged upward (max of Redis and MySQL per field), so a
 * restore on a Redis that did not lose anything never lowers a live
 * counter.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_period.h"
#include "aihub_worker.h"
#include "db.h"
#include "invoice.h"
#include "redis.h"
#include "sync.h"
#include "restore.h"


/*
 * KEYS[1] a period hash, KEYS[2] the epoch marker; ARGV[1] the hash's time
 * to live in seconds, ARGV[2] "1" when the restore began without the
 * marker, then pairs of a field and its figure from MySQL: each field
 * raised to the figure, never lowered; and the hash expires as the
 * module's grants make it, unless it has a lifetime already.
 *
 * A restore that began without the marker writes nothing once the marker
 * is back: another worker restored Redis meanwhile, and its drain may
 * have stored since then events whose settles the module sends again
 * (a batch Redis refused while it was without its data), so figures read
 * from MySQL after that would count those calls twice.
 */

static const char  aw_max_merge[] =
    "if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then "
    "return 0 end "
    "for i = 3, #ARGV, 2 do "
    "local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') "
    "if tonumber(ARGV[i + 1]) > cur then "
    "redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end "
    "end "
    "if redis.call('TTL', KEYS[1]) == -1 then "
    "redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
    "return 1";


/* 1 the marker is missing, 0 it is there, -1 Redis failed */

int
aw_restore_needed(redisContext *r)
{
    int          rc;
    char         key[128];
    const char  *argv[2];
    redisReply  *reply;

    snprintf(key, sizeof(key), "%s%s", aw_cfg.redis_prefix, AIHUB_RK_EPOCH);

    argv[0] = "EXISTS";
    argv[1] = key;

    reply = aw_redis_argv(r, 2, argv);
    if (reply == NULL) {
        return -1;
    }

    rc = (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0);
    freeReplyObject(reply);

    return rc;
}


/*
 * The current period's counters of every account with calls in it, from
 * usage_events: calls, tokens, cost, and overage (the cost of the calls
 * beyond the allowance, in time order, as invoices count them).
 * Returns the number of counters, or -1.
 */

long long
aw_restore_counters(MYSQL *db, redisContext *r, int wiped)
{
    long long     counters, account, calls, included, overage;
    int64_t       start, end;
    char          id[AIHUB_PERIOD_ID_LEN + 1], key[128], over[32], ttl[32];
    char          epoch[128], t0[AW_SQL_TIME_LEN], t1[AW_SQL_TIME_LEN];
    MYSQL_RES    *res;
    MYSQL_ROW     row;
    redisReply   *reply;
    const char   *cargv[19];

    /* the current calendar month: key anchors are month starts */

    aihub_period_calendar(time(NULL), &start, &end);
    aihub_period_id(start, id);
    snprintf(ttl, sizeof(ttl), "%lld",
             (long long) (end - time(NULL)) + AIHUB_PERIOD_KEEP_SEC);
    aw_rkey(epoch, sizeof(epoch), AIHUB_RK_EPOCH, NULL);

    res = aw_db_query(db, "SELECT account, COUNT(*), SUM(prompt_tokens), "
                      "SUM(completion_tokens), SUM(total_tokens), "
                      "SUM(cost_micros) FROM usage_events WHERE ts >= %s "
                      "AND ts < %s AND " AW_SQL_COUNTED("") " GROUP BY "
                      "account", aw_sql_time(start, t0), aw_sql_time(end, t1));
    if (res == NULL) {
        return -1;
    }

    counters = 0;

    while ((row = mysql_fetch_row(res)) != NULL) {
        snprintf(key, sizeof(key), "%s%s%s:%s", aw_cfg.redis_prefix,
                 AIHUB_RK_PERIOD, row[0], id);

        account = strtoll(row[0], NULL, 10);
        calls = strtoll(row[1], NULL, 10);
        included = aw_account_allowance(db, account, start, end);
        overage = 0;

        if (included >= 0 && calls > included) {
            overage = aw_db_scalar(db, -1, "SELECT IFNULL(SUM(cost_micros), "
                                   "0) FROM (SELECT cost_micros FROM "
                                   "usage_events WHERE account = %lld AND "
                                   "ts >= %s AND ts < %s AND "
                                   AW_SQL_COUNTED("") " ORDER BY ts, event_id "
                                   "LIMIT %lld, "
                                   "18446744073709551615) beyond", account,
                                   aw_sql_time(start, t0),
                                   aw_sql_time(end, t1), included);
        }

        if (included < 0 || overage < 0) {
            mysql_free_result(res);
            return -1;
        }

        snprintf(over, sizeof(over), "%lld", overage);

        cargv[0] = "EVAL";
        cargv[1] = aw_max_merge;
        cargv[2] = "2";
        cargv[3] = key;
        cargv[4] = epoch;
        cargv[5] = ttl;
        cargv[6] = wiped ? "1" : "0";
        cargv[7] = AIHUB_CF_CALLS;
        cargv[8] = row[1];
        cargv[9] = AIHUB_CF_PROMPT;
        cargv[10] = row[2];
        cargv[11] = AIHUB_CF_COMPLETION;
        cargv[12] = row[3];
        cargv[13] = AIHUB_CF_TOTAL;
        cargv[14] = row[4];
        cargv[15] = AIHUB_CF_COST;
        cargv[16] = row[5];
        cargv[17] = AIHUB_CF_OVERAGE;
        cargv[18] = over;

        reply = aw_redis_argv(r, 19, cargv);

        if (reply == NULL) {
            mysql_free_result(res);
            return -1;
        }

        /* 0: another worker restored Redis meanwhile, nothing written */
        counters += (reply->type == REDIS_REPLY_INTEGER
                     && reply->integer == 1);
        freeReplyObject(reply);
    }

    mysql_free_result(res);

    return counters;
}


/*
 * Everything: key records, plans, models, the counters, then the marker
 * and "all" on the invalidation channel.  0, or -1 (*keys and *counters
 * say how far it got).
 */

int
aw_restore_all(MYSQL *db, redisContext *r, int *keys, long long *counters)
{
    int           wiped;
    char          key[128], now[32];
    const char   *argv[3];
    redisReply   *reply;

    *counters = 0;
    *keys = 0;

    wiped = aw_restore_needed(r);

    if (wiped < 0) {
        return -1;
    }

    *keys = aw_sync_all(db, r);

    if (*keys < 0) {
        return -1;
    }

    *counters = aw_restore_counters(db, r, wiped);

    if (*counters < 0) {
        return -1;
    }

    snprintf(key, sizeof(key), "%s%s", aw_cfg.redis_prefix, AIHUB_RK_EPOCH);
    snprintf(now, sizeof(now), "%lld", (long long) time(NULL));

    argv[0] = "SET";
    argv[1] = key;
    argv[2] = now;

    reply = aw_redis_argv(r, 3, argv);
    if (reply == NULL) {
        return -1;
    }

    freeReplyObject(reply);

    return aw_publish(r, AIHUB_INV_ALL);
}
