/*
 * Key generation and hashing (pure apart from the CSPRNG): the key format
 * itself is aihub_key_format.c, shared with the nginx module.
 */

#include <string.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "aihub_worker.h"


void
aw_sha256_hex(const char *s, size_t len, char *out)
{
    unsigned char  md[SHA256_DIGEST_LENGTH];
    int            i;
    static const char  hex[] = "0123456789abcdef";

    SHA256((const unsigned char *) s, len, md);

    for (i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }

    out[2 * SHA256_DIGEST_LENGTH] = '\0';
}


/* a fresh key from the CSPRNG into key[AIHUB_KEY_LEN + 1] */

int
aw_key_generate(char *key)
{
    unsigned char  entropy[64];
    int            tries;

    for (tries = 0; tries < 8; tries++) {
        if (RAND_bytes(entropy, sizeof(entropy)) != 1) {
            aw_log(AW_LOG_ERROR, "RAND_bytes() failed");
            return -1;
        }

        if (aihub_key_make(entropy, sizeof(entropy), key) == 0) {
            memset(entropy, 0, sizeof(entropy));
            return 0;
        }
    }

    return -1;
}
