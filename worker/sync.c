/*
 * MySQL -> Redis: key records, plans and the model catalog, written so
 * nginx reads one HASH per lookup; an invalidation message on
 * <prefix>invalidate tells every node to drop its cached copy.
 *
 * Each record is replaced atomically (MULTI, DEL, HSET, EXEC) so a reader
 * never sees a half-written record and stale fields disappear.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "db.h"
#include "redis.h"
#include "sync.h"


#define AW_KEY_FIELDS  18

static const char  *aw_key_fields[AW_KEY_FIELDS] = {
    AIHUB_KF_PREFIX, AIHUB_KF_SCOPES, AIHUB_KF_STATUS, AIHUB_KF_EXPIRES,
    AIHUB_KF_ACCOUNT, "account_name", AIHUB_KF_PLAN, AIHUB_KF_RPM,
    AIHUB_KF_TPM, AIHUB_KF_INCLUDED, AIHUB_KF_OVERAGE, AIHUB_KF_SPEND_CAP,
    AIHUB_KF_MAX_TOKENS, AIHUB_KF_MODELS, AIHUB_KF_ANCHOR, AIHUB_KF_LABEL,
    AIHUB_KF_CREATED, AIHUB_KF_PRIORITY
};


/*
 * The effective record of every key: plan values unless overridden.  A key
 * of an account without a subscription in force (cancelled, or ended in
 * MySQL) is written suspended, its plan values empty: refused (403) like
 * the key of a suspended account, by every node, after a loss of Redis's
 * data too (left out, it was unknown then: 401).
 * Models: "*", the account's own list, the plan's, or "tier:basic" so a
 * catalog change needs no key rewrite.  The anchor is the first second of the
 * subscription's month (UTC), so the module's anchored quota periods are
 * the calendar months invoices use.
 */

/*
 * A key record written from MySQL: in place of the one Redis has, but a
 * key Redis says is revoked stays revoked.  A revocation through the
 * developer API changes Redis at once and reaches MySQL when the worker
 * drains the admin stream; a sync in between (the daemon reconnecting
 * before its drain, "sync", an operator's "account plan", the service's
 * ExecStartPre) wrote MySQL's "active" back, and the revoked key worked
 * again until the drain.  Nothing makes a revoked key active again.
 * KEYS[1] the record; ARGV its fields and values.
 */

static const char  aw_key_write_script[] =
    "local st = redis.call('HGET', KEYS[1], '" AIHUB_KF_STATUS "') "
    "redis.call('DEL', KEYS[1]) "
    "redis.call('HSET', KEYS[1], unpack(ARGV)) "
    "if st == 'revoked' then "
    "  redis.call('HSET', KEYS[1], '" AIHUB_KF_STATUS "', 'revoked') "
    "end "
    "return 0";


static const char  aw_key_select[] =
    "SELECT k.key_hash, k.prefix, k.scopes, "
    "IF(k.status = 'revoked', 'revoked', "
    "IF(a.status = 'suspended' OR s.account IS NULL, 'suspended', "
    "'active')), "
    "IFNULL(" AW_SQL_UNIX("k.expires_at") ", 0), "
    "a.id, a.name, p.name, "
    "IFNULL(o.rpm, p.rpm), IFNULL(o.tpm, p.tpm), "
    "IFNULL(o.included_calls, p.included_calls), "
    "IFNULL(o.overage, p.overage), IFNULL(o.spend_cap_micros, 0), "
    "IFNULL(o.max_tokens, p.max_tokens), "
    "IFNULL(o.models, IFNULL(p.models, IF(p.model_tier = 'all', '*', "
    "CONCAT('tier:', p.model_tier)))), "
    AW_SQL_UNIX("DATE_FORMAT(s.started_at, '%Y-%m-01')") ", "
    "k.label, " AW_SQL_UNIX("k.created_at") ", p.priority "
    "FROM api_keys k "
    "JOIN accounts a ON a.id = k.account "
    "LEFT JOIN subscriptions s ON s.account = a.id AND s.ended_at IS NULL "
    "LEFT JOIN plans p ON p.id = s.plan "
    "LEFT JOIN account_overrides o ON o.account = a.id ";


/* a key not revoked whose expiry (unix seconds, 0: never) is ahead */

static int
aw_sync_key_live(const char *status, const char *expires, time_t now)
{
    long long  e;

    if (strcmp(status, "revoked") == 0) {
        return 0;
    }

    e = strtoll(expires, NULL, 10);

    return e == 0 || e > (long long) now;
}


/* reads n queued replies; -1 if any failed */

static int
aw_redis_drain_replies(redisContext *rc, int n)
{
    int          i, failed;
    void        *r;
    redisReply  *reply;

    failed = 0;

    for (i = 0; i < n; i++) {
        if (redisGetReply(rc, &r) != REDIS_OK) {
            aw_log(AW_LOG_ERROR, "Redis: %s", rc->errstr);
            return -1;
        }

        reply = r;

        if (reply->type == REDIS_REPLY_ERROR) {
            aw_log(AW_LOG_ERROR, "Redis: %s", reply->str);
            failed = 1;
        }

        freeReplyObject(reply);
    }

    return failed ? -1 : 0;
}


static int
aw_append(redisContext *rc, int argc, const char **argv)
{
    return redisAppendCommandArgv(rc, argc, argv, NULL) == REDIS_OK ? 1 : 0;
}


/*
 * The key records the WHERE clause where selects (all when NULL): where
 * may hold one "?", bound to value (db_stmt.h).
 */

int
aw_sync_keys(MYSQL *db, redisContext *rc, const char *where,
    const char *value)
{
    aw_buf_t     q;
    aw_rows_t   *res;
    char       **row;
    int          i, queued, argc, rows;
    char         key[128], akeys[128];
    time_t       now;
    const char  *argv[4 + 2 * AW_KEY_FIELDS];

    now = time(NULL);

    aw_buf_init(&q);
    aw_buf_puts(&q, aw_key_select);

    if (where && *where) {
        aw_buf_printf(&q, "WHERE %s", where);
    }

    res = aw_db_select_params(db, q.data, &value, value ? 1 : 0);
    aw_buf_free(&q);

    if (res == NULL) {
        return -1;
    }

    queued = 0;
    rows = 0;

    while ((row = aw_rows_next(res)) != NULL) {
        aw_rkey(key, sizeof(key), AIHUB_RK_KEY, row[0]);

        argv[0] = "EVAL";
        argv[1] = aw_key_write_script;
        argv[2] = "1";
        argv[3] = key;
        argc = 4;

        for (i = 0; i < AW_KEY_FIELDS; i++) {
            argv[argc++] = aw_key_fields[i];
            argv[argc++] = row[i + 1] ? row[i + 1] : "";
        }

        queued += aw_append(rc, argc, argv);

        /*
         * account-keys:<id>: display prefix -> hash, for the developer
         * API, of the keys that may still be used: a revoked or expired
         * key is refused by its record, and an index that kept every key
         * ever revoked grew without end (ngx_http_aihub_dev_key_create.c)
         */

        if (aw_sync_key_live(row[3], row[4], now)) {
            argv[0] = "HSET";
            argv[1] = aw_rkey(akeys, sizeof(akeys), AIHUB_RK_ACCOUNT_KEYS,
                              row[5]);
            argv[2] = row[1];
            argv[3] = row[0];
            queued += aw_append(rc, 4, argv);
        }

        rows++;

        if (queued >= 400) {
            if (aw_redis_drain_replies(rc, queued) != 0) {
                aw_rows_free(res);
                return -1;
            }
            queued = 0;
        }
    }

    aw_rows_free(res);

    if (aw_redis_drain_replies(rc, queued) != 0) {
        return -1;
    }

    return rows;
}


int
aw_sync_models(MYSQL *db, redisContext *rc)
{
    MYSQL_RES    *res;
    MYSQL_ROW     row;
    int           queued;
    char          key[256], set[128];
    const char   *argv[20];

    res = aw_db_query(db, "SELECT public_id, provider, upstream_id, tier, "
                      "price_in_micros, price_out_micros, enabled, kind, "
                      "api, " AW_SQL_UNIX("created_at") ", fallbacks "
                      "FROM models ORDER BY public_id");
    if (res == NULL) {
        return -1;
    }

    aw_rkey(set, sizeof(set), AIHUB_RK_MODELS, NULL);

    argv[0] = "MULTI";
    queued = aw_append(rc, 1, argv);

    argv[0] = "DEL";
    argv[1] = set;
    queued += aw_append(rc, 2, argv);

    while ((row = mysql_fetch_row(res)) != NULL) {
        aw_rkey(key, sizeof(key), AIHUB_RK_MODEL, row[0]);

        argv[0] = "DEL";
        argv[1] = key;
        queued += aw_append(rc, 2, argv);

        if (row[6][0] == '0') {
            continue;
        }

        argv[0] = "HSET";
        argv[1] = key;
        argv[2] = AIHUB_MF_PROVIDER;
        argv[3] = row[1];
        argv[4] = AIHUB_MF_UPSTREAM;
        argv[5] = row[2];
        argv[6] = AIHUB_MF_TIER;
        argv[7] = row[3];
        argv[8] = AIHUB_MF_PRICE_IN;
        argv[9] = row[4];
        argv[10] = AIHUB_MF_PRICE_OUT;
        argv[11] = row[5];
        argv[12] = AIHUB_MF_KIND;
        argv[13] = row[7];
        argv[14] = AIHUB_MF_API;
        argv[15] = row[8];
        argv[16] = AIHUB_MF_CREATED;
        argv[17] = row[9];
        argv[18] = AIHUB_MF_FALLBACKS;
        argv[19] = row[10];
        queued += aw_append(rc, 20, argv);

        argv[0] = "SADD";
        argv[1] = set;
        argv[2] = row[0];
        queued += aw_append(rc, 3, argv);
    }

    mysql_free_result(res);

    argv[0] = "EXEC";
    queued += aw_append(rc, 1, argv);

    return aw_redis_drain_replies(rc, queued);
}


int
aw_sync_plans(MYSQL *db, redisContext *rc)
{
    MYSQL_RES    *res;
    MYSQL_ROW     row;
    int           queued, i;
    char          key[128];
    const char   *argv[2 + 2 * 9];
    static const char  *fields[9] = {
        AIHUB_PF_BASE_FEE, AIHUB_PF_INCLUDED, AIHUB_PF_HARD_QUOTA,
        AIHUB_PF_OVERAGE, AIHUB_PF_RPM, AIHUB_PF_TPM, AIHUB_PF_MAX_TOKENS,
        AIHUB_PF_MODEL_TIER, AIHUB_PF_PRIORITY
    };

    res = aw_db_query(db, "SELECT name, base_fee_cents, included_calls, "
                      "hard_quota, overage, rpm, tpm, max_tokens, "
                      "model_tier, priority FROM plans");
    if (res == NULL) {
        return -1;
    }

    queued = 0;

    while ((row = mysql_fetch_row(res)) != NULL) {
        aw_rkey(key, sizeof(key), AIHUB_RK_PLAN, row[0]);

        argv[0] = "HSET";
        argv[1] = key;

        for (i = 0; i < 9; i++) {
            argv[2 + 2 * i] = fields[i];
            argv[3 + 2 * i] = row[i + 1];
        }

        queued += aw_append(rc, 20, argv);
    }

    mysql_free_result(res);

    return aw_redis_drain_replies(rc, queued);
}


int
aw_publish(redisContext *rc, const char *msg)
{
    char          channel[128];
    const char   *argv[3];
    redisReply   *r;

    argv[0] = "PUBLISH";
    argv[1] = aw_rkey(channel, sizeof(channel), AIHUB_RK_INVALIDATE, NULL);
    argv[2] = msg;

    r = aw_redis_argv(rc, 3, argv);
    if (r == NULL) {
        return -1;
    }

    freeReplyObject(r);

    return 0;
}


/* the connection of an admin change, or NULL (said) */

static redisContext *
aw_sync_connect(void)
{
    redisContext  *rc;

    rc = aw_redis_connect(3000);

    if (rc == NULL) {
        aw_log(AW_LOG_ERROR, "MySQL is updated but Redis is not: run \""
               AW_NAME " sync\" when Redis is back");
    }

    return rc;
}


static void
aw_sync_stale(void)
{
    aw_log(AW_LOG_ERROR, "MySQL is updated but Redis is not: run \""
           AW_NAME " sync\"");
}


/*
 * After an admin change in MySQL: rewrite the affected key records and
 * publish the invalidation.  Failure leaves MySQL right and Redis stale:
 * say how to repair.
 */

int
aw_sync_after_change(MYSQL *db, const char *where, const char *value,
    const char *inval)
{
    redisContext  *rc;
    int            n;

    rc = aw_sync_connect();
    if (rc == NULL) {
        return -1;
    }

    n = aw_sync_keys(db, rc, where, value);

    if (n < 0 || (inval && aw_publish(rc, inval) != 0)) {
        aw_redis_close(rc);
        aw_sync_stale();
        return -1;
    }

    aw_redis_close(rc);

    return 0;
}


/*
 * After a key's revocation in MySQL.  Its record goes from Redis first, on
 * its own, and the invalidation goes out: a DEL frees memory, so a Redis
 * at its maxmemory takes it where it refuses the rewrite (MULTI, DEL,
 * HSET, EXEC aborts there as a whole), and every node refuses a key
 * without a record (unknown: 401).  Then the record is written as
 * revoked (a node that read it meanwhile found none: refused all the
 * same); if Redis refuses that, the key stays refused as unknown until
 * a sync writes it.
 */

int
aw_sync_after_revoke(MYSQL *db, const char *hash, const char *inval)
{
    int            n;
    char           key[128];
    const char    *argv[2];
    redisContext  *rc;
    redisReply    *r;

    rc = aw_sync_connect();
    if (rc == NULL) {
        return -1;
    }

    argv[0] = "DEL";
    argv[1] = aw_rkey(key, sizeof(key), AIHUB_RK_KEY, hash);

    r = aw_redis_argv(rc, 2, argv);

    if (r == NULL || aw_publish(rc, inval) != 0) {
        if (r) {
            freeReplyObject(r);
        }

        aw_redis_close(rc);
        aw_sync_stale();
        return -1;
    }

    freeReplyObject(r);

    n = aw_sync_keys(db, rc, "k.key_hash = ?", hash);

    if (n < 0) {
        aw_log(AW_LOG_WARN, "the key's record is gone from Redis, so every "
               "node refuses the key; Redis did not take it back as "
               "revoked: run \"" AW_NAME " sync\" when it has room");
    }

    aw_redis_close(rc);

    return 0;
}


/* every key record, model and plan; returns the number of keys or -1 */

int
aw_sync_all(MYSQL *db, redisContext *rc)
{
    int  n;

    n = aw_sync_keys(db, rc, NULL, NULL);

    if (n < 0 || aw_sync_models(db, rc) != 0 || aw_sync_plans(db, rc) != 0) {
        return -1;
    }

    return n;
}
