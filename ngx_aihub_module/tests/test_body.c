/*
 * The chat body, checked and rewritten by the engine: every verdict, the
 * fields a good body gives, the policy's max_tokens cap, and the bytes a
 * rewrite forwards (or that nothing is rewritten).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aihub_body.h"
#include "tap.h"


static const aihub_body_policy_t  policy = { 1000000000, 1, 0 };
static const aihub_body_policy_t  model_only = { 1000000000, 0, 1 };


static aihub_body_verdict_e
verdict_n(const char *json, size_t n, const aihub_body_policy_t *pol)
{
    aihub_body_t          b;
    aihub_body_verdict_e  v;

    aihub_body_check(&b, (const unsigned char *) json, n, pol);
    v = b.verdict;
    aihub_body_free(&b);

    return v;
}


#define verdict_of(json, pol)  verdict_n(json, strlen(json), pol)


#define VERDICT(json, want)                                                  \
    ok(verdict_of(json, &policy) == want, "%s: verdict %d", json, want)

#define MSG "\"messages\":[]"


/* the body forwarded for upstream: "=" when it is the body as it came */

static const char *
forwarded(const char *json, const char *upstream)
{
    int           rc;
    char         *out;
    size_t        len;
    aihub_body_t  b;

    static char   buf[512];

    aihub_body_check(&b, (const unsigned char *) json, strlen(json),
                     &policy);

    if (b.verdict != AIHUB_BODY_OK) {
        aihub_body_free(&b);
        return "(refused)";
    }

    rc = aihub_body_rewrite(&b, &policy, (const unsigned char *) json,
                            strlen(json), upstream, &out, &len);

    if (rc == 0) {
        snprintf(buf, sizeof(buf), "=");

    } else if (rc == 1) {
        snprintf(buf, sizeof(buf), "%.*s", (int) len, out);
        free(out);

    } else {
        snprintf(buf, sizeof(buf), "(no memory)");
    }

    aihub_body_free(&b);

    return buf;
}


#define IS_STR(got, want, what)                                              \
    ok(strcmp(got, want) == 0, "%s: got %s, want %s", what, got, want)


int
main(void)
{
    aihub_body_t         b;
    aihub_body_policy_t  small = { 100, 1, 0 };
    const char          *json;

    /* verdicts, in the order the checks run */

    VERDICT("", AIHUB_BODY_EMPTY);
    VERDICT("{\"model\":\"a\\u0000b\"," MSG "}", AIHUB_BODY_NUL);
    {
        static const char  nul[] = "{\"model\":\"a\",\"stream_options\0\":"
                                   "null,\"messages\":[]}";

        ok(verdict_n(nul, sizeof(nul) - 1, &policy) == AIHUB_BODY_NUL_BYTE,
           "a NUL byte in a member name (cJSON reads \"stream_options\")");
    }

    VERDICT("{\"model\":", AIHUB_BODY_SYNTAX);
    VERDICT("{} {}", AIHUB_BODY_SYNTAX);
    VERDICT("{\"model\\u0z0e9\":\"m\"," MSG "}", AIHUB_BODY_SYNTAX);
    VERDICT("{\"model\":\"m\\u12\"," MSG "}", AIHUB_BODY_SYNTAX);
    VERDICT("{\"model\":\"m\\\\u12\"," MSG "}", AIHUB_BODY_OK);
    VERDICT("[1]", AIHUB_BODY_NOT_OBJECT);
    VERDICT("{\"model\":\"a\",\"model\":\"b\"," MSG "}", AIHUB_BODY_DUPLICATE);
    VERDICT("{\"model\":\"a\",\"stream_options\":{\"include_usage\":false,"
            "\"include_usage\":true}," MSG "}", AIHUB_BODY_DUPLICATE);
    VERDICT("{\"model\":\"a\",\"provider\":{}," MSG "}", AIHUB_BODY_REFUSED);
    VERDICT("{\"model\":\"a\",\"n\":2," MSG "}", AIHUB_BODY_REFUSED);
    VERDICT("{" MSG "}", AIHUB_BODY_NO_MODEL);
    VERDICT("{\"model\":\"\"," MSG "}", AIHUB_BODY_BAD_MODEL);
    VERDICT("{\"model\":7," MSG "}", AIHUB_BODY_BAD_MODEL);
    VERDICT("{\"model\":\"a\",\"messages\":{}}", AIHUB_BODY_BAD_MESSAGES);
    VERDICT("{\"model\":\"a\"," MSG ",\"stream\":1}", AIHUB_BODY_BAD_STREAM);
    VERDICT("{\"model\":\"a\"," MSG ",\"stream_options\":true}",
            AIHUB_BODY_BAD_STREAM_OPTIONS);
    VERDICT("{\"model\":\"a\"," MSG ",\"max_tokens\":0}",
            AIHUB_BODY_BAD_MAX_TOKENS);
    VERDICT("{\"model\":\"a\"," MSG ",\"max_tokens\":1.5}",
            AIHUB_BODY_BAD_MAX_TOKENS);
    VERDICT("{\"model\":\"a\"," MSG ",\"max_tokens\":1000000001}",
            AIHUB_BODY_BAD_MAX_TOKENS);
    VERDICT("{\"model\":\"a\"," MSG ",\"max_tokens\":\"5\"}",
            AIHUB_BODY_BAD_MAX_TOKENS);
    ok(verdict_of(" {\"model\":\"a\"," MSG ",\"stream\":null} \r\n",
                  &policy) == AIHUB_BODY_OK,
       "white space around the object, stream null: accepted");

    ok(verdict_of("{\"model\":\"a\"," MSG ",\"max_tokens\":100}", &small)
       == AIHUB_BODY_OK, "the policy's cap itself is accepted");
    ok(verdict_of("{\"model\":\"a\"," MSG ",\"max_tokens\":101}", &small)
       == AIHUB_BODY_BAD_MAX_TOKENS, "one over the policy's cap is not");

    /* another endpoint's body: checked up to its model, the rest is the
       endpoint's; the rules every body keeps still hold */

    ok(verdict_of("{\"model\":\"e\",\"input\":\"hi\"}", &model_only)
       == AIHUB_BODY_OK, "model_only: no messages needed");
    ok(verdict_of("{\"model\":\"e\",\"input\":[{\"a\":1,\"a\":2}]}",
                  &model_only) == AIHUB_BODY_DUPLICATE,
       "model_only: a member twice at any depth is still refused");
    ok(verdict_of("{\"model\":\"e\",\"provider\":{}}", &model_only)
       == AIHUB_BODY_REFUSED, "model_only: routing members still refused");
    ok(verdict_of("{\"input\":\"hi\"}", &model_only) == AIHUB_BODY_NO_MODEL,
       "model_only: the model is still required");
    ok(verdict_of("{\"model\":\"e\",\"input\":\"hi\"}", &policy)
       == AIHUB_BODY_BAD_MESSAGES, "chat: messages required");

    /* what a good body gives */

    json = "{\"model\":\"m\\u00e9\",\"stream\":true,\"stream_options\":"
           "{\"include_usage\":true},\"max_tokens\":9,"
           "\"max_completion_tokens\":12,\"messages\":[{\"role\":\"user\","
           "\"content\":\"h\\u00e9llo\"},{\"role\":\"user\",\"content\":["
           "{\"type\":\"text\",\"text\":\"abc\"},{\"type\":\"image_url\"}]}]}";

    aihub_body_check(&b, (const unsigned char *) json, strlen(json), &policy);

    ok(b.verdict == AIHUB_BODY_OK, "a whole body is accepted");
    ok(b.model_len == 3 && memcmp(b.model, "m\xc3\xa9", 3) == 0,
       "its model, unescaped");
    ok(b.stream && b.include_usage, "stream and include_usage");
    ok(b.max_tokens == 12, "max_completion_tokens before max_tokens");
    ok(b.prompt_chars == 5 + 3 + 765 * 4,
       "prompt characters: text in characters, an image at a flat rate "
       "(got %lld)", (long long) b.prompt_chars);
    aihub_body_free(&b);

    json = "{\"model\":\"a\"," MSG ",\"messages\":7}";
    aihub_body_check(&b, (const unsigned char *) json, strlen(json), &policy);
    ok(b.verdict == AIHUB_BODY_DUPLICATE && strcmp(b.member, "messages") == 0,
       "a duplicate names its member");
    aihub_body_free(&b);

    json = "{\"model\":\"a\",\"messages\":{}}";
    aihub_body_check(&b, (const unsigned char *) json, strlen(json), &policy);
    ok(b.verdict == AIHUB_BODY_BAD_MESSAGES && b.model_len == 1,
       "a body refused after its model keeps the model, for the log");
    aihub_body_free(&b);

    /* forwarded bytes */

    IS_STR(forwarded("{\"model\":\"a\"," MSG "}", "a"), "=",
           "same model, no stream: the body as it came");
    IS_STR(forwarded("{\"model\":\"a\"," MSG ",\"stream\":true,"
                     "\"stream_options\":{\"include_usage\":true}}", "a"),
           "=", "a stream that asks for usage: as it came");
    IS_STR(forwarded("{\"model\":\"a\"," MSG ",\"x\":1.5}", "up/a"),
           "{\"model\":\"up/a\",\"messages\":[],\"x\":1.5}",
           "another upstream id: renamed in place");
    IS_STR(forwarded("{\"model\":\"a\"," MSG ",\"stream\":true}", "a"),
           "{\"model\":\"a\",\"messages\":[],\"stream\":true,"
           "\"stream_options\":{\"include_usage\":true}}",
           "a stream: usage asked for");
    IS_STR(forwarded("{\"model\":\"a\",\"stream_options\":{\"include_usage\":"
                     "false,\"x\":1}," MSG ",\"stream\":true}", "a"),
           "{\"model\":\"a\",\"stream_options\":{\"include_usage\":true,"
           "\"x\":1},\"messages\":[],\"stream\":true}",
           "include_usage false: set, the other options kept");
    IS_STR(forwarded("{\"model\":\"a\",\"stream_options\":null," MSG
                     ",\"stream\":true}", "q\"x"),
           "{\"model\":\"q\\\"x\",\"stream_options\":{\"include_usage\":"
           "true},\"messages\":[],\"stream\":true}",
           "stream_options null replaced; an upstream id with a quote");
    IS_STR(forwarded("{\"model\":\"a\",\"stream_options\":{ }," MSG
                     ",\"stream\":true}", "a"),
           "{\"model\":\"a\",\"stream_options\":{ \"include_usage\":true},"
           "\"messages\":[],\"stream\":true}",
           "an empty stream_options gets include_usage");
    IS_STR(forwarded(" { \"mod\\u0065l\" : \"a\" ,\t \"messages\" : [ ] ,"
                     " \"seed\":9007199254740993, \"t\":1.7976931348623157e308,"
                     " \"s\":\"\\u00e9\\/\", \"stream\" : true } ", "b"),
           " { \"mod\\u0065l\" : \"b\" ,\t \"messages\" : [ ] ,"
           " \"seed\":9007199254740993, \"t\":1.7976931348623157e308,"
           " \"s\":\"\\u00e9\\/\", \"stream\" : true ,\"stream_options\":"
           "{\"include_usage\":true}} ",
           "every other byte as it came: white space, an escaped member "
           "name, numbers a double cannot hold, escapes");

    /* the policy may leave streams alone */

    json = "{\"model\":\"a\"," MSG ",\"stream\":true}";
    small.stream_usage = 0;
    aihub_body_check(&b, (const unsigned char *) json, strlen(json), &small);
    {
        char    *out;
        size_t   len;

        ok(aihub_body_rewrite(&b, &small, (const unsigned char *) json,
                              strlen(json), "a", &out, &len) == 0,
           "a policy without stream_usage forwards a stream as it came");
    }
    aihub_body_free(&b);

    return tap_done();
}
