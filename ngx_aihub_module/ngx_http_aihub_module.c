/*
 * ngx_http_aihub_module: directives, configuration and the module's hooks.
 * The request path itself starts in ngx_http_aihub_access.c.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_key_hash.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_redis_call.h"
#include "ngx_http_aihub_zone.h"
#include "ngx_http_aihub_metrics.h"
#include "ngx_http_aihub_models.h"
#include "ngx_http_aihub_provider.h"
#include "ngx_http_aihub_variables.h"
#include "ngx_http_aihub_subscribe.h"
#include "ngx_http_aihub_usage.h"
#include "ngx_http_aihub_scripts.h"
#include "ngx_http_aihub_quota.h"
#include "ngx_http_aihub_lease.h"
#include "ngx_http_aihub_json.h"
#include "ngx_http_aihub_grant.h"
#include "ngx_http_aihub_fallback.h"
#include "ngx_http_aihub_access.h"
#include "ngx_http_aihub_log.h"
#include "ngx_http_aihub_filter.h"


static ngx_int_t ngx_http_aihub_init(ngx_conf_t *cf);
static void *ngx_http_aihub_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_aihub_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_aihub_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_aihub_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_aihub_zone_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_aihub_enable(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_aihub_init_process(ngx_cycle_t *cycle);
static void ngx_http_aihub_exit_process(ngx_cycle_t *cycle);
static void ngx_http_aihub_redis_connected(redisAsyncContext *ac);
static char *ngx_http_aihub_msec_min(ngx_conf_t *cf, void *post, void *data);


/* a time below which a directive cannot work, and what nginx -t says */

typedef struct {
    ngx_conf_post_handler_pt      post_handler;
    ngx_msec_t                    min;
    char                         *error;
} ngx_http_aihub_msec_min_t;


static ngx_http_aihub_msec_min_t  ngx_http_aihub_redis_timeout_min = {
    ngx_http_aihub_msec_min, 1, "must be at least 1ms"
};

/* a lease reclaimed before its calls end lets a hard quota be passed */
static ngx_http_aihub_msec_min_t  ngx_http_aihub_lease_time_min = {
    ngx_http_aihub_msec_min, 1000, "must be at least 1s"
};

/* 0 would refuse every call (503), or answer every body 413 */
static ngx_conf_num_bounds_t  ngx_http_aihub_at_least_one = {
    ngx_conf_check_num_bounds, 1, -1          /* no upper bound */
};


static ngx_conf_enum_t  ngx_http_aihub_failure_modes[] = {
    { ngx_string("closed"), NGX_HTTP_AIHUB_FAIL_CLOSED },
    { ngx_string("open"), NGX_HTTP_AIHUB_FAIL_OPEN },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_aihub_rate_limit_modes[] = {
    { ngx_string("local"), NGX_HTTP_AIHUB_RATE_LOCAL },
    { ngx_string("global"), NGX_HTTP_AIHUB_RATE_GLOBAL },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_aihub_commands[] = {

    { ngx_string("aihub_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_aihub_redis_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aihub_redis_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, redis_prefix),
      NULL },

    { ngx_string("aihub_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, redis_timeout),
      &ngx_http_aihub_redis_timeout_min },

    { ngx_string("aihub_cache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_aihub_zone_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aihub_provider"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_aihub_provider_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aihub_cache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, cache_ttl),
      NULL },

    { ngx_string("aihub_lease_time"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, lease_time),
      &ngx_http_aihub_lease_time_min },

    { ngx_string("aihub_lease_calls"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, lease_calls),
      &ngx_http_aihub_at_least_one },

    { ngx_string("aihub_time_offset"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, time_offset),
      NULL },

    { ngx_string("aihub_node"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, node),
      NULL },

    { ngx_string("aihub_event_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, event_buffer),
      &ngx_http_aihub_at_least_one },

    { ngx_string("aihub_exit_flush_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, exit_flush),
      NULL },

    { ngx_string("aihub_lane_wait"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, lane_wait),
      NULL },

    { ngx_string("aihub_lane_backoff"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, lane_backoff),
      NULL },

    { ngx_string("aihub_fallback"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_aihub_fallback_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aihub_max_keys_per_account"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aihub_main_conf_t, max_keys),
      NULL },

    { ngx_string("aihub"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_aihub_enable,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aihub_loc_conf_t, enable),
      NULL },

    { ngx_string("aihub_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_aihub_metrics_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aihub_failure_mode"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aihub_loc_conf_t, failure_mode),
      &ngx_http_aihub_failure_modes },

    { ngx_string("aihub_body_max"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aihub_loc_conf_t, body_max),
      &ngx_http_aihub_at_least_one },

    { ngx_string("aihub_stored_objects"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aihub_loc_conf_t, stored_objects),
      NULL },

    { ngx_string("aihub_rate_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aihub_loc_conf_t, global_rate_limit),
      &ngx_http_aihub_rate_limit_modes },

    { ngx_string("aihub_pass_request_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aihub_loc_conf_t, pass_request_headers),
      NULL },

    { ngx_string("aihub_pass_answer_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aihub_loc_conf_t, pass_answer_headers),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_aihub_module_ctx = {
    ngx_http_aihub_add_variables,          /* preconfiguration */
    ngx_http_aihub_init,                   /* postconfiguration */

    ngx_http_aihub_create_main_conf,       /* create main configuration */
    ngx_http_aihub_init_main_conf,         /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_aihub_create_loc_conf,        /* create location configuration */
    ngx_http_aihub_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_http_aihub_module = {
    NGX_MODULE_V1,
    &ngx_http_aihub_module_ctx,            /* module context */
    ngx_http_aihub_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_aihub_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_aihub_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_aihub_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_aihub_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     amcf->redis_host = { 0, NULL };
     *     amcf->redis_prefix = { 0, NULL };
     *     amcf->node = { 0, NULL };
     *     amcf->shm_zone = NULL;
     *     amcf->used = 0;
     */

    amcf->redis_port = NGX_CONF_UNSET;
    amcf->redis_timeout = NGX_CONF_UNSET_MSEC;
    amcf->event_buffer = NGX_CONF_UNSET_UINT;
    amcf->exit_flush = NGX_CONF_UNSET_MSEC;
    amcf->max_keys = NGX_CONF_UNSET_UINT;
    amcf->cache_ttl = NGX_CONF_UNSET_MSEC;
    amcf->lane_wait = NGX_CONF_UNSET_MSEC;
    amcf->lane_backoff = NGX_CONF_UNSET_MSEC;
    amcf->fb_attempts = NGX_CONF_UNSET_UINT;
    amcf->fb_time = NGX_CONF_UNSET_MSEC;
    amcf->breaker_fails = NGX_CONF_UNSET_UINT;
    amcf->breaker_time = NGX_CONF_UNSET_MSEC;
    amcf->lease_time = NGX_CONF_UNSET_MSEC;
    amcf->lease_calls = NGX_CONF_UNSET_UINT;
    amcf->time_offset = NGX_CONF_UNSET;

    if (ngx_array_init(&amcf->providers, cf->pool, 4,
                       sizeof(ngx_http_aihub_provider_t))
        != NGX_OK)
    {
        return NULL;
    }

    return amcf;
}


static char *
ngx_http_aihub_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_aihub_main_conf_t *amcf = conf;

    if (amcf->redis_prefix.data == NULL) {
        ngx_str_set(&amcf->redis_prefix, AIHUB_REDIS_PREFIX_DEFAULT);
    }

    if (ngx_http_aihub_redis_key(cf->pool, &amcf->redis_prefix,
                                 AIHUB_RK_EPOCH, 0, &amcf->epoch_key)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_msec_value(amcf->redis_timeout, 300);
    ngx_conf_init_uint_value(amcf->event_buffer, 10000);
    ngx_conf_init_msec_value(amcf->exit_flush, 60000);
    ngx_conf_init_uint_value(amcf->max_keys, 100);
    ngx_conf_init_msec_value(amcf->cache_ttl, 30000);
    ngx_conf_init_msec_value(amcf->lane_wait, 10000);
    ngx_conf_init_msec_value(amcf->lane_backoff, 1000);
    ngx_conf_init_uint_value(amcf->fb_attempts, 3);
    ngx_conf_init_msec_value(amcf->fb_time, 30000);
    ngx_conf_init_uint_value(amcf->breaker_fails, 3);
    ngx_conf_init_msec_value(amcf->breaker_time, 30000);
    ngx_conf_init_msec_value(amcf->lease_time, 300000);
    ngx_conf_init_uint_value(amcf->lease_calls, 64);
    ngx_conf_init_value(amcf->time_offset, 0);

    if (amcf->node.data == NULL) {
        amcf->node = cf->cycle->hostname;

        if (amcf->node.len == 0) {
            ngx_str_set(&amcf->node, "nginx");
        }
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_aihub_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_aihub_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    alcf->enable = NGX_CONF_UNSET;
    alcf->failure_mode = NGX_CONF_UNSET_UINT;
    alcf->body_max = NGX_CONF_UNSET_SIZE;
    alcf->stored_objects = NGX_CONF_UNSET;
    alcf->global_rate_limit = NGX_CONF_UNSET_UINT;
    alcf->pass_request_headers = NGX_CONF_UNSET_PTR;
    alcf->pass_answer_headers = NGX_CONF_UNSET_PTR;

    return alcf;
}


/* nginx's default request_pool_size, and the one an aihub server gets */
#define NGX_HTTP_AIHUB_NGINX_REQUEST_POOL  4096
#define NGX_HTTP_AIHUB_REQUEST_POOL        16384


static char *
ngx_http_aihub_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_aihub_loc_conf_t *prev = parent;
    ngx_http_aihub_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_core_srv_conf_t  *cscf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_uint_value(conf->failure_mode, prev->failure_mode,
                              NGX_HTTP_AIHUB_FAIL_CLOSED);
    ngx_conf_merge_size_value(conf->body_max, prev->body_max, 1024 * 1024);
    ngx_conf_merge_value(conf->stored_objects, prev->stored_objects, 0);
    ngx_conf_merge_uint_value(conf->global_rate_limit,
                              prev->global_rate_limit,
                              NGX_HTTP_AIHUB_RATE_LOCAL);
    ngx_conf_merge_ptr_value(conf->pass_request_headers,
                             prev->pass_request_headers, NULL);
    ngx_conf_merge_ptr_value(conf->pass_answer_headers,
                             prev->pass_answer_headers, NULL);

    /*
     * The body is parsed from memory: a body nginx wrote to a temporary
     * file would be refused.  The core module is merged already; its
     * buffer grows to aihub_body_max (a body with a Content-Length gets
     * a buffer of its own length, not more).
     */

    if (conf->enable) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

        if (clcf->client_body_buffer_size < conf->body_max) {
            clcf->client_body_buffer_size = conf->body_max;
        }

        /*
         * A metered call takes about 12 KB of its request's pool (nginx's
         * request, the proxy's upstream, ours): with nginx's default of
         * 4 KB that is the pool and two more blocks, each a malloc() and
         * a free().  Left at its default, the server's request_pool_size
         * becomes NGX_HTTP_AIHUB_REQUEST_POOL; one the operator set is
         * kept.  (nginx sizes a request's pool by the default server of
         * its address, before the Host header picks the server.)
         */

        cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);

        if (cscf->request_pool_size == NGX_HTTP_AIHUB_NGINX_REQUEST_POOL) {
            cscf->request_pool_size = NGX_HTTP_AIHUB_REQUEST_POOL;
        }

        ngx_http_aihub_provider_resolver_check(cf, clcf);
    }

    return NGX_CONF_OK;
}


/* "aihub_cache_zone aihub:10m" */

static char *
ngx_http_aihub_zone_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aihub_main_conf_t *amcf = conf;

    u_char     *p;
    ssize_t     size;
    ngx_str_t  *value, name, s;

    if (amcf->shm_zone != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", expected NAME:SIZE",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    amcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_http_aihub_module);
    if (amcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (amcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    amcf->shm_zone->init = ngx_http_aihub_zone_init_zone;
    amcf->shm_zone->data = ngx_http_aihub_zone_create(cf);
    amcf->lease_zone = ngx_http_aihub_lease_zone_add(cf, &name);

    if (amcf->shm_zone->data == NULL || amcf->lease_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_aihub_enable(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                        *rv;
    ngx_http_aihub_loc_conf_t   *alcf = conf;
    ngx_http_aihub_main_conf_t  *amcf;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (alcf->enable) {
        amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aihub_module);
        amcf->used = 1;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aihub_init(ngx_conf_t *cf)
{
    ngx_array_t                 *a;
    ngx_http_handler_pt         *h;
    ngx_http_core_main_conf_t   *cmcf;
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aihub_module);

    if (!amcf->used) {
        return NGX_OK;
    }

    if (amcf->redis_host.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"aihub on\" requires \"aihub_redis\" "
                           "in the http block");
        return NGX_ERROR;
    }

    if (amcf->shm_zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"aihub on\" requires \"aihub_cache_zone\" "
                           "in the http block");
        return NGX_ERROR;
    }

    if (amcf->providers.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"aihub on\" requires at least one "
                           "\"aihub_provider\" in the http block");
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_aihub_access_handler;

    /*
     * The log phase calls its handlers in array order: ours go first, so
     * that the access log sees the settled tokens and cost.
     */

    a = &cmcf->phases[NGX_HTTP_LOG_PHASE].handlers;

    if (ngx_array_push_n(a, 2) == NULL) {
        return NGX_ERROR;
    }

    h = a->elts;
    ngx_memmove(&h[2], &h[0], (a->nelts - 2) * sizeof(ngx_http_handler_pt));

    h[0] = ngx_http_aihub_log_handler;
    h[1] = ngx_http_aihub_metrics_log_handler;

    return ngx_http_aihub_filter_init(cf);
}


static ngx_int_t
ngx_http_aihub_init_process(ngx_cycle_t *cycle)
{
    ngx_http_aihub_main_conf_t  *amcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_aihub_module);

    if (amcf == NULL || !amcf->used) {
        return NGX_OK;
    }

    ngx_http_aihub_metrics_init_process(amcf);
    ngx_http_aihub_json_init_process();

    ngx_http_aihub_scripts_init();

    if (ngx_http_aihub_util_init_process(cycle) != NGX_OK
        || ngx_http_aihub_key_hash_init_process(cycle) != NGX_OK
        || ngx_http_aihub_provider_init_process(cycle, amcf) != NGX_OK
        || ngx_http_aihub_usage_init_process(cycle, amcf) != NGX_OK
        || ngx_http_aihub_models_init_process(cycle, amcf) != NGX_OK
        || ngx_http_aihub_grant_init_process(cycle, amcf) != NGX_OK
        || ngx_http_aihub_lease_init_process(cycle, amcf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_aihub_subscribe_init_process(amcf);
    ngx_http_aihub_redis_call_init_process();
    ngx_http_aihub_redis_on_connect(ngx_http_aihub_redis_connected);

    return ngx_http_aihub_redis_init_process(cycle, amcf);
}


/* the command connection is (again) up */

static void
ngx_http_aihub_redis_connected(redisAsyncContext *ac)
{
    /* first on the connection: every EVALSHA after it finds its script */
    ngx_http_aihub_scripts_load();

    /*
     * Redis may have restarted without its data, and the worker restored
     * it before this connection was made: it would know nothing of the
     * node's blocks, so they go back (first in the flush below)
     */
    ngx_http_aihub_lease_return_all(ngx_cycle->log);

    ngx_http_aihub_usage_flush();
    ngx_http_aihub_models_load(ac);
}


static void
ngx_http_aihub_exit_process(ngx_cycle_t *cycle)
{
    /* unconfirmed events come back to the buffer before it is counted */

    ngx_http_aihub_redis_exit_process();
    ngx_http_aihub_usage_exit_process();
}


static char *
ngx_http_aihub_msec_min(ngx_conf_t *cf, void *post, void *data)
{
    ngx_http_aihub_msec_min_t  *m = post;
    ngx_msec_t                 *ms = data;

    return *ms < m->min ? m->error : NGX_CONF_OK;
}
