/*
 * What crosses between the two sides of the gateway.  The developer's
 * client and the provider paid with the operator's credential see nothing
 * of each other but the call itself:
 *
 *   - to the provider go an allow-list of the client's headers
 *     (Content-Type, Accept, OpenAI-Beta, and what "aihub_pass_request_header"
 *     adds) and the provider's credential.  The credential is put in only
 *     while the proxy module builds the upstream request, so no variable,
 *     log, mirror or other module ever sees it in the request's headers;
 *     the client's own key is shown to them as its display prefix only.
 *     The client's Accept-Encoding is not passed: the gateway must read
 *     the answer, so it asks for "identity" (an answer compressed all
 *     the same is inflated, ngx_http_aihub_inflate.c).
 *     The answer is never buffered to disk (proxy_buffering is off for
 *     the call, whatever the location says).
 *
 *   - to the client go an allow-list of the provider's headers
 *     (Content-Type, Content-Length, Cache-Control, and what
 *     "aihub_pass_answer_header" adds); the provider's organization,
 *     project, cookies, rate limits and tracing stay behind.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_forward.h"


/* the longest word taken for an Authorization scheme ("Bearer", "Basic") */
#define NGX_HTTP_AIHUB_SCHEME_MAX  16


static ngx_int_t ngx_http_aihub_forward_content(ngx_http_request_t *r);
static ngx_int_t ngx_http_aihub_mask_value(ngx_http_request_t *r,
    ngx_str_t *v, ngx_uint_t schemed);
static ngx_uint_t ngx_http_aihub_masked_scheme(ngx_str_t *v);
static ngx_int_t ngx_http_aihub_forward_no_accel(ngx_http_request_t *r);
static ngx_uint_t ngx_http_aihub_header_listed(ngx_table_elt_t *h,
    ngx_str_t *fixed, ngx_array_t *more);


static ngx_str_t  ngx_http_aihub_request_allowed[] = {
    ngx_string("content-type"),
    ngx_string("accept"),
    ngx_string("openai-beta"),
    ngx_null_string
};


static ngx_str_t  ngx_http_aihub_answer_allowed[] = {
    ngx_string("content-type"),
    ngx_string("content-length"),
    ngx_string("content-encoding"),
    ngx_string("cache-control"),
    ngx_null_string
};


/*
 * At the proxy step: the headers the provider will get, and the content
 * handler that hands them to the proxy module.
 */

ngx_int_t
ngx_http_aihub_forward_prepare(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_uint_t                  i;
    ngx_list_part_t            *part;
    ngx_table_elt_t            *h, *nh;
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    if (ngx_list_init(&ctx->forward.upstream_headers, r->pool, 8,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        /* the body goes plain whatever its coding was (its length is the
           proxy module's): even a listed Content-Encoding stays behind */

        if (ngx_http_aihub_header_is(&h[i], "content-encoding",
                                     sizeof("content-encoding") - 1)
            || !ngx_http_aihub_header_listed(&h[i],
                                             ngx_http_aihub_request_allowed,
                                             alcf->pass_request_headers))
        {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "aihub forward: not passing \"%V\"", &h[i].key);
            continue;
        }

        nh = ngx_list_push(&ctx->forward.upstream_headers);
        if (nh == NULL) {
            return NGX_ERROR;
        }

        *nh = h[i];
#if (nginx_version >= 1023000)
        nh->next = NULL;
#endif
    }

    nh = ngx_list_push(&ctx->forward.upstream_headers);
    if (nh == NULL) {
        return NGX_ERROR;
    }

    nh->hash = 1;
    ngx_str_set(&nh->key, "Authorization");
    nh->value = ctx->route.provider->authorization;
    nh->lowcase_key = (u_char *) "authorization";
#if (nginx_version >= 1023000)
    nh->next = NULL;
#endif

    /* the answer plain: without this header any coding would do */

    nh = ngx_list_push(&ctx->forward.upstream_headers);
    if (nh == NULL) {
        return NGX_ERROR;
    }

    nh->hash = 1;
    ngx_str_set(&nh->key, "Accept-Encoding");
    ngx_str_set(&nh->value, "identity");
    nh->lowcase_key = (u_char *) "accept-encoding";
#if (nginx_version >= 1023000)
    nh->next = NULL;
#endif

    ctx->forward.content_handler = r->content_handler;
    r->content_handler = ngx_http_aihub_forward_content;

    return NGX_OK;
}


/*
 * The proxy module's content handler, given the provider's headers for as
 * long as it runs.  The body has been read, so it builds the upstream
 * request before it returns (ngx_http_read_client_request_body() calls
 * ngx_http_upstream_init() at once), and the request's own headers are
 * back before anything else can look at them.
 */

static ngx_int_t
ngx_http_aihub_forward_content(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_list_t             saved;
    ngx_table_elt_t       *auth;
    ngx_http_aihub_ctx_t  *ctx;

    ctx = ngx_http_aihub_get_ctx(r);

    if (ctx == NULL || ctx->forward.content_handler == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    saved = r->headers_in.headers;
    auth = r->headers_in.authorization;

    r->headers_in.headers = ctx->forward.upstream_headers;
    r->headers_in.authorization = NULL;

    rc = ctx->forward.content_handler(r);

    r->headers_in.headers = saved;
    r->headers_in.authorization = auth;

    if (r->upstream) {
        /*
         * The answer is relayed as it comes, as "X-Accel-Buffering: no"
         * would have it, whatever proxy_buffering says: every byte passes
         * the usage scanner in memory, none waits in a temporary file.
         */
        r->upstream->buffering = 0;

        if (ngx_http_aihub_forward_no_accel(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (r->upstream && r->upstream->request_bufs == NULL
        && rc != NGX_ERROR && rc < NGX_HTTP_SPECIAL_RESPONSE)
    {
        /* not built yet: it would go out without our headers */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "aihub: the upstream request was not created at "
                      "once; refusing to forward");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return rc;
}


/*
 * A provider's X-Accel-* headers are not obeyed (the request's own copy of
 * the proxy's settings ignores them): X-Accel-Redirect served the client
 * an internal location of the operator's, unmetered, and held the
 * provider's lane place for good; X-Accel-Buffering: yes would put the
 * answer in temporary files, past the usage scanner; -Limit-Rate and
 * -Expires are the provider's say over the operator's server.
 */

/*
 * The copies are made once per location in each worker process and kept
 * for its life: a location's settings never change while the cycle runs,
 * and a worker process serves one cycle.  Each forwarded call used to copy
 * the structure into its own pool, which pushed a plain call's pool past
 * its first block.
 */

#define NGX_HTTP_AIHUB_NO_ACCEL_MAX  32

static ngx_http_upstream_conf_t  *ngx_http_aihub_no_accel_from[
                                      NGX_HTTP_AIHUB_NO_ACCEL_MAX];
static ngx_http_upstream_conf_t  *ngx_http_aihub_no_accel_to[
                                      NGX_HTTP_AIHUB_NO_ACCEL_MAX];
static ngx_uint_t                 ngx_http_aihub_no_accel_n;
static ngx_cycle_t               *ngx_http_aihub_no_accel_cycle;


static ngx_int_t
ngx_http_aihub_forward_no_accel(ngx_http_request_t *r)
{
    ngx_uint_t                 i;
    ngx_pool_t                *pool;
    ngx_http_upstream_conf_t  *conf, *from;

    from = r->upstream->conf;

    if (from == NULL) {
        return NGX_OK;
    }

    /* a process that read its configuration again (single process mode)
       has new settings, and the copies went with the old cycle's pool */

    if (ngx_http_aihub_no_accel_cycle != (ngx_cycle_t *) ngx_cycle) {
        ngx_http_aihub_no_accel_cycle = (ngx_cycle_t *) ngx_cycle;
        ngx_http_aihub_no_accel_n = 0;
    }

    for (i = 0; i < ngx_http_aihub_no_accel_n; i++) {
        if (ngx_http_aihub_no_accel_from[i] == from) {
            r->upstream->conf = ngx_http_aihub_no_accel_to[i];
            return NGX_OK;
        }
    }

    /* past the cache's size (that many proxied aihub locations): per call */

    pool = (ngx_http_aihub_no_accel_n < NGX_HTTP_AIHUB_NO_ACCEL_MAX)
           ? ngx_cycle->pool : r->pool;

    conf = ngx_palloc(pool, sizeof(ngx_http_upstream_conf_t));
    if (conf == NULL) {
        return NGX_ERROR;
    }

    *conf = *from;

    conf->ignore_headers |= NGX_HTTP_UPSTREAM_IGN_XA_REDIRECT
                            | NGX_HTTP_UPSTREAM_IGN_XA_EXPIRES
                            | NGX_HTTP_UPSTREAM_IGN_XA_LIMIT_RATE
                            | NGX_HTTP_UPSTREAM_IGN_XA_BUFFERING
                            | NGX_HTTP_UPSTREAM_IGN_XA_CHARSET;

    if (pool == ngx_cycle->pool) {
        ngx_http_aihub_no_accel_from[ngx_http_aihub_no_accel_n] = from;
        ngx_http_aihub_no_accel_to[ngx_http_aihub_no_accel_n++] = conf;
    }

    r->upstream->conf = conf;

    return NGX_OK;
}


/*
 * The credentials a request shows (Authorization, x-api-key) are masked
 * in its own headers as soon as the key step has read them, whatever
 * becomes of the request, so no log format or other module sees a
 * secret: one of ours keeps its display prefix (no secret), any other
 * Bearer token its scheme only.  Before, only a key that passed the
 * format check was masked: one refused (in quotes, a character too many,
 * in x-api-key behind a Basic credential) was logged whole.  Another
 * scheme's credential (Basic) is left to the module that reads it.
 */

ngx_int_t
ngx_http_aihub_mask_credentials(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ngx_http_aihub_header_is(&h[i], "authorization",
                                     sizeof("authorization") - 1)
            && ngx_http_aihub_masked_scheme(&h[i].value))
        {
            if (ngx_http_aihub_mask_value(r, &h[i].value, 1) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (ngx_http_aihub_header_is(&h[i], "x-api-key",
                                            sizeof("x-api-key") - 1))
        {
            if (ngx_http_aihub_mask_value(r, &h[i].value, 0) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/*
 * Whether an Authorization header is ours to mask: a Bearer credential,
 * or one without a scheme.  Another scheme (Basic, Digest) is the
 * credential of another module of the location (auth_basic reads it
 * after us): masked, it could never pass.
 */

static ngx_uint_t
ngx_http_aihub_masked_scheme(ngx_str_t *v)
{
    u_char  *sp;

    sp = ngx_strlchr(v->data, v->data + v->len, ' ');

    return sp == NULL || sp - v->data > NGX_HTTP_AIHUB_SCHEME_MAX
           || (sp - v->data == sizeof("Bearer") - 1
               && ngx_http_aihub_bearer(v->data));
}


/* "Bearer ai-hub-AbCdEfGh...", "..." */

static ngx_int_t
ngx_http_aihub_mask_value(ngx_http_request_t *r, ngx_str_t *v,
    ngx_uint_t schemed)
{
    u_char  *p, *last, *sp, *out, *o;
    size_t   scheme;

    p = v->data;
    last = p + v->len;
    scheme = 0;

    if (schemed) {
        sp = ngx_strlchr(p, last, ' ');

        /* a scheme is a short word; a long one is a credential alone */

        if (sp != NULL && sp - p <= NGX_HTTP_AIHUB_SCHEME_MAX) {
            scheme = sp - p;

            for (p = sp; p < last && *p == ' '; p++) { /* void */ }
        }
    }

    out = ngx_pnalloc(r->pool, NGX_HTTP_AIHUB_SCHEME_MAX + 1
                               + AIHUB_KEY_PREFIX_LEN + 3);
    if (out == NULL) {
        return NGX_ERROR;
    }

    o = ngx_cpymem(out, v->data, scheme);

    if (scheme) {
        *o++ = ' ';
    }

    if ((size_t) (last - p) >= AIHUB_KEY_PREFIX_LEN
        && ngx_strncmp(p, AIHUB_KEY_TAG, AIHUB_KEY_TAG_LEN) == 0)
    {
        o = ngx_cpymem(o, p, AIHUB_KEY_PREFIX_LEN);
    }

    o = ngx_cpymem(o, "...", 3);

    v->data = out;
    v->len = o - out;

    return NGX_OK;
}


/*
 * The provider's answer headers that are not on the allow-list are hidden.
 * Its Retry-After is kept aside for our own 429.
 */

void
ngx_http_aihub_forward_answer_headers(ngx_http_request_t *r,
    ngx_http_aihub_ctx_t *ctx)
{
    ngx_int_t                   n;
    ngx_uint_t                  i;
    ngx_list_part_t            *part;
    ngx_table_elt_t            *h;
    ngx_http_aihub_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aihub_module);

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0) {
            continue;
        }

        if (ngx_http_aihub_header_is(&h[i], "retry-after",
                                     sizeof("retry-after") - 1))
        {
            n = ngx_http_aihub_retry_after_value(&h[i].value);

            if (n > 0) {
                ctx->forward.retry_after = n;
            }
        }

        if (ngx_http_aihub_header_listed(&h[i],
                                         ngx_http_aihub_answer_allowed,
                                         alcf->pass_answer_headers))
        {
            continue;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aihub forward: hiding the provider's \"%V\"",
                       &h[i].key);

        h[i].hash = 0;
    }

    /* the special pointers nginx writes on its own */

    if (r->headers_out.location) {
        r->headers_out.location->hash = 0;
        r->headers_out.location = NULL;
    }

    if (r->headers_out.refresh) {
        r->headers_out.refresh->hash = 0;
        r->headers_out.refresh = NULL;
    }

    if (r->headers_out.www_authenticate) {
        r->headers_out.www_authenticate->hash = 0;
        r->headers_out.www_authenticate = NULL;
    }

    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);
}


/* a name on a fixed list or the directive's; "x-foo-*" matches a prefix */

static ngx_uint_t
ngx_http_aihub_header_listed(ngx_table_elt_t *h, ngx_str_t *fixed,
    ngx_array_t *more)
{
    size_t      len;
    ngx_str_t  *s, *name;
    ngx_uint_t  i;

    for (s = fixed; s->len; s++) {
        if (ngx_http_aihub_header_is(h, (char *) s->data, s->len)) {
            return 1;
        }
    }

    name = &h->key;

    if (more == NULL) {
        return 0;
    }

    s = more->elts;

    for (i = 0; i < more->nelts; i++) {
        len = s[i].len;

        if (len && s[i].data[len - 1] == '*') {
            if (name->len >= len - 1
                && ngx_strncasecmp(s[i].data, name->data, len - 1) == 0)
            {
                return 1;
            }

            continue;
        }

        if (len == name->len
            && ngx_strncasecmp(s[i].data, name->data, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
