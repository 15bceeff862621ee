/*
 * The usage-event builder (aihub_usage_event.c), round-tripped through
 * cJSON.
 *
 * The input gives the event: 8 numbers of 8 bytes (ts, account, the four
 * token and cost counts, status, latency), a byte of flags, then six
 * strings (id, node, key, plan, model, provider), each a length byte and
 * that many bytes: quotes, control bytes, NUL and invalid UTF-8 included.
 * Properties:
 *   - the output fits the length the builder announced;
 *   - cJSON reads it as one object with each member of the format once,
 *     in the format's order, and nothing after it;
 *   - no byte below 0x20 is left unescaped;
 *   - every string comes back equal: exactly, by a separate decoder of the
 *     documented escaping rule, and as cJSON reads it (up to the first
 *     NUL, where a C string ends);
 *   - every number comes back exactly (its text read with strtoll/
 *     strtoull) and as the double cJSON makes of it;
 *   - the three booleans come back.
 */

#include <inttypes.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aihub_protocol.h"
#include "aihub_usage_event.h"
#include "fuzz.h"


static const char  *names[] = {
    AIHUB_EV_V, AIHUB_EV_ID, AIHUB_EV_TS, AIHUB_EV_NODE, AIHUB_EV_ACCOUNT,
    AIHUB_EV_KEY, AIHUB_EV_PLAN, AIHUB_EV_MODEL, AIHUB_EV_PROVIDER,
    AIHUB_EV_PROMPT_TOKENS, AIHUB_EV_COMPLETION_TOKENS,
    AIHUB_EV_TOTAL_TOKENS, AIHUB_EV_COST_MICROS, AIHUB_EV_STATUS,
    AIHUB_EV_STREAMED, AIHUB_EV_ABORTED, AIHUB_EV_ESTIMATED,
    AIHUB_EV_LATENCY_MS, NULL
};


static uint64_t
take64(const uint8_t **p, const uint8_t *end)
{
    uint64_t  v;
    int       i;

    v = 0;

    for (i = 0; i < 8 && *p < end; i++) {
        v |= (uint64_t) *(*p)++ << (8 * i);
    }

    return v;
}


static aihub_event_str_t
take_str(const uint8_t **p, const uint8_t *end)
{
    size_t             n;
    aihub_event_str_t  s;

    n = (*p < end) ? *(*p)++ : 0;

    if (n > (size_t) (end - *p)) {
        n = end - *p;
    }

    s.data = *p;
    s.len = n;
    *p += n;

    return s;
}


/* where the value of "name": starts in the text */

static const char *
value_of(const char *text, const char *name)
{
    char         pat[64];
    const char  *at;

    snprintf(pat, sizeof(pat), "\"%s\":", name);
    at = strstr(text, pat);
    FUZZ_CHECK(at != NULL);

    return at + strlen(pat);
}


static int
hex(int c)
{
    return (c >= '0' && c <= '9') ? c - '0'
           : (c >= 'A' && c <= 'F') ? c - 'A' + 10
           : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}


/* the documented rule read backwards, independently of the builder */

static void
check_string(const char *text, cJSON *root, const char *name,
    const aihub_event_str_t *s)
{
    size_t        i, nul;
    const char   *p;
    cJSON        *it;
    unsigned int  c;

    p = value_of(text, name);
    FUZZ_CHECK(*p++ == '"');

    for (i = 0; *p != '"'; i++) {
        FUZZ_CHECK(*p != '\0');

        c = (unsigned char) *p++;

        if (c == '\\') {
            switch (*p++) {
            case '"':  c = '"'; break;
            case '\\': c = '\\'; break;
            case 'n':  c = '\n'; break;
            case 'r':  c = '\r'; break;
            case 't':  c = '\t'; break;
            case 'b':  c = '\b'; break;
            case 'f':  c = '\f'; break;
            case 'u':
                FUZZ_CHECK(p[0] == '0' && p[1] == '0');
                FUZZ_CHECK(hex(p[2]) >= 0 && hex(p[3]) >= 0);
                c = (unsigned int) (hex(p[2]) * 16 + hex(p[3]));
                FUZZ_CHECK(c < 0x20);
                p += 4;
                break;
            default:
                FUZZ_CHECK(0);
            }
        }

        FUZZ_CHECK(i < s->len && s->data[i] == c);
    }

    FUZZ_CHECK(i == s->len);

    it = cJSON_GetObjectItemCaseSensitive(root, name);
    FUZZ_CHECK(cJSON_IsString(it));

    for (nul = 0; nul < s->len && s->data[nul] != '\0'; nul++) { /* void */ }

    FUZZ_CHECK(strlen(it->valuestring) == nul);
    FUZZ_CHECK(memcmp(it->valuestring, s->data, nul) == 0);
}


static void
check_signed(const char *text, cJSON *root, const char *name, int64_t v)
{
    cJSON  *it;

    FUZZ_CHECK(strtoll(value_of(text, name), NULL, 10) == v);

    it = cJSON_GetObjectItemCaseSensitive(root, name);
    FUZZ_CHECK(cJSON_IsNumber(it) && it->valuedouble == (double) v);
}


static void
check_unsigned(const char *text, cJSON *root, const char *name, uint64_t v)
{
    cJSON  *it;

    FUZZ_CHECK(*value_of(text, name) != '-');
    FUZZ_CHECK(strtoull(value_of(text, name), NULL, 10) == v);

    it = cJSON_GetObjectItemCaseSensitive(root, name);
    FUZZ_CHECK(cJSON_IsNumber(it) && it->valuedouble == (double) v);
}


static void
check_bool(cJSON *root, const char *name, int v)
{
    cJSON  *it;

    it = cJSON_GetObjectItemCaseSensitive(root, name);
    FUZZ_CHECK(cJSON_IsBool(it) && cJSON_IsTrue(it) == (v != 0));
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                *text;
    size_t               len, bound, i;
    uint8_t              flags;
    const char          *end;
    const uint8_t       *p, *last;
    cJSON               *root, *it;
    aihub_usage_event_t  ev;

    p = data;
    last = data + size;

    memset(&ev, 0, sizeof(ev));
    ev.ts_ms = take64(&p, last);
    ev.account = take64(&p, last);
    ev.prompt_tokens = (int64_t) take64(&p, last);
    ev.completion_tokens = (int64_t) take64(&p, last);
    ev.total_tokens = (int64_t) take64(&p, last);
    ev.cost_micros = (int64_t) take64(&p, last);
    ev.status = take64(&p, last);
    ev.latency_ms = take64(&p, last);
    flags = (p < last) ? *p++ : 0;
    ev.streamed = flags & 1;
    ev.aborted = (flags >> 1) & 1;
    ev.estimated = (flags >> 2) & 1;
    ev.id = take_str(&p, last);
    ev.node = take_str(&p, last);
    ev.key = take_str(&p, last);
    ev.plan = take_str(&p, last);
    ev.model = take_str(&p, last);
    ev.provider = take_str(&p, last);

    bound = aihub_usage_event_len(&ev);

    /* exactly the announced bytes, and one for a NUL after the text */
    text = malloc(bound + 1);
    FUZZ_CHECK(text != NULL);

    len = aihub_usage_event_render((unsigned char *) text, &ev);
    FUZZ_CHECK(len <= bound);
    FUZZ_CHECK(bound <= aihub_usage_event_bound(&ev));
    text[len] = '\0';

    for (i = 0; i < len; i++) {
        FUZZ_CHECK((unsigned char) text[i] >= 0x20);
    }

    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    FUZZ_CHECK(root != NULL && cJSON_IsObject(root));
    FUZZ_CHECK(end == text + len);

    i = 0;

    for (it = root->child; it != NULL; it = it->next, i++) {
        FUZZ_CHECK(names[i] != NULL && strcmp(it->string, names[i]) == 0);
    }

    FUZZ_CHECK(names[i] == NULL);

    check_unsigned(text, root, AIHUB_EV_V, AIHUB_EVENT_VERSION);
    check_string(text, root, AIHUB_EV_ID, &ev.id);
    check_unsigned(text, root, AIHUB_EV_TS, ev.ts_ms);
    check_string(text, root, AIHUB_EV_NODE, &ev.node);
    check_unsigned(text, root, AIHUB_EV_ACCOUNT, ev.account);
    check_string(text, root, AIHUB_EV_KEY, &ev.key);
    check_string(text, root, AIHUB_EV_PLAN, &ev.plan);
    check_string(text, root, AIHUB_EV_MODEL, &ev.model);
    check_string(text, root, AIHUB_EV_PROVIDER, &ev.provider);
    check_signed(text, root, AIHUB_EV_PROMPT_TOKENS, ev.prompt_tokens);
    check_signed(text, root, AIHUB_EV_COMPLETION_TOKENS,
                 ev.completion_tokens);
    check_signed(text, root, AIHUB_EV_TOTAL_TOKENS, ev.total_tokens);
    check_signed(text, root, AIHUB_EV_COST_MICROS, ev.cost_micros);
    check_unsigned(text, root, AIHUB_EV_STATUS, ev.status);
    check_bool(root, AIHUB_EV_STREAMED, ev.streamed);
    check_bool(root, AIHUB_EV_ABORTED, ev.aborted);
    check_bool(root, AIHUB_EV_ESTIMATED, ev.estimated);
    check_unsigned(text, root, AIHUB_EV_LATENCY_MS, ev.latency_ms);

    cJSON_Delete(root);
    free(text);

    return 0;
}
