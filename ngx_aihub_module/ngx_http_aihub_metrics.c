/*
 * Counters for operators, kept in the shared zone so that every worker
 * process adds to the same numbers, and served in Prometheus text format
 * by a location with "aihub_metrics;".
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_zone.h"
#include "ngx_http_aihub_metrics.h"


static ngx_int_t ngx_http_aihub_metrics_handler(ngx_http_request_t *r);
static u_char *ngx_http_aihub_metrics_lanes(ngx_shm_zone_t *zone, u_char *p);


/* NGX_HTTP_AIHUB_STATUSES - 1 codes, then 0: any other status */

static ngx_uint_t  ngx_http_aihub_metrics_codes[NGX_HTTP_AIHUB_STATUSES] = {
    200, 400, 401, 403, 404, 405, 413, 429, 500, 502, 503, 504, 0
};

/* used until the zone is known, and without one */
static ngx_http_aihub_metrics_t   ngx_http_aihub_metrics_local;
static ngx_http_aihub_metrics_t  *ngx_http_aihub_metrics_shared
    = &ngx_http_aihub_metrics_local;


void
ngx_http_aihub_metrics_init_process(ngx_http_aihub_main_conf_t *amcf)
{
    ngx_http_aihub_metrics_t  *m;

    m = ngx_http_aihub_zone_metrics(amcf->shm_zone);

    if (m) {
        ngx_http_aihub_metrics_shared = m;
    }
}


ngx_http_aihub_metrics_t *
ngx_http_aihub_metrics(void)
{
    return ngx_http_aihub_metrics_shared;
}


/* the log phase of every aihub request: its answer, by status */

ngx_int_t
ngx_http_aihub_metrics_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                 i, status;
    ngx_http_aihub_ctx_t      *ctx;
    ngx_http_aihub_metrics_t  *m;

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx == NULL || r != r->main) {
        return NGX_OK;
    }

    m = ngx_http_aihub_metrics_shared;
    status = r->headers_out.status;

    if (status >= 200 && status < 300) {
        status = 200;
    }

    for (i = 0; ngx_http_aihub_metrics_codes[i]; i++) {
        if (ngx_http_aihub_metrics_codes[i] == status) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&m->requests[i], 1);

    if (ctx->caller.from_stale) {
        (void) ngx_atomic_fetch_add(&m->failed_open, 1);
    }

    return NGX_OK;
}


char *
ngx_http_aihub_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_aihub_metrics_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aihub_metrics_handler(ngx_http_request_t *r)
{
    size_t                       len;
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_buf_t                   *b;
    ngx_uint_t                   i, entries;
    size_t                       zone_size;
    ngx_http_aihub_metrics_t    *m;
    ngx_http_aihub_main_conf_t  *amcf;

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);
    m = ngx_http_aihub_metrics_shared;

    ngx_http_aihub_zone_stats(amcf->shm_zone, &entries, &zone_size);

    len = 2560 + 13 * 96 + 1024
          + NGX_HTTP_AIHUB_LANES * (3 * 48 + NGX_HTTP_AIHUB_NAME_LEN * 3)
          + NGX_HTTP_AIHUB_LANE_PLANS * (4 * 64 + NGX_HTTP_AIHUB_PLAN_LEN * 4);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;

    p = ngx_sprintf(p, "# HELP aihub_requests_total Answers of aihub "
                    "locations, by status (\"other\": any other).\n"
                    "# TYPE aihub_requests_total counter\n");

    for (i = 0; ngx_http_aihub_metrics_codes[i]; i++) {
        if (ngx_http_aihub_metrics_codes[i] == 200) {
            p = ngx_sprintf(p, "aihub_requests_total{status=\"2xx\"} %uA\n",
                            m->requests[i]);
            continue;
        }

        p = ngx_sprintf(p, "aihub_requests_total{status=\"%ui\"} %uA\n",
                        ngx_http_aihub_metrics_codes[i], m->requests[i]);
    }

    p = ngx_sprintf(p, "aihub_requests_total{status=\"other\"} %uA\n",
                    m->requests[i]);

    p = ngx_sprintf(p,
        "# HELP aihub_failed_open_total Requests served without Redis "
        "(aihub_failure_mode open).\n"
        "# TYPE aihub_failed_open_total counter\n"
        "aihub_failed_open_total %uA\n"
        "# HELP aihub_usage_events_total Usage events: emitted, confirmed by "
        "Redis, dropped (buffer full), refused by Redis, unconfirmed when a "
        "worker process exited.\n"
        "# TYPE aihub_usage_events_total counter\n"
        "aihub_usage_events_total{state=\"emitted\"} %uA\n"
        "aihub_usage_events_total{state=\"confirmed\"} %uA\n"
        "aihub_usage_events_total{state=\"dropped\"} %uA\n"
        "aihub_usage_events_total{state=\"refused\"} %uA\n"
        "aihub_usage_events_total{state=\"lost_at_exit\"} %uA\n"
        "# HELP aihub_quota_calls_total Calls admitted against their "
        "account's quota: out of the node's lease, with no I/O, or after "
        "waiting for a lease from Redis.\n"
        "# TYPE aihub_quota_calls_total counter\n"
        "aihub_quota_calls_total{from=\"lease\"} %uA\n"
        "aihub_quota_calls_total{from=\"redis\"} %uA\n"
        "# HELP aihub_usage_events_buffered Usage events waiting for Redis "
        "in all worker processes.\n"
        "# TYPE aihub_usage_events_buffered gauge\n"
        "aihub_usage_events_buffered %A\n"
        "# HELP aihub_cache_keys Key records in the shared cache.\n"
        "# TYPE aihub_cache_keys gauge\n"
        "aihub_cache_keys %ui\n"
        "# HELP aihub_cache_zone_bytes Size of the shared cache zone.\n"
        "# TYPE aihub_cache_zone_bytes gauge\n"
        "aihub_cache_zone_bytes %uz\n",
        m->failed_open, m->events_emitted, m->events_confirmed,
        m->events_dropped, m->events_refused, m->events_lost,
        m->quota_from_lease, m->quota_from_redis,
        (ngx_atomic_int_t) (m->events_emitted - m->events_confirmed
                            - m->events_refused - m->events_lost),
        entries, zone_size);

    p = ngx_http_aihub_metrics_lanes(amcf->shm_zone, p);

    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    return ngx_http_aihub_send_buf(r, NGX_HTTP_OK,
                                   "text/plain; version=0.0.4; charset=utf-8",
                                   b);
}


/* the priority lanes: per provider now, per plan since the start */

static u_char *
ngx_http_aihub_metrics_lanes(ngx_shm_zone_t *zone, u_char *p)
{
    ngx_uint_t                      i, saturated;
    ngx_msec_t                      now;
    ngx_shmtx_t                    *mutex;
    ngx_http_aihub_lane_sh_t       *lanes, *l;
    ngx_http_aihub_lane_plan_sh_t  *plans, *pl;

    static ngx_http_aihub_lane_sh_t       lane_copy[NGX_HTTP_AIHUB_LANES];
    static ngx_http_aihub_lane_plan_sh_t  plan_copy[NGX_HTTP_AIHUB_LANE_PLANS];

    mutex = ngx_http_aihub_zone_lanes(zone, &lanes, &plans);

    if (mutex == NULL) {
        return p;
    }

    ngx_shmtx_lock(mutex);
    ngx_memcpy(lane_copy, lanes, sizeof(lane_copy));
    ngx_memcpy(plan_copy, plans, sizeof(plan_copy));
    ngx_shmtx_unlock(mutex);

    now = ngx_http_aihub_now_ms();

    p = ngx_sprintf(p,
        "# HELP aihub_lane_in_flight Calls in flight, per provider.\n"
        "# TYPE aihub_lane_in_flight gauge\n"
        "# HELP aihub_lane_queued Paid calls waiting, per provider.\n"
        "# TYPE aihub_lane_queued gauge\n"
        "# HELP aihub_lane_saturated 1 while the provider's 429 holds.\n"
        "# TYPE aihub_lane_saturated gauge\n");

    for (i = 0; i < NGX_HTTP_AIHUB_LANES; i++) {
        l = &lane_copy[i];

        if (l->name_len == 0) {
            break;
        }

        saturated = (l->saturated_until > now);

        p = ngx_sprintf(p,
                        "aihub_lane_in_flight{provider=\"%*s\"} %ui\n"
                        "aihub_lane_queued{provider=\"%*s\"} %ui\n"
                        "aihub_lane_saturated{provider=\"%*s\"} %ui\n",
                        l->name_len, l->name, l->in_flight,
                        l->name_len, l->name, l->queued,
                        l->name_len, l->name, saturated);
    }

    p = ngx_sprintf(p,
        "# HELP aihub_lane_plan_queued Calls waiting, per plan.\n"
        "# TYPE aihub_lane_plan_queued gauge\n"
        "# HELP aihub_lane_waits_total Calls that waited, per plan.\n"
        "# TYPE aihub_lane_waits_total counter\n"
        "# HELP aihub_lane_refusals_total Calls refused at a full or "
        "saturated provider, per plan.\n"
        "# TYPE aihub_lane_refusals_total counter\n"
        "# HELP aihub_lane_timeouts_total Calls that waited too long, "
        "per plan.\n"
        "# TYPE aihub_lane_timeouts_total counter\n");

    for (i = 0; i < NGX_HTTP_AIHUB_LANE_PLANS; i++) {
        pl = &plan_copy[i];

        if (pl->name_len == 0) {
            break;
        }

        p = ngx_sprintf(p,
                        "aihub_lane_plan_queued{plan=\"%*s\"} %ui\n"
                        "aihub_lane_waits_total{plan=\"%*s\"} %ui\n"
                        "aihub_lane_refusals_total{plan=\"%*s\"} %ui\n"
                        "aihub_lane_timeouts_total{plan=\"%*s\"} %ui\n",
                        pl->name_len, pl->name, pl->queued,
                        pl->name_len, pl->name, pl->waits,
                        pl->name_len, pl->name, pl->refusals,
                        pl->name_len, pl->name, pl->timeouts);
    }

    return p;
}
