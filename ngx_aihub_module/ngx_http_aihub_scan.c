/*
 * The provider's answer read as it passes: usage from a JSON answer or an
 * SSE stream, never buffered, and the usage chunk the gateway asked for
 * on the client's behalf taken out again.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_scan.h"


#define NGX_HTTP_AIHUB_STREAM_BUF  16384   /* our copies of a stream */


/*
 * A provider's answer that goes on to the client is read from here: an SSE
 * stream (NGX_OK: its header may go), or a JSON answer (NGX_AGAIN: its
 * header waits for the first byte).  NGX_DECLINED: neither, not ours to
 * pass on.
 */

ngx_int_t
ngx_http_aihub_scan_start(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx)
{
    u_char  *hold;

    if (!ngx_http_aihub_answer_is_sse(r)) {
        if (!ngx_http_aihub_answer_is_json(r)) {
            return NGX_DECLINED;
        }

        ctx->reply.json = ngx_palloc(r->pool, sizeof(aihub_usage_json_t));
        if (ctx->reply.json == NULL) {
            return NGX_ERROR;
        }

        aihub_usage_json_init(ctx->reply.json);

        ctx->reply.hold = NGX_HTTP_AIHUB_HOLD_FIRST;
        ctx->reply.first = NGX_HTTP_AIHUB_FIRST_OBJECT;
        ctx->reply.head = NULL;
        ctx->reply.scanning = 1;

        return NGX_AGAIN;
    }

    ctx->reply.streamed = 1;

    ctx->reply.sse = ngx_palloc(r->pool, sizeof(aihub_sse_t));
    if (ctx->reply.sse == NULL) {
        return NGX_ERROR;
    }

    /* the usage chunk we asked for on the client's behalf goes */

    if (ctx->flow.endpoint == NGX_HTTP_AIHUB_EP_CHAT
        && ctx->body.stream && !ctx->body.include_usage)
    {
        hold = ngx_palloc(r->pool, AIHUB_SSE_HOLD_SIZE);
        if (hold == NULL) {
            return NGX_ERROR;
        }

        aihub_sse_init(ctx->reply.sse, hold, AIHUB_SSE_HOLD_SIZE);

        /* the length changes: the answer goes out chunked */
        ngx_http_clear_content_length(r);

    } else {
        aihub_sse_init(ctx->reply.sse, NULL, 0);
    }

    ctx->reply.scanning = 1;

    return NGX_OK;
}


/*
 * A streamed answer is scanned as it passes, never buffered.  Without
 * stripping the buffers go on untouched; with it, each buffer's bytes go on
 * less the usage chunk, held back only while the event they belong to could
 * still be that chunk, in copies of ours that are reused once sent, so a
 * stream of any length needs a few buffers.
 */

ngx_int_t
ngx_http_aihub_scan_stream(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_chain_t *in, ngx_chain_t **out)
{
    size_t        n, size;
    ngx_buf_t    *b, *nb;
    ngx_chain_t  *cl, *ncl, *head, **ll;

    if (ctx->reply.sse->hold == NULL) {
        for (cl = in; cl; cl = cl->next) {
            b = cl->buf;

            if (ngx_buf_in_memory(b) && b->last > b->pos) {
                (void) aihub_sse_feed(ctx->reply.sse, b->pos, b->last - b->pos,
                                      NULL);
            }

            if (b->last_buf) {
                /* an event the stream ended without a blank line after */
                (void) aihub_sse_finish(ctx->reply.sse, NULL);
                ctx->reply.last_seen = 1;
            }
        }

        *out = in;
        return NGX_OK;
    }

    head = NULL;
    ll = &head;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        n = ngx_buf_in_memory(b) ? (size_t) (b->last - b->pos) : 0;

        if (n == 0 && !b->last_buf && !b->flush && !b->last_in_chain) {
            continue;
        }

        /* a buffer of ours that has been sent, or a new one */

        ncl = ngx_chain_get_free_buf(r->pool, &ctx->reply.free);
        if (ncl == NULL) {
            return NGX_ERROR;
        }

        nb = ncl->buf;
        size = aihub_sse_out_size(ctx->reply.sse, n) + 1;

        if (nb->start == NULL || (size_t) (nb->end - nb->start) < size) {
            nb->start = ngx_palloc(r->pool,
                                   ngx_max(size, NGX_HTTP_AIHUB_STREAM_BUF));
            if (nb->start == NULL) {
                return NGX_ERROR;
            }

            nb->end = nb->start + ngx_max(size, NGX_HTTP_AIHUB_STREAM_BUF);
        }

        nb->pos = nb->start;
        nb->last = nb->start;
        nb->tag = (ngx_buf_tag_t) &ngx_http_aihub_module;
        nb->temporary = 1;
        nb->flush = 0;
        nb->last_buf = 0;
        nb->last_in_chain = 0;

        if (n) {
            nb->last += aihub_sse_feed(ctx->reply.sse, b->pos, n, nb->last);
        }

        if (b->last_buf) {
            nb->last += aihub_sse_finish(ctx->reply.sse, nb->last);
            ctx->reply.last_seen = 1;
        }

        /* the provider's buffer is consumed: upstream may reuse it */
        b->pos = b->last;

        if (nb->last == nb->pos) {
            /* all of it held or stripped: only the flags go on */

            if (!b->last_buf && !b->flush && !b->last_in_chain) {
                ncl->next = ctx->reply.free;
                ctx->reply.free = ncl;
                continue;
            }

            nb->temporary = 0;
            nb->flush = b->flush || !b->last_buf;

        } else {
            nb->flush = 1;
        }

        nb->last_buf = b->last_buf;
        nb->last_in_chain = b->last_in_chain;

        ncl->next = NULL;
        *ll = ncl;
        ll = &ncl->next;
    }

    *out = head;

    return NGX_OK;
}


ngx_int_t
ngx_http_aihub_scan_json(ngx_http_aihub_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            (void) aihub_usage_json_feed(ctx->reply.json, b->pos,
                                         b->last - b->pos);

        } else if (b->in_file && b->file_last > b->file_pos) {
            /* buffered to disk (proxy_buffering on): not read again */
            ctx->reply.unscanned = 1;
        }

        if (b->last_buf) {
            ctx->reply.last_seen = 1;
        }
    }

    return NGX_OK;
}
