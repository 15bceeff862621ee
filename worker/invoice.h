/*
 * Invoices (invoice.c, invoice_issue.c).
 */

#ifndef AW_INVOICE_H
#define AW_INVOICE_H

#include <time.h>

#include "db.h"


/*
 * invoice.c: the invoice of one account and period, computed from
 * usage_events, and its JSON; invoice_issue.c: issuing and checking;
 * cmd_invoice.c: the commands.
 */

typedef struct {
    char       kind[12];
    char       model[129];
    long long  price_in;
    long long  price_out;
    long long  prompt_tokens;
    long long  completion_tokens;
    long long  calls;
    long long  amount_cents;
    char       ref_period[8];
    char       description[256];
} aw_line_t;


/*
 * The terms an invoice is computed with, stored with it (invoices.terms)
 * so that late events and "check" use the terms of that month, not
 * today's: the plan in force at the period's end, its base fee (or the
 * account's contract price), the allowance, the spend cap, and which plan
 * names may go beyond the allowance.
 */

#define AW_TERMS_PLANS  256                 /* plans there may be */
#define AW_TERMS_TEXT   (AW_TERMS_PLANS * 36 + 128)   /* stored form */

typedef struct {
    char        plan[33];
    long long   base_cents;
    long long   included;
    long long   cap_micros;
    struct {
        char    name[33];
        int     overage;
    }           plans[AW_TERMS_PLANS];
    size_t      nplans;
} aw_terms_t;


typedef struct {
    long long   account;
    char        plan[33];
    long long   included;
    long long   calls;
    long long   total_cents;
    aw_line_t  *lines;
    size_t      nlines;
    size_t      cap;
} aw_invoice_t;


/* which events a computation reads */
#define AW_EVENTS_ALL     -1LL     /* every event of the period */
#define AW_EVENTS_BILLED   0LL     /* events some invoice billed */


/* the largest included-calls of the plans in force during [start, end) */
long long aw_account_allowance(MYSQL *db, long long account, time_t start,
    time_t end);

/*
 * The stored terms of an invoice issued for a month without a
 * subscription: it bills only late usage of earlier closed months.
 */
#define AW_TERMS_NONE  "v1 none"

/* how the plan of such an invoice (stored as '') is shown */
#define AW_INVOICE_NO_PLAN  "(no subscription)"

int aw_terms_load(MYSQL *db, long long account, time_t start, time_t end,
    aw_terms_t *t);
int aw_terms_format(const aw_terms_t *t, char *out, size_t size);
int aw_terms_parse(const char *s, aw_terms_t *t);
int aw_terms_of_invoice(MYSQL *db, long long account, const char *period,
    aw_terms_t *t);

/* the terms at a month's end: held (terms_held.c), or today's tables */
int aw_terms_at_end(MYSQL *db, long long account, const char *period,
    time_t start, time_t end, aw_terms_t *t);

/* terms_held.c: the terms of the ended months not closed yet, held before
   a change (plan set, account override) for the accounts it touches */
int aw_terms_hold(MYSQL *db, const char *where, const char *value);

aw_line_t *aw_invoice_add(aw_invoice_t *inv, const char *kind);
void aw_invoice_free(aw_invoice_t *inv);
int aw_invoice_compute(MYSQL *db, long long account, const char *period,
    long long which, const aw_terms_t *terms, aw_invoice_t *inv);

typedef struct cJSON  cJSON;

int aw_invoice_issue(MYSQL *db, long long account, const char *period,
    time_t start, time_t end, long long *total);
int aw_invoice_check_one(MYSQL *db, long long id, long long account,
    const char *period, long long total);
cJSON *aw_invoice_json(MYSQL *db, long long id);

/* invoice_audit.c: seals and their check */
int aw_invoice_digest(MYSQL *db, long long id, char *hex);
int aw_invoice_seal(MYSQL *db, long long id, const char *period);
int aw_period_seal(MYSQL *db, const char *period);
int aw_invoice_audit_one(MYSQL *db, long long id, long long account,
    const char *p);
int aw_period_audit(MYSQL *db, const char *period);
int aw_invoice_deliver_all(MYSQL *db, const char *period,
    long long budget_ms);


#endif /* AW_INVOICE_H */
