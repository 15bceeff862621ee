/*
 * The quota engine's Lua scripts (the grant of a lease, the batch that
 * applies usage events and settles, the sweep of expired leases), in one
 * table.  They run by their SHA1 (EVALSHA): Redis
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


/* the SCRIPT LOADs sent and not yet answered */
static ngx_uint_t  ngx_http_aihub_scripts_loading;


/*
 * Reclaiming a period's expired leases, in Lua: "pk" the period hash
 * (field "lease:<id>": what a lease still holds, "calls:cost", and
 * ":rpm" when its calls took the global rate limit's tokens), "lk" its
 * leases (id by expiry), "rk" the account's global rate limit state,
 * "lnow" Redis time in ms.  What they hold goes back: calls, cost, and
 * one token for each call still held (the limit's state goes back by
 * their time).  A thousand at a time: Lua's unpack() takes some 8,000
 * values at most, and nodes that died under a burst of one-call leases
 * leave more.
 */

#define NGX_HTTP_AIHUB_RECLAIM_LUA                                           \
    "local old = redis.call('ZRANGEBYSCORE', lk, '-inf', lnow) "             \
    "if #old > 0 then "                                                      \
    "  local rc, rcost, back = 0, 0, 0 "                                     \
    "  redis.call('ZREMRANGEBYSCORE', lk, '-inf', lnow) "                    \
    "  for s = 1, #old, 1000 do "                                            \
    "    local f = {} "                                                      \
    "    for i = s, s + 999 do "                                             \
    "      if old[i] then f[#f + 1] = '" AIHUB_CF_LEASE "' .. old[i] end "   \
    "    end "                                                               \
    "    local v = redis.call('HMGET', pk, unpack(f)) "                      \
    "    for i = 1, #f do "                                                  \
    "      if v[i] then "                                                    \
    "        local a, b, t = string.match(v[i], '^(%d+):(%d+):?(%d*)$') "    \
    "        rc = rc + tonumber(a) rcost = rcost + tonumber(b) "             \
    "        t = tonumber(t) "                                               \
    "        if t and t > 0 then back = back + tonumber(a) * 60000 / t end " \
    "      end "                                                             \
    "    end "                                                               \
    "    redis.call('HDEL', pk, unpack(f)) "                                 \
    "  end "                                                                 \
    "  if rc > 0 then redis.call('HINCRBY', pk, '"                           \
        AIHUB_CF_LEASED_CALLS "', -rc) end "                                 \
    "  if rcost > 0 then redis.call('HINCRBY', pk, '"                        \
        AIHUB_CF_LEASED_COST "', -rcost) end "                               \
    "  if back > 0 then "                                                    \
    "    local tat = redis.call('GET', rk) "                                 \
    "    if tat then redis.call('SET', rk, tostring(tonumber(tat) - back), " \
    "                           'KEEPTTL') end "                             \
    "  end "                                                                 \
    "end "


/*
 * The grant: a lease of up to "want" calls out of what is neither used
 * nor leased (and beyond the included calls of an account with a spend
 * cap, of as many times the asking call's worst-case cost).
 * KEYS[1] period hash, KEYS[2] global rate limit state (may be unused;
 * ngx_http_aihub_limit.h has that part), KEYS[3] the period's leases,
 * KEYS[4] the periods due a sweep, KEYS[5] the epoch marker
 * ARGV: included, hard (0|1), spend cap, ttl seconds, global rpm (0: none),
 * lease id, lease time in ms, the call's worst-case cost, the period's
 * "<account>:<YYYYMMDD>", want, least (1: a request waits for it; more: a
 * refill ahead, refused rather than below the smallest block), the
 * period's end in ms, the smallest block.
 * With a limit (hard quota, or a spend cap on the included calls), a block
 * holds at most a quarter of what is left per holder (the holders: the
 * outstanding leases, plus one): it shrinks as the budget does, and below
 * the smallest block a request gets one call.  Beyond the included calls
 * of an account with a spend cap, a lease holds n times the asking call's
 * worst-case cost, n again at most a quarter of what is left of the cap
 * per holder, and below the smallest block a call is leased alone with
 * its worst-case cost; a call is refused once the overage plus what is
 * held reaches the cap.
 * The node admits from a lease until the period's end at the latest (the
 * lifetime it is told), but Redis holds it its whole time: a lease that
 * Redis let go at the period's end was reclaimed by the first grant of
 * that period to come after it (a request checked at 23:59:59.99, a
 * grant sent again, a node whose clock is behind Redis's), and the calls
 * still running on it were then granted again to others.
 * Without the epoch marker (Redis lost its data, and the worker has not
 * restored the counters yet) nothing is granted: reason "wiped".
 * A lease "id" that is there already was granted by this script sent
 * before, whose reply the node lost with its connection, and is sent
 * again (ngx_http_aihub_redis_call.c): the node never saw that lease, so
 * it is cancelled (what it holds goes back, as when it is reclaimed) and
 * the grant decided again, as if the first had not run.
 * Returns {allowed, base (calls used or leased before), reason, remaining,
 * retry_ms, reset_ms, calls granted, lifetime in ms, cost held}.
 */

static const char  ngx_http_aihub_grant_script[] =
    "local lt = redis.call('TIME') "
    "local lnow = lt[1] * 1000 + math.floor(lt[2] / 1000) "
    "local pk, lk, rk = KEYS[1], KEYS[3], KEYS[2] "
    "if redis.call('EXISTS', KEYS[5]) == 0 then "
    "  return {0, 0, 'wiped', 0, 0, 0, 0, 0, 0} end "
    NGX_HTTP_AIHUB_RECLAIM_LUA
    "local h = redis.call('HMGET', pk, '" AIHUB_CF_CALLS "', '"
        AIHUB_CF_LEASED_CALLS "', '" AIHUB_CF_OVERAGE "', '"
        AIHUB_CF_LEASED_COST "', '" AIHUB_CF_LEASE "' .. ARGV[6]) "
    "local held, heldc = tonumber(h[2] or '0'), tonumber(h[4] or '0') "
    "if h[5] then "
    "  local a, b, t = string.match(h[5], '^(%d+):(%d+):?(%d*)$') "
    "  held, heldc = held - tonumber(a), heldc - tonumber(b) "
    "  redis.call('HDEL', pk, '" AIHUB_CF_LEASE "' .. ARGV[6]) "
    "  redis.call('HSET', pk, '" AIHUB_CF_LEASED_CALLS "', held, '"
        AIHUB_CF_LEASED_COST "', heldc) "
    "  redis.call('ZREM', lk, ARGV[6]) "
    "  t = tonumber(t) "
    "  if t and t > 0 then "
    "    local tat = redis.call('GET', rk) "
    "    if tat then redis.call('SET', rk, "
    "      tostring(tonumber(tat) - tonumber(a) * 60000 / t), 'KEEPTTL') end "
    "  end "
    "end "
    "local used = tonumber(h[1] or '0') + held "
    "local calls = used "
    "local included, cap = tonumber(ARGV[1]), tonumber(ARGV[3]) "
    "local want, least = tonumber(ARGV[10]), tonumber(ARGV[11]) "
    "local rpm = tonumber(ARGV[5]) "
    "local remaining, reset = 0, 0 "
    "local n, lc, no = want, 0, {0, used, 'edge', 0, 0, 0, 0, 0, 0} "
    "if ARGV[2] == '1' or cap > 0 then "
    "  local left = included - used "
    "  if left < 1 then "
    "    if ARGV[2] == '1' then no[3] = 'quota' return no end "
    "    local budget = cap - tonumber(h[3] or '0') - heldc "
    "    if budget <= 0 then "
    "      if least > 1 then return no end "
    "      no[3] = 'spend' return no end "
    "    local w = tonumber(ARGV[8]) "
    "    local fit = 0 "
    "    if w > 0 then "
    "      fit = math.floor(budget / (4 * (redis.call('ZCARD', lk) + 1)) "
    "                       / w) end "
    "    if fit >= want then n = want "
    "    elseif fit >= tonumber(ARGV[13]) then n = fit "
    "    elseif least > 1 then return no "
    "    else n = 1 end "
    "    lc = n * w "
    "  else "
    "    local fit = math.floor(left / (4 * (redis.call('ZCARD', lk) + 1))) "
    "    if fit < want then "
    "      if fit >= tonumber(ARGV[13]) then n = fit "
    "      elseif least > 1 then return no "
    "      else n = 1 end "
    "    end "
    "  end "
    "end "
    NGX_HTTP_AIHUB_LIMIT_GLOBAL_LUA
    "local tick = '' "
    "if rpm > 0 then tick = ':' .. rpm end "
    "redis.call('HSET', pk, '" AIHUB_CF_LEASED_CALLS "', held + n, '"
        AIHUB_CF_LEASED_COST "', heldc + lc, '"
        AIHUB_CF_LEASE "' .. ARGV[6], n .. ':' .. lc .. tick) "
    "if used == 0 then redis.call('EXPIRE', pk, ARGV[4]) end "
    "local due = lnow + tonumber(ARGV[7]) "
    "local life = due "
    "if life > tonumber(ARGV[12]) then life = tonumber(ARGV[12]) end "
    "if life <= lnow then life = lnow + 1 end "
    "redis.call('ZADD', lk, due, ARGV[6]) "
    "if held == 0 then redis.call('EXPIRE', lk, ARGV[4]) end "
    "redis.call('ZADD', KEYS[4], 'LT', due, ARGV[9]) "
    "return {1, used, 'ok', remaining, 0, reset, n, life - lnow, lc}";


/*
 * The settles of a batch of one worker process, applied once.  KEYS[1] the
 * process's batch key (the sequence number of its last batch applied),
 * KEYS[2] the epoch marker
 * ARGV: the batch's sequence number, the Redis prefix, ttl seconds, the
 * process's floor (the lowest number of its batches not yet known
 * applied: what may come first when Redis remembers none, or remembers
 * one the process knows it lost), then one record of 11 per lease
 * (its settles summed by the module, ngx_http_aihub_settle.c):
 * "<account>:<YYYYMMDD>", lease id, calls released, cost released,
 * successes, prompt, completion, total, cost, overage (the cost of the
 * successes beyond the included calls), and the unused tokens of the
 * global rate limit it returns, as time in µs: the account's limit
 * (RK_RATE) goes back by as much, if the lease still holds as many (a
 * lease reclaimed at its expiry gave its tokens back then).
 * The batch's usage events do not pass through here: the module XADDs them
 * just before, in the same transaction (ngx_http_aihub_batch.c).  Every
 * byte handed to a script becomes a Lua string that Redis hashes byte by
 * byte, which cost more than all the rest of a batch.
 * Each period is read once and written once: its sums, and what each lease
 * of the batch gives back (a lease holding nothing more is deleted).  A
 * success whose lease is gone (reclaimed at its expiry, or lost with
 * Redis's data) still counts its call.  A batch already applied (a resend
 * after a lost reply) does nothing: a process's batches are applied in the
 * order of their numbers, so one key per process remembers them all:
 * a batch applies only right after the one before it (or at the
 * process's floor), and the error "GAP" refuses one that overtook an
 * earlier batch Redis did not run (a transaction aborted while the next
 * went through, as when Redis is at its maxmemory): the module sends both
 * again, in order.  Without the epoch marker (Redis lost
 * its data) nothing is applied: the error "WIPED" makes the module send
 * the batch again later.  The first write is the SET of the batch key, a
 * command Redis refuses at its maxmemory: a script it refuses there
 * ("OOM") has written nothing, and one past it may not be stopped.
 * Returns 1, or 0 for a batch applied before.
 */

static const char  ngx_http_aihub_apply_script[] =
    "if redis.call('EXISTS', KEYS[2]) == 0 then "
    "  return redis.error_reply('WIPED redis has no epoch marker: waiting "
        "for aihub-worker to restore it') end "
    "local seq = tonumber(ARGV[1]) "
    "local last = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "if seq <= last then return 0 end "
    "if seq ~= math.max(last + 1, tonumber(ARGV[4])) then "
    "  return redis.error_reply('GAP batch ' .. seq .. ' before ' .. "
    "                           last + 1 .. ' was applied') end "
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', 86400) "
    "local pre, ttl = ARGV[2], ARGV[3] "
    "local per, order, rate = {}, {}, {} "
    "for i = 5, #ARGV - 10, 11 do "
    "  local m, id = ARGV[i], ARGV[i + 1] "
    "  local p = per[m] "
    "  if not p then "
    "    p = {s = {0, 0, 0, 0, 0, 0, 0, 0}, l = {}, ids = {}} "
    "    per[m] = p order[#order + 1] = m "
    "  end "
    "  local l = p.l[id] "
    "  if not l then l = {0, 0, 0, 0} p.l[id] = l p.ids[#p.ids + 1] = id end "
    "  for j = 1, 3 do l[j] = l[j] + tonumber(ARGV[i + 1 + j]) end "
    "  l[4] = l[4] + tonumber(ARGV[i + 10]) "
    "  for j = 4, 8 do p.s[j] = p.s[j] + tonumber(ARGV[i + 1 + j]) end "
    "end "
    "local names = {'" AIHUB_CF_CALLS "', '" AIHUB_CF_LEASED_CALLS "', '"
        AIHUB_CF_LEASED_COST "', '" AIHUB_CF_PROMPT "', '"
        AIHUB_CF_COMPLETION "', '" AIHUB_CF_TOTAL "', '" AIHUB_CF_COST "', '"
        AIHUB_CF_OVERAGE "'} "
    "for _, m in ipairs(order) do "
    "  local p, pk = per[m], pre .. '" AIHUB_RK_PERIOD "' .. m "
    "  local f = {unpack(names)} "
    "  for _, id in ipairs(p.ids) do f[#f + 1] = '" AIHUB_CF_LEASE "' .. id "
    "  end "
    "  local old = redis.call('HMGET', pk, unpack(f)) "
    "  local set, gone, fresh = {}, {}, true "
    "  for j = 1, 8 do if old[j] then fresh = false end end "
    "  for i, id in ipairs(p.ids) do "
    "    local l, v = p.l[id], old[8 + i] "
    "    p.s[1] = p.s[1] + l[3] "
    "    if v then "
    "      local c, oc, t = string.match(v, '^(%d+):(%d+)(.*)$') "
    "      c, oc = tonumber(c), tonumber(oc) "
    "      local rc, rcost = math.min(l[1], c), math.min(l[2], oc) "
    "      p.s[2] = p.s[2] - rc p.s[3] = p.s[3] - rcost "
    "      local rpm = tonumber(string.match(t, '^:(%d+)$') or '0') "
    "      local a = string.match(m, '^(%d+):') "
    "      if a and l[4] > 0 and rpm > 0 then "
    "        rate[a] = (rate[a] or 0) + math.min(l[4], c * 6e7 / rpm) "
    "      end "
    "      if c - rc <= 0 then gone[#gone + 1] = id "
    "      else set[#set + 1] = f[8 + i] "
    "        set[#set + 1] = (c - rc) .. ':' .. (oc - rcost) .. t end "
    "    end "
    "  end "
    "  for j = 1, 8 do "
    "    if p.s[j] ~= 0 then "
    "      set[#set + 1] = names[j] "
    "      set[#set + 1] = tostring(tonumber(old[j] or '0') + p.s[j]) "
    "    end "
    "  end "
    "  if #set > 0 then redis.call('HSET', pk, unpack(set)) end "
    "  if #gone > 0 then "
    "    local g = {} "
    "    for i, id in ipairs(gone) do g[i] = '" AIHUB_CF_LEASE "' .. id end "
    "    redis.call('HDEL', pk, unpack(g)) "
    "    redis.call('ZREM', pre .. '" AIHUB_RK_LEASES "' .. m, unpack(gone)) "
    "  end "
    "  if fresh then redis.call('EXPIRE', pk, ttl) end "
    "end "
    "for a, x in pairs(rate) do "
    "  local rk = pre .. '" AIHUB_RK_RATE "' .. a "
    "  local tat = redis.call('GET', rk) "
    "  if tat then "
    "    redis.call('SET', rk, tostring(tonumber(tat) - x / 1000), 'KEEPTTL') "
    "  end "
    "end "
    "return 1";


/*
 * A key record: KEYS[1] the record, KEYS[2] the epoch marker.  Returns
 * its fields (none: no such key), or 0 when there is none because Redis
 * lost its data (no marker): that is not an unknown key.
 */

static const char  ngx_http_aihub_lookup_script[] =
    "local h = redis.call('HGETALL', KEYS[1]) "
    "if #h == 0 and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end "
    "return h";


/*
 * The sweep: KEYS[1] the periods due; ARGV: the Redis prefix.
 * Reclaims the expired leases of up to 100 due periods (their keys are
 * named from the prefix: one Redis, no cluster), and files each period
 * again under its next expiry, or drops it when it has no lease left.
 * Returns the number of periods swept.
 */

static const char  ngx_http_aihub_sweep_script[] =
    "local lt = redis.call('TIME') "
    "local lnow = lt[1] * 1000 + math.floor(lt[2] / 1000) "
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', lnow, "
    "                       'LIMIT', 0, 100) "
    "for _, m in ipairs(due) do "
    "  local pk = ARGV[1] .. '" AIHUB_RK_PERIOD "' .. m "
    "  local lk = ARGV[1] .. '" AIHUB_RK_LEASES "' .. m "
    "  local rk = ARGV[1] .. '" AIHUB_RK_RATE "' "
    "             .. (string.match(m, '^(%d+):') or '') "
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
    { ngx_http_aihub_grant_script,
      sizeof(ngx_http_aihub_grant_script) - 1, "" },
    { ngx_http_aihub_apply_script,
      sizeof(ngx_http_aihub_apply_script) - 1, "" },
    { ngx_http_aihub_sweep_script,
      sizeof(ngx_http_aihub_sweep_script) - 1, "" },
    { ngx_http_aihub_lookup_script,
      sizeof(ngx_http_aihub_lookup_script) - 1, "" },
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

        if (ngx_http_aihub_redis_send(ngx_http_aihub_scripts_loaded,
                                      &ngx_http_aihub_scripts[i],
                                      3, argv, argvlen)
            == NGX_OK)
        {
            ngx_http_aihub_scripts_loading++;
        }
    }
}


static void
ngx_http_aihub_scripts_loaded(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply               *rep = reply;
    ngx_http_aihub_script_t  *script = privdata;

    /* a reply, or NULL: the connection went away with it */
    ngx_http_aihub_scripts_loading--;

    if (rep == NULL) {
        return;
    }

    if (rep->type == REDIS_REPLY_ERROR
        && ngx_strncmp(rep->str, "LOADING", 7) == 0)
    {
        /* a Redis still reading its data after a restart */
        ngx_http_aihub_redis_not_ready(rep->str);
        return;
    }

    if (rep->type == REDIS_REPLY_ERROR
        && ngx_strncmp(rep->str, "NOAUTH", 6) == 0)
    {
        /* said once, by the connection, with what is missing */
        ngx_http_aihub_redis_no_credentials(rep->str);
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


/*
 * NOSCRIPT: someone flushed the scripts (SCRIPT FLUSH), and the script did
 * not run; they are loaded again, unless loads are on their way already:
 * Redis runs a connection's commands in order, so an EVALSHA sent after
 * this one finds them.  Returns 1 for NOSCRIPT.
 */

ngx_uint_t
ngx_http_aihub_scripts_check(redisReply *reply)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR
        || ngx_strncmp(reply->str, "NOSCRIPT", 8) != 0)
    {
        return 0;
    }

    if (ngx_http_aihub_scripts_loading == 0) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "aihub: redis lost the quota scripts, loading them "
                      "again");
        ngx_http_aihub_scripts_load();
    }

    return 1;
}
