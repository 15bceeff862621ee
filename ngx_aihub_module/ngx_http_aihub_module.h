/*
 * ngx_http_aihub_module: the common header.  The structures every part of
 * the module shares and the functions one part offers the others.  Each
 * concern lives in its own file:
 *
 *   ngx_http_aihub_module.c     directives, configuration, module hooks
 *   ngx_http_aihub_redis.c      async hiredis on nginx's event loop
 *   ngx_http_aihub_auth.c       the access phase: key -> record -> verdict
 *   ngx_http_aihub_error.c      OpenAI-shaped error answers
 *   ngx_http_aihub_provider.c   provider choice, credential, proxy variables
 *   ngx_http_aihub_filter.c     header/body filters reading usage
 *   ngx_http_aihub_usage.c      the usage event and its per-worker buffer
 */

#ifndef NGX_HTTP_AIHUB_MODULE_H
#define NGX_HTTP_AIHUB_MODULE_H


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "aihub_protocol.h"


#define NGX_HTTP_AIHUB_FAIL_CLOSED    0
#define NGX_HTTP_AIHUB_FAIL_OPEN      1

#define NGX_HTTP_AIHUB_KIND_OPENAI    0
#define NGX_HTTP_AIHUB_KIND_GEMINI    1


typedef struct {
    ngx_str_t                     name;
    ngx_uint_t                    kind;
    ngx_str_t                     url;          /* scheme://host[:port]/base */
    ngx_str_t                     host;         /* Host header for it */
    ngx_str_t                     key_env;
    ngx_str_t                     key_file;
    ngx_str_t                     authorization; /* "Bearer ..." */
} ngx_http_aihub_provider_t;


typedef struct {
    ngx_str_t                     redis_host;   /* IP, or unix socket path */
    ngx_int_t                     redis_port;   /* 0 for a unix socket */
    ngx_str_t                     redis_prefix;
    ngx_msec_t                    redis_timeout;

    ngx_shm_zone_t               *shm_zone;

    ngx_array_t                   providers;    /* ngx_http_aihub_provider_t */
    ngx_str_t                     node;

    ngx_uint_t                    event_buffer; /* events kept while down */

    ngx_flag_t                    used;         /* "aihub on" somewhere */
} ngx_http_aihub_main_conf_t;


typedef struct {
    ngx_flag_t                    enable;
    ngx_uint_t                    failure_mode;
} ngx_http_aihub_loc_conf_t;


/* what a key lookup found */

typedef struct {
    ngx_str_t                     account;
    ngx_str_t                     prefix;
    ngx_str_t                     plan;
    ngx_str_t                     scopes;
    ngx_uint_t                    active;
    time_t                        expires;
} ngx_http_aihub_key_t;


typedef struct {
    int64_t                       prompt;
    int64_t                       completion;
    int64_t                       total;
    unsigned                      found:1;
    unsigned                      estimated:1;
} ngx_http_aihub_tokens_t;


typedef struct ngx_http_aihub_redis_call_s  ngx_http_aihub_redis_call_t;

typedef struct {
    ngx_uint_t                    state;
    ngx_int_t                     rc;           /* verdict once decided */

    u_char                        key_hash[AIHUB_SHA256_HEX_LEN];
    ngx_http_aihub_key_t          key;

    ngx_http_aihub_provider_t    *provider;
    ngx_str_t                     proxy_url;
    ngx_str_t                     model;

    ngx_http_aihub_redis_call_t  *call;         /* in flight, or NULL */

    ngx_msec_t                    start_ms;
    time_t                        start_sec;
    u_char                        event_id[AIHUB_EVENT_ID_LEN];

    ngx_http_aihub_tokens_t       tokens;
    int64_t                       cost_micros;
    ngx_uint_t                    provider_status;
    ngx_buf_t                    *capture;      /* JSON answer, bounded */
    ngx_buf_t                    *replace;      /* our error instead */

    const char                   *err_type;
    const char                   *err_code;
    const char                   *err_message;

    unsigned                      cleanup_added:1;
    unsigned                      streamed:1;
    unsigned                      forwarded:1;  /* reached the provider */
    unsigned                      emitted:1;
    unsigned                      capturing:1;
    unsigned                      capture_overflow:1;
    unsigned                      complete:1;
    unsigned                      failed:1;
    unsigned                      aborted:1;
    unsigned                      replace_sent:1;
} ngx_http_aihub_ctx_t;


#define NGX_HTTP_AIHUB_STATE_NEW       0
#define NGX_HTTP_AIHUB_STATE_LOOKUP    1
#define NGX_HTTP_AIHUB_STATE_DONE      2


extern ngx_module_t  ngx_http_aihub_module;


/* ngx_http_aihub_redis.c */

typedef void (*ngx_http_aihub_redis_handler_pt)(ngx_http_request_t *r,
    redisReply *reply);

ngx_int_t ngx_http_aihub_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
void ngx_http_aihub_redis_exit_process(void);
ngx_int_t ngx_http_aihub_redis_ready(void);
ngx_int_t ngx_http_aihub_redis_call(ngx_http_request_t *r,
    ngx_http_aihub_redis_handler_pt handler, int argc, const char **argv,
    const size_t *argvlen);
ngx_int_t ngx_http_aihub_redis_send(redisCallbackFn *fn, void *data,
    int argc, const char **argv, const size_t *argvlen);
void ngx_http_aihub_redis_on_connect(void (*handler)(void));

/* ngx_http_aihub_auth.c */

ngx_int_t ngx_http_aihub_access_handler(ngx_http_request_t *r);

/* ngx_http_aihub_error.c */

ngx_int_t ngx_http_aihub_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *code,
    const char *message);
ngx_int_t ngx_http_aihub_finalize_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *code,
    const char *message);

/* ngx_http_aihub_provider.c */

char *ngx_http_aihub_provider_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_aihub_provider_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
ngx_int_t ngx_http_aihub_provider_select(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_add_variables(ngx_conf_t *cf);

/* ngx_http_aihub_filter.c */

ngx_int_t ngx_http_aihub_filter_init(ngx_conf_t *cf);

/* ngx_http_aihub_usage.c */

ngx_int_t ngx_http_aihub_usage_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
void ngx_http_aihub_usage_exit_process(void);
ngx_int_t ngx_http_aihub_log_handler(ngx_http_request_t *r);

/* helpers shared by several files */

ngx_http_aihub_ctx_t *ngx_http_aihub_get_ctx(ngx_http_request_t *r);
ngx_msec_t ngx_http_aihub_now_ms(void);


#endif /* NGX_HTTP_AIHUB_MODULE_H */
