/*
 * A batch's settles summed per lease before they leave (the apply script,
 * ngx_http_aihub_scripts.c, then reads and writes each lease once and
 * parses one record per lease, not one per call).  A settle record as the
 * buffer keeps it: "<account>:<YYYYMMDD>", lease id, kind ('s' success,
 * 'o' success beyond the included calls, 'f' failed, 'r' returned), calls
 * released, cost released, prompt (a return: its tokens of the global
 * rate limit, as time in µs), completion, total, cost.  A sum as it
 * is sent: "<account>:<YYYYMMDD>", lease id, calls released, cost
 * released, successes, prompt, completion, total, cost, overage, the
 * global rate limit's time returned.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_settle.h"

#include "aihub_usage_event.h"


static int64_t ngx_http_aihub_settle_num(const char *p, size_t len);


/* adds one record to the sums (n of them so far); returns the new n */

ngx_uint_t
ngx_http_aihub_settle_add(ngx_http_aihub_settle_sum_t *sums, ngx_uint_t n,
    const char **argv, const size_t *argvlen)
{
    u_char                        kind;
    ngx_uint_t                    i;
    ngx_http_aihub_settle_sum_t  *s;

    for (i = 0; i < n; i++) {
        s = &sums[i];

        if (s->m.len == argvlen[0] && s->id.len == argvlen[1]
            && ngx_memcmp(s->m.data, argv[0], argvlen[0]) == 0
            && ngx_memcmp(s->id.data, argv[1], argvlen[1]) == 0)
        {
            break;
        }
    }

    s = &sums[i];

    if (i == n) {
        ngx_memzero(s, sizeof(ngx_http_aihub_settle_sum_t));
        s->m.data = (u_char *) argv[0];
        s->m.len = argvlen[0];
        s->id.data = (u_char *) argv[1];
        s->id.len = argvlen[1];
        n++;
    }

    kind = argvlen[2] ? (u_char) argv[2][0] : 'r';

    s->v[0] += ngx_http_aihub_settle_num(argv[3], argvlen[3]);
    s->v[1] += ngx_http_aihub_settle_num(argv[4], argvlen[4]);

    if (kind == 's' || kind == 'o') {
        s->v[2]++;

        for (i = 0; i < 4; i++) {
            s->v[3 + i] += ngx_http_aihub_settle_num(argv[5 + i],
                                                     argvlen[5 + i]);
        }

        if (kind == 'o') {
            s->v[7] += ngx_http_aihub_settle_num(argv[8], argvlen[8]);
        }

    } else if (kind == 'r') {
        s->v[8] += ngx_http_aihub_settle_num(argv[5], argvlen[5]);
    }

    return n;
}


/* a sum's NGX_HTTP_AIHUB_SETTLE_SUM arguments */

void
ngx_http_aihub_settle_args(ngx_http_aihub_settle_sum_t *s, const char **argv,
    size_t *argvlen)
{
    ngx_uint_t  i;

    argv[0] = (const char *) s->m.data;
    argvlen[0] = s->m.len;
    argv[1] = (const char *) s->id.data;
    argvlen[1] = s->id.len;

    for (i = 0; i < 9; i++) {
        argv[2 + i] = (const char *) s->nums[i];
        argvlen[2 + i] = aihub_event_int(s->nums[i], s->v[i]) - s->nums[i];
    }
}


/* a decimal the module wrote itself (an optional '-', digits) */

static int64_t
ngx_http_aihub_settle_num(const char *p, size_t len)
{
    int64_t     v;
    ngx_uint_t  neg;
    const char *last;

    last = p + len;
    neg = (p < last && *p == '-');
    v = 0;

    for (p += neg; p < last && *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
    }

    return neg ? -v : v;
}
