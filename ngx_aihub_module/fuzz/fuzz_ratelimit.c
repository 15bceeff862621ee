/*
 * The rate limiter arithmetic (aihub_ratelimit.c).
 *
 * Input: a limit, then operations of 10 bytes (kind, time step, amount)
 * applied to one bucket.  Properties, after every operation:
 *   - the level stays within 2^62, the clock never goes back;
 *   - a denied check changes nothing; an allowed one adds exactly cost;
 *   - cost > limit or limit 0 is never allowed, and says "never";
 *   - remaining units (if any) pass now and one more does not;
 *   - a denied cost passes after retry_after_ms and not 1 ms earlier;
 *   - the whole limit passes after reset_ms and not 1 ms earlier;
 *   - Retry-After seconds cover the milliseconds; durations print in
 *     Go's format and read back to the same milliseconds.
 */

#include <string.h>

#include "aihub_ratelimit.h"
#include "fuzz.h"


static const uint64_t  limits[] = {
    1, 2, 3, 7, 60, 1000, 60000, 1000000, AIHUB_RL_LIMIT_MAX,
    AIHUB_RL_LIMIT_MAX + 1, 0
};


static int
passes(const aihub_rl_state_t *s, uint64_t now, uint64_t limit,
    uint64_t cost)
{
    aihub_rl_state_t   c;
    aihub_rl_result_t  r;

    c = *s;
    aihub_rl_check(&c, now, limit, cost, &r);

    return r.allowed;
}


/* the level drained to now, computed in 128 bits */

static uint64_t
drained(const aihub_rl_state_t *s, uint64_t now, uint64_t limit)
{
    unsigned __int128  gone;

    if (now <= s->last_ms) {
        return s->level;
    }

    gone = (unsigned __int128) (now - s->last_ms) * limit;

    return gone >= s->level ? 0 : s->level - (uint64_t) gone;
}


/* reads back "1h2m3.45s", "20ms", "0s" */

static uint64_t
read_duration(const char *p)
{
    uint64_t  total, v, frac, scale;

    total = 0;

    while (*p) {
        v = 0;
        FUZZ_CHECK(*p >= '0' && *p <= '9');

        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (uint64_t) (*p++ - '0');
        }

        frac = 0;

        if (*p == '.') {
            p++;
            scale = 100;
            FUZZ_CHECK(*p >= '0' && *p <= '9');

            while (*p >= '0' && *p <= '9') {
                FUZZ_CHECK(scale > 0);
                frac += (uint64_t) (*p++ - '0') * scale;
                scale /= 10;
            }

            FUZZ_CHECK(p[-1] != '0');       /* no trailing zeros */
            FUZZ_CHECK(*p == 's');
        }

        if (p[0] == 'm' && p[1] == 's') {
            total += v;
            p += 2;

        } else if (*p == 'h') {
            total += v * 3600000;
            p++;

        } else if (*p == 'm') {
            FUZZ_CHECK(v < 60);
            total += v * 60000;
            p++;

        } else {
            FUZZ_CHECK(*p == 's');
            total += v * 1000 + frac;
            p++;
        }
    }

    return total;
}


static void
check_duration(uint64_t ms)
{
    char      buf[AIHUB_DURATION_LEN];
    size_t    n;
    uint64_t  sec;

    n = aihub_fmt_duration(ms, buf);
    FUZZ_CHECK(n < AIHUB_DURATION_LEN && strlen(buf) == n);
    FUZZ_CHECK(read_duration(buf) == ms);

    if (ms != AIHUB_RL_NEVER) {
        /* whole seconds rounded up, at least 1 (no product to wrap) */
        sec = aihub_rl_retry_after_sec(ms);
        FUZZ_CHECK(sec >= 1);
        FUZZ_CHECK(sec == ms / 1000 + (ms % 1000 != 0) || (ms == 0));
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t           limit, applied, now, t, amount, cost, before;
    aihub_rl_state_t   s, old;
    aihub_rl_result_t  r;
    const uint8_t     *op;

    if (size < 1) {
        return 0;
    }

    limit = limits[data[0] % (sizeof(limits) / sizeof(limits[0]))];

    if (data[0] >= 0xf0 && size >= 9) {
        limit = fuzz_u64(data + 1) % (AIHUB_RL_LIMIT_MAX * 2);
        data += 8;
        size -= 8;
    }

    applied = limit > AIHUB_RL_LIMIT_MAX ? AIHUB_RL_LIMIT_MAX : limit;

    memset(&s, 0, sizeof(s));
    now = 1000000;

    for (op = data + 1; op + 10 <= data + size; op += 10) {

        /* time: mostly forward, by ms to hours; sometimes back */
        t = (uint64_t) op[1] | (uint64_t) op[2] << 8 | (uint64_t) op[3] << 16;

        if (op[0] & 0x80) {
            now = now > t ? now - t : 0;

        } else {
            now += t << (op[0] & 0x0f);
        }

        amount = fuzz_u64(op + 2) >> (op[1] & 63);
        old = s;

        switch ((op[0] >> 4) & 3) {

        case 0:
        case 1:
            cost = ((op[0] >> 4) & 1) ? amount : amount % (applied + 1);
            aihub_rl_check(&s, now, limit, cost, &r);

            FUZZ_CHECK(r.limit == applied);

            if (!r.allowed) {
                FUZZ_CHECK(memcmp(&s, &old, sizeof(s)) == 0);
            }

            if (applied == 0 || cost > applied) {
                FUZZ_CHECK(!r.allowed && r.retry_after_ms == AIHUB_RL_NEVER);
                break;
            }

            FUZZ_CHECK(r.remaining <= applied);

            if (r.allowed) {
                FUZZ_CHECK(r.retry_after_ms == 0);
                FUZZ_CHECK(s.last_ms >= old.last_ms);

                /* the drained level, plus exactly cost */
                before = drained(&old, now, applied);
                FUZZ_CHECK(s.level == before + cost * AIHUB_RL_WINDOW_MS);
                FUZZ_CHECK(s.level <= applied * AIHUB_RL_WINDOW_MS);

            } else {
                FUZZ_CHECK(r.retry_after_ms != AIHUB_RL_NEVER);
                if (now >= s.last_ms) {
                    FUZZ_CHECK(passes(&s, now + r.retry_after_ms, limit,
                                      cost));
                }

                if (r.retry_after_ms > 0 && now >= s.last_ms) {
                    FUZZ_CHECK(!passes(&s, now + r.retry_after_ms - 1,
                                       limit, cost));
                }

                check_duration(r.retry_after_ms);
            }

            /* (over capacity after a charge even cost 0 waits) */
            FUZZ_CHECK(r.remaining == 0 || passes(&s, now, limit,
                                                  r.remaining));

            if (r.remaining < applied) {
                FUZZ_CHECK(!passes(&s, now, limit, r.remaining + 1));
            }

            if (now >= s.last_ms) {
                FUZZ_CHECK(passes(&s, now + r.reset_ms, limit, applied));
            }

            if (r.reset_ms > 0 && now >= s.last_ms) {
                FUZZ_CHECK(!passes(&s, now + r.reset_ms - 1, limit, applied));
            }

            check_duration(r.reset_ms);
            break;

        case 2:
            aihub_rl_charge(&s, now, limit, amount);

            if (applied && amount <= 1000000000000ULL) {
                FUZZ_CHECK(s.level >= amount * AIHUB_RL_WINDOW_MS
                           || s.level == (1ULL << 62));
            }

            break;

        default:
            aihub_rl_refund(&s, now, limit, amount);

            if (applied) {
                FUZZ_CHECK(s.level <= old.level);
            }

            break;
        }

        FUZZ_CHECK(s.level <= (1ULL << 62));
        FUZZ_CHECK(s.last_ms >= old.last_ms);

        check_duration(amount);
    }

    return 0;
}
