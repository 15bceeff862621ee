/*
 * Money: integers only.  Prices are micro-dollars per million tokens;
 * per-event costs are micro-dollars; invoices are cents.  An invoice line
 * sums its tokens first and rounds once, to cents, half up.
 */

#include <stdio.h>
#include <string.h>

#include "aihub_worker.h"


/*
 * cents = (prompt * price_in + completion * price_out) / 10^6 tokens
 *         / 10^4 micro-dollars per cent, rounded half up.  128-bit
 *         intermediate: 10^12 tokens at 10^9 micros/M do not overflow.
 */

long long
aw_money_line_cents(long long prompt_tokens, long long completion_tokens,
    long long price_in_micros, long long price_out_micros)
{
    __int128  num, q;

    num = (__int128) prompt_tokens * price_in_micros
          + (__int128) completion_tokens * price_out_micros;

    if (num >= 0) {
        q = (num + 5000000000LL) / 10000000000LL;

    } else {
        q = -((-num + 5000000000LL) / 10000000000LL);
    }

    return (long long) q;
}


/* micro-dollars to cents, half up (away from zero for negatives) */

long long
aw_money_micros_to_cents(long long micros)
{
    if (micros >= 0) {
        return (micros + 5000) / 10000;
    }

    return -((-micros + 5000) / 10000);
}


/* "12.34", "-0.05" */

void
aw_money_format(long long cents, char *out, size_t size)
{
    unsigned long long  a;

    a = cents < 0 ? (unsigned long long) (-(cents + 1)) + 1
                  : (unsigned long long) cents;

    snprintf(out, size, "%s%llu.%02llu", cents < 0 ? "-" : "", a / 100,
             a % 100);
}


/* "19", "19.5", "19.00", "-1.25" to cents; -1 if not exact */

int
aw_money_cents_parse(const char *s, long long *cents)
{
    int        neg, digits, frac;
    long long  v;

    neg = 0;
    v = 0;

    if (*s == '-') {
        neg = 1;
        s++;
    }

    digits = 0;

    while (*s >= '0' && *s <= '9') {
        if (v > 922337203685477LL) {
            return -1;
        }
        v = v * 10 + (*s++ - '0');
        digits++;
    }

    if (digits == 0) {
        return -1;
    }

    v *= 100;

    if (*s == '.') {
        s++;
        frac = 0;

        if (*s >= '0' && *s <= '9') {
            v += (*s++ - '0') * 10;
            frac++;
        }

        if (*s >= '0' && *s <= '9') {
            v += *s++ - '0';
            frac++;
        }

        if (frac == 0) {
            return -1;
        }
    }

    if (*s != '\0') {
        return -1;
    }

    *cents = neg ? -v : v;

    return 0;
}


/*
 * A provider's price in dollars per token as a decimal string
 * ("0.0000025", "2.5e-6" is refused) to integer micro-dollars per million
 * tokens: value * 10^12, rounded half up at the last digit kept.
 */

int
aw_money_price_per_token(const char *s, long long *micros_per_m)
{
    long long  v;
    int        frac, digits, round_up;

    v = 0;
    frac = -1;
    digits = 0;
    round_up = 0;

    if (*s == '\0') {
        return -1;
    }

    for ( ; *s; s++) {
        if (*s == '.' && frac < 0) {
            frac = 0;
            continue;
        }

        if (*s < '0' || *s > '9') {
            return -1;
        }

        if (frac >= 12) {
            /* beyond 10^-12 dollars: only the first dropped digit rounds */
            if (frac == 12) {
                round_up = *s >= '5';
            }
            frac++;
            continue;
        }

        if (v > 922337LL * 1000000000LL / 10 || ++digits > 18) {
            return -1;
        }

        v = v * 10 + (*s - '0');

        if (frac >= 0) {
            frac++;
        }
    }

    if (frac < 0) {
        frac = 0;
    }

    if (frac > 12) {
        frac = 12;
    }

    for ( ; frac < 12; frac++) {
        if (v > 9223372036854775807LL / 10) {
            return -1;
        }
        v *= 10;
    }

    *micros_per_m = v + round_up;

    return 0;
}
