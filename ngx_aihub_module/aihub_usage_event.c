/*
 * The usage event as JSON (see aihub_usage_event.h).
 */

#include <inttypes.h>
#include <string.h>

#include "aihub_bytes.h"
#include "aihub_protocol.h"
#include "aihub_usage_event.h"


/* "member": of the usage event, its name from aihub_protocol.h */
#define M(name)  "\"" name "\":"

/* the longest decimal of a 64-bit integer, sign included */
#define AIHUB_EVENT_INT_LEN  (sizeof("-9223372036854775808") - 1)


static unsigned char *aihub_event_text(unsigned char *p, const char *s);
static unsigned char *aihub_event_string(unsigned char *p, const char *name,
    const aihub_event_str_t *s);


size_t
aihub_event_escaped_len(const unsigned char *s, size_t n)
{
    size_t  i, len;

    /* most of it needs no escape */
    i = aihub_bytes_plain_len(s, n);
    len = i;

    for ( /* void */ ; i < n; i++) {

        if (s[i] == '\\' || s[i] == '"') {
            len += 2;

        } else if (s[i] > 0x1f) {
            len += 1;

        } else if (s[i] == '\n' || s[i] == '\r' || s[i] == '\t'
                   || s[i] == '\b' || s[i] == '\f')
        {
            len += 2;

        } else {
            len += sizeof("\\u001F") - 1;
        }
    }

    return len;
}


unsigned char *
aihub_event_escape(unsigned char *out, const unsigned char *s, size_t n)
{
    size_t         i;
    unsigned char  ch;

    static const char  hex[] = "0123456789ABCDEF";

    i = aihub_bytes_plain_len(s, n);

    if (i) {
        memcpy(out, s, i);
        out += i;
    }

    for ( /* void */ ; i < n; i++) {
        ch = s[i];

        if (ch > 0x1f) {
            if (ch == '\\' || ch == '"') {
                *out++ = '\\';
            }

            *out++ = ch;
            continue;
        }

        *out++ = '\\';

        switch (ch) {
        case '\n':
            *out++ = 'n';
            break;

        case '\r':
            *out++ = 'r';
            break;

        case '\t':
            *out++ = 't';
            break;

        case '\b':
            *out++ = 'b';
            break;

        case '\f':
            *out++ = 'f';
            break;

        default:
            *out++ = 'u';
            *out++ = '0';
            *out++ = '0';
            *out++ = hex[ch >> 4];
            *out++ = hex[ch & 0xf];
        }
    }

    return out;
}


#define AIHUB_EVENT_FIXED_LEN                                                 \
    sizeof("{" M(AIHUB_EV_V) "," M(AIHUB_EV_ID) "\"\","                       \
           M(AIHUB_EV_TS) "," M(AIHUB_EV_NODE) "\"\","                        \
           M(AIHUB_EV_ACCOUNT) "," M(AIHUB_EV_KEY) "\"\","                    \
           M(AIHUB_EV_PLAN) "\"\"," M(AIHUB_EV_MODEL) "\"\","                 \
           M(AIHUB_EV_PROVIDER) "\"\"," M(AIHUB_EV_PROMPT_TOKENS) ","         \
           M(AIHUB_EV_COMPLETION_TOKENS) ","                                 \
           M(AIHUB_EV_TOTAL_TOKENS) "," M(AIHUB_EV_COST_MICROS) ","          \
           M(AIHUB_EV_STATUS) "," M(AIHUB_EV_STREAMED) "false,"              \
           M(AIHUB_EV_ABORTED) "false," M(AIHUB_EV_ESTIMATED) "false,"       \
           M(AIHUB_EV_LATENCY_MS) "}")                                       \
    + 10 * AIHUB_EVENT_INT_LEN


size_t
aihub_usage_event_bound(const aihub_usage_event_t *ev)
{
    /* a byte of text escapes to six at most ("\u001F") */
    return AIHUB_EVENT_FIXED_LEN
           + 6 * (ev->id.len + ev->node.len + ev->key.len + ev->plan.len
                  + ev->model.len + ev->provider.len);
}


size_t
aihub_usage_event_len(const aihub_usage_event_t *ev)
{
    return AIHUB_EVENT_FIXED_LEN
           + aihub_event_escaped_len(ev->id.data, ev->id.len)
           + aihub_event_escaped_len(ev->node.data, ev->node.len)
           + aihub_event_escaped_len(ev->key.data, ev->key.len)
           + aihub_event_escaped_len(ev->plan.data, ev->plan.len)
           + aihub_event_escaped_len(ev->model.data, ev->model.len)
           + aihub_event_escaped_len(ev->provider.data, ev->provider.len);
}


size_t
aihub_usage_event_render(unsigned char *out, const aihub_usage_event_t *ev)
{
    unsigned char  *p;

    p = out;

    p = aihub_event_text(p, "{" M(AIHUB_EV_V));
    p = aihub_event_int(p, AIHUB_EVENT_VERSION);
    p = aihub_event_string(p, "," M(AIHUB_EV_ID), &ev->id);

    p = aihub_event_text(p, "," M(AIHUB_EV_TS));
    p = aihub_event_uint(p, ev->ts_ms);
    p = aihub_event_string(p, "," M(AIHUB_EV_NODE), &ev->node);

    p = aihub_event_text(p, "," M(AIHUB_EV_ACCOUNT));
    p = aihub_event_uint(p, ev->account);
    p = aihub_event_string(p, "," M(AIHUB_EV_KEY), &ev->key);
    p = aihub_event_string(p, "," M(AIHUB_EV_PLAN), &ev->plan);
    p = aihub_event_string(p, "," M(AIHUB_EV_MODEL), &ev->model);
    p = aihub_event_string(p, "," M(AIHUB_EV_PROVIDER), &ev->provider);

    p = aihub_event_text(p, "," M(AIHUB_EV_PROMPT_TOKENS));
    p = aihub_event_int(p, ev->prompt_tokens);
    p = aihub_event_text(p, "," M(AIHUB_EV_COMPLETION_TOKENS));
    p = aihub_event_int(p, ev->completion_tokens);
    p = aihub_event_text(p, "," M(AIHUB_EV_TOTAL_TOKENS));
    p = aihub_event_int(p, ev->total_tokens);
    p = aihub_event_text(p, "," M(AIHUB_EV_COST_MICROS));
    p = aihub_event_int(p, ev->cost_micros);
    p = aihub_event_text(p, "," M(AIHUB_EV_STATUS));
    p = aihub_event_uint(p, ev->status);

    p = aihub_event_text(p, "," M(AIHUB_EV_STREAMED));
    p = aihub_event_text(p, ev->streamed ? "true" : "false");
    p = aihub_event_text(p, "," M(AIHUB_EV_ABORTED));
    p = aihub_event_text(p, ev->aborted ? "true" : "false");
    p = aihub_event_text(p, "," M(AIHUB_EV_ESTIMATED));
    p = aihub_event_text(p, ev->estimated ? "true" : "false");

    p = aihub_event_text(p, "," M(AIHUB_EV_LATENCY_MS));
    p = aihub_event_uint(p, ev->latency_ms);

    *p++ = '}';

    return (size_t) (p - out);
}


/* decimal digits, without printf, two at a time: this runs a dozen
   times a call */

unsigned char *
aihub_event_uint(unsigned char *p, uint64_t v)
{
    size_t          n;
    unsigned        d;
    unsigned char   tmp[AIHUB_EVENT_INT_LEN], *t;

    static const char  pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";

    if (v < 10) {
        *p = (unsigned char) ('0' + v);
        return p + 1;
    }

    t = tmp + sizeof(tmp);

    while (v >= 100) {
        d = (unsigned) (v % 100) * 2;
        v /= 100;
        *--t = (unsigned char) pairs[d + 1];
        *--t = (unsigned char) pairs[d];
    }

    if (v >= 10) {
        d = (unsigned) v * 2;
        *--t = (unsigned char) pairs[d + 1];
        *--t = (unsigned char) pairs[d];

    } else {
        *--t = (unsigned char) ('0' + v);
    }

    n = (size_t) (tmp + sizeof(tmp) - t);
    memcpy(p, t, n);

    return p + n;
}


unsigned char *
aihub_event_int(unsigned char *p, int64_t v)
{
    if (v >= 0) {
        return aihub_event_uint(p, (uint64_t) v);
    }

    *p++ = '-';

    /* the magnitude of INT64_MIN too */
    return aihub_event_uint(p, (uint64_t) 0 - (uint64_t) v);
}


static unsigned char *
aihub_event_text(unsigned char *p, const char *s)
{
    size_t  n;

    n = strlen(s);
    memcpy(p, s, n);

    return p + n;
}


/* name (with what comes before it) and "escaped s" */

static unsigned char *
aihub_event_string(unsigned char *p, const char *name,
    const aihub_event_str_t *s)
{
    p = aihub_event_text(p, name);
    *p++ = '"';
    p = aihub_event_escape(p, s->data, s->len);
    *p++ = '"';

    return p;
}
