/*
 * The billing report for finance, from the ledger (cmd_report.c is the
 * command):
 *   invoices.csv   one row per invoice line (RFC 4180, header row)
 *   report.json    the same invoices plus the summaries below
 *   report.html    self-contained (inline CSS and SVG, no network): revenue
 *                  by plan, top accounts, usage by model, calls per day
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "db.h"
#include "invoice.h"
#include "report.h"


typedef struct {
    char       label[136];
    long long  value;
    long long  extra;
} aw_bar_t;


/* what the three files show */

typedef struct {
    const char  *period;
    time_t       start;
    time_t       end;
    char         stamp[32];
    long long    ninv;
    long long    total;
    aw_bar_t    *plan;
    aw_bar_t    *acct;
    aw_bar_t    *model;
    aw_bar_t    *day;
    size_t       nplan;
    size_t       nacct;
    size_t       nmodel;
    size_t       nday;
} aw_report_t;


/* "-497", "12", "-4.97": a number, which a spreadsheet reads as one */

static int
aw_csv_number(const char *s)
{
    int  digits;

    s += *s == '-';

    for (digits = 0; *s >= '0' && *s <= '9'; s++) {
        digits++;
    }

    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++) {
            /* void */
        }
    }

    return digits > 0 && *s == '\0';
}


/*
 * One RFC 4180 field.  A field a spreadsheet would evaluate as a formula
 * (starting with =, +, -, @, a tab or a carriage return, unless it is a
 * plain number such as "-497") is quoted with a leading ', so
 * "-2+3+cmd|..." stays text.
 */

static void
aw_csv_field(aw_buf_t *b, const char *s)
{
    const char  *p;
    int          formula;

    formula = s[0] != '\0' && strchr("=+-@\t\r", s[0]) != NULL
              && !aw_csv_number(s);

    if (strpbrk(s, ",\"\r\n\t") == NULL && !formula && s[0] != '-') {
        aw_buf_puts(b, s);
        return;
    }

    aw_buf_puts(b, "\"");

    if (formula) {
        aw_buf_puts(b, "'");
    }

    for (p = s; *p; p++) {
        if (*p == '"') {
            aw_buf_puts(b, "\"\"");

        } else {
            aw_buf_append(b, p, 1);
        }
    }

    aw_buf_puts(b, "\"");
}


static void
aw_html_esc(aw_buf_t *b, const char *s)
{
    for ( ; *s; s++) {
        switch (*s) {
        case '<': aw_buf_puts(b, "&lt;"); break;
        case '>': aw_buf_puts(b, "&gt;"); break;
        case '&': aw_buf_puts(b, "&amp;"); break;
        case '"': aw_buf_puts(b, "&quot;"); break;
        case '\'': aw_buf_puts(b, "&#39;"); break;
        default: aw_buf_append(b, s, 1);
        }
    }
}


static int
aw_write_file(const char *dir, const char *name, const aw_buf_t *b)
{
    char   path[4096];
    FILE  *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);

    fp = fopen(path, "w");
    if (fp == NULL || fwrite(b->data, 1, b->len, fp) != b->len) {
        aw_log(AW_LOG_ERROR, "cannot write \"%s\": %s", path,
               strerror(errno));
        if (fp) {
            fclose(fp);
        }
        return -1;
    }

    if (fclose(fp) != 0) {
        aw_log(AW_LOG_ERROR, "cannot write \"%s\": %s", path,
               strerror(errno));
        return -1;
    }

    printf("wrote %s\n", path);

    return 0;
}


/* the SQL fmt makes may hold one "?": value (none when NULL) */

static size_t
aw_bars_load(MYSQL *db, aw_bar_t **bars, const char *value,
    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static size_t
aw_bars_load(MYSQL *db, aw_bar_t **bars, const char *value,
    const char *fmt, ...)
{
    va_list     ap;
    char        q[4096], **row;
    size_t      n;
    aw_rows_t  *res;

    va_start(ap, fmt);
    vsnprintf(q, sizeof(q), fmt, ap);
    va_end(ap);

    *bars = NULL;

    res = aw_db_select_params(db, q, &value, value ? 1 : 0);
    if (res == NULL) {
        return 0;
    }

    *bars = aw_xmalloc((res->nrows + 1) * sizeof(aw_bar_t));
    n = 0;

    while ((row = aw_rows_next(res)) != NULL) {
        snprintf((*bars)[n].label, sizeof((*bars)[0].label), "%s",
                 row[0] ? row[0] : "");
        (*bars)[n].value = row[1] ? strtoll(row[1], NULL, 10) : 0;
        (*bars)[n].extra = row[2] ? strtoll(row[2], NULL, 10) : 0;
        n++;
    }

    aw_rows_free(res);

    return n;
}


static void
aw_json_bars(cJSON *o, const char *name, const char *vname,
    const char *xname, aw_bar_t *bars, size_t n)
{
    cJSON   *a, *e;
    size_t   i;

    a = cJSON_AddArrayToObject(o, name);

    for (i = 0; i < n; i++) {
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", bars[i].label);
        cJSON_AddNumberToObject(e, vname, (double) bars[i].value);
        if (xname) {
            cJSON_AddNumberToObject(e, xname, (double) bars[i].extra);
        }
        cJSON_AddItemToArray(a, e);
    }
}


/* a horizontal bar chart as inline SVG; money: values are cents */

static void
aw_svg_hbars(aw_buf_t *b, const char *id, const char *title, aw_bar_t *bars,
    size_t n, int money)
{
    size_t     i;
    long long  max;
    double     w;
    char       v[48];

    max = 1;

    for (i = 0; i < n; i++) {
        if (bars[i].value > max) {
            max = bars[i].value;
        }
    }

    aw_buf_printf(b, "<section><h2>%s</h2>\n<svg id=\"%s\" class=\"chart\" "
                  "xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" "
                  "height=\"%zu\" role=\"img\" aria-label=\"%s\">\n",
                  title, id, n * 28 + 10, title);

    for (i = 0; i < n; i++) {
        w = 420.0 * (double) bars[i].value / (double) max;

        if (money) {
            aw_money_format(bars[i].value, v + 1, sizeof(v) - 1);
            v[0] = '$';

        } else {
            snprintf(v, sizeof(v), "%lld", bars[i].value);
        }

        aw_buf_printf(b, "<text x=\"0\" y=\"%zu\" class=\"l\">",
                      i * 28 + 22);
        aw_html_esc(b, bars[i].label);
        aw_buf_printf(b, "</text><rect class=\"bar\" x=\"200\" y=\"%zu\" "
                      "width=\"%.1f\" height=\"20\"><title>", i * 28 + 6,
                      w < 1 && bars[i].value > 0 ? 1.0 : w);
        aw_html_esc(b, bars[i].label);
        aw_buf_printf(b, ": %s</title></rect><text x=\"%.1f\" y=\"%zu\" "
                      "class=\"v\">%s</text>\n", v, 206 + w, i * 28 + 22, v);
    }

    if (n == 0) {
        aw_buf_puts(b, "<text x=\"0\" y=\"20\">no data</text>\n");
    }

    aw_buf_puts(b, "</svg></section>\n");
}


/* calls per day: vertical bars over the days of the month */

static void
aw_svg_days(aw_buf_t *b, aw_bar_t *bars, size_t n)
{
    size_t     i;
    long long  max;
    double     h, x, bw;

    max = 1;

    for (i = 0; i < n; i++) {
        if (bars[i].value > max) {
            max = bars[i].value;
        }
    }

    bw = n ? 680.0 / (double) n : 680.0;

    aw_buf_printf(b, "<section><h2>Calls per day</h2>\n<svg id=\"chart-days\""
                  " class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" "
                  "width=\"720\" height=\"260\" role=\"img\" aria-label=\""
                  "Calls per day\">\n<line x1=\"30\" y1=\"220\" x2=\"710\" "
                  "y2=\"220\" stroke=\"#888\"/>\n<text x=\"0\" y=\"20\" "
                  "class=\"v\">%lld</text>\n", max);

    for (i = 0; i < n; i++) {
        h = 200.0 * (double) bars[i].value / (double) max;
        x = 30 + (double) i * bw;

        aw_buf_printf(b, "<text x=\"%.1f\" y=\"238\" class=\"d\">%s</text>\n",
                      x + bw / 2, bars[i].label + 8);

        if (bars[i].value == 0) {
            continue;
        }

        aw_buf_printf(b, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" "
                      "width=\"%.1f\" height=\"%.1f\"><title>%s: %lld "
                      "calls</title></rect>", x + 1, 220 - h,
                      bw > 3 ? bw - 2 : 1, h, bars[i].label, bars[i].value);
    }

    if (n == 0) {
        aw_buf_puts(b, "<text x=\"40\" y=\"120\">no data</text>\n");
    }

    aw_buf_puts(b, "</svg></section>\n");
}


static void
aw_html_table(aw_buf_t *b, const char *title, const char *h1,
    const char *h2, aw_bar_t *bars, size_t n, int money)
{
    size_t  i;
    char    v[48];

    aw_buf_printf(b, "<table><caption>%s</caption><tr><th>%s</th>"
                  "<th>%s</th></tr>\n", title, h1, h2);

    for (i = 0; i < n; i++) {
        if (money) {
            aw_money_format(bars[i].value, v, sizeof(v));

        } else {
            snprintf(v, sizeof(v), "%lld", bars[i].value);
        }

        aw_buf_puts(b, "<tr><td>");
        aw_html_esc(b, bars[i].label);
        aw_buf_printf(b, "</td><td class=\"n\">%s%s</td></tr>\n",
                      money ? "$" : "", v);
    }

    aw_buf_puts(b, "</table>\n");
}


/* invoices.csv: one row per line of the month's issued invoices */

static int
aw_report_csv(MYSQL *db, const char *period, aw_buf_t *csv)
{
    size_t      i;
    char        money[32];
    char      **row;
    aw_rows_t  *res;

    res = aw_db_select_params(db, "SELECT i.id, i.period, a.id, a.name, "
                              "i.plan, l.kind, l.model, l.price_in_micros, "
                              "l.price_out_micros, l.calls, "
                              "l.prompt_tokens, l.completion_tokens, "
                              "l.amount_cents, l.ref_period, "
                              "l.description, i.total_cents FROM invoices i "
                              "JOIN accounts a ON a.id = i.account JOIN "
                              "invoice_lines l ON l.invoice = i.id WHERE "
                              "i.period = ? AND i.status = 'issued' "
                              "ORDER BY i.id, l.id", &period, 1);
    if (res == NULL) {
        return -1;
    }

    aw_buf_puts(csv, "invoice_id,period,account_id,account,plan,kind,model,"
                "price_in_micros_per_m,price_out_micros_per_m,calls,"
                "prompt_tokens,completion_tokens,amount_cents,amount_usd,"
                "ref_period,description,invoice_total_usd\r\n");

    while ((row = aw_rows_next(res)) != NULL) {
        for (i = 0; i < 13; i++) {
            aw_csv_field(csv, row[i]);
            aw_buf_puts(csv, ",");
        }

        aw_money_format(strtoll(row[12], NULL, 10), money, sizeof(money));
        aw_buf_printf(csv, "%s,", money);
        aw_csv_field(csv, row[13]);
        aw_buf_puts(csv, ",");
        aw_csv_field(csv, row[14]);
        aw_money_format(strtoll(row[15], NULL, 10), money, sizeof(money));
        aw_buf_printf(csv, ",%s\r\n", money);
    }

    aw_rows_free(res);

    return 0;
}


/*
 * The summaries: revenue by plan, top accounts, models, days.  -1 if a
 * query failed (a report of $0 would be written otherwise).
 */

static int
aw_report_load(MYSQL *db, aw_report_t *r)
{
    size_t  i;
    time_t  now;
    char    t0[AW_SQL_TIME_LEN], t1[AW_SQL_TIME_LEN];

    /* an invoice of late usage alone has no plan (invoice_issue.c) */

    r->nplan = aw_bars_load(db, &r->plan, r->period, "SELECT IF(i.plan = "
                            "'', '" AW_INVOICE_NO_PLAN "', i.plan), "
                            "SUM(i.total_cents), COUNT(*) FROM invoices i "
                            "WHERE i.period = ? AND i.status = 'issued' "
                            "GROUP BY 1 ORDER BY 2 DESC, 1");
    r->nacct = aw_bars_load(db, &r->acct, r->period, "SELECT a.name, "
                            "i.total_cents, i.calls FROM invoices i JOIN "
                            "accounts a ON a.id = i.account WHERE "
                            "i.period = ? AND i.status = 'issued' ORDER BY "
                            "i.total_cents DESC, a.name LIMIT 10");
    r->nmodel = aw_bars_load(db, &r->model, NULL, "SELECT model, "
                             "SUM(total_tokens), SUM(calls) FROM usage_daily "
                             "WHERE day >= %s AND day < %s GROUP BY model "
                             "ORDER BY 2 DESC, 1", aw_sql_time(r->start, t0),
                             aw_sql_time(r->end, t1));
    r->nday = aw_bars_load(db, &r->day, NULL, "SELECT DATE_FORMAT(day, "
                           "'%%Y-%%m-%%d'), SUM(calls), SUM(total_tokens) "
                           "FROM usage_daily WHERE day >= %s AND day < %s "
                           "GROUP BY day ORDER BY day",
                           aw_sql_time(r->start, t0), aw_sql_time(r->end, t1));

    /* aw_bars_load() leaves no array only when its query failed */
    if (r->plan == NULL || r->acct == NULL || r->model == NULL
        || r->day == NULL)
    {
        return -1;
    }

    r->total = 0;

    for (i = 0; i < r->nplan; i++) {
        r->total += r->plan[i].value;
    }

    /* void invoices are no revenue: neither listed nor counted */
    r->ninv = aw_db_scalar_params(db, -1, "SELECT COUNT(*) FROM invoices "
                                  "WHERE period = ? AND status = 'issued'",
                                  (const char *[]) { r->period }, 1);
    if (r->ninv < 0) {
        return -1;
    }

    now = time(NULL);
    strftime(r->stamp, sizeof(r->stamp), "%Y-%m-%dT%H:%M:%SZ",
             gmtime(&now));

    return 0;
}


/* report.json: the summaries and every invoice of the period */

static cJSON *
aw_report_json(MYSQL *db, const aw_report_t *r)
{
    cJSON      *json, *invs, *one;
    char      **row;
    aw_rows_t  *res;

    json = cJSON_CreateObject();

    cJSON_AddStringToObject(json, "period", r->period);
    cJSON_AddStringToObject(json, "generated_at", r->stamp);
    cJSON_AddStringToObject(json, "currency", "USD");
    cJSON_AddNumberToObject(json, "invoice_count", (double) r->ninv);
    cJSON_AddNumberToObject(json, "total_cents", (double) r->total);
    aw_json_bars(json, "revenue_by_plan", "total_cents", "invoices", r->plan,
                 r->nplan);
    aw_json_bars(json, "top_accounts", "total_cents", "calls", r->acct,
                 r->nacct);
    aw_json_bars(json, "usage_by_model", "total_tokens", "calls", r->model,
                 r->nmodel);
    aw_json_bars(json, "calls_per_day", "calls", "total_tokens", r->day,
                 r->nday);

    invs = cJSON_AddArrayToObject(json, "invoices");
    res = aw_db_select_params(db, "SELECT id FROM invoices WHERE period = "
                              "? AND status = 'issued' ORDER BY id",
                              (const char *[]) { r->period }, 1);
    if (res == NULL) {
        cJSON_Delete(json);
        return NULL;
    }

    while ((row = aw_rows_next(res)) != NULL) {
        one = aw_invoice_json(db, strtoll(row[0], NULL, 10));

        if (one == NULL) {
            /* an invoice left out would not add up to the revenue */
            aw_rows_free(res);
            cJSON_Delete(json);
            return NULL;
        }

        cJSON_AddItemToArray(invs, one);
    }

    aw_rows_free(res);

    return json;
}


/* every day of the month on the axis, days without calls at zero */

static void
aw_report_days(aw_buf_t *html, const aw_report_t *r)
{
    size_t     ndays, k, i;
    aw_bar_t  *all;

    ndays = (size_t) ((r->end - r->start) / 86400);
    all = aw_xmalloc(ndays * sizeof(aw_bar_t));

    for (k = 0; k < ndays; k++) {
        snprintf(all[k].label, sizeof(all[k].label), "%s-%02zu", r->period,
                 k + 1);
        all[k].value = 0;
        all[k].extra = 0;
    }

    for (i = 0; i < r->nday; i++) {
        k = (size_t) atoi(r->day[i].label + 8);

        if (k >= 1 && k <= ndays) {
            all[k - 1] = r->day[i];
        }
    }

    aw_svg_days(html, all, ndays);
    free(all);
}


/* report.html: self-contained, inline CSS and SVG */

static void
aw_report_html(aw_buf_t *html, const aw_report_t *r)
{
    char  money[32];

    aw_money_format(r->total, money, sizeof(money));

    aw_buf_printf(html, "<!DOCTYPE html>\n<html lang=\"en\"><head>"
                  "<meta charset=\"utf-8\"><title>aihub billing report "
                  "%s</title>\n<style>\nbody{font:14px/1.4 system-ui,sans-"
                  "serif;margin:2em;color:#222;max-width:960px}\n"
                  "h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.5em}\n"
                  ".kpi{display:inline-block;margin-right:2em;padding:.6em 1em;"
                  "background:#f3f5f8;border-radius:6px}\n"
                  ".kpi b{display:block;font-size:1.4em}\n"
                  ".chart .bar{fill:#3b6fd8}.chart text{font-size:12px;"
                  "fill:#333}.chart .d{font-size:9px;text-anchor:middle}\n"
                  "table{border-collapse:collapse;margin:1em 0}td,th{border:"
                  "1px solid #ddd;padding:.3em .6em}td.n{text-align:right}\n"
                  "caption{text-align:left;font-weight:bold}\n</style>"
                  "</head>\n<body>\n<h1>aihub billing report &mdash; %s</h1>\n"
                  "<p>Generated %s from the ledger (MySQL).  Amounts in USD."
                  "</p>\n<div class=\"kpi\">Invoices<b id=\"kpi-invoices\">"
                  "%lld</b></div><div class=\"kpi\">Revenue<b id=\"kpi-"
                  "revenue\">$%s</b></div>\n", r->period, r->period,
                  r->stamp, r->ninv, money);

    aw_svg_hbars(html, "chart-plans", "Revenue by plan", r->plan, r->nplan,
                 1);
    aw_svg_hbars(html, "chart-accounts", "Top accounts", r->acct, r->nacct,
                 1);
    aw_svg_hbars(html, "chart-models", "Usage by model (tokens)", r->model,
                 r->nmodel, 0);
    aw_report_days(html, r);

    aw_html_table(html, "Revenue by plan", "plan", "revenue", r->plan,
                  r->nplan, 1);
    aw_html_table(html, "Top accounts", "account", "total", r->acct,
                  r->nacct, 1);
    aw_html_table(html, "Usage by model", "model", "tokens", r->model,
                  r->nmodel, 0);
    aw_buf_puts(html, "</body></html>\n");
}


/*
 * Writes DIR/invoices.csv, DIR/report.json and DIR/report.html for the
 * period [start, end).  0, or -1 with the error logged.
 */

int
aw_report_write(MYSQL *db, const char *period, time_t start, time_t end,
    const char *out)
{
    int           rc;
    char         *text;
    aw_buf_t      csv, html, j;
    cJSON        *json;
    aw_report_t   r;

    memset(&r, 0, sizeof(r));
    r.period = period;
    r.start = start;
    r.end = end;

    rc = -1;
    json = NULL;
    aw_buf_init(&csv);
    aw_buf_init(&html);
    aw_buf_init(&j);

    /*
     * one snapshot for all three files: a close or a void committing
     * meanwhile is in all of them or in none
     */

    if (aw_db_exec(db, "START TRANSACTION WITH CONSISTENT SNAPSHOT, "
                   "READ ONLY") != 0)
    {
        goto done;
    }

    if (aw_report_csv(db, period, &csv) != 0) {
        goto done;
    }

    if (aw_report_load(db, &r) != 0) {
        goto done;
    }

    json = aw_report_json(db, &r);
    if (json == NULL) {
        goto done;
    }

    aw_report_html(&html, &r);

    text = cJSON_Print(json);
    aw_buf_puts(&j, text);
    aw_buf_puts(&j, "\n");
    free(text);

    if (aw_write_file(out, "invoices.csv", &csv) == 0
        && aw_write_file(out, "report.json", &j) == 0
        && aw_write_file(out, "report.html", &html) == 0)
    {
        rc = 0;
    }

done:

    (void) aw_db_exec(db, "COMMIT");

    cJSON_Delete(json);
    aw_buf_free(&csv);
    aw_buf_free(&html);
    aw_buf_free(&j);
    free(r.plan);
    free(r.acct);
    free(r.model);
    free(r.day);

    return rc;
}
