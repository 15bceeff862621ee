/*
 * ngx_http_aihub_model.c: the MODEL step (model access, max_tokens).
 */

#ifndef NGX_HTTP_AIHUB_MODEL_H
#define NGX_HTTP_AIHUB_MODEL_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_model_step(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_MODEL_H */
