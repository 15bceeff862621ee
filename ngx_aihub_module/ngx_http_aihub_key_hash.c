/*
 * A key's SHA-256, remembered (ngx_http_aihub_key_hash.h).
 *
 * Every call hashes its key to find it: SHA-256 of the 45 bytes costs some
 * 2,300 instructions even with the CPU's SHA instructions, a twentieth of a
 * call's.  Each worker process keeps the digests of the keys it saw last in
 * a table of NGX_HTTP_AIHUB_KEY_HASH_SLOTS, each under the SipHash-2-4-128
 * of its key (some 300 instructions) with a key drawn at random when the
 * process starts.
 *
 * The table holds no key: SipHash's output reveals nothing of its input to
 * whoever lacks its key, and without that key no one can make up a key
 * whose output is another's (one chance in 2^128 for any guess).  A slot
 * is the latest key hashed to it; a miss costs the SHA-256 it saves.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/rand.h>

#include "aihub_siphash.h"
#include "ngx_http_aihub_util.h"
#include "ngx_http_aihub_key_hash.h"


#define NGX_HTTP_AIHUB_KEY_HASH_SLOTS  1024      /* a power of 2 */


typedef struct {
    uint8_t   tag[AIHUB_SIPHASH_OUT_LEN];
    u_char    bin[32];
    unsigned  used:1;
} ngx_http_aihub_key_hash_slot_t;


static uint8_t                          ngx_http_aihub_key_hash_secret[
                                            AIHUB_SIPHASH_KEY_LEN];
static ngx_uint_t                       ngx_http_aihub_key_hash_ready;
static ngx_http_aihub_key_hash_slot_t   ngx_http_aihub_key_hash_slots[
                                            NGX_HTTP_AIHUB_KEY_HASH_SLOTS];


ngx_int_t
ngx_http_aihub_key_hash_init_process(ngx_cycle_t *cycle)
{
    ngx_memzero(ngx_http_aihub_key_hash_slots,
                sizeof(ngx_http_aihub_key_hash_slots));

    /* without random bytes every key is hashed, as without the table */

    ngx_http_aihub_key_hash_ready =
        (RAND_bytes(ngx_http_aihub_key_hash_secret,
                    sizeof(ngx_http_aihub_key_hash_secret))
         == 1);

    if (!ngx_http_aihub_key_hash_ready) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "aihub: no random bytes for the key hash table; "
                      "every call hashes its key");
    }

    return NGX_OK;
}


void
ngx_http_aihub_key_hash(u_char *bin, u_char *key, size_t len)
{
    uint8_t                          tag[AIHUB_SIPHASH_OUT_LEN];
    ngx_http_aihub_key_hash_slot_t  *slot;

    if (!ngx_http_aihub_key_hash_ready) {
        ngx_http_aihub_sha256(bin, key, len);
        return;
    }

    aihub_siphash128(ngx_http_aihub_key_hash_secret, key, len, tag);

    slot = &ngx_http_aihub_key_hash_slots[
               (tag[0] | (ngx_uint_t) tag[1] << 8)
               & (NGX_HTTP_AIHUB_KEY_HASH_SLOTS - 1)];

    if (slot->used && ngx_memcmp(slot->tag, tag, sizeof(tag)) == 0) {
        ngx_memcpy(bin, slot->bin, sizeof(slot->bin));
        return;
    }

    ngx_http_aihub_sha256(bin, key, len);

    ngx_memcpy(slot->tag, tag, sizeof(tag));
    ngx_memcpy(slot->bin, bin, sizeof(slot->bin));
    slot->used = 1;
}
