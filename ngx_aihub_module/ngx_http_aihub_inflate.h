/*
 * ngx_http_aihub_inflate.c: a provider's answer in gzip or deflate,
 * inflated as it passes, so that its usage is read and the client gets it
 * plain.
 */

#ifndef NGX_HTTP_AIHUB_INFLATE_H
#define NGX_HTTP_AIHUB_INFLATE_H


#include "ngx_http_aihub_common.h"


ngx_int_t ngx_http_aihub_inflate_start(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t **stp);
ngx_int_t ngx_http_aihub_inflate_body(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t *st, ngx_chain_t *in, ngx_chain_t **out);
void ngx_http_aihub_inflate_sent(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t *st, ngx_chain_t *out);


#endif /* NGX_HTTP_AIHUB_INFLATE_H */
