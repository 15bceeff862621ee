/*
 * A batch's settles summed per lease before they leave (the apply script,
 * ngx_http_aihub_scripts.c, then reads and writes each lease once and
 * parses one record per lease, not one per call).  A settle record as the
 * buffer keeps it (ngx_http_aihub_settle_rec_t, numbers as numbers):
 * "<account>:<YYYYMMDD>", lease id, kind ('s' success, 'o' success beyond
 * the included calls, 'f' failed, 'r' returned), calls released, cost
 * released, prompt (a return: its tokens of the global rate limit, as
 * time in µs), completion, total, cost.  A sum as it
 * is sent: "<account>:<YYYYMMDD>", lease id, calls released, cost
 * released, successes, prompt, completion, total, cost, overage, the
 * global rate limit's time returned.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_settle.h"

#include "aihub_usage_event.h"


/* adds one record to the sums (n of them so far); returns the new n */

ngx_uint_t
ngx_http_aihub_settle_add(ngx_http_aihub_settle_sum_t *sums, ngx_uint_t n,
    ngx_http_aihub_settle_rec_t *rec)
{
    ngx_uint_t                    i;
    ngx_http_aihub_settle_sum_t  *s;

    for (i = 0; i < n; i++) {
        s = &sums[i];

        if (s->m.len == rec->m_len
            && ngx_memcmp(s->id.data, rec->id, AIHUB_EVENT_ID_LEN) == 0
            && ngx_memcmp(s->m.data, rec->m, rec->m_len) == 0)
        {
            break;
        }
    }

    s = &sums[i];

    if (i == n) {
        ngx_memzero(s, sizeof(ngx_http_aihub_settle_sum_t));
        s->m.data = rec->m;
        s->m.len = rec->m_len;
        s->id.data = rec->id;
        s->id.len = AIHUB_EVENT_ID_LEN;
        n++;
    }

    s->v[0] += rec->v[0];
    s->v[1] += rec->v[1];

    if (rec->kind == 's' || rec->kind == 'o') {
        s->v[2]++;

        for (i = 0; i < 4; i++) {
            s->v[3 + i] += rec->v[2 + i];
        }

        if (rec->kind == 'o') {
            s->v[7] += rec->v[5];
        }

    } else if (rec->kind == 'r') {
        s->v[8] += rec->v[2];
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
