/*
 * ngx_http_aihub_redis_call.c: the Redis commands of requests, each with
 * its reply timeout, and held while the connection is made again.
 */

#ifndef NGX_HTTP_AIHUB_REDIS_CALL_H
#define NGX_HTTP_AIHUB_REDIS_CALL_H


#include "ngx_http_aihub_common.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


/* registers the held calls with the command connection */
void ngx_http_aihub_redis_call_init_process(void);

#endif /* NGX_HTTP_AIHUB_REDIS_CALL_H */
