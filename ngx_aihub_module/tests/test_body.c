/*
 * The chat body, checked and rewritten by the engine: every verdict, the
 * fields a good body gives, the policy's max_tokens cap, and the bytes a
 * rewrite forwards (or that nothing is rewritten).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdint.h>

#include "aihub_body.h"
#include "tap.h"


static const aihub_body_policy_t  policy = {
    1000000000, 1, 0, 0, AIHUB_STORE_AS_SENT, 0, NULL, NULL, 0
};
static const aihub_body_policy_t  model_only = {
    1000000000, 0, 1, 0, AIHUB_STORE_AS_SENT, 0, NULL, NULL, 0
};


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


/*
 * The one-pass check against the tree check: a body the one pass decides
 * gets the verdict and every figure the tree gives.  1: it decided.
 */

static int
same_as_tree(const unsigned char *p, size_t n, const aihub_body_policy_t *pol,
    int *agree)
{
    aihub_body_t  fast, tree;

    *agree = 1;

    memset(&fast, 0x5a, sizeof(aihub_body_t));

    if (aihub_body_fast(&fast, p, n, pol) != 0) {
        return 0;
    }

    aihub_body_check_tree(&tree, p, n, pol);

    *agree = tree.verdict == AIHUB_BODY_OK && fast.verdict == AIHUB_BODY_OK
             && fast.json == NULL && fast.member == NULL
             && fast.model_len == tree.model_len
             && memcmp(fast.model, tree.model, tree.model_len) == 0
             && fast.prompt_chars == tree.prompt_chars
             && fast.max_tokens == tree.max_tokens
             && fast.stream == tree.stream
             && fast.include_usage == tree.include_usage;

    if (!*agree) {
        diag("differs: %.*s", (int) n, (const char *) p);
        diag("  fast %d %.*s chars %lld max %lld stream %d usage %d",
             fast.verdict, (int) fast.model_len, fast.model,
             (long long) fast.prompt_chars, (long long) fast.max_tokens,
             fast.stream, fast.include_usage);
        diag("  tree %d chars %lld max %lld stream %d usage %d",
             tree.verdict, (long long) tree.prompt_chars,
             (long long) tree.max_tokens, tree.stream, tree.include_usage);
    }

    aihub_body_free(&tree);

    return 1;
}


/* bodies as clients send them, for the comparison and its mutations */

static const char  *plain[] = {
    "{\"model\":\"mock-basic\",\"messages\":[{\"role\":\"system\","
    "\"content\":\"You are a helpful assistant.\"},{\"role\":\"user\","
    "\"content\":\"Say hello.\"}],\"max_tokens\":64}",

    "{\n  \"model\": \"gpt-4o-mini\",\n  \"messages\": [\n    {\n"
    "      \"role\": \"user\",\n      \"content\": \"h\\u00e9llo \\\"x\\\"\\n"
    "\xe6\x97\xa5\xf0\x9f\x98\x80\"\n    }\n  ],\n  \"temperature\": 0.7,\n"
    "  \"stream\": true,\n  \"stream_options\": {\"include_usage\": true}\n}",

    "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
    "\"text\":\"What is in this image?\"},{\"type\":\"image_url\","
    "\"image_url\":{\"url\":\"https://example.com/a.png\",\"detail\":"
    "\"high\"}},{\"type\":\"input_audio\",\"input_audio\":{\"data\":"
    "\"AAAA\",\"format\":\"wav\"}},\"loose\",[1],{\"text\":null,"
    "\"type\":\"text\"}]}],\"model\":\"openai/gpt-4o\","
    "\"max_completion_tokens\":300,\"max_tokens\":null,\"user\":\"u-1\","
    "\"metadata\":{\"a\":\"b\",\"c\":[{\"d\":-1.5e-3,\"e\":false}]},"
    "\"stream\":false,\"stop\":[\"\\n\\n\",\"END\"],\"seed\":0,"
    "\"logit_bias\":{\"50256\":-100},\"stream_options\":null}",

    "{\"model\":\"m\",\"messages\":[],\"stream\":null,"
    "\"stream_options\":{\"include_usage\":false,\"x\":{}},"
    "\"max_tokens\":999999999,\"presence_penalty\":-2,"
    "\"frequency_penalty\":2.0E+0,\"top_p\":1}",

    "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":"
    "null},{\"role\":\"user\",\"content\":{\"text\":\"not a list\"}},"
    "{\"role\":\"user\",\"name\":\"n\",\"content\":\"\\/\\b\\f\\r\\t\"},"
    "7,[],{}]}"
};


/* the body forwarded for upstream: "=" when it is the body as it came */

static const char *
forwarded_with(const char *json, const char *upstream,
    const aihub_body_policy_t *pol)
{
    int           rc;
    char         *out;
    size_t        len;
    aihub_body_t  b;

    static char   buf[512];

    aihub_body_check(&b, (const unsigned char *) json, strlen(json), pol);

    if (b.verdict != AIHUB_BODY_OK) {
        aihub_body_free(&b);
        return "(refused)";
    }

    rc = aihub_body_rewrite(&b, pol, (const unsigned char *) json,
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


static const char *
forwarded(const char *json, const char *upstream)
{
    return forwarded_with(json, upstream, &policy);
}


#define IS_STR(got, want, what)                                              \
    ok(strcmp(got, want) == 0, "%s: got %s, want %s", what, got, want)


int
main(void)
{
    aihub_body_t         b;
    aihub_body_policy_t  small = { 100, 1, 0, 0, AIHUB_STORE_AS_SENT, 0, NULL, NULL, 0 };
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

    /* names of the provider account's stored objects: refused unless the
       policy lets them pass; null names nothing */

    ok(verdict_of("{\"model\":\"e\",\"previous_response_id\":\"resp_1\"}",
                  &model_only) == AIHUB_BODY_STORED,
       "previous_response_id: refused");
    ok(verdict_of("{\"model\":\"e\",\"previous_response_id\":null}",
                  &model_only) == AIHUB_BODY_OK,
       "previous_response_id null: accepted");
    ok(verdict_of("{\"model\":\"e\",\"conversation\":\"conv_1\"}",
                  &model_only) == AIHUB_BODY_STORED, "conversation: refused");
    ok(verdict_of("{\"model\":\"e\",\"prompt\":{\"id\":\"pmpt_1\"}}",
                  &model_only) == AIHUB_BODY_STORED, "prompt: refused");
    ok(verdict_of("{\"model\":\"e\",\"input\":[{\"role\":\"user\","
                  "\"content\":[{\"type\":\"input_file\","
                  "\"file_id\":\"file-1\"}]}]}", &model_only)
       == AIHUB_BODY_STORED, "a file_id deep in the input: refused");
    VERDICT("{\"model\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":"
            "[{\"type\":\"file\",\"file\":{\"file_id\":\"file-1\"}}]}]}",
            AIHUB_BODY_STORED);
    VERDICT("{\"model\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":"
            "[{\"type\":\"file\",\"file\":{\"file_id\":null,"
            "\"file_data\":\"x\"}}]}]}", AIHUB_BODY_OK);
    /* tools the provider runs itself: refused on every endpoint */

    VERDICT("{\"model\":\"a\"," MSG ",\"tools\":[{\"type\":\"function\","
            "\"function\":{\"name\":\"f\"}},{\"type\":\"custom\"}]}",
            AIHUB_BODY_OK);
    VERDICT("{\"model\":\"a\"," MSG ",\"tools\":[{\"type\":\"function\"},"
            "{\"type\":\"live_search\"}]}", AIHUB_BODY_TOOL);
    VERDICT("{\"model\":\"a\"," MSG ",\"tools\":[{\"name\":\"f\"}]}",
            AIHUB_BODY_TOOL);
    VERDICT("{\"model\":\"a\"," MSG ",\"tools\":[\"function\"]}",
            AIHUB_BODY_TOOL);
    VERDICT("{\"model\":\"a\"," MSG ",\"search_parameters\":{}}",
            AIHUB_BODY_REFUSED);
    VERDICT("{\"model\":\"a\"," MSG ",\"preset\":\"p\"}", AIHUB_BODY_REFUSED);
    VERDICT("{\"model\":\"a\"," MSG ",\"prompt\":{\"id\":\"p\"}}",
            AIHUB_BODY_STORED);
    VERDICT("{\"model\":\"a\"," MSG ",\"conversation\":\"c\"}",
            AIHUB_BODY_STORED);
    VERDICT("{\"model\":\"a\"," MSG ",\"previous_response_id\":\"r\"}",
            AIHUB_BODY_STORED);
    VERDICT("{\"model\":\"a\"," MSG ",\"extra_body\":{\"google\":{"
            "\"cached_content\":\"cachedContents/x\"}}}", AIHUB_BODY_STORED);
    VERDICT("{\"model\":\"a\"," MSG ",\"google\":{\"cached_content\":"
            "\"c\"}}", AIHUB_BODY_STORED);
    VERDICT("{\"model\":\"a\"," MSG ",\"extra_body\":{\"google\":{"
            "\"thinking_config\":{\"thinking_budget\":0}}}}", AIHUB_BODY_OK);
    ok(verdict_of("{\"model\":\"e\",\"tools\":[{\"type\":\"web_search\"}]}",
                  &model_only) == AIHUB_BODY_TOOL,
       "model_only: a web_search tool refused");
    ok(verdict_of("{\"model\":\"e\",\"tools\":[{\"type\":"
                  "\"functio\\u006e\"}]}", &model_only) == AIHUB_BODY_OK,
       "model_only: \"function\" written with an escape is a function");

    ok(verdict_of("{\"model\":\"e\",\"input\":\"hi\",\"tools\":[{\"type\":"
                  "\"function\",\"name\":\"get_file\",\"parameters\":{"
                  "\"properties\":{\"file_id\":{\"type\":\"string\"}}}}]}",
                  &model_only) == AIHUB_BODY_OK,
       "a function's parameter called file_id is no file");
    ok(verdict_of("{\"model\":\"e\",\"input\":[{\"type\":\"input_file\","
                  "\"file_id\":\"file-1\"}]}", &model_only)
       == AIHUB_BODY_STORED, "a file_id as an input item: refused");
    ok(verdict_of("{\"model\":\"e\",\"input\":[{\"type\":"
                  "\"item_reference\",\"id\":\"msg_1\"}]}", &model_only)
       == AIHUB_BODY_STORED, "an item_reference: refused");

    {
        aihub_body_policy_t  open = model_only;

        open.stored_objects = 1;
        ok(verdict_of("{\"model\":\"e\",\"previous_response_id\":"
                      "\"resp_1\",\"input\":[{\"content\":[{\"file_id\":"
                      "\"f\"}]}]}", &open) == AIHUB_BODY_OK,
           "stored_objects: both pass");
    }
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
    ok(b.max_tokens == 12, "max_tokens and max_completion_tokens: the "
       "larger is the bound");
    ok(b.prompt_chars == 5 + 3 + 765 * 4,
       "prompt characters: text in characters, an image at a flat rate "
       "(got %lld)", (long long) b.prompt_chars);
    aihub_body_free(&b);

    /* both bounds: each checked, the larger the bound, whichever the
       provider reads */

    json = "{\"model\":\"m\"," MSG ",\"max_completion_tokens\":16,"
           "\"max_tokens\":900}";
    aihub_body_check(&b, (const unsigned char *) json, strlen(json), &policy);
    ok(b.verdict == AIHUB_BODY_OK && b.max_tokens == 900,
       "max_tokens above max_completion_tokens is the bound (got %lld)",
       (long long) b.max_tokens);
    aihub_body_free(&b);

    ok(verdict_of("{\"model\":\"m\"," MSG ",\"max_completion_tokens\":16,"
                  "\"max_tokens\":-7}", &policy)
       == AIHUB_BODY_BAD_MAX_TOKENS,
       "max_tokens checked beside max_completion_tokens");
    ok(verdict_of("{\"model\":\"m\"," MSG ",\"max_completion_tokens\":16,"
                  "\"max_tokens\":5e12}", &policy)
       == AIHUB_BODY_BAD_MAX_TOKENS,
       "max_tokens past the largest, beside max_completion_tokens");

    /* a byte order mark: cJSON skips it, the rewrite would not */

    ok(verdict_of("\xef\xbb\xbf{\"model\":\"m\"," MSG "}", &policy)
       == AIHUB_BODY_SYNTAX, "a UTF-8 byte order mark is refused");

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

    /* "store" with aihub_stored_objects off: nothing kept at the provider */

    {
        aihub_body_policy_t  chat = policy, resp = model_only;

        chat.no_store = AIHUB_STORE_NOT_TRUE;
        resp.no_store = AIHUB_STORE_FALSE;

        IS_STR(forwarded_with("{\"model\":\"a\"," MSG "}", "a", &chat), "=",
               "chat, no store: as it came (the provider keeps nothing)");
        IS_STR(forwarded_with("{\"model\":\"a\"," MSG ",\"store\":false}",
                              "a", &chat),
               "=", "chat, store false: as it came");
        IS_STR(forwarded_with("{\"model\":\"a\",\"store\": true ," MSG "}",
                              "a", &chat),
               "{\"model\":\"a\",\"store\": false ,\"messages\":[]}",
               "chat, store true: false in its place");
        IS_STR(forwarded_with("{\"model\":\"a\",\"st\\u006fre\":null,"
                              MSG "}", "b", &chat),
               "{\"model\":\"b\",\"st\\u006fre\":false,\"messages\":[]}",
               "chat, an escaped name: found, its value replaced");
        IS_STR(forwarded_with("{\"model\":\"a\",\"input\":\"x\"}", "a",
                              &resp),
               "{\"model\":\"a\",\"input\":\"x\",\"store\":false}",
               "responses, no store: false added (absent is true there)");
        IS_STR(forwarded_with("{\"model\":\"a\",\"store\":{\"x\":[1]}}",
                              "a", &resp),
               "{\"model\":\"a\",\"store\":false}",
               "responses, store of another type: false in its place");
        IS_STR(forwarded_with("{\"model\":\"a\",\"store\":false}", "a",
                              &resp),
               "=", "responses, store false: as it came");

        /* a response's output passed back as input: its reasoning items
           without encrypted_content name what the provider did not keep */

        IS_STR(forwarded_with("{\"model\":\"a\",\"input\":[{\"role\":"
                              "\"user\",\"content\":\"q\"}, {\"type\":"
                              "\"reasoning\",\"id\":\"rs_1\",\"summary\":"
                              "[]} , {\"type\":\"message\",\"id\":\"msg_1\","
                              "\"role\":\"assistant\",\"content\":[]},"
                              "{\"type\":\"reasoning\",\"id\":\"rs_2\","
                              "\"encrypted_content\":\"gAAA\",\"summary\":[]},"
                              "{\"type\":\"reasoning\",\"id\":\"rs_3\","
                              "\"encrypted_content\":null},{\"role\":\"user\","
                              "\"content\":\"again\"}],\"store\":false}",
                              "a", &resp),
               "{\"model\":\"a\",\"input\":[{\"role\":\"user\",\"content\":"
               "\"q\"},{\"type\":\"message\",\"id\":\"msg_1\",\"role\":"
               "\"assistant\",\"content\":[]},{\"type\":\"reasoning\",\"id\":"
               "\"rs_2\",\"encrypted_content\":\"gAAA\",\"summary\":[]},"
               "{\"role\":\"user\",\"content\":\"again\"}],\"store\":false}",
               "responses, store false: reasoning items without their "
               "encrypted_content left out, the rest as it came");
        IS_STR(forwarded_with("{\"model\":\"a\",\"input\":[{\"type\":"
                              "\"reasoning\",\"id\":\"rs_1\"}],\"store\":"
                              "true}", "b", &resp),
               "{\"model\":\"b\",\"input\":[],\"store\":false}",
               "responses, store true made false, a new model id and "
               "the only item left out: three edits");
        IS_STR(forwarded_with("{\"model\":\"a\",\"input\":[{\"type\":"
                              "\"reasoning\",\"id\":\"rs_1\"}]}", "a",
                              &model_only),
               "=", "stored objects on: every item as it came");
        IS_STR(forwarded_with("{\"model\":\"a\",\"input\":[{\"type\":"
                              "\"reasoning\",\"encrypted_content\":\"x\"}],"
                              "\"store\":false}", "a", &resp),
               "=", "responses, a reasoning item with its content: as it "
               "came");

        chat.no_store = AIHUB_STORE_FALSE;
        IS_STR(forwarded_with("{\"model\":\"a\"," MSG ",\"stream\":true}",
                              "a", &chat),
               "{\"model\":\"a\",\"messages\":[],\"stream\":true,"
               "\"stream_options\":{\"include_usage\":true},"
               "\"store\":false}",
               "two members added at the end, each with its comma");
    }

    /* a plan's cap on a body that asked no max_tokens */

    {
        int                  rc;
        char                *out;
        size_t               len;
        const char          *again;
        aihub_body_t         b;
        aihub_body_policy_t  cap = policy, resp = model_only;

        cap.cap = 100;
        cap.cap_name = "max_tokens";
        cap.cap_other = "max_completion_tokens";
        resp.cap = 100;
        resp.cap_name = "max_output_tokens";

        IS_STR(forwarded_with("{\"model\":\"a\"," MSG "}", "a", &cap),
               "{\"model\":\"a\",\"messages\":[],\"max_tokens\":100}",
               "cap: added when the body asked none");
        IS_STR(forwarded_with("{\"model\":\"a\",\"max_tokens\": null ,"
                              MSG "}", "a", &cap),
               "{\"model\":\"a\",\"max_tokens\": 100 ,\"messages\":[]}",
               "cap: in place of a null");
        IS_STR(forwarded_with("{\"model\":\"a\",\"max_completion_tokens\":"
                              "null," MSG "}", "a", &cap),
               "{\"model\":\"a\",\"max_completion_tokens\":null,"
               "\"messages\":[],\"max_tokens\":100}",
               "cap: the other name's null stays, the cap is added");
        IS_STR(forwarded_with("{\"model\":\"a\",\"max_tokens\":7," MSG "}",
                              "a", &cap),
               "=", "cap: a body's own max_tokens as it came");
        IS_STR(forwarded_with("{\"model\":\"a\",\"input\":\"x\"}", "a",
                              &resp),
               "{\"model\":\"a\",\"input\":\"x\",\"max_output_tokens\":"
               "100}", "cap: the Responses API's name");

        cap.no_store = AIHUB_STORE_FALSE;
        IS_STR(forwarded_with("{\"model\":\"a\"," MSG ",\"stream\":true}",
                              "a", &cap),
               "{\"model\":\"a\",\"messages\":[],\"stream\":true,"
               "\"stream_options\":{\"include_usage\":true},"
               "\"store\":false,\"max_tokens\":100}",
               "cap: three members added at the end, each with its comma");
        cap.no_store = AIHUB_STORE_AS_SENT;

        /* a fallback rewrites the body it forwarded before: the cap's
           member is found, not added twice; a provider that reads it
           under the other name gets it there, and the first becomes null */

        again = "{\"model\":\"a\",\"messages\":[],\"max_tokens\":100}";

        aihub_body_check(&b, (const unsigned char *) again, strlen(again),
                         &cap);
        b.max_tokens = 0;
        rc = aihub_body_rewrite(&b, &cap, (const unsigned char *) again,
                                strlen(again), "a", &out, &len);
        ok(rc == 1 && len == strlen(again) && memcmp(out, again, len) == 0,
           "cap: a second rewrite writes the same bytes");
        if (rc == 1) {
            free(out);
        }
        aihub_body_free(&b);

        cap.cap_name = "max_completion_tokens";
        cap.cap_other = "max_tokens";

        aihub_body_check(&b, (const unsigned char *) again, strlen(again),
                         &cap);
        b.max_tokens = 0;
        rc = aihub_body_rewrite(&b, &cap, (const unsigned char *) again,
                                strlen(again), "a", &out, &len);
        IS_STR(rc == 1 ? out : "(not rewritten)",
               "{\"model\":\"a\",\"messages\":[],\"max_tokens\":null,"
               "\"max_completion_tokens\":100}",
               "cap: under the other name, the first made null");
        if (rc == 1) {
            free(out);
        }
        aihub_body_free(&b);
    }

    /* the one pass and the tree agree */

    {
        int            agree, decided, bad, seed;
        size_t         k, n, len, at;
        uint32_t       rnd;
        unsigned char  buf[2048];

        aihub_body_policy_t  cap = { 300, 1, 0, 0, AIHUB_STORE_AS_SENT,
                                     0, NULL, NULL, 0 };

        static const unsigned char  bytes[] = "{}[]\",:\\ \t\n0159-.eEtfnu"
                                              "\"ax\x01\x80\xc3";

        for (k = 0; k < sizeof(plain) / sizeof(plain[0]); k++) {
            ok(same_as_tree((const unsigned char *) plain[k],
                            strlen(plain[k]), &policy, &agree) && agree,
               "plain body %zu: decided in one pass, as the tree does", k);
        }

        static const char  *tree_only[] = {
            "{\"model\":\"m\",\"messages\":[],\"tools\":[]}",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\","
            "\"tool_calls\":[]}]}",
            "{\"mod\\u0065l\":\"m\",\"messages\":[]}",
            "{\"model\":\"m\\u00e9\",\"messages\":[]}",
            "{\"model\":\"m\",\"messages\":[],\"n\":1}",
            "{\"model\":\"m\",\"messages\":[],\"x\":01}",
            "{\"model\":\"m\",\"messages\":[],\"x\":\"\\ud83d\\ude00\"}",
            "\xef\xbb\xbf{\"model\":\"m\",\"messages\":[]}",
            "\x0b{\"model\":\"m\",\"messages\":[]}",
            "{\"model\":\"m\",\"messages\":[],\"max_tokens\":64.0}",
            "{\"model\":\"m\",\"messages\":[],\"max_tokens\":1000000000}",
            "{\"model\":\"m\",\"messages\":[],\"x\":"
            "123456789012345678901234567890123}"
        };

        for (k = 0; k < sizeof(tree_only) / sizeof(tree_only[0]); k++) {
            ok(!same_as_tree((const unsigned char *) tree_only[k],
                             strlen(tree_only[k]), &policy, &agree),
               "left to the tree: %s", tree_only[k]);
        }

        /* every plain body mutated: a byte changed, put in, taken out,
           or a piece repeated; the same deterministic sequence each run */

        rnd = 12345;
        decided = 0;
        bad = 0;

#define NEXT()  (rnd = rnd * 1103515245u + 12345u, (rnd >> 8))

        for (seed = 0; seed < 200000; seed++) {
            k = NEXT() % (sizeof(plain) / sizeof(plain[0]));
            len = strlen(plain[k]);
            memcpy(buf, plain[k], len);

            for (n = 1 + NEXT() % 3; n > 0; n--) {
                at = NEXT() % len;

                switch (NEXT() % 4) {
                case 0:
                    buf[at] = bytes[NEXT() % (sizeof(bytes) - 1)];
                    break;
                case 1:
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = bytes[NEXT() % (sizeof(bytes) - 1)];
                    len++;
                    break;
                case 2:
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                    break;
                default:
                    n = NEXT() % 16;
                    if (at + n <= len && len + n < sizeof(buf)) {
                        memmove(buf + at + n, buf + at, len - at);
                        len += n;
                    }
                    n = 1;
                }
            }

            if (same_as_tree(buf, len, (seed & 1) ? &policy : &cap,
                             &agree))
            {
                decided++;
            }

            if (!agree && bad++ > 5) {
                break;
            }
        }

        ok(bad == 0, "200,000 mutated bodies: the one pass agrees with the "
           "tree on every body it decides (%d decided)", decided);
        ok(decided > 2000, "and it decides many of them (%d)", decided);
    }

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

    /* a provider that refuses stream_options: the client's goes, wherever
       it is, however written (Mistral answers 422 extra_forbidden) */

    small.no_stream_options = 1;

    IS_STR(forwarded_with("{\"model\":\"a\",\"stream\":true,"
                          "\"stream_options\":{\"include_usage\":true},"
                          MSG "}", "a", &small),
           "{\"model\":\"a\",\"stream\":true," MSG "}",
           "no stream_options: a member between two");
    IS_STR(forwarded_with("{\"model\":\"a\"," MSG ",\"stream\":true,"
                          "\"stream_options\":{\"include_usage\":true}}",
                          "a", &small),
           "{\"model\":\"a\"," MSG ",\"stream\":true}",
           "no stream_options: the last member");
    IS_STR(forwarded_with("{ \"stream_options\" : null , \"model\" : \"a\" ,"
                          " " MSG " }", "a", &small),
           "{ \"model\" : \"a\" , " MSG " }",
           "no stream_options: the first, in white space");
    IS_STR(forwarded_with("{\"model\":\"a\"," MSG ",\"stream\":true,"
                          "\"stream\\u005foptions\":{}}", "b", &small),
           "{\"model\":\"b\"," MSG ",\"stream\":true}",
           "no stream_options: its name escaped, and the model renamed");
    IS_STR(forwarded_with("{\"model\":\"a\"," MSG "}", "a", &small), "=",
           "no stream_options: a body without one goes as it came");

    return tap_done();
}
