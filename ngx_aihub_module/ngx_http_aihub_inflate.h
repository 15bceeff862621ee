/*
 * ngx_http_aihub_inflate.c: a provider's answer in gzip or deflate,
 * inflated as it passes, so that its usage is read and the client gets it
 * plain; and how deflate data tells zlib's format from raw (request bodies
 * too, ngx_http_aihub_body_decode.c).
 */

#ifndef NGX_HTTP_AIHUB_INFLATE_H
#define NGX_HTTP_AIHUB_INFLATE_H


#include "ngx_http_aihub_common.h"


/*
 * 1 if the two bytes at p open zlib's format (RFC 1950: deflate's method,
 * a check that makes them a multiple of 31); data labelled deflate without
 * them is raw deflate, as some servers and clients send it
 */
static ngx_inline ngx_uint_t
ngx_http_aihub_inflate_zlib_head(const u_char *p)
{
    return (p[0] & 0x0f) == 8 && ((p[0] << 8) | p[1]) % 31 == 0;
}


ngx_int_t ngx_http_aihub_inflate_start(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t **stp);
ngx_int_t ngx_http_aihub_inflate_body(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t *st, ngx_chain_t *in, ngx_chain_t **out);
void ngx_http_aihub_inflate_sent(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t *st, ngx_chain_t *out);


#endif /* NGX_HTTP_AIHUB_INFLATE_H */
