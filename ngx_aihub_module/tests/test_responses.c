/*
 * aihub_responses: Responses requests as chat completion requests (and
 * what cannot be translated), chat completions as response objects, and
 * chat completion streams (the fixtures of streams/) as Responses API
 * events, fed whole, split at every byte and byte by byte.
 */

#define _DEFAULT_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aihub_responses.h"
#include "tap.h"


/* the translated request, printed; or "ERR: <reason>" */

static char *
request(const char *json)
{
    static char   out[4096];
    char          err[AIHUB_RESPONSES_ERR_LEN], *p;
    cJSON        *req, *chat;

    req = cJSON_Parse(json);
    if (req == NULL) {
        return "(parse error)";
    }

    chat = aihub_responses_request(req, err, sizeof(err));
    cJSON_Delete(req);

    if (chat == NULL) {
        snprintf(out, sizeof(out), "ERR: %s", err);
        return out;
    }

    p = cJSON_PrintUnformatted(chat);
    snprintf(out, sizeof(out), "%s", p);
    cJSON_free(p);
    cJSON_Delete(chat);

    return out;
}


static void
test_request(void)
{
    size_t  i;

    static const struct {
        const char  *in;
        const char  *out;
    } cases[] = {
        { "{\"model\":\"m\",\"input\":\"hi\"}",
          "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
          "\"model\":\"m\"}" },

        { "{\"model\":\"m\",\"instructions\":\"Be brief.\",\"input\":\"hi\","
          "\"max_output_tokens\":50,\"temperature\":0.5,\"stream\":true,"
          "\"store\":false,\"metadata\":{\"a\":\"b\"}}",
          "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
          "{\"role\":\"user\",\"content\":\"hi\"}],\"model\":\"m\","
          "\"max_tokens\":50,\"temperature\":0.5,\"stream\":true,"
          "\"stream_options\":{\"include_usage\":true}}" },

        /* the Vercel AI SDK's shape */
        { "{\"model\":\"m\",\"input\":[{\"role\":\"developer\",\"content\":"
          "\"sys\"},{\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
          "\"text\":\"a\"},{\"type\":\"input_text\",\"text\":\"b\"}]},"
          "{\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
          "\"text\":\"c\"}],\"id\":\"msg_1\"}]}",
          "{\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},"
          "{\"role\":\"user\",\"content\":\"ab\"},{\"role\":\"assistant\","
          "\"content\":\"c\"}],\"model\":\"m\"}" },

        { "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":["
          "{\"type\":\"input_text\",\"text\":\"what?\"},{\"type\":"
          "\"input_image\",\"image_url\":\"https://x/y.png\",\"detail\":"
          "\"low\"}]}]}",
          "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
          "\"text\":\"what?\"},{\"type\":\"image_url\",\"image_url\":{"
          "\"url\":\"https://x/y.png\",\"detail\":\"low\"}}]}],"
          "\"model\":\"m\"}" },

        /* tools, a call and its output */
        { "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"name\":\"f\","
          "\"description\":\"d\",\"parameters\":{\"type\":\"object\"},"
          "\"strict\":true}],\"tool_choice\":{\"type\":\"function\","
          "\"name\":\"f\"},\"input\":[{\"role\":\"user\",\"content\":\"q\"},"
          "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\","
          "\"arguments\":\"{}\"},{\"type\":\"function_call\",\"call_id\":"
          "\"c2\",\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"},"
          "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":"
          "\"42\"}]}",
          "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":"
          "\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
          "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
          "\"{}\"}},{\"id\":\"c2\",\"type\":\"function\",\"function\":{"
          "\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}}]},{\"role\":"
          "\"tool\",\"tool_call_id\":\"c1\",\"content\":\"42\"}],\"model\":"
          "\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
          "\"f\",\"description\":\"d\",\"parameters\":{\"type\":\"object\"},"
          "\"strict\":true}}],\"tool_choice\":{\"type\":\"function\","
          "\"function\":{\"name\":\"f\"}}}" },

        { "{\"model\":\"m\",\"input\":\"x\",\"text\":{\"format\":{\"type\":"
          "\"json_schema\",\"name\":\"n\",\"schema\":{\"type\":\"object\"},"
          "\"strict\":true}},\"reasoning\":{\"effort\":\"low\"}}",
          "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":"
          "\"m\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
          "{\"name\":\"n\",\"schema\":{\"type\":\"object\"},\"strict\":true}},"
          "\"reasoning_effort\":\"low\"}" },

        { "{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"r1\"}",
          "ERR: The member \"previous_response_id\" of the Responses API "
          "cannot be translated for this model, whose provider speaks chat "
          "completions only." },

        { "{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":null,"
          "\"include\":[],\"truncation\":\"disabled\",\"stream_options\":"
          "{\"include_obfuscation\":false}}",
          "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
          "\"model\":\"m\"}" },

        { "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":"
          "\"web_search\"}]}",
          "ERR: The tool type \"web_search\" of the Responses API cannot be "
          "translated for this model, whose provider speaks chat completions "
          "only." },

        { "{\"model\":\"m\",\"input\":[{\"type\":\"item_reference\",\"id\":"
          "\"x\"}]}",
          "ERR: The input item type \"item_reference\" of the Responses API "
          "cannot be translated for this model, whose provider speaks chat "
          "completions only." },

        { "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{"
          "\"type\":\"input_file\",\"file_id\":\"f\"}]}]}",
          "ERR: The content part type \"input_file\" of the Responses API "
          "cannot be translated for this model, whose provider speaks chat "
          "completions only." },

        { "{\"model\":\"m\",\"input\":\"x\",\"background\":true}",
          "ERR: The member \"background\" of the Responses API cannot be "
          "translated for this model, whose provider speaks chat "
          "completions only." },

        { "{\"model\":\"m\"}",
          "ERR: The input parameter is required for this model." },

        { "{\"model\":\"m\",\"input\":[{\"role\":\"critic\",\"content\":"
          "\"x\"}]}",
          "ERR: The role \"critic\" of the Responses API cannot be "
          "translated for this model, whose provider speaks chat "
          "completions only." },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char  *got = request(cases[i].in);

        if (!ok(strcmp(got, cases[i].out) == 0, "request %zu", i)) {
            diag("in:   %s", cases[i].in);
            diag("got:  %s", got);
            diag("want: %s", cases[i].out);
        }
    }
}


static void
test_answer(void)
{
    char         *out;
    size_t        len;
    cJSON        *r, *u, *o;

    static const char  chat[] =
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":"
        "1732540000,\"model\":\"gemini-2.5-flash\",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"Hi there\"},"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":8,"
        "\"completion_tokens\":2,\"total_tokens\":30,"
        "\"prompt_tokens_details\":{\"cached_tokens\":3}}}";

    static const char  calls[] =
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":null,"
        "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},"
        "\"finish_reason\":\"length\"}]}";

    static const char  two[] =
        "{\"choices\":[{\"message\":{\"role\":\"assistant\","
        "\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"a\\\":1}\","
        "\"name\":\"f\"},\"id\":\"function-call-1\",\"type\":"
        "\"function\"},{\"function\":{\"arguments\":\"{\\\"b\\\":2}\","
        "\"name\":\"g\"},\"id\":\"function-call-2\",\"type\":"
        "\"function\"}]},\"finish_reason\":\"tool_calls\",\"index\":0}]}";

    out = aihub_responses_answer(chat, sizeof(chat) - 1, "abc", "pub/m", 1,
                                 &len);
    ok(out != NULL && len == strlen(out), "answer: translated");

    r = cJSON_Parse(out);
    u = cJSON_GetObjectItem(r, "usage");
    o = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "output"), 0);

    ok(strcmp(cJSON_GetObjectItem(r, "id")->valuestring, "resp_abc") == 0,
       "answer: id resp_<id>");
    ok(strcmp(cJSON_GetObjectItem(r, "object")->valuestring, "response")
       == 0, "answer: object response");
    ok(strcmp(cJSON_GetObjectItem(r, "model")->valuestring, "pub/m") == 0,
       "answer: the client's model");
    ok(strcmp(cJSON_GetObjectItem(r, "status")->valuestring, "completed")
       == 0, "answer: completed");
    ok(cJSON_GetObjectItem(r, "created_at")->valuedouble == 1732540000,
       "answer: created_at from the completion");
    ok(strcmp(cJSON_GetObjectItem(o, "type")->valuestring, "message") == 0
       && strcmp(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "content"), 0)
                 ->child->next->valuestring, "Hi there") == 0,
       "answer: the message's output_text");
    ok(cJSON_GetObjectItem(u, "input_tokens")->valuedouble == 8
       && cJSON_GetObjectItem(u, "output_tokens")->valuedouble == 22
       && cJSON_GetObjectItem(u, "total_tokens")->valuedouble == 30,
       "answer: usage 8 in, 22 out (thinking included), 30");
    ok(cJSON_GetObjectItem(cJSON_GetObjectItem(u, "output_tokens_details"),
                           "reasoning_tokens")->valuedouble == 20
       && cJSON_GetObjectItem(cJSON_GetObjectItem(u, "input_tokens_details"),
                              "cached_tokens")->valuedouble == 3,
       "answer: 20 reasoning tokens, 3 cached");

    cJSON_Delete(r);
    free(out);

    out = aihub_responses_answer(calls, sizeof(calls) - 1, "x", "m", 7, &len);
    r = cJSON_Parse(out);
    o = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "output"), 0);

    ok(cJSON_GetArraySize(cJSON_GetObjectItem(r, "output")) == 1
       && strcmp(cJSON_GetObjectItem(o, "type")->valuestring,
                 "function_call") == 0
       && strcmp(cJSON_GetObjectItem(o, "call_id")->valuestring, "call_1")
          == 0
       && strcmp(cJSON_GetObjectItem(o, "arguments")->valuestring,
                 "{\"a\":1}") == 0,
       "answer: a tool call as a function_call item");
    ok(strcmp(cJSON_GetObjectItem(r, "status")->valuestring, "incomplete")
       == 0 && strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(r,
                          "incomplete_details"), "reason")->valuestring,
                      "max_output_tokens") == 0,
       "answer: finish_reason length: incomplete, max_output_tokens");
    ok(cJSON_IsNull(cJSON_GetObjectItem(r, "usage")),
       "answer: no usage reported: null");

    cJSON_Delete(r);
    free(out);

    /* Gemini: parallel calls, no index (a message's calls have none) */
    out = aihub_responses_answer(two, sizeof(two) - 1, "x", "m", 7, &len);
    r = cJSON_Parse(out);
    o = cJSON_GetObjectItem(r, "output");

    ok(cJSON_GetArraySize(o) == 2
       && strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(o, 0), "call_id")
                 ->valuestring, "function-call-1") == 0
       && strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(o, 0), "arguments")
                 ->valuestring, "{\"a\":1}") == 0
       && strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(o, 1), "call_id")
                 ->valuestring, "function-call-2") == 0
       && strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(o, 1), "name")
                 ->valuestring, "g") == 0
       && strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(o, 1), "arguments")
                 ->valuestring, "{\"b\":2}") == 0
       && strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(o, 0), "id")
                 ->valuestring, cJSON_GetObjectItem(cJSON_GetArrayItem(o, 1),
                                                    "id")->valuestring) != 0,
       "answer: two calls without index, an item each");

    cJSON_Delete(r);
    free(out);

    ok(aihub_responses_answer("[1]", 3, "x", "m", 0, &len) == NULL,
       "answer: not a chat completion: NULL");
    ok(aihub_responses_answer("{\"choices\":", 11, "x", "m", 0, &len)
       == NULL, "answer: cut JSON: NULL");
}


/* --- streams --------------------------------------------------------------- */

static char *
read_stream(const char *name, size_t *len)
{
    char   path[512];
    char  *p;
    long   n;
    FILE  *f;

    snprintf(path, sizeof(path), "%s/%s.sse", AIHUB_STREAMS, name);

    f = fopen(path, "rb");
    if (f == NULL) {
        diag("cannot open %s", path);
        exit(2);
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc(n + 1);

    if (p == NULL || fread(p, 1, n, f) != (size_t) n) {
        exit(2);
    }

    fclose(f);
    p[n] = '\0';
    *len = n;

    return p;
}


/* the translation of in, fed in pieces of at most step bytes (0: whole) */

static char *
translate(const char *in, size_t len, size_t step, size_t *out_len)
{
    char                 *out;
    size_t                i, n, k, got, cap;
    const unsigned char  *p;
    aihub_rstream_t      *s;

    s = aihub_rstream_create("id1", "pub/m", 5, 65536, 1 << 20);
    cap = len * 8 + 65536;
    out = malloc(cap);
    got = 0;

    for (i = 0; i <= len; i += n) {

        if (i == len) {
            aihub_rstream_finish(s);
            n = 1;

        } else {
            n = (step == 0 || len - i < step) ? len - i : step;

            if (aihub_rstream_feed(s, (const unsigned char *) in + i, n)
                != 0)
            {
                diag("feed failed");
            }
        }

        p = aihub_rstream_take(s, &k);

        if (k > 0 && got + k < cap) {
            memcpy(out + got, p, k);
            got += k;
        }
    }

    out[got] = '\0';
    *out_len = got;
    aihub_rstream_destroy(s);

    return out;
}


/* the events of a translated stream: types in order, the last event */

typedef struct {
    char    types[64][48];
    int     n;
    int     seq_ok;
    int     names_ok;             /* each "event:" line names its type */
    cJSON  *last;
    char    text[4096];           /* the output_text deltas joined */
} events_t;


static void
parse_events(char *s, events_t *ev)
{
    char   *block, *save, *data, *name, *nl;
    cJSON  *e, *t, *d;

    memset(ev, 0, sizeof(events_t));
    ev->seq_ok = 1;
    ev->names_ok = 1;

    for (block = strtok_r(s, "\n", &save); block;
         block = strtok_r(NULL, "\n", &save))
    {
        if (strncmp(block, "event: ", 7) == 0) {
            name = block + 7;
            data = strtok_r(NULL, "\n", &save);

            if (data == NULL || strncmp(data, "data: ", 6) != 0) {
                ev->names_ok = 0;
                break;
            }

            nl = data + 6;
            e = cJSON_Parse(nl);
            t = cJSON_GetObjectItem(e, "type");

            if (!cJSON_IsString(t) || strcmp(t->valuestring, name) != 0) {
                ev->names_ok = 0;
            }

            if (cJSON_GetObjectItem(e, "sequence_number") == NULL
                || cJSON_GetObjectItem(e, "sequence_number")->valueint
                   != ev->n)
            {
                ev->seq_ok = 0;
            }

            if (ev->n < 64 && cJSON_IsString(t)) {
                snprintf(ev->types[ev->n], 48, "%s", t->valuestring);
            }

            if (cJSON_IsString(t)
                && strcmp(t->valuestring, "response.output_text.delta") == 0)
            {
                d = cJSON_GetObjectItem(e, "delta");
                strncat(ev->text, d->valuestring,
                        sizeof(ev->text) - strlen(ev->text) - 1);
            }

            ev->n++;
            cJSON_Delete(ev->last);
            ev->last = e;

        } else {
            ev->names_ok = 0;
        }
    }
}


static void
test_stream(const char *name, const char *last_type, int prompt, int output,
    int total, const char *text)
{
    int        same;
    char      *in, *whole, *piece;
    size_t     len, wlen, plen, step;
    cJSON     *r, *u;
    events_t   ev;

    in = read_stream(name, &len);
    whole = translate(in, len, 0, &wlen);

    same = 1;

    for (step = 1; step < 40 && same; step++) {
        piece = translate(in, len, step, &plen);
        same = (plen == wlen && memcmp(piece, whole, wlen) == 0);
        free(piece);
    }

    ok(same, "%s: the same events however the stream is split", name);

    parse_events(whole, &ev);

    ok(ev.names_ok && ev.seq_ok, "%s: %d events, event lines and "
       "sequence numbers right", name, ev.n);
    ok(ev.n > 2 && strcmp(ev.types[0], "response.created") == 0
       && strcmp(ev.types[1], "response.in_progress") == 0,
       "%s: response.created, response.in_progress first", name);
    ok(ev.n > 0 && strcmp(ev.types[ev.n - 1], last_type) == 0,
       "%s: %s last", name, last_type);

    r = cJSON_GetObjectItem(ev.last, "response");
    u = cJSON_GetObjectItem(r, "usage");

    if (prompt >= 0) {
        ok(cJSON_GetObjectItem(u, "input_tokens")->valuedouble == prompt
           && cJSON_GetObjectItem(u, "output_tokens")->valuedouble == output
           && cJSON_GetObjectItem(u, "total_tokens")->valuedouble == total,
           "%s: usage %d/%d/%d", name, prompt, output, total);

    } else {
        ok(cJSON_IsNull(u), "%s: no usage", name);
    }

    if (text != NULL) {
        ok(strcmp(ev.text, text) == 0, "%s: the deltas are the text", name);

        ok(strcmp(cJSON_GetArrayItem(cJSON_GetObjectItem(
                      cJSON_GetArrayItem(cJSON_GetObjectItem(r, "output"), 0),
                      "content"), 0)->child->next->valuestring, text) == 0,
           "%s: the final output holds the text", name);
    }

    cJSON_Delete(ev.last);
    free(whole);
    free(in);
}


static void
test_limits(void)
{
    char                 *copy;
    size_t                n;
    events_t              ev;
    aihub_rstream_t      *s;
    const unsigned char  *p;

    static const char  big[] = "data: {\"choices\":[{\"delta\":{"
                               "\"content\":\"0123456789\"}}]}\n\n";

    /* text beyond max_text: response.failed, then nothing more */

    s = aihub_rstream_create("x", "m", 0, 1024, 15);
    aihub_rstream_feed(s, (const unsigned char *) big, sizeof(big) - 1);
    aihub_rstream_feed(s, (const unsigned char *) big, sizeof(big) - 1);
    ok(aihub_rstream_done(s), "limits: text over max_text ends the stream");

    p = aihub_rstream_take(s, &n);
    copy = malloc(n + 1);

    if (n > 0) {
        memcpy(copy, p, n);
    }

    copy[n] = '\0';
    parse_events(copy, &ev);
    ok(ev.n > 0 && strcmp(ev.types[ev.n - 1], "response.failed") == 0,
       "limits: with response.failed");
    cJSON_Delete(ev.last);
    free(copy);

    aihub_rstream_feed(s, (const unsigned char *) big, sizeof(big) - 1);
    aihub_rstream_take(s, &n);
    ok(n == 0, "limits: nothing after the end");
    aihub_rstream_destroy(s);

    /* an event over max_event */

    s = aihub_rstream_create("x", "m", 0, 16, 1024);
    aihub_rstream_feed(s, (const unsigned char *) big, sizeof(big) - 1);
    ok(aihub_rstream_done(s), "limits: an event over max_event ends it");
    aihub_rstream_destroy(s);
}


/*
 * The function_call items of a translated stream: those its
 * response.output_item.added events opened ("output_index call_id name"
 * lines) and those its last event's response holds ("call_id name
 * arguments" lines).
 */

static void
stream_calls(const char *in, char *added, size_t added_len, char *final,
    size_t final_len)
{
    char         *out, *line, *save;
    size_t        len, n;
    cJSON        *e, *last;
    const cJSON  *item;

    out = translate(in, strlen(in), 0, &len);
    last = NULL;
    added[0] = '\0';
    final[0] = '\0';

    for (line = strtok_r(out, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
    {
        if (strncmp(line, "data: ", 6) != 0) {
            continue;
        }

        e = cJSON_Parse(line + 6);
        item = cJSON_GetObjectItem(e, "item");

        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "type")),
                   "response.output_item.added") == 0
            && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(item,
                                                               "type")),
                      "function_call") == 0)
        {
            n = strlen(added);
            snprintf(added + n, added_len - n, "%d %s %s\n",
                     cJSON_GetObjectItem(e, "output_index")->valueint,
                     cJSON_GetStringValue(cJSON_GetObjectItem(item,
                                                              "call_id")),
                     cJSON_GetStringValue(cJSON_GetObjectItem(item,
                                                              "name")));
        }

        cJSON_Delete(last);
        last = e;
    }

    cJSON_ArrayForEach(item, cJSON_GetObjectItem(
                                 cJSON_GetObjectItem(last, "response"),
                                 "output"))
    {
        n = strlen(final);
        snprintf(final + n, final_len - n, "%s %s %s\n",
                 cJSON_GetStringValue(cJSON_GetObjectItem(item, "call_id")),
                 cJSON_GetStringValue(cJSON_GetObjectItem(item, "name")),
                 cJSON_GetStringValue(cJSON_GetObjectItem(item,
                                                          "arguments")));
    }

    cJSON_Delete(last);
    free(out);
}


/*
 * Tool calls without "index": Gemini's OpenAI-compatible endpoint sends
 * each call whole in one delta, with its own id and no index, several in
 * one delta's tool_calls or one a chunk; a delta with neither index nor id
 * goes on with the last call.  With index, calls are told apart by it
 * alone, as before.
 */

static void
test_stream_tools_unindexed(void)
{
    char  added[512], final[512];

    /* Gemini: two calls in one delta, finish_reason "stop" */
    static const char  one_delta[] =
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\","
        "\"tool_calls\":[{\"extra_content\":{\"google\":{"
        "\"thought_signature\":\"EjQKMg\"}},\"function\":{\"arguments\":"
        "\"{\\\"city\\\":\\\"Paris\\\"}\",\"name\":\"get_weather\"},"
        "\"id\":\"function-call-1\",\"type\":\"function\"},"
        "{\"function\":{\"arguments\":\"{\\\"tz\\\":\\\"UTC\\\"}\","
        "\"name\":\"get_time\"},\"id\":\"function-call-2\","
        "\"type\":\"function\"}]},\"finish_reason\":\"stop\","
        "\"index\":0}],\"created\":1732540002,\"id\":\"Zm9v\","
        "\"model\":\"gemini-2.5-flash\",\"object\":"
        "\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":20,"
        "\"prompt_tokens\":12,\"total_tokens\":32}}\n\n"
        "data: [DONE]\n\n";

    /* Gemini: the same two calls, one a chunk */
    static const char  two_chunks[] =
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\","
        "\"tool_calls\":[{\"function\":{\"arguments\":"
        "\"{\\\"city\\\":\\\"Paris\\\"}\",\"name\":\"get_weather\"},"
        "\"id\":\"function-call-1\",\"type\":\"function\"}]},"
        "\"index\":0}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\","
        "\"tool_calls\":[{\"function\":{\"arguments\":"
        "\"{\\\"tz\\\":\\\"UTC\\\"}\",\"name\":\"get_time\"},"
        "\"id\":\"function-call-2\",\"type\":\"function\"}]},"
        "\"finish_reason\":\"stop\",\"index\":0}]}\n\n"
        "data: [DONE]\n\n";

    /*
     * the arguments in pieces: the first delta with the id, the others
     * without index and without id (or with an empty id, or the same id)
     */
    static const char  pieces[] =
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":"
        "\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":"
        "{\"arguments\":\":1\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"\","
        "\"type\":\"\",\"function\":{\"arguments\":\",\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"c1\","
        "\"function\":{\"arguments\":\"\\\"b\\\":2}\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"c2\","
        "\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":"
        "\"tool_calls\"}]}\n\n"
        "data: [DONE]\n\n";

    /* with index: told apart by it, whatever the ids say */
    static const char  indexed[] =
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,"
        "\"id\":\"c1\",\"function\":{\"name\":\"f\",\"arguments\":"
        "\"{\\\"a\\\"\"}},{\"index\":1,\"id\":\"c2\",\"function\":"
        "{\"name\":\"g\",\"arguments\":\"{\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,"
        "\"id\":\"c9\",\"function\":{\"arguments\":\"}\"}},"
        "{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]}}]}\n\n"
        "data: [DONE]\n\n";

    stream_calls(one_delta, added, sizeof(added), final, sizeof(final));

    if (!ok(strcmp(added, "0 function-call-1 get_weather\n"
                          "1 function-call-2 get_time\n") == 0,
            "tools without index, one delta: two items, output_index 0 "
            "and 1"))
    {
        diag("%s", added);
    }

    if (!ok(strcmp(final, "function-call-1 get_weather "
                          "{\"city\":\"Paris\"}\n"
                          "function-call-2 get_time {\"tz\":\"UTC\"}\n")
            == 0, "tools without index, one delta: the response holds "
                  "both, each with its arguments"))
    {
        diag("%s", final);
    }

    stream_calls(two_chunks, added, sizeof(added), final, sizeof(final));

    if (!ok(strcmp(added, "0 function-call-1 get_weather\n"
                          "1 function-call-2 get_time\n") == 0,
            "tools without index, a chunk each: two items"))
    {
        diag("%s", added);
    }

    if (!ok(strcmp(final, "function-call-1 get_weather "
                          "{\"city\":\"Paris\"}\n"
                          "function-call-2 get_time {\"tz\":\"UTC\"}\n")
            == 0, "tools without index, a chunk each: the response holds "
                  "both"))
    {
        diag("%s", final);
    }

    stream_calls(pieces, added, sizeof(added), final, sizeof(final));

    if (!ok(strcmp(added, "0 c1 f\n1 c2 g\n") == 0,
            "tools without index, in pieces: a new id opens a call; no id, "
            "an empty one or the same goes on"))
    {
        diag("%s", added);
    }

    if (!ok(strcmp(final, "c1 f {\"a\":1,\"b\":2}\nc2 g {}\n") == 0,
            "tools without index, in pieces: the arguments joined"))
    {
        diag("%s", final);
    }

    stream_calls(indexed, added, sizeof(added), final, sizeof(final));

    if (!ok(strcmp(added, "0 c1 f\n1 c2 g\n") == 0
            && strcmp(final, "c1 f {\"a\":1}\nc2 g {}\n") == 0,
            "tools with index: by index, as before"))
    {
        diag("%s%s", added, final);
    }
}


/* a streamed tool call: its item, its argument deltas, its final item */

static void
test_stream_tools(void)
{
    int          i, calls_added, arg_deltas;
    char        *out;
    size_t       len;
    cJSON       *r, *item;
    events_t     ev;

    static const char  in[] =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":"
        "\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_9\","
        "\"type\":\"function\",\"function\":{\"name\":\"get\","
        "\"arguments\":\"\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{"
        "\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]}}]}"
        "\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{"
        "\"index\":0,\"function\":{\"arguments\":\":1}\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{},"
        "\"finish_reason\":\"tool_calls\"}]}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
        "\"completion_tokens\":6,\"total_tokens\":10}}\n\n"
        "data: [DONE]\n\n";

    out = translate(in, sizeof(in) - 1, 0, &len);
    parse_events(out, &ev);

    calls_added = 0;
    arg_deltas = 0;

    for (i = 0; i < ev.n && i < 64; i++) {
        calls_added += strcmp(ev.types[i], "response.output_item.added") == 0;
        arg_deltas += strcmp(ev.types[i],
                             "response.function_call_arguments.delta") == 0;
    }

    ok(calls_added == 1 && arg_deltas == 2,
       "tools: one function_call item, two argument deltas");
    ok(ev.seq_ok && ev.names_ok, "tools: events well formed");
    ok(ev.n > 0 && strcmp(ev.types[ev.n - 1], "response.completed") == 0,
       "tools: response.completed last");

    r = cJSON_GetObjectItem(ev.last, "response");
    item = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "output"), 0);

    ok(cJSON_GetArraySize(cJSON_GetObjectItem(r, "output")) == 1
       && strcmp(cJSON_GetObjectItem(item, "type")->valuestring,
                 "function_call") == 0
       && strcmp(cJSON_GetObjectItem(item, "call_id")->valuestring,
                 "call_9") == 0
       && strcmp(cJSON_GetObjectItem(item, "name")->valuestring, "get") == 0
       && strcmp(cJSON_GetObjectItem(item, "arguments")->valuestring,
                 "{\"a\":1}") == 0,
       "tools: the final function_call item, arguments joined");

    cJSON_Delete(ev.last);
    free(out);
}


int
main(void)
{
    test_request();
    test_answer();

    /* OpenAI: usage chunk; Gemini: thinking in the total, no [DONE] cut */
    test_stream("openai", "response.completed", 19, 10, 29, NULL);
    test_stream("gemini", "response.completed", 12, 83, 95, NULL);
    test_stream("no_usage", "response.completed", -1, 0, 0, NULL);
    test_stream("error_mid", "response.failed", -1, 0, 0, NULL);
    test_stream("cut", "response.failed", -1, 0, 0, NULL);
    test_stream("crlf", "response.completed", 7, 2, 9, "crlf");
    test_stream("nospace", "response.completed", 3, 2, 5, "no space");
    test_stream_tools();
    test_stream_tools_unindexed();
    test_limits();

    return tap_done();
}
