/*
 * The usage of a whole answer in one pass (aihub_usage_fast.c): what
 * aihub_usage_json_feed() reads first when an answer's first piece may be
 * all of it.
 *
 * Pure C11: no nginx, no allocation.
 */

#ifndef AIHUB_USAGE_FAST_H
#define AIHUB_USAGE_FAST_H

#include <stddef.h>
#include <stdint.h>


#define AIHUB_USAGE_FAST_DECIDED     0
#define AIHUB_USAGE_FAST_UNDECIDED  -1


/* the findings of a decided answer, as the byte machine's would be */

typedef struct {
    uint64_t   chars;               /* content characters */
    int64_t    val[3];              /* prompt, completion, total */
    uint8_t    val_has;             /* bit 0 prompt, 1 completion, 2 total */
    unsigned   usage:1;             /* a usage object closed */
    unsigned   choices:1;           /* choices has at least one element */
} aihub_usage_fast_t;


/*
 * A chat completion whose len bytes are all of it: AIHUB_USAGE_FAST_DECIDED
 * with its findings in *out, or AIHUB_USAGE_FAST_UNDECIDED (it is not
 * whole, or not plain enough to read here: the byte machine reads it).
 */
int aihub_usage_fast(const unsigned char *p, size_t len,
    aihub_usage_fast_t *out);


#endif /* AIHUB_USAGE_FAST_H */
