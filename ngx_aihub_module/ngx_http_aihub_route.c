/*
 * The state of each route (a provider) that all worker processes share,
 * kept beside its lane in the cache zone: until when the provider said it
 * is saturated (its 429), and its circuit breaker (failures in a row, and
 * until when it is left out of the routes).  The lane (lane.c) and the
 * fallback routes (fallback.c) read it.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_zone.h"
#include "ngx_http_aihub_lane.h"
#include "ngx_http_aihub_route.h"


/*
 * A provider's 429: nobody new is sent to it for "sec" seconds (0: the
 * default backoff); free calls are refused meanwhile, paid calls wait or
 * take a fallback route.
 */

void
ngx_http_aihub_route_saturate(ngx_http_request_t *r, ngx_str_t *provider,
    ngx_int_t sec)
{
    ngx_msec_t                      until;
    ngx_shmtx_t                    *mutex;
    ngx_http_aihub_lane_sh_t       *lanes, *lane;
    ngx_http_aihub_main_conf_t     *amcf;
    ngx_http_aihub_lane_plan_sh_t  *plans;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    mutex = ngx_http_aihub_zone_lanes(amcf->shm_zone, &lanes, &plans);

    if (mutex == NULL) {
        return;
    }

    until = ngx_http_aihub_now_ms()
            + (sec > 0 ? (ngx_msec_t) sec * 1000 : amcf->lane_backoff);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aihub: provider \"%V\" answered 429, saturated for "
                  "%M ms", provider, until - ngx_http_aihub_now_ms());

    ngx_shmtx_lock(mutex);

    lane = ngx_http_aihub_lane_find(lanes, provider, 1);

    if (lane && lane->saturated_until < until) {
        lane->saturated_until = until;
    }

    ngx_shmtx_unlock(mutex);
}


/*
 * A route (a provider) as the fallback logic sees it: NGX_OK, NGX_BUSY
 * (saturated by its 429) or NGX_DECLINED (its circuit breaker is open).
 */

ngx_int_t
ngx_http_aihub_route_state(ngx_http_request_t *r, ngx_str_t *provider)
{
    ngx_int_t                       rc;
    ngx_msec_t                      now;
    ngx_shmtx_t                    *mutex;
    ngx_http_aihub_lane_sh_t       *lanes, *lane;
    ngx_http_aihub_main_conf_t     *amcf;
    ngx_http_aihub_lane_plan_sh_t  *plans;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    mutex = ngx_http_aihub_zone_lanes(amcf->shm_zone, &lanes, &plans);

    if (mutex == NULL) {
        return NGX_OK;
    }

    now = ngx_http_aihub_now_ms();
    rc = NGX_OK;

    ngx_shmtx_lock(mutex);

    lane = ngx_http_aihub_lane_find(lanes, provider, 0);

    if (lane && lane->open_until > now) {
        rc = NGX_DECLINED;

    } else if (lane && lane->saturated_until > now) {
        rc = NGX_BUSY;
    }

    ngx_shmtx_unlock(mutex);

    return rc;
}


/*
 * The circuit breaker: "aihub_fallback breaker=" failures in a row take a
 * route out for "breaker_time="; after it, one call tries it again, and a
 * success closes it.
 */

void
ngx_http_aihub_route_result(ngx_http_request_t *r, ngx_str_t *provider,
    ngx_uint_t ok)
{
    ngx_shmtx_t                    *mutex;
    ngx_http_aihub_lane_sh_t       *lanes, *lane;
    ngx_http_aihub_main_conf_t     *amcf;
    ngx_http_aihub_lane_plan_sh_t  *plans;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    mutex = ngx_http_aihub_zone_lanes(amcf->shm_zone, &lanes, &plans);

    if (mutex == NULL || amcf->breaker_fails == 0) {
        return;
    }

    ngx_shmtx_lock(mutex);

    lane = ngx_http_aihub_lane_find(lanes, provider, 1);

    if (lane && ok) {
        lane->failures = 0;
        lane->open_until = 0;

    } else if (lane && ++lane->failures >= amcf->breaker_fails) {
        lane->open_until = ngx_http_aihub_now_ms() + amcf->breaker_time;

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aihub: provider \"%V\" failed %ui times in a row, "
                      "out of the routes for %M ms", provider,
                      lane->failures, amcf->breaker_time);
    }

    ngx_shmtx_unlock(mutex);
}
