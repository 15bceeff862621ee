/*
 * A request body in a content coding (RFC 9110, 8.4).  Clients compress
 * large bodies: OpenAI's Codex CLI sends its Responses API requests in
 * zstd, other clients and SDK wrappers in gzip.  The body is decoded here,
 * before the body check reads it, so that every check (the model, a member
 * twice, max_tokens, the prompt's size) sees what the provider will see,
 * and the provider gets the plain body: the coding does not cross
 * (ngx_http_aihub_forward.c).
 *
 *   - gzip (one member or several), x-gzip, deflate (zlib's format, or the
 *     raw one some clients label deflate) and zstd (one frame or several)
 *     are decoded;
 *   - decoded, the body may be no larger than aihub_body_max: a small body
 *     that inflates to gigabytes is refused as soon as it passes the limit
 *     (413), and a zstd frame may not ask for a window over 8 MB (RFC
 *     9659) either;
 *   - data that is not what its coding says, cut short, or followed by
 *     bytes that are not another member: 400;
 *   - any other coding, or two codings on one body: 415, with
 *     Accept-Encoding naming the codings read (RFC 9110, 15.5.16).
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_body_decode.h"
#include "ngx_http_aihub_inflate.h"

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>


#define NGX_HTTP_AIHUB_DECODE_FIRST  16384      /* first output room */
#define NGX_HTTP_AIHUB_DECODE_WLOG   23         /* zstd window: 8 MB */

/* the codings read, as Accept-Encoding names them on a 415 */
#define NGX_HTTP_AIHUB_DECODE_ACCEPTED  "gzip, deflate, zstd"


typedef enum {
    NGX_HTTP_AIHUB_CODING_NONE = 0,
    NGX_HTTP_AIHUB_CODING_GZIP,
    NGX_HTTP_AIHUB_CODING_DEFLATE,
    NGX_HTTP_AIHUB_CODING_ZSTD,
    NGX_HTTP_AIHUB_CODING_OTHER,
    NGX_HTTP_AIHUB_CODING_MANY
} ngx_http_aihub_coding_e;


static ngx_http_aihub_coding_e ngx_http_aihub_body_coding(
    ngx_http_request_t *r, ngx_str_t *name);
static ngx_http_aihub_coding_e ngx_http_aihub_body_coding_named(
    ngx_str_t *name);
static ngx_int_t ngx_http_aihub_body_refuse_coding(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_http_aihub_coding_e coding,
    ngx_str_t *name);
static ngx_int_t ngx_http_aihub_body_inflate(ngx_http_request_t *r,
    ngx_http_aihub_coding_e coding, ngx_str_t *in, ngx_str_t *out,
    size_t max);
static ngx_int_t ngx_http_aihub_body_unzstd(ngx_http_request_t *r,
    ngx_str_t *in, ngx_str_t *out, size_t max);
static ngx_int_t ngx_http_aihub_body_room(ngx_http_request_t *r,
    ngx_str_t *out, size_t *room, size_t in, size_t max);


/*
 * NGX_OK: *body is plain (decoded, if it was coded: then it is also the
 * request's body from now on); NGX_DECLINED: refused, the answer is set
 * in ctx; NGX_ERROR.
 */

ngx_int_t
ngx_http_aihub_body_decode(ngx_http_request_t *r, ngx_http_aihub_ctx_t *ctx,
    ngx_str_t *body, size_t max)
{
    ngx_int_t                rc;
    ngx_str_t                name, out;
    ngx_http_aihub_coding_e  coding;

    coding = ngx_http_aihub_body_coding(r, &name);

    switch (coding) {

    case NGX_HTTP_AIHUB_CODING_NONE:
        return NGX_OK;

    case NGX_HTTP_AIHUB_CODING_GZIP:
    case NGX_HTTP_AIHUB_CODING_DEFLATE:
        rc = ngx_http_aihub_body_inflate(r, coding, body, &out, max);
        break;

    case NGX_HTTP_AIHUB_CODING_ZSTD:
        rc = ngx_http_aihub_body_unzstd(r, body, &out, max);
        break;

    default:
        return ngx_http_aihub_body_refuse_coding(r, ctx, coding, &name);
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_ABORT) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                            "invalid_request_error", "request_too_large",
                            "The request body is too large once "
                            "decompressed.");
        return NGX_DECLINED;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aihub body: not valid \"%V\" data", &name);

        ngx_http_aihub_deny(ctx, NGX_HTTP_BAD_REQUEST,
                            "invalid_request_error", "invalid_request_error",
                            coding == NGX_HTTP_AIHUB_CODING_ZSTD
                            ? "The request body is not valid zstd data."
                            : coding == NGX_HTTP_AIHUB_CODING_GZIP
                            ? "The request body is not valid gzip data."
                            : "The request body is not valid deflate data.");
        return NGX_DECLINED;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aihub body: \"%V\", %uz bytes decoded to %uz",
                   &name, body->len, out.len);

    *body = out;
    ctx->body.decoded = 1;

    return NGX_OK;
}


/*
 * The body's coding, from all its Content-Encoding lines (a list, in the
 * order applied; "identity" and empty elements are no coding)
 */

static ngx_http_aihub_coding_e
ngx_http_aihub_body_coding(ngx_http_request_t *r, ngx_str_t *name)
{
    u_char                        *p, *last, *start;
    ngx_uint_t                     n;
    ngx_table_elt_t               *h;
    ngx_http_aihub_coding_e        coding;
    ngx_http_aihub_header_iter_t   it;

    coding = NGX_HTTP_AIHUB_CODING_NONE;
    ngx_str_null(name);
    n = 0;
    it.part = NULL;

    while ((h = ngx_http_aihub_header_next(&r->headers_in.headers, &it,
                                           (u_char *) "content-encoding",
                                           sizeof("content-encoding") - 1))
           != NULL)
    {
        p = h->value.data;
        last = p + h->value.len;

        while (p < last) {

            while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
                p++;
            }

            start = p;

            while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
                p++;
            }

            if (p == start
                || ((size_t) (p - start) == sizeof("identity") - 1
                    && ngx_strncasecmp(start, (u_char *) "identity",
                                       sizeof("identity") - 1) == 0))
            {
                continue;
            }

            if (n++ > 0) {
                return NGX_HTTP_AIHUB_CODING_MANY;
            }

            name->data = start;
            name->len = p - start;
            coding = ngx_http_aihub_body_coding_named(name);
        }
    }

    return coding;
}


/* one coding's name (any case) */

static ngx_http_aihub_coding_e
ngx_http_aihub_body_coding_named(ngx_str_t *name)
{
    if ((name->len == 4
         && ngx_strncasecmp(name->data, (u_char *) "gzip", 4) == 0)
        || (name->len == 6
            && ngx_strncasecmp(name->data, (u_char *) "x-gzip", 6) == 0))
    {
        return NGX_HTTP_AIHUB_CODING_GZIP;
    }

    if (name->len == 7
        && ngx_strncasecmp(name->data, (u_char *) "deflate", 7) == 0)
    {
        return NGX_HTTP_AIHUB_CODING_DEFLATE;
    }

    if (name->len == 4
        && ngx_strncasecmp(name->data, (u_char *) "zstd", 4) == 0)
    {
        return NGX_HTTP_AIHUB_CODING_ZSTD;
    }

    return NGX_HTTP_AIHUB_CODING_OTHER;
}


/* 415, with the codings that are read */

static ngx_int_t
ngx_http_aihub_body_refuse_coding(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx, ngx_http_aihub_coding_e coding,
    ngx_str_t *name)
{
    u_char  *msg, *safe;

    if (ngx_http_aihub_add_header(r, "Accept-Encoding",
                                  (u_char *) NGX_HTTP_AIHUB_DECODE_ACCEPTED,
                                  sizeof(NGX_HTTP_AIHUB_DECODE_ACCEPTED) - 1)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (coding == NGX_HTTP_AIHUB_CODING_MANY) {
        ngx_http_aihub_deny(ctx, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                            "invalid_request_error",
                            "unsupported_content_encoding",
                            "The request body is in more than one content "
                            "coding; send it plain or in one of gzip, "
                            "deflate and zstd.");
        return NGX_DECLINED;
    }

    safe = ngx_http_aihub_safe_text(r->pool, name->data, name->len, 32);
    msg = ngx_pnalloc(r->pool, 160);

    if (safe == NULL || msg == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(msg, "The request body's Content-Encoding \"%s\" is not "
                "supported; send it plain or in gzip, deflate or zstd.%Z",
                safe);

    ngx_http_aihub_deny(ctx, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                        "invalid_request_error",
                        "unsupported_content_encoding", (const char *) msg);

    return NGX_DECLINED;
}


/*
 * gzip and deflate through zlib.  NGX_OK; NGX_DECLINED: not such data;
 * NGX_ABORT: larger than max; NGX_ERROR.
 */

static ngx_int_t
ngx_http_aihub_body_inflate(ngx_http_request_t *r,
    ngx_http_aihub_coding_e coding, ngx_str_t *in, ngx_str_t *out, size_t max)
{
    int        rc, bits;
    size_t     room;
    z_stream   zs;
    ngx_int_t  result;

    ngx_str_null(out);
    room = 0;

    if (in->len > UINT_MAX) {
        return NGX_ABORT;
    }

    if (coding == NGX_HTTP_AIHUB_CODING_GZIP) {
        bits = MAX_WBITS + 16;

    } else if (in->len >= 2 && ngx_http_aihub_inflate_zlib_head(in->data)) {
        bits = MAX_WBITS;           /* zlib's format, as RFC 9110 says */

    } else {
        bits = -MAX_WBITS;          /* raw deflate labelled deflate */
    }

    ngx_memzero(&zs, sizeof(z_stream));

    if (inflateInit2(&zs, bits) != Z_OK) {
        return NGX_ERROR;
    }

    zs.next_in = in->data;
    zs.avail_in = (uInt) in->len;

    for ( ;; ) {

        if (out->len == room) {
            result = ngx_http_aihub_body_room(r, out, &room, in->len, max);
            if (result != NGX_OK) {
                break;
            }
        }

        zs.next_out = out->data + out->len;
        zs.avail_out = (uInt) (room - out->len);

        rc = inflate(&zs, Z_NO_FLUSH);

        out->len = zs.next_out - out->data;

        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0) {
                result = NGX_OK;
                break;
            }

            /* gzip: another member follows (RFC 1952, 2.2) */

            if (coding == NGX_HTTP_AIHUB_CODING_GZIP
                && inflateReset(&zs) == Z_OK)
            {
                continue;
            }

            result = NGX_DECLINED;
            break;
        }

        if (rc == Z_OK || (rc == Z_BUF_ERROR && zs.avail_out == 0)) {
            continue;
        }

        /* Z_BUF_ERROR with room left: the data ended before its stream */

        result = (rc == Z_MEM_ERROR) ? NGX_ERROR : NGX_DECLINED;
        break;
    }

    inflateEnd(&zs);

    /* the room is max + 1 bytes: a body that ends filling it is too large */

    return (result == NGX_OK && out->len > max) ? NGX_ABORT : result;
}


/* zstd: the same answers */

static ngx_int_t
ngx_http_aihub_body_unzstd(ngx_http_request_t *r, ngx_str_t *in,
    ngx_str_t *out, size_t max)
{
    size_t           rc, room;
    ngx_int_t        result;
    ZSTD_DCtx       *dctx;
    ZSTD_inBuffer    zin;
    ZSTD_outBuffer   zout;

    ngx_str_null(out);
    room = 0;

    dctx = ZSTD_createDCtx();
    if (dctx == NULL) {
        return NGX_ERROR;
    }

    /*
     * A frame's window is memory the decoder takes before it writes a
     * byte: at most 8 MB, as RFC 9659 (3) has HTTP's zstd, and the
     * window every compression level up to 19 uses for data of unknown
     * size (2 MB at the common level 3).
     */

    if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax,
                                            NGX_HTTP_AIHUB_DECODE_WLOG)))
    {
        ZSTD_freeDCtx(dctx);
        return NGX_ERROR;
    }

    zin.src = in->data;
    zin.size = in->len;
    zin.pos = 0;

    for ( ;; ) {

        if (out->len == room) {
            result = ngx_http_aihub_body_room(r, out, &room, in->len, max);
            if (result != NGX_OK) {
                break;
            }
        }

        zout.dst = out->data;
        zout.size = room;
        zout.pos = out->len;

        rc = ZSTD_decompressStream(dctx, &zout, &zin);

        out->len = zout.pos;

        if (ZSTD_isError(rc)) {
            result = (ZSTD_getErrorCode(rc)
                      == ZSTD_error_frameParameter_windowTooLarge)
                     ? NGX_ABORT : NGX_DECLINED;
            break;
        }

        if (rc == 0 && zin.pos == zin.size) {
            result = NGX_OK;        /* a frame ended with the input */
            break;
        }

        if (zin.pos < zin.size || zout.pos == zout.size) {
            continue;               /* more input, or more to write */
        }

        result = NGX_DECLINED;      /* the input ended inside a frame */
        break;
    }

    ZSTD_freeDCtx(dctx);

    return (result == NGX_OK && out->len > max) ? NGX_ABORT : result;
}


/*
 * Room for the decoded body: first four times the coded size (at least
 * 16k), then twice as much each time, up to max + 1 bytes: a body that
 * fills that is larger than max (NGX_ABORT).  Large pool blocks, the
 * outgrown one given back.
 */

static ngx_int_t
ngx_http_aihub_body_room(ngx_http_request_t *r, ngx_str_t *out, size_t *room,
    size_t in, size_t max)
{
    size_t   n;
    u_char  *p;

    if (*room > max) {
        return NGX_ABORT;
    }

    if (*room == 0) {
        n = (in < NGX_HTTP_AIHUB_DECODE_FIRST / 4)
            ? NGX_HTTP_AIHUB_DECODE_FIRST : in * 4;

    } else {
        n = *room * 2;
    }

    if (n > max + 1) {
        n = max + 1;
    }

    p = ngx_palloc(r->pool, n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (out->len) {
        ngx_memcpy(p, out->data, out->len);
    }

    if (out->data) {
        ngx_pfree(r->pool, out->data);
    }

    out->data = p;
    *room = n;

    return NGX_OK;
}
