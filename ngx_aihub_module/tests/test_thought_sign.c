/*
 * aihub_thought_sign: which provider model ids check Gemini 3's thought
 * signatures, and which calls of a chat completion request get Google's
 * value (the first call of each assistant message of the current turn,
 * where it has no signature of its own).
 */

#include <stdio.h>
#include <string.h>

#include "aihub_thought_sign.h"
#include "tap.h"


#define SKIP  "{\"google\":{\"thought_signature\":\"" \
              AIHUB_THOUGHT_SIGN_SKIP "\"}}"


static void
test_checked(void)
{
    size_t  i;

    static const struct {
        const char  *model;
        int          checked;
    } cases[] = {
        { "gemini-3-pro-preview", 1 },
        { "gemini-3-flash-preview", 1 },
        { "gemini-3.1-pro-preview", 1 },
        { "models/gemini-3-pro-preview", 1 },
        { "gemini-10-ultra", 1 },
        { "gemini-2.5-flash", 0 },
        { "gemini-2.0-flash", 0 },
        { "gemini-1.5-pro", 0 },
        { "gemini-exp-1206", 0 },
        { "gemini-", 0 },
        { "gemini", 0 },
        { "google/gemini-3-pro-preview", 0 },   /* OpenRouter's id */
        { "gpt-4o", 0 },
        { "", 0 },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ok(aihub_thought_sign_checked(cases[i].model) == cases[i].checked,
           "checked: \"%s\" -> %d", cases[i].model, cases[i].checked);
    }

    ok(aihub_thought_sign_checked(NULL) == 0, "checked: NULL -> 0");
}


/* the request signed, printed, and the count */

static void
sign(const char *in, const char *want, int want_n, const char *what)
{
    int     n;
    char   *out;
    cJSON  *chat;

    chat = cJSON_Parse(in);
    if (chat == NULL) {
        ok(0, "%s: (parse error)", what);
        return;
    }

    n = aihub_thought_sign_calls(chat);
    out = cJSON_PrintUnformatted(chat);

    ok(n == want_n, "%s: %d signed", what, want_n);

    if (!ok(out != NULL && strcmp(out, want) == 0, "%s: the request", what))
    {
        diag("got:  %s", out ? out : "(null)");
        diag("want: %s", want);
    }

    cJSON_free(out);
    cJSON_Delete(chat);
}


#define USER   "{\"role\":\"user\",\"content\":\"weather?\"}"
#define TOOL   "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"1\"}"
#define CALL(id)                                                             \
    "{\"id\":\"" id "\",\"type\":\"function\",\"function\":{\"name\":"       \
    "\"get_weather\",\"arguments\":\"{}\"}"
#define ASK(calls)                                                           \
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[" calls "]}"


static void
test_calls(void)
{
    size_t  i;
    char    in[512];

    static const struct {
        const char  *extra;
        const char  *what;
    } unsigned_extra[] = {
        { "{\"google\":{\"thought_signature\":\"\"}}", "an empty signature" },
        { "{\"google\":{\"thought_signature\":7}}", "a number as signature" },
        { "\"x\"", "extra_content not an object" },
        { "{\"google\":{\"thought_signature\":\"\","
          "\"thought_signature\":\"EjQKMg\"}}",
          "a repeated signature member" },
    };

    /* two parallel calls without signatures: the first gets the value */
    sign("{\"messages\":[" USER "," ASK(CALL("c1") "}," CALL("c2") "}")
         "," TOOL "," TOOL "]}",
         "{\"messages\":[" USER "," ASK(CALL("c1") ",\"extra_content\":"
         SKIP "}," CALL("c2") "}") "," TOOL "," TOOL "]}",
         1, "parallel calls");

    /* a signature of its own stays */
    sign("{\"messages\":[" USER "," ASK(CALL("c1") ",\"extra_content\":"
         "{\"google\":{\"thought_signature\":\"EjQKMg\"}}}") "," TOOL "]}",
         "{\"messages\":[" USER "," ASK(CALL("c1") ",\"extra_content\":"
         "{\"google\":{\"thought_signature\":\"EjQKMg\"}}}") "," TOOL "]}",
         0, "its own signature");

    /* two steps of the current turn: each step's call */
    sign("{\"messages\":[" USER "," ASK(CALL("c1") "}") "," TOOL ","
         ASK(CALL("c2") "}") "," TOOL "]}",
         "{\"messages\":[" USER "," ASK(CALL("c1") ",\"extra_content\":"
         SKIP "}") "," TOOL "," ASK(CALL("c2") ",\"extra_content\":" SKIP
         "}") "," TOOL "]}",
         2, "two steps");

    /* an earlier turn is not checked: left as it is */
    sign("{\"messages\":[" USER "," ASK(CALL("c1") "}") "," TOOL ","
         "{\"role\":\"assistant\",\"content\":\"15 C\"}," USER ","
         ASK(CALL("c2") "}") "," TOOL "]}",
         "{\"messages\":[" USER "," ASK(CALL("c1") "}") "," TOOL ","
         "{\"role\":\"assistant\",\"content\":\"15 C\"}," USER ","
         ASK(CALL("c2") ",\"extra_content\":" SKIP "}") "," TOOL "]}",
         1, "an earlier turn");

    /* the turn has ended with a user message: nothing to check */
    sign("{\"messages\":[" ASK(CALL("c1") "}") "," TOOL "," USER "]}",
         "{\"messages\":[" ASK(CALL("c1") "}") "," TOOL "," USER "]}",
         0, "a user message last");

    /* no user message at all: the whole conversation is the turn */
    sign("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
         ASK(CALL("c1") "}") "," TOOL "]}",
         "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
         ASK(CALL("c1") ",\"extra_content\":" SKIP "}") "," TOOL "]}",
         1, "no user message");

    /* what else extra_content holds stays beside the signature */
    sign("{\"messages\":[" USER "," ASK(CALL("c1") ",\"extra_content\":"
         "{\"other\":1,\"google\":{\"x\":2}}}") "]}",
         "{\"messages\":[" USER "," ASK(CALL("c1") ",\"extra_content\":"
         "{\"other\":1,\"google\":{\"x\":2,\"thought_signature\":\""
         AIHUB_THOUGHT_SIGN_SKIP "\"}}}") "]}",
         1, "other members kept");

    /* not a signature: each replaced by the value, and only one goes on
       (a repeated member: the first read is empty) */
    for (i = 0; i < sizeof(unsigned_extra) / sizeof(unsigned_extra[0]); i++)
    {
        snprintf(in, sizeof(in), "{\"messages\":[" USER ","
                 ASK(CALL("c1") ",\"extra_content\":%s}") "]}",
                 unsigned_extra[i].extra);
        sign(in, "{\"messages\":[" USER "," ASK(CALL("c1")
             ",\"extra_content\":" SKIP "}") "]}", 1, unsigned_extra[i].what);
    }

    /* no calls, or shapes that are not calls: untouched */
    sign("{\"messages\":[" USER ",{\"role\":\"assistant\",\"content\":"
         "\"hi\",\"tool_calls\":[]}]}",
         "{\"messages\":[" USER ",{\"role\":\"assistant\",\"content\":"
         "\"hi\",\"tool_calls\":[]}]}",
         0, "an empty tool_calls");

    sign("{\"messages\":[" USER ",{\"role\":\"assistant\",\"tool_calls\":"
         "[\"x\"]}]}",
         "{\"messages\":[" USER ",{\"role\":\"assistant\",\"tool_calls\":"
         "[\"x\"]}]}",
         0, "a call that is not an object");

    sign("{\"model\":\"m\"}", "{\"model\":\"m\"}", 0, "no messages");
}


int
main(void)
{
    test_checked();
    test_calls();

    return tap_done();
}
