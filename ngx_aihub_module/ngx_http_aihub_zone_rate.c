/*
 * The accounts' rate limiter state in the shared zone: one node per
 * account, in a tree of its own with an LRU queue; ngx_http_aihub_limit.c
 * says what the state means.  When the zone is full, the least recently
 * used accounts go first, then cached keys.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_zone.h"
#include "ngx_http_aihub_zone_sh.h"


static ngx_http_aihub_zone_account_t *ngx_http_aihub_zone_account(
    ngx_http_aihub_zone_t *cache, uint64_t account);


/*
 * Runs the handler under the zone's lock with the account's rate state,
 * made on first use; with NULLs when the zone has no room for it.
 * NGX_DECLINED: there is no zone, the handler did not run.
 */

ngx_int_t
ngx_http_aihub_zone_rate(ngx_http_request_t *r, uint64_t account,
    ngx_http_aihub_zone_rate_pt handler, void *data)
{
    ngx_http_aihub_zone_t          *cache;
    ngx_http_aihub_zone_account_t  *ca;
    ngx_http_aihub_main_conf_t     *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aihub_module);

    if (amcf->shm_zone == NULL) {
        return NGX_DECLINED;
    }

    cache = amcf->shm_zone->data;

    ngx_shmtx_lock(&cache->shpool->mutex);

    ca = ngx_http_aihub_zone_account(cache, account);

    if (ca) {
        handler(&ca->rl_requests, &ca->rl_tokens, data);

    } else {
        handler(NULL, NULL, data);
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);

    if (ca == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aihub: no room for the rate state of account %uL "
                      "in the zone \"%V\"", account,
                      &amcf->shm_zone->shm.name);
    }

    return NGX_OK;
}


/*
 * Finds the account's node, or makes it (evicting the least recently used
 * accounts, then keys, when the zone is full).  Under the zone's lock.
 */

static ngx_http_aihub_zone_account_t *
ngx_http_aihub_zone_account(ngx_http_aihub_zone_t *cache, uint64_t account)
{
    ngx_uint_t                      n;
    ngx_queue_t                    *q;
    ngx_rbtree_key_t                key;
    ngx_rbtree_node_t              *node, *sentinel;
    ngx_http_aihub_zone_account_t  *ca;

    key = (ngx_rbtree_key_t) account;

    node = cache->sh->accounts.root;
    sentinel = cache->sh->accounts.sentinel;

    while (node != sentinel) {

        if (key == node->key) {
            ca = (ngx_http_aihub_zone_account_t *) node;
            ngx_queue_remove(&ca->queue);
            ngx_queue_insert_head(&cache->sh->accounts_queue, &ca->queue);
            return ca;
        }

        node = (key < node->key) ? node->left : node->right;
    }

    for (n = 0; n < 64; n++) {

        ca = ngx_slab_calloc_locked(cache->shpool,
                                    sizeof(ngx_http_aihub_zone_account_t));
        if (ca != NULL) {
            ca->node.key = key;
            ngx_rbtree_insert(&cache->sh->accounts, &ca->node);
            ngx_queue_insert_head(&cache->sh->accounts_queue, &ca->queue);
            return ca;
        }

        if (!ngx_queue_empty(&cache->sh->accounts_queue)) {
            q = ngx_queue_last(&cache->sh->accounts_queue);
            ca = ngx_queue_data(q, ngx_http_aihub_zone_account_t, queue);
            ngx_queue_remove(&ca->queue);
            ngx_rbtree_delete(&cache->sh->accounts, &ca->node);
            ngx_slab_free_locked(cache->shpool, ca);
            continue;
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
