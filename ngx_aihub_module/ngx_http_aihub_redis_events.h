/*
 * hiredis's event adapter for nginx's event loop
 * (ngx_http_aihub_redis_events.c).
 */

#ifndef NGX_HTTP_AIHUB_REDIS_EVENTS_H
#define NGX_HTTP_AIHUB_REDIS_EVENTS_H

#include "ngx_http_aihub_common.h"

#include <hiredis/async.h>


void ngx_http_aihub_redis_attach(redisAsyncContext *ac, ngx_connection_t *c);


#endif /* NGX_HTTP_AIHUB_REDIS_EVENTS_H */
