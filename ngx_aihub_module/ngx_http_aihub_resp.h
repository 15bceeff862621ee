/*
 * ngx_http_aihub_resp.c: commands formatted in RESP for hiredis.
 */

#ifndef NGX_HTTP_AIHUB_RESP_H
#define NGX_HTTP_AIHUB_RESP_H


#include "ngx_http_aihub_common.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


int ngx_http_aihub_redis_command(redisAsyncContext *ac, redisCallbackFn *fn,
    void *data, int argc, const char **argv, const size_t *argvlen);


#endif /* NGX_HTTP_AIHUB_RESP_H */
