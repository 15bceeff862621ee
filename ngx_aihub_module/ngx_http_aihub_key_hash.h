/*
 * A key's SHA-256 (its name in Redis and in the shared zone), remembered per
 * worker process under a keyed hash of the key.
 */

#ifndef NGX_HTTP_AIHUB_KEY_HASH_H
#define NGX_HTTP_AIHUB_KEY_HASH_H

#include <ngx_config.h>
#include <ngx_core.h>


ngx_int_t ngx_http_aihub_key_hash_init_process(ngx_cycle_t *cycle);

/* bin: the 32 bytes of SHA-256(key) */
void ngx_http_aihub_key_hash(u_char *bin, u_char *key, size_t len);


#endif /* NGX_HTTP_AIHUB_KEY_HASH_H */
