/*
 * One asynchronous hiredis connection per nginx worker process, driven by
 * nginx's event loop: connected in init_process, reconnected with backoff,
 * with our own connect timeout (hiredis 0.14 has none).  The commands of
 * requests, with their reply timeouts: ngx_http_aihub_redis_call.c.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_redis_events.h"
#include "ngx_http_aihub_resp.h"
#include "ngx_http_aihub_redis_auth.h"


#define NGX_HTTP_AIHUB_BACKOFF_MIN   100
#define NGX_HTTP_AIHUB_BACKOFF_MAX   5000
#define NGX_HTTP_AIHUB_WATCHDOG      1000


typedef struct {
    redisAsyncContext                *ac;
    ngx_uint_t                        connected;
    ngx_uint_t                        exiting;
    ngx_msec_t                        backoff;
    ngx_msec_t                        at_once;        /* reconnected at
                                                         once, last */
    ngx_msec_t                        last_reply;
    ngx_msec_t                        not_ready_said; /* 0: not since */
    ngx_uint_t                        not_ready;      /* times since */
    ngx_uint_t                        inflight;
    ngx_uint_t                        refused;        /* the credentials */
    ngx_event_t                       reconnect;
    ngx_event_t                       connect_timeout;
    ngx_event_t                       watchdog;
    ngx_log_t                        *log;
    ngx_http_aihub_main_conf_t       *amcf;
    void                            (*on_connect)(redisAsyncContext *ac);
    void                            (*on_lost)(void);
    const char                       *name;
} ngx_http_aihub_redis_t;


static void ngx_http_aihub_redis_init_conn(ngx_http_aihub_redis_t *rd,
    ngx_cycle_t *cycle, ngx_http_aihub_main_conf_t *amcf, const char *name);
static void ngx_http_aihub_redis_connect(ngx_http_aihub_redis_t *rd);
static void ngx_http_aihub_redis_schedule(ngx_http_aihub_redis_t *rd);
static void ngx_http_aihub_redis_close(ngx_http_aihub_redis_t *rd);
static void ngx_http_aihub_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_http_aihub_redis_connect_timeout_handler(ngx_event_t *ev);
static void ngx_http_aihub_redis_watchdog_handler(ngx_event_t *ev);
static void ngx_http_aihub_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_aihub_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_http_aihub_redis_authed(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_aihub_redis_usable(ngx_http_aihub_redis_t *rd);


/* commands, and a second connection in subscribe mode */

static ngx_http_aihub_redis_t  ngx_http_aihub_redis;
static ngx_http_aihub_redis_t  ngx_http_aihub_redis_sub;

static const ngx_http_aihub_redis_waiters_t  *ngx_http_aihub_redis_waiters;


ngx_int_t
ngx_http_aihub_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    if (ngx_http_aihub_redis_auth_init_process(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_aihub_redis_init_conn(&ngx_http_aihub_redis, cycle, amcf,
                                   "redis");
    ngx_http_aihub_redis_init_conn(&ngx_http_aihub_redis_sub, cycle, amcf,
                                   "redis subscriber");

    ngx_add_timer(&ngx_http_aihub_redis.watchdog, NGX_HTTP_AIHUB_WATCHDOG);

    ngx_http_aihub_redis_connect(&ngx_http_aihub_redis);
    ngx_http_aihub_redis_connect(&ngx_http_aihub_redis_sub);

    return NGX_OK;
}


static void
ngx_http_aihub_redis_init_conn(ngx_http_aihub_redis_t *rd, ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf, const char *name)
{
    rd->log = cycle->log;
    rd->amcf = amcf;
    rd->name = name;
    rd->backoff = NGX_HTTP_AIHUB_BACKOFF_MIN;

    rd->reconnect.handler = ngx_http_aihub_redis_reconnect_handler;
    rd->reconnect.log = cycle->log;
    rd->reconnect.data = rd;
    rd->reconnect.cancelable = 1;

    rd->connect_timeout.handler = ngx_http_aihub_redis_connect_timeout_handler;
    rd->connect_timeout.log = cycle->log;
    rd->connect_timeout.data = rd;
    rd->connect_timeout.cancelable = 1;

    rd->watchdog.handler = ngx_http_aihub_redis_watchdog_handler;
    rd->watchdog.log = cycle->log;
    rd->watchdog.data = rd;
    rd->watchdog.cancelable = 1;
}


void
ngx_http_aihub_redis_exit_process(void)
{
    ngx_http_aihub_redis_close(&ngx_http_aihub_redis);
    ngx_http_aihub_redis_close(&ngx_http_aihub_redis_sub);
}


static void
ngx_http_aihub_redis_close(ngx_http_aihub_redis_t *rd)
{
    rd->exiting = 1;

    if (rd->reconnect.timer_set) {
        ngx_del_timer(&rd->reconnect);
    }

    if (rd->connect_timeout.timer_set) {
        ngx_del_timer(&rd->connect_timeout);
    }

    if (rd->watchdog.timer_set) {
        ngx_del_timer(&rd->watchdog);
    }

    if (rd->ac) {
        redisAsyncFree(rd->ac);
        rd->ac = NULL;
    }

    if (rd == &ngx_http_aihub_redis && ngx_http_aihub_redis_waiters) {
        ngx_http_aihub_redis_waiters->fail();
    }
}


void
ngx_http_aihub_redis_on_connect(void (*handler)(redisAsyncContext *ac))
{
    ngx_http_aihub_redis.on_connect = handler;
}


void
ngx_http_aihub_redis_on_waiters(const ngx_http_aihub_redis_waiters_t *waiters)
{
    ngx_http_aihub_redis_waiters = waiters;
}


void
ngx_http_aihub_redis_sub_on_connect(void (*handler)(redisAsyncContext *ac))
{
    ngx_http_aihub_redis_sub.on_connect = handler;
}


void
ngx_http_aihub_redis_sub_on_lost(void (*handler)(void))
{
    ngx_http_aihub_redis_sub.on_lost = handler;
}


/*
 * Redis answered that it is not ready (LOADING: reading its AOF or RDB
 * after a restart): the command connection is dropped, so that what was
 * sent on it (a batch among it) comes back with no reply and goes again,
 * and made again every NGX_HTTP_AIHUB_BACKOFF_MIN ms, not after a backoff
 * that grows: this Redis is up and serves again the moment its data is
 * read, which may take minutes, and a backoff grown to its 5 s would keep
 * every call refused for up to 5 s after that.
 */

void
ngx_http_aihub_redis_not_ready(const char *why)
{
    ngx_msec_t               now;
    ngx_http_aihub_redis_t  *rd = &ngx_http_aihub_redis;

    if (rd->ac != NULL && rd->connected && !rd->exiting) {
        now = ngx_http_aihub_now_ms();
        rd->not_ready++;

        /* said at most every 10 s: a long load is tried 100 times as often */

        if (rd->not_ready_said == 0 || now - rd->not_ready_said >= 10000) {
            ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                          "aihub: redis at \"%s\" is not ready (%s), "
                          "reconnecting every %M ms (%ui times since the "
                          "last such line)", rd->amcf->redis_host.data, why,
                          (ngx_msec_t) NGX_HTTP_AIHUB_BACKOFF_MIN,
                          rd->not_ready);
            rd->not_ready_said = now;
            rd->not_ready = 0;
        }

        rd->backoff = NGX_HTTP_AIHUB_BACKOFF_MIN;

        redisAsyncFree(rd->ac);
    }
}


/*
 * Redis answered a command that it requires credentials, and the node
 * gave none: the command connection is dropped, and made again with the
 * growing backoff
 */

void
ngx_http_aihub_redis_no_credentials(const char *err)
{
    ngx_http_aihub_redis_t  *rd = &ngx_http_aihub_redis;

    if (rd->ac != NULL && rd->connected && !rd->exiting
        && ngx_http_aihub_redis_auth_missing(err, rd->name))
    {
        rd->connected = 0;
        rd->refused = 1;
        redisAsyncDisconnect(rd->ac);
    }
}


/* the subscription went deaf: the connection is dropped and made again */

void
ngx_http_aihub_redis_sub_reset(void)
{
    ngx_http_aihub_redis_t  *rd = &ngx_http_aihub_redis_sub;

    if (rd->ac != NULL && rd->connected && !rd->exiting) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "aihub: %s at \"%s\" hears nothing, reconnecting",
                      rd->name, rd->amcf->redis_host.data);

        redisAsyncFree(rd->ac);
    }
}


ngx_int_t
ngx_http_aihub_redis_ready(void)
{
    return ngx_http_aihub_redis.connected && ngx_http_aihub_redis.ac != NULL;
}


/* the subscription's connection is up (whether it hears is the
   heartbeat's business) */

ngx_int_t
ngx_http_aihub_redis_sub_ready(void)
{
    return ngx_http_aihub_redis_sub.connected
           && ngx_http_aihub_redis_sub.ac != NULL;
}


static void
ngx_http_aihub_redis_connect(ngx_http_aihub_redis_t *rd)
{
    redisAsyncContext           *ac;
    ngx_connection_t            *c;
    ngx_http_aihub_main_conf_t  *amcf = rd->amcf;

    if (amcf->redis_port == 0) {
        ac = redisAsyncConnectUnix((char *) amcf->redis_host.data);

    } else {
        ac = redisAsyncConnect((char *) amcf->redis_host.data,
                               (int) amcf->redis_port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "aihub: %s connect to \"%s\" failed: out of memory",
                      rd->name, amcf->redis_host.data);
        ngx_http_aihub_redis_schedule(rd);
        return;
    }

    if (ac->err) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "aihub: %s connect to \"%s\" failed: %s",
                      rd->name, amcf->redis_host.data, ac->errstr);
        redisAsyncFree(ac);
        ngx_http_aihub_redis_schedule(rd);
        return;
    }

    /* TCP keepalive, probes after 15 s idle: a connection dropped
       silently is found while idle, not by the calls that next need it */

    if (amcf->redis_port != 0 && redisEnableKeepAlive(&ac->c) != REDIS_OK) {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "aihub: %s connection to \"%s\": no TCP keepalive: %s",
                      rd->name, amcf->redis_host.data, ac->c.errstr);
        ac->c.err = 0;
        ac->c.errstr[0] = '\0';
    }

    c = ngx_get_connection(ac->c.fd, rd->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_aihub_redis_schedule(rd);
        return;
    }

    c->read->log = rd->log;
    c->write->log = rd->log;

    ac->data = rd;
    ngx_http_aihub_redis_attach(ac, c);

    rd->ac = ac;
    rd->connected = 0;

    /* the connect callback arms the write event that completes connect() */

    redisAsyncSetConnectCallback(ac, ngx_http_aihub_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_http_aihub_redis_disconnected);

    ngx_add_timer(&rd->connect_timeout, rd->amcf->redis_timeout);
}


static void
ngx_http_aihub_redis_schedule(ngx_http_aihub_redis_t *rd)
{
    /* the calls held for a reconnect at once: it did not work */

    if (rd == &ngx_http_aihub_redis && (rd->backoff > 1 || rd->exiting)
        && ngx_http_aihub_redis_waiters)
    {
        ngx_http_aihub_redis_waiters->fail();
    }

    if (rd->exiting) {
        return;
    }

    if (!rd->reconnect.timer_set) {
        ngx_add_timer(&rd->reconnect, rd->backoff);
    }

    rd->backoff *= 2;

    if (rd->backoff > NGX_HTTP_AIHUB_BACKOFF_MAX) {
        rd->backoff = NGX_HTTP_AIHUB_BACKOFF_MAX;
    }
}


static void
ngx_http_aihub_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_http_aihub_redis_t  *rd = ev->data;

    if (rd->ac == NULL && !rd->exiting) {
        ngx_http_aihub_redis_connect(rd);
    }
}


static void
ngx_http_aihub_redis_connect_timeout_handler(ngx_event_t *ev)
{
    ngx_http_aihub_redis_t  *rd = ev->data;

    if (rd->ac == NULL || rd->connected) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                  "aihub: %s connect to \"%s\" timed out",
                  rd->name, rd->amcf->redis_host.data);

    /* not connected yet: hiredis calls no disconnect callback */

    redisAsyncFree(rd->ac);
    rd->ac = NULL;

    ngx_http_aihub_redis_schedule(rd);
}


/*
 * A connection that stopped answering (a half-open socket, a Redis stuck
 * for far longer than our timeout) is dropped and made again, so that
 * buffered events find a working connection; their callbacks run with a
 * NULL reply and put them back in the buffer.  What it waits for are the
 * commands counted by ngx_http_aihub_redis_sent(): requests' commands,
 * batches, lease refills and sweeps.
 */

static void
ngx_http_aihub_redis_watchdog_handler(ngx_event_t *ev)
{
    ngx_msec_t               limit;
    ngx_http_aihub_redis_t  *rd = ev->data;

    if (rd->exiting) {
        return;
    }

    limit = 10 * rd->amcf->redis_timeout + 5000;

    if (rd->connected && rd->ac && rd->inflight
        && ngx_http_aihub_now_ms() - rd->last_reply > limit)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "aihub: redis at \"%s\" sent nothing for %M ms "
                      "with %ui commands waiting, reconnecting",
                      rd->amcf->redis_host.data, limit, rd->inflight);

        redisAsyncFree(rd->ac);
    }

    ngx_add_timer(&rd->watchdog, NGX_HTTP_AIHUB_WATCHDOG);
}


static void
ngx_http_aihub_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_aihub_redis_t  *rd = ac->data;

    if (rd->connect_timeout.timer_set) {
        ngx_del_timer(&rd->connect_timeout);
    }

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "aihub: %s connect to \"%s\" failed: %s",
                      rd->name, rd->amcf->redis_host.data, ac->errstr);

        /* hiredis frees the context after this callback */

        rd->ac = NULL;
        rd->connected = 0;
        ngx_http_aihub_redis_schedule(rd);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                  "aihub: %s connected to \"%s\"",
                  rd->name, rd->amcf->redis_host.data);

    rd->connected = 1;
    rd->last_reply = ngx_http_aihub_now_ms();
    rd->inflight = 0;

    /*
     * the credentials first, if any, and at once behind them what a new
     * connection sends first (the scripts): Redis runs a connection's
     * commands in order, so a call's grant sent in AUTH's round trip
     * finds them.  Before, they waited for AUTH's reply, and a grant sent
     * meanwhile to a restarted Redis went ahead of them: NOSCRIPT, 503.
     * Credentials refused: everything behind fails too (NOAUTH), and the
     * connection goes.
     */

    (void) ngx_http_aihub_redis_auth_send(rd->ac, ngx_http_aihub_redis_authed,
                                          rd);

    ngx_http_aihub_redis_usable(rd);
}


static void
ngx_http_aihub_redis_authed(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_aihub_redis_t  *rd = privdata;

    if (reply == NULL) {
        return;
    }

    if (ngx_http_aihub_redis_auth_refused(reply, rd->name)) {
        /* not made again at once: the backoff, as for a refused connect */
        rd->connected = 0;
        rd->refused = 1;
        redisAsyncDisconnect(ac);
        return;
    }

    rd->refused = 0;
    rd->backoff = NGX_HTTP_AIHUB_BACKOFF_MIN;
}


static void
ngx_http_aihub_redis_usable(ngx_http_aihub_redis_t *rd)
{
    /* the backoff keeps growing while Redis refuses the credentials */

    if (!rd->refused) {
        rd->backoff = NGX_HTTP_AIHUB_BACKOFF_MIN;
    }

    if (rd->on_connect) {
        rd->on_connect(rd->ac);
    }

    if (rd == &ngx_http_aihub_redis && ngx_http_aihub_redis_waiters) {
        /* after the scripts, on the same connection */
        ngx_http_aihub_redis_waiters->resume(rd->ac);
    }
}


static void
ngx_http_aihub_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_msec_t               now;
    ngx_http_aihub_redis_t  *rd = ac->data;

    if (!rd->exiting) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "aihub: %s connection to \"%s\" lost%s%s",
                      rd->name, rd->amcf->redis_host.data,
                      ac->errstr[0] ? ": " : "", ac->errstr);
    }

    /*
     * A connection that was made and broke (a reset, an idle timeout, a
     * proxy or failover in between) is made again at once, and the calls
     * that need Redis meanwhile wait for it; if that reconnect fails they
     * fail (or fail open).  At once at most every NGX_HTTP_AIHUB_BACKOFF_MIN
     * ms: a Redis that keeps dropping new connections meets the backoff.
     * (Not the connection's age: one cut 50 ms after it was made, as the
     * first after a start or a reload may be, failed the calls of the next
     * 100 ms, thousands under load, t/88.)  Not one lost for want of
     * credentials (NOAUTH: a subscriber's error closes it): that meets the
     * backoff, grown from one connection to the next.
     */

    now = ngx_http_aihub_now_ms();

    if (ngx_http_aihub_redis_auth_missing(ac->errstr, rd->name)) {
        rd->refused = 1;

    } else if (rd->connected) {
        rd->refused = 0;
    }

    if (rd->connected && !rd->refused
        && now - rd->at_once >= NGX_HTTP_AIHUB_BACKOFF_MIN)
    {
        rd->at_once = now;
        rd->backoff = 1;

        /* the calls meanwhile wait for it (within their timeouts) */

        if (rd == &ngx_http_aihub_redis && !rd->exiting
            && ngx_http_aihub_redis_waiters)
        {
            ngx_http_aihub_redis_waiters->hold();
        }
    }

    rd->ac = NULL;
    rd->connected = 0;
    rd->inflight = 0;

    if (rd->on_lost) {
        rd->on_lost();
    }

    ngx_http_aihub_redis_schedule(rd);
}


/* a command with its own hiredis callback (the callback always runs) */

ngx_int_t
ngx_http_aihub_redis_send(redisCallbackFn *fn, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_http_aihub_redis_t  *rd = &ngx_http_aihub_redis;

    if (!ngx_http_aihub_redis_ready()) {
        return NGX_DECLINED;
    }

    if (ngx_http_aihub_redis_command(rd->ac, fn, data, argc, argv, argvlen)
        != REDIS_OK)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the command connection, for ngx_http_aihub_redis_call.c */

redisAsyncContext *
ngx_http_aihub_redis_context(void)
{
    return ngx_http_aihub_redis_ready() ? ngx_http_aihub_redis.ac : NULL;
}


/*
 * A command whose reply is awaited (a request's, a batch's).  The silence
 * the watchdog measures starts at the last reply or, when none was
 * awaited before, now: after a quiet while (calls admitted from leases
 * with cached keys need no reply) the last reply may be minutes old, and
 * the first command after it is not late.
 */

void
ngx_http_aihub_redis_sent(void)
{
    ngx_http_aihub_redis_t  *rd = &ngx_http_aihub_redis;

    if (rd->inflight == 0) {
        rd->last_reply = ngx_http_aihub_now_ms();
    }

    rd->inflight++;
}


void
ngx_http_aihub_redis_replied(ngx_uint_t reply)
{
    ngx_http_aihub_redis_t  *rd = &ngx_http_aihub_redis;

    if (rd->inflight) {
        rd->inflight--;
    }

    if (reply) {
        rd->last_reply = ngx_http_aihub_now_ms();
    }
}
