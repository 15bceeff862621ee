/*
 * The usage of a whole chat completion in one pass (aihub_usage_fast.h).
 *
 * The byte machine of aihub_usage_json.c reads an answer in pieces cut
 * anywhere, so it keeps its place in a state after every byte; on a short
 * answer that was the largest part of the module's own work on a call.
 * Most answers are plain chat completions that arrive in one piece.  This
 * pass reads such an answer by recursive descent over bytes that are all
 * there, each member name matched where it stands, and fills the findings
 * the machine would.
 *
 * It never decides what it does not read exactly as the machine does: it
 * leaves that to the machine (undecided), which then reads the same bytes:
 *   - an answer cut short (more of it to come), or with anything but white
 *     space after it;
 *   - anything JSON (RFC 8259) does not allow, where the machine may be
 *     laxer (a leading zero); a control byte in a string both take, and
 *     count as a character;
 *   - a top-level value that is not an object, nesting deeper than
 *     AIHUB_USAGE_FAST_DEPTH, an escape in a member name;
 *   - a counted usage number that is not a plain integer in
 *     [0, AIHUB_USAGE_MAX];
 *   - the members whose reading is the machine's to get right: "error",
 *     "type", "response", "delta" and "output" at the top (errors, the
 *     Responses API), a message's "tool_calls" array and "function_call"
 *     object.
 * The fuzz target (fuzz_usage_json.c) and test_usage_json.c compare the
 * two.
 */

#include <string.h>

#include "aihub_bytes.h"
#include "aihub_usage_json.h"
#include "aihub_usage_fast.h"


#define AIHUB_USAGE_FAST_DEPTH  32

#define AIHUB_UFAST_UNDECIDED   AIHUB_USAGE_FAST_UNDECIDED


/* what a container is, for what its members mean */
typedef enum {
    AIHUB_UFAST_OTHER = 0,
    AIHUB_UFAST_TOP,
    AIHUB_UFAST_USAGE,
    AIHUB_UFAST_CHOICES,
    AIHUB_UFAST_CHOICE,
    AIHUB_UFAST_MESSAGE,
    AIHUB_UFAST_MACHINE         /* the machine's to read */
} aihub_ufast_kind_e;


/* what a member's value is to the reading */
typedef struct {
    aihub_ufast_kind_e      object;     /* an object value's kind */
    aihub_ufast_kind_e      array;      /* an array value's kind */
    int                     slot;       /* a usage number's: 0-2, or -1 */
    unsigned                counted:1;  /* a string whose characters count */
} aihub_ufast_member_t;


typedef struct {
    const unsigned char    *p;          /* the next byte */
    const unsigned char    *end;
    unsigned                depth;
    int64_t                 cur[3];     /* the usage object being read */
    uint8_t                 cur_has;
    aihub_usage_fast_t     *out;
} aihub_ufast_t;


static int aihub_ufast_value(aihub_ufast_t *f, const aihub_ufast_member_t *m);
static int aihub_ufast_object(aihub_ufast_t *f, aihub_ufast_kind_e kind);
static int aihub_ufast_array(aihub_ufast_t *f, aihub_ufast_kind_e kind);
static int aihub_ufast_member(aihub_ufast_kind_e kind, const unsigned char *k,
    size_t n, aihub_ufast_member_t *m);
static int aihub_ufast_string(aihub_ufast_t *f, int counted);
static int aihub_ufast_number(aihub_ufast_t *f, int slot);
static int aihub_ufast_literal(aihub_ufast_t *f, const char *lit, size_t n);


static const aihub_ufast_member_t  aihub_ufast_plain = {
    AIHUB_UFAST_OTHER, AIHUB_UFAST_OTHER, -1, 0
};


/* white space, which a compact answer has none of: one test then */

#define aihub_ufast_space(f)                                                 \
    if ((f)->p < (f)->end && *(f)->p <= ' ') {                               \
        while ((f)->p < (f)->end                                             \
               && (*(f)->p == ' ' || *(f)->p == '\n' || *(f)->p == '\r'      \
                   || *(f)->p == '\t'))                                      \
        {                                                                    \
            (f)->p++;                                                        \
        }                                                                    \
    }


/*
 * After a member or an element: 1 past "close" when its container ends
 * there, 0 past a comma and the white space after it, or undecided
 */

static inline int
aihub_ufast_after(aihub_ufast_t *f, int close)
{
    aihub_ufast_space(f);

    if (f->p == f->end) {
        return AIHUB_UFAST_UNDECIDED;
    }

    if (*f->p == ',') {
        f->p++;
        aihub_ufast_space(f);
        return 0;
    }

    if (*f->p == close) {
        f->p++;
        return 1;
    }

    return AIHUB_UFAST_UNDECIDED;
}


int
aihub_usage_fast(const unsigned char *p, size_t len, aihub_usage_fast_t *out)
{
    aihub_ufast_t  f;

    memset(out, 0, sizeof(aihub_usage_fast_t));

    f.p = p;
    f.end = p + len;
    f.depth = 0;
    f.cur_has = 0;
    f.out = out;

    aihub_ufast_space(&f);

    if (f.p == f.end || *f.p != '{'
        || aihub_ufast_object(&f, AIHUB_UFAST_TOP) != 0)
    {
        return AIHUB_UFAST_UNDECIDED;
    }

    aihub_ufast_space(&f);

    return f.p == f.end ? AIHUB_USAGE_FAST_DECIDED : AIHUB_UFAST_UNDECIDED;
}


static int
aihub_ufast_value(aihub_ufast_t *f, const aihub_ufast_member_t *m)
{
    if (f->p == f->end) {
        return AIHUB_UFAST_UNDECIDED;
    }

    switch (*f->p) {

    case '{':
        return aihub_ufast_object(f, m->object);

    case '[':
        return aihub_ufast_array(f, m->array);

    case '"':
        return aihub_ufast_string(f, m->counted);

    case 't':
        return aihub_ufast_literal(f, "true", 4);

    case 'f':
        return aihub_ufast_literal(f, "false", 5);

    case 'n':
        return aihub_ufast_literal(f, "null", 4);

    default:
        return aihub_ufast_number(f, m->slot);
    }
}


/* from its '{' past its '}' */

static int
aihub_ufast_object(aihub_ufast_t *f, aihub_ufast_kind_e kind)
{
    int                    rc;
    size_t                 n;
    const unsigned char   *k;
    aihub_ufast_member_t   m;

    if (kind == AIHUB_UFAST_MACHINE || ++f->depth > AIHUB_USAGE_FAST_DEPTH) {
        return AIHUB_UFAST_UNDECIDED;
    }

    if (kind == AIHUB_UFAST_USAGE) {
        f->cur[0] = 0;
        f->cur[1] = 0;
        f->cur[2] = 0;
        f->cur_has = 0;
    }

    f->p++;
    aihub_ufast_space(f);

    if (f->p < f->end && *f->p == '}') {
        f->p++;
        goto closed;
    }

    for ( ;; ) {
        if (f->p == f->end || *f->p != '"') {
            return AIHUB_UFAST_UNDECIDED;
        }

        /* the name, where it stands: one with an escape is the machine's */

        k = f->p + 1;
        n = aihub_bytes_text_len(k, (size_t) (f->end - k));

        if (k + n == f->end || k[n] != '"') {
            return AIHUB_UFAST_UNDECIDED;
        }

        f->p = k + n + 1;
        aihub_ufast_space(f);

        if (f->p == f->end || *f->p != ':') {
            return AIHUB_UFAST_UNDECIDED;
        }

        f->p++;
        aihub_ufast_space(f);

        if (aihub_ufast_member(kind, k, n, &m) != 0 || f->p == f->end) {
            return AIHUB_UFAST_UNDECIDED;
        }

        /* most values are strings and numbers: read here, not by a call */

        if (*f->p == '"') {
            if (aihub_ufast_string(f, m.counted) != 0) {
                return AIHUB_UFAST_UNDECIDED;
            }

        } else if ((*f->p >= '0' && *f->p <= '9') || *f->p == '-') {
            if (aihub_ufast_number(f, m.slot) != 0) {
                return AIHUB_UFAST_UNDECIDED;
            }

        } else if (aihub_ufast_value(f, &m) != 0) {
            return AIHUB_UFAST_UNDECIDED;
        }

        rc = aihub_ufast_after(f, '}');

        if (rc != 0) {
            if (rc < 0) {
                return AIHUB_UFAST_UNDECIDED;
            }

            break;
        }
    }

closed:

    if (kind == AIHUB_UFAST_USAGE) {
        /* the last usage object is the one that counts, as in the machine */
        memcpy(f->out->val, f->cur, sizeof(f->cur));
        f->out->val_has = f->cur_has;
        f->out->usage = 1;
    }

    f->depth--;

    return 0;
}


/* from its '[' past its ']' */

static int
aihub_ufast_array(aihub_ufast_t *f, aihub_ufast_kind_e kind)
{
    int                   rc;
    aihub_ufast_member_t  m;

    if (kind == AIHUB_UFAST_MACHINE || ++f->depth > AIHUB_USAGE_FAST_DEPTH) {
        return AIHUB_UFAST_UNDECIDED;
    }

    f->p++;
    aihub_ufast_space(f);

    if (f->p < f->end && *f->p == ']') {
        f->p++;
        f->depth--;
        return 0;
    }

    m = aihub_ufast_plain;

    if (kind == AIHUB_UFAST_CHOICES) {
        m.object = AIHUB_UFAST_CHOICE;
        f->out->choices = 1;
    }

    for ( ;; ) {
        if (aihub_ufast_value(f, &m) != 0) {
            return AIHUB_UFAST_UNDECIDED;
        }

        rc = aihub_ufast_after(f, ']');

        if (rc != 0) {
            if (rc < 0) {
                return AIHUB_UFAST_UNDECIDED;
            }

            break;
        }
    }

    f->depth--;

    return 0;
}


/*
 * What the member named k (n bytes) of a container of this kind is; not 0:
 * the answer is the machine's to read
 */

static int
aihub_ufast_member(aihub_ufast_kind_e kind, const unsigned char *k, size_t n,
    aihub_ufast_member_t *m)
{
    *m = aihub_ufast_plain;

#define aihub_ufast_is(name)                                                 \
    (n == sizeof(name) - 1 && memcmp(k, name, sizeof(name) - 1) == 0)

    switch (kind) {

    case AIHUB_UFAST_TOP:
        if (n < 4 || n > 8) {
            break;
        }

        if (aihub_ufast_is("usage")) {
            m->object = AIHUB_UFAST_USAGE;

        } else if (aihub_ufast_is("choices")) {
            m->array = AIHUB_UFAST_CHOICES;

        } else if (aihub_ufast_is("error") || aihub_ufast_is("type")
                   || aihub_ufast_is("response") || aihub_ufast_is("delta")
                   || aihub_ufast_is("output"))
        {
            return -1;
        }

        break;

    case AIHUB_UFAST_USAGE:
        if (aihub_ufast_is("prompt_tokens") || aihub_ufast_is("input_tokens"))
        {
            m->slot = 0;

        } else if (aihub_ufast_is("completion_tokens")
                   || aihub_ufast_is("output_tokens"))
        {
            m->slot = 1;

        } else if (aihub_ufast_is("total_tokens")) {
            m->slot = 2;
        }

        break;

    case AIHUB_UFAST_CHOICE:
        if (aihub_ufast_is("message") || aihub_ufast_is("delta")) {
            m->object = AIHUB_UFAST_MESSAGE;
        }

        break;

    case AIHUB_UFAST_MESSAGE:
        /* what the model wrote; its tool calls are the machine's */

        if (aihub_ufast_is("content") || aihub_ufast_is("refusal")
            || aihub_ufast_is("reasoning")
            || aihub_ufast_is("reasoning_content"))
        {
            m->counted = 1;

        } else if (aihub_ufast_is("tool_calls")) {
            m->array = AIHUB_UFAST_MACHINE;

        } else if (aihub_ufast_is("function_call")) {
            m->object = AIHUB_UFAST_MACHINE;
        }

        break;

    default:
        break;
    }

#undef aihub_ufast_is

    return 0;
}


/* from its opening quote past its closing one */

static int
aihub_ufast_string(aihub_ufast_t *f, int counted)
{
    int     u;
    size_t  n;

    f->p++;

    for ( ;; ) {
        n = aihub_bytes_text_len(f->p, (size_t) (f->end - f->p));

        if (counted) {
            f->out->chars += aihub_bytes_utf8_chars(f->p, n);
        }

        f->p += n;

        if (f->p == f->end) {
            return AIHUB_UFAST_UNDECIDED;
        }

        if (*f->p == '"') {
            f->p++;
            return 0;
        }

        /* an escape: one character */

        if (f->end - f->p < 2) {
            return AIHUB_UFAST_UNDECIDED;
        }

        switch (f->p[1]) {

        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            f->p += 2;
            f->out->chars += counted;
            break;

        case 'u':
            if (f->end - f->p < 6) {
                return AIHUB_UFAST_UNDECIDED;
            }

            u = aihub_bytes_hex4(f->p + 2);

            if (u < 0) {
                return AIHUB_UFAST_UNDECIDED;
            }

            f->p += 6;

            /* a low surrogate completes a pair counted at its high half */
            if (counted && (u < 0xdc00 || u > 0xdfff)) {
                f->out->chars++;
            }

            break;

        default:
            return AIHUB_UFAST_UNDECIDED;
        }
    }
}


/*
 * A number as JSON writes one; a usage slot's (slot >= 0) must be a plain
 * integer in [0, AIHUB_USAGE_MAX]: the machine's reading of others is its
 * own
 */

static int
aihub_ufast_number(aihub_ufast_t *f, int slot)
{
    int64_t               v;
    const unsigned char  *p, *q;

    p = aihub_bytes_json_number(f->p, f->end);

    /* a number at the end may go on in the next piece */

    if (p == NULL || p == f->end) {
        return AIHUB_UFAST_UNDECIDED;
    }

    if (slot >= 0) {
        /* digits alone, at most ten of them */

        if (p - f->p > 10) {
            return AIHUB_UFAST_UNDECIDED;
        }

        v = 0;

        for (q = f->p; q < p && *q >= '0' && *q <= '9'; q++) {
            v = v * 10 + (*q - '0');
        }

        if (q != p || v > AIHUB_USAGE_MAX) {
            return AIHUB_UFAST_UNDECIDED;
        }

        f->cur[slot] = v;
        f->cur_has |= (uint8_t) (1 << slot);
    }

    f->p = p;

    return 0;
}


static int
aihub_ufast_literal(aihub_ufast_t *f, const char *lit, size_t n)
{
    if ((size_t) (f->end - f->p) < n || memcmp(f->p, lit, n) != 0) {
        return AIHUB_UFAST_UNDECIDED;
    }

    f->p += n;

    return 0;
}
