/*
 * The zone of a node's block leases (README, "Leases"): one slot per
 * account and period, in a fixed table (open addressing; a node with more
 * accounts active at once than the table holds leases one call per
 * request for the others, which is exact, only slower), and what a slot's
 * lease admits, how large the next one should be, and what it leaves
 * unused.  The functions that take a slot run under the zone's lock.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_lease_slot.h"


#define NGX_HTTP_AIHUB_LEASE_PROBE    8


static ngx_int_t ngx_http_aihub_lease_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


static ngx_shm_zone_t  *ngx_http_aihub_lease_shm;


ngx_shm_zone_t *
ngx_http_aihub_lease_zone_add(ngx_conf_t *cf, ngx_str_t *cache_zone)
{
    size_t           size;
    ngx_str_t        name;
    ngx_shm_zone_t  *zone;

    name.len = cache_zone->len + sizeof("_leases") - 1;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NULL;
    }

    ngx_sprintf(name.data, "%V_leases", cache_zone);

    size = ngx_align(sizeof(ngx_http_aihub_lease_sh_t), ngx_pagesize)
           + 16 * ngx_pagesize;

    zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_aihub_module);
    if (zone == NULL) {
        return NULL;
    }

    zone->init = ngx_http_aihub_lease_init_zone;
    zone->data = ngx_pcalloc(cf->pool, sizeof(ngx_http_aihub_lease_zone_t));
    if (zone->data == NULL) {
        return NULL;
    }

    return zone;
}


/*
 * The zone of the running configuration, set by each worker process when
 * it starts.  Not while the configuration is read: a reload that failed
 * after "aihub_cache_zone" left the pointer in the failed cycle's freed
 * memory, and every worker process forked after it (one that died, for
 * any reason) crashed at its first lease, over and over.
 */

void
ngx_http_aihub_lease_zone_use(ngx_shm_zone_t *zone)
{
    ngx_http_aihub_lease_shm = zone;
}


static ngx_int_t
ngx_http_aihub_lease_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aihub_lease_zone_t  *ozone = data;

    ngx_http_aihub_lease_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    zone->sh = ngx_slab_calloc(zone->shpool,
                               sizeof(ngx_http_aihub_lease_sh_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    return NGX_OK;
}


/* the zone's slots, or NULL without a zone */

ngx_http_aihub_lease_zone_t *
ngx_http_aihub_lease_zone(void)
{
    return ngx_http_aihub_lease_shm ? ngx_http_aihub_lease_shm->data : NULL;
}


/*
 * The slot of an account and period; with "create", a free one (or one
 * whose lease is over) is taken for it.  Under the lock.
 */

ngx_http_aihub_lease_slot_t *
ngx_http_aihub_lease_slot(ngx_http_aihub_lease_sh_t *sh, uint64_t account,
    int64_t period, ngx_uint_t create, ngx_msec_t now)
{
    ngx_uint_t                    i, h;
    ngx_http_aihub_lease_slot_t  *s, *free;

    h = (ngx_uint_t) ((account * 0x9e3779b97f4a7c15ULL)
                      ^ (uint64_t) period) % NGX_HTTP_AIHUB_LEASE_SLOTS;
    free = NULL;

    for (i = 0; i < NGX_HTTP_AIHUB_LEASE_PROBE; i++) {
        s = &sh->slots[(h + i) % NGX_HTTP_AIHUB_LEASE_SLOTS];

        if (s->account == account && s->period == period) {
            return s;
        }

        if (free == NULL
            && (s->account == 0
                || (s->granted == 0 && s->asked == 0)))
        {
            free = s;
        }
    }

    if (!create || free == NULL) {
        return NULL;
    }

    ngx_memzero(free, sizeof(ngx_http_aihub_lease_slot_t));
    free->account = account;
    free->period = period;
    free->used = now;

    return free;
}


/*
 * Whether a slot's lease admits a call (whose worst-case cost is "worst"):
 * calls left, in the first half of its life, and, for a lease of calls
 * beyond the included ones of an account with a spend cap, cost left to
 * hold the call's.  Under the lock.
 */

ngx_uint_t
ngx_http_aihub_lease_admits(ngx_http_aihub_lease_slot_t *s, uint64_t worst,
    ngx_msec_t now)
{
    return s->granted != 0 && s->admitted < s->granted
           && (ngx_msec_int_t) (now - s->until) < 0
           && (s->cost == 0 || s->cost_admitted + worst <= s->cost);
}


/*
 * The size of the next block: what the current one admitted per ms since
 * it came, times NGX_HTTP_AIHUB_LEASE_SPAN, between the smallest block
 * and NGX_HTTP_AIHUB_LEASE_GROW times it.  Under the lock.
 */

ngx_uint_t
ngx_http_aihub_lease_want(ngx_http_aihub_lease_slot_t *s,
    ngx_uint_t smallest, ngx_msec_t now)
{
    ngx_uint_t  want;
    ngx_msec_t  age;

    age = now - s->installed;

    want = (age == 0) ? NGX_MAX_UINT32_VALUE
                      : s->admitted * NGX_HTTP_AIHUB_LEASE_SPAN / age;

    want = ngx_min(want, smallest * NGX_HTTP_AIHUB_LEASE_GROW);

    return ngx_max(want, smallest);
}


/*
 * A new lease into its slot; what the old one did not admit goes into
 * "back" (calls and cost 0: nothing).  A lease that holds tokens of the
 * global rate limit admits for NGX_HTTP_AIHUB_LEASE_SPAN ms at most: its
 * tokens were taken from the limit now, and an unused one is given back
 * soon.
 */

void
ngx_http_aihub_lease_install(ngx_http_aihub_lease_slot_t *s,
    ngx_http_aihub_lease_grant_t *g, ngx_msec_t now,
    ngx_http_aihub_lease_back_t *back)
{
    ngx_msec_t  admit;

    ngx_http_aihub_lease_unused(s, back);

    admit = g->life / 2;

    if (g->rate_us) {
        admit = ngx_min(admit, NGX_HTTP_AIHUB_LEASE_SPAN);
    }

    ngx_memcpy(s->id, g->id, AIHUB_EVENT_ID_LEN);
    s->granted = g->calls;
    s->admitted = 0;
    s->cost = g->cost;
    s->cost_admitted = 0;
    s->base = g->base;
    s->rate_us = g->rate_us;
    s->rate_left = g->rate_left;
    s->rate_reset = now + g->rate_reset;
    s->installed = now;
    s->until = now + admit;
    s->refill_at = now + admit / 2;
    s->used = now;
}


/*
 * what a slot's lease did not admit, to give back (calls and cost 0:
 * nothing), with its tokens of the global rate limit
 */

void
ngx_http_aihub_lease_unused(ngx_http_aihub_lease_slot_t *s,
    ngx_http_aihub_lease_back_t *back)
{
    back->calls = 0;
    back->cost = 0;
    back->rate_us = 0;

    if (s->granted > s->admitted || s->cost > s->cost_admitted) {
        back->calls = s->granted - ngx_min(s->admitted, s->granted);
        back->cost = s->cost - ngx_min(s->cost_admitted, s->cost);
        back->rate_us = back->calls * s->rate_us;
        ngx_memcpy(back->id, s->id, AIHUB_EVENT_ID_LEN);
        ngx_memcpy(back->m, s->m, s->m_len);
        back->m_len = s->m_len;
    }
}
