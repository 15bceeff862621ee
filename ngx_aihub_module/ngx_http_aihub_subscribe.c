/*
 * Invalidations: every worker process subscribes to "<prefix>invalidate"
 * on its second Redis connection.  A message makes cached key records stale
 * at once ("key:<sha256hex>", "account:<id>", "all") or reloads the model
 * catalog ("models", "all").  The shared cache is marked by whichever
 * worker gets the message first; the others find nothing left to do.
 * A lost subscription is made again on reconnect, and the cache TTL is the
 * safety net for messages published while it was down.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_zone.h"
#include "ngx_http_aihub_models.h"
#include "ngx_http_aihub_subscribe.h"


static void ngx_http_aihub_subscribe(redisAsyncContext *ac);
static void ngx_http_aihub_subscribe_message(redisAsyncContext *ac,
    void *reply, void *privdata);


static ngx_shm_zone_t  *ngx_http_aihub_subscribe_zone;


void
ngx_http_aihub_subscribe_init_process(ngx_http_aihub_main_conf_t *amcf)
{
    ngx_http_aihub_subscribe_zone = amcf->shm_zone;
    ngx_http_aihub_redis_sub_on_connect(ngx_http_aihub_subscribe);
}


static void
ngx_http_aihub_subscribe(redisAsyncContext *ac)
{
    u_char                      *p;
    const char                  *argv[2];
    size_t                       argvlen[2];
    u_char                       channel[256];
    ngx_http_aihub_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_aihub_module);

    if (amcf->redis_prefix.len + sizeof(AIHUB_RK_INVALIDATE)
        > sizeof(channel))
    {
        return;
    }

    p = ngx_cpymem(channel, amcf->redis_prefix.data, amcf->redis_prefix.len);
    p = ngx_cpymem(p, AIHUB_RK_INVALIDATE, sizeof(AIHUB_RK_INVALIDATE) - 1);

    argv[0] = "SUBSCRIBE";
    argvlen[0] = sizeof("SUBSCRIBE") - 1;
    argv[1] = (const char *) channel;
    argvlen[1] = p - channel;

    if (redisAsyncCommandArgv(ac, ngx_http_aihub_subscribe_message, NULL,
                              2, argv, argvlen)
        != REDIS_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "aihub: could not subscribe to invalidations");
        return;
    }

    /* anything published while we were away may be missed: start fresh */

    ngx_http_aihub_zone_invalidate(ngx_http_aihub_subscribe_zone,
                                   (u_char *) AIHUB_INV_ALL,
                                   sizeof(AIHUB_INV_ALL) - 1);
}


static void
ngx_http_aihub_subscribe_message(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply  *rep = reply, *kind, *msg;

    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
    {
        return;
    }

    kind = rep->element[0];
    msg = rep->element[2];

    if (kind->type != REDIS_REPLY_STRING || kind->len != 7
        || ngx_strncmp(kind->str, "message", 7) != 0
        || msg->type != REDIS_REPLY_STRING)
    {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "aihub: invalidation \"%s\"", msg->str);

    if ((msg->len == sizeof(AIHUB_INV_MODELS) - 1
         && ngx_strncmp(msg->str, AIHUB_INV_MODELS,
                        sizeof(AIHUB_INV_MODELS) - 1) == 0)
        || (msg->len == sizeof(AIHUB_INV_ALL) - 1
            && ngx_strncmp(msg->str, AIHUB_INV_ALL,
                           sizeof(AIHUB_INV_ALL) - 1) == 0))
    {
        ngx_http_aihub_models_load(NULL);
    }

    ngx_http_aihub_zone_invalidate(ngx_http_aihub_subscribe_zone,
                                    (u_char *) msg->str, msg->len);
}
