/*
 * Rate limiter arithmetic (aihub_ratelimit.h).
 */

#include "aihub_ratelimit.h"


#define AIHUB_RL_LEVEL_MAX  (1ULL << 62)


static uint64_t
aihub_rl_limit(uint64_t limit)
{
    return limit > AIHUB_RL_LIMIT_MAX ? AIHUB_RL_LIMIT_MAX : limit;
}


/* the level drained to now_ms; limit > 0 */

static uint64_t
aihub_rl_level(const aihub_rl_state_t *s, uint64_t now_ms, uint64_t limit)
{
    uint64_t  elapsed;

    if (now_ms <= s->last_ms || s->level == 0) {
        return s->level;
    }

    elapsed = now_ms - s->last_ms;

    if (elapsed >= (s->level + limit - 1) / limit) {
        return 0;
    }

    return s->level - elapsed * limit;
}


static void
aihub_rl_store(aihub_rl_state_t *s, uint64_t now_ms, uint64_t level)
{
    s->level = level;

    if (now_ms > s->last_ms) {
        s->last_ms = now_ms;
    }
}


void
aihub_rl_check(aihub_rl_state_t *s, uint64_t now_ms, uint64_t limit_per_min,
    uint64_t cost, aihub_rl_result_t *res)
{
    uint64_t  limit, cap, level, need;

    limit = aihub_rl_limit(limit_per_min);

    res->limit = limit;
    res->allowed = 0;
    res->retry_after_ms = AIHUB_RL_NEVER;

    if (limit == 0) {
        res->remaining = 0;
        res->reset_ms = 0;
        return;
    }

    cap = limit * AIHUB_RL_WINDOW_MS;
    level = aihub_rl_level(s, now_ms, limit);

    if (cost <= limit) {
        need = cost * AIHUB_RL_WINDOW_MS;

        if (level <= cap - need) {
            level += need;
            aihub_rl_store(s, now_ms, level);

            res->allowed = 1;
            res->retry_after_ms = 0;

        } else {
            /* until level + need <= cap */
            res->retry_after_ms = (level - (cap - need) + limit - 1) / limit;
        }
    }

    res->remaining = level >= cap ? 0 : (cap - level) / AIHUB_RL_WINDOW_MS;
    res->reset_ms = (level + limit - 1) / limit;
}


void
aihub_rl_charge(aihub_rl_state_t *s, uint64_t now_ms, uint64_t limit_per_min,
    uint64_t units)
{
    uint64_t  limit, level;

    limit = aihub_rl_limit(limit_per_min);

    if (limit == 0) {
        return;
    }

    level = aihub_rl_level(s, now_ms, limit);

    if (units > (AIHUB_RL_LEVEL_MAX - level) / AIHUB_RL_WINDOW_MS) {
        level = AIHUB_RL_LEVEL_MAX;

    } else {
        level += units * AIHUB_RL_WINDOW_MS;
    }

    aihub_rl_store(s, now_ms, level);
}


void
aihub_rl_refund(aihub_rl_state_t *s, uint64_t now_ms, uint64_t limit_per_min,
    uint64_t units)
{
    uint64_t  limit, level;

    limit = aihub_rl_limit(limit_per_min);

    if (limit == 0) {
        return;
    }

    level = aihub_rl_level(s, now_ms, limit);

    if (units >= level / AIHUB_RL_WINDOW_MS + 1) {
        level = 0;

    } else {
        level -= units * AIHUB_RL_WINDOW_MS;
    }

    aihub_rl_store(s, now_ms, level);
}


uint64_t
aihub_rl_retry_after_sec(uint64_t ms)
{
    if (ms == AIHUB_RL_NEVER) {
        return AIHUB_RL_NEVER / 1000;
    }

    /* rounded up without adding: ms + 999 would wrap near UINT64_MAX */
    ms = ms / 1000 + (ms % 1000 != 0);

    return ms ? ms : 1;
}


static char *
aihub_fmt_uint(char *p, uint64_t v)
{
    char    tmp[24];
    size_t  n;

    n = 0;

    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    while (n) {
        *p++ = tmp[--n];
    }

    return p;
}


size_t
aihub_fmt_duration(uint64_t ms, char *buf)
{
    uint64_t  h, m, s, f;
    char     *p;

    p = buf;

    if (ms < 1000) {
        p = aihub_fmt_uint(p, ms);

        if (ms) {
            *p++ = 'm';
        }

        *p++ = 's';
        *p = '\0';

        return (size_t) (p - buf);
    }

    h = ms / 3600000;
    m = ms / 60000 % 60;
    s = ms / 1000 % 60;
    f = ms % 1000;

    if (h) {
        p = aihub_fmt_uint(p, h);
        *p++ = 'h';
    }

    if (h || m) {
        p = aihub_fmt_uint(p, m);
        *p++ = 'm';
    }

    p = aihub_fmt_uint(p, s);

    if (f) {
        *p++ = '.';
        *p++ = (char) ('0' + f / 100);

        if (f % 100) {
            *p++ = (char) ('0' + f / 10 % 10);

            if (f % 10) {
                *p++ = (char) ('0' + f % 10);
            }
        }
    }

    *p++ = 's';
    *p = '\0';

    return (size_t) (p - buf);
}
