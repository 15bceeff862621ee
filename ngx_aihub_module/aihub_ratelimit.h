/*
 * Per-key rate limiter arithmetic: requests per minute and tokens per
 * minute, exact in integers, in a plain struct with no pointers so it can
 * live in nginx shared memory (the caller holds the zone's lock around a
 * call).
 *
 * The model is a leaky bucket (GCRA) holding one minute's worth: capacity
 * limit units, drained at limit units per minute, burst = limit.  The level
 * is kept in unit-milliseconds scaled by 60000 so it drains by exactly limit
 * per millisecond: with limit 60, 60 calls pass at once, then one more every
 * 1000 ms.  Limits up to AIHUB_RL_LIMIT_MAX (larger ones are clamped) never
 * overflow.
 */

#ifndef AIHUB_RATELIMIT_H
#define AIHUB_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>


#define AIHUB_RL_WINDOW_MS    60000
#define AIHUB_RL_LIMIT_MAX    1000000000000ULL    /* 10^12 per minute */
#define AIHUB_RL_NEVER        UINT64_MAX          /* retry_after: never */
#define AIHUB_DURATION_LEN    32                  /* aihub_fmt_duration */


typedef struct {
    uint64_t   level;          /* units x 60000, drains limit per ms */
    uint64_t   last_ms;        /* time of the last update */
} aihub_rl_state_t;


typedef struct {
    unsigned   allowed:1;
    uint64_t   limit;          /* per minute, as applied */
    uint64_t   remaining;      /* units that would pass right now */
    uint64_t   reset_ms;       /* until the bucket is empty (full quota) */
    uint64_t   retry_after_ms; /* denied: until this cost would pass; 0
                                  when allowed; AIHUB_RL_NEVER when cost
                                  exceeds the limit or the limit is 0 */
} aihub_rl_result_t;


/*
 * Decides whether cost units may pass at now_ms.  The state is updated
 * only when allowed.  A limit of 0 denies everything (the caller skips the
 * check for "unlimited").  A clock that goes backwards counts as no time.
 */
void aihub_rl_check(aihub_rl_state_t *s, uint64_t now_ms,
    uint64_t limit_per_min, uint64_t cost, aihub_rl_result_t *res);

/*
 * Settling a token limit once the real count is known: charge adds units
 * unconditionally (the level may exceed the capacity, later checks wait),
 * refund removes them (never below empty).
 */
void aihub_rl_charge(aihub_rl_state_t *s, uint64_t now_ms,
    uint64_t limit_per_min, uint64_t units);
void aihub_rl_refund(aihub_rl_state_t *s, uint64_t now_ms,
    uint64_t limit_per_min, uint64_t units);

/* Retry-After header value: whole seconds, rounded up, at least 1 */
uint64_t aihub_rl_retry_after_sec(uint64_t ms);

/*
 * Writes a duration the way OpenAI's x-ratelimit-reset-* headers do (Go's
 * time.Duration format at millisecond precision): "0s", "20ms", "1s",
 * "1.5s", "6m0s", "1m30.25s", "2h3m4s".  buf has AIHUB_DURATION_LEN bytes;
 * a NUL is written; returns the length.
 */
size_t aihub_fmt_duration(uint64_t ms, char *buf);


#endif /* AIHUB_RATELIMIT_H */
