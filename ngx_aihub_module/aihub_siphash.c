/*
 * SipHash-2-4, 128-bit output (aihub_siphash.h), written from the paper's
 * description: four 64-bit lanes, two rounds per 8-byte word of the
 * message, the last word padded with the length, four rounds for each half
 * of the output.
 */

#include <string.h>

#include "aihub_siphash.h"


#define aihub_rotl(x, b)  (uint64_t) (((x) << (b)) | ((x) >> (64 - (b))))

#define aihub_sip_round(v0, v1, v2, v3)                                      \
    v0 += v1; v1 = aihub_rotl(v1, 13); v1 ^= v0; v0 = aihub_rotl(v0, 32);    \
    v2 += v3; v3 = aihub_rotl(v3, 16); v3 ^= v2;                             \
    v0 += v3; v3 = aihub_rotl(v3, 21); v3 ^= v0;                             \
    v2 += v1; v1 = aihub_rotl(v1, 17); v1 ^= v2; v2 = aihub_rotl(v2, 32)


/* n <= 8 bytes as a little-endian word, whatever the machine */

static uint64_t
aihub_sip_word(const uint8_t *p, size_t n)
{
    size_t    i;
    uint64_t  w;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n == 8) {
        memcpy(&w, p, 8);      /* one load */
        return w;
    }
#endif

    w = 0;

    for (i = n; i-- > 0; /* void */) {
        w = (w << 8) | p[i];
    }

    return w;
}


void
aihub_siphash128(const uint8_t key[AIHUB_SIPHASH_KEY_LEN], const void *in,
    size_t len, uint8_t out[AIHUB_SIPHASH_OUT_LEN])
{
    size_t          i, words;
    uint64_t        k0, k1, v0, v1, v2, v3, m, h;
    const uint8_t  *p = in;

    k0 = aihub_sip_word(key, 8);
    k1 = aihub_sip_word(key + 8, 8);

    v0 = k0 ^ 0x736f6d6570736575ULL;
    v1 = k1 ^ 0x646f72616e646f6dULL ^ 0xee;
    v2 = k0 ^ 0x6c7967656e657261ULL;
    v3 = k1 ^ 0x7465646279746573ULL;

    words = len / 8;

    for (i = 0; i < words; i++) {
        m = aihub_sip_word(p + 8 * i, 8);

        v3 ^= m;
        aihub_sip_round(v0, v1, v2, v3);
        aihub_sip_round(v0, v1, v2, v3);
        v0 ^= m;
    }

    /* the last 0-7 bytes, and the length's low byte at the top */

    m = aihub_sip_word(p + 8 * words, len % 8) | ((uint64_t) len << 56);

    v3 ^= m;
    aihub_sip_round(v0, v1, v2, v3);
    aihub_sip_round(v0, v1, v2, v3);
    v0 ^= m;

    v2 ^= 0xee;

    for (i = 0; i < 4; i++) {
        aihub_sip_round(v0, v1, v2, v3);
    }

    h = v0 ^ v1 ^ v2 ^ v3;

    for (i = 0; i < 8; i++) {
        out[i] = (uint8_t) (h >> (8 * i));
    }

    v1 ^= 0xdd;

    for (i = 0; i < 4; i++) {
        aihub_sip_round(v0, v1, v2, v3);
    }

    h = v0 ^ v1 ^ v2 ^ v3;

    for (i = 0; i < 8; i++) {
        out[8 + i] = (uint8_t) (h >> (8 * i));
    }
}
