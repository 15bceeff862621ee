/*
 * ngx_http_aihub_limit.c: every per-key rate limit (the limit step, the
 * charge and refund, the global limit's part of the quota script, the
 * x-ratelimit-* headers).
 */

#ifndef NGX_HTTP_AIHUB_LIMIT_H
#define NGX_HTTP_AIHUB_LIMIT_H


#include "ngx_http_aihub_common.h"


/*
 * The global limit in Lua, a GCRA over one minute, run inside the grant
 * script (atomic with the lease).  It reads the local "rpm" (0: no
 * limit) and KEYS[2], the limit's state, and takes one token for each
 * call of the lease "n" (a block takes at most a quarter of the free
 * tokens per holder of a lease, "lk"; below the smallest block, ARGV[13],
 * a request gets one call and a refill ahead none); it sets "remaining"
 * and "reset", or refuses with {0, calls, 'rate', 0, retry_ms, reset_ms}.
 * A lease's unused tokens come back through the apply script.
 */

#define NGX_HTTP_AIHUB_LIMIT_GLOBAL_LUA                                      \
    "if rpm > 0 then "                                                       \
    "  local interval = 60000 / rpm "                                        \
    "  local tat = tonumber(redis.call('GET', KEYS[2]) or '0') "             \
    "  if tat < lnow then tat = lnow end "                                   \
    "  local free = math.floor((60000 - (tat - lnow)) / interval) "          \
    "  if free < 1 then "                                                    \
    "    if least > 1 then return no end "                                   \
    "    return {0, calls, 'rate', 0, "                                      \
    "            math.ceil(tat + interval - lnow - 60000), "                 \
    "            math.ceil(tat - lnow)} end "                                \
    "  if n > 1 then "                                                       \
    "    local fit = math.floor(free / (4 * (redis.call('ZCARD', lk) + 1))) "\
    "    if fit < n then "                                                   \
    "      if fit >= tonumber(ARGV[13]) then n = fit "                       \
    "      elseif least > 1 then return no "                                 \
    "      else n = 1 end "                                                  \
    "      if lc > 0 then lc = n * tonumber(ARGV[8]) end "                   \
    "    end "                                                               \
    "  end "                                                                 \
    "  tat = tat + n * interval "                                            \
    "  redis.call('SET', KEYS[2], tostring(tat), 'PX', 60000) "              \
    "  remaining = math.floor((60000 - (tat - lnow)) / interval) "           \
    "  reset = math.ceil(tat - lnow) "                                       \
    "end "


ngx_int_t ngx_http_aihub_limit_step(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
void ngx_http_aihub_limit_refund(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_limit_hold(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
uint64_t ngx_http_aihub_limit_worst_tokens(ngx_http_aihub_ctx_t *ctx);
void ngx_http_aihub_limit_charge(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, uint64_t tokens);
ngx_int_t ngx_http_aihub_limit_global_args(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_str_t *key, uint64_t *rpm);
void ngx_http_aihub_limit_global_passed(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, int64_t remaining, int64_t reset_ms);
void ngx_http_aihub_limit_global_refused(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, int64_t retry_ms, int64_t reset_ms);
ngx_int_t ngx_http_aihub_limit_headers(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_LIMIT_H */
