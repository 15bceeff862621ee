/*
 * aihub_ratelimit: exactness of the limiter, its reported numbers, no
 * overflow at the extremes, and the OpenAI duration format.
 */

#include <stdint.h>
#include <string.h>

#include "aihub_ratelimit.h"
#include "tap.h"


#define T0  1700000000000ULL     /* a realistic now, in ms */


static void
test_burst(void)
{
    aihub_rl_state_t   s, before;
    aihub_rl_result_t  r;
    uint64_t           i, allowed;
    int                fails;

    memset(&s, 0, sizeof(s));
    fails = 0;

    for (i = 0; i < 60; i++) {
        aihub_rl_check(&s, T0, 60, 1, &r);

        if (!r.allowed || r.remaining != 59 - i || r.limit != 60
            || r.reset_ms != (i + 1) * 1000 || r.retry_after_ms != 0)
        {
            fails++;
        }
    }

    ok(fails == 0, "60/min: 60 calls at once pass, remaining 59..0, "
       "reset 1s..60s");

    before = s;
    aihub_rl_check(&s, T0, 60, 1, &r);
    ok(!r.allowed && r.remaining == 0 && r.retry_after_ms == 1000
       && r.reset_ms == 60000,
       "60/min: the 61st is denied, retry after 1000 ms");
    ok(memcmp(&s, &before, sizeof(s)) == 0, "a denial leaves the state alone");

    aihub_rl_check(&s, T0 + 999, 60, 1, &r);
    ok(!r.allowed && r.retry_after_ms == 1, "60/min: at +999 ms retry after 1");

    aihub_rl_check(&s, T0 + 1000, 60, 1, &r);
    ok(r.allowed && r.remaining == 0 && r.reset_ms == 60000,
       "60/min: at +1000 ms one more passes");

    aihub_rl_check(&s, T0 + 1000, 60, 1, &r);
    ok(!r.allowed && r.retry_after_ms == 1000, "60/min: and then not");

    /* one per second, steadily, for ten minutes: all pass */

    fails = 0;

    for (i = 2; i < 602; i++) {
        aihub_rl_check(&s, T0 + i * 1000, 60, 1, &r);

        if (!r.allowed || r.remaining != 0) {
            fails++;
        }
    }

    ok(fails == 0, "60/min: one per second passes for ten minutes");

    /* another worker's clock 500 ms behind */

    aihub_rl_check(&s, T0 + 600500, 60, 0, &r);
    ok(r.allowed && r.remaining == 0 && r.reset_ms == 60000
       && s.last_ms == T0 + 601000,
       "a clock going backwards counts as no time, last kept");

    /* idle a minute: full again */

    aihub_rl_check(&s, T0 + 661000, 60, 0, &r);
    ok(r.allowed && r.remaining == 60 && r.reset_ms == 0,
       "60/min: after a minute idle, remaining 60, reset 0");

    /* hammering every ms for ten minutes: exactly burst + rate x time */

    memset(&s, 0, sizeof(s));
    allowed = 0;

    for (i = 0; i <= 600000; i++) {
        aihub_rl_check(&s, T0 + i, 7, 1, &r);
        allowed += r.allowed;
    }

    ok(allowed == 77, "7/min hammered for 10 minutes: 7 + 70 = %llu passed",
       (unsigned long long) allowed);
}


static void
test_uneven(void)
{
    aihub_rl_state_t   s;
    aihub_rl_result_t  r;
    int                i;

    memset(&s, 0, sizeof(s));

    for (i = 0; i < 7; i++) {
        aihub_rl_check(&s, T0, 7, 1, &r);
    }

    ok(r.allowed && r.remaining == 0 && r.reset_ms == 60000,
       "7/min: burst of 7");

    aihub_rl_check(&s, T0, 7, 1, &r);
    ok(!r.allowed && r.retry_after_ms == 8572,
       "7/min: retry after ceil(60000 / 7) = %llu ms",
       (unsigned long long) r.retry_after_ms);

    aihub_rl_check(&s, T0 + 8571, 7, 1, &r);
    ok(!r.allowed && r.retry_after_ms == 1, "7/min: at +8571 ms still denied");

    aihub_rl_check(&s, T0 + 8572, 7, 1, &r);
    ok(r.allowed, "7/min: at +8572 ms allowed");
}


static void
test_tokens(void)
{
    aihub_rl_state_t   s, before;
    aihub_rl_result_t  r;

    memset(&s, 0, sizeof(s));

    aihub_rl_check(&s, T0, 10000, 3000, &r);
    aihub_rl_check(&s, T0, 10000, 3000, &r);
    aihub_rl_check(&s, T0, 10000, 3000, &r);
    ok(r.allowed && r.remaining == 1000 && r.reset_ms == 54000,
       "10000 tpm: three calls of 3000, 1000 left, reset 54 s");

    aihub_rl_check(&s, T0, 10000, 3000, &r);
    ok(!r.allowed && r.remaining == 1000 && r.retry_after_ms == 12000,
       "10000 tpm: a fourth 3000 waits 12000 ms");

    aihub_rl_check(&s, T0, 10000, 1000, &r);
    ok(r.allowed && r.remaining == 0, "10000 tpm: but 1000 fits");

    /* settle: the answer used 500 fewer tokens than reserved */

    aihub_rl_refund(&s, T0, 10000, 500);
    aihub_rl_check(&s, T0, 10000, 0, &r);
    ok(r.remaining == 500, "refund 500: remaining 500");

    /* and another call used 4000 more than reserved: overdrawn */

    aihub_rl_charge(&s, T0, 10000, 4000);
    aihub_rl_check(&s, T0, 10000, 1, &r);
    ok(!r.allowed && r.remaining == 0 && r.retry_after_ms == 21006
       && r.reset_ms == 81000,
       "charge 4000: overdrawn, retry after %llu ms, reset %llu ms",
       (unsigned long long) r.retry_after_ms,
       (unsigned long long) r.reset_ms);

    aihub_rl_refund(&s, T0, 10000, 1000000);
    aihub_rl_check(&s, T0, 10000, 0, &r);
    ok(r.remaining == 10000 && r.reset_ms == 0,
       "a refund never goes below empty");

    /* more than the limit can never pass */

    before = s;
    aihub_rl_check(&s, T0, 10000, 10001, &r);
    ok(!r.allowed && r.retry_after_ms == AIHUB_RL_NEVER
       && r.remaining == 10000 && memcmp(&s, &before, sizeof(s)) == 0,
       "cost above the limit: never, state untouched");

    aihub_rl_check(&s, T0, 10000, 10000, &r);
    ok(r.allowed && r.remaining == 0, "cost equal to the limit passes once");

    aihub_rl_check(&s, T0, 0, 1, &r);
    ok(!r.allowed && r.retry_after_ms == AIHUB_RL_NEVER && r.remaining == 0,
       "limit 0 denies");
}


static void
test_extremes(void)
{
    aihub_rl_state_t   s;
    aihub_rl_result_t  r;

    memset(&s, 0, sizeof(s));

    aihub_rl_check(&s, T0, AIHUB_RL_LIMIT_MAX, AIHUB_RL_LIMIT_MAX, &r);
    ok(r.allowed && r.remaining == 0 && r.reset_ms == 60000,
       "10^12 per minute: the whole minute at once");

    aihub_rl_check(&s, T0, AIHUB_RL_LIMIT_MAX, 1, &r);
    ok(!r.allowed && r.retry_after_ms == 1, "... then 1 unit after 1 ms");

    aihub_rl_check(&s, T0 + 30000, AIHUB_RL_LIMIT_MAX, 0, &r);
    ok(r.remaining == AIHUB_RL_LIMIT_MAX / 2, "... half after 30 s");

    memset(&s, 0, sizeof(s));
    aihub_rl_check(&s, T0, UINT64_MAX, UINT64_MAX, &r);
    ok(!r.allowed && r.limit == AIHUB_RL_LIMIT_MAX
       && r.retry_after_ms == AIHUB_RL_NEVER
       && r.remaining == AIHUB_RL_LIMIT_MAX,
       "UINT64_MAX limit and cost: clamped, no overflow");

    aihub_rl_check(&s, T0, UINT64_MAX, 5, &r);
    ok(r.allowed && r.remaining == AIHUB_RL_LIMIT_MAX - 5, "... 5 pass");

    aihub_rl_charge(&s, T0, 1, UINT64_MAX);
    aihub_rl_check(&s, T0 + 1, 1, 1, &r);
    ok(!r.allowed && r.retry_after_ms == (1ULL << 62) - 1,
       "charge UINT64_MAX saturates at 2^62");

    aihub_rl_check(&s, UINT64_MAX, 1, 1, &r);
    ok(r.allowed, "time UINT64_MAX drains it, no overflow");

    aihub_rl_check(&s, 0, 1, 1, &r);
    ok(!r.allowed, "time 0 after a later update: no drain");
}


static void
test_duration(void)
{
    static const struct {
        uint64_t     ms;
        const char  *s;
    } d[] = {
        { 0, "0s" },
        { 1, "1ms" },
        { 20, "20ms" },
        { 250, "250ms" },
        { 999, "999ms" },
        { 1000, "1s" },
        { 1001, "1.001s" },
        { 1010, "1.01s" },
        { 1250, "1.25s" },
        { 1500, "1.5s" },
        { 8640, "8.64s" },
        { 59999, "59.999s" },
        { 60000, "1m0s" },
        { 60001, "1m0.001s" },
        { 90000, "1m30s" },
        { 360000, "6m0s" },
        { 3599000, "59m59s" },
        { 3600000, "1h0m0s" },
        { 7384000, "2h3m4s" },
        { 7384500, "2h3m4.5s" },
        { 86400000, "24h0m0s" },
        { UINT64_MAX, "5124095576030h25m51.615s" },
    };

    char    buf[AIHUB_DURATION_LEN];
    size_t  i, n;

    for (i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
        memset(buf, 'X', sizeof(buf));
        n = aihub_fmt_duration(d[i].ms, buf);
        ok(n == strlen(d[i].s) && strcmp(buf, d[i].s) == 0,
           "duration %llu ms = \"%s\" (got \"%s\")",
           (unsigned long long) d[i].ms, d[i].s, buf);
    }

    ok(aihub_rl_retry_after_sec(0) == 1 && aihub_rl_retry_after_sec(1) == 1
       && aihub_rl_retry_after_sec(1000) == 1
       && aihub_rl_retry_after_sec(1001) == 2
       && aihub_rl_retry_after_sec(60000) == 60,
       "Retry-After seconds round up, at least 1");

    /* found by fuzz_ratelimit: (ms + 999) wrapped to a few seconds */
    ok(aihub_rl_retry_after_sec(AIHUB_RL_NEVER - 1)
           == (AIHUB_RL_NEVER - 1) / 1000 + 1
       && aihub_rl_retry_after_sec(UINT64_MAX - 998)
           == (UINT64_MAX - 998) / 1000 + 1,
       "Retry-After seconds of a huge wait do not wrap");
}


int
main(void)
{
    test_burst();
    test_uneven();
    test_tokens();
    test_extremes();
    test_duration();

    return tap_done();
}
