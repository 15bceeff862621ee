/*
 * SipHash-2-4 with a 128-bit output (Aumasson and Bernstein, 2012): a keyed
 * pseudo-random function of a short message.  Without its 16-byte key no one
 * can find two messages with the same output, or one message from an output.
 *
 * Pure C11: no nginx, no allocation.
 */

#ifndef AIHUB_SIPHASH_H
#define AIHUB_SIPHASH_H

#include <stddef.h>
#include <stdint.h>


#define AIHUB_SIPHASH_KEY_LEN  16
#define AIHUB_SIPHASH_OUT_LEN  16


/* out: the 16 bytes of the reference implementation's output */
void aihub_siphash128(const uint8_t key[AIHUB_SIPHASH_KEY_LEN],
    const void *in, size_t len, uint8_t out[AIHUB_SIPHASH_OUT_LEN]);


#endif /* AIHUB_SIPHASH_H */
