/*
 * The per-worker usage buffer (ngx_http_aihub_usage.c fills it,
 * ngx_http_aihub_usage_batches.c empties it, in batches).
 */

#ifndef NGX_HTTP_AIHUB_USAGE_BUFFER_H
#define NGX_HTTP_AIHUB_USAGE_BUFFER_H


#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_batch.h"


typedef struct {
    ngx_queue_t                   pending;      /* in no batch yet */
    ngx_queue_t                   sealed;       /* batches not sent */
    ngx_queue_t                   flying;       /* sent, not confirmed */
    ngx_uint_t                    nloose;       /* entries in pending */
    ngx_uint_t                    npending;     /* entries not sent */
    ngx_uint_t                    ninflight;    /* sent, not confirmed */
    ngx_uint_t                    events;       /* held, not confirmed */
    ngx_uint_t                    records;      /* held, not confirmed */
    ngx_uint_t                    batches;      /* batches in flight */
    ngx_uint_t                    wiped;        /* Redis lost its data */
    ngx_msec_t                    wiped_wait;   /* ... batches wait that */
    ngx_msec_t                    wiped_next;   /* ... until then */
    ngx_uint_t                    held;         /* queued, not sent yet */
    ngx_msec_t                    last_sent;
    uint64_t                      seq;          /* the last batch's */
    ngx_http_aihub_batch_keys_t   keys;
    ngx_event_t                   gap;          /* the next batch */
    ngx_uint_t                    limit;        /* events: no new call */
    ngx_uint_t                    hard;         /* events: dropped */
    ngx_uint_t                    full;         /* said it is full */
    ngx_uint_t                    emitted;
    ngx_uint_t                    dropped;
    ngx_uint_t                    failed;
    ngx_str_t                     node;
    ngx_event_t                   flush;        /* shutdown: keeps the */
    ngx_msec_t                    flush_until;  /* worker alive a while */
    ngx_msec_t                    flush_max;    /* aihub_exit_flush_timeout */
    ngx_log_t                    *log;
} ngx_http_aihub_event_buffer_t;


extern ngx_http_aihub_event_buffer_t  ngx_http_aihub_usage;


void ngx_http_aihub_usage_send(void);
void ngx_http_aihub_usage_arm(void);
void ngx_http_aihub_usage_free(ngx_http_aihub_batch_t *b);
void ngx_http_aihub_usage_gap_handler(ngx_event_t *ev);
void ngx_http_aihub_usage_flush_handler(ngx_event_t *ev);


#endif /* NGX_HTTP_AIHUB_USAGE_BUFFER_H */
