/*
 * ngx_http_aihub_forward.c: what crosses between the client and the
 * provider: the request headers the provider gets (an allow-list and its
 * credential, handed to the proxy module only), the answer headers the
 * client gets (an allow-list), and the client's credentials masked in
 * the request's own headers.
 */

#ifndef NGX_HTTP_AIHUB_FORWARD_H
#define NGX_HTTP_AIHUB_FORWARD_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_forward_prepare(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_mask_credentials(ngx_http_request_t *r);
void ngx_http_aihub_forward_answer_headers(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);


#endif /* NGX_HTTP_AIHUB_FORWARD_H */
