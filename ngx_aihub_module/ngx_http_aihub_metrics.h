/*
 * ngx_http_aihub_metrics.c: counters for operators, in the shared zone,
 * served in Prometheus text format.
 */

#ifndef NGX_HTTP_AIHUB_METRICS_H
#define NGX_HTTP_AIHUB_METRICS_H


#include "ngx_http_aihub_common.h"


void ngx_http_aihub_metrics_init_process(ngx_http_aihub_main_conf_t *amcf);
ngx_http_aihub_metrics_t *ngx_http_aihub_metrics(void);
ngx_int_t ngx_http_aihub_metrics_log_handler(ngx_http_request_t *r);
char *ngx_http_aihub_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* NGX_HTTP_AIHUB_METRICS_H */
