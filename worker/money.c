/*
 * Money strings: cents to "12.34" and back, a provider's dollars per token
 * to micro-dollars per million tokens.  Integers only.  The cost rule
 * itself (tokens x prices -> micro-dollars, cents) is aihub_money.c's,
 * shared with the module.
 */

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "aihub_worker.h"


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
 * An amount an operator sets (a base fee, a spend cap) to cents: not
 * negative, and its micro-dollars fit 64 bits; -1 if not
 */

int
aw_money_fee_parse(const char *s, long long *cents)
{
    if (aw_money_cents_parse(s, cents) != 0 || *cents < 0
        || *cents > LLONG_MAX / 10000)
    {
        return -1;
    }

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

    if (digits == 0) {
        /* ".": no digit at all */
        return -1;
    }

    *micros_per_m = v + round_up;

    return 0;
}
