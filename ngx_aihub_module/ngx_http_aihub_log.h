/*
 * ngx_http_aihub_log.c: the log phase handler that settles a call.
 */

#ifndef NGX_HTTP_AIHUB_LOG_H
#define NGX_HTTP_AIHUB_LOG_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_log_handler(ngx_http_request_t *r);


#endif /* NGX_HTTP_AIHUB_LOG_H */
