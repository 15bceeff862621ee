/*
 * Issued invoices made tamper-evident.  Each invoice is sealed when it is
 * issued: its digest (SHA-256 of everything it states: header, terms and
 * lines) and a chain value linking it to the previous invoice of the same
 * month; the month's row in billing_periods keeps the number of invoices
 * and the chain's last value.  "invoice check" recomputes all three, so a
 * changed field, a changed or deleted line, a deleted or added invoice
 * shows.  Triggers (sql/003) refuse UPDATE and DELETE of sealed rows in
 * the first place; a void is a status change recorded in invoice_voids.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include "aihub_worker.h"
#include "db.h"
#include "invoice.h"


#define AW_SEP  "\x1f"     /* between fields: never in a stored value */


/*
 * The digest of invoice id as stored, into hex[65].  Returns 0, 1 if no
 * such invoice, -1.
 */

int
aw_invoice_digest(MYSQL *db, long long id, char *hex)
{
    MYSQL_RES     *res;
    MYSQL_ROW      row;
    unsigned int   i, nf;
    aw_buf_t       b;

    res = aw_db_query(db, "SELECT id, account, period, plan, calls, "
                      "included_calls, subtotal_cents, total_cents, "
                      "IFNULL(terms, ''), DATE_FORMAT(issued_at, "
                      "'%%Y-%%m-%%d %%H:%%i:%%s') FROM invoices WHERE id = "
                      "%lld", id);
    if (res == NULL) {
        return -1;
    }

    row = mysql_fetch_row(res);

    if (row == NULL) {
        mysql_free_result(res);
        return 1;
    }

    aw_buf_init(&b);
    aw_buf_puts(&b, "aihub-invoice-v1");
    nf = mysql_num_fields(res);

    for (i = 0; i < nf; i++) {
        aw_buf_puts(&b, AW_SEP);
        aw_buf_puts(&b, row[i] ? row[i] : "");
    }

    mysql_free_result(res);

    res = aw_db_query(db, "SELECT kind, model, price_in_micros, "
                      "price_out_micros, prompt_tokens, completion_tokens, "
                      "calls, amount_cents, ref_period, description "
                      "FROM invoice_lines WHERE invoice = %lld ORDER BY id",
                      id);
    if (res == NULL) {
        aw_buf_free(&b);
        return -1;
    }

    nf = mysql_num_fields(res);

    while ((row = mysql_fetch_row(res)) != NULL) {
        aw_buf_puts(&b, "\n");

        for (i = 0; i < nf; i++) {
            aw_buf_puts(&b, i ? AW_SEP : "");
            aw_buf_puts(&b, row[i] ? row[i] : "");
        }
    }

    mysql_free_result(res);

    aw_sha256_hex(b.data, b.len, hex);
    aw_buf_free(&b);

    return 0;
}


/* the chain value after prev (NULL: the month's start) and one invoice */

static void
aw_chain_next(const char *period, const char *prev, long long id,
    const char *digest, char *out)
{
    char  s[256];
    int   n;

    n = snprintf(s, sizeof(s), "%s" AW_SEP "%lld" AW_SEP "%s",
                 prev ? prev : period, id, digest);

    aw_sha256_hex(s, (size_t) n, out);
}


/*
 * Seals invoice id of period (inside the close's transaction, after its
 * lines): its digest, and its chain value from the month's previous one.
 */

int
aw_invoice_seal(MYSQL *db, long long id, const char *period)
{
    char        digest[65], chain[65], prev[65], sql[160], **row;
    aw_rows_t  *res;
    int         have;

    if (aw_invoice_digest(db, id, digest) != 0) {
        return -1;
    }

    snprintf(sql, sizeof(sql), "SELECT chain FROM invoices WHERE period = ? "
             "AND id < %lld AND chain IS NOT NULL ORDER BY id DESC LIMIT 1",
             id);
    res = aw_db_select_params(db, sql, &period, 1);
    if (res == NULL) {
        return -1;
    }

    row = aw_rows_next(res);
    have = row != NULL && row[0] != NULL;

    if (have) {
        snprintf(prev, sizeof(prev), "%s", row[0]);
    }

    aw_rows_free(res);

    aw_chain_next(period, have ? prev : NULL, id, digest, chain);

    snprintf(sql, sizeof(sql), "UPDATE invoices SET digest = ?, chain = ? "
             "WHERE id = %lld", id);

    return aw_db_exec_params(db, sql, (const char *[]) { digest, chain }, 2);
}


/* the month's number of invoices and last chain value, at its close */

int
aw_period_seal(MYSQL *db, const char *period)
{
    return aw_db_exec_params(db, "UPDATE billing_periods SET invoices = "
                             "(SELECT COUNT(*) FROM invoices WHERE period "
                             "= ?), chain = (SELECT chain FROM invoices "
                             "WHERE period = ? ORDER BY id DESC LIMIT 1) "
                             "WHERE period = ?",
                             (const char *[]) { period, period, period }, 3);
}


/*
 * What one invoice states against its seal: its digest, its status (void
 * only with a record in invoice_voids).  Prints each difference; returns
 * how many.
 */

int
aw_invoice_audit_one(MYSQL *db, long long id, long long account,
    const char *p)
{
    MYSQL_RES  *res;
    MYSQL_ROW   row;
    int         bad;
    char        digest[65];

    res = aw_db_query(db, "SELECT i.status, i.digest, v.invoice FROM "
                      "invoices i LEFT JOIN invoice_voids v ON v.invoice = "
                      "i.id WHERE i.id = %lld", id);
    if (res == NULL) {
        return 1;
    }

    row = mysql_fetch_row(res);

    if (row == NULL) {
        mysql_free_result(res);
        return 1;
    }

    bad = 0;

    if (strcmp(row[0], "issued") != 0 && row[2] == NULL) {
        printf("MISMATCH invoice %lld (account %lld, %s): status %s, but "
               "no void was recorded\n", id, account, p, row[0]);
        bad++;
    }

    if (row[1] == NULL) {
        /* issued before invoices were sealed: only the period's chain,
           if any, can tell */
        mysql_free_result(res);
        return bad;
    }

    if (aw_invoice_digest(db, id, digest) != 0
        || strcmp(digest, row[1]) != 0)
    {
        printf("MISMATCH invoice %lld (account %lld, %s): what it states "
               "(header, terms or lines) differs from what was issued "
               "(digest)\n", id, account, p);
        bad++;
    }

    mysql_free_result(res);

    return bad;
}


/*
 * The chain of one closed month: every invoice of it, in id order, must
 * link to the previous one, and their number and the last link must be
 * what the close recorded.  Prints each difference; returns how many.
 */

int
aw_period_audit(MYSQL *db, const char *period)
{
    char      **row;
    aw_rows_t  *res;
    int         bad, sealed;
    long long   count, n;
    char        head[65], chain[65], prev[65];

    res = aw_db_select_params(db, "SELECT invoices, chain FROM "
                              "billing_periods WHERE period = ?", &period, 1);
    if (res == NULL) {
        return 1;
    }

    row = aw_rows_next(res);
    sealed = row != NULL && row[0] != NULL;

    if (sealed) {
        count = strtoll(row[0], NULL, 10);
        snprintf(head, sizeof(head), "%s", row[1] ? row[1] : "");
    }

    aw_rows_free(res);

    if (!sealed) {
        /* not closed, or closed before invoices were sealed */
        return 0;
    }

    res = aw_db_select_params(db, "SELECT id, IFNULL(digest, ''), "
                              "IFNULL(chain, '') FROM invoices WHERE "
                              "period = ? ORDER BY id", &period, 1);
    if (res == NULL) {
        return 1;
    }

    bad = 0;
    n = 0;

    while ((row = aw_rows_next(res)) != NULL) {
        aw_chain_next(period, n ? prev : NULL, strtoll(row[0], NULL, 10),
                      row[1], chain);

        if (strcmp(chain, row[2]) != 0) {
            printf("MISMATCH %s: invoice %s does not follow the one "
                   "before it (an invoice deleted, added or changed)\n",
                   period, row[0]);
            bad++;
        }

        /* go on from what is stored: one break is reported once */
        snprintf(prev, sizeof(prev), "%s", row[2]);
        n++;
    }

    aw_rows_free(res);

    if (n != count) {
        printf("MISMATCH %s: %lld invoices, %lld issued at the close\n",
               period, n, count);
        bad++;

    } else if (strcmp(n ? prev : "", head) != 0) {
        printf("MISMATCH %s: the last invoice is not the one issued last "
               "at the close\n", period);
        bad++;
    }

    return bad;
}
