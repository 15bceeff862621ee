/*
 * ngx_http_aihub_redis_auth.c: Redis credentials, "aihub_redis ADDRESS
 * [user=NAME] [password_env=VAR]", sent first on every connection.
 */

#ifndef NGX_HTTP_AIHUB_REDIS_AUTH_H
#define NGX_HTTP_AIHUB_REDIS_AUTH_H


#include "ngx_http_aihub_common.h"

#include <hiredis/async.h>


ngx_int_t ngx_http_aihub_redis_auth_args(ngx_conf_t *cf,
    ngx_http_aihub_main_conf_t *amcf);
ngx_int_t ngx_http_aihub_redis_auth_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
ngx_int_t ngx_http_aihub_redis_auth_send(redisAsyncContext *ac,
    redisCallbackFn *done, void *data);
ngx_uint_t ngx_http_aihub_redis_auth_refused(redisReply *rep,
    const char *name);
ngx_uint_t ngx_http_aihub_redis_auth_missing(const char *err,
    const char *name);


#endif /* NGX_HTTP_AIHUB_REDIS_AUTH_H */
