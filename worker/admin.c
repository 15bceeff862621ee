/*
 * Key changes made through the developer API: nginx creates and revokes
 * keys in Redis at once and XADDs an event to <prefix>admin; the drain
 * persists them here so MySQL stays the source of truth, then rewrites
 * the key record from MySQL.  Same consumer group and ACK-after-commit
 * rule as the usage stream; a change that cannot be applied goes to the
 * dead-letter stream with the reason.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "admin.h"
#include "db.h"
#include "event_read.h"
#include "redis.h"
#include "sync.h"


static int
aw_hex64(const char *s)
{
    size_t  i;

    for (i = 0; i < AIHUB_SHA256_HEX_LEN; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
        {
            return 0;
        }
    }

    return s[i] == '\0';
}


static int
aw_prefix_ok(const char *s)
{
    return strlen(s) == AIHUB_KEY_PREFIX_LEN
           && strncmp(s, AIHUB_KEY_TAG, AIHUB_KEY_TAG_LEN) == 0
           && strspn(s + AIHUB_KEY_TAG_LEN, "0123456789ABCDEFGHIJKLMNOPQRS"
                     "TUVWXYZabcdefghijklmnopqrstuvwxyz") == 8;
}


static const char *
aw_jstr(cJSON *o, const char *name)
{
    cJSON  *v;

    v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}


/*
 * key.created: the key into MySQL (the creator's account and plan; its
 * expiry, unix seconds, 0 or absent from an older module: never), then
 * its record rewritten from MySQL.  Returns as aw_admin_apply.
 */

static int
aw_admin_key_created(MYSQL *db, redisContext *rc, cJSON *o,
    const char *prefix, long long account, long long ms,
    const char **reason)
{
    cJSON       *exp;
    const char  *hash, *scopes, *label;
    long long    expires;
    aw_stmt_t    q;
    char         sql[160], te[AW_SQL_TIME_LEN], msg[128];

    hash = aw_jstr(o, AIHUB_AE_HASH);
    scopes = aw_jstr(o, AIHUB_AE_SCOPES);
    label = aw_jstr(o, AIHUB_AE_LABEL);
    exp = cJSON_GetObjectItemCaseSensitive(o, AIHUB_AE_EXPIRES);

    if (hash == NULL || !aw_hex64(hash)) {
        *reason = "admin event: bad hash";
        return 1;
    }

    if (exp != NULL
        && (!cJSON_IsNumber(exp) || exp->valuedouble < 0
            || exp->valuedouble > 253402300799.0))
    {
        *reason = "admin event: bad expires";
        return 1;
    }

    expires = exp ? (long long) exp->valuedouble : 0;

    if (scopes == NULL || (strcmp(scopes, "chat") != 0
                           && strcmp(scopes, "admin") != 0
                           && strcmp(scopes, "chat,admin") != 0))
    {
        scopes = "chat";
    }

    aw_stmt_init(&q);
    aw_buf_puts(&q.sql, "INSERT IGNORE INTO api_keys (account, key_hash, "
                "prefix, label, scopes, expires_at, source, created_at) "
                "SELECT id, ");
    aw_stmt_str(&q, hash);
    aw_buf_puts(&q.sql, ", ");
    aw_stmt_str(&q, prefix);
    aw_buf_puts(&q.sql, ", ");
    aw_stmt_str(&q, label ? label : "");
    aw_buf_puts(&q.sql, ", ");
    aw_stmt_str(&q, scopes);

    if (expires > 0) {
        aw_buf_printf(&q.sql, ", %s", aw_sql_time(expires, te));

    } else {
        aw_buf_puts(&q.sql, ", NULL");
    }

    if (ms > 0) {
        aw_buf_printf(&q.sql, ", 'api', %s FROM accounts WHERE id = %lld",
                      aw_sql_time(ms / 1000, te), account);

    } else {
        aw_buf_printf(&q.sql, ", 'api', UTC_TIMESTAMP() FROM accounts "
                      "WHERE id = %lld", account);
    }

    if (aw_stmt_exec(db, &q) != 0) {
        *reason = "admin event: MySQL refused the key";
        return aw_db_data_error(db) ? 1 : -1;
    }

    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM api_keys WHERE "
             "key_hash = ? AND account = %lld", account);

    if (aw_db_scalar_params(db, 0, sql, (const char *[]) { hash }, 1) != 1)
    {
        *reason = "admin event: unknown account or prefix taken";
        return 1;
    }

    /* revoked before it got here: stored revoked */

    if (aw_db_exec_params(db, "UPDATE api_keys k JOIN key_revocations r ON "
                          "r.account = k.account AND r.prefix = k.prefix "
                          "SET k.status = 'revoked', k.revoked_at = "
                          "IFNULL(k.revoked_at, r.revoked_at) WHERE "
                          "k.key_hash = ?", (const char *[]) { hash }, 1)
        != 0)
    {
        *reason = "admin event: MySQL refused the key's revocation";
        return aw_db_data_error(db) ? 1 : -1;
    }

    /*
     * the record as MySQL has it, and the nodes told: the account may
     * have been suspended (or its plan changed, or the key revoked)
     * while the key was only in Redis, and a node that served it holds
     * it "active" (before: for the whole cache lifetime after this)
     */

    aw_sync_keys(db, rc, "k.key_hash = ?", hash);

    snprintf(msg, sizeof(msg), AIHUB_INV_KEY "%s", hash);
    aw_publish(rc, msg);

    aw_log(AW_LOG_INFO, "key %s of account %lld created through the "
           "developer API stored", prefix, account);

    return 0;
}


/* key.revoked: MySQL first, then the record and the invalidation */

static int
aw_admin_key_revoked(MYSQL *db, redisContext *rc, const char *prefix,
    long long account, const char **reason)
{
    char        sql[192], msg[128], h[AIHUB_SHA256_HEX_LEN + 1];
    char      **row;
    aw_rows_t  *res;

    snprintf(sql, sizeof(sql), "UPDATE api_keys SET status = 'revoked', "
             "revoked_at = IFNULL(revoked_at, UTC_TIMESTAMP()) "
             "WHERE prefix = ? AND account = %lld", account);

    if (aw_db_exec_params(db, sql, (const char *[]) { prefix }, 1) != 0) {
        *reason = "admin event: MySQL refused the revocation";
        return aw_db_data_error(db) ? 1 : -1;
    }

    snprintf(sql, sizeof(sql), "SELECT key_hash FROM api_keys WHERE "
             "prefix = ? AND account = %lld", account);
    res = aw_db_select_params(db, sql, (const char *[]) { prefix }, 1);
    if (res == NULL) {
        *reason = "admin event: MySQL refused the revocation";
        return aw_db_data_error(db) ? 1 : -1;
    }

    row = aw_rows_next(res);

    if (row == NULL || row[0] == NULL) {
        /*
         * its key.created is not stored yet (another worker holds it, or
         * it waits its turn): the revocation waits for it, and the key is
         * stored revoked.  Before, this was dead-lettered, and the key
         * then stored active, for good.
         */

        aw_rows_free(res);

        snprintf(sql, sizeof(sql), "INSERT IGNORE INTO key_revocations "
                 "(account, prefix) VALUES (%lld, ?)", account);

        if (aw_db_exec_params(db, sql, (const char *[]) { prefix }, 1) != 0)
        {
            *reason = "admin event: no such account";
            return aw_db_data_error(db) ? 1 : -1;
        }

        aw_log(AW_LOG_INFO, "key %s of account %lld revoked before its "
               "creation was stored: stored revoked when it is", prefix,
               account);

        return 0;
    }

    snprintf(h, sizeof(h), "%s", row[0]);
    aw_rows_free(res);

    snprintf(msg, sizeof(msg), AIHUB_INV_KEY "%s", h);
    aw_sync_keys(db, rc, "k.key_hash = ?", h);
    aw_publish(rc, msg);

    aw_log(AW_LOG_INFO, "key %s of account %lld revoked through the "
           "developer API stored", prefix, account);

    return 0;
}


/*
 * Applies one admin event.  0: applied (or nothing to do); 1: invalid,
 * *reason set (dead-letter it); -1: MySQL failed (retry later).
 */

static int
aw_admin_apply(MYSQL *db, redisContext *rc, const char *json, size_t len,
    const char **reason)
{
    cJSON       *o, *acc, *ts;
    const char  *type, *prefix;
    long long    account, ms;
    int          rc_;

    o = aw_json_parse_strict(json, len, reason);

    if (o == NULL) {
        return 1;
    }

    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        *reason = "admin event: not a JSON object";
        return 1;
    }

    type = aw_jstr(o, AIHUB_AE_TYPE);
    prefix = aw_jstr(o, AIHUB_AE_PREFIX);
    acc = cJSON_GetObjectItemCaseSensitive(o, AIHUB_AE_ACCOUNT);
    ts = cJSON_GetObjectItemCaseSensitive(o, AIHUB_AE_TS);

    if (type == NULL || prefix == NULL || !aw_prefix_ok(prefix)
        || !cJSON_IsNumber(acc) || acc->valuedouble < 1
        || acc->valuedouble > 9007199254740991.0)
    {
        *reason = "admin event: bad type, prefix or account";
        rc_ = 1;

    } else {
        account = (long long) acc->valuedouble;
        ms = (cJSON_IsNumber(ts) && ts->valuedouble >= 0
              && ts->valuedouble <= 253402300799999.0)
             ? (long long) ts->valuedouble : 0;

        if (strcmp(type, AIHUB_AE_KEY_CREATED) == 0) {
            rc_ = aw_admin_key_created(db, rc, o, prefix, account, ms,
                                       reason);

        } else if (strcmp(type, AIHUB_AE_KEY_REVOKED) == 0) {
            rc_ = aw_admin_key_revoked(db, rc, prefix, account, reason);

        } else {
            *reason = "admin event: unknown type";
            rc_ = 1;
        }
    }

    cJSON_Delete(o);

    return rc_;
}


/*
 * One non-blocking pass over <prefix>admin.  *pending: read our own
 * pending entries first.  Returns 0, 1 if MySQL failed, -1 if Redis
 * failed.
 */

int
aw_admin_drain(redisContext *rc, MYSQL *db, const char *consumer,
    int *pending)
{
    char          stream[128], dead[128];
    const char   *argv[9], *reason, *raw;
    size_t        i, j, rawlen;
    int           r;
    redisReply   *reply, *list, *e, *f, *x;

    aw_rkey(stream, sizeof(stream), AIHUB_RK_ADMIN, NULL);
    aw_rkey(dead, sizeof(dead), AIHUB_RK_USAGE_DEAD, NULL);

    argv[0] = "XREADGROUP";
    argv[1] = "GROUP";
    argv[2] = AIHUB_USAGE_GROUP;
    argv[3] = consumer;
    argv[4] = "COUNT";
    argv[5] = "100";
    argv[6] = "STREAMS";
    argv[7] = stream;
    argv[8] = *pending ? "0" : ">";

    reply = redisCommandArgv(rc, 9, argv, NULL);

    if (reply == NULL) {
        return -1;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        /* NOGROUP: create it (stream made if missing) and come back */
        freeReplyObject(reply);
        reply = redisCommand(rc, "XGROUP CREATE %s %s 0 MKSTREAM", stream,
                             AIHUB_USAGE_GROUP);
        if (reply == NULL) {
            return -1;
        }
        freeReplyObject(reply);
        return 0;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
        || reply->element[0]->elements < 2)
    {
        *pending = 0;
        freeReplyObject(reply);
        return 0;
    }

    list = reply->element[0]->element[1];

    if (list->elements == 0) {
        *pending = 0;
    }

    for (i = 0; i < list->elements; i++) {
        e = list->element[i];
        raw = NULL;
        rawlen = 0;
        f = e->element[1];

        for (j = 0; f->type == REDIS_REPLY_ARRAY && j + 1 < f->elements;
             j += 2)
        {
            if (strcmp(f->element[j]->str, AIHUB_USAGE_FIELD) == 0) {
                raw = f->element[j + 1]->str;
                rawlen = f->element[j + 1]->len;
            }
        }

        reason = "admin event: no \"event\" field";
        r = raw ? aw_admin_apply(db, rc, raw, rawlen, &reason) : 1;

        if (r < 0) {
            /* MySQL failed: leave it pending, the caller reconnects */
            freeReplyObject(reply);
            *pending = 1;
            return 1;
        }

        if (r > 0) {
            aw_log(AW_LOG_WARN, "dead-lettering %s entry %s: %s", stream,
                   e->element[0]->str, reason);
            x = redisCommand(rc, "XADD %s * event %b reason %s stream_id %s",
                             dead, raw ? raw : "", rawlen, reason,
                             e->element[0]->str);
            if (x == NULL) {
                freeReplyObject(reply);
                return -1;
            }
            freeReplyObject(x);
        }

        x = redisCommand(rc, "XACK %s %s %s", stream, AIHUB_USAGE_GROUP,
                         e->element[0]->str);
        if (x == NULL) {
            freeReplyObject(reply);
            return -1;
        }
        freeReplyObject(x);

        /* and gone: acknowledged only, every key change stayed for good */

        x = redisCommand(rc, "XDEL %s %s", stream, e->element[0]->str);
        if (x == NULL) {
            freeReplyObject(reply);
            return -1;
        }
        freeReplyObject(x);
    }

    freeReplyObject(reply);

    return 0;
}
