/*
 * ngx_http_aihub_scan.c: the provider's answer read as it passes to the
 * client: usage from a JSON answer or an SSE stream, and the usage chunk
 * the gateway asked for on the client's behalf taken out again.
 */

#ifndef NGX_HTTP_AIHUB_SCAN_H
#define NGX_HTTP_AIHUB_SCAN_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_scan_start(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_scan_stream(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t **out);
ngx_int_t ngx_http_aihub_scan_json(ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t *in);


#endif /* NGX_HTTP_AIHUB_SCAN_H */
