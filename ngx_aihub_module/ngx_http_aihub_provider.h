/*
 * ngx_http_aihub_provider.c: the providers an operator declares, their
 * credentials, and what a request sent to one looks like.
 */

#ifndef NGX_HTTP_AIHUB_PROVIDER_H
#define NGX_HTTP_AIHUB_PROVIDER_H


#include "ngx_http_aihub_common.h"


char *ngx_http_aihub_provider_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_aihub_provider_resolver_check(ngx_conf_t *cf,
    ngx_http_core_loc_conf_t *clcf);
ngx_int_t ngx_http_aihub_provider_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
ngx_http_aihub_provider_t *ngx_http_aihub_provider_find(
    ngx_http_request_t *r, ngx_http_aihub_model_t *model);
ngx_int_t ngx_http_aihub_provider_select(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_PROVIDER_H */
