/*
 * ngx_http_aihub_answer.c: OpenAI-shaped errors, the deny verdict, whole
 * answers from one buffer, response headers.
 */

#ifndef NGX_HTTP_AIHUB_ANSWER_H
#define NGX_HTTP_AIHUB_ANSWER_H


#include "ngx_http_aihub_common.h"


void ngx_http_aihub_deny(ngx_http_aihub_ctx_t *ctx, ngx_uint_t status,
    const char *type, const char *code, const char *message);
ngx_int_t ngx_http_aihub_send_buf(ngx_http_request_t *r, ngx_uint_t status,
    const char *content_type, ngx_buf_t *b);
ngx_int_t ngx_http_aihub_finalize_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *code,
    const char *message);
ngx_int_t ngx_http_aihub_add_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len);

u_char *ngx_http_aihub_safe_text(ngx_pool_t *pool, u_char *src, size_t len,
    size_t max);

ngx_int_t ngx_http_aihub_no_retry(ngx_http_request_t *r);
ngx_int_t ngx_http_aihub_retry_after(ngx_http_request_t *r, ngx_int_t sec);
ngx_int_t ngx_http_aihub_quota_headers(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);

void ngx_http_aihub_nginx_error_words(ngx_uint_t status, const char **type,
    const char **code, const char **msg);


#endif /* NGX_HTTP_AIHUB_ANSWER_H */
