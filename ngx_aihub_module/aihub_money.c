/*
 * The cost rule (see aihub_money.h).  128-bit intermediates: 10^12 tokens
 * at 10^9 micro-dollars per million tokens do not overflow.
 */

#include "aihub_money.h"


#define AIHUB_TOKENS_PER_PRICE  1000000


static __int128
aihub_money_round(__int128 num, __int128 den)
{
    if (num >= 0) {
        return (num + den / 2) / den;
    }

    return -((-num + den / 2) / den);
}


int64_t
aihub_money_call_micros(uint64_t prompt_tokens, uint64_t output_tokens,
    uint64_t price_in, uint64_t price_out)
{
    unsigned __int128  a, b, q;

    /* a product of two 64-bit numbers always fits in 128 bits; the sum
       of two may not */
    a = (unsigned __int128) prompt_tokens * price_in;
    b = (unsigned __int128) output_tokens * price_out;

    if (a > ~(unsigned __int128) 0 - b - AIHUB_TOKENS_PER_PRICE) {
        return INT64_MAX;
    }

    q = (a + b + AIHUB_TOKENS_PER_PRICE / 2) / AIHUB_TOKENS_PER_PRICE;

    return q > INT64_MAX ? INT64_MAX : (int64_t) q;
}


int64_t
aihub_money_line_cents(int64_t prompt_tokens, int64_t output_tokens,
    int64_t price_in, int64_t price_out)
{
    __int128  num;

    num = (__int128) prompt_tokens * price_in
          + (__int128) output_tokens * price_out;

    return (int64_t) aihub_money_round(num, (__int128) AIHUB_TOKENS_PER_PRICE
                                            * AIHUB_MICROS_PER_CENT);
}


int64_t
aihub_money_micros_to_cents(int64_t micros)
{
    return (int64_t) aihub_money_round(micros, AIHUB_MICROS_PER_CENT);
}
