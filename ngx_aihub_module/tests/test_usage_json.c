/*
 * aihub_usage_json: usage from non-streaming answers, each body fed whole,
 * split in two at every byte and byte by byte; then the billing rule; then
 * the one-pass reader of whole answers (aihub_usage_fast.c) against the
 * byte machine.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aihub_usage_json.h"
#include "aihub_usage_fast.h"
#include "tap.h"


typedef struct {
    const char  *name;
    const char  *body;
    int          rc;               /* after the whole body */
    int          found;
    int64_t      prompt, completion, total;
    int          has, bad;
    int          error;
    const char  *msg;
    uint64_t     chars;

    /* aihub_usage_finalize(u, est) */
    int64_t      est;
    int64_t      f_prompt, f_completion, f_total;
    int          estimated;
} case_t;


static const case_t  cases[] = {

    { "openai",
      "{\"id\":\"chatcmpl-123\",\"object\":\"chat.completion\","
      "\"created\":1732540000,\"model\":\"gpt-4o-mini\",\"choices\":[{"
      "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
      "\"Hello there, \\\"friend\\\"! \\u00e9\",\"refusal\":null},"
      "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{"
      "\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21,"
      "\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},"
      "\"completion_tokens_details\":{\"reasoning_tokens\":0}},"
      "\"system_fingerprint\":\"fp_44709d6fcb\"}\n",
      AIHUB_JSON_DONE, 1, 9, 12, 21, 7, 0, 0, "", 24,
      100, 9, 12, 21, 0 },

    { "gemini total above prompt + completion (thinking)",
      "{\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"message\":{"
      "\"content\":\"4\",\"role\":\"assistant\"}}],\"created\":1732540002,"
      "\"id\":\"Zm9v\",\"model\":\"gemini-2.5-flash\",\"object\":"
      "\"chat.completion\",\"usage\":{\"completion_tokens\":1,"
      "\"prompt_tokens\":8,\"total_tokens\":130}}",
      AIHUB_JSON_DONE, 1, 8, 1, 130, 7, 0, 0, "", 1,
      0, 8, 1, 130, 0 },

    { "responses api: usage with input and output tokens",
      "{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1,"
      "\"status\":\"completed\",\"error\":null,\"incomplete_details\":"
      "null,\"output\":[{\"type\":\"message\",\"content\":[{\"type\":"
      "\"output_text\",\"text\":\"tok tok\"}]}],\"usage\":{"
      "\"input_tokens\":11,\"input_tokens_details\":{\"cached_tokens\":4},"
      "\"output_tokens\":9,\"output_tokens_details\":{"
      "\"reasoning_tokens\":7},\"total_tokens\":20}}",
      AIHUB_JSON_DONE, 1, 11, 9, 20, 7, 0, 0, "", 7,
      0, 11, 9, 20, 0 },

    { "responses api without usage: what the output says is counted",
      "{\"id\":\"resp_2\",\"object\":\"response\",\"output\":[{\"type\":"
      "\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":"
      "\"thinking\"}]},{\"type\":\"message\",\"content\":[{\"type\":"
      "\"output_text\",\"text\":\"abcd\\u00e9fgh\"},{\"type\":\"refusal\","
      "\"refusal\":\"no\"}]},{\"type\":\"function_call\",\"name\":\"f\","
      "\"arguments\":\"{\\\"a\\\":1}\"}],\"usage\":null}",
      AIHUB_JSON_DONE, 0, 0, 0, 0, 0, 0, 0, "", 18,
      3, 3, 5, 8, 1 },

    { "responses api stream: response.completed's output is not counted",
      "{\"type\":\"response.completed\",\"response\":{\"output\":[{"
      "\"type\":\"message\",\"content\":[{\"type\":\"output_text\","
      "\"text\":\"abc\"}]}],\"usage\":{\"input_tokens\":2,"
      "\"output_tokens\":1,\"total_tokens\":3}}}",
      AIHUB_JSON_DONE, 1, 2, 1, 3, 7, 0, 0, "", 0,
      0, 2, 1, 3, 0 },

    { "responses api: the usage of a stream's response.completed",
      "{\"type\":\"response.completed\",\"sequence_number\":9,"
      "\"response\":{\"id\":\"resp_1\",\"status\":\"completed\","
      "\"error\":null,\"usage\":{\"input_tokens\":5,"
      "\"output_tokens\":3,\"total_tokens\":8}}}",
      AIHUB_JSON_DONE, 1, 5, 3, 8, 7, 0, 0, "", 0,
      0, 5, 3, 8, 0 },

    { "responses api: response.failed carries an error and usage",
      "{\"type\":\"response.failed\",\"response\":{\"status\":"
      "\"failed\",\"error\":{\"code\":\"server_error\",\"message\":"
      "\"boom\"},\"usage\":{\"input_tokens\":5,\"output_tokens\":1,"
      "\"total_tokens\":6}}}",
      AIHUB_JSON_DONE, 1, 5, 1, 6, 7, 0, 1, "boom", 0,
      0, 5, 1, 6, 0 },

    { "responses api: an error event",
      "{\"type\":\"error\",\"code\":\"server_error\",\"message\":"
      "\"x\",\"sequence_number\":2}",
      AIHUB_JSON_DONE, 0, 0, 0, 0, 0, 0, 1, "", 0,
      3, 3, 0, 3, 1 },

    { "responses api: another type is no error, a delta is content",
      "{\"type\":\"errors\",\"delta\":\"h\\u00e9llo\",\"x\":{"
      "\"type\":\"error\"}}",
      AIHUB_JSON_DONE, 0, 0, 0, 0, 0, 0, 0, "", 5,
      0, 0, 2, 2, 1 },

    { "responses api: usage deeper than response is not usage",
      "{\"response\":{\"output\":[{\"usage\":{\"input_tokens\":9}}]},"
      "\"item\":{\"usage\":{\"input_tokens\":9}}}",
      AIHUB_JSON_DONE, 0, 0, 0, 0, 0, 0, 0, "", 0,
      1, 1, 0, 1, 1 },

    { "missing usage: estimated",
      "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"abcdefghij\"}}]}",
      AIHUB_JSON_DONE, 0, 0, 0, 0, 0, 0, 0, "", 10,
      7, 7, 3, 10, 1 },

    { "usage inside a string is not usage",
      "{\"choices\":[{\"message\":{\"content\":\"\\\"usage\\\":{\\\"prompt_"
      "tokens\\\":500,\\\"completion_tokens\\\":500,\\\"total_tokens\\\":"
      "1000}\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,"
      "\"total_tokens\":3}}",
      AIHUB_JSON_DONE, 1, 1, 2, 3, 7, 0, 0, "", 73,
      0, 1, 2, 3, 0 },

    { "only a string mentioning usage",
      "{\"note\":\"\\\"usage\\\":{\\\"total_tokens\\\":5}\",\"choices\":[]}",
      AIHUB_JSON_DONE, 0, 0, 0, 0, 0, 0, 0, "", 0,
      2, 2, 0, 2, 1 },

    { "usage nested in choices does not count",
      "{\"choices\":[{\"message\":{\"content\":\"x\"},\"usage\":{"
      "\"prompt_tokens\":99,\"completion_tokens\":99,\"total_tokens\":198}}],"
      "\"meta\":{\"usage\":{\"prompt_tokens\":5}}}",
      AIHUB_JSON_DONE, 0, 0, 0, 0, 0, 0, 0, "", 1,
      4, 4, 1, 5, 1 },

    { "error object",
      "{\"error\":{\"message\":\"Invalid model \\\"x\\\"\\tyes\","
      "\"type\":\"invalid_request_error\",\"param\":\"model\","
      "\"code\":\"model_not_found\"}}",
      AIHUB_JSON_DONE, 0, 0, 0, 0, 0, 0, 1, "Invalid model \"x\" yes", 0,
      0, 0, 0, 0, 1 },

    { "error string, error null elsewhere ignored",
      "{\"error\":null,\"choices\":[{\"error\":{\"message\":\"no\"}}],"
      "\"error\":\"upstream \\u0041\\u00e9\"}",
      AIHUB_JSON_DONE, 0, 0, 0, 0, 0, 0, 1, "upstream A?", 0,
      0, 0, 0, 0, 1 },

    { "pretty printed, CRLF, exponents",
      "{\r\n  \"usage\" : {\r\n    \"prompt_tokens\" : 1.2e1,\r\n"
      "    \"completion_tokens\" : 50E-1,\r\n"
      "    \"total_tokens\" : 0.17e2\r\n  }\r\n}\r\n",
      AIHUB_JSON_DONE, 1, 12, 5, 17, 7, 0, 0, "", 0,
      0, 12, 5, 17, 0 },

    { "negative, absurd: clamped and estimated",
      "{\"choices\":[{\"message\":{\"content\":\"12345678\"}}],"
      "\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":1e10,"
      "\"total_tokens\":5}}",
      AIHUB_JSON_DONE, 1, 0, AIHUB_USAGE_MAX, 5, 7, 3, 0, "", 8,
      6, 6, 2, 8, 1 },

    { "fractional and huge numbers",
      "{\"usage\":{\"prompt_tokens\":1.5,\"completion_tokens\":-0,"
      "\"total_tokens\":99999999999999999999999999}}",
      AIHUB_JSON_DONE, 1, 1, 0, AIHUB_USAGE_MAX, 7, 5, 0, "", 0,
      3, 3, 0, 3, 1 },

    { "exact forms are not clamped",
      "{\"usage\":{\"prompt_tokens\":1.000,\"completion_tokens\":0.5e1,"
      "\"total_tokens\":1E+2}}",
      AIHUB_JSON_DONE, 1, 1, 5, 100, 7, 0, 0, "", 0,
      0, 1, 5, 100, 0 },

    /* found by fuzz_usage_json: the 19th digit was dropped unread */
    { "an integer digit beyond the mantissa is not dropped silently",
      "{\"usage\":{\"prompt_tokens\":1000000000000000005e-18,"
      "\"completion_tokens\":2,\"total_tokens\":3}}",
      AIHUB_JSON_DONE, 1, 1, 2, 3, 7, 1, 0, "", 0,
      4, 4, 2, 6, 1 },

    { "usage null",
      "{\"choices\":[],\"usage\":null}",
      AIHUB_JSON_DONE, 0, 0, 0, 0, 0, 0, 0, "", 0,
      0, 0, 0, 0, 1 },

    { "missing total: exact, not estimated",
      "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}",
      AIHUB_JSON_DONE, 1, 3, 4, 0, 3, 0, 0, "", 0,
      0, 3, 4, 7, 0 },

    { "total below the sum: the sum",
      "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
      "\"total_tokens\":5,\"prompt_tokens\":\"x\"}}",
      AIHUB_JSON_DONE, 1, 3, 4, 5, 7, 0, 0, "", 0,
      0, 3, 4, 7, 0 },

    { "last usage wins",
      "{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,"
      "\"total_tokens\":2},\"usage\":{\"completion_tokens\":7}}",
      AIHUB_JSON_DONE, 1, 0, 7, 0, 2, 0, 0, "", 0,
      4, 4, 7, 11, 1 },

    { "cut after the usage object: usage kept",
      "{\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,"
      "\"total_tokens\":5},\"choices\":[{\"message\":{\"content\":\"ab",
      AIHUB_JSON_AGAIN, 1, 2, 3, 5, 7, 0, 0, "", 2,
      0, 2, 3, 5, 0 },

    { "cut inside the usage object: not taken",
      "{\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3",
      AIHUB_JSON_AGAIN, 0, 0, 0, 0, 0, 0, 0, "", 0,
      1, 1, 0, 1, 1 },

    { "not JSON",
      "<html><body>502 Bad Gateway</body></html>",
      AIHUB_JSON_ERROR, 0, 0, 0, 0, 0, 0, 0, "", 0,
      0, 0, 0, 0, 1 },

    { "invalid after the usage: usage ignored",
      "{\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,"
      "\"total_tokens\":5},\"x\":tru}",
      AIHUB_JSON_ERROR, 0, 0, 0, 0, 0, 0, 0, "", 0,
      0, 0, 0, 0, 1 },

    { "top-level array",
      "[{\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}]",
      AIHUB_JSON_DONE, 0, 0, 0, 0, 0, 0, 0, "", 0,
      0, 0, 0, 0, 1 },

    { "escaped member names are not matched; long names skipped",
      "{\"us\\u0061ge\":{\"prompt_tokens\":2},\"usage_and_much_more_than"
      "_twenty\":{\"prompt_tokens\":3},\"usage\":{\"total_tokens\":4,"
      "\"prompt_tokens_but_longer_than_20\":9}}",
      AIHUB_JSON_DONE, 1, 0, 0, 4, 4, 0, 0, "", 0,
      1, 1, 0, 4, 1 },

    { "literals, empty containers, unicode content",
      "{\"a\":[true,false,null,{},[],\"\",-0.5e-3],\"choices\":[{\"delta\":"
      "{\"content\":\"\\ud83d\\ude00\xf0\x9f\x98\x80\xc3\xa9\\n\"}}],"
      "\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":0,"
      "\"total_tokens\":0}}",
      AIHUB_JSON_DONE, 1, 0, 0, 0, 7, 0, 0, "", 4,
      9, 0, 0, 0, 0 },

    { "trailing garbage after the document is ignored",
      "{\"usage\":{\"total_tokens\":4}} \n{\"usage\":{\"total_tokens\":9}}",
      AIHUB_JSON_DONE, 1, 0, 0, 4, 4, 0, 0, "", 0,
      2, 2, 0, 4, 1 },
};


static const char *
check(const case_t *c, aihub_usage_json_t *uj, int rc)
{
    static char     why[256];
    aihub_usage_t  *u;
    int             has, bad;

    u = &uj->usage;
    has = u->has_prompt | u->has_completion << 1 | u->has_total << 2;
    bad = u->bad_prompt | u->bad_completion << 1 | u->bad_total << 2;

    if (rc != c->rc) {
        snprintf(why, sizeof(why), "rc %d, want %d", rc, c->rc);
        return why;
    }

    if (u->found != c->found
        || (c->found && (u->prompt != c->prompt
                         || u->completion != c->completion
                         || u->total != c->total || has != c->has
                         || bad != c->bad || u->clamped != (c->bad != 0))))
    {
        snprintf(why, sizeof(why),
                 "found=%u %lld/%lld/%lld has=%d bad=%d clamped=%u",
                 u->found, (long long) u->prompt, (long long) u->completion,
                 (long long) u->total, has, bad, u->clamped);
        return why;
    }

    if (u->error != c->error || strcmp(u->error_msg, c->msg) != 0
        || u->error_len != strlen(c->msg))
    {
        snprintf(why, sizeof(why), "error=%u \"%s\"", u->error,
                 u->error_msg);
        return why;
    }

    if (u->delivered_chars != c->chars) {
        snprintf(why, sizeof(why), "chars %llu, want %llu",
                 (unsigned long long) u->delivered_chars,
                 (unsigned long long) c->chars);
        return why;
    }

    return "";
}


static void
test_case(const case_t *c)
{
    aihub_usage_json_t   uj;
    const unsigned char *p;
    const char          *why;
    size_t               len, i, k;
    int                  rc, fails;

    p = (const unsigned char *) c->body;
    len = strlen(c->body);

    aihub_usage_json_init(&uj);
    rc = aihub_usage_json_feed(&uj, p, len);
    why = check(c, &uj, rc);
    ok(*why == '\0', "%s: whole %s", c->name, why);

    fails = 0;

    for (i = 0; i <= len; i++) {
        aihub_usage_json_init(&uj);
        (void) aihub_usage_json_feed(&uj, p, i);
        rc = aihub_usage_json_feed(&uj, p + i, len - i);
        why = check(c, &uj, rc);

        if (*why && fails++ == 0) {
            diag("%s: split at %zu: %s", c->name, i, why);
        }
    }

    ok(fails == 0, "%s: every split point (%zu)", c->name, len + 1);

    aihub_usage_json_init(&uj);
    rc = AIHUB_JSON_AGAIN;

    for (k = 0; k < len; k++) {
        rc = aihub_usage_json_feed(&uj, p + k, 1);
    }

    why = check(c, &uj, rc);
    ok(*why == '\0', "%s: byte by byte %s", c->name, why);

    aihub_usage_json_init(&uj);
    (void) aihub_usage_json_feed(&uj, p, len);
    aihub_usage_finalize(&uj.usage, c->est);

    ok(uj.usage.prompt == c->f_prompt && uj.usage.completion == c->f_completion
       && uj.usage.total == c->f_total && uj.usage.estimated == c->estimated,
       "%s: billed %lld/%lld/%lld estimated=%u", c->name,
       (long long) uj.usage.prompt, (long long) uj.usage.completion,
       (long long) uj.usage.total, uj.usage.estimated);
}


static void
test_limits(void)
{
    aihub_usage_json_t   uj;
    aihub_usage_t        u;
    char                *buf;
    size_t               i, k, n;
    int                  rc;

    /* nesting deeper than AIHUB_JSON_MAX_DEPTH is refused, not a crash */

    n = 1000;
    buf = malloc(2 * n + 1);

    for (i = 0; i < n; i++) {
        buf[i] = '[';
        buf[n + i] = ']';
    }

    aihub_usage_json_init(&uj);
    rc = aihub_usage_json_feed(&uj, (unsigned char *) buf, 2 * n);
    ok(rc == AIHUB_JSON_ERROR && uj.usage.invalid,
       "1000 levels of nesting: refused");

    aihub_usage_json_init(&uj);
    rc = aihub_usage_json_feed(&uj, (unsigned char *) buf + n - 255, 255);
    rc = aihub_usage_json_feed(&uj, (unsigned char *) buf + n, 255);
    ok(rc == AIHUB_JSON_DONE, "255 levels of nesting: read");
    free(buf);

    /*
     * The exponent of a number is read in full in 64 bits.  It was an
     * int32_t that every fraction digit decremented with no bound (signed
     * overflow after 2^31 zeros after "0.": 2 GB, too slow to feed here),
     * and the written exponent was cut at 6 digits, so that
     * 0.<1000001 zeros>1e1000002, exactly 1, was read as a fraction.
     */

    n = 1000001;
    buf = malloc(n + 128);
    strcpy(buf, "{\"usage\":{\"prompt_tokens\":0.");
    k = strlen(buf);
    memset(buf + k, '0', n);
    k += n;

    i = k + (size_t) sprintf(buf + k, "1e1000002,\"completion_tokens\":2}}");
    aihub_usage_json_init(&uj);
    rc = aihub_usage_json_feed(&uj, (unsigned char *) buf, i);
    ok(rc == AIHUB_JSON_DONE && uj.usage.has_prompt && !uj.usage.bad_prompt
       && uj.usage.prompt == 1,
       "0.(1000001 zeros)1e1000002 is exactly 1");

    i = k + (size_t) sprintf(buf + k, "1e1000001,\"completion_tokens\":2}}");
    aihub_usage_json_init(&uj);
    rc = aihub_usage_json_feed(&uj, (unsigned char *) buf, i);
    ok(rc == AIHUB_JSON_DONE && uj.usage.has_prompt && uj.usage.bad_prompt,
       "0.(1000001 zeros)1e1000001 is a fraction");
    free(buf);

    /* a long error message is cut at a character boundary */

    n = 400;
    buf = malloc(n + 64);
    strcpy(buf, "{\"error\":{\"message\":\"");
    i = strlen(buf);
    buf[i++] = 'a';
    buf[i++] = 'b';

    while (i < n) {
        buf[i++] = '\xc3';
        buf[i++] = '\xa9';
    }

    strcpy(buf + i, "\"}}");

    aihub_usage_json_init(&uj);
    rc = aihub_usage_json_feed(&uj, (unsigned char *) buf, strlen(buf));
    ok(rc == AIHUB_JSON_DONE && uj.usage.error
       && uj.usage.error_len == AIHUB_USAGE_MSG_LEN - 2
       && strlen(uj.usage.error_msg) == uj.usage.error_len
       && (unsigned char) uj.usage.error_msg[uj.usage.error_len - 1] == 0xa9,
       "a long error message is cut to %zu bytes on a character boundary",
       uj.usage.error_len);
    free(buf);

    /* finalize: negative estimate, absurd estimate */

    memset(&u, 0, sizeof(u));
    aihub_usage_finalize(&u, -5);
    ok(u.prompt == 0 && u.completion == 0 && u.total == 0 && u.estimated,
       "finalize: nothing known, negative estimate -> 0, estimated");

    memset(&u, 0, sizeof(u));
    u.delivered_chars = 40000000000ULL;
    aihub_usage_finalize(&u, 5000000000LL);
    ok(u.prompt == AIHUB_USAGE_MAX && u.completion == AIHUB_USAGE_MAX
       && u.total == 2LL * AIHUB_USAGE_MAX && u.clamped && u.estimated,
       "finalize: absurd estimates clamped");

    memset(&u, 0, sizeof(u));
    u.has_prompt = 1;
    u.prompt = 10;
    u.delivered_chars = 9;
    aihub_usage_finalize(&u, 99);
    ok(u.prompt == 10 && u.completion == 3 && u.total == 13 && u.estimated,
       "finalize: reported prompt kept, completion ceil(9 / 4) = 3");
}


/* random JSON-ish documents: every split agrees with the whole feed */

static void
test_random(void)
{
    static const char  *frags[] = {
        "{", "}", "[", "]", "\"", ":", ",", " ", "\"usage\"",
        "\"choices\"", "\"error\"", "\"message\"", "\"prompt_tokens\"",
        "\"completion_tokens\"", "\"total_tokens\"", "\"content\"",
        "\"delta\"", "null", "true", "false", "12", "-3", "1.5", "2e3",
        "\\", "\\u00e9", "\\\"", "\xc3\xa9", "x"
    };

    aihub_usage_json_t   a, b;
    unsigned char        in[512];
    size_t               len, i, f;
    uint32_t             rnd;
    int                  k, ra, rb, bad;

    rnd = 42;
    bad = 0;

    for (k = 0; k < 3000; k++) {
        len = 0;

        for ( ;; ) {
            rnd = rnd * 1103515245 + 12345;
            f = (rnd >> 8) % (sizeof(frags) / sizeof(frags[0]));

            if (len + strlen(frags[f]) > 120 || (rnd >> 24) % 30 == 0) {
                break;
            }

            memcpy(in + len, frags[f], strlen(frags[f]));
            len += strlen(frags[f]);
        }

        aihub_usage_json_init(&a);
        ra = aihub_usage_json_feed(&a, in, len);

        for (i = 0; i <= len; i++) {
            aihub_usage_json_init(&b);
            (void) aihub_usage_json_feed(&b, in, i);
            rb = aihub_usage_json_feed(&b, in + i, len - i);

            if (ra != rb || memcmp(&a.usage, &b.usage, sizeof(a.usage)) != 0)
            {
                if (bad++ == 0) {
                    diag("random #%d split %zu: %.*s", k, i, (int) len, in);
                }
            }
        }
    }

    ok(bad == 0, "3000 random documents: every split agrees with whole");
}


/*
 * The one-pass reader of whole answers: the plain answers it must decide,
 * with what the byte machine finds in them, and those it must leave to the
 * machine.  Either way aihub_usage_json_feed() on the whole answer gives
 * what the machine alone gives.
 */

typedef struct {
    const char  *name;
    const char  *body;
    int          decided;
} fast_case_t;


static const fast_case_t  fast_cases[] = {

    { "openrouter's shape",
      "{\"id\":\"gen-1\",\"provider\":\"OpenAI\",\"model\":"
      "\"openai/gpt-4o-mini\",\"object\":\"chat.completion\",\"created\":"
      "1732540000,\"choices\":[{\"logprobs\":null,\"finish_reason\":"
      "\"stop\",\"native_finish_reason\":\"stop\",\"index\":0,\"message\":"
      "{\"role\":\"assistant\",\"content\":\"Hi! \\ud83d\\ude00\\n\\\"q\\\""
      " \\/ \xc3\xa9\",\"refusal\":null,\"reasoning\":null}}],\"usage\":{"
      "\"prompt_tokens\":14,\"completion_tokens\":4,\"total_tokens\":18,"
      "\"cost\":0.0000045,\"is_byok\":false,\"prompt_tokens_details\":{"
      "\"cached_tokens\":0},\"cost_details\":{\"upstream_inference_cost\":"
      "null},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}", 1 },

    { "pretty-printed with CRLF",
      "\r\n{\r\n  \"choices\" : [ {\r\n    \"message\" : { \"content\" : "
      "\"caf\xc3\xa9\" }\r\n  } ],\r\n  \"usage\" : { \"prompt_tokens\" : 3 "
      ", \"completion_tokens\" : 0 }\r\n}\r\n", 1 },

    { "reasoning_content, refusal, a delta object",
      "{\"choices\":[{\"message\":{\"reasoning_content\":\"abc\","
      "\"content\":\"de\",\"refusal\":\"no\"}},{\"delta\":{\"reasoning\":"
      "\"x\"}}],\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}", 1 },

    { "two usage members: the last counts",
      "{\"usage\":{\"prompt_tokens\":1,\"total_tokens\":9},\"usage\":{"
      "\"completion_tokens\":2}}", 1 },

    { "a member repeated in a usage object",
      "{\"usage\":{\"prompt_tokens\":1,\"prompt_tokens\":7}}", 1 },

    { "empty choices, empty usage", "{\"choices\":[],\"usage\":{}}", 1 },

    { "choices that are not all objects",
      "{\"choices\":[1,null,\"s\",{\"message\":{\"content\":\"ab\"}}]}", 1 },

    { "usage: null, and numbers as strings",
      "{\"usage\":null,\"x\":{\"usage\":{\"prompt_tokens\":5}},\"usage\":"
      "{\"prompt_tokens\":\"5\",\"completion_tokens\":{\"a\":1}}}", 1 },

    { "usage numbers at the limit",
      "{\"usage\":{\"prompt_tokens\":1000000000,\"completion_tokens\":0}}",
      1 },

    { "other numbers and literals",
      "{\"a\":[-0,0.5,-1.25e+3,7E-2,true,false,null,{},[[]]],\"b\":\"\\u00e9\"}",
      1 },

    { "content that is not a string",
      "{\"choices\":[{\"message\":{\"content\":[{\"text\":\"abc\"}]}}]}", 1 },

    { "a control byte in a string", "{\"choices\":[{\"message\":{\"content\":"
      "\"a\tb\x01\"}}]}", 1 },

    { "usage spelled in the text, and inside a choice: not counted",
      "{\"choices\":[{\"message\":{\"content\":\"{\\\"usage\\\":{"
      "\\\"prompt_tokens\\\":999}}\"},\"usage\":{\"prompt_tokens\":"
      "1000}}],\"x\":\"\\\"usage\\\":{\\\"total_tokens\\\":7}\","
      "\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}", 1 },

    { "cut short", "{\"usage\":{\"prompt_tokens\":12}", 0 },
    { "cut in a number", "{\"a\":1", 0 },
    { "cut in an escape", "{\"a\":\"\\u00", 0 },
    { "error", "{\"error\":null,\"usage\":{\"prompt_tokens\":1}}", 0 },
    { "type", "{\"type\":\"message\"}", 0 },
    { "response", "{\"response\":{\"usage\":{\"input_tokens\":1}}}", 0 },
    { "delta at the top", "{\"delta\":\"abc\"}", 0 },
    { "output", "{\"output\":[]}", 0 },
    { "tool calls",
      "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{"
      "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}", 0 },
    { "function_call",
      "{\"choices\":[{\"message\":{\"function_call\":{\"name\":\"f\"}}}]}",
      0 },
    { "an escaped member name",
      "{\"us\\u0061ge\":{\"prompt_tokens\":1}}", 0 },
    { "a negative usage number", "{\"usage\":{\"prompt_tokens\":-1}}", 0 },
    { "minus zero", "{\"usage\":{\"prompt_tokens\":-0}}", 0 },
    { "a fraction", "{\"usage\":{\"prompt_tokens\":1.0}}", 0 },
    { "an exponent", "{\"usage\":{\"completion_tokens\":1e2}}", 0 },
    { "above the limit", "{\"usage\":{\"total_tokens\":1000000001}}", 0 },
    { "eleven digits", "{\"usage\":{\"prompt_tokens\":10000000000}}", 0 },
    { "a leading zero", "{\"a\":01}", 0 },
    { "bytes after it", "{\"usage\":{}} x", 0 },
    { "two documents", "{} {}", 0 },
    { "a top-level array", "[{\"usage\":{}}]", 0 },
    { "a byte order mark", "\xef\xbb\xbf{}", 0 },
    { "a bad escape", "{\"a\":\"\\x\"}", 0 },
    { "a bad \\u", "{\"a\":\"\\u12g4\"}", 0 },
    { "a trailing comma", "{\"a\":1,}", 0 },
    { "no colon", "{\"a\" 1}", 0 },
    { "a bad literal", "{\"a\":nul}", 0 },
    { "a member name that is not a string", "{a:1}", 0 },
    { "empty", "", 0 },
};


/* the byte machine alone, byte by byte */

static int
machine(aihub_usage_json_t *uj, const unsigned char *p, size_t len)
{
    size_t  i;
    int     rc;

    aihub_usage_json_init(uj);
    rc = AIHUB_JSON_AGAIN;

    for (i = 0; i < len; i++) {
        rc = aihub_json_feed(&uj->json, p + i, 1);
    }

    aihub_json_commit(&uj->json, &uj->usage);

    return rc;
}


static int
same_as_machine(const unsigned char *p, size_t len, int *decided)
{
    int                  rc, mrc;
    aihub_json_t        *j;
    aihub_usage_fast_t   f;
    aihub_usage_json_t   uj, m;

    mrc = machine(&m, p, len);

    aihub_usage_json_init(&uj);
    rc = aihub_usage_json_feed(&uj, p, len);

    if (rc != mrc || memcmp(&uj.usage, &m.usage, sizeof(uj.usage)) != 0) {
        return 0;
    }

    *decided = (aihub_usage_fast(p, len, &f) == AIHUB_USAGE_FAST_DECIDED);

    if (!*decided) {
        return 1;
    }

    j = &m.json;

    return rc == AIHUB_JSON_DONE && !j->invalid && !j->trailing && !j->error
           && j->chars == f.chars && j->choices == f.choices
           && j->usage == f.usage && (!f.usage || j->val_has == f.val_has)
           && (!f.usage || memcmp(j->val, f.val, sizeof(f.val)) == 0);
}


static void
test_fast(void)
{
    size_t                i, k, len;
    int                   decided, fails;
    unsigned char         deep[128];
    aihub_usage_fast_t    f;
    const fast_case_t    *c;

    for (i = 0; i < sizeof(fast_cases) / sizeof(fast_cases[0]); i++) {
        c = &fast_cases[i];
        len = strlen(c->body);
        decided = -1;

        ok(same_as_machine((const unsigned char *) c->body, len, &decided)
           && decided == c->decided,
           "one pass: %s: %s, as the machine reads it", c->name,
           c->decided ? "decided" : "left to the machine");
    }

    /* the top-level usage alone counts, however the text spells it */

    c = &fast_cases[12];
    ok(aihub_usage_fast((const unsigned char *) c->body, strlen(c->body), &f)
       == AIHUB_USAGE_FAST_DECIDED && f.usage && f.val[0] == 2
       && f.val[1] == 3 && f.val_has == 3 && f.chars == 31,
       "one pass: %s: 2/3, 31 characters", c->name);

    /* every part of a whole answer is left to the machine */

    c = &fast_cases[0];
    len = strlen(c->body);
    fails = 0;

    for (k = 0; k < len; k++) {
        if (aihub_usage_fast((const unsigned char *) c->body, k, &f)
            != AIHUB_USAGE_FAST_UNDECIDED)
        {
            fails++;
        }
    }

    ok(fails == 0, "one pass: none of the %zu parts of an answer decided",
       len);

    /* nesting: 32 levels are read, 33 left to the machine */

    for (k = 31; k <= 32; k++) {
        deep[0] = '{';
        memcpy(deep + 1, "\"a\":", 4);
        memset(deep + 5, '[', k);
        memset(deep + 5 + k, ']', k);
        deep[5 + 2 * k] = '}';

        ok(same_as_machine(deep, 6 + 2 * k, &decided)
           && decided == (k == 31),
           "one pass: %zu levels %s", k + 1,
           k == 31 ? "decided" : "left to the machine");
    }
}


int
main(void)
{
    size_t  i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        test_case(&cases[i]);
    }

    test_limits();
    test_random();
    test_fast();

    return tap_done();
}
