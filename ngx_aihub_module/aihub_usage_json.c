/*
 * The incremental usage scanner and the billing rule (aihub_usage_json.h).
 *
 * One byte at a time through a JSON state machine with a stack of container
 * kinds (one bit per level).  The first AIHUB_JSON_TRACK levels also carry
 * a role (top object, usage, error, choices, one choice, delta/message) and
 * the name of the member being read, which is all the path matching needs.
 */

#include <string.h>

#include "aihub_bytes.h"
#include "aihub_usage_json.h"
#include "aihub_usage_fast.h"


/* scanner states */
enum {
    J_VALUE = 0,
    J_OBJ_FIRST,
    J_OBJ_KEY,
    J_COLON,
    J_AFTER,
    J_ARR_FIRST,
    J_STRING,
    J_ESC,
    J_HEX,
    J_NUMBER,
    J_LITERAL,
    J_END,
    J_ERROR
};

/* container roles */
enum {
    C_OTHER = 0,
    C_TOP,
    C_USAGE,
    C_ERROR,
    C_CHOICES,
    C_CHOICE,
    C_DELTA,
    C_RESP,             /* "response" of a Responses API stream event */
    C_TOOLS,            /* a delta's or message's "tool_calls" */
    C_TOOL,             /* one tool call */
    C_FUNC,             /* its "function", or a legacy "function_call" */
    C_OUTPUT,           /* a Responses API answer's top-level "output" */
    C_ITEM,             /* one output item */
    C_PARTS,            /* its "content" */
    C_PART              /* one content part */
};

/* member names */
enum {
    K_OTHER = 0,
    K_USAGE,
    K_ERROR,
    K_CHOICES,
    K_PROMPT,
    K_COMPLETION,
    K_TOTAL,
    K_MESSAGE,
    K_DELTA,
    K_CONTENT,
    K_RESPONSE,
    K_INPUT,
    K_OUTPUT,
    K_TYPE,
    K_REFUSAL,
    K_TOOL_CALLS,
    K_FUNCTION,
    K_FUNCTION_CALL,
    K_ARGUMENTS,
    K_NAME,
    K_OUTPUT_LIST,      /* "output" */
    K_TEXT
};

/* string roles */
enum {
    S_OTHER = 0,
    S_KEY,
    S_CONTENT,
    S_MSG,
    S_TYPE              /* a top-level "type": is it "error"? */
};

/* number phases */
enum {
    N_INT = 0,
    N_FRAC_FIRST,
    N_FRAC,
    N_EXP_SIGN,
    N_EXP_FIRST,
    N_EXP
};

#define AIHUB_JSON_MANT_MAX  100000000000000000ULL    /* 10^17 */
/*
 * The digits counted into a number's exponent, both ways: far beyond any
 * document that can exist (10^15 digits), and far from int64_t overflow
 */
#define AIHUB_JSON_EXP_MAX   1000000000000000LL


static const char  *aihub_json_literals[] = { "true", "false", "null" };


/* the innermost open container (depth > 0) is an object */
#define aihub_json_in_object(j)                                              \
    ((((j)->is_object[((j)->depth - 1) / 64]) >> (((j)->depth - 1) % 64)) & 1)


static int aihub_json_byte(aihub_json_t *j, unsigned c);
static void aihub_json_value_start(aihub_json_t *j, unsigned c);
static void aihub_json_value_end(aihub_json_t *j);
static void aihub_json_push(aihub_json_t *j, unsigned c, uint8_t role);
static void aihub_json_pop(aihub_json_t *j, unsigned c);
static void aihub_json_key_add(aihub_json_t *j, const unsigned char *p,
    size_t n);
static void aihub_json_key_end(aihub_json_t *j);
static void aihub_json_key_match(aihub_json_t *j, const unsigned char *k,
    size_t len);
static void aihub_json_number_end(aihub_json_t *j);
static void aihub_json_msg_add(aihub_json_t *j, unsigned c);
static void aihub_json_msg_trim(aihub_json_t *j);


void
aihub_json_init(aihub_json_t *j)
{
    memset(j, 0, sizeof(aihub_json_t));
}


void
aihub_json_reset(aihub_json_t *j)
{
    uint64_t  chars;

    chars = j->chars;
    memset(j, 0, sizeof(aihub_json_t));
    j->chars = chars;
}


int
aihub_json_feed(aihub_json_t *j, const unsigned char *p, size_t len)
{
    size_t   i, k;
    uint8_t  role;

    for (i = 0; i < len; i++) {

        if (j->state >= J_END) {
            break;
        }

        /*
         * Most of a document is the text of strings whose bytes matter
         * only as a count: run through them up to the next quote or
         * backslash without the byte machine.
         */

        /*
         * (state and str_role are tested apart: the byte machine has just
         * stored each alone, and one load of both would wait for the
         * stores to reach the cache instead of taking them as they are)
         */

        if (j->state == J_STRING) {
            role = j->str_role;

            if (role == S_OTHER || role == S_CONTENT) {
                k = i;
                i += aihub_bytes_text_len(p + i, len - i);

                if (role == S_CONTENT) {
                    j->chars += aihub_bytes_utf8_chars(p + k, i - k);
                }

                if (i == len) {
                    break;
                }

                if (p[i] == '"') {
                    aihub_json_value_end(j);

                    /* and the next member's name begins: ,"  */

                    if (i + 2 < len && p[i + 1] == ',' && p[i + 2] == '"'
                        && j->state == J_AFTER && aihub_json_in_object(j))
                    {
                        i += 2;
                        j->state = J_STRING;
                        j->str_role = S_KEY;
                        j->key_len = 0;
                    }

                    continue;
                }

            } else if (role == S_KEY) {
                /* a member name: its bytes up to the quote, no machine */

                k = i;
                i += aihub_bytes_text_len(p + i, len - i);

                if (i < len && p[i] == '"' && j->key_len == 0) {
                    /* all of it in this buffer: matched where it is */
                    aihub_json_key_match(j, p + k, i - k);
                    j->state = J_COLON;

                    /* and its value begins: ":v" */

                    if (i + 2 < len && p[i + 1] == ':' && p[i + 2] > ' ') {
                        i += 2;
                        j->state = J_VALUE;
                        aihub_json_value_start(j, p[i]);
                    }

                    continue;
                }

                aihub_json_key_add(j, p + k, i - k);

                if (i == len) {
                    break;
                }

                if (p[i] == '"') {
                    aihub_json_key_end(j);
                    j->state = J_COLON;
                    continue;
                }
            }

        } else if (j->state == J_NUMBER) {
            /* the digits of an integer part, while the mantissa takes them */

            if (j->num_phase == N_INT) {
                while (i < len && p[i] >= '0' && p[i] <= '9'
                       && j->mant < AIHUB_JSON_MANT_MAX)
                {
                    j->mant = j->mant * 10 + (p[i] - '0');
                    j->num_digits = 1;
                    i++;
                }

                if (i == len) {
                    break;
                }

                /* an integer ends where a member or an element does: the
                   byte that ends it is read below in the state after it */

                if (j->num_digits && j->depth > 0
                    && (p[i] == ',' || p[i] == '}' || p[i] == ']'
                        || p[i] == ' ' || p[i] == '\n' || p[i] == '\r'
                        || p[i] == '\t'))
                {
                    aihub_json_number_end(j);
                    aihub_json_value_end(j);
                }
            }
        }

        /*
         * the commonest steps between values, and the white space of a
         * pretty-printed answer, without the byte machine
         */

        switch (j->state) {

        case J_COLON:
            if (p[i] == ':') {
                j->state = J_VALUE;
                continue;
            }

            break;

        case J_OBJ_KEY:
        case J_OBJ_FIRST:
            if (p[i] == '"') {
                j->state = J_STRING;
                j->str_role = S_KEY;
                j->key_len = 0;
                continue;
            }

            break;

        case J_AFTER:
            if (p[i] == ',' && aihub_json_in_object(j)) {

                /* and the next member's name begins: ,"  */

                if (i + 1 < len && p[i + 1] == '"') {
                    i++;
                    j->state = J_STRING;
                    j->str_role = S_KEY;
                    j->key_len = 0;
                    continue;
                }

                j->state = J_OBJ_KEY;
                continue;
            }

            if (p[i] == '}' || p[i] == ']') {
                aihub_json_pop(j, p[i]);
                continue;
            }

            break;

        case J_VALUE:
            if (p[i] > ' ') {
                aihub_json_value_start(j, p[i]);
                continue;
            }

            break;

        case J_LITERAL:
            if (p[i] == (unsigned char) aihub_json_literals[j->lit][j->lit_pos])
            {
                if (aihub_json_literals[j->lit][++j->lit_pos] == '\0') {
                    aihub_json_value_end(j);
                }

                continue;
            }

            goto machine;

        case J_ARR_FIRST:
            break;

        default:
            goto machine;
        }

        if (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t') {
            /* the whole run: a pretty-printed answer's indentation */
            while (i + 1 < len
                   && (p[i + 1] == ' ' || p[i + 1] == '\n'
                       || p[i + 1] == '\r' || p[i + 1] == '\t'))
            {
                i++;
            }

            continue;
        }

    machine:

        /* a number ends on the byte after it, which is then read again */

        if (aihub_json_byte(j, p[i]) && j->state != J_ERROR) {
            (void) aihub_json_byte(j, p[i]);
        }
    }

    if (j->state == J_END && i < len) {
        for ( /* void */ ; i < len; i++) {
            if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') {
                j->trailing = 1;
                break;
            }
        }
    }

    if (j->state == J_ERROR) {
        return AIHUB_JSON_ERROR;
    }

    return j->complete ? AIHUB_JSON_DONE : AIHUB_JSON_AGAIN;
}


/* returns 1 if the byte must be read again in the new state */

static int
aihub_json_byte(aihub_json_t *j, unsigned c)
{
    unsigned       d;
    int            ws;
    unsigned char  ch;

    ws = (c == ' ' || c == '\t' || c == '\n' || c == '\r');

    switch (j->state) {

    case J_VALUE:
        if (!ws) {
            aihub_json_value_start(j, c);
        }
        return 0;

    case J_ARR_FIRST:
        if (ws) {
            return 0;
        }

        if (c == ']') {
            aihub_json_pop(j, c);
            return 0;
        }

        aihub_json_value_start(j, c);
        return 0;

    case J_OBJ_FIRST:
    case J_OBJ_KEY:
        if (ws) {
            return 0;
        }

        if (c == '"') {
            j->state = J_STRING;
            j->str_role = S_KEY;
            j->key_len = 0;
            return 0;
        }

        if (c == '}' && j->state == J_OBJ_FIRST) {
            aihub_json_pop(j, c);
            return 0;
        }

        break;

    case J_COLON:
        if (ws) {
            return 0;
        }

        if (c == ':') {
            j->state = J_VALUE;
            return 0;
        }

        break;

    case J_AFTER:
        if (ws) {
            return 0;
        }

        if (c == ',') {
            if (aihub_json_in_object(j)) {
                j->state = J_OBJ_KEY;

            } else {
                j->state = J_VALUE;
            }

            return 0;
        }

        if (c == '}' || c == ']') {
            aihub_json_pop(j, c);
            return 0;
        }

        break;

    case J_STRING:
        if (c == '"') {
            if (j->str_role == S_KEY) {
                aihub_json_key_end(j);
                j->state = J_COLON;
                return 0;
            }

            if (j->str_role == S_MSG) {
                aihub_json_msg_trim(j);

            } else if (j->str_role == S_TYPE && !j->type_other
                       && j->type_pos == sizeof("error") - 1)
            {
                /* a Responses API stream's error event */
                j->error = 1;
            }

            aihub_json_value_end(j);
            return 0;
        }

        if (c == '\\') {
            j->state = J_ESC;
            return 0;
        }

        switch (j->str_role) {

        case S_KEY:
            ch = (unsigned char) c;
            aihub_json_key_add(j, &ch, 1);
            break;

        case S_CONTENT:
            if ((c & 0xc0) != 0x80) {
                j->chars++;
            }

            break;

        case S_MSG:
            aihub_json_msg_add(j, c < 0x20 ? ' ' : c);
            break;

        case S_TYPE:
            if (j->type_pos < sizeof("error") - 1
                && c == (unsigned) "error"[j->type_pos])
            {
                j->type_pos++;

            } else {
                j->type_other = 1;
            }

            break;
        }

        return 0;

    case J_ESC:
        j->state = J_STRING;

        switch (c) {
        case '"':
        case '\\':
        case '/':
            d = c;
            break;
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            d = ' ';
            break;
        case 'u':
            j->state = J_HEX;
            j->hex_left = 4;
            j->hex = 0;
            return 0;
        default:
            j->state = J_ERROR;
            j->invalid = 1;
            return 0;
        }

        if (j->str_role == S_KEY) {
            j->key_len = 255;          /* escaped names never match */

        } else if (j->str_role == S_TYPE) {
            j->type_other = 1;

        } else if (j->str_role == S_CONTENT) {
            j->chars++;

        } else if (j->str_role == S_MSG) {
            aihub_json_msg_add(j, d);
        }

        return 0;

    case J_HEX:
        if (c >= '0' && c <= '9') {
            d = c - '0';

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            d = (c | 0x20) - 'a' + 10;

        } else {
            break;
        }

        j->hex = j->hex * 16 + d;

        if (--j->hex_left) {
            return 0;
        }

        j->state = J_STRING;

        if (j->str_role == S_KEY) {
            j->key_len = 255;

        } else if (j->str_role == S_TYPE) {
            j->type_other = 1;

        } else if (j->str_role == S_CONTENT) {
            /* a low surrogate completes a pair counted at its high half */
            if (j->hex < 0xdc00 || j->hex > 0xdfff) {
                j->chars++;
            }

        } else if (j->str_role == S_MSG) {
            if (j->hex < 0xdc00 || j->hex > 0xdfff) {
                aihub_json_msg_add(j, (j->hex >= 0x20 && j->hex < 0x7f)
                                      ? j->hex : '?');
            }
        }

        return 0;

    case J_NUMBER:
        if (c >= '0' && c <= '9') {
            d = c - '0';

            switch (j->num_phase) {

            case N_INT:
                j->num_digits = 1;

                if (j->mant < AIHUB_JSON_MANT_MAX) {
                    j->mant = j->mant * 10 + d;

                } else {
                    /* a dropped digit that is not 0 is not exact */
                    if (d) {
                        j->num_inexact = 1;
                    }

                    if (j->exp10 < AIHUB_JSON_EXP_MAX) {
                        j->exp10++;
                    }
                }

                return 0;

            case N_FRAC_FIRST:
            case N_FRAC:
                j->num_phase = N_FRAC;

                if (j->mant < AIHUB_JSON_MANT_MAX
                    && j->exp10 > -AIHUB_JSON_EXP_MAX)
                {
                    j->mant = j->mant * 10 + d;
                    j->exp10--;

                } else if (d) {
                    j->num_inexact = 1;
                }

                return 0;

            default:
                j->num_phase = N_EXP;

                if (j->exp_val < AIHUB_JSON_EXP_MAX) {
                    j->exp_val = j->exp_val * 10 + (int64_t) d;
                }

                return 0;
            }
        }

        if (c == '.' && j->num_phase == N_INT && j->num_digits) {
            j->num_phase = N_FRAC_FIRST;
            return 0;
        }

        if ((c == 'e' || c == 'E')
            && ((j->num_phase == N_INT && j->num_digits)
                || j->num_phase == N_FRAC))
        {
            j->num_phase = N_EXP_SIGN;
            return 0;
        }

        if ((c == '+' || c == '-') && j->num_phase == N_EXP_SIGN) {
            j->num_exp_neg = (c == '-');
            j->num_phase = N_EXP_FIRST;
            return 0;
        }

        if ((j->num_phase == N_INT && j->num_digits)
            || j->num_phase == N_FRAC || j->num_phase == N_EXP)
        {
            aihub_json_number_end(j);
            aihub_json_value_end(j);
            return 1;
        }

        break;

    case J_LITERAL:
        if (c != (unsigned char) aihub_json_literals[j->lit][j->lit_pos]) {
            break;
        }

        if (aihub_json_literals[j->lit][++j->lit_pos] == '\0') {
            aihub_json_value_end(j);
        }

        return 0;

    default:
        return 0;
    }

    j->state = J_ERROR;
    j->invalid = 1;

    return 0;
}


static void
aihub_json_value_start(aihub_json_t *j, unsigned c)
{
    uint8_t  pctx, pkey, role;

    pctx = C_OTHER;
    pkey = K_OTHER;

    if (j->depth == 0) {
        j->started = 1;
        pctx = C_TOP;       /* pseudo parent: the top value becomes C_TOP */

    } else if (j->depth <= AIHUB_JSON_TRACK) {
        pctx = j->ctx[j->depth];
        pkey = j->key[j->depth];
    }

    role = C_OTHER;
    j->str_role = S_OTHER;
    j->num_role = 0;

    switch (pctx) {

    case C_TOP:
        if (j->depth == 0) {
            if (c == '{') {
                j->top_object = 1;
                role = C_TOP;
            }

            break;
        }

        if (pkey == K_RESPONSE && c == '{') {
            role = C_RESP;

        } else if (pkey == K_DELTA && c == '"') {
            /* response.output_text.delta and the other text deltas */
            j->str_role = S_CONTENT;

        } else if (pkey == K_TYPE && c == '"') {
            j->str_role = S_TYPE;
            j->type_pos = 0;
            j->type_other = 0;

        } else if (pkey == K_OUTPUT_LIST && c == '[') {
            /* a Responses API answer's own (a stream's events carry their
               text as deltas, and "response.completed" all of it again
               inside "response": not counted twice) */
            role = C_OUTPUT;
        }

        /* usage and error as in a "response" object */

        /* fall through */

    case C_RESP:
        if (pkey == K_USAGE && c == '{') {
            role = C_USAGE;
            j->cur[0] = 0;
            j->cur[1] = 0;
            j->cur[2] = 0;
            j->cur_has = 0;
            j->cur_bad = 0;

        } else if (pkey == K_ERROR && c != 'n' && c != 'f') {
            j->error = 1;
            j->msg_len = 0;
            j->msg[0] = '\0';

            if (c == '{') {
                role = C_ERROR;

            } else if (c == '"') {
                j->str_role = S_MSG;
            }

        } else if (pkey == K_CHOICES && c == '[' && pctx == C_TOP) {
            role = C_CHOICES;
        }

        break;

    case C_USAGE:
        /* chat completions' names, and the Responses API's */

        if (pkey == K_PROMPT || pkey == K_INPUT) {
            j->num_role = 1;

        } else if (pkey == K_COMPLETION || pkey == K_OUTPUT) {
            j->num_role = 2;

        } else if (pkey == K_TOTAL) {
            j->num_role = 3;
        }

        break;

    case C_ERROR:
        if (pkey == K_MESSAGE && c == '"') {
            j->str_role = S_MSG;
        }

        break;

    case C_CHOICES:
        j->choices = 1;

        if (c == '{') {
            role = C_CHOICE;
        }

        break;

    case C_CHOICE:
        if ((pkey == K_DELTA || pkey == K_MESSAGE) && c == '{') {
            role = C_DELTA;
        }

        break;

    case C_DELTA:
        /* what the model wrote: its text, a refusal, its tool calls (the
           function's name and arguments) */

        if ((pkey == K_CONTENT || pkey == K_REFUSAL) && c == '"') {
            j->str_role = S_CONTENT;

        } else if (pkey == K_TOOL_CALLS && c == '[') {
            role = C_TOOLS;

        } else if (pkey == K_FUNCTION_CALL && c == '{') {
            role = C_FUNC;
        }

        break;

    case C_TOOLS:
        if (c == '{') {
            role = C_TOOL;
        }

        break;

    case C_TOOL:
        if (pkey == K_FUNCTION && c == '{') {
            role = C_FUNC;
        }

        break;

    case C_FUNC:
        if ((pkey == K_ARGUMENTS || pkey == K_NAME) && c == '"') {
            j->str_role = S_CONTENT;
        }

        break;

    case C_OUTPUT:
        if (c == '{') {
            role = C_ITEM;
        }

        break;

    case C_ITEM:
        /* a message's parts; a function_call item's name and arguments */

        if (pkey == K_CONTENT && c == '[') {
            role = C_PARTS;

        } else if ((pkey == K_ARGUMENTS || pkey == K_NAME) && c == '"') {
            j->str_role = S_CONTENT;
        }

        break;

    case C_PARTS:
        if (c == '{') {
            role = C_PART;
        }

        break;

    case C_PART:
        /* output_text's text, a refusal's refusal */

        if ((pkey == K_TEXT || pkey == K_REFUSAL) && c == '"') {
            j->str_role = S_CONTENT;
        }

        break;
    }

    switch (c) {

    case '{':
    case '[':
        aihub_json_push(j, c, role);
        return;

    case '"':
        j->state = J_STRING;
        return;

    case 't':
    case 'f':
    case 'n':
        j->state = J_LITERAL;
        j->lit = (c == 't') ? 0 : (c == 'f') ? 1 : 2;
        j->lit_pos = 1;
        return;

    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            j->state = J_NUMBER;
            j->num_phase = N_INT;
            j->num_neg = (c == '-');
            j->num_exp_neg = 0;
            j->num_inexact = 0;
            j->num_digits = (c != '-');
            j->mant = (c == '-') ? 0 : (uint64_t) (c - '0');
            j->exp10 = 0;
            j->exp_val = 0;
            return;
        }

        j->state = J_ERROR;
        j->invalid = 1;
    }
}


static void
aihub_json_value_end(aihub_json_t *j)
{
    if (j->depth == 0) {
        j->state = J_END;
        j->complete = 1;

    } else {
        j->state = J_AFTER;
    }
}


static void
aihub_json_push(aihub_json_t *j, unsigned c, uint8_t role)
{
    uint32_t  d;

    if (j->depth >= AIHUB_JSON_MAX_DEPTH) {
        j->state = J_ERROR;
        j->invalid = 1;
        return;
    }

    d = j->depth++;

    if (c == '{') {
        j->is_object[d / 64] |= 1ULL << (d % 64);
        j->state = J_OBJ_FIRST;

    } else {
        j->is_object[d / 64] &= ~(1ULL << (d % 64));
        j->state = J_ARR_FIRST;
    }

    if (j->depth <= AIHUB_JSON_TRACK) {
        j->ctx[j->depth] = role;
        j->key[j->depth] = K_OTHER;
    }
}


static void
aihub_json_pop(aihub_json_t *j, unsigned c)
{
    if ((int) aihub_json_in_object(j) != (c == '}')) {
        j->state = J_ERROR;
        j->invalid = 1;
        return;
    }

    if (j->depth <= AIHUB_JSON_TRACK && j->ctx[j->depth] == C_USAGE) {
        memcpy(j->val, j->cur, sizeof(j->val));
        j->val_has = j->cur_has;
        j->val_bad = j->cur_bad;
        j->usage = 1;

        if (j->depth == 2) {
            j->top_usage = 1;   /* a member of the top-level object */
        }
    }

    j->depth--;

    aihub_json_value_end(j);
}


/* bytes of a member name: the first AIHUB_JSON_KEY_LEN kept, all counted
   (up to 255: too long to match anything) */

static void
aihub_json_key_add(aihub_json_t *j, const unsigned char *p, size_t n)
{
    size_t  have;

    have = j->key_len;

    if (have < AIHUB_JSON_KEY_LEN) {
        memcpy(j->key_buf + have, p,
               n < AIHUB_JSON_KEY_LEN - have ? n : AIHUB_JSON_KEY_LEN - have);
    }

    j->key_len = (uint8_t) (have + n < 255 ? have + n : 255);
}


static void
aihub_json_key_end(aihub_json_t *j)
{
    aihub_json_key_match(j, (const unsigned char *) j->key_buf, j->key_len);
}


/* the member name k (len bytes, unescaped) is the current level's key */

static void
aihub_json_key_match(aihub_json_t *j, const unsigned char *k, size_t len)
{
    uint8_t  id;

    if (j->depth > AIHUB_JSON_TRACK) {
        return;
    }

    j->key[j->depth] = K_OTHER;

    if (j->ctx[j->depth] == C_OTHER || len > AIHUB_JSON_KEY_LEN) {
        return;
    }

    /* the names known, by length: at most two to compare */

#define aihub_json_key_is(name)                                              \
    (memcmp(k, name, sizeof(name) - 1) == 0)

    id = K_OTHER;

    switch (len) {

    case 1:
    case 2:
    case 3:
        return;

    case 4:
        id = aihub_json_key_is("type") ? K_TYPE
             : aihub_json_key_is("name") ? K_NAME
             : aihub_json_key_is("text") ? K_TEXT : K_OTHER;
        break;

    case 5:
        id = aihub_json_key_is("usage") ? K_USAGE
             : aihub_json_key_is("error") ? K_ERROR
             : aihub_json_key_is("delta") ? K_DELTA : K_OTHER;
        break;

    case 6:
        id = aihub_json_key_is("output") ? K_OUTPUT_LIST : K_OTHER;
        break;

    case 7:
        if (k[0] == 'c') {
            id = aihub_json_key_is("choices") ? K_CHOICES
                 : aihub_json_key_is("content") ? K_CONTENT : K_OTHER;

        } else {
            id = aihub_json_key_is("message") ? K_MESSAGE
                 : aihub_json_key_is("refusal") ? K_REFUSAL : K_OTHER;
        }

        break;

    case 8:
        id = aihub_json_key_is("response") ? K_RESPONSE
             : aihub_json_key_is("function") ? K_FUNCTION : K_OTHER;
        break;

    case 9:
        id = aihub_json_key_is("reasoning") ? K_CONTENT
             : aihub_json_key_is("arguments") ? K_ARGUMENTS : K_OTHER;
        break;

    case 10:
        id = aihub_json_key_is("tool_calls") ? K_TOOL_CALLS : K_OTHER;
        break;

    case 12:
        id = aihub_json_key_is("total_tokens") ? K_TOTAL
             : aihub_json_key_is("input_tokens") ? K_INPUT : K_OTHER;
        break;

    case 13:
        if (k[0] == 'f') {
            id = aihub_json_key_is("function_call") ? K_FUNCTION_CALL
                                                    : K_OTHER;

        } else {
            id = aihub_json_key_is("prompt_tokens") ? K_PROMPT
                 : aihub_json_key_is("output_tokens") ? K_OUTPUT : K_OTHER;
        }

        break;

    case 17:
        id = aihub_json_key_is("completion_tokens") ? K_COMPLETION
             : aihub_json_key_is("reasoning_content") ? K_CONTENT : K_OTHER;
        break;
    }

#undef aihub_json_key_is

    j->key[j->depth] = id;
}


static void
aihub_json_number_end(aihub_json_t *j)
{
    uint64_t  v;
    int64_t   e;
    int       bad, n;

    if (j->num_role == 0) {
        return;
    }

    v = j->mant;
    e = j->exp10 + (j->num_exp_neg ? -j->exp_val : j->exp_val);
    bad = j->num_inexact;

    while (e > 0 && v != 0) {
        if (v > AIHUB_USAGE_MAX) {
            break;
        }

        v *= 10;
        e--;
    }

    while (e < 0 && v != 0) {
        if (v % 10) {
            bad = 1;
        }

        v /= 10;
        e++;
    }

    if (j->num_neg && (v != 0 || bad)) {
        v = 0;
        bad = 1;
    }

    if (v > AIHUB_USAGE_MAX) {
        v = AIHUB_USAGE_MAX;
        bad = 1;
    }

    n = j->num_role - 1;

    j->cur[n] = (int64_t) v;
    j->cur_has |= 1 << n;

    if (bad) {
        j->cur_bad |= 1 << n;

    } else {
        j->cur_bad &= ~(1 << n);
    }
}


static void
aihub_json_msg_add(aihub_json_t *j, unsigned c)
{
    if (j->msg_len < AIHUB_USAGE_MSG_LEN - 1) {
        j->msg[j->msg_len++] = (char) c;
        j->msg[j->msg_len] = '\0';
    }
}


/* drops a UTF-8 sequence cut by the size limit */

static void
aihub_json_msg_trim(aihub_json_t *j)
{
    size_t    n, need;
    unsigned  lead;

    if (j->msg_len < AIHUB_USAGE_MSG_LEN - 1) {
        return;
    }

    n = j->msg_len;

    while (n > 0 && ((unsigned char) j->msg[n - 1] & 0xc0) == 0x80) {
        n--;
    }

    if (n == 0) {
        return;
    }

    lead = (unsigned char) j->msg[n - 1];

    if (lead < 0x80) {
        return;
    }

    need = (lead >= 0xf0) ? 4 : (lead >= 0xe0) ? 3 : 2;

    if (j->msg_len - (n - 1) < need) {
        j->msg_len = n - 1;
        j->msg[j->msg_len] = '\0';
    }
}


/* copies the findings of one document into the call's usage */

void
aihub_json_commit(const aihub_json_t *j, aihub_usage_t *u)
{
    u->delivered_chars = j->chars;

    if (j->invalid) {
        u->invalid = 1;
    }

    /*
     * each figure the document gives replaces the one before (a stream's
     * running usage is billed at its last), one it leaves out is kept: a
     * later usage object with the prompt alone (or "usage": {}) threw the
     * provider's completion away for an estimate
     */

    if (j->usage && !j->invalid) {
        u->found = 1;

        if ((j->val_has | j->val_bad) & 1) {
            u->prompt = j->val[0];
            u->has_prompt = (j->val_has >> 0) & 1;
            u->bad_prompt = (j->val_bad >> 0) & 1;
        }

        if ((j->val_has | j->val_bad) & 2) {
            u->completion = j->val[1];
            u->has_completion = (j->val_has >> 1) & 1;
            u->bad_completion = (j->val_bad >> 1) & 1;
        }

        if ((j->val_has | j->val_bad) & 4) {
            u->total = j->val[2];
            u->has_total = (j->val_has >> 2) & 1;
            u->bad_total = (j->val_bad >> 2) & 1;
        }

        if (j->val_bad) {
            u->clamped = 1;
        }
    }

    if (j->error) {
        u->error = 1;
        u->error_len = j->msg_len;
        memcpy(u->error_msg, j->msg, j->msg_len);
        u->error_msg[j->msg_len] = '\0';
    }
}


void
aihub_usage_json_init(aihub_usage_json_t *uj)
{
    aihub_json_init(&uj->json);
    memset(&uj->usage, 0, sizeof(aihub_usage_t));
}


int
aihub_usage_json_feed(aihub_usage_json_t *uj, const unsigned char *p,
    size_t len)
{
    int                  rc;
    aihub_json_t        *j;
    aihub_usage_fast_t   fast;

    j = &uj->json;

    /*
     * an answer's first piece is often all of it: read in one pass if it
     * is, and plain (aihub_usage_fast.c), else by the byte machine
     */

    if (j->state == J_VALUE && !j->started
        && aihub_usage_fast(p, len, &fast) == AIHUB_USAGE_FAST_DECIDED)
    {
        j->started = 1;
        j->top_object = 1;
        j->complete = 1;
        j->state = J_END;
        j->chars += fast.chars;
        j->choices = fast.choices;

        if (fast.usage) {
            j->usage = 1;
            j->top_usage = 1;
            memcpy(j->val, fast.val, sizeof(j->val));
            j->val_has = fast.val_has;
            j->val_bad = 0;
        }

        rc = AIHUB_JSON_DONE;

    } else {
        rc = aihub_json_feed(j, p, len);
    }

    /* the usage is a function of the one document read so far */

    memset(&uj->usage, 0, sizeof(aihub_usage_t));
    aihub_json_commit(&uj->json, &uj->usage);

    return rc;
}


void
aihub_usage_finalize(aihub_usage_t *u, int64_t prompt_estimate)
{
    int64_t  total;

    if (!u->has_prompt || u->bad_prompt) {
        u->prompt = prompt_estimate > 0 ? prompt_estimate : 0;
        u->estimated = 1;
    }

    if (u->prompt > AIHUB_USAGE_MAX) {
        u->prompt = AIHUB_USAGE_MAX;
        u->clamped = 1;
        u->estimated = 1;
    }

    if (!u->has_completion || u->bad_completion) {
        u->completion = (int64_t) ((u->delivered_chars + 3) / 4);
        u->estimated = 1;
    }

    if (u->completion > AIHUB_USAGE_MAX) {
        u->completion = AIHUB_USAGE_MAX;
        u->clamped = 1;
        u->estimated = 1;
    }

    total = u->prompt + u->completion;

    if (u->has_total && u->bad_total) {
        u->estimated = 1;

    } else if (u->has_total && u->total > total) {
        total = u->total;
    }

    u->total = total;
}
