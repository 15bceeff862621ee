/*
 * ngx_http_aihub_limit.c: every per-key rate limit (the limit step, the
 * charge and refund, the global limit's part of the quota script, the
 * x-ratelimit-* headers).
 */

#ifndef NGX_HTTP_AIHUB_LIMIT_H
#define NGX_HTTP_AIHUB_LIMIT_H


#include "ngx_http_aihub_common.h"


/*
 * The global limit in Lua, a GCRA over one minute, run inside the quota
 * script (atomic with the reservation).  It reads the local "rpm" (0: no
 * limit) and KEYS[2], the limit's state; it sets "remaining" and "reset",
 * or refuses with {0, calls, 'rate', 0, retry_ms, reset_ms}.
 */

#define NGX_HTTP_AIHUB_LIMIT_GLOBAL_LUA                                      \
    "if rpm > 0 then "                                                       \
    "  local t = redis.call('TIME') "                                        \
    "  local now = t[1] * 1000 + math.floor(t[2] / 1000) "                   \
    "  local interval = 60000 / rpm "                                        \
    "  local tat = tonumber(redis.call('GET', KEYS[2]) or '0') "             \
    "  if tat < now then tat = now end "                                     \
    "  if tat + interval - now > 60000 then "                                \
    "    return {0, calls, 'rate', 0, "                                      \
    "            math.ceil(tat + interval - now - 60000), "                  \
    "            math.ceil(tat - now)} end "                                 \
    "  tat = tat + interval "                                                \
    "  redis.call('SET', KEYS[2], tostring(tat), 'PX', 60000) "              \
    "  remaining = math.floor((60000 - (tat - now)) / interval) "            \
    "  reset = math.ceil(tat - now) "                                        \
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
