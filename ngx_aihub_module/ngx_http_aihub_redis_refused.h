/*
 * ngx_http_aihub_redis_refused.c: Redis refusing writes (at its
 * maxmemory, or a transaction it did not run), told once a spell.
 */

#ifndef NGX_HTTP_AIHUB_REDIS_REFUSED_H
#define NGX_HTTP_AIHUB_REDIS_REFUSED_H


#include "ngx_http_aihub_common.h"

#include <hiredis/hiredis.h>


ngx_uint_t ngx_http_aihub_redis_oom(redisReply *rep);
void ngx_http_aihub_redis_refused(ngx_log_t *log, const char *what,
    const char *err);
void ngx_http_aihub_redis_accepted(ngx_log_t *log);


#endif /* NGX_HTTP_AIHUB_REDIS_REFUSED_H */
