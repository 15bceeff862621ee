/*
 * ngx_http_aihub_module: the common header.  Types only: the configuration,
 * the key record, the model, the shared counters and the request context,
 * split by concern.  Functions are declared by the header of the file that
 * defines them, so a file's #include lines say what it uses.
 *
 * The files, in layers; a file calls only files of a lower layer (or of
 * its own, where the list says so):
 *
 *   engine    aihub_*.c            pure C11, no nginx types, unit tested
 *   base      util                 context, clock, hashing, request ids
 *             answer               OpenAI-shaped errors, deny, headers
 *   services  redis                the transport (never reads a context)
 *             zone                 the shared key cache and rate state
 *             metrics, models, provider, variables
 *             subscribe            invalidations (calls zone, models)
 *             scripts              the quota engine's Lua scripts
 *             usage                the event buffer and its XADD, and
 *                                  the quota settles (calls scripts)
 *   steps     key                  the key, its record, its status
 *             limit                every rate limit (per account)
 *             body, model          the body; model access and max_tokens
 *             lane                 a place at the provider, paid first
 *             route                a route's saturation and breaker
 *                                  (calls lane)
 *             quota                the monthly call (calls limit)
 *             dev, dev_keys        developer endpoints (dev_keys calls dev)
 *   top       access               the phase handler, the verdict, proxy
 *             log                  settles a call in the log phase
 *             filter               header and body filters
 *             module               directives, configuration, hooks
 */

#ifndef NGX_HTTP_AIHUB_COMMON_H
#define NGX_HTTP_AIHUB_COMMON_H


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "aihub_protocol.h"
#include "aihub_ratelimit.h"
#include "aihub_usage_json.h"
#include "aihub_sse.h"


#define NGX_HTTP_AIHUB_SHA256_LEN     32  /* a SHA-256, binary */
#define NGX_HTTP_AIHUB_PLAN_LEN       32  /* a plan name, as cached */

/* answers counted by status: the codes metrics.c lists, and the rest */
#define NGX_HTTP_AIHUB_STATUSES       13

#define NGX_HTTP_AIHUB_FAIL_CLOSED    0
#define NGX_HTTP_AIHUB_FAIL_OPEN      1

#define NGX_HTTP_AIHUB_RATE_LOCAL     0   /* aihub_rate_limit local */
#define NGX_HTTP_AIHUB_RATE_GLOBAL    1   /* ... global: in Redis */

#define NGX_HTTP_AIHUB_KIND_OPENAI    0
#define NGX_HTTP_AIHUB_KIND_GEMINI    1

/* a model's kind, and the API its provider speaks for it (the catalog) */
#define NGX_HTTP_AIHUB_MODEL_CHAT     0
#define NGX_HTTP_AIHUB_MODEL_EMBED    1

#define NGX_HTTP_AIHUB_API_CHAT       0   /* chat completions only */
#define NGX_HTTP_AIHUB_API_RESPONSES  1   /* the Responses API too */


typedef struct {
    ngx_str_t                     name;
    ngx_uint_t                    kind;
    ngx_str_t                     url;          /* scheme://host[:port]/base */
    ngx_str_t                     host;         /* Host header for it */
    ngx_str_t                     key_env;
    ngx_str_t                     key_file;
    ngx_str_t                     authorization; /* "Bearer ..." */
    ngx_uint_t                    capacity;     /* calls in flight, 0: any */
    ngx_uint_t                    free_share;   /* % of it for free plans */
    ngx_uint_t                    queue;        /* paid calls that wait */
    unsigned                      no_stream_options:1; /* it refuses the
                                                   member (Mistral): a
                                                   stream's usage is not
                                                   asked for */
    unsigned                      cap_completion:1; /* a plan's cap goes
                                                   as max_completion_tokens
                                                   (OpenAI's reasoning
                                                   models refuse
                                                   max_tokens) */
    unsigned                      resolver_said:1; /* "needs a resolver"
                                                   logged for it */
} ngx_http_aihub_provider_t;


typedef struct {
    ngx_str_t                     redis_host;   /* IP, or unix socket path */
    ngx_int_t                     redis_port;   /* 0 for a unix socket */
    ngx_str_t                     redis_user;   /* AUTH: an ACL user */
    ngx_str_t                     redis_password_env; /* AUTH: its name */
    ngx_str_t                     redis_prefix;
    ngx_str_t                     epoch_key;    /* "<prefix>epoch" */
    ngx_msec_t                    redis_timeout;

    ngx_shm_zone_t               *shm_zone;
    ngx_msec_t                    cache_ttl;
    ngx_msec_t                    lease_time;   /* a lease's lifetime */
    ngx_uint_t                    lease_calls;  /* a block lease's size */
    ngx_shm_zone_t               *lease_zone;
    time_t                        time_offset;  /* tests: move the clock */

    ngx_array_t                   providers;    /* ngx_http_aihub_provider_t */
    ngx_str_t                     node;

    ngx_uint_t                    event_buffer; /* events kept while down */
    ngx_msec_t                    exit_flush;   /* a quitting process hands
                                                   them over so long */
    ngx_uint_t                    max_keys;     /* active keys per account,
                                                   0: no cap */
    ngx_msec_t                    lane_wait;    /* longest wait in a queue */
    ngx_msec_t                    lane_backoff; /* a provider's 429 without
                                                   Retry-After */
    ngx_uint_t                    fb_attempts;  /* routes tried, at most */
    ngx_msec_t                    fb_time;      /* no new route after it */
    ngx_uint_t                    breaker_fails; /* failures in a row that
                                                   take a route out */
    ngx_msec_t                    breaker_time; /* for this long */

    ngx_flag_t                    used;         /* "aihub on" somewhere */
} ngx_http_aihub_main_conf_t;


typedef struct {
    ngx_flag_t                    enable;
    ngx_uint_t                    failure_mode;
    size_t                        body_max;
    ngx_flag_t                    stored_objects; /* names of the provider
                                                   account's objects pass */
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
    uint64_t                      priority;     /* the plan's; 0: free */
    unsigned                      active:1;
    unsigned                      overage:1;    /* calls beyond included */
    unsigned                      admin:1;      /* scope admin */
    unsigned                      chat:1;       /* scope chat */
    u_char                        prefix_len;
    u_char                        plan_len;
    u_char                        prefix[AIHUB_KEY_PREFIX_LEN];
    u_char                        plan[NGX_HTTP_AIHUB_PLAN_LEN];
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
    ngx_str_t                     fallbacks;    /* comma list of ids */
    int64_t                       created;      /* unix seconds */
    ngx_uint_t                    kind;         /* NGX_HTTP_AIHUB_MODEL_* */
    ngx_uint_t                    api;          /* NGX_HTTP_AIHUB_API_* */
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
    ngx_atomic_t                  requests[NGX_HTTP_AIHUB_STATUSES];
    ngx_atomic_t                  failed_open;
    ngx_atomic_t                  events_emitted;
    ngx_atomic_t                  events_confirmed;
    ngx_atomic_t                  events_dropped;
    ngx_atomic_t                  events_refused;
    ngx_atomic_t                  events_lost;
    ngx_atomic_t                  quota_from_lease;   /* no I/O */
    ngx_atomic_t                  quota_from_redis;   /* waited: a grant */
} ngx_http_aihub_metrics_t;


/*
 * The priority lane of a provider, in the cache zone: the calls in flight,
 * the paid calls waiting for one of them to end, and until when the
 * provider said it is saturated (ngx_http_aihub_lane.c).
 */

#define NGX_HTTP_AIHUB_LANES          16  /* providers with a lane */
#define NGX_HTTP_AIHUB_LANE_QUEUE     64  /* waiting calls, at most */
#define NGX_HTTP_AIHUB_LANE_PLANS     8   /* plans counted for metrics */
#define NGX_HTTP_AIHUB_NAME_LEN       32

typedef struct {
    uint64_t                      ticket;       /* 0: a free place */
    uint64_t                      priority;
    ngx_msec_t                    since;        /* wall clock, ms */
} ngx_http_aihub_lane_waiter_t;


typedef struct {
    u_char                        name[NGX_HTTP_AIHUB_NAME_LEN];
    size_t                        name_len;     /* 0: unused */
    ngx_uint_t                    in_flight;
    ngx_uint_t                    free_in_flight;
    ngx_uint_t                    queued;
    ngx_msec_t                    saturated_until; /* wall clock, ms */
    ngx_uint_t                    failures;     /* in a row, the breaker */
    ngx_msec_t                    open_until;   /* the breaker is open */
    uint64_t                      tickets;      /* last ticket given */
    ngx_http_aihub_lane_waiter_t  waiters[NGX_HTTP_AIHUB_LANE_QUEUE];
} ngx_http_aihub_lane_sh_t;


typedef struct {
    u_char                        name[NGX_HTTP_AIHUB_PLAN_LEN];
    size_t                        name_len;     /* 0: unused */
    ngx_uint_t                    queued;       /* now */
    ngx_uint_t                    waits;        /* calls that waited */
    ngx_uint_t                    refusals;     /* 429 at the lane */
    ngx_uint_t                    timeouts;     /* waited too long */
} ngx_http_aihub_lane_plan_sh_t;


typedef struct ngx_http_aihub_redis_call_s  ngx_http_aihub_redis_call_t;


/* a request's Redis command in flight (ngx_http_aihub_redis.c owns it) */

typedef struct {
    ngx_http_aihub_redis_call_t  *call;         /* in flight, or NULL */
    unsigned                      cleanup_added:1;
} ngx_http_aihub_redis_wait_t;


/* the access phase as a machine: where it is, and the verdict */

typedef enum {
    NGX_HTTP_AIHUB_STATE_NEW = 0,
    NGX_HTTP_AIHUB_STATE_WAIT,                  /* Redis or the body */
    NGX_HTTP_AIHUB_STATE_DONE
} ngx_http_aihub_state_e;


typedef enum {
    NGX_HTTP_AIHUB_STEP_KEY = 0,                /* the key and its record */
    NGX_HTTP_AIHUB_STEP_CHECK,                  /* status, scope, endpoint */
    NGX_HTTP_AIHUB_STEP_LIMIT,                  /* the account's rate limits */
    NGX_HTTP_AIHUB_STEP_BODY,                   /* read and parse the body */
    NGX_HTTP_AIHUB_STEP_MODEL,                  /* model access, max_tokens */
    NGX_HTTP_AIHUB_STEP_LANE,                   /* a place at the provider */
    NGX_HTTP_AIHUB_STEP_QUOTA,                  /* the monthly call */
    NGX_HTTP_AIHUB_STEP_PROXY,                  /* ready for the provider */
    NGX_HTTP_AIHUB_STEP_SERVE                   /* a developer endpoint */
} ngx_http_aihub_step_e;


typedef enum {
    NGX_HTTP_AIHUB_EP_CHAT = 0,
    NGX_HTTP_AIHUB_EP_RESPONSES,
    NGX_HTTP_AIHUB_EP_EMBEDDINGS,
    NGX_HTTP_AIHUB_EP_MODELS,
    NGX_HTTP_AIHUB_EP_MODEL,                    /* GET .../models/{id} */
    NGX_HTTP_AIHUB_EP_USAGE,
    NGX_HTTP_AIHUB_EP_KEYS,
    NGX_HTTP_AIHUB_EP_UNKNOWN
} ngx_http_aihub_endpoint_e;


/* a provider's answer whose header waits (ngx_http_aihub_filter.c) */

typedef enum {
    NGX_HTTP_AIHUB_HOLD_NONE = 0,
    NGX_HTTP_AIHUB_HOLD_FIRST,                  /* until the first byte */
    NGX_HTTP_AIHUB_HOLD_REFUSAL                 /* a 4xx, read to its end */
} ngx_http_aihub_hold_e;


/* where a JSON answer's first bytes are (ngx_http_aihub_refusal_first) */

typedef enum {
    NGX_HTTP_AIHUB_FIRST_OBJECT = 0,            /* white space, then "{" */
    NGX_HTTP_AIHUB_FIRST_MEMBER,                /* white space, then '"' */
    NGX_HTTP_AIHUB_FIRST_NAME,                  /* "error", first_at in */
    NGX_HTTP_AIHUB_FIRST_COLON,
    NGX_HTTP_AIHUB_FIRST_VALUE                  /* "{" */
} ngx_http_aihub_first_e;


typedef enum {
    NGX_HTTP_AIHUB_DEV_NONE = 0,
    NGX_HTTP_AIHUB_DEV_KEY_LIST,
    NGX_HTTP_AIHUB_DEV_KEY_REVOKE,
    NGX_HTTP_AIHUB_DEV_KEY_CREATE
} ngx_http_aihub_dev_op_e;


typedef struct {
    ngx_http_aihub_state_e        state;
    ngx_http_aihub_step_e         step;
    ngx_int_t                     rc;           /* verdict once decided */
    ngx_http_aihub_endpoint_e     endpoint;
    const char                   *err_type;
    const char                   *err_code;
    const char                   *err_message;
    unsigned                      own_answer:1; /* an error or endpoint */
    unsigned                      forwarded:1;  /* reached the provider */
} ngx_http_aihub_flow_t;


/* who is calling: the key, hashed, and its record */

typedef struct {
    u_char                        hash[AIHUB_SHA256_HEX_LEN]; /* of bin,
                                               when Redis is asked */
    u_char                        bin[NGX_HTTP_AIHUB_SHA256_LEN];
    ngx_http_aihub_key_t          key;
    ngx_uint_t                    heard;        /* invalidations heard
                                               before Redis was asked */
    unsigned                      known:1;
    unsigned                      from_stale:1; /* served failing open */
} ngx_http_aihub_caller_t;


/* the account's rate limits (ngx_http_aihub_limit.c) */

typedef struct {
    aihub_rl_result_t             requests;
    aihub_rl_result_t             tokens;
    uint64_t                      held;         /* worst-case tokens
                                                   charged, to settle */
    unsigned                      taken:1;      /* a local rpm slot */
    unsigned                      cleanup:1;    /* given back if the
                                                   request goes away */
} ngx_http_aihub_limit_t;


/* the chat request body, read and parsed once */

typedef struct {
    void                         *json;         /* the parsed body */
    ngx_str_t                     model;
    int64_t                       max_tokens;
    int64_t                       prompt_estimate; /* characters */
    unsigned                      read:1;
    unsigned                      waiting:1;
    unsigned                      sync:1;
    unsigned                      stream:1;     /* the client asked */
    unsigned                      include_usage:1; /* the client asked */
    unsigned                      decoded:1;    /* it came in a coding */
    unsigned                      store:2;      /* AIHUB_BODY_STORE_* */
} ngx_http_aihub_body_t;


/* where the call goes */

typedef struct {
    ngx_http_aihub_model_t       *model;        /* copy, request pool */
    ngx_http_aihub_provider_t    *provider;
    ngx_str_t                     proxy_url;
    ngx_http_aihub_model_t       *asked;        /* the model asked for */
    void                         *failed;       /* the upstream that failed */
    ngx_uint_t                    attempts;     /* routes tried */
    ngx_uint_t                    next;         /* its next fallback */
    unsigned                      translate:1;  /* responses over chat */
} ngx_http_aihub_route_t;


/* the monthly quota: the period's counters and the reserved call */

typedef struct {
    ngx_str_t                     period_key;   /* Redis hash, or empty */
    int64_t                       start;
    int64_t                       end;
    ngx_msec_t                    at_ms;        /* when the period was
                                                   chosen: the event's ts */
    ngx_str_t                     leases_key;   /* leases:<acct>:<day> */
    ngx_str_t                     period_m;     /* "<acct>:<day>" */
    u_char                        lease[AIHUB_EVENT_ID_LEN];
    uint64_t                      held_cost;    /* worst case, micro-$ */
    unsigned                      reserved:1;   /* a quota call is held */
    unsigned                      pending:1;    /* its reserve in flight */
    unsigned                      cleanup:1;
    unsigned                      overage_call:1;
} ngx_http_aihub_quota_t;


/* the provider's answer, as the filters see it pass */

typedef struct ngx_http_aihub_inflate_s  ngx_http_aihub_inflate_t;

typedef struct {
    ngx_uint_t                    status;
    ngx_http_aihub_inflate_t     *inflate;      /* a gzip/deflate answer */
    aihub_sse_t                  *sse;          /* streamed answer */
    aihub_usage_json_t           *json;         /* JSON answer */
    ngx_buf_t                    *replace;      /* our error instead */
    ngx_buf_t                    *held;         /* a provider's refusal */
    ngx_http_aihub_hold_e         hold;
    ngx_buf_t                    *head;         /* first bytes, gathered */
    ngx_chain_t                  *free;         /* stream copies, reused */
    ngx_chain_t                  *busy;
    void                         *xlate_stream; /* aihub_rstream_t */
    ngx_buf_t                    *xlate_json;   /* a chat answer, held */
    u_char                       *xlate_id;
    u_char                       *xlate_model;
    unsigned                      first:3;      /* ngx_http_aihub_first_e */
    unsigned                      first_at:3;
    unsigned                      xlate_failed:1;
    unsigned                      replace_sent:1;
    unsigned                      streamed:1;
    unsigned                      scanning:1;
    unsigned                      unscanned:1;
    unsigned                      last_seen:1;
    unsigned                      failed:1;
    unsigned                      broken:1;     /* its coded data broke:
                                                   ended by us, not the
                                                   client */
} ngx_http_aihub_reply_t;


/* what crosses to the provider and back (ngx_http_aihub_forward.c) */

typedef struct {
    ngx_http_handler_pt           content_handler; /* the proxy module's */
    ngx_list_t                    upstream_headers;
    ngx_uint_t                    http_version; /* the client's */
    ngx_int_t                     retry_after;  /* the provider's, s */
} ngx_http_aihub_forward_t;


/* the call's place in its provider's lane (ngx_http_aihub_lane.c) */

typedef struct {
    ngx_http_aihub_lane_sh_t     *lane;         /* in the zone, or NULL */
    ngx_http_aihub_lane_plan_sh_t *plan;
    ngx_event_t                   poll;         /* while queued */
    ngx_msec_t                    since;        /* queued at */
    uint64_t                      ticket;       /* while queued */
    unsigned                      held:1;       /* a call in flight */
    unsigned                      free:1;       /* counted as free */
    unsigned                      cleanup_added:1;
} ngx_http_aihub_lane_t;


/* what the call used, settled in the log phase */

typedef struct {
    ngx_http_aihub_tokens_t       tokens;
    int64_t                       cost_micros;
    unsigned                      emitted:1;
    unsigned                      aborted:1;
} ngx_http_aihub_usage_t;


/* a developer endpoint's operation in flight */

typedef struct {
    ngx_http_aihub_dev_op_e       op;
    ngx_str_t                     prefix;
    ngx_str_t                     key;
    ngx_str_t                     label;
    ngx_str_t                     scopes;
    ngx_str_t                    *rec;
} ngx_http_aihub_dev_t;


typedef struct {
    ngx_msec_t                    start_ms;
    time_t                        start_sec;
    u_char                        event_id[AIHUB_EVENT_ID_LEN];

    ngx_http_aihub_flow_t         flow;
    ngx_http_aihub_caller_t       caller;
    ngx_http_aihub_limit_t        limit;
    ngx_http_aihub_body_t         body;
    ngx_http_aihub_route_t        route;
    ngx_http_aihub_forward_t      forward;
    ngx_http_aihub_quota_t        quota;
    ngx_http_aihub_reply_t        reply;
    ngx_http_aihub_usage_t        usage;
    ngx_http_aihub_dev_t          dev;
    ngx_http_aihub_redis_wait_t   wait;
    ngx_http_aihub_lane_t         lane;
} ngx_http_aihub_ctx_t;


extern ngx_module_t  ngx_http_aihub_module;


#endif /* NGX_HTTP_AIHUB_COMMON_H */
