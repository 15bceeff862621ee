/*
 * Records read from Redis: a key record and a catalog entry from
 * (field, value) strings, numbers at their limits, unknown and repeated
 * fields, missing required fields, and elements that are not strings.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "aihub_record.h"
#include "tap.h"


#define MAX_ELTS  40


static aihub_rstr_t  elts[MAX_ELTS];
static size_t        nelts;


/* elements from C strings, NULL for an element that is not a string */

static void
reply(const char *first, ...)
{
    va_list      ap;
    const char  *s;

    nelts = 0;
    va_start(ap, first);

    for (s = first; s != (const char *) -1; s = va_arg(ap, const char *)) {
        elts[nelts].data = (const unsigned char *) s;
        elts[nelts].len = s ? strlen(s) : 0;
        nelts++;
    }

    va_end(ap);
}


#define END  ((const char *) -1)

#define BASE  "account", "7", "prefix", "ai-hub-Ab12Cd34"


static int
key(aihub_key_record_t *rec)
{
    return aihub_key_record_parse(rec, elts, nelts);
}


static int
view_is(aihub_rstr_t v, const char *want)
{
    return v.len == strlen(want) && memcmp(v.data, want, v.len) == 0;
}


int
main(void)
{
    aihub_key_record_t    rec;
    aihub_model_record_t  m;

    /* numbers */

    ok(aihub_record_number((const unsigned char *) "0", 1) == 0, "0");
    ok(aihub_record_number((const unsigned char *) "9223372036854775807",
                           19) == INT64_MAX, "INT64_MAX");
    ok(aihub_record_number((const unsigned char *) "9223372036854775808",
                           19) == -1, "INT64_MAX + 1 is no number");
    ok(aihub_record_number((const unsigned char *) "-1", 2) == -1,
       "a sign is no number");
    ok(aihub_record_number((const unsigned char *) "12a", 3) == -1,
       "a letter is no number");
    ok(aihub_record_number((const unsigned char *) "", 0) == -1,
       "empty is no number");
    ok(aihub_record_number((const unsigned char *) " 1", 2) == -1,
       "a space is no number");

    /* a whole key record */

    reply(BASE, "plan", "pro", "scopes", "Chat,ADMIN", "status", "active",
          "expires", "1800000000", "anchor", "1764547200", "rpm", "60",
          "tpm", "10000", "included", "1000", "overage", "1",
          "spend_cap", "5000000", "max_tokens", "4096", "models", "*",
          "label", "ci", "account_name", "acme", END);

    ok(key(&rec) == 0, "a whole key record is valid");
    ok(rec.account_id == 7 && rec.expires == 1800000000
       && rec.anchor == 1764547200 && rec.rpm == 60 && rec.tpm == 10000
       && rec.included == 1000 && rec.spend_cap == 5000000
       && rec.max_tokens == 4096, "its numbers");
    ok(rec.active && rec.overage && rec.chat && rec.admin,
       "its flags (scopes in any case)");
    ok(view_is(rec.prefix, "ai-hub-Ab12Cd34") && view_is(rec.plan, "pro")
       && view_is(rec.models, "*"), "its strings");

    /* the same, fields in reverse order */

    reply("models", "*", "max_tokens", "4096", "status", "active",
          "prefix", "ai-hub-Ab12Cd34", "account", "7", END);
    ok(key(&rec) == 0 && rec.account_id == 7 && rec.max_tokens == 4096
       && rec.active && view_is(rec.models, "*"),
       "field order does not matter");

    /* numbers that are not: no limit */

    reply(BASE, "rpm", "-5", "tpm", "", "expires", "99999999999999999999",
          "overage", "yes", "status", "Active", END);
    ok(key(&rec) == 0 && rec.rpm == 0 && rec.tpm == 0 && rec.expires == 0
       && !rec.overage, "a value that is not a number reads as 0");
    ok(!rec.active, "status must be exactly \"active\"");

    /* refused records */

    reply("prefix", "ai-hub-Ab12Cd34", END);
    ok(key(&rec) == -1, "no account: invalid");
    reply("account", "7", END);
    ok(key(&rec) == -1, "no prefix: invalid");
    reply("account", "0", "prefix", "ai-hub-Ab12Cd34", END);
    ok(key(&rec) == -1, "account 0: invalid");
    reply("account", "-7", "prefix", "ai-hub-Ab12Cd34", END);
    ok(key(&rec) == -1, "a negative account: invalid");
    reply("account", "99999999999999999999", "prefix", "x", END);
    ok(key(&rec) == -1, "an account over INT64_MAX: invalid");
    reply("account", "7", "prefix", "", END);
    ok(key(&rec) == -1, "an empty prefix: invalid");
    reply("account", "7", "prefix", "ai-hub-Ab12Cd34X", END);
    ok(key(&rec) == -1, "a prefix one byte too long: invalid");
    reply(BASE, "rpm", "1", "rpm", "1", END);
    ok(key(&rec) == -1, "a repeated field: invalid, even with one value");

    /* what is skipped */

    reply(BASE, "label", "a", "label", "b", END);
    ok(key(&rec) == 0, "a repeated unknown field is ignored");
    reply(BASE, NULL, "5", "rpm", NULL, "tpm", END);
    ok(key(&rec) == 0 && rec.rpm == 0 && rec.tpm == 0,
       "pairs with a non-string, and a last odd element, are skipped");
    reply(BASE, "RPM", "5", "rpm ", "6", END);
    ok(key(&rec) == 0 && rec.rpm == 0, "field names match exactly");

    /* catalog entries */

    reply("provider", "openai", "upstream", "gpt-4o-mini", "tier", "basic",
          "price_in", "150000", "price_out", "600000", "kind", "chat",
          "api", "responses", "created", "1764547200",
          "fallbacks", "a,b", "extra", "x", END);
    ok(aihub_model_record_parse(&m, elts, nelts) == 0
       && view_is(m.provider, "openai") && view_is(m.upstream, "gpt-4o-mini")
       && view_is(m.tier, "basic") && view_is(m.kind, "chat")
       && view_is(m.api, "responses") && view_is(m.fallbacks, "a,b")
       && m.price_in == 150000 && m.price_out == 600000
       && m.created == 1764547200, "a whole catalog entry");

    reply("provider", "mock", END);
    ok(aihub_model_record_parse(&m, elts, nelts) == 0 && m.upstream.len == 0
       && m.price_in == 0, "a bare entry: no upstream, no price");

    reply("price_in", "-1", "price_out", "18446744073709551616", END);
    ok(aihub_model_record_parse(&m, elts, nelts) == 0 && m.price_in == 0
       && m.price_out == 0, "prices that are not numbers read as 0");

    reply("provider", "a", "provider", "b", END);
    ok(aihub_model_record_parse(&m, elts, nelts) == -1,
       "a repeated field: invalid");

    return tap_done();
}
