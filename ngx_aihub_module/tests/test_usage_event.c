/*
 * The usage event as JSON: the exact bytes for a plain event (the format
 * the worker reads), the escaping rule byte by byte, and the length bound.
 */

#include <stdint.h>
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

    /* numbers without printf: as printf writes them */
    {
        int             bad, k, j;
        char            want[32];
        int64_t         sv;
        uint64_t        v, p10;
        unsigned char   got[32], *e;

        bad = 0;
        v = 88172645463325252ULL;

        for (k = 0; k < 200000 && bad < 3; k++) {
            /* every power of ten and its neighbours, then xorshift */
            if (k < 20 * 3) {
                for (p10 = 1, j = 0; j < k / 3; j++) {
                    p10 *= 10;
                }
                v = p10 + (uint64_t) (k % 3) - 1;

            } else {
                v ^= v << 13;
                v ^= v >> 7;
                v ^= v << 17;
            }

            e = aihub_event_uint(got, (k & 1) ? v : v >> (k % 64));
            snprintf(want, sizeof(want), "%llu",
                     (unsigned long long) ((k & 1) ? v : v >> (k % 64)));

            if ((size_t) (e - got) != strlen(want)
                || memcmp(got, want, strlen(want)) != 0)
            {
                diag("uint %s: got %.*s", want, (int) (e - got), got);
                bad++;
            }

            sv = (int64_t) v;
            e = aihub_event_int(got, sv);
            snprintf(want, sizeof(want), "%lld", (long long) sv);

            if ((size_t) (e - got) != strlen(want)
                || memcmp(got, want, strlen(want)) != 0)
            {
                diag("int %s: got %.*s", want, (int) (e - got), got);
                bad++;
            }
        }

        e = aihub_event_uint(got, UINT64_MAX);
        *e = '\0';
        IS_STR((char *) got, "18446744073709551615", "UINT64_MAX");
        e = aihub_event_int(got, INT64_MIN);
        *e = '\0';
        IS_STR((char *) got, "-9223372036854775808", "INT64_MIN");
        ok(bad == 0, "400,000 numbers written as printf writes them");
    }

    return tap_done();
}
