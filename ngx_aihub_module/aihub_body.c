/*
 * The chat request body, checked and rewritten (see aihub_body.h).
 */

#include <string.h>

#include "aihub_body_rules.h"
#include "aihub_body.h"


/* an image or audio part counts as this many characters: 765 tokens, a
   high-detail image at OpenAI */
#define AIHUB_BODY_MEDIA_CHARS  (765 * 4)


static void aihub_body_parse(aihub_body_t *b, const unsigned char *p,
    size_t n);
static int aihub_body_members(aihub_body_t *b, cJSON *obj);
static void aihub_body_options(aihub_body_t *b,
    const aihub_body_policy_t *policy);
static int64_t aihub_body_prompt_chars(cJSON *root, cJSON *messages);
static int64_t aihub_body_utf8_chars(const char *s);


void
aihub_body_check(aihub_body_t *b, const unsigned char *p, size_t n,
    const aihub_body_policy_t *policy)
{
    cJSON  *root, *model, *messages;

    memset(b, 0, sizeof(aihub_body_t));

    if (n == 0) {
        b->verdict = AIHUB_BODY_EMPTY;
        return;
    }

    if (aihub_json_has_nul_escape(p, n)) {
        b->verdict = AIHUB_BODY_NUL;
        return;
    }

    aihub_body_parse(b, p, n);

    if (b->json == NULL) {
        return;
    }

    root = b->json;

    if (!cJSON_IsObject(root)) {
        b->verdict = AIHUB_BODY_NOT_OBJECT;
        return;
    }

    if (aihub_body_members(b, root) != 0
        || aihub_body_members(b, cJSON_GetObjectItemCaseSensitive(
                                     root, "stream_options"))
           != 0)
    {
        return;
    }

    model = cJSON_GetObjectItemCaseSensitive(root, "model");

    if (model == NULL) {
        b->verdict = AIHUB_BODY_NO_MODEL;
        return;
    }

    if (!cJSON_IsString(model) || model->valuestring[0] == '\0') {
        b->verdict = AIHUB_BODY_BAD_MODEL;
        return;
    }

    b->model = model->valuestring;
    b->model_len = strlen(model->valuestring);

    messages = cJSON_GetObjectItemCaseSensitive(root, "messages");

    if (!cJSON_IsArray(messages)) {
        b->verdict = AIHUB_BODY_BAD_MESSAGES;
        return;
    }

    b->prompt_chars = aihub_body_prompt_chars(root, messages);

    aihub_body_options(b, policy);
}


/* one JSON value and nothing but white space after it */

static void
aihub_body_parse(aihub_body_t *b, const unsigned char *p, size_t n)
{
    cJSON                *root;
    const char           *end;
    const unsigned char  *c;

    root = cJSON_ParseWithLengthOpts((const char *) p, n, &end, 0);

    if (root != NULL) {
        for (c = (const unsigned char *) end; c < p + n; c++) {
            if (*c != ' ' && *c != '\t' && *c != '\r' && *c != '\n') {
                cJSON_Delete(root);
                root = NULL;
                break;
            }
        }
    }

    if (root == NULL) {
        b->verdict = AIHUB_BODY_SYNTAX;
        return;
    }

    b->json = root;
}


/*
 * What the gateway checks is what the provider reads: no member twice
 * (cJSON reads the first, providers the last), and at the top level
 * nothing that routes or bills the call behind the gateway's back.
 * -1: refused (the verdict is set).
 */

static int
aihub_body_members(aihub_body_t *b, cJSON *obj)
{
    const char  *name;

    if (!cJSON_IsObject(obj)) {
        return 0;
    }

    name = aihub_json_duplicate_member(obj);

    if (name != NULL) {
        b->verdict = AIHUB_BODY_DUPLICATE;
        b->member = name;
        return -1;
    }

    if (obj != b->json) {
        return 0;
    }

    name = aihub_body_refused_member(obj);

    if (name != NULL) {
        b->verdict = AIHUB_BODY_REFUSED;
        b->member = name;
        return -1;
    }

    return 0;
}


/* stream, stream_options.include_usage, max_tokens (or
   max_completion_tokens) */

static void
aihub_body_options(aihub_body_t *b, const aihub_body_policy_t *policy)
{
    cJSON  *root, *stream, *max, *opts, *inc;

    root = b->json;

    stream = cJSON_GetObjectItemCaseSensitive(root, "stream");

    if (stream != NULL && !cJSON_IsBool(stream) && !cJSON_IsNull(stream)) {
        b->verdict = AIHUB_BODY_BAD_STREAM;
        return;
    }

    b->stream = cJSON_IsTrue(stream);

    opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");

    if (opts != NULL && !cJSON_IsObject(opts) && !cJSON_IsNull(opts)) {
        b->verdict = AIHUB_BODY_BAD_STREAM_OPTIONS;
        return;
    }

    inc = cJSON_GetObjectItemCaseSensitive(opts, "include_usage");
    b->include_usage = cJSON_IsTrue(inc);

    max = cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens");
    if (max == NULL || cJSON_IsNull(max)) {
        max = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    }

    if (max != NULL && !cJSON_IsNull(max)) {
        if (!cJSON_IsNumber(max) || max->valuedouble < 1
            || max->valuedouble > (double) policy->max_tokens_max
            || max->valuedouble != (double) (int64_t) max->valuedouble)
        {
            b->verdict = AIHUB_BODY_BAD_MAX_TOKENS;
            return;
        }

        b->max_tokens = (int64_t) max->valuedouble;
    }
}


/* characters (not bytes) of text in the messages, for the estimate */

static int64_t
aihub_body_prompt_chars(cJSON *root, cJSON *messages)
{
    char     *printed;
    int64_t   n;
    cJSON    *msg, *content, *part, *text, *type, *extra;

    static const char  *extras[] = { "tools", "functions", "tool_choice",
                                     "response_format", NULL };
    const char        **name;

    n = 0;

    cJSON_ArrayForEach(msg, messages) {
        content = cJSON_GetObjectItemCaseSensitive(msg, "content");

        if (cJSON_IsString(content)) {
            n += aihub_body_utf8_chars(content->valuestring);

        } else if (cJSON_IsArray(content)) {
            cJSON_ArrayForEach(part, content) {
                text = cJSON_GetObjectItemCaseSensitive(part, "text");
                type = cJSON_GetObjectItemCaseSensitive(part, "type");

                if (cJSON_IsString(text)) {
                    n += aihub_body_utf8_chars(text->valuestring);

                } else if (cJSON_IsString(type)
                           && strcmp(type->valuestring, "text") != 0)
                {
                    /* an image or audio part: a flat, high-detail cost */
                    n += AIHUB_BODY_MEDIA_CHARS;
                }
            }
        }

        /* a tool call's arguments are prompt too */
        extra = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");

        if (extra != NULL && (printed = cJSON_PrintUnformatted(extra))) {
            n += aihub_body_utf8_chars(printed);
            cJSON_free(printed);
        }
    }

    /* tool definitions and schemas reach the model as prompt */

    for (name = extras; *name; name++) {
        extra = cJSON_GetObjectItemCaseSensitive(root, *name);

        if (extra != NULL && !cJSON_IsNull(extra)
            && (printed = cJSON_PrintUnformatted(extra)))
        {
            n += aihub_body_utf8_chars(printed);
            cJSON_free(printed);
        }
    }

    return n;
}


/* UTF-8 continuation bytes (10xxxxxx) do not start a character */

static int64_t
aihub_body_utf8_chars(const char *s)
{
    int64_t               n;
    const unsigned char  *p;

    n = 0;

    for (p = (const unsigned char *) s; *p; p++) {
        n += ((*p & 0xc0) != 0x80);
    }

    return n;
}


int
aihub_body_rewrite(aihub_body_t *b, const aihub_body_policy_t *policy,
    const char *upstream, char **out, size_t *len)
{
    int     rename, usage;
    cJSON  *root, *opts, *model;

    root = b->json;

    rename = (strlen(upstream) != b->model_len
              || memcmp(upstream, b->model, b->model_len) != 0);

    usage = policy->stream_usage && b->stream && !b->include_usage;

    if (!rename && !usage) {
        return 0;
    }

    if (rename) {
        model = cJSON_CreateString(upstream);

        if (model == NULL) {
            return -1;
        }

        if (!cJSON_ReplaceItemInObjectCaseSensitive(root, "model", model)) {
            cJSON_Delete(model);
            return -1;
        }

        b->model = model->valuestring;
        b->model_len = strlen(model->valuestring);
    }

    if (usage) {
        opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");

        if (!cJSON_IsObject(opts)) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, "stream_options");

            opts = cJSON_AddObjectToObject(root, "stream_options");
            if (opts == NULL) {
                return -1;
            }
        }

        cJSON_DeleteItemFromObjectCaseSensitive(opts, "include_usage");

        if (cJSON_AddTrueToObject(opts, "include_usage") == NULL) {
            return -1;
        }

        b->include_usage = 1;
    }

    *out = cJSON_PrintUnformatted(root);
    if (*out == NULL) {
        return -1;
    }

    *len = strlen(*out);

    return 1;
}


const char *
aihub_body_message(aihub_body_verdict_e verdict)
{
    switch (verdict) {

    case AIHUB_BODY_OK:
        return "";

    case AIHUB_BODY_EMPTY:
        return "The request body is empty: send a JSON object.";

    case AIHUB_BODY_NUL:
        return "The request body holds the escape \\u0000 (NUL), which the "
               "gateway does not accept.";

    case AIHUB_BODY_SYNTAX:
        return "We could not parse the JSON body of your request.";

    case AIHUB_BODY_NOT_OBJECT:
        return "The request body must be a JSON object.";

    case AIHUB_BODY_DUPLICATE:
        return "appears more than once";

    case AIHUB_BODY_REFUSED:
        return "is not accepted by this gateway (it would change how the "
               "provider routes or bills the call)";

    case AIHUB_BODY_NO_MODEL:
        return "You must provide a model parameter.";

    case AIHUB_BODY_BAD_MODEL:
        return "The model parameter must be a non-empty string.";

    case AIHUB_BODY_BAD_MESSAGES:
        return "The messages parameter must be an array.";

    case AIHUB_BODY_BAD_STREAM:
        return "The stream parameter must be a boolean.";

    case AIHUB_BODY_BAD_STREAM_OPTIONS:
        return "The stream_options parameter must be an object.";

    case AIHUB_BODY_BAD_MAX_TOKENS:
        return "max_tokens must be a positive integer.";

    default: /* AIHUB_BODY_NO_MEMORY */
        return "The gateway failed to process the request.";
    }
}


void
aihub_body_free(aihub_body_t *b)
{
    cJSON_Delete(b->json);
    b->json = NULL;
}
