/*
 * ngx_http_aihub_access.c: the access phase handler, the step machine and
 * the verdict.
 */

#ifndef NGX_HTTP_AIHUB_ACCESS_H
#define NGX_HTTP_AIHUB_ACCESS_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_access_handler(ngx_http_request_t *r);


#endif /* NGX_HTTP_AIHUB_ACCESS_H */
