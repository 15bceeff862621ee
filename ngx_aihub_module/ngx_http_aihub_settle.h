/*
 * ngx_http_aihub_settle.c: a batch's settle records summed per lease.
 */

#ifndef NGX_HTTP_AIHUB_SETTLE_H
#define NGX_HTTP_AIHUB_SETTLE_H


#include "ngx_http_aihub_common.h"

#include "aihub_period.h"
#include "aihub_usage_event.h"


/* a settle record's entry in the buffer (its argc), and a sum's arguments */
#define NGX_HTTP_AIHUB_SETTLE_RECORD  9
#define NGX_HTTP_AIHUB_SETTLE_SUM     11


/*
 * A settle record as the buffer keeps it, its numbers as numbers: they are
 * summed per lease when the batch leaves and written out once per sum.
 */

typedef struct {
    u_char                        m[NGX_INT64_LEN + 1 + AIHUB_PERIOD_ID_LEN];
    size_t                        m_len;        /* "<account>:<day>" */
    u_char                        id[AIHUB_EVENT_ID_LEN];   /* the lease */
    u_char                        kind;
    int64_t                       v[6];
} ngx_http_aihub_settle_rec_t;


typedef struct {
    ngx_str_t                     m;            /* "<account>:<day>" */
    ngx_str_t                     id;           /* the lease */
    int64_t                       v[9];
    u_char                        nums[9][NGX_INT64_LEN + 1];
} ngx_http_aihub_settle_sum_t;


ngx_uint_t ngx_http_aihub_settle_add(ngx_http_aihub_settle_sum_t *sums,
    ngx_uint_t n, ngx_http_aihub_settle_rec_t *rec);
void ngx_http_aihub_settle_args(ngx_http_aihub_settle_sum_t *s,
    const char **argv, size_t *argvlen);


#endif /* NGX_HTTP_AIHUB_SETTLE_H */
