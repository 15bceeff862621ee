/*
 * ngx_http_aihub_redis.c: one asynchronous hiredis connection per worker
 * process (and one in subscribe mode) on nginx's event loop.
 */

#ifndef NGX_HTTP_AIHUB_REDIS_H
#define NGX_HTTP_AIHUB_REDIS_H


#include "ngx_http_aihub_common.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


typedef void (*ngx_http_aihub_redis_handler_pt)(ngx_http_request_t *r,
    redisReply *reply);


/* the calls that wait for the command connection while it is made again */

typedef struct {
    void  (*hold)(void);                        /* it broke: made at once */
    void  (*resume)(redisAsyncContext *ac);     /* made, scripts sent */
    void  (*fail)(void);                        /* not made, or exiting */
} ngx_http_aihub_redis_waiters_t;


/* the "aihub_redis" directive */
char *ngx_http_aihub_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

ngx_int_t ngx_http_aihub_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
void ngx_http_aihub_redis_exit_process(void);
void ngx_http_aihub_redis_on_connect(void (*handler)(redisAsyncContext *ac));
void ngx_http_aihub_redis_on_waiters(
    const ngx_http_aihub_redis_waiters_t *waiters);
void ngx_http_aihub_redis_sub_reset(void);
void ngx_http_aihub_redis_sub_on_connect(
    void (*handler)(redisAsyncContext *ac));
void ngx_http_aihub_redis_sub_on_lost(void (*handler)(void));
ngx_int_t ngx_http_aihub_redis_ready(void);
ngx_int_t ngx_http_aihub_redis_sub_ready(void);
void ngx_http_aihub_redis_not_ready(const char *why);
void ngx_http_aihub_redis_no_credentials(const char *err);
ngx_int_t ngx_http_aihub_redis_call(ngx_http_request_t *r,
    ngx_http_aihub_redis_wait_t *wait, ngx_http_aihub_redis_handler_pt handler,
    ngx_uint_t again, int argc, const char **argv, const size_t *argvlen);
redisAsyncContext *ngx_http_aihub_redis_context(void);
void ngx_http_aihub_redis_sent(void);
void ngx_http_aihub_redis_replied(ngx_uint_t reply);
ngx_int_t ngx_http_aihub_redis_send(redisCallbackFn *fn, void *data,
    int argc, const char **argv, const size_t *argvlen);


#endif /* NGX_HTTP_AIHUB_REDIS_H */
