/*
 * Billing periods in UTC with integer calendar arithmetic (no libc time
 * zone functions, no TZ): calendar months anchored at a subscription's
 * start, and plain calendar months for invoices.
 *
 * An anchored period k (k = 0 is the one starting at the anchor) starts in
 * the k-th month after the anchor's month, on the anchor's day of the month
 * at the anchor's time of day; when that day does not exist in the month
 * (the 31st in April, the 29th in a February of a common year) it starts on
 * the last day of that month, at the same time.  Every period is computed
 * from the anchor, never from the previous period, so an anchor on the 31st
 * returns to the 31st after February.  Periods are half-open: [start, end).
 *
 * Times are unix seconds.  Supported years: 1 to 9999.
 */

#ifndef AIHUB_PERIOD_H
#define AIHUB_PERIOD_H

#include <stddef.h>
#include <stdint.h>


#define AIHUB_PERIOD_ID_LEN     8      /* "YYYYMMDD" */
#define AIHUB_PERIOD_MONTH_LEN  7      /* "YYYY-MM" */


/* days since 1970-01-01 of a proleptic Gregorian date, and back */
int64_t aihub_days_from_civil(int64_t y, unsigned m, unsigned d);
void aihub_civil_from_days(int64_t days, int64_t *y, unsigned *m,
    unsigned *d);
unsigned aihub_days_in_month(int64_t y, unsigned m);

/*
 * The anchored period containing now: sets [*start, *end) and returns its
 * index k, negative when now is before the anchor (the periods extend
 * backwards the same way; a caller that wants period 0 then uses
 * aihub_period_nth(anchor, 0, ...)).
 */
int64_t aihub_period_current(int64_t anchor, int64_t now, int64_t *start,
    int64_t *end);

/* period k of an anchor */
void aihub_period_nth(int64_t anchor, int64_t k, int64_t *start,
    int64_t *end);

/* the calendar month containing now */
void aihub_period_calendar(int64_t now, int64_t *start, int64_t *end);

/*
 * Writes "YYYYMMDD" (the UTC date of t, e.g. a period's start) and a NUL
 * to buf, at least AIHUB_PERIOD_ID_LEN + 1 bytes; returns the length.
 */
size_t aihub_period_id(int64_t t, char *buf);

/* writes "YYYY-MM" and a NUL, buf of AIHUB_PERIOD_MONTH_LEN + 1 bytes */
size_t aihub_period_month(int64_t t, char *buf);

/* the n low decimal digits of v >= 0, zero-padded, at p; returns p + n */
char *aihub_period_digits(char *p, int64_t v, int n);


#endif /* AIHUB_PERIOD_H */
