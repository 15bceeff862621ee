/*
 * The usage-JSON scanner and the billing rule (aihub_usage_json.c).
 *
 * Input: byte 0 mode, bytes 1-4 the split seed, byte 5 the longest piece,
 * then the text.  Mode bit 0 clear: the text is a whole answer.  Set: the
 * text is the number of usage.prompt_tokens in
 * {"usage":{"prompt_tokens":TEXT,"completion_tokens":7}}, checked against
 * an exact decimal reading.  Properties:
 *   - the return value and the findings do not depend on how the text is
 *     cut, and a finished document stays finished: the text whole through
 *     aihub_usage_json_feed() (the one-pass reader of aihub_usage_fast.c
 *     when it decides) against the byte machine alone, in pieces;
 *   - what the one-pass reader decides is what the machine found;
 *   - the numbers stay in [0, AIHUB_USAGE_MAX];
 *   - a number is taken (not bad) exactly when it is an integer in
 *     [0, AIHUB_USAGE_MAX], and then with its exact value;
 *   - after aihub_usage_finalize(): 0 <= prompt + completion <= total, the
 *     reported numbers are kept unless estimated.
 */

#include <string.h>

#include "aihub_usage_json.h"
#include "aihub_usage_fast.h"
#include "fuzz.h"


static int
feed(aihub_usage_json_t *uj, const uint8_t *p, size_t len, fuzz_split_t *sp)
{
    int     rc, last;
    size_t  n;

    aihub_usage_json_init(uj);
    last = AIHUB_JSON_AGAIN;

    do {
        if (sp) {
            /* the byte machine alone */
            n = fuzz_split_next(sp, len);
            rc = aihub_json_feed(&uj->json, p, n);
            memset(&uj->usage, 0, sizeof(aihub_usage_t));
            aihub_json_commit(&uj->json, &uj->usage);

        } else {
            n = len;
            rc = aihub_usage_json_feed(uj, p, n);
        }

        /* an error or a closed document is for good */
        if (last != AIHUB_JSON_AGAIN) {
            FUZZ_CHECK(rc == last);
        }

        last = rc;
        p += n;
        len -= n;
    } while (len);

    return rc;
}


static int
same_usage(const aihub_usage_t *a, const aihub_usage_t *b)
{
    return a->prompt == b->prompt && a->completion == b->completion
           && a->total == b->total && a->delivered_chars == b->delivered_chars
           && a->found == b->found && a->has_prompt == b->has_prompt
           && a->has_completion == b->has_completion
           && a->has_total == b->has_total
           && a->bad_prompt == b->bad_prompt
           && a->bad_completion == b->bad_completion
           && a->bad_total == b->bad_total && a->clamped == b->clamped
           && a->error == b->error && a->invalid == b->invalid
           && a->error_len == b->error_len
           && memcmp(a->error_msg, b->error_msg, a->error_len) == 0;
}


/*
 * The exact reading of a JSON number: -1 not a JSON number, 0 not an
 * integer in [0, AIHUB_USAGE_MAX], 1 one (its value in *v).
 */

static int
exact_number(const uint8_t *p, size_t len, int64_t *v)
{
    size_t   i, first, last, nd, k;
    int      neg, eneg;
    int64_t  e, x;
    char     digits[4096];

    i = 0;
    nd = 0;
    neg = 0;
    e = 0;

    if (i < len && p[i] == '-') {
        neg = 1;
        i++;
    }

    if (i == len || p[i] < '0' || p[i] > '9') {
        return -1;
    }

    if (p[i] == '0') {
        digits[nd++] = '0';
        i++;

    } else {
        while (i < len && p[i] >= '0' && p[i] <= '9') {
            digits[nd++] = (char) p[i++];
        }
    }

    if (i < len && p[i] == '.') {
        i++;

        if (i == len || p[i] < '0' || p[i] > '9') {
            return -1;
        }

        while (i < len && p[i] >= '0' && p[i] <= '9') {
            digits[nd++] = (char) p[i++];
            e--;
        }
    }

    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        eneg = 0;

        if (i < len && (p[i] == '+' || p[i] == '-')) {
            eneg = (p[i] == '-');
            i++;
        }

        if (i == len || p[i] < '0' || p[i] > '9') {
            return -1;
        }

        x = 0;

        while (i < len && p[i] >= '0' && p[i] <= '9') {
            if (x < 100000000) {
                x = x * 10 + (p[i] - '0');
            }

            i++;
        }

        e += eneg ? -x : x;
    }

    if (i != len) {
        return -1;
    }

    /* value = digits * 10^e; strip leading and trailing zeros */

    first = 0;

    while (first < nd && digits[first] == '0') {
        first++;
    }

    if (first == nd) {
        *v = 0;
        return 1;                               /* zero, or minus zero */
    }

    last = nd;

    while (digits[last - 1] == '0') {
        last--;
        e++;
    }

    if (neg || e < 0 || (int64_t) (last - first) + e > 10) {
        return 0;
    }

    x = 0;

    for (k = first; k < last; k++) {
        x = x * 10 + (digits[k] - '0');
    }

    for ( /* void */ ; e > 0; e--) {
        x *= 10;
    }

    if (x > AIHUB_USAGE_MAX) {
        return 0;
    }

    *v = x;

    return 1;
}


/* what the one-pass reader decides is what the byte machine found */

static void
check_fast(const uint8_t *p, size_t len, const aihub_json_t *j)
{
    aihub_usage_fast_t  f;

    if (aihub_usage_fast(p, len, &f) != AIHUB_USAGE_FAST_DECIDED) {
        return;
    }

    FUZZ_CHECK(j->complete && !j->invalid && !j->trailing && !j->error);
    FUZZ_CHECK(j->top_object && j->chars == f.chars);
    FUZZ_CHECK(j->choices == f.choices && j->usage == f.usage);

    if (f.usage) {
        FUZZ_CHECK(j->top_usage && j->val_bad == 0);
        FUZZ_CHECK(j->val_has == f.val_has);
        FUZZ_CHECK(memcmp(j->val, f.val, sizeof(f.val)) == 0);
    }
}


static void
check_numbers(const aihub_usage_t *u)
{
    FUZZ_CHECK(u->prompt >= 0 && u->prompt <= AIHUB_USAGE_MAX);
    FUZZ_CHECK(u->completion >= 0 && u->completion <= AIHUB_USAGE_MAX);
    FUZZ_CHECK(u->total >= 0 && u->total <= AIHUB_USAGE_MAX);
    FUZZ_CHECK(u->error_len < AIHUB_USAGE_MSG_LEN);
    FUZZ_CHECK(!u->error || strlen(u->error_msg) == u->error_len);
}


static void
check_finalize(const aihub_usage_t *in)
{
    aihub_usage_t  u;

    u = *in;
    aihub_usage_finalize(&u, 123);

    FUZZ_CHECK(u.prompt >= 0 && u.completion >= 0);
    FUZZ_CHECK(u.prompt + u.completion <= u.total);
    FUZZ_CHECK(u.total <= 2 * (int64_t) AIHUB_USAGE_MAX);

    if (in->has_prompt && !in->bad_prompt) {
        FUZZ_CHECK(u.prompt == in->prompt);
    }

    if (in->has_completion && !in->bad_completion) {
        FUZZ_CHECK(u.completion == in->completion);
    }

    if (in->has_prompt && !in->bad_prompt && in->has_completion
        && !in->bad_completion && !(in->has_total && in->bad_total))
    {
        FUZZ_CHECK(!u.estimated);
    }

    if (in->has_total && !in->bad_total) {
        FUZZ_CHECK(u.total >= in->total);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                        rc1, rc2, exact;
    size_t                     len;
    int64_t                    v;
    const uint8_t             *in;
    uint8_t                   *doc;
    fuzz_split_t               sp;
    static aihub_usage_json_t  whole, pieces;

    static const char  head[] = "{\"usage\":{\"prompt_tokens\":";
    static const char  tail[] = ",\"completion_tokens\":7}}";

    if (size < 6 || size > 4000) {
        return 0;
    }

    in = data + 6;
    len = size - 6;
    doc = NULL;
    exact = -1;

    if (data[0] & 1) {
        exact = exact_number(in, len, &v);

        doc = malloc(sizeof(head) + len + sizeof(tail));
        memcpy(doc, head, sizeof(head) - 1);
        memcpy(doc + sizeof(head) - 1, in, len);
        memcpy(doc + sizeof(head) - 1 + len, tail, sizeof(tail) - 1);

        in = doc;
        len += sizeof(head) - 1 + sizeof(tail) - 1;
    }

    rc1 = feed(&whole, in, len, NULL);

    fuzz_split_init(&sp, data + 1, data[5]);
    rc2 = feed(&pieces, in, len, &sp);

    FUZZ_CHECK(rc1 == rc2);
    FUZZ_CHECK(same_usage(&whole.usage, &pieces.usage));
    check_fast(in, len, &pieces.json);

    check_numbers(&whole.usage);
    check_finalize(&whole.usage);

    if (exact >= 0) {
        /* a well-formed number in a well-formed document */
        FUZZ_CHECK(rc1 == AIHUB_JSON_DONE && whole.usage.found);
        FUZZ_CHECK(whole.usage.has_prompt && whole.usage.has_completion);
        FUZZ_CHECK(whole.usage.completion == 7
                   && !whole.usage.bad_completion);

        if (exact) {
            FUZZ_CHECK(!whole.usage.bad_prompt && whole.usage.prompt == v);

        } else {
            FUZZ_CHECK(whole.usage.bad_prompt && whole.usage.clamped);
        }
    }

    free(doc);

    return 0;
}
