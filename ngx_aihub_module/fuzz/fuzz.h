/*
 * Shared helpers of the libFuzzer targets (see README in this directory):
 * a property check that aborts with its expression, and the fuzzer-chosen
 * piece lengths the streaming scanners are fed in.
 */

#ifndef AIHUB_FUZZ_H
#define AIHUB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>


#define FUZZ_CHECK(cond)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: property does not hold: %s\n",           \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)


/*
 * Piece lengths in 1..max from a seed the fuzzer mutates like any other
 * input bytes (xorshift64): the same input is always split the same way.
 */

typedef struct {
    uint64_t  x;
    size_t    max;
} fuzz_split_t;


static inline void
fuzz_split_init(fuzz_split_t *sp, const uint8_t *seed4, uint8_t max)
{
    sp->x = ((uint64_t) seed4[0] | (uint64_t) seed4[1] << 8
             | (uint64_t) seed4[2] << 16 | (uint64_t) seed4[3] << 24)
            * 0x9e3779b97f4a7c15ULL + 1;
    sp->max = max ? max : 1;
}


static inline size_t
fuzz_split_next(fuzz_split_t *sp, size_t left)
{
    size_t  n;

    sp->x ^= sp->x << 13;
    sp->x ^= sp->x >> 7;
    sp->x ^= sp->x << 17;

    n = 1 + (size_t) (sp->x % sp->max);

    return n < left ? n : left;
}


static inline uint64_t
fuzz_u64(const uint8_t *p)
{
    uint64_t  v;
    int       i;

    v = 0;

    for (i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }

    return v;
}


#endif /* AIHUB_FUZZ_H */
