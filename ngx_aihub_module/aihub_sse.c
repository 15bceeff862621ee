/*
 * The streaming usage scanner and usage-chunk stripper (aihub_sse.h).
 *
 * A line state machine over the bytes of the stream.  The payload of data
 * lines goes to the JSON scanner in runs; every byte is then either written
 * out (pass), appended to the hold buffer (hold) or dropped (a stripped
 * event).  Events start held only when stripping.
 */

#include <string.h>

#include "aihub_sse.h"


/* line states */
enum {
    L_START = 0,
    L_FIELD,
    L_COLON,
    L_DATA,
    L_SKIP
};

/* output modes */
enum {
    M_IDLE = 0,          /* between events */
    M_PASS,
    M_HOLD
};

#define AIHUB_SSE_DONE_FAIL  0xff
#define AIHUB_SSE_BOM_PAST   0xff


static void aihub_sse_data_start(aihub_sse_t *s);
static void aihub_sse_data(aihub_sse_t *s, const unsigned char *p,
    size_t n);
static size_t aihub_sse_emit(aihub_sse_t *s, const unsigned char *p,
    size_t n, unsigned char *out, size_t o);
static size_t aihub_sse_release(aihub_sse_t *s, unsigned char *out,
    size_t o);
static int aihub_sse_undecided(aihub_sse_t *s);
static int aihub_sse_strippable(aihub_sse_t *s);
static size_t aihub_sse_event_end(aihub_sse_t *s, const unsigned char *p,
    unsigned char *out, size_t o);


static const char  aihub_sse_done[] = "[DONE]";
static const char  aihub_sse_bom[] = "\xef\xbb\xbf";


void
aihub_sse_init(aihub_sse_t *s, unsigned char *hold, size_t hold_size)
{
    memset(s, 0, sizeof(aihub_sse_t));

    aihub_json_init(&s->json);

    s->hold = hold;
    s->hold_size = hold ? hold_size : 0;
}


size_t
aihub_sse_feed(aihub_sse_t *s, const unsigned char *in, size_t len,
    unsigned char *out)
{
    size_t    i, n, o;
    unsigned  c;

    o = 0;
    i = 0;

    while (i < len) {
        c = in[i];

        if (s->bom != AIHUB_SSE_BOM_PAST) {
            /* the stream's first bytes: a byte order mark passes, unread */

            if (c == (unsigned char) aihub_sse_bom[s->bom]) {
                s->bom = (s->bom == 2) ? AIHUB_SSE_BOM_PAST : s->bom + 1;
                o = aihub_sse_emit(s, &in[i++], 1, out, o);
                continue;
            }

            if (s->bom > 0 && s->line == L_START && c != '\n' && c != '\r') {
                /* a part of one begins the first field's name: not "data" */
                s->event = 1;
                s->event_len = 0;
                s->mode = s->hold ? M_HOLD : M_PASS;
                s->line = L_SKIP;
            }

            s->bom = AIHUB_SSE_BOM_PAST;
        }

        if (s->line == L_COLON) {
            s->line = L_DATA;

            if (c == ' ') {
                o = aihub_sse_emit(s, &in[i++], 1, out, o);
                continue;
            }
        }

        if (s->line == L_DATA && c != '\n' && c != '\r') {

            for (n = i + 1; n < len && in[n] != '\n' && in[n] != '\r'; n++) {
                /* void */
            }

            aihub_sse_data(s, &in[i], n - i);
            o = aihub_sse_emit(s, &in[i], n - i, out, o);

            if (s->mode == M_HOLD && !aihub_sse_undecided(s)) {
                o = aihub_sse_release(s, out, o);
            }

            i = n;
            continue;
        }

        if (s->cr) {
            s->cr = 0;

            if (c == '\n') {
                /* the LF of a CRLF: it follows its line's fate */

                if (s->skip_lf) {
                    s->skip_lf = 0;

                } else {
                    o = aihub_sse_emit(s, &in[i], 1, out, o);
                }

                i++;
                continue;
            }
        }

        s->skip_lf = 0;

        if (c == '\n' || c == '\r') {
            s->cr = (c == '\r');

            if (s->line == L_START) {

                if (s->event) {
                    o = aihub_sse_event_end(s, &in[i++], out, o);
                    continue;
                }

                /* a blank line outside any event */

                o = aihub_sse_emit(s, &in[i++], 1, out, o);
                continue;
            }

            if (s->line == L_DATA && s->done_pos == sizeof("[DONE]") - 1) {
                s->usage.done = 1;
            }

            s->line = L_START;
            o = aihub_sse_emit(s, &in[i++], 1, out, o);
            continue;
        }

        switch (s->line) {

        case L_START:
            if (!s->event) {
                s->event = 1;
                s->event_len = 0;
                s->mode = s->hold ? M_HOLD : M_PASS;
            }

            if (c == 'd') {
                s->line = L_FIELD;
                s->field_pos = 1;

            } else {
                s->line = L_SKIP;      /* comments, other fields */
            }

            break;

        case L_FIELD:
            if (s->field_pos < 4 && c == (unsigned char) "data"[s->field_pos])
            {
                s->field_pos++;

            } else if (s->field_pos == 4 && c == ':') {
                s->line = L_COLON;
                aihub_sse_data_start(s);

            } else {
                s->line = L_SKIP;
            }

            break;

        default: /* L_SKIP */
            break;
        }

        o = aihub_sse_emit(s, &in[i++], 1, out, o);
    }

    s->usage.delivered_chars = s->json.chars;

    return o;
}


size_t
aihub_sse_finish(aihub_sse_t *s, unsigned char *out)
{
    size_t    o;
    unsigned  invalid;

    o = 0;

    if ((s->line == L_DATA || s->line == L_COLON)
        && s->done_pos == sizeof("[DONE]") - 1)
    {
        s->usage.done = 1;
    }

    if (s->event) {
        if (s->mode == M_HOLD && aihub_sse_strippable(s)) {
            s->held = 0;
            s->stripped++;

        } else if (out == NULL) {
            s->held = 0;

        } else {
            o = aihub_sse_release(s, out, o);
        }

        if (s->data) {
            invalid = s->usage.invalid;
            aihub_json_commit(&s->json, &s->usage);

            if (!s->json.top_object) {
                s->usage.invalid = invalid;
            }
        }

        aihub_json_reset(&s->json);
    }

    s->event = 0;
    s->data = 0;
    s->cr = 0;
    s->skip_lf = 0;
    s->line = L_START;
    s->mode = M_IDLE;
    s->usage.delivered_chars = s->json.chars;

    return o;
}


static void
aihub_sse_data_start(aihub_sse_t *s)
{
    static const unsigned char  lf = '\n';

    if (s->data) {
        /* the data lines of one event are joined by LF */
        (void) aihub_json_feed(&s->json, &lf, 1);
    }

    s->data = 1;
    s->done_pos = 0;
}


static void
aihub_sse_data(aihub_sse_t *s, const unsigned char *p, size_t n)
{
    size_t  i;

    (void) aihub_json_feed(&s->json, p, n);

    for (i = 0; i < n && s->done_pos != AIHUB_SSE_DONE_FAIL; i++) {

        if (s->done_pos < sizeof("[DONE]") - 1) {
            if (p[i] == (unsigned char) aihub_sse_done[s->done_pos]) {
                s->done_pos++;
                continue;
            }

        } else if (p[i] == ' ' || p[i] == '\t') {
            continue;
        }

        s->done_pos = AIHUB_SSE_DONE_FAIL;
    }
}


static size_t
aihub_sse_emit(aihub_sse_t *s, const unsigned char *p, size_t n,
    unsigned char *out, size_t o)
{
    /*
     * An event longer than the hold buffer is overlong however the stream
     * was cut, so it is counted here, not only when the hold overflows
     * (a run of data bytes may be decided before it is held)
     */

    if (s->hold && s->event) {
        s->event_len += n;

        if (s->event_len > s->hold_size) {
            s->usage.overlong = 1;
        }
    }

    if (s->mode == M_HOLD) {

        if (s->hold_size - s->held >= n) {
            memcpy(s->hold + s->held, p, n);
            s->held += n;
            return o;
        }

        /* too long to be a usage chunk we can strip */

        o = aihub_sse_release(s, out, o);
    }

    if (out) {
        memcpy(out + o, p, n);
    }

    return o + n;
}


static size_t
aihub_sse_release(aihub_sse_t *s, unsigned char *out, size_t o)
{
    if (s->held) {
        memcpy(out + o, s->hold, s->held);
        o += s->held;
        s->held = 0;
    }

    s->mode = M_PASS;

    return o;
}


/* 1 while the held event could still turn out to be a usage chunk */

static int
aihub_sse_undecided(aihub_sse_t *s)
{
    aihub_json_t  *j;

    j = &s->json;

    return !(j->invalid || j->trailing || j->choices || j->error
             || (j->started && !j->top_object));
}


static int
aihub_sse_strippable(aihub_sse_t *s)
{
    aihub_json_t  *j;

    j = &s->json;

    return s->data && j->complete && j->top_object && j->top_usage
           && !j->choices && !j->error && !j->trailing && !j->invalid;
}


/* the blank line at p ends the current event */

static size_t
aihub_sse_event_end(aihub_sse_t *s, const unsigned char *p,
    unsigned char *out, size_t o)
{
    unsigned  invalid;

    s->event = 0;                 /* its blank line is not counted */

    if (s->mode == M_HOLD && aihub_sse_strippable(s)) {
        s->held = 0;
        s->stripped++;
        s->skip_lf = (*p == '\r');

    } else {
        if (s->mode == M_HOLD) {
            o = aihub_sse_release(s, out, o);
        }

        s->mode = M_PASS;
        o = aihub_sse_emit(s, p, 1, out, o);
    }

    if (s->data) {
        invalid = s->usage.invalid;
        aihub_json_commit(&s->json, &s->usage);

        if (!s->json.top_object) {
            /* "[DONE]" and other payloads that are not JSON objects */
            s->usage.invalid = invalid;
        }
    }

    aihub_json_reset(&s->json);

    s->data = 0;
    s->mode = M_IDLE;

    return o;
}
