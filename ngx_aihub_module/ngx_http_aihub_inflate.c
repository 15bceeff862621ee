/*
 * A provider's answer in a content coding.  The gateway asks for none
 * ("Accept-Encoding: identity", ngx_http_aihub_forward.c), but a server may
 * compress all the same (RFC 9110, 12.5.3: without that header any coding
 * is acceptable, and some front ends ignore it).  An answer in gzip (one
 * member or several) or deflate (zlib's format, or the raw one some
 * servers label deflate) is
 * inflated as it passes, before anything reads it: its usage is read
 * exactly, and the client gets the plain answer, as it would had the
 * provider not compressed it.  Any other coding cannot be read: the
 * caller refuses the answer (502), as one that is not JSON.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_inflate.h"

#include <zlib.h>


#define NGX_HTTP_AIHUB_INFLATE_BUF  8192

/* the tag of our buffers, for ngx_chain_update_chains() */
#define NGX_HTTP_AIHUB_INFLATE_TAG                                           \
    ((ngx_buf_tag_t) &ngx_http_aihub_inflate_tag)


static u_char  ngx_http_aihub_inflate_tag;


struct ngx_http_aihub_inflate_s {
    z_stream                      zs;
    ngx_chain_t                  *free;
    ngx_chain_t                  *busy;
    unsigned                      deflate:1;    /* labelled deflate */
    unsigned                      started:1;    /* zlib initialised */
    unsigned                      ended:1;      /* a gzip member ended */
    unsigned                      broken:1;     /* not gzip/deflate data */
};


static ngx_int_t ngx_http_aihub_inflate_init(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t *st, ngx_buf_t *b);
static ngx_buf_t *ngx_http_aihub_inflate_buf(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t *st, ngx_chain_t ***ll, ngx_uint_t room);
static void ngx_http_aihub_inflate_cleanup(void *data);


/*
 * NGX_OK: nothing to do (*stp NULL) or the answer is inflated from now on
 * (its Content-Encoding and Content-Length gone); NGX_DECLINED: a coding
 * that cannot be read.
 */

ngx_int_t
ngx_http_aihub_inflate_start(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t **stp)
{
    ngx_str_t                  *v;
    ngx_table_elt_t            *ce;
    ngx_pool_cleanup_t         *cln;
    ngx_http_aihub_inflate_t   *st;

    *stp = NULL;
    ce = r->headers_out.content_encoding;

    if (ce == NULL || ce->value.len == 0) {
        return NGX_OK;
    }

    v = &ce->value;

    if (v->len == sizeof("identity") - 1
        && ngx_strncasecmp(v->data, (u_char *) "identity", v->len) == 0)
    {
        return NGX_OK;
    }

    st = ngx_pcalloc(r->pool, sizeof(ngx_http_aihub_inflate_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    if (v->len == sizeof("deflate") - 1
        && ngx_strncasecmp(v->data, (u_char *) "deflate", v->len) == 0)
    {
        st->deflate = 1;

    } else if (!((v->len == sizeof("gzip") - 1
                  && ngx_strncasecmp(v->data, (u_char *) "gzip", v->len)
                     == 0)
                 || (v->len == sizeof("x-gzip") - 1
                     && ngx_strncasecmp(v->data, (u_char *) "x-gzip",
                                        v->len) == 0)))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aihub: the provider answered in the content coding "
                      "\"%V\", which the gateway cannot read", v);
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_aihub_inflate_cleanup;
    cln->data = st;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub inflate: the answer comes in \"%V\"", v);

    /* the client gets the answer plain, its length unknown until sent */

    ce->hash = 0;
    r->headers_out.content_encoding = NULL;
    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);

    *stp = st;

    return NGX_OK;
}


/*
 * The answer's next buffers, inflated: *out the plain bytes (in buffers
 * reused once sent, ngx_http_aihub_inflate_sent()), with the flush and
 * last flags of what came; what came is consumed.  NGX_ABORT: the coded
 * data stopped being gzip/deflate in these buffers; *out holds the plain
 * bytes before that, and the caller ends the answer there as a provider
 * that cut it would (the usage scanner sees a cut answer, which it bills
 * as estimated).
 */

ngx_int_t
ngx_http_aihub_inflate_body(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t *st, ngx_chain_t *in, ngx_chain_t **out)
{
    int            rc;
    ngx_buf_t     *b, *ob;
    ngx_uint_t     last_buf, last_in_chain, flush, was_broken;
    ngx_chain_t   *cl, **ll;

    *out = NULL;
    ll = out;
    ob = NULL;
    was_broken = st->broken;
    last_buf = 0;
    last_in_chain = 0;
    flush = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        last_buf |= b->last_buf;
        last_in_chain |= b->last_in_chain;
        flush |= b->flush;

        if (!ngx_buf_in_memory(b) || b->pos == b->last) {
            continue;
        }

        if (!st->started) {
            if (ngx_http_aihub_inflate_init(r, st, b) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        st->zs.next_in = b->pos;
        st->zs.avail_in = b->last - b->pos;

        while (!st->broken) {

            if (st->ended) {
                /* another gzip member (RFC 1952 allows several), or the
                   end: what follows the last one is not read */

                if (st->zs.avail_in == 0 || st->zs.next_in[0] != 0x1f
                    || inflateReset(&st->zs) != Z_OK)
                {
                    break;
                }

                st->ended = 0;
            }

            if (ob == NULL || ob->last == ob->end) {
                ob = ngx_http_aihub_inflate_buf(r, st, &ll, 1);
                if (ob == NULL) {
                    return NGX_ERROR;
                }
            }

            st->zs.next_out = ob->last;
            st->zs.avail_out = ob->end - ob->last;

            rc = inflate(&st->zs, Z_NO_FLUSH);

            ob->last = st->zs.next_out;

            if (rc == Z_STREAM_END) {
                st->ended = 1;
                continue;
            }

            if (rc != Z_OK && rc != Z_BUF_ERROR) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "aihub: the provider's compressed answer "
                              "could not be inflated: %s (%d)",
                              st->zs.msg ? st->zs.msg : "error", rc);
                st->broken = 1;
                break;
            }

            if (st->zs.avail_in == 0 && st->zs.avail_out != 0) {
                /* all of it taken, all that came out written */
                break;
            }
        }

        /* taken, or past the end of the coded data: either way consumed */
        b->pos = b->last;
    }

    if (last_buf || last_in_chain || flush) {
        if (ob == NULL) {
            ob = ngx_http_aihub_inflate_buf(r, st, &ll, 0);
            if (ob == NULL) {
                return NGX_ERROR;
            }
        }

        ob->last_buf = last_buf;
        ob->last_in_chain = last_in_chain;
        ob->flush = flush;
    }

    /* a buffer that got nothing (a gzip header's worth) goes as a sync one */

    for (cl = *out; cl; cl = cl->next) {
        if (cl->buf->pos == cl->buf->last) {
            cl->buf->temporary = 0;
            cl->buf->sync = 1;
        }
    }

    return (st->broken && !was_broken) ? NGX_ABORT : NGX_OK;
}


/* after the next filters had them: the buffers they are done with */

void
ngx_http_aihub_inflate_sent(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t *st, ngx_chain_t *out)
{
    ngx_chain_update_chains(r->pool, &st->free, &st->busy, &out,
                            NGX_HTTP_AIHUB_INFLATE_TAG);
}


/* zlib's format or gzip, told by their headers; else raw deflate */

static ngx_int_t
ngx_http_aihub_inflate_init(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t *st, ngx_buf_t *b)
{
    int  bits;

    bits = MAX_WBITS + 32;

    if (st->deflate && b->last - b->pos >= 2
        && !ngx_http_aihub_inflate_zlib_head(b->pos))
    {
        bits = -MAX_WBITS;
    }

    if (inflateInit2(&st->zs, bits) != Z_OK) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "aihub: inflateInit2() failed");
        return NGX_ERROR;
    }

    st->started = 1;

    return NGX_OK;
}


/* a buffer for plain bytes, linked at **ll: "room" bytes, or none */

static ngx_buf_t *
ngx_http_aihub_inflate_buf(ngx_http_request_t *r,
    ngx_http_aihub_inflate_t *st, ngx_chain_t ***ll, ngx_uint_t room)
{
    u_char       *start, *end;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = ngx_chain_get_free_buf(r->pool, &st->free);
    if (cl == NULL) {
        return NULL;
    }

    b = cl->buf;
    start = b->start;
    end = b->end;

    if (start == NULL && room) {
        start = ngx_palloc(r->pool, NGX_HTTP_AIHUB_INFLATE_BUF);
        if (start == NULL) {
            return NULL;
        }

        end = start + NGX_HTTP_AIHUB_INFLATE_BUF;
    }

    ngx_memzero(b, sizeof(ngx_buf_t));

    b->start = start;
    b->end = end;
    b->pos = start;
    b->last = start;
    b->tag = NGX_HTTP_AIHUB_INFLATE_TAG;

    if (start) {
        b->temporary = 1;

    } else {
        b->sync = 1;
    }

    cl->next = NULL;
    **ll = cl;
    *ll = &cl->next;

    return b;
}


static void
ngx_http_aihub_inflate_cleanup(void *data)
{
    ngx_http_aihub_inflate_t  *st = data;

    if (st->started) {
        (void) inflateEnd(&st->zs);
        st->started = 0;
    }
}
