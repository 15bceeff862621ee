/*
 * The API key format (aihub_key_format.c).
 *
 * The input is two things at once: a candidate key checked as it is, and
 * the entropy a key is made from.  Properties:
 *   - aihub_key_check() agrees with a separate reading of the format
 *     (tag, length, base62, CRC-32 written as 6 base62 digits);
 *   - a made key has the format, takes its random part from the entropy
 *     bytes below 248 in order, and checks;
 *   - any one-character change of a made key fails the check;
 *   - making fails only when fewer than 32 entropy bytes are below 248.
 */

#include <string.h>

#include "aihub_protocol.h"
#include "fuzz.h"


static const char  b62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";


/* CRC-32 bit by bit, unlike the table in the engine */

static uint32_t
crc32_bitwise(const unsigned char *p, size_t len)
{
    uint32_t  crc;
    size_t    i;
    int       k;

    crc = 0xffffffff;

    for (i = 0; i < len; i++) {
        crc ^= p[i];

        for (k = 0; k < 8; k++) {
            crc = (crc & 1) ? (crc >> 1) ^ 0xedb88320 : crc >> 1;
        }
    }

    return ~crc;
}


static int
b62_value(int c)
{
    const char  *p;

    if (c == 0) {
        return -1;
    }

    p = strchr(b62, c);

    return p ? (int) (p - b62) : -1;
}


static int
reference_check(const char *key, size_t len)
{
    size_t    i;
    uint64_t  sum;
    int       v;

    if (len != 45 || memcmp(key, "ai-hub-", 7) != 0) {
        return 0;
    }

    for (i = 7; i < 45; i++) {
        if (b62_value((unsigned char) key[i]) < 0) {
            return 0;
        }
    }

    sum = 0;

    for (i = 39; i < 45; i++) {
        v = b62_value((unsigned char) key[i]);
        sum = sum * 62 + (uint64_t) v;
    }

    return sum == crc32_bitwise((const unsigned char *) key + 7, 32);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char    key[AIHUB_KEY_LEN + 1], bad[AIHUB_KEY_LEN];
    size_t  i, got, pos;
    int     rc, c;

    FUZZ_CHECK(aihub_key_check((const char *) data, size)
               == reference_check((const char *) data, size));

    memset(key, 0x55, sizeof(key));
    rc = aihub_key_make(data, size, key);

    got = 0;

    for (i = 0; i < size; i++) {
        got += data[i] < 248;
    }

    if (got < AIHUB_KEY_RANDOM_LEN) {
        FUZZ_CHECK(rc == -1);
        return 0;
    }

    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(key[AIHUB_KEY_LEN] == '\0' && strlen(key) == AIHUB_KEY_LEN);
    FUZZ_CHECK(aihub_key_check(key, AIHUB_KEY_LEN));
    FUZZ_CHECK(reference_check(key, AIHUB_KEY_LEN));
    FUZZ_CHECK(!aihub_key_check(key, AIHUB_KEY_LEN - 1));

    got = 0;

    for (i = 0; i < size && got < AIHUB_KEY_RANDOM_LEN; i++) {
        if (data[i] < 248) {
            FUZZ_CHECK(key[AIHUB_KEY_TAG_LEN + got] == b62[data[i] % 62]);
            got++;
        }
    }

    /* one character changed, anywhere, to anything else */

    pos = (size_t) data[0] % AIHUB_KEY_LEN;
    c = data[size - 1];

    if (c == (unsigned char) key[pos]) {
        c = (c + 1) & 0xff;
    }

    memcpy(bad, key, AIHUB_KEY_LEN);
    bad[pos] = (char) c;
    FUZZ_CHECK(!aihub_key_check(bad, AIHUB_KEY_LEN));

    /* and to another base62 character, past the tag */

    pos = AIHUB_KEY_TAG_LEN + (size_t) data[1] % (AIHUB_KEY_LEN
                                                  - AIHUB_KEY_TAG_LEN);
    memcpy(bad, key, AIHUB_KEY_LEN);
    bad[pos] = b62[(b62_value((unsigned char) key[pos]) + 1
                    + data[2] % 61) % 62];
    FUZZ_CHECK(bad[pos] != key[pos]);
    FUZZ_CHECK(!aihub_key_check(bad, AIHUB_KEY_LEN));

    return 0;
}
