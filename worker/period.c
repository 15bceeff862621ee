/*
 * Invoice periods as the worker names them: calendar months in UTC,
 * "YYYY-MM", [start, end) in unix seconds.  The calendar arithmetic is
 * aihub_period.c's; this file only reads and writes the month names.
 * Pure functions.
 */

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "aihub_period.h"
#include "aihub_worker.h"


int
aw_period_parse(const char *s, int *year, int *month)
{
    int  i;

    if (s == NULL || strlen(s) != AIHUB_PERIOD_MONTH_LEN || s[4] != '-') {
        return -1;
    }

    for (i = 0; i < AIHUB_PERIOD_MONTH_LEN; i++) {
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


int
aw_period_bounds(const char *s, time_t *start, time_t *end)
{
    int      year, month;
    int64_t  s64, e64;

    if (aw_period_parse(s, &year, &month) != 0) {
        return -1;
    }

    aihub_period_calendar(aihub_days_from_civil(year, (unsigned) month, 1)
                          * 86400, &s64, &e64);

    *start = (time_t) s64;
    *end = (time_t) e64;

    return 0;
}


void
aw_period_of(time_t t, char *out, size_t size)
{
    char  month[AIHUB_PERIOD_MONTH_LEN + 1];

    aihub_period_month(t, month);
    snprintf(out, size, "%s", month);
}


void
aw_period_prev(const char *s, char *out, size_t size)
{
    time_t  start, end;

    if (aw_period_bounds(s, &start, &end) != 0) {
        snprintf(out, size, "%s", "");
        return;
    }

    aw_period_of(start - 1, out, size);
}
