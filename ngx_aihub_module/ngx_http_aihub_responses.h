/*
 * ngx_http_aihub_responses.c: the Responses API over a provider that
 * speaks only chat completions, translated both ways.
 */

#ifndef NGX_HTTP_AIHUB_RESPONSES_H
#define NGX_HTTP_AIHUB_RESPONSES_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_responses_request(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_responses_answer(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t stream);
ngx_int_t ngx_http_aihub_responses_body(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t **out);


#endif /* NGX_HTTP_AIHUB_RESPONSES_H */
