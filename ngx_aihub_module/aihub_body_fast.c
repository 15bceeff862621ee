/*
 * The chat body's check in one pass over its bytes, without a tree (see
 * aihub_body.h, aihub_body_fast()).
 *
 * cJSON's parse was an eighth of a gateway call: it allocates a node and
 * a copy of every string, reads every number with strtod(), and the
 * checks then walk the tree again.  Most chat bodies are plain: a model,
 * messages of text, a few options.  This pass reads such a body once,
 * checking each object's member names as it goes, and fills the same
 * fields the tree check would.
 *
 * It never refuses a body.  Whatever it does not handle exactly as the
 * tree check does, it leaves to the tree check ("undecided", -1):
 *   - anything the tree check refuses (bad JSON, a repeated member, a
 *     member that routes or bills, the name of a stored object, a bad
 *     model, stream or max_tokens);
 *   - anything where cJSON is laxer than JSON or reads differently: a
 *     control byte or white space other than JSON's four, a byte order
 *     mark, an escape in a member name or the model, \u0000 or a UTF-16
 *     surrogate, a number JSON does not allow or longer than 32 bytes;
 *   - what the estimate reads from cJSON's printing: tools, functions,
 *     tool_choice, response_format, a message's tool_calls;
 *   - objects of more than AIHUB_FAST_MEMBERS members, nesting deeper
 *     than AIHUB_FAST_DEPTH.
 * So a body it decides gets the verdict and the figures the tree check
 * would give; the fuzz target and test_body.c compare the two.
 */

#include <string.h>

#include "aihub_bytes.h"
#include "aihub_body.h"


#define AIHUB_FAST_DEPTH     32
#define AIHUB_FAST_MEMBERS   32
#define AIHUB_FAST_NUMBER    32

#define AIHUB_FAST_UNDECIDED  (-1)


/* what an object is, for what its members mean */
typedef enum {
    AIHUB_FAST_OTHER = 0,
    AIHUB_FAST_ROOT,
    AIHUB_FAST_MESSAGE,
    AIHUB_FAST_PART,
    AIHUB_FAST_OPTIONS
} aihub_fast_kind_e;


typedef struct {
    const unsigned char    *p;          /* the next byte */
    const unsigned char    *end;
    unsigned                depth;

    /* the root's members */
    const unsigned char    *model;
    size_t                  model_len;
    int64_t                 max_tokens;
    int64_t                 max_completion_tokens;
    int64_t                 chars;
    unsigned                messages:1;
    unsigned                stream:1;
    unsigned                include_usage:1;
    unsigned                store_false:1;  /* "store": false */
} aihub_fast_t;


/* what one message part held */
typedef struct {
    int64_t                 text_chars;
    unsigned                text:1;         /* "text" is a string */
    unsigned                media:1;        /* "type" a string, not "text" */
} aihub_fast_part_t;


static int aihub_fast_value(aihub_fast_t *f);
static int aihub_fast_object(aihub_fast_t *f, aihub_fast_kind_e kind,
    aihub_fast_part_t *part);
static int aihub_fast_member(aihub_fast_t *f, aihub_fast_kind_e kind,
    const unsigned char *name, size_t len, aihub_fast_part_t *part);
static int aihub_fast_array(aihub_fast_t *f, aihub_fast_kind_e kind);


static inline void
aihub_fast_ws(aihub_fast_t *f)
{
    /* most tokens follow one another with none: one test tells */

    while (f->p < f->end && *f->p <= ' '
           && (*f->p == ' ' || *f->p == '\n' || *f->p == '\r'
               || *f->p == '\t'))
    {
        f->p++;
    }
}


/*
 * A string, f->p at its quote: past it.  "chars", if not NULL, gains the
 * characters of its decoded text (an escape is one character, as cJSON
 * writes it in UTF-8); "escapes" 0: an escape is undecided.
 */

static int
aihub_fast_string(aihub_fast_t *f, int64_t *chars, int escapes)
{
    int     c;
    size_t  k;

    f->p++;

    for ( ;; ) {
        k = aihub_bytes_plain_len(f->p, (size_t) (f->end - f->p));

        if (chars != NULL) {
            *chars += (int64_t) aihub_bytes_utf8_chars(f->p, k);
        }

        f->p += k;

        if (f->p == f->end) {
            return AIHUB_FAST_UNDECIDED;
        }

        if (*f->p == '"') {
            f->p++;
            return 0;
        }

        /* a control byte, or an escape */

        if (*f->p != '\\' || !escapes || f->end - f->p < 2) {
            return AIHUB_FAST_UNDECIDED;
        }

        switch (f->p[1]) {

        case '"': case '\\': case '/':
        case 'b': case 'f': case 'n': case 'r': case 't':
            f->p += 2;
            break;

        case 'u':
            if (f->end - f->p < 6) {
                return AIHUB_FAST_UNDECIDED;
            }

            c = aihub_bytes_hex4(f->p + 2);

            if (c <= 0 || (c >= 0xd800 && c <= 0xdfff)) {
                return AIHUB_FAST_UNDECIDED;
            }

            f->p += 6;
            break;

        default:
            return AIHUB_FAST_UNDECIDED;
        }

        if (chars != NULL) {
            (*chars)++;
        }
    }
}


/* a number as JSON writes it, at most AIHUB_FAST_NUMBER bytes */

static int
aihub_fast_number(aihub_fast_t *f)
{
    const unsigned char  *p;

    p = aihub_bytes_json_number(f->p, f->end);

    if (p == NULL || p - f->p > AIHUB_FAST_NUMBER) {
        return AIHUB_FAST_UNDECIDED;
    }

    f->p = p;

    return 0;
}


/* "true", "false" or "null" */

static int
aihub_fast_literal(aihub_fast_t *f, const char *word, size_t len)
{
    if ((size_t) (f->end - f->p) < len || memcmp(f->p, word, len) != 0) {
        return AIHUB_FAST_UNDECIDED;
    }

    f->p += len;

    return 0;
}


#define aihub_fast_is(f, word)                                               \
    ((size_t) ((f)->end - (f)->p) >= sizeof(word) - 1                         \
     && memcmp((f)->p, word, sizeof(word) - 1) == 0)


/* any value, f->p at its first byte */

static int
aihub_fast_value(aihub_fast_t *f)
{
    if (f->p == f->end) {
        return AIHUB_FAST_UNDECIDED;
    }

    switch (*f->p) {

    case '"':
        return aihub_fast_string(f, NULL, 1);

    case '{':
        return aihub_fast_object(f, AIHUB_FAST_OTHER, NULL);

    case '[':
        return aihub_fast_array(f, AIHUB_FAST_OTHER);

    case 't':
        return aihub_fast_literal(f, "true", 4);

    case 'f':
        return aihub_fast_literal(f, "false", 5);

    case 'n':
        return aihub_fast_literal(f, "null", 4);

    default:
        return aihub_fast_number(f);
    }
}


/*
 * After a member or an element: 1 and past "close" when the container
 * ends there (one level up), 0 past a comma and the white space after it,
 * or undecided.
 */

static int
aihub_fast_after(aihub_fast_t *f, int close)
{
    aihub_fast_ws(f);

    if (f->p == f->end) {
        return AIHUB_FAST_UNDECIDED;
    }

    if (*f->p == close) {
        f->p++;
        f->depth--;
        return 1;
    }

    if (*f->p != ',') {
        return AIHUB_FAST_UNDECIDED;
    }

    f->p++;
    aihub_fast_ws(f);

    return 0;
}


/*
 * An object, f->p at its '{'.  Its member names are compared as they
 * come: a repeated one is undecided (the tree check refuses it).
 */

static int
aihub_fast_object(aihub_fast_t *f, aihub_fast_kind_e kind,
    aihub_fast_part_t *part)
{
    int                   rc;
    size_t                n, k, len;
    const unsigned char  *name;
    const unsigned char  *names[AIHUB_FAST_MEMBERS];
    size_t                lens[AIHUB_FAST_MEMBERS];

    if (++f->depth > AIHUB_FAST_DEPTH) {
        return AIHUB_FAST_UNDECIDED;
    }

    f->p++;
    aihub_fast_ws(f);

    if (f->p < f->end && *f->p == '}') {
        f->p++;
        f->depth--;
        return 0;
    }

    for (n = 0; /* void */ ; n++) {

        if (n == AIHUB_FAST_MEMBERS || f->p == f->end || *f->p != '"') {
            return AIHUB_FAST_UNDECIDED;
        }

        name = f->p + 1;

        if (aihub_fast_string(f, NULL, 0) != 0) {
            return AIHUB_FAST_UNDECIDED;
        }

        len = (size_t) (f->p - 1 - name);

        for (k = 0; k < n; k++) {
            if (lens[k] == len && memcmp(names[k], name, len) == 0) {
                return AIHUB_FAST_UNDECIDED;
            }
        }

        names[n] = name;
        lens[n] = len;

        aihub_fast_ws(f);

        if (f->p == f->end || *f->p != ':') {
            return AIHUB_FAST_UNDECIDED;
        }

        f->p++;
        aihub_fast_ws(f);

        if (aihub_fast_member(f, kind, name, len, part) != 0) {
            return AIHUB_FAST_UNDECIDED;
        }

        rc = aihub_fast_after(f, '}');

        if (rc != 0) {
            return rc == 1 ? 0 : AIHUB_FAST_UNDECIDED;
        }
    }
}


/* an array, f->p at its '['; "kind" is what its elements are */

static int
aihub_fast_array(aihub_fast_t *f, aihub_fast_kind_e kind)
{
    int                rc;
    aihub_fast_part_t  part;

    if (++f->depth > AIHUB_FAST_DEPTH) {
        return AIHUB_FAST_UNDECIDED;
    }

    f->p++;
    aihub_fast_ws(f);

    if (f->p < f->end && *f->p == ']') {
        f->p++;
        f->depth--;
        return 0;
    }

    for ( ;; ) {

        if (f->p < f->end && *f->p == '{' && kind != AIHUB_FAST_OTHER) {
            /* a message, or a part of a message's content */

            memset(&part, 0, sizeof(aihub_fast_part_t));

            rc = aihub_fast_object(f, kind, &part);

            if (part.text) {
                f->chars += part.text_chars;

            } else if (part.media) {
                f->chars += AIHUB_BODY_MEDIA_CHARS;
            }

        } else {
            /* a message or a part that is not an object adds nothing */
            rc = aihub_fast_value(f);
        }

        if (rc != 0) {
            return AIHUB_FAST_UNDECIDED;
        }

        rc = aihub_fast_after(f, ']');

        if (rc != 0) {
            return rc == 1 ? 0 : AIHUB_FAST_UNDECIDED;
        }
    }
}


/* max_tokens: an integer of at most nine digits, 1 or more, or null (0) */

static int
aihub_fast_count(aihub_fast_t *f, int64_t *v)
{
    int64_t               n;
    const unsigned char  *p;

    if (aihub_fast_is(f, "null")) {
        f->p += 4;
        *v = 0;
        return 0;
    }

    n = 0;

    for (p = f->p; p < f->end && *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');

        if (p - f->p == 9) {
            return AIHUB_FAST_UNDECIDED;
        }
    }

    if (p == f->p || *f->p == '0'
        || (p < f->end && (*p == '.' || *p == 'e' || *p == 'E')))
    {
        return AIHUB_FAST_UNDECIDED;
    }

    f->p = p;
    *v = n;

    return 0;
}


#define aihub_fast_name(name, len, word)                                     \
    ((len) == sizeof(word) - 1 && memcmp(name, word, sizeof(word) - 1) == 0)


/* a capital in a name: no member of the OpenAI APIs has one */

static int
aihub_fast_capital(const unsigned char *name, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (name[i] >= 'A' && name[i] <= 'Z') {
            return 1;
        }
    }

    return 0;
}


/* one member's value, f->p at it: what it means in an object of "kind" */

static int
aihub_fast_member(aihub_fast_t *f, aihub_fast_kind_e kind,
    const unsigned char *name, size_t len, aihub_fast_part_t *part)
{
    const unsigned char  *s;

    /* an uploaded file's id, at any depth: the tree check decides */

    if (aihub_fast_name(name, len, "file_id")) {
        return AIHUB_FAST_UNDECIDED;
    }

    switch (kind) {

    case AIHUB_FAST_ROOT:

        /*
         * "maxTokens": a provider that reads camelCase names too (Gemini's
         * endpoint parses proto JSON, which takes both spellings) would
         * take it for one the check reads; the tree check decides
         */

        if (aihub_fast_capital(name, len)) {
            return AIHUB_FAST_UNDECIDED;
        }

        switch (len) {

        case 1:
            if (name[0] == 'n') {
                return AIHUB_FAST_UNDECIDED;
            }

            break;

        case 5:
            if (aihub_fast_name(name, len, "model")) {
                if (f->p == f->end || *f->p != '"') {
                    return AIHUB_FAST_UNDECIDED;
                }

                s = f->p + 1;

                if (aihub_fast_string(f, NULL, 0) != 0
                    || f->p - 1 == s)
                {
                    return AIHUB_FAST_UNDECIDED;
                }

                f->model = s;
                f->model_len = (size_t) (f->p - 1 - s);
                return 0;
            }

            if (aihub_fast_name(name, len, "store")) {
                /* false; any other value is the tree check's to read */

                if (!aihub_fast_is(f, "false")) {
                    return AIHUB_FAST_UNDECIDED;
                }

                f->store_false = 1;
                return aihub_fast_literal(f, "false", 5);
            }

            if (aihub_fast_name(name, len, "route")
                || aihub_fast_name(name, len, "tools"))
            {
                return AIHUB_FAST_UNDECIDED;
            }

            break;

        case 6:
            if (aihub_fast_name(name, len, "stream")) {
                if (aihub_fast_is(f, "true")) {
                    f->stream = 1;
                    f->p += 4;
                    return 0;
                }

                return aihub_fast_is(f, "false")
                       ? aihub_fast_literal(f, "false", 5)
                       : aihub_fast_literal(f, "null", 4);
            }

            if (aihub_fast_name(name, len, "models")
                || aihub_fast_name(name, len, "preset")
                || aihub_fast_name(name, len, "prompt")
                || aihub_fast_name(name, len, "google"))
            {
                return AIHUB_FAST_UNDECIDED;
            }

            break;

        case 7:
        case 8:
        case 9:
        case 11:
        case 12:
        case 15:
            if (aihub_fast_name(name, len, "messages")) {
                if (f->p == f->end || *f->p != '[') {
                    return AIHUB_FAST_UNDECIDED;
                }

                f->messages = 1;
                return aihub_fast_array(f, AIHUB_FAST_MESSAGE);
            }

            if (aihub_fast_name(name, len, "plugins")
                || aihub_fast_name(name, len, "provider")
                || aihub_fast_name(name, len, "conversation")
                || aihub_fast_name(name, len, "functions")
                || aihub_fast_name(name, len, "tool_choice")
                || aihub_fast_name(name, len, "service_tier")
                || aihub_fast_name(name, len, "response_format"))
            {
                return AIHUB_FAST_UNDECIDED;
            }

            break;

        case 10:
            if (aihub_fast_name(name, len, "max_tokens")) {
                return aihub_fast_count(f, &f->max_tokens);
            }

            if (aihub_fast_name(name, len, "extra_body")) {
                return AIHUB_FAST_UNDECIDED;
            }

            break;

        case 14:
            if (aihub_fast_name(name, len, "stream_options")) {
                if (aihub_fast_is(f, "null")) {
                    f->p += 4;
                    return 0;
                }

                if (f->p == f->end || *f->p != '{') {
                    return AIHUB_FAST_UNDECIDED;
                }

                return aihub_fast_object(f, AIHUB_FAST_OPTIONS, NULL);
            }

            break;

        case 17:
            if (aihub_fast_name(name, len, "search_parameters")) {
                return AIHUB_FAST_UNDECIDED;
            }

            break;

        case 18:
            if (aihub_fast_name(name, len, "web_search_options")) {
                return AIHUB_FAST_UNDECIDED;
            }

            break;

        case 20:
            if (aihub_fast_name(name, len, "previous_response_id")) {
                return AIHUB_FAST_UNDECIDED;
            }

            break;

        case 21:
            if (aihub_fast_name(name, len, "max_completion_tokens")) {
                return aihub_fast_count(f, &f->max_completion_tokens);
            }

            break;
        }

        break;

    case AIHUB_FAST_MESSAGE:

        if (aihub_fast_name(name, len, "content")) {
            if (f->p < f->end && *f->p == '"') {
                return aihub_fast_string(f, &f->chars, 1);
            }

            if (f->p < f->end && *f->p == '[') {
                return aihub_fast_array(f, AIHUB_FAST_PART);
            }

            break;
        }

        if (aihub_fast_name(name, len, "tool_calls")) {
            return AIHUB_FAST_UNDECIDED;
        }

        break;

    case AIHUB_FAST_PART:

        if (aihub_fast_name(name, len, "text")
            && f->p < f->end && *f->p == '"')
        {
            part->text = 1;
            return aihub_fast_string(f, &part->text_chars, 1);
        }

        if (aihub_fast_name(name, len, "type")
            && f->p < f->end && *f->p == '"')
        {
            s = f->p + 1;

            if (aihub_fast_string(f, NULL, 0) != 0) {
                return AIHUB_FAST_UNDECIDED;
            }

            part->media = !(f->p - 1 - s == 4 && memcmp(s, "text", 4) == 0);
            return 0;
        }

        break;

    case AIHUB_FAST_OPTIONS:

        if (aihub_fast_name(name, len, "include_usage")
            && aihub_fast_is(f, "true"))
        {
            f->include_usage = 1;
            f->p += 4;
            return 0;
        }

        break;

    default: /* AIHUB_FAST_OTHER */
        break;
    }

    return aihub_fast_value(f);
}


int
aihub_body_fast(aihub_body_t *b, const unsigned char *p, size_t n,
    const aihub_body_policy_t *policy)
{
    int64_t       max;
    aihub_fast_t  f;

    if (policy->model_only) {
        return AIHUB_FAST_UNDECIDED;
    }

    memset(&f, 0, sizeof(aihub_fast_t));
    f.p = p;
    f.end = p + n;

    aihub_fast_ws(&f);

    if (f.p == f.end || *f.p != '{'
        || aihub_fast_object(&f, AIHUB_FAST_ROOT, NULL) != 0)
    {
        return AIHUB_FAST_UNDECIDED;
    }

    aihub_fast_ws(&f);

    if (f.p != f.end || f.model == NULL || !f.messages) {
        return AIHUB_FAST_UNDECIDED;
    }

    /* both checked, the larger the bound (aihub_body_options) */
    max = f.max_completion_tokens > f.max_tokens ? f.max_completion_tokens
                                                 : f.max_tokens;

    if (max > policy->max_tokens_max) {
        return AIHUB_FAST_UNDECIDED;
    }

    memset(b, 0, sizeof(aihub_body_t));

    b->verdict = AIHUB_BODY_OK;
    b->model = (const char *) f.model;
    b->model_len = f.model_len;
    b->prompt_chars = f.chars;
    b->max_tokens = max;
    b->stream = f.stream;
    b->include_usage = f.include_usage;
    b->store = f.store_false ? AIHUB_BODY_STORE_FALSE : AIHUB_BODY_STORE_NONE;

    return 0;
}
