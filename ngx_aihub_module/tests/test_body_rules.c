/*
 * Body rules: repeated members (plain and escaped), \u0000 escapes, and
 * the members that change routing or cost at the provider.
 */

#include <stdio.h>
#include <string.h>

#include "aihub_body_rules.h"
#include "tap.h"


/* what a rule names in a parsed document, "(none)" or "(parse error)" */

static const char *
named_by(const char *json, const char *(*rule)(const cJSON *))
{
    static char   name[64];
    const char   *d;
    cJSON        *root;

    root = cJSON_Parse(json);
    if (root == NULL) {
        return "(parse error)";
    }

    d = rule(root);
    snprintf(name, sizeof(name), "%s", d ? d : "(none)");
    cJSON_Delete(root);

    return name;
}


#define dup_of(json)      named_by(json, aihub_json_duplicate_member)
#define deep_dup_of(json) named_by(json, aihub_json_duplicate_member_deep)
#define refused_of(json)  named_by(json, aihub_body_refused_member)


static int
nul(const char *json)
{
    return aihub_json_has_nul_escape((const unsigned char *) json,
                                     strlen(json));
}


#define IS_STR(got, want, what)                                              \
    ok(strcmp(got, want) == 0, "%s: got %s, want %s", what, got, want)


int
main(void)
{
    char  big[40000], *p;
    int   i;

    IS_STR(dup_of("{\"model\":\"a\",\"messages\":[]}"), "(none)",
           "no repeated member");
    IS_STR(dup_of("{\"model\":\"a\",\"x\":1,\"model\":\"b\"}"), "model",
           "model twice");
    IS_STR(dup_of("{\"model\":\"a\",\"m\\u006fdel\":\"b\"}"), "model",
           "model twice, the second name escaped");
    IS_STR(dup_of("{\"max_tokens\":10,\"max_tokens\":900000}"),
           "max_tokens", "max_tokens twice");
    IS_STR(dup_of("{\"a\":{\"b\":1,\"b\":2}}"), "(none)",
           "nested objects are the caller's to check");
    IS_STR(deep_dup_of("{\"a\":{\"b\":1,\"b\":2}}"), "b",
           "deep: a repeat in a nested object");
    IS_STR(deep_dup_of("{\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"x\",\"c\\u006fntent\":\"yyyy\"}]}"), "content",
           "deep: a message's content twice, the second name escaped");
    IS_STR(deep_dup_of("{\"a\":[[{\"k\":1}],{\"k\":2}],\"k\":3}"), "(none)",
           "deep: the same name in different objects is no repeat");
    IS_STR(deep_dup_of("[{\"x\":1,\"x\":1}]"), "x",
           "deep: inside a top-level array");
    IS_STR(dup_of("[1,2]"), "(none)", "not an object");
    IS_STR(dup_of("{}"), "(none)", "empty object");

    /* many members: sorted, not quadratic */
    p = big;
    p += sprintf(p, "{");
    for (i = 0; i < 3000; i++) {
        p += sprintf(p, "%s\"k%d\":%d", i ? "," : "", i, i);
    }
    sprintf(p, ",\"k1234\":0}");
    IS_STR(dup_of(big), "k1234", "a repeat among 3,000 members");

    ok(!nul("{\"model\":\"abc\"}"), "no NUL escape");
    ok(nul("{\"model\":\"a\\u0000b\"}"), "\\u0000 in a value");
    ok(nul("{\"m\\u0000\":\"x\"}"), "\\u0000 in a name");
    ok(!nul("{\"model\":\"a\\\\u0000b\"}"),
       "an escaped backslash then u0000 is text, not NUL");
    ok(!nul("{\"model\":\"a\\u0001b\"}"), "\\u0001 is not NUL");
    ok(nul("{\"x\":\"\\\"\\u0000\"}"),
       "after an escaped quote the string goes on");
    ok(!nul("{\"x\":\"\\u000"), "a cut escape at the end");

    IS_STR(refused_of("{\"model\":\"a\"}"), "(none)", "plain body");
    IS_STR(refused_of("{\"models\":[\"a\",\"b\"]}"), "models",
           "OpenRouter fallback models");
    IS_STR(refused_of("{\"route\":\"fallback\"}"), "route",
           "OpenRouter route");
    IS_STR(refused_of("{\"provider\":{\"order\":[\"x\"]}}"), "provider",
           "OpenRouter provider routing");
    IS_STR(refused_of("{\"plugins\":[{\"id\":\"web\"}]}"), "plugins",
           "OpenRouter plugins");
    IS_STR(refused_of("{\"service_tier\":\"auto\"}"), "(none)",
           "service_tier auto");
    IS_STR(refused_of("{\"service_tier\":\"default\"}"), "(none)",
           "service_tier default");
    IS_STR(refused_of("{\"service_tier\":\"priority\"}"), "service_tier",
           "service_tier priority");
    IS_STR(refused_of("{\"service_tier\":\"flex\"}"), "service_tier",
           "service_tier flex");
    IS_STR(refused_of("{\"n\":1}"), "(none)", "n 1");
    IS_STR(refused_of("{\"n\":null}"), "(none)", "n null");
    IS_STR(refused_of("{\"n\":2}"), "n", "n 2");
    IS_STR(refused_of("{\"n\":\"1\"}"), "n", "n as a string");

    return tap_done();
}
