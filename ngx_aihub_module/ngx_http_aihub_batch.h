/*
 * ngx_http_aihub_batch.c: what a worker process's usage buffer sends as
 * one batch (ngx_http_aihub_usage.c), on the wire: one transaction of an
 * XADD of its usage events and the apply script with its settles summed
 * per lease.
 */

#ifndef NGX_HTTP_AIHUB_BATCH_H
#define NGX_HTTP_AIHUB_BATCH_H


#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis.h"
#include "aihub_protocol.h"


#define NGX_HTTP_AIHUB_BATCH_MAX       AIHUB_USAGE_EVENTS_MAX  /* events */


/*
 * An entry of the buffer: a usage event (argc 0, data is its JSON), or a
 * settle record (argc NGX_HTTP_AIHUB_SETTLE_RECORD, data holds an
 * ngx_http_aihub_settle_rec_t, read in place: data is aligned as malloc
 * aligns, ngx_http_aihub_batch.c checks it).
 */

typedef struct {
    ngx_queue_t                   queue;
    ngx_uint_t                    argc;
    unsigned                      paired:1; /* the next entry goes with it */
    unsigned                      kept:1;   /* of the entries' free list */
    size_t                        len;
    u_char                        data[1];
} ngx_http_aihub_event_t;


/* a batch: its entries leave the buffer together, under one id */

typedef struct {
    ngx_queue_t                   queue;
    ngx_queue_t                   entries;
    ngx_uint_t                    nentries;
    ngx_uint_t                    nevents;
    uint64_t                      seq;          /* of its process */
    u_char                        why[96];      /* a command Redis did
                                                   not queue: its error */
    unsigned                      streamed:1;   /* events XADDed */
    unsigned                      counted:1;    /* in events_confirmed */
    unsigned                      xadd:1;       /* sent with an XADD */
} ngx_http_aihub_batch_t;


/* the keys a batch names, and its process's floor (the apply script) */

typedef struct {
    ngx_str_t                     stream;       /* "<prefix>usage" */
    ngx_str_t                     batch_key;    /* "<prefix>batch:<process>" */
    ngx_str_t                     epoch_key;
    ngx_str_t                     prefix;
    uint64_t                      floor;        /* the lowest number of
                                                   the batches not done */
} ngx_http_aihub_batch_keys_t;


ngx_int_t ngx_http_aihub_batch_send(ngx_http_aihub_batch_t *b,
    ngx_http_aihub_batch_keys_t *keys, redisCallbackFn *done);
ngx_http_aihub_event_t *ngx_http_aihub_entry_alloc(size_t len,
    ngx_log_t *log);
void ngx_http_aihub_entry_free(ngx_http_aihub_event_t *ev);


#endif /* NGX_HTTP_AIHUB_BATCH_H */
