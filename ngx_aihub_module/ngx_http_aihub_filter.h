/*
 * ngx_http_aihub_filter.c: the header and body filters.
 */

#ifndef NGX_HTTP_AIHUB_FILTER_H
#define NGX_HTTP_AIHUB_FILTER_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_filter_init(ngx_conf_t *cf);


#endif /* NGX_HTTP_AIHUB_FILTER_H */
