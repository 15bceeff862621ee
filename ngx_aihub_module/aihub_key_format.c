/*
 * The API key format (see aihub_protocol.h): pure functions shared by the
 * nginx module (checking) and the worker (making).
 */

#include <string.h>

#include "aihub_protocol.h"


static const char  aihub_base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";


/* CRC-32 (IEEE, reflected), a byte at a time, table made on first use */

static uint32_t
aihub_crc32(const unsigned char *p, size_t len)
{
    size_t           i;
    uint32_t         crc, c;
    int              k, n;

    static uint32_t  table[256];
    static int       ready;

    if (!ready) {
        for (n = 0; n < 256; n++) {
            c = (uint32_t) n;

            for (k = 0; k < 8; k++) {
                c = (c >> 1) ^ (0xedb88320 & (0 - (c & 1)));
            }

            table[n] = c;
        }

        ready = 1;
    }

    crc = 0xffffffff;

    for (i = 0; i < len; i++) {
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    }

    return crc ^ 0xffffffff;
}


static int
aihub_is_base62(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')
           || (c >= 'a' && c <= 'z');
}


/* writes AIHUB_KEY_CHECK_LEN characters, no terminating NUL */

void
aihub_key_checksum(const char *random, char *out)
{
    uint32_t  crc;
    int       i;

    crc = aihub_crc32((const unsigned char *) random, AIHUB_KEY_RANDOM_LEN);

    for (i = AIHUB_KEY_CHECK_LEN - 1; i >= 0; i--) {
        out[i] = aihub_base62[crc % 62];
        crc /= 62;
    }
}


/* 1 if the key has the right shape and checksum, 0 otherwise */

int
aihub_key_check(const char *key, size_t len)
{
    size_t  i;
    char    check[AIHUB_KEY_CHECK_LEN];

    if (len != AIHUB_KEY_LEN
        || memcmp(key, AIHUB_KEY_TAG, AIHUB_KEY_TAG_LEN) != 0)
    {
        return 0;
    }

    for (i = AIHUB_KEY_TAG_LEN; i < len; i++) {
        if (!aihub_is_base62((unsigned char) key[i])) {
            return 0;
        }
    }

    aihub_key_checksum(key + AIHUB_KEY_TAG_LEN, check);

    return memcmp(check, key + AIHUB_KEY_TAG_LEN + AIHUB_KEY_RANDOM_LEN,
                  AIHUB_KEY_CHECK_LEN) == 0;
}


/*
 * Makes a key from random bytes by rejection sampling (no modulo bias):
 * bytes >= 248 are skipped.  Writes AIHUB_KEY_LEN characters and a NUL to
 * out; returns -1 if the entropy ran out (64 bytes are always plenty in
 * practice; the caller retries with fresh bytes).
 */

int
aihub_key_make(const unsigned char *entropy, size_t n, char *out)
{
    size_t  i, got;

    memcpy(out, AIHUB_KEY_TAG, AIHUB_KEY_TAG_LEN);

    got = 0;

    for (i = 0; i < n && got < AIHUB_KEY_RANDOM_LEN; i++) {
        if (entropy[i] < 248) {
            out[AIHUB_KEY_TAG_LEN + got++] = aihub_base62[entropy[i] % 62];
        }
    }

    if (got < AIHUB_KEY_RANDOM_LEN) {
        return -1;
    }

    aihub_key_checksum(out + AIHUB_KEY_TAG_LEN,
                       out + AIHUB_KEY_TAG_LEN + AIHUB_KEY_RANDOM_LEN);
    out[AIHUB_KEY_LEN] = '\0';

    return 0;
}
