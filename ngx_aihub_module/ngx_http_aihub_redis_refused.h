/*
 * ngx_http_aihub_redis_refused.c: Redis refusing writes (at its
 * maxmemory, or a transaction it did not run), told once a spell; what a
 * call meets alone when Redis fails it, told every 10 s at most.
 */

#ifndef NGX_HTTP_AIHUB_REDIS_REFUSED_H
#define NGX_HTTP_AIHUB_REDIS_REFUSED_H


#include "ngx_http_aihub_common.h"

#include <hiredis/hiredis.h>


#define NGX_HTTP_AIHUB_SAY_EVERY  10000


/* one line's last writing, for ngx_http_aihub_redis_say() */

typedef struct {
    ngx_msec_t                    at;
    ngx_uint_t                    more;
    ngx_uint_t                    said;
} ngx_http_aihub_redis_said_t;


ngx_uint_t ngx_http_aihub_redis_for_now(redisReply *rep);
void ngx_http_aihub_redis_refused(ngx_log_t *log, const char *what,
    const char *err);
void ngx_http_aihub_redis_accepted(ngx_log_t *log);
ngx_uint_t ngx_http_aihub_redis_say(ngx_http_aihub_redis_said_t *said,
    ngx_uint_t *more);


#endif /* NGX_HTTP_AIHUB_REDIS_REFUSED_H */
