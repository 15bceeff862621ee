/*
 * ngx_http_aihub_usage.c: the usage event, its per-worker buffer and its
 * XADD to the usage stream; quota settles through the same buffer.
 */

#ifndef NGX_HTTP_AIHUB_USAGE_H
#define NGX_HTTP_AIHUB_USAGE_H


#include "ngx_http_aihub_common.h"
#include "aihub_usage_event.h"
#include "ngx_http_aihub_settle.h"


ngx_int_t ngx_http_aihub_usage_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
void ngx_http_aihub_usage_exit_process(void);
void ngx_http_aihub_usage_flush(void);
ngx_uint_t ngx_http_aihub_usage_room(ngx_uint_t kept);
ngx_int_t ngx_http_aihub_usage_emit(ngx_log_t *log, aihub_usage_event_t *e,
    ngx_uint_t kept);
ngx_uint_t ngx_http_aihub_usage_wiped(void);
ngx_uint_t ngx_http_aihub_usage_full(ngx_log_t *log);
void ngx_http_aihub_usage_hold(void);
void ngx_http_aihub_usage_release(void);
ngx_int_t ngx_http_aihub_usage_record(ngx_log_t *log,
    const ngx_http_aihub_settle_rec_t *rec);


#endif /* NGX_HTTP_AIHUB_USAGE_H */
