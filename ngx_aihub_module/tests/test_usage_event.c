/*
 * The usage event as JSON: the exact bytes for a plain event (the format
 * the worker reads), the escaping rule byte by byte, and the length bound.
 */

#include <stdio.h>
#include <string.h>

#include "aihub_usage_event.h"
#include "tap.h"


#define S(lit)  { (const unsigned char *) lit, sizeof(lit) - 1 }


static const char *
escaped(const char *s, size_t n)
{
    static unsigned char  out[256];
    unsigned char        *end;

    end = aihub_event_escape(out, (const unsigned char *) s, n);
    *end = '\0';

    ok((size_t) (end - out) == aihub_event_escaped_len(
                                   (const unsigned char *) s, n),
       "escaped length of %zu bytes is counted exactly", n);

    return (const char *) out;
}


#define IS_STR(got, want, what)                                              \
    ok(strcmp(got, want) == 0, "%s: got %s, want %s", what, got, want)


int
main(void)
{
    size_t               len, bound;
    unsigned char        out[1024];
    aihub_usage_event_t  ev = {
        S("0123456789abcdef0123456789abcdef"), 1764500000123ULL,
        S("node-1"), 42, S("ai-hub-AbCd1234"), S("pro"),
        S("mock-gpt"), S("mock"), 12, 34, 46, 5678, 200, 87, 1, 0, 0
    };

    static const char  want[] =
        "{\"v\":1,\"id\":\"0123456789abcdef0123456789abcdef\","
        "\"ts\":1764500000123,\"node\":\"node-1\",\"account\":42,"
        "\"key\":\"ai-hub-AbCd1234\",\"plan\":\"pro\","
        "\"model\":\"mock-gpt\",\"provider\":\"mock\","
        "\"prompt_tokens\":12,\"completion_tokens\":34,"
        "\"total_tokens\":46,\"cost_micros\":5678,\"status\":200,"
        "\"streamed\":true,\"aborted\":false,\"estimated\":false,"
        "\"latency_ms\":87}";

    bound = aihub_usage_event_len(&ev);
    len = aihub_usage_event_render(out, &ev);
    out[len] = '\0';

    IS_STR((char *) out, want, "a plain event");
    ok(len <= bound, "rendered %zu bytes within the bound %zu", len, bound);

    /* the escaping rule of ngx_escape_json(), byte by byte */

    IS_STR(escaped("a\"b\\c", 5), "a\\\"b\\\\c", "quote and backslash");
    IS_STR(escaped("\n\r\t\b\f", 5), "\\n\\r\\t\\b\\f", "short escapes");
    IS_STR(escaped("\x01\x1f", 2), "\\u0001\\u001F", "other controls");
    IS_STR(escaped("x\0y", 3), "x\\u0000y", "a NUL byte");
    IS_STR(escaped("\x7f\xff\xc3(", 4), "\x7f\xff\xc3(",
           "DEL and invalid UTF-8 copied as they are");
    IS_STR(escaped("", 0), "", "the empty string");

    /* extremes: every string escaped six times over, numbers at the edges */

    memset(&ev, 0, sizeof(ev));
    ev.node.data = (const unsigned char *) "\x01\x01\x01\x01\x01\x01";
    ev.node.len = 6;
    ev.model = ev.node;
    ev.prompt_tokens = INT64_MIN;
    ev.completion_tokens = INT64_MAX;
    ev.total_tokens = -1;
    ev.cost_micros = INT64_MIN;
    ev.ts_ms = UINT64_MAX;
    ev.account = UINT64_MAX;
    ev.status = UINT64_MAX;
    ev.latency_ms = UINT64_MAX;
    ev.aborted = 1;
    ev.estimated = 1;

    bound = aihub_usage_event_len(&ev);
    len = aihub_usage_event_render(out, &ev);
    out[len] = '\0';

    ok(len <= bound, "extremes: %zu bytes within the bound %zu", len, bound);
    ok(strstr((char *) out, "\"prompt_tokens\":-9223372036854775808,")
       != NULL, "the smallest int64 is written whole");
    ok(strstr((char *) out, "\"account\":18446744073709551615,") != NULL,
       "the largest account id is written whole");
    ok(strstr((char *) out, "\"model\":\"\\u0001\\u0001") != NULL,
       "control bytes of a model are escaped");

    return tap_done();
}
