/*
 * Byte scans eight bytes at a time, for the text of JSON strings (most of
 * a request, an answer or a usage event is such text).  A word holds a
 * byte equal to "c" when (w ^ c...) holds a zero byte, and a byte below
 * "n" (n <= 128) when (w - n...) & ~w & 0x80... is not 0: both tell
 * exactly whether there is one (a false flag is only ever above a true
 * one, so on a little-endian machine the lowest flag is the first byte).
 *
 * Plain C11, no nginx types.
 */

#ifndef AIHUB_BYTES_H
#define AIHUB_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>


#define AIHUB_BYTES_ONES   0x0101010101010101ULL
#define AIHUB_BYTES_HIGHS  0x8080808080808080ULL

#define aihub_bytes_below(w, n)                                              \
    (((w) - (n) * AIHUB_BYTES_ONES) & ~(w) & AIHUB_BYTES_HIGHS)

#define aihub_bytes_equal(w, c)                                              \
    aihub_bytes_below((w) ^ ((uint64_t) (c) * AIHUB_BYTES_ONES), 1)

#if defined(__GNUC__) && defined(__BYTE_ORDER__)                            \
    && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define AIHUB_BYTES_FIRST(m)  ((size_t) __builtin_ctzll(m) >> 3)

#if defined(__SSE2__)
/*
 * Sixteen bytes at a time where the CPU has SSE2 (every x86-64): a member
 * name or a short value then ends within the first step, and the loop's
 * exit no longer depends on the text's length
 */
#include <emmintrin.h>
#define AIHUB_BYTES_SSE2  1
#endif
#endif


/*
 * The length up to the first quote or backslash, or also control byte
 * ("controls"): a JSON string's text up to its end or an escape, or what
 * JSON writes as it is.  (Inlined with a constant "controls".)
 */

static inline size_t
aihub_bytes_scan(const unsigned char *p, size_t len, int controls)
{
    size_t    i;
    uint64_t  w, m;

    i = 0;

#ifdef AIHUB_BYTES_SSE2
    {
        unsigned  bits;
        __m128i   v, hit;

        for ( /* void */ ; i + 16 <= len; i += 16) {
            v = _mm_loadu_si128((const __m128i *) (p + i));
            hit = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                               _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));

            if (controls) {
                /* below 0x20: the unsigned minimum with 0x1f is itself */
                hit = _mm_or_si128(hit,
                          _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)),
                                         v));
            }

            bits = (unsigned) _mm_movemask_epi8(hit);

            if (bits) {
                return i + (size_t) __builtin_ctz(bits);
            }
        }
    }
#endif

    for ( /* void */ ; i + 8 <= len; i += 8) {
        memcpy(&w, p + i, 8);
        m = aihub_bytes_equal(w, '"') | aihub_bytes_equal(w, '\\');

        if (controls) {
            m |= aihub_bytes_below(w, 0x20);
        }

        if (m) {
#ifdef AIHUB_BYTES_FIRST
            return i + AIHUB_BYTES_FIRST(m);
#else
            break;
#endif
        }
    }

    while (i < len && p[i] != '"' && p[i] != '\\'
           && !(controls && p[i] < 0x20))
    {
        i++;
    }

    return i;
}

#define aihub_bytes_text_len(p, len)   aihub_bytes_scan(p, len, 0)
#define aihub_bytes_plain_len(p, len)  aihub_bytes_scan(p, len, 1)


/*
 * The characters (UTF-8 sequences) of a text: its bytes less its
 * continuation bytes (10xxxxxx: bit 7 set, bit 6 clear, which the word
 * shifted by one puts under bit 7)
 */

static inline uint64_t
aihub_bytes_utf8_chars(const unsigned char *p, size_t len)
{
    size_t    i;
    uint64_t  w, cont, n;

    n = 0;

    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&w, p + i, 8);
        cont = (w & ~(w << 1) & AIHUB_BYTES_HIGHS) >> 7;
        n += 8 - ((cont * AIHUB_BYTES_ONES) >> 56);
    }

    for ( /* void */ ; i < len; i++) {
        n += ((p[i] & 0xc0) != 0x80);
    }

    return n;
}


/* the value of four hex digits (a \u escape's), or -1 */

static inline int
aihub_bytes_hex4(const unsigned char *p)
{
    int  k, c, v;

    v = 0;

    for (k = 0; k < 4; k++) {
        c = p[k];
        v <<= 4;

        if (c >= '0' && c <= '9') {
            v |= c - '0';

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v |= (c | 0x20) - 'a' + 10;

        } else {
            return -1;
        }
    }

    return v;
}


/*
 * Past a number as JSON (RFC 8259) writes one, p at its first byte: NULL
 * if it is not one.  What may follow it is the caller's to check.
 */

static inline const unsigned char *
aihub_bytes_json_number(const unsigned char *p, const unsigned char *end)
{
    if (p < end && *p == '-') {
        p++;
    }

    if (p == end || *p < '0' || *p > '9') {
        return NULL;
    }

    if (*p == '0') {
        p++;

    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && *p == '.') {
        p++;

        if (p == end || *p < '0' || *p > '9') {
            return NULL;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == end || *p < '0' || *p > '9') {
            return NULL;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    return p;
}


#endif /* AIHUB_BYTES_H */
