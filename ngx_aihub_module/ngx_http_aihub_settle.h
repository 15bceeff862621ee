/*
 * ngx_http_aihub_settle.c: a batch's settle records summed per lease.
 */

#ifndef NGX_HTTP_AIHUB_SETTLE_H
#define NGX_HTTP_AIHUB_SETTLE_H


#include "ngx_http_aihub_common.h"


/* the arguments of one settle record in the buffer, and of a sum sent */
#define NGX_HTTP_AIHUB_SETTLE_RECORD  9
#define NGX_HTTP_AIHUB_SETTLE_SUM     11


typedef struct {
    ngx_str_t                     m;            /* "<account>:<day>" */
    ngx_str_t                     id;           /* the lease */
    int64_t                       v[9];
    u_char                        nums[9][NGX_INT64_LEN + 1];
} ngx_http_aihub_settle_sum_t;


ngx_uint_t ngx_http_aihub_settle_add(ngx_http_aihub_settle_sum_t *sums,
    ngx_uint_t n, const char **argv, const size_t *argvlen);
void ngx_http_aihub_settle_args(ngx_http_aihub_settle_sum_t *s,
    const char **argv, size_t *argvlen);


#endif /* NGX_HTTP_AIHUB_SETTLE_H */
