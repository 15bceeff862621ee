/*
 * The cost rule, once, for the module (real-time cost of a call) and the
 * worker (invoice lines).  Prices are micro-dollars per million tokens;
 * a call's cost is micro-dollars; an invoice line is cents.  Prompt tokens
 * are billed at the input price and output tokens at the output price;
 * each figure is rounded once, half up (away from zero for negatives).
 * Plain C11, no nginx types.
 */

#ifndef AIHUB_MONEY_H
#define AIHUB_MONEY_H

#include <stdint.h>


#define AIHUB_MICROS_PER_CENT  10000


/* micro-dollars of one call */
int64_t aihub_money_call_micros(uint64_t prompt_tokens,
    uint64_t output_tokens, uint64_t price_in, uint64_t price_out);

/* cents of an invoice line: token sums at one price pair, rounded once */
int64_t aihub_money_line_cents(int64_t prompt_tokens, int64_t output_tokens,
    int64_t price_in, int64_t price_out);

/* micro-dollars to cents */
int64_t aihub_money_micros_to_cents(int64_t micros);


#endif /* AIHUB_MONEY_H */
