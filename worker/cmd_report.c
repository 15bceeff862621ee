/*
 * "aihub-worker report --period YYYY-MM --out DIR": the billing report
 * for finance (report.c renders it):
 *   invoices.csv   one row per invoice line (RFC 4180, header row)
 *   report.json    the same invoices plus the summaries below
 *   report.html    self-contained (inline CSS and SVG, no network): revenue
 *                  by plan, top accounts, usage by model, calls per day
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "aihub_worker.h"
#include "command.h"
#include "db_stmt.h"
#include "report.h"


static const char  aw_report_usage[] =
    "usage: " AW_NAME " report --period YYYY-MM --out DIR\n"
    "\n"
    "Writes DIR/invoices.csv, DIR/report.json and DIR/report.html (self-\n"
    "contained, charts included) for the period's issued invoices and\n"
    "usage.\n";


int
aw_cmd_report(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *period, *out;
    int          rc, npos;
    time_t       start, end;
    long long    closed;
    aw_opt_t     opts[] = {
        { "--period", 1, &period },
        { "--out", 1, &out },
        { NULL, 0, NULL }
    };

    period = out = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_report_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (period == NULL || aw_period_bounds(period, &start, &end) != 0) {
        aw_usage_error(aw_report_usage, "--period YYYY-MM is required");
        return AW_EXIT_USAGE;
    }

    if (out == NULL || *out == '\0') {
        aw_usage_error(aw_report_usage, "--out DIR is required");
        return AW_EXIT_USAGE;
    }

    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        aw_log(AW_LOG_ERROR, "cannot create \"%s\": %s", out,
               strerror(errno));
        return AW_EXIT_FAIL;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    /* a month not closed has issued nothing: said, not a silent $0 */

    closed = aw_db_scalar_params(ctx->db, -1, "SELECT COUNT(*) FROM "
                                 "billing_periods WHERE period = ?",
                                 (const char *[]) { period }, 1);
    if (closed < 0) {
        return AW_EXIT_FAIL;
    }

    if (closed == 0) {
        aw_log(AW_LOG_WARN, "period %s is not closed, so no invoice was "
               "issued for it: the report shows none (\"invoice close "
               "--period %s\" once the month has ended)", period, period);
    }

    if (aw_report_write(ctx->db, period, start, end, out) != 0) {
        return AW_EXIT_FAIL;
    }

    return AW_EXIT_OK;
}
