/*
 * Billing periods: calendar months in UTC, named "YYYY-MM".  A period is
 * [start, end) in unix seconds.  Pure functions.
 */

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "aihub_worker.h"


int
aw_period_parse(const char *s, int *year, int *month)
{
    int  i;

    if (s == NULL || strlen(s) != 7 || s[4] != '-') {
        return -1;
    }

    for (i = 0; i < 7; i++) {
        if (i != 4 && (s[i] < '0' || s[i] > '9')) {
            return -1;
        }
    }

    *year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10
            + (s[3] - '0');
    *month = (s[5] - '0') * 10 + (s[6] - '0');

    if (*year < 1970 || *year > 9998 || *month < 1 || *month > 12) {
        return -1;
    }

    return 0;
}


static time_t
aw_month_start(int year, int month)
{
    struct tm  tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = 1;

    return timegm(&tm);
}


int
aw_period_bounds(const char *s, time_t *start, time_t *end)
{
    int  year, month;

    if (aw_period_parse(s, &year, &month) != 0) {
        return -1;
    }

    *start = aw_month_start(year, month);
    *end = month == 12 ? aw_month_start(year + 1, 1)
                       : aw_month_start(year, month + 1);

    return 0;
}


void
aw_period_of(time_t t, char *out, size_t size)
{
    struct tm  tm;

    gmtime_r(&t, &tm);
    snprintf(out, size, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
}


void
aw_period_prev(const char *s, char *out, size_t size)
{
    int  year, month;

    if (aw_period_parse(s, &year, &month) != 0) {
        snprintf(out, size, "%s", "");
        return;
    }

    if (--month == 0) {
        month = 12;
        year--;
    }

    snprintf(out, size, "%04d-%02d", year, month);
}
