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
 *   ngx_http_aihub_cache.c      the shared key cache and rate limit state
 *   ngx_http_aihub_body.c       the request body: read, parse, rewrite
 *   ngx_http_aihub_models.c     the model catalog, per worker, from Redis
 *   ngx_http_aihub_quota.c      monthly quota: reserve, release, settle
 *   ngx_http_aihub_subscribe.c  invalidations from Redis pub/sub
 *   ngx_http_aihub_developer.c  /v1/models, usage and api-keys endpoints
 *   ngx_http_aihub_variables.c  variables for proxy_pass and access logs
 */

#ifndef NGX_HTTP_AIHUB_MODULE_H
#define NGX_HTTP_AIHUB_MODULE_H


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "aihub_protocol.h"
#include "aihub_ratelimit.h"
#include "aihub_period.h"
#include "aihub_usage_json.h"
#include "aihub_sse.h"


#define AIHUB_TOKENS_MAX              1000000000

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
    ngx_msec_t                    cache_ttl;
    time_t                        time_offset;  /* tests: move the clock */

    ngx_array_t                   providers;    /* ngx_http_aihub_provider_t */
    ngx_str_t                     node;

    ngx_uint_t                    event_buffer; /* events kept while down */

    ngx_flag_t                    used;         /* "aihub on" somewhere */
} ngx_http_aihub_main_conf_t;


typedef struct {
    ngx_flag_t                    enable;
    ngx_uint_t                    failure_mode;
    size_t                        body_max;
    ngx_uint_t                    global_rate_limit;
    ngx_array_t                  *pass_request_headers; /* ngx_str_t */
    ngx_array_t                  *pass_answer_headers;
} ngx_http_aihub_loc_conf_t;


/* the key record as the cache holds it: fixed size, no pointers */

typedef struct {
    uint64_t                      account_id;
    int64_t                       expires;      /* 0: never */
    int64_t                       anchor;       /* period anchor */
    uint64_t                      rpm;          /* 0: unlimited */
    uint64_t                      tpm;
    uint64_t                      included;     /* calls per period */
    uint64_t                      spend_cap;    /* micro-dollars, 0: none */
    uint64_t                      max_tokens;   /* per request, 0: none */
    unsigned                      active:1;
    unsigned                      overage:1;    /* calls beyond included */
    unsigned                      admin:1;      /* scope admin */
    unsigned                      chat:1;       /* scope chat */
    u_char                        prefix_len;
    u_char                        plan_len;
    u_char                        prefix[AIHUB_KEY_PREFIX_LEN];
    u_char                        plan[32];
} ngx_http_aihub_record_t;


/* what a key lookup found, with string views for variables and events */

typedef struct {
    ngx_http_aihub_record_t       rec;
    ngx_str_t                     models;       /* "*", ids, "tier:basic" */
    ngx_str_t                     account;      /* the id in decimal */
    ngx_str_t                     prefix;
    ngx_str_t                     plan;
    u_char                        account_text[NGX_INT64_LEN];
} ngx_http_aihub_key_t;


/* a model of the catalog */

typedef struct {
    ngx_str_t                     id;
    ngx_str_t                     provider;
    ngx_str_t                     upstream;
    ngx_str_t                     tier;
    uint64_t                      price_in;     /* micro-$ per 1M tokens */
    uint64_t                      price_out;
} ngx_http_aihub_model_t;


typedef struct {
    int64_t                       prompt;
    int64_t                       completion;
    int64_t                       total;
    unsigned                      found:1;
    unsigned                      estimated:1;
} ngx_http_aihub_tokens_t;


/* counters shared by the worker processes (in the cache zone) */

typedef struct {
    ngx_atomic_t                  requests[13]; /* by status, metrics.c */
    ngx_atomic_t                  failed_open;
    ngx_atomic_t                  events_emitted;
    ngx_atomic_t                  events_confirmed;
    ngx_atomic_t                  events_dropped;
    ngx_atomic_t                  events_refused;
    ngx_atomic_t                  events_lost;
} ngx_http_aihub_metrics_t;


typedef struct ngx_http_aihub_redis_call_s  ngx_http_aihub_redis_call_t;

typedef struct {
    ngx_uint_t                    state;
    ngx_uint_t                    step;
    ngx_int_t                     rc;           /* verdict once decided */

    u_char                        key_hash[AIHUB_SHA256_HEX_LEN];
    u_char                        key_bin[32];
    ngx_http_aihub_key_t          key;
    ngx_http_aihub_model_t       *model_entry;  /* copy, request pool */
    ngx_uint_t                    endpoint;

    ngx_str_t                     period_key;   /* Redis hash, or empty */
    int64_t                       period_start;
    int64_t                       period_end;
    aihub_rl_result_t             rl_requests;
    aihub_rl_result_t             rl_tokens;
    int64_t                       max_tokens;
    int64_t                       prompt_estimate; /* characters */

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
    aihub_sse_t                  *sse;          /* streamed answer */
    aihub_usage_json_t           *json_scan;    /* JSON answer */
    ngx_buf_t                    *replace;      /* our error instead */
    ngx_buf_t                    *held;         /* a provider's refusal */
    ngx_int_t                     provider_retry_after; /* seconds */
    ngx_uint_t                    http_version; /* the client's */
    ngx_uint_t                    hold;         /* NGX_HTTP_AIHUB_HOLD_* */
    ngx_http_handler_pt           content_handler; /* the proxy module's */
    ngx_list_t                    upstream_headers;
    ngx_chain_t                  *free;         /* stream buffers, reused */
    ngx_chain_t                  *busy;

    void                         *json;         /* the parsed body */

    ngx_uint_t                    dev_op;
    ngx_str_t                     dev_prefix;
    ngx_str_t                     dev_key;
    ngx_str_t                     dev_label;
    ngx_str_t                     dev_scopes;
    ngx_str_t                    *dev_rec;

    const char                   *err_type;
    const char                   *err_code;
    const char                   *err_message;

    unsigned                      cleanup_added:1;
    unsigned                      own_answer:1; /* an error or endpoint */
    unsigned                      key_known:1;
    unsigned                      body_read:1;
    unsigned                      body_waiting:1;
    unsigned                      body_sync:1;
    unsigned                      reserved:1;   /* a quota call is held */
    unsigned                      overage_call:1;
    unsigned                      rate_taken:1; /* a local rpm slot */
    unsigned                      from_stale:1; /* served failing open */
    unsigned                      include_usage:1; /* the client asked */
    unsigned                      stream_requested:1;
    unsigned                      streamed:1;
    unsigned                      forwarded:1;  /* reached the provider */
    unsigned                      emitted:1;
    unsigned                      scanning:1;
    unsigned                      unscanned:1;
    unsigned                      last_seen:1;
    unsigned                      failed:1;
    unsigned                      aborted:1;
    unsigned                      replace_sent:1;
} ngx_http_aihub_ctx_t;


#define NGX_HTTP_AIHUB_STATE_NEW       0
#define NGX_HTTP_AIHUB_STATE_WAIT      1     /* Redis or the body */
#define NGX_HTTP_AIHUB_STATE_DONE      2

#define NGX_HTTP_AIHUB_HOLD_NONE       0
#define NGX_HTTP_AIHUB_HOLD_FIRST      1     /* until the first byte */
#define NGX_HTTP_AIHUB_HOLD_REFUSAL    2     /* a 4xx, read to its end */

#define NGX_HTTP_AIHUB_STEP_KEY        0
#define NGX_HTTP_AIHUB_STEP_CHECK      1
#define NGX_HTTP_AIHUB_STEP_BODY       2
#define NGX_HTTP_AIHUB_STEP_LIMIT      3
#define NGX_HTTP_AIHUB_STEP_QUOTA      4
#define NGX_HTTP_AIHUB_STEP_PROXY      5
#define NGX_HTTP_AIHUB_STEP_SERVE      6

#define NGX_HTTP_AIHUB_EP_CHAT         0
#define NGX_HTTP_AIHUB_EP_MODELS       1
#define NGX_HTTP_AIHUB_EP_USAGE        2
#define NGX_HTTP_AIHUB_EP_KEYS         3
#define NGX_HTTP_AIHUB_EP_UNKNOWN      4


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
void ngx_http_aihub_redis_on_connect(void (*handler)(redisAsyncContext *ac));
void ngx_http_aihub_redis_sub_on_connect(
    void (*handler)(redisAsyncContext *ac));

/* ngx_http_aihub_auth.c */

ngx_int_t ngx_http_aihub_access_handler(ngx_http_request_t *r);
void ngx_http_aihub_deny(ngx_http_aihub_ctx_t *ctx, ngx_uint_t status,
    const char *type, const char *code, const char *message);
void ngx_http_aihub_resume(ngx_http_request_t *r);
ngx_int_t ngx_http_aihub_continue(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
void ngx_http_aihub_key_strings(ngx_http_aihub_key_t *key);
ngx_int_t ngx_http_aihub_auth_init_process(ngx_cycle_t *cycle);
void ngx_http_aihub_auth_exit_process(void);
void ngx_http_aihub_sha256(u_char *dst, u_char *src, size_t len);
void ngx_http_aihub_request_id(u_char *dst);
ngx_int_t ngx_http_aihub_hex_decode(u_char *dst, u_char *src, size_t len);
time_t ngx_http_aihub_time(ngx_http_request_t *r);

/* ngx_http_aihub_forward.c */

ngx_int_t ngx_http_aihub_forward_prepare(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_mask_key(ngx_http_request_t *r, u_char *key);
void ngx_http_aihub_forward_answer_headers(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
u_char *ngx_http_aihub_safe_text(ngx_pool_t *pool, u_char *src, size_t len,
    size_t max);

/* ngx_http_aihub_cache.c */

void *ngx_http_aihub_cache_create(ngx_conf_t *cf);
ngx_int_t ngx_http_aihub_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_int_t ngx_http_aihub_cache_get(ngx_http_request_t *r, u_char *hash,
    ngx_http_aihub_key_t *key);
ngx_int_t ngx_http_aihub_cache_put(ngx_http_request_t *r, u_char *hash,
    ngx_http_aihub_key_t *key);
void ngx_http_aihub_cache_invalidate(ngx_shm_zone_t *zone, u_char *msg,
    size_t len);
ngx_int_t ngx_http_aihub_cache_limit(ngx_http_request_t *r, u_char *hash,
    ngx_http_aihub_key_t *key, aihub_rl_result_t *req,
    aihub_rl_result_t *tok);
void ngx_http_aihub_cache_charge(ngx_http_request_t *r, u_char *hash,
    ngx_http_aihub_key_t *key, uint64_t tokens, ngx_uint_t refund_request);
void ngx_http_aihub_cache_stats(ngx_shm_zone_t *zone, ngx_uint_t *entries,
    size_t *size);

/* ngx_http_aihub_body.c */

ngx_int_t ngx_http_aihub_body_read(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_body_rewrite(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);

/* ngx_http_aihub_models.c */

ngx_int_t ngx_http_aihub_models_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
void ngx_http_aihub_models_load(redisAsyncContext *ac);
ngx_http_aihub_model_t *ngx_http_aihub_model_find(ngx_str_t *id);
ngx_uint_t ngx_http_aihub_model_allowed(ngx_http_aihub_key_t *key,
    ngx_http_aihub_model_t *m);
ngx_array_t *ngx_http_aihub_models_all(void);
ngx_uint_t ngx_http_aihub_models_loaded(void);
ngx_int_t ngx_http_aihub_copy_model_strings(ngx_pool_t *pool,
    ngx_http_aihub_model_t *m);

/* ngx_http_aihub_quota.c */

void ngx_http_aihub_scripts_init(void);
void ngx_http_aihub_scripts_load(void);
ngx_int_t ngx_http_aihub_quota_reserve(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
void ngx_http_aihub_quota_settle(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_uint_t success);
ngx_int_t ngx_http_aihub_period_key(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
int64_t ngx_http_aihub_cost(ngx_http_aihub_model_t *m,
    ngx_http_aihub_tokens_t *t);

/* ngx_http_aihub_metrics.c */

void ngx_http_aihub_metrics_init_process(ngx_http_aihub_metrics_t *m);
ngx_http_aihub_metrics_t *ngx_http_aihub_metrics(void);
ngx_int_t ngx_http_aihub_metrics_log_handler(ngx_http_request_t *r);
char *ngx_http_aihub_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_http_aihub_metrics_t *ngx_http_aihub_cache_metrics(
    ngx_shm_zone_t *zone);

/* ngx_http_aihub_subscribe.c */

void ngx_http_aihub_subscribe_init_process(ngx_http_aihub_main_conf_t *amcf);
void ngx_http_aihub_subscribe(redisAsyncContext *ac);

/* ngx_http_aihub_developer.c */

ngx_int_t ngx_http_aihub_developer_serve(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);

/* ngx_http_aihub_error.c */

ngx_int_t ngx_http_aihub_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *code,
    const char *message);
ngx_int_t ngx_http_aihub_send_buf(ngx_http_request_t *r, ngx_uint_t status,
    const char *content_type, ngx_buf_t *b);
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
ngx_int_t ngx_http_aihub_add_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len);

/* ngx_http_aihub_usage.c */

ngx_int_t ngx_http_aihub_usage_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf);
void ngx_http_aihub_usage_exit_process(void);
void ngx_http_aihub_usage_flush(void);
void ngx_http_aihub_tokens_settle(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx);
ngx_int_t ngx_http_aihub_log_handler(ngx_http_request_t *r);

/* helpers shared by several files */

ngx_http_aihub_ctx_t *ngx_http_aihub_get_ctx(ngx_http_request_t *r);
ngx_msec_t ngx_http_aihub_now_ms(void);


#endif /* NGX_HTTP_AIHUB_MODULE_H */
