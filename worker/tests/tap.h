/*
 * A tiny TAP producer for the worker's unit tests: prove runs the
 * binaries directly.
 */

#ifndef AW_TAP_H
#define AW_TAP_H

#include <stdio.h>
#include <string.h>

static int  tap_n, tap_failed;

#define tap_ok(cond, ...)                                                    \
    do {                                                                     \
        int  tap_c_ = (cond);                                                \
        printf("%sok %d - ", tap_c_ ? "" : "not ", ++tap_n);                 \
        printf(__VA_ARGS__);                                                 \
        printf("\n");                                                        \
        if (!tap_c_) {                                                       \
            tap_failed++;                                                    \
            printf("#   failed at %s line %d\n", __FILE__, __LINE__);        \
        }                                                                    \
    } while (0)

#define tap_is_ll(got, want, ...)                                            \
    do {                                                                     \
        long long  tap_g_ = (got), tap_w_ = (want);                          \
        tap_ok(tap_g_ == tap_w_, __VA_ARGS__);                               \
        if (tap_g_ != tap_w_) {                                              \
            printf("#          got: %lld\n#     expected: %lld\n", tap_g_,   \
                   tap_w_);                                                  \
        }                                                                    \
    } while (0)

#define tap_is_str(got, want, ...)                                           \
    do {                                                                     \
        const char  *tap_g_ = (got), *tap_w_ = (want);                       \
        tap_ok(strcmp(tap_g_, tap_w_) == 0, __VA_ARGS__);                    \
        if (strcmp(tap_g_, tap_w_) != 0) {                                   \
            printf("#          got: '%s'\n#     expected: '%s'\n", tap_g_,   \
                   tap_w_);                                                  \
        }                                                                    \
    } while (0)

static int
tap_done(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif /* AW_TAP_H */
