/*
 * A minimal TAP producer for the unit tests: ok(cond, fmt, ...) prints
 * "ok N - desc" or "not ok N - desc"; diag() prints "# ..." lines;
 * tap_done() prints the plan "1..N" (TAP allows the plan last) and returns
 * the exit status.
 */

#ifndef AIHUB_TAP_H
#define AIHUB_TAP_H

#include <stdarg.h>
#include <stdio.h>


static int  tap_n;
static int  tap_failed;


static int
ok(int cond, const char *fmt, ...)
{
    va_list  ap;

    tap_n++;

    if (!cond) {
        tap_failed++;
    }

    printf("%sok %d - ", cond ? "" : "not ", tap_n);

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);

    printf("\n");
    fflush(stdout);

    return cond;
}


static void
diag(const char *fmt, ...)
{
    va_list  ap;

    printf("# ");

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);

    printf("\n");
}


static int
tap_done(void)
{
    printf("1..%d\n", tap_n);

    if (tap_failed) {
        diag("failed %d of %d", tap_failed, tap_n);
    }

    return tap_failed ? 1 : 0;
}


#endif /* AIHUB_TAP_H */
