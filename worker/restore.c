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
#include <mysqld_error.h>

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


/*
 * The marker's value into buf (size bytes): 1 it is there, 0 it is
 * missing, -1 Redis failed.  Each restore writes a value of its own
 * (aw_restore_all), so a value that changed means a restore between the
 * two reads.
 */

int
aw_restore_marker(redisContext *r, char *buf, size_t size)
{
    int          rc;
    char         key[128];
    const char  *argv[2];
    redisReply  *reply;

    snprintf(key, sizeof(key), "%s%s", aw_cfg.redis_prefix, AIHUB_RK_EPOCH);

    argv[0] = "GET";
    argv[1] = key;

    reply = aw_redis_argv(r, 2, argv);
    if (reply == NULL) {
        return -1;
    }

    rc = (reply->type == REDIS_REPLY_STRING);
    snprintf(buf, size, "%s", rc ? reply->str : "");
    freeReplyObject(reply);

    return rc;
}


/* 1 the marker is missing, 0 it is there, -1 Redis failed */

int
aw_restore_needed(redisContext *r)
{
    int   rc;
    char  value[AW_MARKER_LEN];

    rc = aw_restore_marker(r, value, sizeof(value));

    return rc < 0 ? -1 : !rc;
}


/*
 * A script's ten arguments: each counter's field and its figure from a row
 * of (account, calls, prompt, completion, total, cost)
 */

static void
aw_restore_sums(const char **argv, MYSQL_ROW row)
{
    static const char  *fields[] = {
        AIHUB_CF_CALLS, AIHUB_CF_PROMPT, AIHUB_CF_COMPLETION,
        AIHUB_CF_TOTAL, AIHUB_CF_COST
    };

    size_t  i;

    for (i = 0; i < 5; i++) {
        argv[2 * i] = fields[i];
        argv[2 * i + 1] = row[i + 1];
    }
}


/*
 * An account's overage in the ledger for the period [start, end) in which
 * it has "calls" counted calls: the cost of those beyond its allowance, in
 * time order, as invoices count them.  Returns it, or -1.
 */

static long long
aw_restore_overage(MYSQL *db, long long account, long long calls,
    int64_t start, int64_t end)
{
    long long  included;
    char       t0[AW_SQL_TIME_LEN], t1[AW_SQL_TIME_LEN];

    included = aw_account_allowance(db, account, start, end);

    if (included < 0) {
        return -1;
    }

    if (calls <= included) {
        return 0;
    }

    return aw_db_scalar(db, -1, "SELECT IFNULL(SUM(cost_micros), 0) FROM "
                        "(SELECT cost_micros FROM usage_events WHERE "
                        "account = %lld AND ts >= %s AND ts < %s AND "
                        AW_SQL_COUNTED("") " ORDER BY ts, event_id "
                        "LIMIT %lld, 18446744073709551615) beyond", account,
                        aw_sql_time(start, t0), aw_sql_time(end, t1),
                        included);
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
    long long     counters, account, calls, overage;
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
        overage = aw_restore_overage(db, account, calls, start, end);

        if (overage < 0) {
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
        aw_restore_sums(&cargv[7], row);
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
 * The marker set to "epoch" unless it holds a later one: KEYS[1] the
 * marker, ARGV[1] the epoch, ARGV[2] "1": set it even when missing (a
 * restore).  Never lowered: a restore that set a later epoch meanwhile
 * wins.  A value that is not a number (none is written now) is replaced.
 */

static const char  aw_marker_raise[] =
    "local cur = redis.call('GET', KEYS[1]) "
    "if not cur and ARGV[2] ~= '1' then return 0 end "
    "local n = tonumber(cur or '') "
    "if n and n >= tonumber(ARGV[1]) then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[1]) "
    "return 1";


int
aw_restore_marker_raise(redisContext *r, long long epoch, int restore)
{
    char         key[128], e[32];
    const char  *argv[6];
    redisReply  *reply;

    snprintf(key, sizeof(key), "%s%s", aw_cfg.redis_prefix, AIHUB_RK_EPOCH);
    snprintf(e, sizeof(e), "%lld", epoch);

    argv[0] = "EVAL";
    argv[1] = aw_marker_raise;
    argv[2] = "1";
    argv[3] = key;
    argv[4] = e;
    argv[5] = restore ? "1" : "0";

    reply = aw_redis_argv(r, 6, argv);
    if (reply == NULL) {
        return -1;
    }

    freeReplyObject(reply);

    return 0;
}


/*
 * The gate's epoch (sql/008_ledger_gate.sql), read with "lock" ("", " FOR
 * UPDATE", " LOCK IN SHARE MODE"); -1 MySQL failed, -2 the table or its
 * row is missing (not migrated: no gate).
 */

long long
aw_restore_epoch(MYSQL *db, const char *lock)
{
    long long  epoch;

    epoch = aw_db_scalar(db, -1, "SELECT epoch FROM ledger_gate WHERE id = 1"
                         "%s", lock);

    if (epoch < 0 && mysql_errno(db) == ER_NO_SUCH_TABLE) {
        return -2;
    }

    if (epoch < 0 && mysql_errno(db) == 0) {
        aw_log(AW_LOG_ERROR, "the table ledger_gate has no row: run "
               "\"" AW_NAME " migrate\"");
        return -2;
    }

    return epoch;
}


/*
 * KEYS[1] the marker, KEYS[2] a guard, KEYS[3] a period hash; ARGV[1] the
 * epoch, ARGV[2] the hash's time to live, ARGV[3] the overage the ledger
 * gives the account now (the overage is raised to it, never lowered),
 * then pairs of a field and what it gains.  Only while the marker holds
 * that epoch (a later restore read the ledger with the events in it; a
 * missing one will), and once: the guard lives as long as the hash.
 */

static const char  aw_add_script[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then "
    "return 0 end "
    "for i = 4, #ARGV, 2 do "
    "redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1]) end "
    "local o = tonumber(redis.call('HGET', KEYS[3], '" AIHUB_CF_OVERAGE "') "
    "or '0') "
    "if tonumber(ARGV[3]) > o then "
    "redis.call('HSET', KEYS[3], '" AIHUB_CF_OVERAGE "', ARGV[3]) end "
    "if redis.call('TTL', KEYS[3]) == -1 then "
    "redis.call('EXPIRE', KEYS[3], ARGV[2]) end "
    "return 1";


/*
 * The events the drain just committed (those of usage_events matching
 * "where") added to the current period's counters, for a round read while
 * the marker held an older epoch than "epoch", the one its transaction
 * saw (ledger_store.c): Redis lost their calls with its data, and the
 * restore of "epoch" read the ledger before they were in it.  The
 * overage is raised to the ledger's (what the restore does).  "tag" makes
 * each addition happen once.  Returns the accounts added to, or -1.
 */

long long
aw_restore_add(MYSQL *db, redisContext *r, long long epoch, const char *where,
    unsigned long long tag)
{
    long long     n, account, calls, overage;
    int64_t       start, end;
    char          id[AIHUB_PERIOD_ID_LEN + 1], key[128], guard[128];
    char          marker[128], ttl[32], e[32], over[32];
    char          t0[AW_SQL_TIME_LEN], t1[AW_SQL_TIME_LEN];
    MYSQL_RES    *res;
    MYSQL_ROW     row;
    redisReply   *reply;
    const char   *argv[19];

    aihub_period_calendar(time(NULL), &start, &end);
    aihub_period_id(start, id);
    snprintf(ttl, sizeof(ttl), "%lld",
             (long long) (end - time(NULL)) + AIHUB_PERIOD_KEEP_SEC);
    snprintf(e, sizeof(e), "%lld", epoch);
    aw_rkey(marker, sizeof(marker), AIHUB_RK_EPOCH, NULL);

    res = aw_db_query(db, "SELECT account, COUNT(*), SUM(prompt_tokens), "
                      "SUM(completion_tokens), SUM(total_tokens), "
                      "SUM(cost_micros) FROM usage_events WHERE (%s) AND "
                      "ts >= %s AND ts < %s AND " AW_SQL_COUNTED("")
                      " GROUP BY account", where, aw_sql_time(start, t0),
                      aw_sql_time(end, t1));
    if (res == NULL) {
        return -1;
    }

    n = 0;

    while ((row = mysql_fetch_row(res)) != NULL) {
        snprintf(key, sizeof(key), "%s%s%s:%s", aw_cfg.redis_prefix,
                 AIHUB_RK_PERIOD, row[0], id);
        snprintf(guard, sizeof(guard), "%s" AIHUB_RK_ADDED "%llx:%s",
                 aw_cfg.redis_prefix, tag, row[0]);

        /* the account's overage in the ledger, these events in it */

        account = strtoll(row[0], NULL, 10);
        calls = aw_db_scalar(db, -1, "SELECT COUNT(*) FROM usage_events "
                             "WHERE account = %lld AND ts >= %s AND ts < %s "
                             "AND " AW_SQL_COUNTED(""), account, t0, t1);
        overage = calls < 0 ? -1
                            : aw_restore_overage(db, account, calls, start,
                                                 end);

        if (overage < 0) {
            mysql_free_result(res);
            return -1;
        }

        snprintf(over, sizeof(over), "%lld", overage);

        argv[0] = "EVAL";
        argv[1] = aw_add_script;
        argv[2] = "3";
        argv[3] = marker;
        argv[4] = guard;
        argv[5] = key;
        argv[6] = e;
        argv[7] = ttl;
        argv[8] = over;
        aw_restore_sums(&argv[9], row);

        reply = aw_redis_argv(r, 19, argv);

        if (reply == NULL) {
            mysql_free_result(res);
            return -1;
        }

        n += (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1);
        freeReplyObject(reply);
    }

    mysql_free_result(res);

    return n;
}


/*
 * The additions the drain committed with its events (ledger_additions,
 * sql/009_ledger_additions.sql), of "batch" or, with 0, of every batch:
 * each batch's events added to the period counters (aw_restore_add: once
 * per batch and account, and only while the marker holds the epoch its
 * COMMIT saw), then its rows deleted.  A batch left by a failure is added
 * by the next call, of this worker or another.  Returns the accounts added
 * to, -1 failed, or -2 no table (not migrated).
 */

long long
aw_restore_additions(MYSQL *db, redisContext *r, unsigned long long batch)
{
    long long            n, total, epoch;
    unsigned long long   b;
    char                 only[64], where[192];
    MYSQL_RES           *res;
    MYSQL_ROW            row;

    only[0] = '\0';

    if (batch) {
        snprintf(only, sizeof(only), " WHERE batch = %llu", batch);
    }

    res = aw_db_query(db, "SELECT batch, epoch FROM ledger_additions%s "
                      "GROUP BY batch, epoch", only);
    if (res == NULL) {
        return mysql_errno(db) == ER_NO_SUCH_TABLE ? -2 : -1;
    }

    total = 0;

    while ((row = mysql_fetch_row(res)) != NULL) {
        b = strtoull(row[0], NULL, 10);
        epoch = strtoll(row[1], NULL, 10);
        snprintf(where, sizeof(where), "event_id IN (SELECT event_id FROM "
                 "ledger_additions WHERE batch = %llu AND epoch = %lld)", b,
                 epoch);

        n = aw_restore_add(db, r, epoch, where, b);

        if (n < 0
            || aw_db_exec(db, "DELETE FROM ledger_additions WHERE batch = "
                          "%llu AND epoch = %lld", b, epoch) != 0)
        {
            mysql_free_result(res);
            return -1;
        }

        total += n;
    }

    mysql_free_result(res);

    return total;
}


/*
 * Everything: key records, plans, models, the counters, then the marker
 * and "all" on the invalidation channel.  0, or -1 (*keys and *counters
 * say how far it got); with wiped_only, 1 and nothing done if the marker
 * is there (another worker restored Redis meanwhile).
 *
 * All of it with the gate's row held exclusively (sql/008_ledger_gate.sql):
 * the ledger read here has every drain transaction committed before, and
 * every one after sees the new epoch.  A restore of a Redis that lost its
 * data raises the epoch and writes it as the marker, so a drain that read
 * its events before the loss (marker: an older epoch) and stores them
 * after finds that out and adds them to the counters itself
 * (ledger_store.c): their calls were in the counters Redis lost, and they
 * are not in the ledger read here.
 */

int
aw_restore_all(MYSQL *db, redisContext *r, int wiped_only, int *keys,
    long long *counters)
{
    int        wiped, gate;
    long long  epoch;

    *counters = 0;
    *keys = 0;

    if (mysql_query(db, "START TRANSACTION") != 0) {
        aw_log(AW_LOG_ERROR, "MySQL: %s", mysql_error(db));
        return -1;
    }

    epoch = aw_restore_epoch(db, " FOR UPDATE");

    if (epoch == -1) {
        goto failed;
    }

    /*
     * Asked under the gate: another restore may have ended meanwhile.  Then
     * the drain's restore writes nothing (its figures from MySQL could count
     * twice the events of batches Redis refused without its data, stored
     * since and sent again by the module: the max_merge script's rule);
     * "rebuild" (wiped_only 0) raises the counters to the ledger as asked.
     */

    wiped = aw_restore_needed(r);

    if (wiped < 0) {
        goto failed;
    }

    if (!wiped && wiped_only) {
        mysql_query(db, "ROLLBACK");
        return 1;
    }

    if (wiped) {
        /* -2: not migrated, no gate (a marker all the same) */
        gate = (epoch != -2);
        epoch = epoch + 1 > (long long) time(NULL) ? epoch + 1
                                                   : (long long) time(NULL);

        if (gate && aw_db_exec(db, "UPDATE ledger_gate SET epoch = %lld "
                               "WHERE id = 1", epoch) != 0)
        {
            goto failed;
        }

        /* the additions kept before: this restore reads their events */

        if (gate && aw_db_exec(db, "DELETE FROM ledger_additions WHERE "
                               "epoch < %lld", epoch) != 0
            && mysql_errno(db) != ER_NO_SUCH_TABLE)
        {
            goto failed;
        }

    } else if (epoch != -2 && aw_restore_additions(db, r, 0) == -1) {
        /* made before the counters are raised to the ledger */
        goto failed;
    }

    *keys = aw_sync_all(db, r);

    if (*keys < 0) {
        goto failed;
    }

    *counters = aw_restore_counters(db, r, wiped);

    if (*counters < 0 || aw_restore_marker_raise(r, epoch, 1) != 0) {
        goto failed;
    }

    if (mysql_query(db, "COMMIT") != 0) {
        aw_log(AW_LOG_ERROR, "MySQL: %s", mysql_error(db));
        return -1;
    }

    return aw_publish(r, AIHUB_INV_ALL);

failed:

    mysql_query(db, "ROLLBACK");

    return -1;
}
