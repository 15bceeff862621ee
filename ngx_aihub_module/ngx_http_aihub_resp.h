/*
 * ngx_http_aihub_resp.c: commands formatted in RESP for hiredis, and
 * array replies read as the engine's byte strings.
 */

#ifndef NGX_HTTP_AIHUB_RESP_H
#define NGX_HTTP_AIHUB_RESP_H


#include "ngx_http_aihub_common.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "aihub_record.h"


/* a buffer a worker process keeps for its commands, grown, never freed */

typedef struct {
    u_char                       *data;
    size_t                        size;
} ngx_http_aihub_kept_t;


u_char *ngx_http_aihub_kept(ngx_http_aihub_kept_t *k, size_t len);
u_char *ngx_http_aihub_resp_format(int argc, const char **argv,
    const size_t *argvlen, size_t *lenp);
int ngx_http_aihub_redis_command(redisAsyncContext *ac, redisCallbackFn *fn,
    void *data, int argc, const char **argv, const size_t *argvlen);
aihub_rstr_t *ngx_http_aihub_reply_strings(ngx_pool_t *pool,
    redisReply *reply);


#endif /* NGX_HTTP_AIHUB_RESP_H */
