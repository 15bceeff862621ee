/*
 * The key cache: an nginx shared zone ("aihub_cache_zone") shared by all
 * worker processes, an rbtree keyed by the key's SHA-256 with an LRU queue,
 * like limit_req's.  A node holds the key record read from Redis.  Records
 * go stale after the TTL, or at once on an invalidation from Redis
 * pub/sub; a stale record is read again from Redis, but still serves when
 * Redis is down and the location fails open.  A second tree holds one node
 * per account with the account's rate limiter state: the limits are the
 * account's, every key of it draws on the same state, so minting keys
 * never multiplies them.  The lock is held only around lookups and
 * updates, never across I/O.  What the rate state means is
 * ngx_http_aihub_limit.c's business: this file only keeps it and lends it
 * out under the lock.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_zone.h"
#include "ngx_http_aihub_zone_sh.h"


static void ngx_http_aihub_zone_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_aihub_zone_node_t *ngx_http_aihub_zone_find(
    ngx_http_aihub_zone_t *cache, u_char *hash);
static ngx_http_aihub_zone_node_t *ngx_http_aihub_zone_alloc(
    ngx_http_aihub_zone_t *cache, size_t size);
static void ngx_http_aihub_zone_copy_out(ngx_http_request_t *r,
    ngx_http_aihub_zone_node_t *cn, ngx_http_aihub_key_t *key);


ngx_int_t
ngx_http_aihub_zone_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aihub_zone_t  *ocache = data;

    size_t                   len;
    ngx_http_aihub_zone_t  *cache;

    cache = shm_zone->data;

    if (ocache) {
        cache->sh = ocache->sh;
        cache->shpool = ocache->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    cache->sh = ngx_slab_calloc(cache->shpool,
                                sizeof(ngx_http_aihub_zone_sh_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    cache->shpool->data = cache->sh;

    ngx_rbtree_init(&cache->sh->rbtree, &cache->sh->sentinel,
                    ngx_http_aihub_zone_rbtree_insert);
    ngx_queue_init(&cache->sh->queue);

    ngx_rbtree_init(&cache->sh->accounts, &cache->sh->accounts_sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&cache->sh->accounts_queue);

    len = sizeof(" in aihub_cache_zone \"\"") + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx, " in aihub_cache_zone \"%V\"%Z",
                &shm_zone->shm.name);

    cache->shpool->log_nomem = 0;

    return NGX_OK;
}


void *
ngx_http_aihub_zone_create(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_aihub_zone_t));
}


static void
ngx_http_aihub_zone_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t            **p;
    ngx_http_aihub_zone_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            cn = (ngx_http_aihub_zone_node_t *) node;
            cnt = (ngx_http_aihub_zone_node_t *) temp;

            p = (ngx_memcmp(cn->hash, cnt->hash, NGX_HTTP_AIHUB_SHA256_LEN)
                 < 0) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_rbtree_key_t
ngx_http_aihub_zone_key(u_char *hash)
{
    /* a SHA-256 is uniform: its first bytes are a fine tree key */

    return ((ngx_rbtree_key_t) hash[0] << 24)
           | ((ngx_rbtree_key_t) hash[1] << 16)
           | ((ngx_rbtree_key_t) hash[2] << 8)
           | (ngx_rbtree_key_t) hash[3];
}


static ngx_http_aihub_zone_node_t *
ngx_http_aihub_zone_find(ngx_http_aihub_zone_t *cache, u_char *hash)
{
    ngx_int_t                     rc;
    ngx_rbtree_key_t              key;
    ngx_rbtree_node_t            *node, *sentinel;
    ngx_http_aihub_zone_node_t  *cn;

    key = ngx_http_aihub_zone_key(hash);

    node = cache->sh->rbtree.root;
    sentinel = cache->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        cn = (ngx_http_aihub_zone_node_t *) node;

        rc = ngx_memcmp(hash, cn->hash, NGX_HTTP_AIHUB_SHA256_LEN);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Whether this worker process's subscription hears invalidations; while it
 * does not, no cached record counts as fresh (each is read again from
 * Redis), so a revocation still takes effect at once.
 */

static ngx_uint_t  ngx_http_aihub_zone_trusted;


void
ngx_http_aihub_zone_trust(ngx_shm_zone_t *zone, ngx_uint_t trusted)
{
    if (trusted && !ngx_http_aihub_zone_trusted) {
        /* what was published while it was deaf is unknown: start fresh */
        ngx_http_aihub_zone_invalidate(zone, (u_char *) AIHUB_INV_ALL,
                                       sizeof(AIHUB_INV_ALL) - 1);
    }

    ngx_http_aihub_zone_trusted = trusted;
}


/*
 * Looks a key up.  NGX_OK: a fresh record; NGX_AGAIN: a stale one (the key
 * is filled in all the same, for fail-open); NGX_BUSY: one invalidated at
 * the source (revoked, changed), never to be served without Redis;
 * NGX_DECLINED: none.  "heard" gets the count of invalidations heard so
 * far, for ngx_http_aihub_zone_put() of the record read from Redis next.
 */

ngx_int_t
ngx_http_aihub_zone_get(ngx_http_request_t *r, u_char *hash,
    ngx_http_aihub_key_t *key, ngx_uint_t *heard)
{
    ngx_int_t                     rc;
    ngx_http_aihub_zone_t       *cache;
    ngx_http_aihub_zone_node_t  *cn;
    ngx_http_aihub_main_conf_t   *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    if (amcf->shm_zone == NULL) {
        return NGX_DECLINED;
    }

    cache = amcf->shm_zone->data;

    ngx_shmtx_lock(&cache->shpool->mutex);

    *heard = cache->sh->invalidations;

    cn = ngx_http_aihub_zone_find(cache, hash);

    if (cn == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_queue_remove(&cn->queue);
    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

    if (cn->stale) {
        /* changed at the source: read again, never served failing open */
        rc = NGX_BUSY;

    } else if (cn->generation != cache->sh->generation
               || ngx_current_msec - cn->fetched >= amcf->cache_ttl
               || !ngx_http_aihub_zone_trusted)
    {
        rc = NGX_AGAIN;

    } else {
        rc = NGX_OK;
    }

    ngx_http_aihub_zone_copy_out(r, cn, key);

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return key->models.data == NULL && key->models.len ? NGX_ERROR : rc;
}


static void
ngx_http_aihub_zone_copy_out(ngx_http_request_t *r,
    ngx_http_aihub_zone_node_t *cn, ngx_http_aihub_key_t *key)
{
    key->rec = cn->rec;
    key->models.len = cn->models_len;
    key->models.data = ngx_pnalloc(r->pool, cn->models_len + 1);

    if (key->models.data) {
        ngx_memcpy(key->models.data, cn->models, cn->models_len);
    }

    ngx_http_aihub_key_strings(key);
}


/*
 * Stores a record read from Redis, asked for when "heard" invalidations had
 * been heard.  One heard since may be about this key, and the reply may
 * predate it: Redis answered the lookup on the command connection before
 * the change, and its message on the subscription connection was handled
 * first.  Such a record is stored stale, read again when next asked for;
 * stored fresh it would serve a revoked key until the TTL.
 */

ngx_int_t
ngx_http_aihub_zone_put(ngx_http_request_t *r, u_char *hash,
    ngx_http_aihub_key_t *key, ngx_uint_t heard)
{
    size_t                        size;
    ngx_http_aihub_zone_t       *cache;
    ngx_http_aihub_zone_node_t  *cn;
    ngx_http_aihub_main_conf_t   *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    if (amcf->shm_zone == NULL) {
        return NGX_OK;
    }

    cache = amcf->shm_zone->data;

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_aihub_zone_find(cache, hash);

    if (cn != NULL && cn->models_len >= key->models.len) {
        goto fill;
    }

    if (cn != NULL) {
        ngx_http_aihub_zone_free(cache, cn);
    }

    size = offsetof(ngx_http_aihub_zone_node_t, models) + key->models.len;

    cn = ngx_http_aihub_zone_alloc(cache, size);

    if (cn == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aihub: could not cache key %V: the zone \"%V\" "
                      "is too small", &key->prefix,
                      &amcf->shm_zone->shm.name);
        return NGX_OK;
    }

    ngx_memcpy(cn->hash, hash, NGX_HTTP_AIHUB_SHA256_LEN);
    cn->node.key = ngx_http_aihub_zone_key(hash);

    ngx_rbtree_insert(&cache->sh->rbtree, &cn->node);
    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);
    cache->sh->entries++;

fill:

    cn->rec = key->rec;
    cn->models_len = key->models.len;
    ngx_memcpy(cn->models, key->models.data, key->models.len);
    cn->fetched = ngx_current_msec;
    cn->generation = cache->sh->generation;
    cn->stale = (cache->sh->invalidations != heard);

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return NGX_OK;
}


/* evicts the least recently used nodes until the allocation fits */

static ngx_http_aihub_zone_node_t *
ngx_http_aihub_zone_alloc(ngx_http_aihub_zone_t *cache, size_t size)
{
    ngx_uint_t                    n;
    ngx_queue_t                  *q;
    ngx_http_aihub_zone_node_t  *cn;

    for (n = 0; n < 64; n++) {

        cn = ngx_slab_alloc_locked(cache->shpool, size);
        if (cn != NULL) {
            return cn;
        }

        if (ngx_queue_empty(&cache->sh->queue)) {
            return NULL;
        }

        q = ngx_queue_last(&cache->sh->queue);
        ngx_http_aihub_zone_free(cache,
            ngx_queue_data(q, ngx_http_aihub_zone_node_t, queue));
    }

    return NULL;
}


/* under the zone's lock; for ngx_http_aihub_zone_rate.c too */

void
ngx_http_aihub_zone_free(ngx_http_aihub_zone_t *cache,
    ngx_http_aihub_zone_node_t *cn)
{
    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&cache->sh->rbtree, &cn->node);
    ngx_slab_free_locked(cache->shpool, cn);
    cache->sh->entries--;
}


/*
 * An invalidation from Redis: "key:<sha256hex>", "account:<id>" or "all".
 * The records go stale; the accounts' rate limiter state stays.
 */

void
ngx_http_aihub_zone_invalidate(ngx_shm_zone_t *zone, u_char *msg,
    size_t len)
{
    u_char                        hash[NGX_HTTP_AIHUB_SHA256_LEN];
    uint64_t                      account;
    ngx_int_t                     n;
    ngx_queue_t                  *q;
    ngx_http_aihub_zone_t       *cache;
    ngx_http_aihub_zone_node_t  *cn;

    if (zone == NULL) {
        return;
    }

    cache = zone->data;

#define AIHUB_MSG_IS(m)                                                      \
    (len == sizeof(m) - 1 && ngx_strncmp(msg, m, sizeof(m) - 1) == 0)
#define AIHUB_MSG_STARTS(m)                                                  \
    (len > sizeof(m) - 1 && ngx_strncmp(msg, m, sizeof(m) - 1) == 0)

    if (AIHUB_MSG_IS(AIHUB_INV_ALL)) {
        ngx_shmtx_lock(&cache->shpool->mutex);
        cache->sh->generation++;
        cache->sh->invalidations++;
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return;
    }

    if (AIHUB_MSG_STARTS(AIHUB_INV_KEY)
        && len == sizeof(AIHUB_INV_KEY) - 1 + AIHUB_SHA256_HEX_LEN)
    {
        if (ngx_http_aihub_hex_decode(hash, msg + sizeof(AIHUB_INV_KEY) - 1,
                                      AIHUB_SHA256_HEX_LEN)
            != NGX_OK)
        {
            return;
        }

        ngx_shmtx_lock(&cache->shpool->mutex);

        cache->sh->invalidations++;

        cn = ngx_http_aihub_zone_find(cache, hash);
        if (cn) {
            cn->stale = 1;
        }

        ngx_shmtx_unlock(&cache->shpool->mutex);
        return;
    }

    if (AIHUB_MSG_STARTS(AIHUB_INV_ACCOUNT)) {
        n = ngx_atoi(msg + sizeof(AIHUB_INV_ACCOUNT) - 1,
                     len - (sizeof(AIHUB_INV_ACCOUNT) - 1));
        if (n == NGX_ERROR) {
            return;
        }

        account = (uint64_t) n;

        ngx_shmtx_lock(&cache->shpool->mutex);

        cache->sh->invalidations++;

        for (q = ngx_queue_head(&cache->sh->queue);
             q != ngx_queue_sentinel(&cache->sh->queue);
             q = ngx_queue_next(q))
        {
            cn = ngx_queue_data(q, ngx_http_aihub_zone_node_t, queue);

            if (cn->rec.account_id == account) {
                cn->stale = 1;
            }
        }

        ngx_shmtx_unlock(&cache->shpool->mutex);
    }

#undef AIHUB_MSG_IS
#undef AIHUB_MSG_STARTS
}


ngx_http_aihub_metrics_t *
ngx_http_aihub_zone_metrics(ngx_shm_zone_t *zone)
{
    ngx_http_aihub_zone_t  *cache;

    if (zone == NULL) {
        return NULL;
    }

    cache = zone->data;

    return &cache->sh->metrics;
}


/* zone statistics for the metrics endpoint */

void
ngx_http_aihub_zone_stats(ngx_shm_zone_t *zone, ngx_uint_t *entries,
    size_t *size)
{
    ngx_http_aihub_zone_t  *cache;

    *entries = 0;
    *size = 0;

    if (zone == NULL) {
        return;
    }

    cache = zone->data;

    ngx_shmtx_lock(&cache->shpool->mutex);
    *entries = cache->sh->entries;
    ngx_shmtx_unlock(&cache->shpool->mutex);

    *size = zone->shm.size;
}


/*
 * The providers' priority lanes and their per-plan counters, with the lock
 * that guards them (ngx_http_aihub_lane.c says what they mean).  NULL:
 * there is no zone.
 */

ngx_shmtx_t *
ngx_http_aihub_zone_lanes(ngx_shm_zone_t *zone,
    ngx_http_aihub_lane_sh_t **lanes, ngx_http_aihub_lane_plan_sh_t **plans)
{
    ngx_http_aihub_zone_t  *cache;

    if (zone == NULL) {
        return NULL;
    }

    cache = zone->data;

    *lanes = cache->sh->lanes;
    *plans = cache->sh->lane_plans;

    return &cache->shpool->mutex;
}
