/*
 * Billing periods (aihub_period.h).  The calendar conversions are Howard
 * Hinnant's days_from_civil / civil_from_days, in 400-year eras.
 */

#include "aihub_period.h"


#define AIHUB_DAY  86400


static int64_t
aihub_floor_div(int64_t a, int64_t b)
{
    int64_t  q;

    q = a / b;

    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        q--;
    }

    return q;
}


int64_t
aihub_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t   era, yoe, doy, doe;

    y -= (m <= 2);
    era = aihub_floor_div(y, 400);
    yoe = y - era * 400;
    doy = (153 * (int64_t) (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}


void
aihub_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t  z, era, doe, yoe, doy, mp;

    z = days + 719468;
    era = aihub_floor_div(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;

    *d = (unsigned) (doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned) (mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}


unsigned
aihub_days_in_month(int64_t y, unsigned m)
{
    static const unsigned char  days[] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    if (m == 2
        && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
    {
        return 29;
    }

    return days[m - 1];
}


/* the start of the month "months" after (y, 1), on day d or the last one */

static int64_t
aihub_period_start(int64_t months, unsigned d, int64_t sod)
{
    int64_t   y;
    unsigned  m, dim;

    y = aihub_floor_div(months, 12);
    m = (unsigned) (months - y * 12) + 1;

    dim = aihub_days_in_month(y, m);

    if (d > dim) {
        d = dim;
    }

    return aihub_days_from_civil(y, m, d) * AIHUB_DAY + sod;
}


void
aihub_period_nth(int64_t anchor, int64_t k, int64_t *start, int64_t *end)
{
    int64_t   days, sod, y, months;
    unsigned  m, d;

    days = aihub_floor_div(anchor, AIHUB_DAY);
    sod = anchor - days * AIHUB_DAY;

    aihub_civil_from_days(days, &y, &m, &d);

    months = y * 12 + (m - 1) + k;

    *start = aihub_period_start(months, d, sod);
    *end = aihub_period_start(months + 1, d, sod);
}


int64_t
aihub_period_current(int64_t anchor, int64_t now, int64_t *start,
    int64_t *end)
{
    int64_t   ay, ny, k;
    unsigned  am, ad, nm, nd;

    aihub_civil_from_days(aihub_floor_div(anchor, AIHUB_DAY), &ay, &am, &ad);
    aihub_civil_from_days(aihub_floor_div(now, AIHUB_DAY), &ny, &nm, &nd);

    /* the period starting in now's month, or the one before it */

    k = (ny * 12 + nm) - (ay * 12 + am);

    for ( ;; ) {
        aihub_period_nth(anchor, k, start, end);

        if (*start > now) {
            k--;
            continue;
        }

        if (*end <= now) {
            k++;
            continue;
        }

        return k;
    }
}


void
aihub_period_calendar(int64_t now, int64_t *start, int64_t *end)
{
    int64_t   y, months;
    unsigned  m, d;

    aihub_civil_from_days(aihub_floor_div(now, AIHUB_DAY), &y, &m, &d);

    months = y * 12 + (m - 1);

    *start = aihub_period_start(months, 1, 0);
    *end = aihub_period_start(months + 1, 1, 0);
}


char *
aihub_period_digits(char *p, int64_t v, int n)
{
    int  i;

    for (i = n - 1; i >= 0; i--) {
        p[i] = (char) ('0' + v % 10);
        v /= 10;
    }

    return p + n;
}


static void
aihub_period_date(int64_t t, int64_t *y, unsigned *m, unsigned *d)
{
    aihub_civil_from_days(aihub_floor_div(t, AIHUB_DAY), y, m, d);

    if (*y < 0) {
        *y = 0;

    } else if (*y > 9999) {
        *y = 9999;
    }
}


size_t
aihub_period_id(int64_t t, char *buf)
{
    int64_t   y;
    unsigned  m, d;
    char     *p;

    aihub_period_date(t, &y, &m, &d);

    p = aihub_period_digits(buf, y, 4);
    p = aihub_period_digits(p, m, 2);
    p = aihub_period_digits(p, d, 2);
    *p = '\0';

    return AIHUB_PERIOD_ID_LEN;
}


size_t
aihub_period_month(int64_t t, char *buf)
{
    int64_t   y;
    unsigned  m, d;
    char     *p;

    aihub_period_date(t, &y, &m, &d);

    p = aihub_period_digits(buf, y, 4);
    *p++ = '-';
    p = aihub_period_digits(p, m, 2);
    *p = '\0';

    return AIHUB_PERIOD_MONTH_LEN;
}
