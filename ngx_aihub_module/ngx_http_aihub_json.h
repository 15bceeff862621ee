/*
 * ngx_http_aihub_json.c: cJSON's memory in an nginx worker process,
 * taken from a request's pool while its body is parsed.
 */

#ifndef NGX_HTTP_AIHUB_JSON_H
#define NGX_HTTP_AIHUB_JSON_H


#include "ngx_http_aihub_common.h"


void ngx_http_aihub_json_init_process(void);
void ngx_http_aihub_json_pool(ngx_pool_t *pool);


#endif /* NGX_HTTP_AIHUB_JSON_H */
