/*
 * The ledger's daily rollups (usage_daily): the stored events of a batch
 * summed per account, day and model, applied with one multi-row upsert in
 * the batch's transaction (ledger_store.c).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "db.h"
#include "ledger_state.h"


void
aw_rollup_reset(aw_drain_t *d, size_t *nroll)
{
    *nroll = 0;
    memset(d->rollup_hash, 0, d->rollup_hash_size * sizeof(unsigned));
}


/* adds the event to its (account, day, model) rollup; FNV-1a hashed */

void
aw_rollup_add(aw_drain_t *d, size_t *nroll, const aw_event_t *ev)
{
    size_t          h, mask;
    unsigned        idx;
    aw_rollup_t    *ro;
    char            day[11];
    const char     *p;
    unsigned long   fnv;

    aw_day_format(ev->ts_ms, day, sizeof(day));

    fnv = 2166136261UL;
    fnv = (fnv ^ (unsigned long) (ev->account & 0xffffffff)) * 16777619UL;
    fnv = (fnv ^ (unsigned long) ((unsigned long long) ev->account >> 32))
          * 16777619UL;

    for (p = day; *p; p++) {
        fnv = (fnv ^ (unsigned char) *p) * 16777619UL;
    }

    for (p = ev->model; *p; p++) {
        fnv = (fnv ^ (unsigned char) *p) * 16777619UL;
    }

    mask = d->rollup_hash_size - 1;

    for (h = fnv & mask; (idx = d->rollup_hash[h]) != 0; h = (h + 1) & mask)
    {
        ro = &d->rollups[idx - 1];

        if (ro->account == ev->account && strcmp(ro->day, day) == 0
            && strcmp(ro->model, ev->model) == 0)
        {
            break;
        }
    }

    if (idx == 0) {
        ro = &d->rollups[(*nroll)++];
        memset(ro, 0, sizeof(*ro));
        ro->account = ev->account;
        memcpy(ro->day, day, sizeof(day));
        ro->model = ev->model;
        d->rollup_hash[h] = (unsigned) *nroll;
    }

    ro->requests++;
    ro->calls += AW_EVENT_COUNTED(ev);
    ro->prompt_tokens += ev->prompt_tokens;
    ro->completion_tokens += ev->completion_tokens;
    ro->total_tokens += ev->total_tokens;
    ro->cost_micros += ev->cost_micros;
}


static int
aw_rollup_cmp(const void *a, const void *b)
{
    const aw_rollup_t  *x = a, *y = b;
    int                 c;

    if (x->account != y->account) {
        return x->account < y->account ? -1 : 1;
    }

    c = strcmp(x->day, y->day);

    return c ? c : strcmp(x->model, y->model);
}


/*
 * The rollups summed in C as one multi-row INSERT ... ON DUPLICATE KEY
 * UPDATE, in key order (the same lock order in every worker).  Reuses q.
 * 0: done; -1: MySQL failed (the caller rolls back).
 */

int
aw_rollup_apply(aw_drain_t *d, size_t nroll, aw_buf_t *q)
{
    size_t        i;
    aw_rollup_t  *ro;

    if (nroll == 0) {
        return 0;
    }

    qsort(d->rollups, nroll, sizeof(aw_rollup_t), aw_rollup_cmp);

    aw_buf_reset(q);
    aw_buf_puts(q, "INSERT INTO usage_daily (account, day, model, "
                "requests, calls, prompt_tokens, completion_tokens, "
                "total_tokens, cost_micros) VALUES ");

    for (i = 0; i < nroll; i++) {
        ro = &d->rollups[i];
        aw_buf_printf(q, "%s(%lld, '%s', ", i ? ", " : "", ro->account,
                      ro->day);
        aw_buf_sql_str(q, d->db, ro->model);
        aw_buf_printf(q, ", %lld, %lld, %lld, %lld, %lld, %lld)",
                      ro->requests, ro->calls, ro->prompt_tokens,
                      ro->completion_tokens, ro->total_tokens,
                      ro->cost_micros);
    }

    aw_buf_puts(q, AW_ROLLUP_UPSERT);

    return mysql_real_query(d->db, q->data, q->len) == 0 ? 0 : -1;
}
