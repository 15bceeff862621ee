/*
 * The SSE usage scanner and stripper (aihub_sse.c).
 *
 * Input: byte 0 flags (bit 0: strip with a hold buffer; bits 1-2: its
 * size), bytes 1-4 the split seed, byte 5 the longest piece, then the
 * stream.  Properties:
 *   - the output and the findings do not depend on how the stream is cut;
 *   - without stripping every feed's output is exactly its input;
 *   - stripping changes nothing the scanner reports, and removes only
 *     whole bytes of the input in order: nothing stripped => output equals
 *     input;
 *   - a feed never writes more than aihub_sse_out_size() said;
 *   - the numbers stay in [0, AIHUB_USAGE_MAX], the error message is a
 *     NUL-terminated string of error_len bytes.
 */

#include <string.h>

#include "aihub_sse.h"
#include "fuzz.h"


static const size_t  hold_sizes[] = { 16, 64, 512, AIHUB_SSE_HOLD_SIZE };


typedef struct {
    aihub_sse_t     s;
    unsigned char   hold[AIHUB_SSE_HOLD_SIZE];
    unsigned char  *out;
    size_t          out_len;
} run_t;


static void
run(run_t *r, const uint8_t *in, size_t len, int strip, size_t hold_size,
    fuzz_split_t *sp)
{
    size_t  n, o, cap;

    aihub_sse_init(&r->s, strip ? r->hold : NULL, hold_size);

    /* hold may be released at the end: room for it too */
    r->out = malloc(len + AIHUB_SSE_HOLD_SIZE + 1);
    r->out_len = 0;

    while (len) {
        n = sp ? fuzz_split_next(sp, len) : len;
        cap = aihub_sse_out_size(&r->s, n);

        o = aihub_sse_feed(&r->s, in, n, r->out + r->out_len);
        FUZZ_CHECK(o <= cap);

        if (!strip) {
            FUZZ_CHECK(o == n
                       && memcmp(r->out + r->out_len, in, n) == 0);
        }

        r->out_len += o;
        in += n;
        len -= n;
    }

    cap = aihub_sse_out_size(&r->s, 0);
    o = aihub_sse_finish(&r->s, r->out + r->out_len);
    FUZZ_CHECK(o <= cap);
    r->out_len += o;
}


static void
check_usage(const aihub_usage_t *u)
{
    FUZZ_CHECK(u->prompt >= 0 && u->prompt <= AIHUB_USAGE_MAX);
    FUZZ_CHECK(u->completion >= 0 && u->completion <= AIHUB_USAGE_MAX);
    FUZZ_CHECK(u->total >= 0 && u->total <= AIHUB_USAGE_MAX);
    FUZZ_CHECK(u->error_len < AIHUB_USAGE_MSG_LEN);
    FUZZ_CHECK(!u->error || u->error_msg[u->error_len] == '\0');
    FUZZ_CHECK(!u->error || strlen(u->error_msg) == u->error_len);
}


/* equal findings; overlong only exists when holding */

static int
same_usage(const aihub_usage_t *a, const aihub_usage_t *b, int overlong)
{
    return a->prompt == b->prompt && a->completion == b->completion
           && a->total == b->total && a->delivered_chars == b->delivered_chars
           && a->found == b->found && a->has_prompt == b->has_prompt
           && a->has_completion == b->has_completion
           && a->has_total == b->has_total
           && a->bad_prompt == b->bad_prompt
           && a->bad_completion == b->bad_completion
           && a->bad_total == b->bad_total && a->clamped == b->clamped
           && a->error == b->error && a->done == b->done
           && (!overlong || a->overlong == b->overlong)
           && a->invalid == b->invalid
           && a->error_len == b->error_len
           && memcmp(a->error_msg, b->error_msg, a->error_len) == 0;
}


/* out is in with some bytes removed, in order */

static int
subsequence(const unsigned char *out, size_t out_len, const uint8_t *in,
    size_t len)
{
    size_t  i, o;

    o = 0;

    for (i = 0; i < len && o < out_len; i++) {
        if (in[i] == out[o]) {
            o++;
        }
    }

    return o == out_len;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int           strip;
    size_t        hold_size, len;
    const uint8_t *in;
    fuzz_split_t  sp;
    static run_t  whole, pieces, plain;

    if (size < 6) {
        return 0;
    }

    strip = data[0] & 1;
    hold_size = hold_sizes[(data[0] >> 1) & 3];
    in = data + 6;
    len = size - 6;

    run(&whole, in, len, strip, hold_size, NULL);

    fuzz_split_init(&sp, data + 1, data[5]);
    run(&pieces, in, len, strip, hold_size, &sp);

    fuzz_split_init(&sp, data + 1, data[5]);
    run(&plain, in, len, 0, 0, &sp);

    check_usage(&whole.s.usage);
    check_usage(&pieces.s.usage);

    /* cut anywhere: the same bytes out, the same findings */
    FUZZ_CHECK(whole.out_len == pieces.out_len
               && memcmp(whole.out, pieces.out, whole.out_len) == 0);
    FUZZ_CHECK(same_usage(&whole.s.usage, &pieces.s.usage, 1));
    FUZZ_CHECK(whole.s.stripped == pieces.s.stripped);

    /* stripping does not change what is read */
    FUZZ_CHECK(same_usage(&whole.s.usage, &plain.s.usage, 0));
    FUZZ_CHECK(plain.out_len == len && plain.s.stripped == 0);

    if (whole.s.stripped == 0) {
        FUZZ_CHECK(whole.out_len == len
                   && memcmp(whole.out, in, len) == 0);

    } else {
        FUZZ_CHECK(strip && whole.out_len < len);
        FUZZ_CHECK(subsequence(whole.out, whole.out_len, in, len));
    }

    free(whole.out);
    free(pieces.out);
    free(plain.out);

    return 0;
}
