/* usage event validation (aihub_protocol.h) */

#include <stdio.h>

#include "aihub_worker.h"
#include "event_read.h"
#include "tap.h"


#define GOOD                                                                 \
    "{\"v\":1,\"id\":\"0123456789abcdef0123456789abcdef\","                  \
    "\"ts\":1793491200123,\"node\":\"n1\",\"account\":7,"                    \
    "\"key\":\"ai-hub-AbCdEfGh\",\"plan\":\"pro\",\"model\":\"mock-basic\"," \
    "\"provider\":\"mock\",\"prompt_tokens\":10,\"completion_tokens\":5,"    \
    "\"total_tokens\":15,\"cost_micros\":4,\"status\":200,"                  \
    "\"streamed\":false,\"aborted\":true,\"estimated\":false,"               \
    "\"latency_ms\":12}"


static int
bad(const char *json, const char *name)
{
    aw_event_t   ev;
    const char  *reason;
    int          rc;

    reason = NULL;
    rc = aw_event_parse(json, strlen(json), &ev, &reason);
    tap_ok(rc == -1 && reason != NULL, "refused: %s (%s)", name,
           reason ? reason : "no reason");

    return rc;
}


static void
replace(char *out, size_t size, const char *from, const char *to)
{
    const char  *p;
    char         src[] = GOOD;

    p = strstr(src, from);
    snprintf(out, size, "%.*s%s%s", (int) (p - src), src, to,
             p + strlen(from));
}


/*
 * The event as the module writes it is read without cJSON, anything else
 * through it: both readers must give the same verdict, reason and event.
 * The events: GOOD and mutations of it (bytes replaced, inserted or
 * removed, JSON tokens spliced in: escapes, white space, fractions,
 * literals, repeated members), every one read both ways.
 */

static unsigned long  lcg = 1;

static unsigned
next_rand(void)
{
    lcg = lcg * 6364136223846793005UL + 1442695040888963407UL;
    return (unsigned) (lcg >> 33);
}


static void
readers_agree(void)
{
    int          i, m, muts, r1, r2, plain;
    char         j[1024], why[128];
    size_t       len, at, n;
    aw_event_t   e1, e2;
    const char  *reason, *tok;
    long         differ, plain_read;

    static const char  *toks[] = {
        "\"", "\\", ",", ":", "{", "}", " ", "\n", "0", "1", "-", ".",
        "e5", "null", "true", "false", "[]", "\\u0041", "\x01",
        "\"account\":8,", "\"v\":1,", "\"status\":\"200\",",
        "\"streamed\":true,", "\"model\":\"m\\u00e9\",", "0000000000000000",
        "\"a\":{\"b\":[1,2]},", "1.0", "-0", "9007199254740993"
    };

    differ = 0;
    plain_read = 0;

    for (i = 0; i < 300000; i++) {
        len = sizeof(GOOD) - 1;
        memcpy(j, GOOD, len);
        muts = next_rand() % 4;

        for (m = 0; m < muts && len > 0; m++) {
            at = next_rand() % len;

            switch (next_rand() % 3) {
            case 0:
                tok = toks[next_rand() % (sizeof(toks) / sizeof(toks[0]))];
                j[at] = tok[0];
                break;
            case 1:
                tok = toks[next_rand() % (sizeof(toks) / sizeof(toks[0]))];
                n = strlen(tok);
                if (len + n < sizeof(j)) {
                    memmove(j + at + n, j + at, len - at);
                    memcpy(j + at, tok, n);
                    len += n;
                }
                break;
            default:
                memmove(j + at, j + at + 1, len - at - 1);
                len--;
            }
        }

        plain = 0;
        reason = NULL;
        r1 = aw_event_parse_with(j, len, 1, &e1, &reason);
        snprintf(why, sizeof(why), "%s", r1 ? reason : "");
        reason = NULL;
        r2 = aw_event_parse_with(j, len, 0, &e2, &reason);

        {
            aw_value_t  vals[AW_M_N];
            plain = aw_event_read_plain(j, len, vals) == 0;
        }

        plain_read += plain;

        if (r1 != r2 || (r1 && strcmp(why, reason) != 0)
            || memcmp(&e1, &e2, sizeof(e1)) != 0)
        {
            if (differ++ == 0) {
                for (at = 0; at < len; at++) {
                    j[at] = ((unsigned char) j[at] < 0x20) ? '?' : j[at];
                }

                printf("# readers differ on: %.*s (%d %s / %d %s)\n",
                       (int) len, j, r1, why, r2, r2 ? reason : "");
            }
        }
    }

    tap_ok(differ == 0, "the plain reader and cJSON agree on 300,000 "
           "events, GOOD mutated (%ld differ; %ld read plainly)", differ,
           plain_read);
    tap_ok(plain_read > 30000 && plain_read < 270000,
           "both readers had their share (%ld plainly)", plain_read);
}


/*
 * aw_ts_format and aw_day_format (their own calendar arithmetic) against
 * gmtime_r + strftime, over every day from 1970 to 2200 at a time of day
 * that walks through the hours, and the last millisecond of each day
 */

static void
time_format_matches_libc(void)
{
    char        got[32], want[32], day[16];
    time_t      t;
    struct tm   tm;
    long long   days, ts, bad;

    bad = 0;

    for (days = 0; days < 84000; days++) {
        ts = days * 86400000LL + (days * 7919 % 86400000LL);

        if (days % 3 == 0) {
            ts = days * 86400000LL + 86399999LL;
        }

        t = (time_t) (ts / 1000);
        gmtime_r(&t, &tm);
        strftime(day, sizeof(day), "%Y-%m-%d", &tm);
        strftime(want, sizeof(want), "%Y-%m-%d %H:%M:%S", &tm);
        snprintf(want + strlen(want), sizeof(want) - strlen(want), ".%03d",
                 (int) (ts % 1000));

        aw_ts_format(ts, got, sizeof(got));

        if (strcmp(got, want) != 0) {
            if (bad++ == 0) {
                printf("# %lld: %s, libc %s\n", ts, got, want);
            }
        }

        aw_day_format(ts, got, sizeof(got));

        if (strcmp(got, day) != 0) {
            if (bad++ == 0) {
                printf("# %lld: day %s, libc %s\n", ts, got, day);
            }
        }
    }

    tap_is_ll(bad, 0, "times of 84,000 days (1970-2199) as libc formats "
              "them");

    aw_ts_format(951782400000LL, got, sizeof(got));
    tap_is_str(got, "2000-02-29 00:00:00.000", "a leap day");
    aw_day_format(4107542400000LL, got, sizeof(got));
    tap_is_str(got, "2100-03-01", "2100 is not a leap year");
    aw_ts_format(1793491200123LL, got, 11);
    tap_is_str(got, "2026-11-01", "cut to the buffer's size");
}


int
main(void)
{
    aw_event_t   ev;
    const char  *reason;
    char         j[1024], ts[32];

    tap_ok(aw_event_parse(GOOD, strlen(GOOD), &ev, &reason) == 0,
           "a good event parses");
    tap_is_str(ev.id, "0123456789abcdef0123456789abcdef", "id");
    tap_is_ll(ev.ts_ms, 1793491200123LL, "ts");
    tap_is_ll(ev.account, 7, "account");
    tap_is_str(ev.model, "mock-basic", "model");
    tap_is_ll(ev.total_tokens, 15, "total_tokens");
    tap_is_ll(ev.aborted, 1, "aborted");
    tap_is_ll(ev.status, 200, "status");

    aw_ts_format(ev.ts_ms, ts, sizeof(ts));
    tap_is_str(ts, "2026-11-01 00:00:00.123", "DATETIME(3) in UTC");
    aw_day_format(ev.ts_ms, ts, sizeof(ts));
    tap_is_str(ts, "2026-11-01", "day in UTC");

    time_format_matches_libc();

    bad("not json", "not JSON");
    bad("[1,2]", "an array");
    bad("{}", "empty object");

    replace(j, sizeof(j), "\"v\":1", "\"v\":2");
    bad(j, "version 2");
    replace(j, sizeof(j), "0123456789abcdef0123456789abcdef",
            "0123456789ABCDEF0123456789abcdef");
    bad(j, "upper case id");
    replace(j, sizeof(j), "0123456789abcdef0123456789abcdef", "0123");
    bad(j, "short id");
    replace(j, sizeof(j), "\"account\":7", "\"account\":\"7\"");
    bad(j, "account as a string");
    replace(j, sizeof(j), "\"account\":7", "\"account\":0");
    bad(j, "account 0");
    replace(j, sizeof(j), "\"prompt_tokens\":10", "\"prompt_tokens\":-1");
    bad(j, "negative tokens");
    replace(j, sizeof(j), "\"prompt_tokens\":10", "\"prompt_tokens\":1.5");
    bad(j, "fractional tokens");
    replace(j, sizeof(j), "\"total_tokens\":15", "\"total_tokens\":14");
    bad(j, "total below prompt + completion");
    replace(j, sizeof(j), "\"streamed\":false", "\"streamed\":0");
    bad(j, "streamed as a number");
    replace(j, sizeof(j), "\"status\":200,", "");
    bad(j, "missing status");
    replace(j, sizeof(j), "\"ts\":1793491200123", "\"ts\":1793491200");
    bad(j, "ts in seconds, not milliseconds");
    replace(j, sizeof(j), "\"key\":\"ai-hub-AbCdEfGh\"",
            "\"key\":\"ai-hub-AbCdEfGh0123456789012345678901234\"");
    bad(j, "key longer than a prefix column");

    /* every number bounded to what sums in the schema can hold */
    replace(j, sizeof(j), "\"total_tokens\":15",
            "\"total_tokens\":9007199254740991");
    bad(j, "total_tokens 2^53 - 1");
    replace(j, sizeof(j), "\"total_tokens\":15",
            "\"total_tokens\":2000000001");
    bad(j, "total_tokens above 2 x 10^9");
    replace(j, sizeof(j), "\"prompt_tokens\":10",
            "\"prompt_tokens\":1000000001");
    bad(j, "prompt_tokens above 10^9");

    /* what a node bills at the bounds: 10^9 of each, their sum as total */
    replace(j, sizeof(j), "\"prompt_tokens\":10,\"completion_tokens\":5,"
            "\"total_tokens\":15", "\"prompt_tokens\":1000000000,"
            "\"completion_tokens\":1000000000,\"total_tokens\":2000000000");
    tap_ok(aw_event_parse(j, strlen(j), &ev, &reason) == 0
           && ev.total_tokens == 2000000000LL,
           "10^9 prompt and 10^9 completion tokens, their sum the total");
    replace(j, sizeof(j), "\"cost_micros\":4",
            "\"cost_micros\":9007199254740991");
    bad(j, "cost_micros 2^53 - 1");
    replace(j, sizeof(j), "\"cost_micros\":4",
            "\"cost_micros\":1000000000001");
    bad(j, "cost_micros above $1,000,000");
    replace(j, sizeof(j), "\"cost_micros\":4",
            "\"cost_micros\":1000000000000");
    tap_ok(aw_event_parse(j, strlen(j), &ev, &reason) == 0,
           "cost_micros of exactly $1,000,000 is fine");

    replace(j, sizeof(j), "\"total_tokens\":15", "\"total_tokens\":40");
    tap_ok(aw_event_parse(j, strlen(j), &ev, &reason) == 0,
           "total above prompt + completion is fine (thinking tokens)");

    replace(j, sizeof(j), "\"model\":\"mock-basic\"", "\"model\":\"\"");
    tap_ok(aw_event_parse(j, strlen(j), &ev, &reason) == 0,
           "empty model is allowed");

    /* what cJSON alone lets through: refused, not stored altered */
    replace(j, sizeof(j), "\"model\":\"mock-basic\"",
            "\"model\":\"mock\\u0000-basic\"");
    bad(j, "an escaped NUL in the model (it would be stored cut at it)");
    replace(j, sizeof(j), "\"model\":\"mock-basic\"",
            "\"model\":\"mock\x01-basic\"");
    bad(j, "a raw control byte in a string");
    replace(j, sizeof(j), "\"account\":7", "\"account\":\x01" "7");
    bad(j, "a control byte between tokens");
    snprintf(j, sizeof(j), "%s%s", GOOD, GOOD);
    bad(j, "two events run together on one line (the second not dropped)");
    snprintf(j, sizeof(j), "%s x", GOOD);
    bad(j, "text after the object");
    snprintf(j, sizeof(j), "%s \t\r\n", GOOD);
    tap_ok(aw_event_parse(j, strlen(j), &ev, &reason) == 0,
           "white space after the object is fine");
    replace(j, sizeof(j), "\"model\":\"mock-basic\"",
            "\"model\":\"a\\\\u0000\"");
    tap_ok(aw_event_parse(j, strlen(j), &ev, &reason) == 0
           && strcmp(ev.model, "a\\u0000") == 0,
           "an escaped backslash before u0000 is text: %s", ev.model);

    /* a repeated member: its first occurrence counts, valid or not */
    replace(j, sizeof(j), "\"account\":7", "\"account\":7,\"account\":9");
    tap_ok(aw_event_parse(j, strlen(j), &ev, &reason) == 0 && ev.account == 7,
           "a repeated account: the first one");
    replace(j, sizeof(j), "\"latency_ms\":12",
            "\"latency_ms\":12,\"cost_micros\":999");
    tap_ok(aw_event_parse(j, strlen(j), &ev, &reason) == 0
           && ev.cost_micros == 4,
           "a repeated cost at the end: the first one");
    replace(j, sizeof(j), "\"account\":7",
            "\"account\":\"x\",\"account\":7");
    bad(j, "a repeated account whose first is not a number");
    replace(j, sizeof(j), "\"v\":1,", "\"v\":1,\"accounts\":3,\"p\":1,");
    tap_ok(aw_event_parse(j, strlen(j), &ev, &reason) == 0 && ev.account == 7,
           "members of names near the known ones are ignored");

    readers_agree();

    /* stream entries per read: about batch events a round, and room for
       every entry read even when each carries the most events */
    tap_is_ll(aw_usage_read_count(500, 0, 0), 500 / AIHUB_USAGE_EVENTS_MAX,
              "first read: batch / AIHUB_USAGE_EVENTS_MAX entries");
    tap_is_ll(aw_usage_read_count(500, 7, 7), 500,
              "one event per entry: batch entries");
    tap_is_ll(aw_usage_read_count(500, 7, 7 * AIHUB_USAGE_EVENTS_MAX),
              500 / AIHUB_USAGE_EVENTS_MAX,
              "the most events per entry: batch / the most entries");
    tap_is_ll(aw_usage_read_count(500, 10, 40), 125,
              "four events per entry: batch / 4 entries");
    tap_is_ll(aw_usage_read_count(500, 1, 1000), 1,
              "an entry of more events than the batch: one entry");
    tap_is_ll(aw_usage_read_count(10, 0, 0), 1,
              "a batch smaller than one entry's most: one entry");
    tap_is_ll(aw_usage_read_count(100000, 100000, 100000), 100000,
              "the largest batch, one event per entry");

    return tap_done();
}
