/*
 * aihub_period: checked against glibc's timegm()/gmtime_r() (UTC, no TZ)
 * as an independent oracle, a table of hand-picked cases, and invariants
 * over three years of anchors.
 */

#define _DEFAULT_SOURCE

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "aihub_period.h"
#include "tap.h"


/* "YYYY-MM-DD HH:MM:SS" UTC to unix seconds, by the oracle */

static int64_t
t(const char *s)
{
    struct tm  tm;

    memset(&tm, 0, sizeof(tm));

    if (sscanf(s, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec) < 3)
    {
        diag("bad date %s", s);
        return 0;
    }

    tm.tm_year -= 1900;
    tm.tm_mon -= 1;

    return (int64_t) timegm(&tm);
}


static const char *
fmt(int64_t v)
{
    static char  buf[4][32];
    static int   n;
    struct tm    tm;
    time_t       tt;
    char        *p;

    tt = (time_t) v;
    gmtime_r(&tt, &tm);

    p = buf[n++ % 4];
    strftime(p, 32, "%Y-%m-%d %H:%M:%S", &tm);

    return p;
}


static void
test_civil(void)
{
    int64_t    d, y, fails;
    unsigned   m, dd;
    struct tm  tm;
    time_t     tt;

    /* every day from 1800 to 2400 against the oracle */

    fails = 0;

    for (d = t("1800-01-01") / 86400; d <= t("2400-12-31") / 86400; d++) {
        tt = (time_t) (d * 86400);
        gmtime_r(&tt, &tm);

        aihub_civil_from_days(d, &y, &m, &dd);

        if (y != tm.tm_year + 1900 || (int) m != tm.tm_mon + 1
            || (int) dd != tm.tm_mday
            || aihub_days_from_civil(y, m, dd) != d)
        {
            if (fails++ == 0) {
                diag("day %lld: %lld-%u-%u", (long long) d, (long long) y,
                     m, dd);
            }
        }
    }

    ok(fails == 0, "civil <-> days for every day of 1800..2400");

    ok(aihub_days_from_civil(1970, 1, 1) == 0
       && aihub_days_from_civil(1969, 12, 31) == -1
       && aihub_days_from_civil(1, 1, 1) == -719162
       && aihub_days_from_civil(9999, 12, 31) == 2932896
       && aihub_days_from_civil(2000, 3, 1) == 11017,
       "known day numbers (0001-01-01, 9999-12-31, 2000-03-01)");

    ok(aihub_days_in_month(2024, 2) == 29 && aihub_days_in_month(2023, 2) == 28
       && aihub_days_in_month(1900, 2) == 28
       && aihub_days_in_month(2000, 2) == 29
       && aihub_days_in_month(2100, 2) == 28
       && aihub_days_in_month(2024, 4) == 30
       && aihub_days_in_month(2024, 12) == 31
       && aihub_days_in_month(2024, 1) == 31,
       "days in month, leap rules of 4, 100, 400");
}


typedef struct {
    const char  *anchor;
    const char  *now;
    int64_t      k;
    const char  *start;
    const char  *end;
    const char  *id;
} period_case_t;


static const period_case_t  period_cases[] = {
    { "2024-01-15 00:00:00", "2024-01-15 00:00:00", 0,
      "2024-01-15 00:00:00", "2024-02-15 00:00:00", "20240115" },
    { "2024-01-15 00:00:00", "2024-02-14 23:59:59", 0,
      "2024-01-15 00:00:00", "2024-02-15 00:00:00", "20240115" },
    { "2024-01-15 00:00:00", "2024-02-15 00:00:00", 1,
      "2024-02-15 00:00:00", "2024-03-15 00:00:00", "20240215" },
    { "2024-01-31 10:00:00", "2024-02-15 00:00:00", 0,
      "2024-01-31 10:00:00", "2024-02-29 10:00:00", "20240131" },
    { "2024-01-31 10:00:00", "2024-02-29 09:59:59", 0,
      "2024-01-31 10:00:00", "2024-02-29 10:00:00", "20240131" },
    { "2024-01-31 10:00:00", "2024-02-29 10:00:00", 1,
      "2024-02-29 10:00:00", "2024-03-31 10:00:00", "20240229" },
    { "2024-01-31 10:00:00", "2024-04-30 11:00:00", 3,
      "2024-04-30 10:00:00", "2024-05-31 10:00:00", "20240430" },
    { "2023-01-31 00:00:00", "2023-02-28 12:00:00", 1,
      "2023-02-28 00:00:00", "2023-03-31 00:00:00", "20230228" },
    { "2024-01-30 06:00:00", "2024-03-01 00:00:00", 1,
      "2024-02-29 06:00:00", "2024-03-30 06:00:00", "20240229" },
    { "2024-01-29 00:00:00", "2025-02-28 00:00:00", 13,
      "2025-02-28 00:00:00", "2025-03-29 00:00:00", "20250228" },
    { "2024-02-29 08:30:00", "2025-02-28 08:30:00", 12,
      "2025-02-28 08:30:00", "2025-03-29 08:30:00", "20250228" },
    { "2024-02-29 08:30:00", "2025-02-28 08:29:59", 11,
      "2025-01-29 08:30:00", "2025-02-28 08:30:00", "20250129" },
    { "2024-02-29 08:30:00", "2028-02-29 08:30:00", 48,
      "2028-02-29 08:30:00", "2028-03-29 08:30:00", "20280229" },
    { "2024-03-31 23:59:59", "2024-04-30 23:59:59", 1,
      "2024-04-30 23:59:59", "2024-05-31 23:59:59", "20240430" },
    { "2024-12-15 12:00:00", "2025-01-15 12:00:00", 1,
      "2025-01-15 12:00:00", "2025-02-15 12:00:00", "20250115" },
    { "2024-12-31 23:00:00", "2025-01-01 00:00:00", 0,
      "2024-12-31 23:00:00", "2025-01-31 23:00:00", "20241231" },
    { "1900-01-29 00:00:00", "1900-02-28 00:00:00", 1,
      "1900-02-28 00:00:00", "1900-03-29 00:00:00", "19000228" },
    { "2000-01-29 00:00:00", "2000-02-28 00:00:00", 0,
      "2000-01-29 00:00:00", "2000-02-29 00:00:00", "20000129" },
    { "1969-12-31 12:00:00", "1970-01-15 00:00:00", 0,
      "1969-12-31 12:00:00", "1970-01-31 12:00:00", "19691231" },

    /* before the anchor: the periods extend backwards */
    { "2024-03-31 00:00:00", "2024-03-30 23:59:59", -1,
      "2024-02-29 00:00:00", "2024-03-31 00:00:00", "20240229" },
    { "2024-05-10 00:00:00", "2023-05-09 23:59:59", -13,
      "2023-04-10 00:00:00", "2023-05-10 00:00:00", "20230410" },
};


static void
test_periods(void)
{
    const period_case_t  *c;
    int64_t               k, start, end;
    size_t                i;
    char                  id[AIHUB_PERIOD_ID_LEN + 1];

    for (i = 0; i < sizeof(period_cases) / sizeof(period_cases[0]); i++) {
        c = &period_cases[i];

        k = aihub_period_current(t(c->anchor), t(c->now), &start, &end);
        aihub_period_id(start, id);

        ok(k == c->k && start == t(c->start) && end == t(c->end)
           && strcmp(id, c->id) == 0,
           "anchor %s now %s: k=%lld [%s, %s) %s", c->anchor, c->now,
           (long long) k, fmt(start), fmt(end), id);
    }
}


/* for three years of anchors at several times of day, periods -3..27 */

static void
test_invariants(void)
{
    int64_t    anchor, a0, start, end, s2, e2, k, fails, n;
    unsigned   dim;
    int        tod, want_mon, want_year;
    struct tm  at, st;
    time_t     tt;
    static const int  tods[] = { 0, 1, 43200, 86399 };

    fails = 0;
    n = 0;

    for (a0 = t("2023-01-01"); a0 < t("2026-01-01"); a0 += 86400) {
        for (tod = 0; tod < 4; tod++) {
            anchor = a0 + tods[tod];
            tt = (time_t) anchor;
            gmtime_r(&tt, &at);

            for (k = -3; k <= 27; k++) {
                n++;
                aihub_period_nth(anchor, k, &start, &end);
                aihub_period_nth(anchor, k + 1, &s2, &e2);

                tt = (time_t) start;
                gmtime_r(&tt, &st);

                want_mon = (at.tm_mon + (int) k + 36) % 12;
                want_year = at.tm_year + (at.tm_mon + (int) k + 36) / 12 - 3;
                dim = aihub_days_in_month(want_year + 1900, want_mon + 1);

                if (st.tm_mon != want_mon || st.tm_year != want_year
                    || st.tm_mday != (at.tm_mday < (int) dim
                                      ? at.tm_mday : (int) dim)
                    || st.tm_hour != at.tm_hour || st.tm_min != at.tm_min
                    || st.tm_sec != at.tm_sec
                    || end != s2 || end <= start
                    || aihub_period_current(anchor, start, &s2, &e2) != k
                    || s2 != start || e2 != end
                    || aihub_period_current(anchor, end - 1, &s2, &e2) != k
                    || aihub_period_current(anchor, start - 1, &s2, &e2)
                       != k - 1
                    || e2 != start)
                {
                    if (fails++ == 0) {
                        diag("anchor %s k %lld: [%s, %s)", fmt(anchor),
                             (long long) k, fmt(start), fmt(end));
                    }
                }
            }
        }
    }

    ok(fails == 0, "invariants hold for %lld (anchor, k) pairs", (long long) n);
}


static void
test_calendar(void)
{
    int64_t  start, end;
    char     m[AIHUB_PERIOD_MONTH_LEN + 1], id[AIHUB_PERIOD_ID_LEN + 1];
    size_t   n;

    aihub_period_calendar(t("2024-02-29 23:59:59"), &start, &end);
    n = aihub_period_month(start, m);
    ok(start == t("2024-02-01") && end == t("2024-03-01") && n == 7
       && strcmp(m, "2024-02") == 0, "calendar: February 2024 is %s", m);

    aihub_period_calendar(t("2024-12-31 23:59:59"), &start, &end);
    aihub_period_month(start, m);
    ok(start == t("2024-12-01") && end == t("2025-01-01")
       && strcmp(m, "2024-12") == 0, "calendar: December rolls the year");

    aihub_period_calendar(t("2025-01-01 00:00:00"), &start, &end);
    aihub_period_month(start, m);
    ok(start == t("2025-01-01") && end == t("2025-02-01")
       && strcmp(m, "2025-01") == 0, "calendar: a month's first second");

    aihub_period_calendar(-1, &start, &end);
    aihub_period_month(start, m);
    ok(start == t("1969-12-01") && end == 0 && strcmp(m, "1969-12") == 0,
       "calendar: before the epoch");

    n = aihub_period_id(t("0999-03-04 05:06:07"), id);
    ok(n == 8 && strcmp(id, "09990304") == 0, "period id pads the year: %s",
       id);
}


int
main(void)
{
    test_civil();
    test_periods();
    test_invariants();
    test_calendar();

    return tap_done();
}
