/* billing periods: calendar months in UTC */

#include <time.h>

#include "aihub_worker.h"
#include "tap.h"


int
main(void)
{
    time_t  start, end;
    char    s[16];
    int     y, m;

    tap_ok(aw_period_bounds("2026-11", &start, &end) == 0, "parse 2026-11");
    tap_is_ll(start, 1793491200LL, "2026-11 starts 2026-11-01 00:00 UTC");
    tap_is_ll(end, 1796083200LL, "2026-11 ends 2026-12-01 00:00 UTC");

    tap_ok(aw_period_bounds("2026-12", &start, &end) == 0, "parse 2026-12");
    tap_is_ll(end, 1798761600LL, "December ends on January 1st next year");

    tap_ok(aw_period_bounds("2024-02", &start, &end) == 0, "parse 2024-02");
    tap_is_ll(end - start, 29 * 86400LL, "February 2024 has 29 days");

    tap_ok(aw_period_parse("2026-13", &y, &m) != 0, "refuse month 13");
    tap_ok(aw_period_parse("2026-00", &y, &m) != 0, "refuse month 0");
    tap_ok(aw_period_parse("2026-1", &y, &m) != 0, "refuse 2026-1");
    tap_ok(aw_period_parse("26-11-01", &y, &m) != 0, "refuse 26-11-01");
    tap_ok(aw_period_parse("2026/11", &y, &m) != 0, "refuse 2026/11");

    aw_period_of(1793491200LL, s, sizeof(s));
    tap_is_str(s, "2026-11", "first second of November");
    aw_period_of(1793491199LL, s, sizeof(s));
    tap_is_str(s, "2026-10", "last second of October");

    aw_period_prev("2026-01", s, sizeof(s));
    tap_is_str(s, "2025-12", "previous of January is December");
    aw_period_prev("2026-11", s, sizeof(s));
    tap_is_str(s, "2026-10", "previous of November");

    return tap_done();
}
