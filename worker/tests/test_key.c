/* key format: made keys check, damaged keys do not */

#include "aihub_worker.h"
#include "tap.h"


int
main(void)
{
    char           key[AIHUB_KEY_LEN + 1], bad[AIHUB_KEY_LEN + 1];
    char           hash[AIHUB_SHA256_HEX_LEN + 1];
    unsigned char  low[64];
    int            i, all_ok, distinct;

    tap_ok(aw_key_generate(key) == 0, "generate a key");
    tap_is_ll((long long) strlen(key), AIHUB_KEY_LEN, "key has %d chars",
              AIHUB_KEY_LEN);
    tap_ok(strncmp(key, "ai-hub-", 7) == 0, "key starts with ai-hub-");
    tap_ok(aihub_key_check(key, strlen(key)), "generated key checks");

    memcpy(bad, key, sizeof(bad));
    bad[10] = bad[10] == 'a' ? 'b' : 'a';
    tap_ok(!aihub_key_check(bad, strlen(bad)), "one changed character "
           "fails the checksum");

    tap_ok(!aihub_key_check(key, strlen(key) - 1), "short key refused");

    all_ok = 1;
    distinct = 1;

    for (i = 0; i < 200; i++) {
        if (aw_key_generate(bad) != 0 || !aihub_key_check(bad, AIHUB_KEY_LEN))
        {
            all_ok = 0;
        }

        if (strcmp(bad, key) == 0) {
            distinct = 0;
        }
    }

    tap_ok(all_ok, "200 generated keys all check");
    tap_ok(distinct, "generated keys differ");

    /* entropy exhausted: all bytes >= 248 are rejected */
    memset(low, 0xff, sizeof(low));
    tap_ok(aihub_key_make(low, sizeof(low), bad) == -1,
           "aihub_key_make refuses biased entropy");

    aw_sha256_hex("abc", 3, hash);
    tap_is_str(hash, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff"
               "61f20015ad", "sha256 hex of \"abc\"");

    return tap_done();
}
