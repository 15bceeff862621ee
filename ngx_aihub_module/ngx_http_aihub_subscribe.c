/*
 * Invalidations: every worker process subscribes to "<prefix>invalidate"
 * on its second Redis connection.  A message makes cached key records stale
 * at once ("key:<sha256hex>", "account:<id>", "all") or reloads the model
 * catalog ("models", "all").  The shared cache is marked by whichever
 * worker gets the message first; the others find nothing left to do.
 * A lost subscription is made again on reconnect.
 *
 * A subscription can also go deaf without the connection closing (a
 * half-open socket, a Redis that lost its subscribers): each worker process
 * publishes a heartbeat to a channel of its own every second and listens
 * for it.  While it has heard none for three seconds, no cached key record
 * counts as fresh (each request reads its key from Redis, so revocations
 * still take effect at once) and the subscriber connection is made again;
 * when it hears again, the cache starts fresh.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_zone.h"
#include "ngx_http_aihub_models.h"
#include "ngx_http_aihub_lease.h"
#include "ngx_http_aihub_subscribe.h"


#define NGX_HTTP_AIHUB_HEARTBEAT       1000  /* ms between heartbeats */
#define NGX_HTTP_AIHUB_DEAF_AFTER      3000  /* ms without one: deaf */


static void ngx_http_aihub_subscribe(redisAsyncContext *ac);
static void ngx_http_aihub_heartbeat_handler(ngx_event_t *ev);
static void ngx_http_aihub_subscribe_message(redisAsyncContext *ac,
    void *reply, void *privdata);
static ngx_uint_t ngx_http_aihub_subscribe_heartbeat(redisReply *chan);
static void ngx_http_aihub_subscribe_lost(void);


static ngx_shm_zone_t  *ngx_http_aihub_subscribe_zone;
static ngx_event_t      ngx_http_aihub_heartbeat;

/* what a timer's data names in nginx's debug log (NULL would crash it) */
static ngx_connection_t ngx_http_aihub_heartbeat_ident;
static ngx_str_t        ngx_http_aihub_heartbeat_channel;
static ngx_msec_t       ngx_http_aihub_heard;       /* last heartbeat */
static ngx_msec_t       ngx_http_aihub_deaf_reset;  /* last reconnect */


void
ngx_http_aihub_subscribe_init_process(ngx_http_aihub_main_conf_t *amcf)
{
    u_char  *p;
    size_t   len;

    ngx_http_aihub_subscribe_zone = amcf->shm_zone;
    ngx_http_aihub_redis_sub_on_connect(ngx_http_aihub_subscribe);
    ngx_http_aihub_redis_sub_on_lost(ngx_http_aihub_subscribe_lost);

    /* <prefix>heartbeat:<node>:<pid> */

    len = amcf->redis_prefix.len + sizeof(AIHUB_RK_HEARTBEAT) - 1
          + amcf->node.len + 1 + NGX_INT_T_LEN;

    p = ngx_alloc(len, ngx_cycle->log);
    if (p == NULL) {
        return;
    }

    ngx_http_aihub_heartbeat_channel.data = p;
    p = ngx_cpymem(p, amcf->redis_prefix.data, amcf->redis_prefix.len);
    p = ngx_cpymem(p, AIHUB_RK_HEARTBEAT, sizeof(AIHUB_RK_HEARTBEAT) - 1);
    p = ngx_sprintf(p, "%V:%P", &amcf->node, ngx_pid);
    ngx_http_aihub_heartbeat_channel.len =
                                 p - ngx_http_aihub_heartbeat_channel.data;

    ngx_http_aihub_heartbeat.handler = ngx_http_aihub_heartbeat_handler;
    ngx_http_aihub_heartbeat.log = ngx_cycle->log;
    ngx_http_aihub_heartbeat.cancelable = 1;
    ngx_http_aihub_heartbeat_ident.fd = (ngx_socket_t) -1;
    ngx_http_aihub_heartbeat.data = &ngx_http_aihub_heartbeat_ident;

    /* a grace period for the first subscription; until a heartbeat is
       heard, no cached record counts as fresh */
    ngx_http_aihub_heard = ngx_http_aihub_now_ms();
    ngx_http_aihub_deaf_reset = ngx_http_aihub_heard;

    ngx_add_timer(&ngx_http_aihub_heartbeat, NGX_HTTP_AIHUB_HEARTBEAT);
}


static void
ngx_http_aihub_heartbeat_handler(ngx_event_t *ev)
{
    ngx_msec_t   now;
    const char  *argv[3];
    size_t       argvlen[3];

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    now = ngx_http_aihub_now_ms();

    if (!ngx_http_aihub_redis_sub_ready()) {
        /* the subscription is down (Redis itself is away, most likely):
           nothing is fresh, failing open may serve what is not known to
           have changed */
        ngx_http_aihub_zone_trust(ngx_http_aihub_subscribe_zone, 0);

    } else if (!ngx_http_aihub_redis_ready()) {
        /* only the other connection is down (reconnecting at once): the
           subscription still hears what the worker publishes; it counts
           as deaf once it has heard no heartbeat for DEAF_AFTER */
        if (now - ngx_http_aihub_heard > NGX_HTTP_AIHUB_DEAF_AFTER) {
            ngx_http_aihub_zone_trust(ngx_http_aihub_subscribe_zone, 0);
        }

    } else {
        argv[0] = "PUBLISH";
        argvlen[0] = sizeof("PUBLISH") - 1;
        argv[1] = (const char *) ngx_http_aihub_heartbeat_channel.data;
        argvlen[1] = ngx_http_aihub_heartbeat_channel.len;
        argv[2] = "1";
        argvlen[2] = 1;

        (void) ngx_http_aihub_redis_send(NULL, NULL, 3, argv, argvlen);

        if (now - ngx_http_aihub_heard > NGX_HTTP_AIHUB_DEAF_AFTER) {
            ngx_http_aihub_zone_trust(ngx_http_aihub_subscribe_zone, 0);

            if (now - ngx_http_aihub_deaf_reset > NGX_HTTP_AIHUB_DEAF_AFTER)
            {
                ngx_http_aihub_deaf_reset = now;
                ngx_http_aihub_redis_sub_reset();
            }
        }
    }

    ngx_add_timer(ev, NGX_HTTP_AIHUB_HEARTBEAT);
}


static void
ngx_http_aihub_subscribe(redisAsyncContext *ac)
{
    u_char                      *p;
    const char                  *argv[3];
    size_t                       argvlen[3];
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
    argv[2] = (const char *) ngx_http_aihub_heartbeat_channel.data;
    argvlen[2] = ngx_http_aihub_heartbeat_channel.len;

    if (redisAsyncCommandArgv(ac, ngx_http_aihub_subscribe_message, NULL,
                              argv[2] ? 3 : 2, argv, argvlen)
        != REDIS_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "aihub: could not subscribe to invalidations");
        return;
    }

    /*
     * anything published while we were away may be missed: start fresh,
     * the catalog included (it may have been read from an empty Redis)
     */

    ngx_http_aihub_zone_invalidate(ngx_http_aihub_subscribe_zone,
                                   (u_char *) AIHUB_INV_ALL,
                                   sizeof(AIHUB_INV_ALL) - 1);
    ngx_http_aihub_models_load(NULL);
}


/*
 * The subscription's connection is gone: nothing published from now on is
 * heard, so no cached record is fresh until a new SUBSCRIBE is confirmed
 * (a revoked key is read from Redis, and refused, or 503 while Redis is
 * away).
 */

static void
ngx_http_aihub_subscribe_lost(void)
{
    ngx_http_aihub_zone_trust(ngx_http_aihub_subscribe_zone, 0);
}


/* a reply's channel is the heartbeat's */

static ngx_uint_t
ngx_http_aihub_subscribe_heartbeat(redisReply *chan)
{
    return chan->type == REDIS_REPLY_STRING
           && (size_t) chan->len == ngx_http_aihub_heartbeat_channel.len
           && ngx_strncmp(chan->str, ngx_http_aihub_heartbeat_channel.data,
                          chan->len) == 0;
}


static void
ngx_http_aihub_subscribe_message(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_uint_t   all;
    redisReply  *rep = reply, *kind, *chan, *msg;

    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
    {
        return;
    }

    kind = rep->element[0];
    chan = rep->element[1];
    msg = rep->element[2];

    if (kind->type == REDIS_REPLY_STRING && kind->len == 9
        && ngx_strncmp(kind->str, "subscribe", 9) == 0
        && !ngx_http_aihub_subscribe_heartbeat(chan))
    {
        /*
         * The invalidations are heard from now on (Redis confirms a
         * subscription once it is in place).  Trusting the cache from here
         * starts it fresh once more: a record read while the SUBSCRIBE was
         * on its way is read again.  Without this the cache would wait
         * for the first heartbeat, and every call of the first second
         * after a start would read its key from Redis.
         */
        ngx_http_aihub_heard = ngx_http_aihub_now_ms();
        ngx_http_aihub_zone_trust(ngx_http_aihub_subscribe_zone, 1);
        return;
    }

    if (kind->type != REDIS_REPLY_STRING || kind->len != 7
        || ngx_strncmp(kind->str, "message", 7) != 0
        || msg->type != REDIS_REPLY_STRING)
    {
        return;
    }

    if (ngx_http_aihub_subscribe_heartbeat(chan)) {
        /* our own heartbeat: the subscription hears */

        if (ngx_http_aihub_now_ms() - ngx_http_aihub_heard
            > NGX_HTTP_AIHUB_DEAF_AFTER)
        {
            /* it was deaf: the catalog may have changed unheard */
            ngx_http_aihub_models_load(NULL);
        }

        ngx_http_aihub_heard = ngx_http_aihub_now_ms();
        ngx_http_aihub_zone_trust(ngx_http_aihub_subscribe_zone, 1);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "aihub: invalidation \"%s\"", msg->str);

    all = (msg->len == sizeof(AIHUB_INV_ALL) - 1
           && ngx_strncmp(msg->str, AIHUB_INV_ALL,
                          sizeof(AIHUB_INV_ALL) - 1) == 0);

    if (all
        || (msg->len == sizeof(AIHUB_INV_MODELS) - 1
            && ngx_strncmp(msg->str, AIHUB_INV_MODELS,
                           sizeof(AIHUB_INV_MODELS) - 1) == 0))
    {
        ngx_http_aihub_models_load(NULL);
    }

    if (all) {
        /*
         * everything may have changed, the period counters too: the worker
         * says so once it has restored Redis from the ledger, which knows
         * nothing of the node's blocks
         */
        ngx_http_aihub_lease_return_all(ngx_cycle->log);
    }

    ngx_http_aihub_zone_invalidate(ngx_http_aihub_subscribe_zone,
                                    (u_char *) msg->str, msg->len);
}
