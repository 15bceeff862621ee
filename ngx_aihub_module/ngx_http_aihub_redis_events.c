/*
 * hiredis's event adapter for nginx's event loop: a Redis context's socket
 * as an nginx connection, watched level-triggered (ngx_http_aihub_redis.c
 * makes the connections).
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis_events.h"


static void ngx_http_aihub_redis_read_handler(ngx_event_t *ev);
static void ngx_http_aihub_redis_write_handler(ngx_event_t *ev);
static void ngx_http_aihub_redis_add_read(void *data);
static void ngx_http_aihub_redis_del_read(void *data);
static void ngx_http_aihub_redis_add_write(void *data);
static void ngx_http_aihub_redis_del_write(void *data);
static void ngx_http_aihub_redis_cleanup(void *data);


/* c is the connection of ac's socket; hiredis drives it from here on */

void
ngx_http_aihub_redis_attach(redisAsyncContext *ac, ngx_connection_t *c)
{
    c->data = ac;
    c->read->handler = ngx_http_aihub_redis_read_handler;
    c->write->handler = ngx_http_aihub_redis_write_handler;

    ac->ev.data = c;
    ac->ev.addRead = ngx_http_aihub_redis_add_read;
    ac->ev.delRead = ngx_http_aihub_redis_del_read;
    ac->ev.addWrite = ngx_http_aihub_redis_add_write;
    ac->ev.delWrite = ngx_http_aihub_redis_del_write;
    ac->ev.cleanup = ngx_http_aihub_redis_cleanup;
}


static void
ngx_http_aihub_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    /* the context may be gone when this returns: touch nothing after */

    redisAsyncHandleRead(c->data);
}


static void
ngx_http_aihub_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    redisAsyncHandleWrite(c->data);
}


static void
ngx_http_aihub_redis_add_read(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "aihub: cannot watch the redis socket");
        }
    }
}


static void
ngx_http_aihub_redis_del_read(void *data)
{
    ngx_connection_t  *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_aihub_redis_add_write(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "aihub: cannot watch the redis socket");
        }
    }
}


static void
ngx_http_aihub_redis_del_write(void *data)
{
    ngx_connection_t  *c = data;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


/* hiredis closes the socket itself right after this */

static void
ngx_http_aihub_redis_cleanup(void *data)
{
    ngx_connection_t  *c = data;

    ngx_http_aihub_redis_del_read(c);
    ngx_http_aihub_redis_del_write(c);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /*
     * freed first, as ngx_close_connection() does: ngx_free_connection()
     * clears the cycle's files[c->fd] (poll, select), which with the fd
     * already -1 was a read before the array and left files[fd] pointing
     * at the freed connection
     */

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}
