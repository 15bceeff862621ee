/*
 * Billing arithmetic for one account and one period (pure): successful
 * calls are fed in time order; the calls beyond the included allowance
 * whose plan allows overage are summed per (model, price) line; each line
 * is rounded once, to cents, half up (aihub_money.c).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aihub_worker.h"


void
aw_billing_init(aw_billing_t *b, long long included)
{
    memset(b, 0, sizeof(*b));
    b->included = included;
}


void
aw_billing_free(aw_billing_t *b)
{
    free(b->lines);
    b->lines = NULL;
    b->nlines = b->cap = 0;
}


static aw_usage_line_t *
aw_billing_line(aw_billing_t *b, const char *model, long long price_in,
    long long price_out)
{
    size_t            i;
    aw_usage_line_t  *l;

    for (i = 0; i < b->nlines; i++) {
        l = &b->lines[i];

        if (l->price_in == price_in && l->price_out == price_out
            && strcmp(l->model, model) == 0)
        {
            return l;
        }
    }

    if (b->nlines == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->lines = realloc(b->lines, b->cap * sizeof(aw_usage_line_t));
        if (b->lines == NULL) {
            abort();
        }
    }

    l = &b->lines[b->nlines++];
    memset(l, 0, sizeof(*l));
    snprintf(l->model, sizeof(l->model), "%s", model);
    l->price_in = price_in;
    l->price_out = price_out;

    return l;
}


/*
 * The output tokens a call is billed for at the output price: total -
 * prompt, so thinking tokens a provider counts beyond the completion are
 * billed (README "Cost", the module's rule); a total below prompt +
 * completion (which the validator refuses) bills the completion.
 */

long long
aw_billing_output_tokens(long long prompt_tokens, long long completion_tokens,
    long long total_tokens)
{
    if (total_tokens - prompt_tokens < completion_tokens) {
        return completion_tokens;
    }

    return total_tokens - prompt_tokens;
}


/* one successful call, in time order; returns 1 if billed as overage */

int
aw_billing_call(aw_billing_t *b, const char *model, int overage_allowed,
    long long price_in, long long price_out, long long prompt_tokens,
    long long completion_tokens)
{
    aw_usage_line_t  *l;

    b->calls++;
    b->prompt_tokens += prompt_tokens;
    b->completion_tokens += completion_tokens;

    if (b->calls <= b->included) {
        return 0;
    }

    b->over_calls++;

    if (!overage_allowed) {
        b->unbilled_calls++;
        return 0;
    }

    l = aw_billing_line(b, model, price_in, price_out);
    l->calls++;
    l->prompt_tokens += prompt_tokens;
    l->completion_tokens += completion_tokens;

    return 1;
}


/*
 * Calls beyond the allowance, summed already (invoice.c aggregates them in
 * SQL per model, plan and price): n calls of one model at one price.
 */

void
aw_billing_over(aw_billing_t *b, const char *model, int overage_allowed,
    long long price_in, long long price_out, long long n,
    long long prompt_tokens, long long output_tokens)
{
    aw_usage_line_t  *l;

    b->over_calls += n;

    if (!overage_allowed) {
        b->unbilled_calls += n;
        return;
    }

    l = aw_billing_line(b, model, price_in, price_out);
    l->calls += n;
    l->prompt_tokens += prompt_tokens;
    l->completion_tokens += output_tokens;
}


/* rounds every line; returns the overage total in cents */

long long
aw_billing_finish(aw_billing_t *b)
{
    size_t     i;
    long long  total;

    total = 0;

    for (i = 0; i < b->nlines; i++) {
        b->lines[i].amount_cents = aihub_money_line_cents(
            b->lines[i].prompt_tokens, b->lines[i].completion_tokens,
            b->lines[i].price_in, b->lines[i].price_out);
        total += b->lines[i].amount_cents;
    }

    return total;
}
