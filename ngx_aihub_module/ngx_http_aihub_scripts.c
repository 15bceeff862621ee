/*
 * The quota engine's Lua scripts (the reserve, the settle, the sweep of
 * expired leases), in one table.  They run by their SHA1 (EVALSHA): Redis
 * neither parses nor hashes the text on every call.  They are loaded on
 * every new connection, before anything else is sent on it, so a
 * restarted Redis has them again; a NOSCRIPT answer loads them again.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_limit.h"
#include "ngx_http_aihub_scripts.h"

#include <openssl/sha.h>


static void ngx_http_aihub_scripts_loaded(redisAsyncContext *ac, void *reply,
    void *privdata);


/*
 * Reclaiming a period's expired leases, in Lua: "pk" the period hash, "lk"
 * its leases, "rk" its reclaimed leases, "lnow" Redis time in ms, "ttl"
 * the keys' lifetime.  Their calls and held cost go back.
 */

#define NGX_HTTP_AIHUB_RECLAIM_LUA                                           \
    "local old = redis.call('ZRANGEBYSCORE', lk, '-inf', lnow) "             \
    "if #old > 0 then "                                                      \
    "  local held = 0 "                                                      \
    "  redis.call('ZREMRANGEBYSCORE', lk, '-inf', lnow) "                    \
    "  redis.call('HINCRBY', pk, '" AIHUB_CF_CALLS "', -#old) "              \
    "  for _, id in ipairs(old) do "                                         \
    "    redis.call('ZADD', rk, lnow, id) "                                  \
    "    held = held + tonumber(string.match(id, ':(%d+)$') or '0') "        \
    "  end "                                                                 \
    "  if held > 0 then redis.call('HINCRBY', pk, '"                         \
        AIHUB_CF_LEASED_COST "', -held) end "                                \
    "  redis.call('ZREMRANGEBYSCORE', rk, '-inf', lnow - 86400000) "         \
    "  redis.call('EXPIRE', rk, ttl) "                                       \
    "end "


/*
 * KEYS[1] period hash, KEYS[2] global rate limit state (may be unused;
 * ngx_http_aihub_limit.h has that part), KEYS[3] the period's leases,
 * KEYS[4] the leases reclaimed unsettled, KEYS[5] the periods due a sweep
 * ARGV: included, hard (0|1), spend cap, ttl seconds, global rpm (0: none),
 * lease id, lease time in ms, the call's worst-case cost, the period's
 * "<account>:<YYYYMMDD>"
 * A call beyond the included ones of an account with a spend cap holds its
 * worst-case cost in "leased_cost" while its lease is outstanding, and is
 * refused once the overage plus what is held reaches the cap.
 * Returns {allowed, calls, reason, remaining, retry_ms, reset_ms}.
 */

static const char  ngx_http_aihub_reserve_script[] =
    "local lt = redis.call('TIME') "
    "local lnow = lt[1] * 1000 + math.floor(lt[2] / 1000) "
    "local pk, lk, rk, ttl = KEYS[1], KEYS[3], KEYS[4], ARGV[4] "
    NGX_HTTP_AIHUB_RECLAIM_LUA
    "local calls = tonumber(redis.call('HGET', KEYS[1], '"
        AIHUB_CF_CALLS "') or '0') "
    "local included = tonumber(ARGV[1]) "
    "local rpm = tonumber(ARGV[5]) "
    "local remaining, reset = 0, 0 "
    "if ARGV[2] == '1' and calls >= included then "
    "  return {0, calls, 'quota', 0, 0, 0} end "
    "local cap = tonumber(ARGV[3]) "
    "if cap > 0 and calls >= included then "
    "  local o = redis.call('HMGET', KEYS[1], '" AIHUB_CF_OVERAGE "', '"
        AIHUB_CF_LEASED_COST "') "
    "  if tonumber(o[1] or '0') + tonumber(o[2] or '0') >= cap then "
    "    return {0, calls, 'spend', 0, 0, 0} end "
    "end "
    NGX_HTTP_AIHUB_LIMIT_GLOBAL_LUA
    "calls = redis.call('HINCRBY', KEYS[1], '" AIHUB_CF_CALLS "', 1) "
    "if calls == 1 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end "
    "local lc = 0 "
    "if cap > 0 and calls > included then lc = tonumber(ARGV[8]) end "
    "if lc > 0 then redis.call('HINCRBY', KEYS[1], '"
        AIHUB_CF_LEASED_COST "', lc) end "
    "local due = lnow + tonumber(ARGV[7]) "
    "redis.call('ZADD', KEYS[3], due, ARGV[6] .. ':' .. lc) "
    "redis.call('EXPIRE', KEYS[3], ARGV[4]) "
    "redis.call('ZADD', KEYS[5], 'LT', due, ARGV[9]) "
    "return {1, calls, 'ok', remaining, 0, reset}";


/*
 * KEYS[1] period hash, KEYS[2] the period's leases, KEYS[3] the leases
 * reclaimed unsettled
 * ARGV: lease ("<id>:<cost held>"), success (0|1), the cost held, then
 * field, increment pairs (success)
 * A lease still held: its cost is released, a failure gives its call
 * back.  A lease reclaimed (both given back already): a success counts the
 * call again.  No lease: settled already (a resend), nothing to do.
 * Returns 1 or 0.
 */

static const char  ngx_http_aihub_settle_script[] =
    "if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then "
    "  if ARGV[2] ~= '1' then "
    "    redis.call('HINCRBY', KEYS[1], '" AIHUB_CF_CALLS "', -1) end "
    "  if ARGV[3] ~= '0' then redis.call('HINCRBY', KEYS[1], '"
        AIHUB_CF_LEASED_COST "', -tonumber(ARGV[3])) end "
    "elseif redis.call('ZREM', KEYS[3], ARGV[1]) == 1 then "
    "  if ARGV[2] == '1' then "
    "    redis.call('HINCRBY', KEYS[1], '" AIHUB_CF_CALLS "', 1) end "
    "else return 0 end "
    "for i = 4, #ARGV, 2 do "
    "  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) "
    "end "
    "return 1";


/*
 * The sweep: KEYS[1] the periods due; ARGV: the Redis prefix, ttl seconds.
 * Reclaims the expired leases of up to 100 due periods (their keys are
 * named from the prefix: one Redis, no cluster), and files each period
 * again under its next expiry, or drops it when it has no lease left.
 * Returns the number of periods swept.
 */

static const char  ngx_http_aihub_sweep_script[] =
    "local lt = redis.call('TIME') "
    "local lnow = lt[1] * 1000 + math.floor(lt[2] / 1000) "
    "local ttl = ARGV[2] "
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', lnow, "
    "                       'LIMIT', 0, 100) "
    "for _, m in ipairs(due) do "
    "  local pk = ARGV[1] .. '" AIHUB_RK_PERIOD "' .. m "
    "  local lk = ARGV[1] .. '" AIHUB_RK_LEASES "' .. m "
    "  local rk = ARGV[1] .. '" AIHUB_RK_LEASES_RECLAIMED "' .. m "
    NGX_HTTP_AIHUB_RECLAIM_LUA
    "  local nxt = redis.call('ZRANGE', lk, 0, 0, 'WITHSCORES') "
    "  if #nxt == 0 then redis.call('ZREM', KEYS[1], m) "
    "  else redis.call('ZADD', KEYS[1], nxt[2], m) end "
    "end "
    "return #due";


/*
 * The scripts run by their SHA1 (EVALSHA): Redis neither parses nor hashes
 * the text on every call.  They are loaded on every new connection, before
 * anything else is sent on it, so a restarted Redis has them again.
 */

typedef struct {
    const char                   *text;
    size_t                        len;
    u_char                        sha[NGX_HTTP_AIHUB_SCRIPT_SHA_LEN];
} ngx_http_aihub_script_t;


static ngx_http_aihub_script_t  ngx_http_aihub_scripts[] = {
    { ngx_http_aihub_reserve_script,
      sizeof(ngx_http_aihub_reserve_script) - 1, "" },
    { ngx_http_aihub_settle_script,
      sizeof(ngx_http_aihub_settle_script) - 1, "" },
    { ngx_http_aihub_sweep_script,
      sizeof(ngx_http_aihub_sweep_script) - 1, "" },
};


u_char *
ngx_http_aihub_script_sha(ngx_http_aihub_script_e which)
{
    return ngx_http_aihub_scripts[which].sha;
}


void
ngx_http_aihub_scripts_init(void)
{
    u_char      md[SHA_DIGEST_LENGTH];
    ngx_uint_t  i;

    for (i = 0; i < sizeof(ngx_http_aihub_scripts)
                    / sizeof(ngx_http_aihub_script_t); i++)
    {
        SHA1((u_char *) ngx_http_aihub_scripts[i].text,
             ngx_http_aihub_scripts[i].len, md);
        ngx_hex_dump(ngx_http_aihub_scripts[i].sha, md, sizeof(md));
    }
}


void
ngx_http_aihub_scripts_load(void)
{
    ngx_uint_t   i;
    const char  *argv[3];
    size_t       argvlen[3];

    argv[0] = "SCRIPT";
    argvlen[0] = sizeof("SCRIPT") - 1;
    argv[1] = "LOAD";
    argvlen[1] = sizeof("LOAD") - 1;

    for (i = 0; i < sizeof(ngx_http_aihub_scripts)
                    / sizeof(ngx_http_aihub_script_t); i++)
    {
        argv[2] = ngx_http_aihub_scripts[i].text;
        argvlen[2] = ngx_http_aihub_scripts[i].len;

        (void) ngx_http_aihub_redis_send(ngx_http_aihub_scripts_loaded,
                                         &ngx_http_aihub_scripts[i],
                                         3, argv, argvlen);
    }
}


static void
ngx_http_aihub_scripts_loaded(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply               *rep = reply;
    ngx_http_aihub_script_t  *script = privdata;

    if (rep == NULL) {
        return;
    }

    if (rep->type != REDIS_REPLY_STRING
        || rep->len != sizeof(script->sha)
        || ngx_strncmp(rep->str, script->sha, sizeof(script->sha)) != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "aihub: redis did not load a script: %s",
                      rep->type == REDIS_REPLY_ERROR ? rep->str
                                                     : "unexpected reply");
    }
}


/* NOSCRIPT: someone flushed the scripts; load them again */

void
ngx_http_aihub_scripts_check(redisReply *reply)
{
    if (reply && reply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "aihub: redis lost the quota scripts, loading them "
                      "again");
        ngx_http_aihub_scripts_load();
    }
}
