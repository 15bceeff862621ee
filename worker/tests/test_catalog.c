/* the catalog's rules: names, prices as operators write them, fallbacks */

#include "aihub_worker.h"
#include "catalog.h"
#include "tap.h"


int
main(void)
{
    char                 s[64], bad[160];
    long long            v;
    int                  on;
    size_t               first;
    aw_buf_t             b;
    aw_catalog_model_t   m[5];

    /* names */

    tap_ok(aw_catalog_model_id_ok("openai/gpt-4o-mini"), "vendor/model id");
    tap_ok(aw_catalog_model_id_ok("meta-llama/llama-3.1-8b:free"),
           "dots, dashes and a colon");
    tap_ok(!aw_catalog_model_id_ok(""), "empty id refused");
    tap_ok(!aw_catalog_model_id_ok("a,b"), "comma refused in an id");
    tap_ok(!aw_catalog_model_id_ok("my model"), "space refused in an id");
    tap_ok(!aw_catalog_model_id_ok("-x"), "id starts with a letter/digit");
    memset(s, 'a', 63);
    s[63] = '\0';
    tap_ok(aw_catalog_model_id_ok(s), "63 characters");

    tap_ok(aw_catalog_upstream_ok("models/gemini-2.0-flash"), "upstream id");
    tap_ok(!aw_catalog_upstream_ok("a b"), "space refused in upstream");

    tap_ok(aw_catalog_name_ok("openrouter"), "provider openrouter");
    tap_ok(aw_catalog_name_ok("azure_eu-2"), "provider azure_eu-2");
    tap_ok(!aw_catalog_name_ok("OpenRouter"), "upper case refused");
    tap_ok(!aw_catalog_name_ok("a/b"), "slash refused in a provider");
    tap_ok(!aw_catalog_name_ok("abcdefghijklmnopqrstuvwxyz0123456"),
           "33 characters refused");

    tap_ok(aw_catalog_word_ok("embedding", "chat|embedding") == 0, "word");
    tap_ok(aw_catalog_word_ok("chat", "chat|embedding") == 0, "first word");
    tap_ok(aw_catalog_word_ok("emb", "chat|embedding") != 0,
           "a prefix is not a word");
    tap_ok(aw_catalog_word_ok("", "chat|embedding") != 0, "empty word");

    tap_ok(aw_catalog_flag_parse("on", &on) == 0 && on == 1, "on");
    tap_ok(aw_catalog_flag_parse("0", &on) == 0 && on == 0, "0");
    tap_ok(aw_catalog_flag_parse("maybe", &on) != 0, "maybe refused");

    /* prices: dollars per million tokens -> micro-dollars */

    tap_ok(aw_catalog_price_parse("0.15", &v) == 0 && v == 150000, "0.15");
    tap_ok(aw_catalog_price_parse("10", &v) == 0 && v == 10000000, "10");
    tap_ok(aw_catalog_price_parse("2.5", &v) == 0 && v == 2500000, "2.5");
    tap_ok(aw_catalog_price_parse("0", &v) == 0 && v == 0, "free");
    tap_ok(aw_catalog_price_parse("0.000001", &v) == 0 && v == 1,
           "one micro-dollar");
    tap_ok(aw_catalog_price_parse(".5", &v) == 0 && v == 500000, ".5");
    tap_ok(aw_catalog_price_parse("0.0000001", &v) != 0,
           "below a micro-dollar refused");
    tap_ok(aw_catalog_price_parse("-1", &v) != 0, "negative refused");
    tap_ok(aw_catalog_price_parse("1e3", &v) != 0, "exponent refused");
    tap_ok(aw_catalog_price_parse("1.", &v) != 0, "no decimals after dot");
    tap_ok(aw_catalog_price_parse("", &v) != 0, "empty refused");
    tap_ok(aw_catalog_price_parse("$1", &v) != 0, "dollar sign refused");
    tap_ok(aw_catalog_price_parse("1000000", &v) == 0
           && v == AW_CATALOG_PRICE_MAX, "the largest price");
    tap_ok(aw_catalog_price_parse("1000000.000001", &v) != 0,
           "above the largest refused");
    tap_ok(aw_catalog_price_parse("99999999999999999999", &v) != 0,
           "overflow refused");

    aw_catalog_price_format(150000, s, sizeof(s));
    tap_is_str(s, "0.15", "format 0.15");
    aw_catalog_price_format(10000000, s, sizeof(s));
    tap_is_str(s, "10.00", "format 10.00");
    aw_catalog_price_format(1, s, sizeof(s));
    tap_is_str(s, "0.000001", "format a micro-dollar");
    aw_catalog_price_format(1250000, s, sizeof(s));
    tap_is_str(s, "1.25", "format 1.25");

    /* fallback lists */

    aw_buf_init(&b);

    tap_ok(aw_catalog_fallbacks_parse("a, b ,c", &b, bad, sizeof(bad)) == 0,
           "a list with spaces");
    tap_is_str(b.data, "a,b,c", "spaces dropped");
    tap_ok(aw_catalog_fallbacks_parse("none", &b, bad, sizeof(bad)) == 0
           && b.len == 0, "none clears");
    tap_ok(aw_catalog_fallbacks_parse("a,,b", &b, bad, sizeof(bad)) != 0,
           "empty item refused");
    tap_ok(aw_catalog_fallbacks_parse("ab,a,ab", &b, bad, sizeof(bad)) != 0,
           "duplicate refused");
    tap_is_str(bad, "ab", "the duplicate is named");
    tap_ok(aw_catalog_fallbacks_parse("ab,a,b", &b, bad, sizeof(bad)) == 0,
           "a prefix of another item is not a duplicate");
    tap_ok(aw_catalog_fallbacks_parse("x,my model", &b, bad, sizeof(bad))
           != 0, "malformed item refused");
    tap_is_str(bad, "my model", "the malformed item is named");

    /* the rules over a catalog */

    m[0] = (aw_catalog_model_t) { "a", "chat", "basic", "b,c" };
    m[1] = (aw_catalog_model_t) { "b", "chat", "basic", "" };
    m[2] = (aw_catalog_model_t) { "c", "chat", "basic", "a" };
    m[3] = (aw_catalog_model_t) { "p", "chat", "premium", "" };
    m[4] = (aw_catalog_model_t) { "e", "embedding", "basic", "" };

    aw_buf_reset(&b);
    tap_is_ll(aw_catalog_check(m, 5, NULL, &b, NULL), 0,
              "a consistent catalog (a cycle of fallbacks is allowed)");

    m[1].fallbacks = "zz";
    first = 99;
    tap_is_ll(aw_catalog_check(m, 5, NULL, &b, &first), 1, "unknown fallback");
    tap_is_ll((long long) first, 1, "the model with the problem");
    tap_ok(strstr(b.data, "model b: fallback \"zz\" is not in the catalog")
           != NULL, "named: %s", b.data);

    m[1].fallbacks = "b";
    aw_buf_reset(&b);
    tap_is_ll(aw_catalog_check(m, 5, NULL, &b, NULL), 1, "its own fallback");

    m[1].fallbacks = "p,e";
    aw_buf_reset(&b);
    tap_is_ll(aw_catalog_check(m, 5, NULL, &b, NULL), 2,
              "another tier and another kind");
    tap_ok(strstr(b.data, "fallback p is of tier premium") != NULL
           && strstr(b.data, "fallback e is of kind embedding") != NULL,
           "both named");

    /* removing c leaves a naming a model that is gone */

    m[1].fallbacks = "";
    aw_buf_reset(&b);
    first = 99;
    tap_is_ll(aw_catalog_check(m, 2, NULL, &b, &first), 1,
              "a fallback removed from the catalog");
    tap_is_ll((long long) first, 0, "found at the model naming it");

    /* about one model: the problems of the others do not count */

    m[0].fallbacks = "zz";
    m[1].fallbacks = "p";
    aw_buf_reset(&b);
    tap_is_ll(aw_catalog_check(m, 5, "b", &b, NULL), 1,
              "about b: b's own problem only");
    aw_buf_reset(&b);
    tap_is_ll(aw_catalog_check(m, 5, "c", &b, NULL), 0,
              "about c: nothing names c, c names nothing wrong");
    m[0].fallbacks = "c";
    aw_buf_reset(&b);
    tap_is_ll(aw_catalog_check(m, 2, "c", &b, NULL), 1,
              "about c, removed: a still names it");

    aw_buf_free(&b);

    return tap_done();
}
