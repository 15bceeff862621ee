/* billing: included calls first, overage summed per (model, price) line,
   rounded once per line to cents, half up */

#include "aihub_worker.h"
#include "tap.h"


int
main(void)
{
    aw_billing_t  b;
    int           i;

    /* pro: 3 included; 6 calls */
    aw_billing_init(&b, 3);

    for (i = 0; i < 3; i++) {
        tap_is_ll(aw_billing_call(&b, "m1", 1, 150000, 600000, 1000, 1000),
                  0, "call %d is included", i + 1);
    }

    tap_is_ll(aw_billing_call(&b, "m1", 1, 150000, 600000, 1000, 1000), 1,
              "call 4 is overage");
    aw_billing_call(&b, "m2", 1, 2500000, 10000000, 1000, 500);
    aw_billing_call(&b, "m1", 1, 150000, 600000, 3000, 0);
    /* the same model at a new price is a new line */
    aw_billing_call(&b, "m1", 1, 200000, 800000, 1000, 1000);

    tap_is_ll(aw_billing_finish(&b), 0 + 1 + 0 + 0,
              "overage total in cents: lines 0 + 1 + 0");

    tap_is_ll((long long) b.nlines, 3, "three (model, price) lines");
    tap_is_ll(b.calls, 7, "seven calls counted");
    tap_is_ll(b.over_calls, 4, "four beyond the allowance");

    /* m1 @ 150000/600000: 4000 in, 1000 out = 6e8 + 6e8 = 1.2e9 -> 0.12c */
    tap_is_ll(b.lines[0].prompt_tokens, 4000, "m1 line prompt tokens summed");
    tap_is_ll(b.lines[0].completion_tokens, 1000, "m1 line completion");
    tap_is_ll(b.lines[0].calls, 2, "m1 line calls");
    tap_is_ll(b.lines[0].amount_cents, 0, "m1 line rounds to 0 cents");

    /* m2: 1000 * 2.5M + 500 * 10M = 2.5e9 + 5e9 = 7.5e9 -> 0.75 -> 1 */
    tap_is_ll(b.lines[1].amount_cents, 1, "m2 line 0.75 cents -> 1");
    tap_is_ll(b.lines[2].price_in, 200000, "new price, own line");

    aw_billing_free(&b);

    /* rounding once per line, not per call: 1000 overage calls of 3333 +
       0 tokens at $1.50/M = 0.49995 cents each (0 if rounded per call),
       499.95 cents for the line -> 500 */
    aw_billing_init(&b, 0);

    for (i = 0; i < 1000; i++) {
        aw_billing_call(&b, "m", 1, 1500000, 0, 3333, 0);
    }

    tap_is_ll(aw_billing_finish(&b), 500, "sum first, round once: 500 "
              "cents, not 0");
    aw_billing_free(&b);

    /* free: no overage allowed: nothing billed, counted as unbilled */
    aw_billing_init(&b, 2);

    for (i = 0; i < 5; i++) {
        aw_billing_call(&b, "m", 0, 1500000, 0, 100000, 0);
    }

    tap_is_ll(aw_billing_finish(&b), 0, "free plan: no overage billed");
    tap_is_ll(b.unbilled_calls, 3, "three calls beyond quota not billed");
    tap_is_ll((long long) b.nlines, 0, "no lines");
    aw_billing_free(&b);

    /* pro at exactly the allowance: nothing billed */
    aw_billing_init(&b, 10000);

    for (i = 0; i < 10000; i++) {
        aw_billing_call(&b, "m", 1, 1500000, 0, 100000, 0);
    }

    tap_is_ll(aw_billing_finish(&b), 0, "at the allowance: no overage");
    tap_is_ll(aw_billing_call(&b, "m", 1, 2500000, 10000000, 1000000,
                              1000000), 1, "call 10001 is overage");
    tap_is_ll(aw_billing_finish(&b), 1250, "1M in + 1M out at 2.5/10 = "
              "$12.50");
    aw_billing_free(&b);

    /* thinking tokens: output is total - prompt (the module's rule);
       gemini-2.5-pro 1.25/10 per M, 1000 in / 100 out / 5100 total:
       1000 * 1.25 + 4100 * 10 = 1250 + 41000 micro-$ = 4.225c -> 4c */
    tap_is_ll(aw_billing_output_tokens(1000, 100, 5100), 4100,
              "output = total - prompt with thinking tokens");
    tap_is_ll(aw_billing_output_tokens(1000, 100, 1100), 100,
              "output = completion without");
    tap_is_ll(aw_billing_output_tokens(1000, 100, 0), 100,
              "a total below prompt + completion: the completion");
    aw_billing_init(&b, 0);
    aw_billing_call(&b, "google/gemini-2.5-pro", 1, 1250000, 10000000, 1000,
                    aw_billing_output_tokens(1000, 100, 5100));
    tap_is_ll(aw_billing_finish(&b), 4, "a thinking call is 4 cents");
    aw_billing_free(&b);

    /* aggregates: the same (model, price) from two plans is one line */
    aw_billing_init(&b, 0);
    aw_billing_over(&b, "m1", 1, 150000, 600000, 2, 4000, 1000);
    aw_billing_over(&b, "m1", 0, 150000, 600000, 5, 100, 100);
    aw_billing_over(&b, "m1", 1, 150000, 600000, 1, 96000, 0);
    tap_is_ll((long long) b.nlines, 1, "one line for m1");
    tap_is_ll(b.lines[0].calls, 3, "its calls");
    tap_is_ll(b.over_calls, 8, "eight beyond the allowance");
    tap_is_ll(b.unbilled_calls, 5, "five on a plan without overage");
    /* 100000 * 0.15 + 1000 * 0.60 = 15000 + 600 micro-$ = 1.56c -> 2c */
    tap_is_ll(aw_billing_finish(&b), 2, "summed, then rounded once");
    aw_billing_free(&b);

    return tap_done();
}
