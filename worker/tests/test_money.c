/* money math: token sums per line, rounded once to cents, half up */

#include "aihub_worker.h"
#include "tap.h"


int
main(void)
{
    char  s[32];
    long long  c;

    /* 1M prompt tokens at $2.50/M = 250 cents exactly */
    tap_is_ll(aw_money_line_cents(1000000, 0, 2500000, 10000000), 250,
              "1M input tokens at $2.50/M");

    /* 1M out at $10/M */
    tap_is_ll(aw_money_line_cents(0, 1000000, 2500000, 10000000), 1000,
              "1M output tokens at $10/M");

    /* half a cent rounds up: 1000 tokens * 5000000 = 5e9 -> 0.5 cent */
    tap_is_ll(aw_money_line_cents(1000, 0, 5000000, 0), 1,
              "exactly half a cent rounds up");

    /* just under half rounds down: 999 * 5000000 = 4.995e9 */
    tap_is_ll(aw_money_line_cents(999, 0, 5000000, 0), 0,
              "just under half a cent rounds down");

    /* line sum then round: 3 calls of 1000 tokens at $0.15/M = 0.045 cents
       each; per call rounding would give 0, the line gives 0.045 -> 0;
       but 40000 tokens -> 0.6 cents -> 1 */
    tap_is_ll(aw_money_line_cents(40000, 0, 150000, 0), 1,
              "line of 40000 tokens at $0.15/M is 0.6 cents -> 1");

    /* rounding once per line, not per event: 100 events of 3333 prompt
       tokens at $0.15/M each cost 0.049995 cents (0 each if rounded per
       event); the line is 333300 tokens -> 4.9995 cents -> 5 */
    tap_is_ll(aw_money_line_cents(333300, 0, 150000, 0), 5,
              "token sums first, one rounding per line");

    /* both sides: 12345 in at 3/M + 6789 out at 15/M
       = 37035000000 + 101835000000 = 138870000000 -> 13.887 -> 14 */
    tap_is_ll(aw_money_line_cents(12345, 6789, 3000000, 15000000), 14,
              "prompt and completion priced separately, summed, rounded");

    /* large values do not overflow: 10^12 tokens at $1000/M */
    tap_is_ll(aw_money_line_cents(1000000000000LL, 0, 1000000000LL, 0),
              100000000000LL, "no overflow on 10^12 tokens at $1000/M");

    tap_is_ll(aw_money_line_cents(0, 0, 2500000, 10000000), 0,
              "no tokens, no money");

    tap_is_ll(aw_money_micros_to_cents(5000), 1, "5000 micros -> 1 cent");
    tap_is_ll(aw_money_micros_to_cents(4999), 0, "4999 micros -> 0 cents");
    tap_is_ll(aw_money_micros_to_cents(-5000), -1,
              "-5000 micros -> -1 cent (half away from zero)");

    aw_money_format(1900, s, sizeof(s));
    tap_is_str(s, "19.00", "format 1900 cents");
    aw_money_format(5, s, sizeof(s));
    tap_is_str(s, "0.05", "format 5 cents");
    aw_money_format(-105, s, sizeof(s));
    tap_is_str(s, "-1.05", "format -105 cents");

    tap_ok(aw_money_cents_parse("19", &c) == 0 && c == 1900, "parse 19");
    tap_ok(aw_money_cents_parse("19.5", &c) == 0 && c == 1950,
           "parse 19.5");
    tap_ok(aw_money_cents_parse("0.07", &c) == 0 && c == 7, "parse 0.07");
    tap_ok(aw_money_cents_parse("1.234", &c) != 0, "refuse 1.234");
    tap_ok(aw_money_cents_parse("abc", &c) != 0, "refuse abc");
    tap_ok(aw_money_cents_parse("", &c) != 0, "refuse empty");

    /* provider prices: dollars per token -> micro-dollars per M tokens */
    tap_ok(aw_money_price_per_token("0.0000025", &c) == 0 && c == 2500000,
           "$0.0000025/token is 2500000 micros per M");
    tap_ok(aw_money_price_per_token("0.00001", &c) == 0 && c == 10000000,
           "$0.00001/token is 10000000 micros per M");
    tap_ok(aw_money_price_per_token("0", &c) == 0 && c == 0, "free model");
    tap_ok(aw_money_price_per_token("0.00000015", &c) == 0 && c == 150000,
           "$0.15/M");
    tap_ok(aw_money_price_per_token("0.0000000000005", &c) == 0 && c == 1,
           "below a micro per M rounds half up");
    tap_ok(aw_money_price_per_token("0.0000000000004", &c) == 0 && c == 0,
           "and down");
    tap_ok(aw_money_price_per_token("-0.1", &c) != 0, "negative refused");
    tap_ok(aw_money_price_per_token("2.5e-6", &c) != 0,
           "exponent refused");
    tap_ok(aw_money_price_per_token("", &c) != 0, "empty refused");
    tap_ok(aw_money_price_per_token(".", &c) != 0, "\".\" refused");
    tap_ok(aw_money_price_per_token("0.", &c) == 0 && c == 0, "\"0.\"");

    return tap_done();
}
