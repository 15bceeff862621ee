/*
 * aihub_key_check / aihub_key_make (aihub_key_format.c): known keys whose
 * checksums were computed with Python's zlib.crc32, round trips, and every
 * single-character mutation of valid keys refused.
 */

#include <stdint.h>
#include <string.h>

#include "aihub_protocol.h"
#include "tap.h"


static int
check(const char *key)
{
    return aihub_key_check(key, strlen(key));
}


static void
test_known(void)
{
    unsigned char  entropy[64];
    char           key[AIHUB_KEY_LEN + 1], sum[AIHUB_KEY_CHECK_LEN];
    size_t         i;

    ok(check("ai-hub-0123456789ABCDEFGHIJKLMNOPQRSTUV1ggZdL"),
       "a key with a known checksum is accepted");
    ok(check("ai-hub-Zz9aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT4Hr1qh"),
       "another known key is accepted");

    aihub_key_checksum("Zz9aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT", sum);
    ok(memcmp(sum, "4Hr1qh", 6) == 0, "checksum = zlib.crc32 in base62");

    /* entropy byte b < 248 becomes alphabet[b % 62]; bytes >= 248 skipped */

    for (i = 0; i < 64; i++) {
        entropy[i] = (unsigned char) (i < 8 ? 248 + i : i - 8);
    }

    ok(aihub_key_make(entropy, sizeof(entropy), key) == 0
       && strcmp(key, "ai-hub-0123456789ABCDEFGHIJKLMNOPQRSTUV1ggZdL") == 0,
       "make: rejection sampling skips bytes >= 248: %s", key);

    ok(aihub_key_make(entropy, 39, key) == -1,
       "make: -1 when the entropy runs out");
}


static void
test_round_trip(void)
{
    unsigned char  entropy[64];
    char           key[AIHUB_KEY_LEN + 1];
    uint32_t       rnd;
    int            i, k, fails;

    rnd = 2463534242u;
    fails = 0;

    for (k = 0; k < 2000; k++) {
        for (i = 0; i < 64; i++) {
            rnd ^= rnd << 13;
            rnd ^= rnd >> 17;
            rnd ^= rnd << 5;
            entropy[i] = (unsigned char) rnd;
        }

        if (aihub_key_make(entropy, sizeof(entropy), key) != 0
            || strlen(key) != AIHUB_KEY_LEN
            || memcmp(key, AIHUB_KEY_TAG, AIHUB_KEY_TAG_LEN) != 0
            || !aihub_key_check(key, AIHUB_KEY_LEN))
        {
            fails++;
        }
    }

    ok(fails == 0, "2000 random keys: made, %d chars, accepted",
       AIHUB_KEY_LEN);
}


static void
test_mutations(void)
{
    static const char  *keys[] = {
        "ai-hub-0123456789ABCDEFGHIJKLMNOPQRSTUV1ggZdL",
        "ai-hub-Zz9aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT4Hr1qh",
    };

    char    m[AIHUB_KEY_LEN + 1];
    size_t  k, i;
    int     c, accepted, tried;

    for (k = 0; k < 2; k++) {
        accepted = 0;
        tried = 0;

        for (i = 0; i < AIHUB_KEY_LEN; i++) {
            for (c = 0; c < 256; c++) {
                if (c == (unsigned char) keys[k][i]) {
                    continue;
                }

                memcpy(m, keys[k], AIHUB_KEY_LEN + 1);
                m[i] = (char) c;
                tried++;

                if (aihub_key_check(m, AIHUB_KEY_LEN)) {
                    accepted++;
                    diag("accepted mutation at %zu to %d", i, c);
                }
            }
        }

        ok(accepted == 0 && tried == AIHUB_KEY_LEN * 255,
           "key %zu: all %d single-byte mutations refused", k, tried);
    }

    /* swapping two adjacent different characters */

    accepted = 0;

    for (i = AIHUB_KEY_TAG_LEN; i + 1 < AIHUB_KEY_LEN; i++) {
        memcpy(m, keys[1], AIHUB_KEY_LEN + 1);

        if (m[i] == m[i + 1]) {
            continue;
        }

        c = m[i];
        m[i] = m[i + 1];
        m[i + 1] = (char) c;
        accepted += aihub_key_check(m, AIHUB_KEY_LEN);
    }

    ok(accepted == 0, "adjacent transpositions refused");
}


static void
test_shape(void)
{
    const char  *good;
    char         m[AIHUB_KEY_LEN + 2];
    size_t       n;
    int          accepted;

    good = "ai-hub-0123456789ABCDEFGHIJKLMNOPQRSTUV1ggZdL";

    accepted = 0;

    for (n = 0; n < AIHUB_KEY_LEN; n++) {
        accepted += aihub_key_check(good, n);
    }

    ok(accepted == 0, "every truncation refused");

    memcpy(m, good, AIHUB_KEY_LEN);
    m[AIHUB_KEY_LEN] = 'A';
    m[AIHUB_KEY_LEN + 1] = '\0';
    ok(!aihub_key_check(m, AIHUB_KEY_LEN + 1), "one character more refused");

    ok(!check("") && !check("ai-hub-") && !check("Bearer ai-hub-x"),
       "empty and tag-only refused");

    ok(!check("AI-HUB-0123456789ABCDEFGHIJKLMNOPQRSTUV1ggZdL")
       && !check("ai_hub-0123456789ABCDEFGHIJKLMNOPQRSTUV1ggZdL")
       && !check("sk-hub-0123456789ABCDEFGHIJKLMNOPQRSTUV1ggZdL"),
       "wrong tag refused");

    ok(!check("ai-hub-0123456789ABCDEFGHIJKLMNOPQRSTU-1ggZdL")
       && !check("ai-hub-0123456789ABCDEFGHIJKLMNOPQRSTUV1ggZd=")
       && !aihub_key_check("ai-hub-0123456789ABCDEFGHIJKLMNOPQRSTUV1ggZd\0",
                           AIHUB_KEY_LEN),
       "characters outside base62 refused");

    ok(AIHUB_KEY_LEN == 45 && AIHUB_KEY_PREFIX_LEN == 15,
       "key length 45, display prefix 15");
}


int
main(void)
{
    test_known();
    test_round_trip();
    test_mutations();
    test_shape();

    return tap_done();
}
