/*
 * ngx_http_aihub_variables.c: variables for proxy_pass and access logs.
 */

#ifndef NGX_HTTP_AIHUB_VARIABLES_H
#define NGX_HTTP_AIHUB_VARIABLES_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_add_variables(ngx_conf_t *cf);


#endif /* NGX_HTTP_AIHUB_VARIABLES_H */
