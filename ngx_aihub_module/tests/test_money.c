/*
 * The cost rule: a call in micro-dollars, an invoice line in cents, each
 * rounded once, half up.
 */

#include <stdint.h>
#include <stdio.h>

#include "aihub_money.h"
#include "tap.h"


#define IS(got, want, name)                                                  \
    ok((got) == (want), "%s (got %lld, want %lld)", name,                    \
       (long long) (got), (long long) (want))


int
main(void)
{
    /* a call: 1,000 in at $2.50/M = 2,500 micros; 100 out at $10/M = 1,000 */
    IS(aihub_money_call_micros(1000, 100, 2500000, 10000000), 3500,
       "call: prompt at input price, output at output price");

    /* 1 token at $0.15/M = 0.15 micros -> 0; 4 tokens = 0.6 -> 1 */
    IS(aihub_money_call_micros(1, 0, 150000, 0), 0, "call: 0.15 micros -> 0");
    IS(aihub_money_call_micros(4, 0, 150000, 0), 1, "call: 0.6 micros -> 1");

    /* exactly half a micro rounds up: 5 tokens at $0.10/M = 0.5 micros */
    IS(aihub_money_call_micros(5, 0, 100000, 0), 1, "call: half rounds up");
    IS(aihub_money_call_micros(0, 0, 100000, 100000), 0, "call: no tokens");

    /* no 64-bit overflow: 2^53 tokens at $1,000/M */
    IS(aihub_money_call_micros(1ULL << 53, 0, 1000000000, 0),
       (int64_t) ((1ULL << 53) * 1000), "call: 2^53 tokens at $1,000/M");
    IS(aihub_money_call_micros(UINT64_MAX, UINT64_MAX, UINT64_MAX,
                               UINT64_MAX),
       INT64_MAX, "call: clamped, never wraps");

    /* lines: 1M in at $2.50/M = 250 cents; 1M out at $10/M = 1000 cents */
    IS(aihub_money_line_cents(1000000, 0, 2500000, 10000000), 250,
       "line: 1M input tokens at $2.50/M");
    IS(aihub_money_line_cents(0, 1000000, 2500000, 10000000), 1000,
       "line: 1M output tokens at $10/M");

    /* 1000 tokens * $5/M = 0.5 cent -> 1; 999 -> 0 */
    IS(aihub_money_line_cents(1000, 0, 5000000, 0), 1,
       "line: exactly half a cent rounds up");
    IS(aihub_money_line_cents(999, 0, 5000000, 0), 0,
       "line: just under half a cent rounds down");

    /* token sums first: 333,300 tokens at $0.15/M = 4.9995 cents -> 5 */
    IS(aihub_money_line_cents(333300, 0, 150000, 0), 5,
       "line: one rounding per line");

    /* credits round away from zero */
    IS(aihub_money_line_cents(-1000, 0, 5000000, 0), -1,
       "line: negative half a cent -> -1");

    IS(aihub_money_micros_to_cents(5000), 1, "micros: 5,000 -> 1 cent");
    IS(aihub_money_micros_to_cents(4999), 0, "micros: 4,999 -> 0");
    IS(aihub_money_micros_to_cents(-5000), -1, "micros: -5,000 -> -1");

    return tap_done();
}
