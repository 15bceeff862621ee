/*
 * ngx_http_aihub_subscribe.c: invalidations from Redis pub/sub.
 */

#ifndef NGX_HTTP_AIHUB_SUBSCRIBE_H
#define NGX_HTTP_AIHUB_SUBSCRIBE_H


#include "ngx_http_aihub_common.h"


void ngx_http_aihub_subscribe_init_process(ngx_http_aihub_main_conf_t *amcf);


#endif /* NGX_HTTP_AIHUB_SUBSCRIBE_H */
