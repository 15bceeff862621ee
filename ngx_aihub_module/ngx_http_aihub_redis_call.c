/*
 * The Redis commands of requests (ngx_http_aihub_redis_call()).
 *
 * A request waiting for a reply holds a call; the call, not the request,
 * is what hiredis gets as privdata, so a request finalized while its reply
 * is in flight is simply forgotten by the call (see the pool cleanup).
 * The caller keeps the call in a wait of its own: this file never reads
 * the request context.
 *
 * When a connection that worked breaks, it is made again at once (a
 * millisecond later), and a call made meanwhile is held, its command
 * copied, instead of failing: it goes out on the new connection after the
 * scripts are loaded there, or fails with the rest if that reconnect does
 * not work, or on its own timeout, whichever comes first.  A call whose
 * command may run twice ("again": a read, or the grant of a lease, which
 * a second run cancels and grants anew) keeps its command too while
 * hiredis has it: when the connection breaks before its reply, it is held
 * like the others and sent again.  So a reset connection (a proxy, an
 * idle timeout, a failover) costs the calls of that moment a millisecond,
 * not an error.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_redis_call.h"
#include "ngx_http_aihub_redis_refused.h"
#include "ngx_http_aihub_resp.h"
#include "ngx_http_aihub_scripts.h"


/* the most calls held at once (their commands copied): beyond, they fail */
#define NGX_HTTP_AIHUB_REDIS_HELD_MAX  4096


struct ngx_http_aihub_redis_call_s {
    ngx_http_request_t               *r;       /* NULL once it is gone */
    ngx_http_aihub_redis_wait_t      *wait;
    ngx_http_aihub_redis_handler_pt   handler;
    ngx_event_t                       timer;
    ngx_queue_t                       queue;   /* while held */
    u_char                           *cmd;     /* while held: in RESP */
    size_t                            cmd_len;
    unsigned                          answered:1;
    unsigned                          held:1;
    unsigned                          resent:1;  /* after NOSCRIPT */
};


static ngx_http_aihub_redis_call_t *ngx_http_aihub_redis_call_copy(int argc,
    const char **argv, const size_t *argvlen);
static void ngx_http_aihub_redis_call_hold(ngx_http_aihub_redis_call_t *call);
static void ngx_http_aihub_redis_calls_hold(void);
static void ngx_http_aihub_redis_calls_resume(redisAsyncContext *ac);
static void ngx_http_aihub_redis_calls_fail(void);
static ngx_http_aihub_redis_call_t *ngx_http_aihub_redis_held_next(void);
static void ngx_http_aihub_redis_call_end(ngx_http_aihub_redis_call_t *call,
    redisReply *reply);
static void ngx_http_aihub_redis_reply(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_aihub_redis_call_timeout(ngx_event_t *ev);
static void ngx_http_aihub_redis_request_cleanup(void *data);


static ngx_uint_t   ngx_http_aihub_redis_holding;
static ngx_uint_t   ngx_http_aihub_redis_nheld;
static ngx_queue_t  ngx_http_aihub_redis_held;

static const ngx_http_aihub_redis_waiters_t  ngx_http_aihub_redis_waiting = {
    ngx_http_aihub_redis_calls_hold,
    ngx_http_aihub_redis_calls_resume,
    ngx_http_aihub_redis_calls_fail
};


void
ngx_http_aihub_redis_call_init_process(void)
{
    ngx_queue_init(&ngx_http_aihub_redis_held);
    ngx_http_aihub_redis_on_waiters(&ngx_http_aihub_redis_waiting);
}


/*
 * A command for a request: the handler runs exactly once, with the reply,
 * or with NULL when Redis failed or the timeout passed first.  "again":
 * the command may run twice, and is sent again when the connection breaks
 * before its reply.  Returns NGX_DECLINED when Redis is not connected and
 * is not being reconnected at once (nothing is sent).
 */

ngx_int_t
ngx_http_aihub_redis_call(ngx_http_request_t *r,
    ngx_http_aihub_redis_wait_t *wait, ngx_http_aihub_redis_handler_pt handler,
    ngx_uint_t again, int argc, const char **argv, const size_t *argvlen)
{
    redisAsyncContext            *ac;
    ngx_pool_cleanup_t           *cln;
    ngx_http_aihub_main_conf_t   *amcf;
    ngx_http_aihub_redis_call_t  *call;

    ac = ngx_http_aihub_redis_context();

    if (ac == NULL
        && (!ngx_http_aihub_redis_holding
            || ngx_http_aihub_redis_nheld >= NGX_HTTP_AIHUB_REDIS_HELD_MAX))
    {
        return NGX_DECLINED;
    }

    if (wait->call == NULL && !wait->cleanup_added) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_http_aihub_redis_request_cleanup;
        cln->data = wait;
        wait->cleanup_added = 1;
    }

    if (ac == NULL) {
        call = ngx_http_aihub_redis_call_copy(argc, argv, argvlen);
        if (call == NULL) {
            return NGX_ERROR;
        }

        ngx_http_aihub_redis_call_hold(call);

    } else if (again) {
        call = ngx_http_aihub_redis_call_copy(argc, argv, argvlen);
        if (call == NULL) {
            return NGX_ERROR;
        }

        if (redisAsyncFormattedCommand(ac, ngx_http_aihub_redis_reply, call,
                                       (char *) call->cmd, call->cmd_len)
            != REDIS_OK)
        {
            ngx_free(call);
            return NGX_DECLINED;
        }

        ngx_http_aihub_redis_sent();

    } else {
        call = ngx_calloc(sizeof(ngx_http_aihub_redis_call_t),
                          ngx_cycle->log);
        if (call == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_aihub_redis_command(ac, ngx_http_aihub_redis_reply,
                                         call, argc, argv, argvlen)
            != REDIS_OK)
        {
            ngx_free(call);
            return NGX_DECLINED;
        }

        ngx_http_aihub_redis_sent();
    }

    call->r = r;
    call->wait = wait;
    call->handler = handler;
    call->timer.handler = ngx_http_aihub_redis_call_timeout;
    call->timer.data = call;
    call->timer.log = r->connection->log;

    /*
     * not cancelable: a worker told to quit gracefully (a reload) waits for
     * the reply or the timeout, so the request ends normally instead of
     * being left open when the worker exits
     */
    call->timer.cancelable = 0;

    wait->call = call;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);
    ngx_add_timer(&call->timer, amcf->redis_timeout);

    /*
     * a client that goes away meanwhile ends its request (499) and so the
     * call, as limit_req's delay does; held calls are the long ones
     */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_OK;
}


/* a call with its command copied, to be held or sent again */

static ngx_http_aihub_redis_call_t *
ngx_http_aihub_redis_call_copy(int argc, const char **argv,
    const size_t *argvlen)
{
    size_t                        len;
    u_char                       *cmd;
    ngx_http_aihub_redis_call_t  *call;

    cmd = ngx_http_aihub_resp_format(argc, argv, argvlen, &len);
    if (cmd == NULL) {
        return NULL;
    }

    call = ngx_calloc(sizeof(ngx_http_aihub_redis_call_t) + len,
                      ngx_cycle->log);
    if (call == NULL) {
        return NULL;
    }

    call->cmd = (u_char *) (call + 1);
    call->cmd_len = len;
    ngx_memcpy(call->cmd, cmd, len);

    return call;
}


/* a call held for the connection being made again */

static void
ngx_http_aihub_redis_call_hold(ngx_http_aihub_redis_call_t *call)
{
    call->held = 1;
    ngx_queue_insert_tail(&ngx_http_aihub_redis_held, &call->queue);
    ngx_http_aihub_redis_nheld++;
}


static void
ngx_http_aihub_redis_calls_hold(void)
{
    ngx_http_aihub_redis_holding = 1;
}


static void
ngx_http_aihub_redis_calls_resume(redisAsyncContext *ac)
{
    ngx_http_aihub_redis_call_t  *call;

    if (!ngx_http_aihub_redis_holding) {
        return;
    }

    ngx_http_aihub_redis_holding = 0;

    while ((call = ngx_http_aihub_redis_held_next()) != NULL) {

        if (redisAsyncFormattedCommand(ac, ngx_http_aihub_redis_reply, call,
                                       (char *) call->cmd, call->cmd_len)
            != REDIS_OK)
        {
            ngx_http_aihub_redis_call_end(call, NULL);
            continue;
        }

        ngx_http_aihub_redis_sent();
    }
}


static void
ngx_http_aihub_redis_calls_fail(void)
{
    ngx_http_aihub_redis_call_t  *call;

    /*
     * the calls held, and those to be sent again that the broken
     * connection left; a handler that calls again meets no connection and
     * no holding
     */

    ngx_http_aihub_redis_holding = 0;

    while ((call = ngx_http_aihub_redis_held_next()) != NULL) {
        ngx_http_aihub_redis_call_end(call, NULL);
    }
}


/* the first call held, out of the queue; NULL when none is left */

static ngx_http_aihub_redis_call_t *
ngx_http_aihub_redis_held_next(void)
{
    ngx_queue_t                  *q;
    ngx_http_aihub_redis_call_t  *call;

    if (ngx_queue_empty(&ngx_http_aihub_redis_held)) {
        return NULL;
    }

    q = ngx_queue_head(&ngx_http_aihub_redis_held);
    call = ngx_queue_data(q, ngx_http_aihub_redis_call_t, queue);

    ngx_queue_remove(q);
    ngx_http_aihub_redis_nheld--;
    call->held = 0;

    return call;
}


/*
 * A call's end: its reply (NULL: none, or hiredis never had it) to the
 * handler, if the request is still there and not answered by the timeout
 */

static void
ngx_http_aihub_redis_call_end(ngx_http_aihub_redis_call_t *call,
    redisReply *reply)
{
    ngx_http_request_t  *r;

    if (call->timer.timer_set) {
        ngx_del_timer(&call->timer);
    }

    r = call->r;

    if (r != NULL && !call->answered) {
        call->answered = 1;
        call->wait->call = NULL;

        r->read_event_handler = ngx_http_block_reading;
        call->handler(r, reply);
    }

    ngx_free(call);
}


static void
ngx_http_aihub_redis_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_aihub_redis_call_t  *call = privdata;

    ngx_http_aihub_redis_replied(reply != NULL);

    /*
     * No reply: the connection is going away (hiredis runs the callbacks
     * before its disconnect callback).  A call that may run twice is held:
     * the disconnect callback then either makes the connection again at
     * once, and it goes out there, or fails it with the calls held.
     */

    if (reply == NULL && call->cmd != NULL && call->r != NULL
        && !call->answered
        && ngx_http_aihub_redis_nheld < NGX_HTTP_AIHUB_REDIS_HELD_MAX)
    {
        ngx_http_aihub_redis_call_hold(call);
        return;
    }

    /*
     * NOSCRIPT (the scripts flushed live): the script did not run, so a
     * call that kept its command sends it again, once, behind the scripts
     * loaded again, instead of failing
     */

    if (reply != NULL && call->cmd != NULL && call->r != NULL
        && !call->answered && !call->resent
        && ngx_http_aihub_scripts_check(reply))
    {
        call->resent = 1;

        if (redisAsyncFormattedCommand(ac, ngx_http_aihub_redis_reply, call,
                                       (char *) call->cmd, call->cmd_len)
            == REDIS_OK)
        {
            ngx_http_aihub_redis_sent();
            return;
        }
    }

    ngx_http_aihub_redis_call_end(call, reply);
}


static void
ngx_http_aihub_redis_call_timeout(ngx_event_t *ev)
{
    ngx_http_request_t           *r;
    ngx_http_aihub_main_conf_t   *amcf;
    ngx_uint_t                    more;
    ngx_http_aihub_redis_call_t  *call = ev->data;

    static ngx_http_aihub_redis_said_t  late, not_again;

    r = call->r;

    if (call->held) {
        /* hiredis never had it: it goes now */
        ngx_queue_remove(&call->queue);
        ngx_http_aihub_redis_nheld--;
        call->held = 0;

        if (r != NULL && ngx_http_aihub_redis_say(&not_again, &more)) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "aihub: redis was not connected again in time, "
                          "and %ui calls more since the last such line",
                          more);
        }

        ngx_http_aihub_redis_call_end(call, NULL);
        return;
    }

    /* the call stays allocated until hiredis runs its callback */

    call->answered = 1;
    call->r = NULL;

    if (r == NULL) {
        return;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    if (ngx_http_aihub_redis_say(&late, &more)) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aihub: redis did not answer within %M ms, and %ui "
                      "calls more since the last such line",
                      amcf->redis_timeout, more);
    }

    call->wait->call = NULL;

    r->read_event_handler = ngx_http_block_reading;
    call->handler(r, NULL);
}


static void
ngx_http_aihub_redis_request_cleanup(void *data)
{
    ngx_http_aihub_redis_wait_t  *wait = data;

    ngx_http_aihub_redis_call_t  *call;

    call = wait->call;

    if (call == NULL) {
        return;
    }

    wait->call = NULL;

    if (call->timer.timer_set) {
        ngx_del_timer(&call->timer);
    }

    if (call->held) {
        /* hiredis never had it */
        ngx_queue_remove(&call->queue);
        ngx_http_aihub_redis_nheld--;
        ngx_free(call);
        return;
    }

    call->r = NULL;
}
