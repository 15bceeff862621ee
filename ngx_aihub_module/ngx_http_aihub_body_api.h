/*
 * ngx_http_aihub_body_api.c: the request bodies of the embeddings and
 * Responses endpoints.
 */

#ifndef NGX_HTTP_AIHUB_BODY_API_H
#define NGX_HTTP_AIHUB_BODY_API_H


#include "ngx_http_aihub_common.h"

#include <cjson/cJSON.h>


ngx_int_t ngx_http_aihub_body_embeddings(ngx_http_aihub_ctx_t *ctx,
    cJSON *root);
ngx_int_t ngx_http_aihub_body_responses(ngx_http_aihub_ctx_t *ctx,
    cJSON *root);
int64_t ngx_http_aihub_body_chars(const char *s);


#endif /* NGX_HTTP_AIHUB_BODY_API_H */
