/*
 * ngx_http_aihub_models.c: the model catalog, one copy per worker process,
 * loaded from Redis.
 */

#ifndef NGX_HTTP_AIHUB_MODELS_H
#define NGX_HTTP_AIHUB_MODELS_H


#include "ngx_http_aihub_common.h"

#include <hiredis/async.h>


ngx_int_t ngx_http_aihub_models_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
void ngx_http_aihub_models_load(redisAsyncContext *ac);
ngx_http_aihub_model_t *ngx_http_aihub_model_find(ngx_str_t *id);
ngx_uint_t ngx_http_aihub_model_allowed(ngx_http_aihub_key_t *key,
    ngx_http_aihub_model_t *m);
ngx_uint_t ngx_http_aihub_model_servable(ngx_http_aihub_main_conf_t *amcf,
    ngx_http_aihub_model_t *m);
ngx_array_t *ngx_http_aihub_models_all(void);
ngx_uint_t ngx_http_aihub_models_loaded(void);
ngx_int_t ngx_http_aihub_copy_model_strings(ngx_pool_t *pool,
    ngx_http_aihub_model_t *m);


#endif /* NGX_HTTP_AIHUB_MODELS_H */
