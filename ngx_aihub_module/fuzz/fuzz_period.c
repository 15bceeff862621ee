/*
 * Billing periods (aihub_period.c).
 *
 * Input: an anchor and a time (8 bytes each, folded into years 1-9999).
 * Properties:
 *   - days <-> civil dates round trip, and the dates are valid;
 *   - the current anchored period contains now, is one calendar month
 *     long (28 to 31 days), starts at the anchor's time of day on the
 *     anchor's day of the month (or the month's last day), is period k of
 *     the anchor, and ends where period k + 1 starts;
 *   - the id of a time names the day that contains it; the id of a
 *     period's start names a day inside the period; the calendar month of a
 *     time contains it and its "YYYY-MM" names it.
 */

#include <string.h>

#include "aihub_period.h"
#include "fuzz.h"


#define DAY  86400


static int64_t
fold(uint64_t v, int64_t lo, int64_t hi)
{
    return lo + (int64_t) (v % (uint64_t) (hi - lo));
}


static int64_t
parse(const char *p, int n)
{
    int64_t  v;
    int      i;

    v = 0;

    for (i = 0; i < n; i++) {
        FUZZ_CHECK(p[i] >= '0' && p[i] <= '9');
        v = v * 10 + (p[i] - '0');
    }

    return v;
}


/* the day an id names, as unix seconds of its midnight */

static int64_t
id_day(const char *id)
{
    int64_t  y, m, d;

    FUZZ_CHECK(strlen(id) == AIHUB_PERIOD_ID_LEN);

    y = parse(id, 4);
    m = parse(id + 4, 2);
    d = parse(id + 6, 2);

    FUZZ_CHECK(m >= 1 && m <= 12);
    FUZZ_CHECK(d >= 1 && d <= aihub_days_in_month(y, (unsigned) m));

    return aihub_days_from_civil(y, (unsigned) m, (unsigned) d) * DAY;
}


static int64_t
floor_div(int64_t a, int64_t b)
{
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t   lo, hi, anchor, now, start, end, s2, e2, k, y, ay, sy;
    int64_t   days, sod;
    unsigned  m, d, am, ad, sm, sd, dim;
    char      id[AIHUB_PERIOD_ID_LEN + 1], month[AIHUB_PERIOD_MONTH_LEN + 1];

    if (size < 16) {
        return 0;
    }

    /* years 2 to 9998: a period and its neighbours stay in 1-9999 */
    lo = aihub_days_from_civil(2, 1, 1) * DAY;
    hi = aihub_days_from_civil(9999, 1, 1) * DAY;

    anchor = fold(fuzz_u64(data), lo, hi);
    now = fold(fuzz_u64(data + 8), lo, hi);

    if (size >= 17 && data[16] < 128) {
        /* near the anchor, where the edge cases are */
        now = anchor + (int64_t) (int8_t) data[16] * 86400 * 31 / 64
              + (size >= 18 ? (int64_t) (int8_t) data[17] * 1000 : 0);
    }

    /* calendar conversions */

    days = floor_div(now, DAY);
    aihub_civil_from_days(days, &y, &m, &d);
    FUZZ_CHECK(m >= 1 && m <= 12 && d >= 1 && d <= aihub_days_in_month(y, m));
    FUZZ_CHECK(aihub_days_from_civil(y, m, d) == days);

    /* the anchored period containing now */

    k = aihub_period_current(anchor, now, &start, &end);

    FUZZ_CHECK(start <= now && now < end);
    FUZZ_CHECK(end - start >= 28 * DAY && end - start <= 31 * DAY);
    FUZZ_CHECK((now >= anchor) == (k >= 0));

    aihub_period_nth(anchor, k, &s2, &e2);
    FUZZ_CHECK(s2 == start && e2 == end);

    aihub_period_nth(anchor, k + 1, &s2, &e2);
    FUZZ_CHECK(s2 == end);

    aihub_period_nth(anchor, 0, &s2, &e2);
    FUZZ_CHECK(s2 == anchor);

    sod = anchor - floor_div(anchor, DAY) * DAY;
    FUZZ_CHECK(start - floor_div(start, DAY) * DAY == sod);

    aihub_civil_from_days(floor_div(anchor, DAY), &ay, &am, &ad);
    aihub_civil_from_days(floor_div(start, DAY), &sy, &sm, &sd);
    dim = aihub_days_in_month(sy, sm);
    FUZZ_CHECK(sd == (ad < dim ? ad : dim));
    FUZZ_CHECK(sy * 12 + sm - (ay * 12 + am) == k);

    /* ids */

    FUZZ_CHECK(aihub_period_id(now, id) == AIHUB_PERIOD_ID_LEN);
    FUZZ_CHECK(id_day(id) <= now && now < id_day(id) + DAY);

    aihub_period_id(start, id);
    FUZZ_CHECK(id_day(id) <= start && start < id_day(id) + DAY);
    FUZZ_CHECK(id_day(id) + DAY > start && id_day(id) < end);

    /* the calendar month */

    aihub_period_calendar(now, &s2, &e2);
    FUZZ_CHECK(s2 <= now && now < e2);
    FUZZ_CHECK(e2 - s2 == aihub_days_in_month(y, m) * (int64_t) DAY);
    FUZZ_CHECK(aihub_period_month(now, month) == AIHUB_PERIOD_MONTH_LEN);
    FUZZ_CHECK(strlen(month) == AIHUB_PERIOD_MONTH_LEN && month[4] == '-');
    FUZZ_CHECK(parse(month, 4) == y && parse(month + 5, 2) == m);

    aihub_period_id(s2, id);
    FUZZ_CHECK(id_day(id) == s2 && memcmp(id + 6, "01", 2) == 0);

    return 0;
}
