/*
 * ngx_http_aihub_refusal.c: a provider's 400-class answer (or 429, or a 200
 * whose body is an error) judged, the developer's mistake or the
 * operator's problem.
 */

#ifndef NGX_HTTP_AIHUB_REFUSAL_H
#define NGX_HTTP_AIHUB_REFUSAL_H


#include "ngx_http_aihub_common.h"


#define NGX_HTTP_AIHUB_REFUSAL_MAX   8192    /* bytes of a 4xx body read */


ngx_int_t ngx_http_aihub_refusal_message(ngx_http_request_t *r,
    ngx_buf_t *held, u_char **message);
ngx_uint_t ngx_http_aihub_refusal_no_credit(ngx_buf_t *held);
ngx_uint_t ngx_http_aihub_refusal_code(ngx_buf_t *held);


#endif /* NGX_HTTP_AIHUB_REFUSAL_H */
