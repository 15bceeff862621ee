/*
 * The billing report for finance (report.c).
 */

#ifndef AW_REPORT_H
#define AW_REPORT_H

#include <time.h>

#include "db.h"


/* report.c: the billing report's three files */
int aw_report_write(MYSQL *db, const char *period, time_t start, time_t end,
    const char *out);


#endif /* AW_REPORT_H */
