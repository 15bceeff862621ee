/*
 * The Responses API over chat completions (aihub_responses.h).
 */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aihub_responses.h"


#define AIHUB_RS_TOOLS  16             /* tool calls kept per stream */
#define AIHUB_RS_ID_LEN 64


/* --- the request ------------------------------------------------------- */

static int aihub_rq_input(cJSON *messages, const cJSON *input, char *err,
    size_t err_len);
static cJSON *aihub_rq_content(const cJSON *content, int parts_allowed,
    char *err, size_t err_len);
static int aihub_rq_tools(cJSON *chat, const cJSON *tools, char *err,
    size_t err_len);
static int aihub_rq_tool_choice(cJSON *chat, const cJSON *tc, char *err,
    size_t err_len);
static int aihub_rq_text(cJSON *chat, const cJSON *text, char *err,
    size_t err_len);
static void aihub_rs_err(char *err, size_t err_len, const char *what,
    const char *name);
static int aihub_rs_copy(cJSON *to, const char *name, const cJSON *from);


static const char  *aihub_rq_dropped[] = {
    "store", "metadata", "service_tier", "prompt_cache_key",
    "safety_identifier", "stream_options", NULL
};

static const char  *aihub_rq_copied[] = {
    "model", "temperature", "top_p", "parallel_tool_calls", "user", NULL
};


static int
aihub_rs_in(const char *name, const char **list)
{
    for ( /* void */ ; *list; list++) {
        if (strcmp(name, *list) == 0) {
            return 1;
        }
    }

    return 0;
}


static void
aihub_rs_err(char *err, size_t err_len, const char *what, const char *name)
{
    char  safe[48];
    size_t  i;

    /* the name as the client sent it, printable and short */

    for (i = 0; name[i] && i < sizeof(safe) - 1; i++) {
        safe[i] = (name[i] >= 0x20 && name[i] < 0x7f && name[i] != '"')
                  ? name[i] : '?';
    }

    safe[i] = '\0';

    snprintf(err, err_len, "%s \"%s\" of the Responses API cannot be "
             "translated for this model, whose provider speaks chat "
             "completions only.", what, safe);
}


static int
aihub_rs_copy(cJSON *to, const char *name, const cJSON *from)
{
    cJSON  *dup;

    dup = cJSON_Duplicate(from, 1);
    if (dup == NULL) {
        return -1;
    }

    cJSON_AddItemToObject(to, name, dup);

    return 0;
}


cJSON *
aihub_responses_request(const cJSON *req, char *err, size_t err_len)
{
    cJSON        *chat, *messages, *m, *opts, *v;
    const cJSON  *it, *sub;

    err[0] = '\0';

    if (!cJSON_IsObject(req)) {
        snprintf(err, err_len, "The request body must be a JSON object.");
        return NULL;
    }

    chat = cJSON_CreateObject();
    if (chat == NULL) {
        goto nomem;
    }

    messages = cJSON_AddArrayToObject(chat, "messages");
    if (messages == NULL) {
        goto nomem;
    }

    /* every member is known, or the translation fails */

    cJSON_ArrayForEach(it, req) {

        if (cJSON_IsNull(it) || aihub_rs_in(it->string, aihub_rq_dropped)) {
            continue;
        }

        if (aihub_rs_in(it->string, aihub_rq_copied)) {
            if (aihub_rs_copy(chat, it->string, it) != 0) {
                goto nomem;
            }

            continue;
        }

        if (strcmp(it->string, "input") == 0
            || strcmp(it->string, "instructions") == 0
            || strcmp(it->string, "stream") == 0)
        {
            continue;           /* below, in their order */
        }

        if (strcmp(it->string, "max_output_tokens") == 0) {
            if (aihub_rs_copy(chat, "max_tokens", it) != 0) {
                goto nomem;
            }

            continue;
        }

        if (strcmp(it->string, "tools") == 0) {
            if (aihub_rq_tools(chat, it, err, err_len) != 0) {
                goto failed;
            }

            continue;
        }

        if (strcmp(it->string, "tool_choice") == 0) {
            if (aihub_rq_tool_choice(chat, it, err, err_len) != 0) {
                goto failed;
            }

            continue;
        }

        if (strcmp(it->string, "text") == 0) {
            if (aihub_rq_text(chat, it, err, err_len) != 0) {
                goto failed;
            }

            continue;
        }

        if (strcmp(it->string, "reasoning") == 0 && cJSON_IsObject(it)) {
            sub = cJSON_GetObjectItemCaseSensitive(it, "effort");

            if (cJSON_IsString(sub)
                && aihub_rs_copy(chat, "reasoning_effort", sub) != 0)
            {
                goto nomem;
            }

            continue;
        }

        if (strcmp(it->string, "truncation") == 0 && cJSON_IsString(it)
            && strcmp(it->valuestring, "disabled") == 0)
        {
            continue;
        }

        if (strcmp(it->string, "include") == 0 && cJSON_IsArray(it)
            && cJSON_GetArraySize(it) == 0)
        {
            continue;
        }

        if (strcmp(it->string, "background") == 0 && cJSON_IsFalse(it)) {
            continue;           /* the default: answered in the call */
        }

        aihub_rs_err(err, err_len, "The member", it->string);
        goto failed;
    }

    v = cJSON_GetObjectItemCaseSensitive(req, "instructions");

    if (cJSON_IsString(v)) {
        m = cJSON_CreateObject();
        if (m == NULL) {
            goto nomem;
        }

        cJSON_AddItemToArray(messages, m);
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", v->valuestring);
    }

    v = cJSON_GetObjectItemCaseSensitive(req, "input");

    if (aihub_rq_input(messages, v, err, err_len) != 0) {
        goto failed;
    }

    if (cJSON_GetArraySize(messages) == 0) {
        snprintf(err, err_len, "The input parameter is required for this "
                 "model.");
        goto failed;
    }

    v = cJSON_GetObjectItemCaseSensitive(req, "stream");

    if (cJSON_IsTrue(v)) {
        cJSON_AddTrueToObject(chat, "stream");
        opts = cJSON_AddObjectToObject(chat, "stream_options");

        if (opts == NULL || cJSON_AddTrueToObject(opts, "include_usage")
                            == NULL)
        {
            goto nomem;
        }
    }

    return chat;

nomem:

    snprintf(err, err_len, "The gateway ran out of memory.");

failed:

    cJSON_Delete(chat);
    return NULL;
}


/* input: a string, or items */

static int
aihub_rq_input(cJSON *messages, const cJSON *input, char *err,
    size_t err_len)
{
    cJSON        *m, *content, *calls, *call, *fn, *last_calls;
    const cJSON  *item, *type, *role, *v;
    const char   *r;

    if (input == NULL || cJSON_IsNull(input)) {
        return 0;
    }

    if (cJSON_IsString(input)) {
        m = cJSON_CreateObject();
        if (m == NULL) {
            return -1;
        }

        cJSON_AddItemToArray(messages, m);
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", input->valuestring);
        return 0;
    }

    if (!cJSON_IsArray(input)) {
        snprintf(err, err_len, "The input parameter must be a string or an "
                 "array of items.");
        return -1;
    }

    last_calls = NULL;     /* the tool_calls consecutive calls join */

    cJSON_ArrayForEach(item, input) {

        type = cJSON_GetObjectItemCaseSensitive(item, "type");

        if (type != NULL && !cJSON_IsString(type)) {
            snprintf(err, err_len, "An input item's type must be a string.");
            return -1;
        }

        if (type == NULL || strcmp(type->valuestring, "message") == 0) {

            role = cJSON_GetObjectItemCaseSensitive(item, "role");

            if (!cJSON_IsString(role)) {
                snprintf(err, err_len, "An input message needs a role.");
                return -1;
            }

            r = role->valuestring;

            if (strcmp(r, "developer") == 0) {
                r = "system";

            } else if (strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0
                       && strcmp(r, "system") != 0)
            {
                aihub_rs_err(err, err_len, "The role", r);
                return -1;
            }

            content = aihub_rq_content(
                          cJSON_GetObjectItemCaseSensitive(item, "content"),
                          strcmp(r, "user") == 0, err, err_len);
            if (content == NULL) {
                return -1;
            }

            m = cJSON_CreateObject();
            if (m == NULL) {
                cJSON_Delete(content);
                return -1;
            }

            cJSON_AddItemToArray(messages, m);
            cJSON_AddStringToObject(m, "role", r);
            cJSON_AddItemToObject(m, "content", content);
            last_calls = NULL;
            continue;
        }

        if (strcmp(type->valuestring, "function_call") == 0) {

            if (last_calls == NULL) {
                m = cJSON_CreateObject();
                if (m == NULL) {
                    return -1;
                }

                cJSON_AddItemToArray(messages, m);
                cJSON_AddStringToObject(m, "role", "assistant");
                cJSON_AddNullToObject(m, "content");
                last_calls = cJSON_AddArrayToObject(m, "tool_calls");

                if (last_calls == NULL) {
                    return -1;
                }
            }

            calls = last_calls;
            call = cJSON_CreateObject();
            if (call == NULL) {
                return -1;
            }

            cJSON_AddItemToArray(calls, call);

            v = cJSON_GetObjectItemCaseSensitive(item, "call_id");
            if (!cJSON_IsString(v)) {
                snprintf(err, err_len, "A function_call item needs a "
                         "call_id.");
                return -1;
            }

            cJSON_AddStringToObject(call, "id", v->valuestring);
            cJSON_AddStringToObject(call, "type", "function");

            fn = cJSON_AddObjectToObject(call, "function");
            if (fn == NULL) {
                return -1;
            }

            v = cJSON_GetObjectItemCaseSensitive(item, "name");
            if (!cJSON_IsString(v)) {
                snprintf(err, err_len, "A function_call item needs a name.");
                return -1;
            }

            cJSON_AddStringToObject(fn, "name", v->valuestring);

            v = cJSON_GetObjectItemCaseSensitive(item, "arguments");
            cJSON_AddStringToObject(fn, "arguments",
                                    cJSON_IsString(v) ? v->valuestring
                                                      : "{}");

            /* what the answer's translation kept of the call: Gemini's
               thought signature, which Gemini 3 wants back */

            v = cJSON_GetObjectItemCaseSensitive(item, "extra_content");
            if (cJSON_IsObject(v)) {
                cJSON_AddItemToObject(call, "extra_content",
                                      cJSON_Duplicate(v, 1));
            }

            continue;
        }

        last_calls = NULL;

        if (strcmp(type->valuestring, "function_call_output") == 0) {
            v = cJSON_GetObjectItemCaseSensitive(item, "call_id");
            if (!cJSON_IsString(v)) {
                snprintf(err, err_len, "A function_call_output item needs a "
                         "call_id.");
                return -1;
            }

            m = cJSON_CreateObject();
            if (m == NULL) {
                return -1;
            }

            cJSON_AddItemToArray(messages, m);
            cJSON_AddStringToObject(m, "role", "tool");
            cJSON_AddStringToObject(m, "tool_call_id", v->valuestring);

            content = aihub_rq_content(
                          cJSON_GetObjectItemCaseSensitive(item, "output"),
                          0, err, err_len);
            if (content == NULL) {
                return -1;
            }

            cJSON_AddItemToObject(m, "content", content);
            continue;
        }

        if (strcmp(type->valuestring, "reasoning") == 0) {
            /* the model's own earlier thinking: chat has no place for it */
            continue;
        }

        aihub_rs_err(err, err_len, "The input item type", type->valuestring);
        return -1;
    }

    return 0;
}


/*
 * A message's content: a string, or parts.  Text parts become one string,
 * or, where parts are allowed (user messages), text and image_url parts.
 */

static cJSON *
aihub_rq_content(const cJSON *content, int parts_allowed, char *err,
    size_t err_len)
{
    int           media;
    char         *text, *p;
    size_t        len, n;
    cJSON        *out, *part, *img;
    const cJSON  *it, *type, *v, *detail;

    if (cJSON_IsString(content)) {
        return cJSON_CreateString(content->valuestring);
    }

    if (!cJSON_IsArray(content)) {
        snprintf(err, err_len, "A message's content must be a string or an "
                 "array of parts.");
        return NULL;
    }

    /* text only: one string; any image (user messages): parts */

    media = 0;
    len = 0;

    cJSON_ArrayForEach(it, content) {
        type = cJSON_GetObjectItemCaseSensitive(it, "type");

        if (!cJSON_IsString(type)) {
            snprintf(err, err_len, "A content part needs a type.");
            return NULL;
        }

        if (strcmp(type->valuestring, "input_text") == 0
            || strcmp(type->valuestring, "output_text") == 0
            || strcmp(type->valuestring, "text") == 0)
        {
            v = cJSON_GetObjectItemCaseSensitive(it, "text");

            if (!cJSON_IsString(v)) {
                snprintf(err, err_len, "A text part needs its text.");
                return NULL;
            }

            len += strlen(v->valuestring);
            continue;
        }

        if (parts_allowed && strcmp(type->valuestring, "input_image") == 0
            && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it,
                                                               "image_url")))
        {
            media = 1;
            continue;
        }

        aihub_rs_err(err, err_len, "The content part type",
                     type->valuestring);
        return NULL;
    }

    if (media) {
        out = cJSON_CreateArray();
        if (out == NULL) {
            return NULL;
        }

        cJSON_ArrayForEach(it, content) {
            type = cJSON_GetObjectItemCaseSensitive(it, "type");

            part = cJSON_CreateObject();
            if (part == NULL) {
                cJSON_Delete(out);
                return NULL;
            }

            cJSON_AddItemToArray(out, part);

            if (strcmp(type->valuestring, "input_image") == 0) {
                cJSON_AddStringToObject(part, "type", "image_url");
                img = cJSON_AddObjectToObject(part, "image_url");

                if (img == NULL) {
                    cJSON_Delete(out);
                    return NULL;
                }

                v = cJSON_GetObjectItemCaseSensitive(it, "image_url");
                cJSON_AddStringToObject(img, "url", v->valuestring);

                detail = cJSON_GetObjectItemCaseSensitive(it, "detail");
                if (cJSON_IsString(detail)) {
                    cJSON_AddStringToObject(img, "detail",
                                            detail->valuestring);
                }

            } else {
                v = cJSON_GetObjectItemCaseSensitive(it, "text");
                cJSON_AddStringToObject(part, "type", "text");
                cJSON_AddStringToObject(part, "text", v->valuestring);
            }
        }

        return out;
    }

    text = malloc(len + 1);
    if (text == NULL) {
        return NULL;
    }

    p = text;

    cJSON_ArrayForEach(it, content) {
        v = cJSON_GetObjectItemCaseSensitive(it, "text");
        n = strlen(v->valuestring);
        memcpy(p, v->valuestring, n);
        p += n;
    }

    *p = '\0';

    out = cJSON_CreateString(text);
    free(text);

    return out;
}


static int
aihub_rq_tools(cJSON *chat, const cJSON *tools, char *err, size_t err_len)
{
    cJSON        *out, *t, *fn;
    const cJSON  *it, *type, *v;

    static const char  *members[] = { "name", "description", "parameters",
                                      "strict", NULL };
    const char        **name;

    if (!cJSON_IsArray(tools)) {
        snprintf(err, err_len, "The tools parameter must be an array.");
        return -1;
    }

    out = cJSON_AddArrayToObject(chat, "tools");
    if (out == NULL) {
        return -1;
    }

    cJSON_ArrayForEach(it, tools) {
        type = cJSON_GetObjectItemCaseSensitive(it, "type");

        if (!cJSON_IsString(type) || strcmp(type->valuestring, "function")) {
            aihub_rs_err(err, err_len, "The tool type",
                         cJSON_IsString(type) ? type->valuestring : "?");
            return -1;
        }

        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "name"))) {
            snprintf(err, err_len, "A function tool needs a name.");
            return -1;
        }

        t = cJSON_CreateObject();
        if (t == NULL) {
            return -1;
        }

        cJSON_AddItemToArray(out, t);
        cJSON_AddStringToObject(t, "type", "function");

        fn = cJSON_AddObjectToObject(t, "function");
        if (fn == NULL) {
            return -1;
        }

        for (name = members; *name; name++) {
            v = cJSON_GetObjectItemCaseSensitive(it, *name);

            if (v != NULL && !cJSON_IsNull(v)
                && aihub_rs_copy(fn, *name, v) != 0)
            {
                return -1;
            }
        }
    }

    return 0;
}


static int
aihub_rq_tool_choice(cJSON *chat, const cJSON *tc, char *err,
    size_t err_len)
{
    cJSON        *o, *fn;
    const cJSON  *type, *name;

    if (cJSON_IsString(tc)
        && (strcmp(tc->valuestring, "auto") == 0
            || strcmp(tc->valuestring, "none") == 0
            || strcmp(tc->valuestring, "required") == 0))
    {
        return aihub_rs_copy(chat, "tool_choice", tc);
    }

    type = cJSON_GetObjectItemCaseSensitive(tc, "type");
    name = cJSON_GetObjectItemCaseSensitive(tc, "name");

    if (cJSON_IsString(type) && strcmp(type->valuestring, "function") == 0
        && cJSON_IsString(name))
    {
        o = cJSON_AddObjectToObject(chat, "tool_choice");
        if (o == NULL) {
            return -1;
        }

        cJSON_AddStringToObject(o, "type", "function");
        fn = cJSON_AddObjectToObject(o, "function");

        if (fn == NULL) {
            return -1;
        }

        cJSON_AddStringToObject(fn, "name", name->valuestring);
        return 0;
    }

    aihub_rs_err(err, err_len, "The tool_choice",
                 cJSON_IsString(tc) ? tc->valuestring
                 : cJSON_IsString(type) ? type->valuestring : "?");
    return -1;
}


/* text.format: text (nothing to say), json_object, json_schema */

static int
aihub_rq_text(cJSON *chat, const cJSON *text, char *err, size_t err_len)
{
    cJSON        *rf, *js;
    const cJSON  *format, *type, *v;

    static const char  *members[] = { "name", "description", "schema",
                                      "strict", NULL };
    const char        **name;

    format = cJSON_GetObjectItemCaseSensitive(text, "format");

    if (format == NULL || cJSON_IsNull(format)) {
        return 0;
    }

    type = cJSON_GetObjectItemCaseSensitive(format, "type");

    if (!cJSON_IsString(type)) {
        snprintf(err, err_len, "text.format needs a type.");
        return -1;
    }

    if (strcmp(type->valuestring, "text") == 0) {
        return 0;
    }

    if (strcmp(type->valuestring, "json_object") != 0
        && strcmp(type->valuestring, "json_schema") != 0)
    {
        aihub_rs_err(err, err_len, "The text format", type->valuestring);
        return -1;
    }

    rf = cJSON_AddObjectToObject(chat, "response_format");
    if (rf == NULL) {
        return -1;
    }

    cJSON_AddStringToObject(rf, "type", type->valuestring);

    if (strcmp(type->valuestring, "json_object") == 0) {
        return 0;
    }

    js = cJSON_AddObjectToObject(rf, "json_schema");
    if (js == NULL) {
        return -1;
    }

    for (name = members; *name; name++) {
        v = cJSON_GetObjectItemCaseSensitive(format, *name);

        if (v != NULL && !cJSON_IsNull(v) && aihub_rs_copy(js, *name, v) != 0)
        {
            return -1;
        }
    }

    return 0;
}


/* --- the answer -------------------------------------------------------- */

/*
 * Usage: output_tokens is what the provider counted beyond the prompt
 * (completion, and thinking a provider counts only in its total).
 */

static cJSON *
aihub_rs_usage(const cJSON *u)
{
    double        prompt, completion, total, cached, reasoning;
    cJSON        *out, *d;
    const cJSON  *v;

    if (!cJSON_IsObject(u)) {
        return cJSON_CreateNull();
    }

    v = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens");
    prompt = cJSON_IsNumber(v) ? v->valuedouble : 0;
    v = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
    completion = cJSON_IsNumber(v) ? v->valuedouble : 0;
    v = cJSON_GetObjectItemCaseSensitive(u, "total_tokens");
    total = cJSON_IsNumber(v) ? v->valuedouble : prompt + completion;

    if (total < prompt + completion) {
        total = prompt + completion;
    }

    v = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details"),
            "cached_tokens");
    cached = cJSON_IsNumber(v) ? v->valuedouble : 0;

    v = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(u, "completion_tokens_details"),
            "reasoning_tokens");
    reasoning = cJSON_IsNumber(v) ? v->valuedouble : 0;

    /* thinking only the total counts (Gemini) */
    reasoning += total - prompt - completion;

    out = cJSON_CreateObject();
    if (out == NULL) {
        return NULL;
    }

    cJSON_AddNumberToObject(out, "input_tokens", prompt);
    d = cJSON_AddObjectToObject(out, "input_tokens_details");
    if (d != NULL) {
        cJSON_AddNumberToObject(d, "cached_tokens", cached);
    }

    cJSON_AddNumberToObject(out, "output_tokens", total - prompt);
    d = cJSON_AddObjectToObject(out, "output_tokens_details");
    if (d != NULL) {
        cJSON_AddNumberToObject(d, "reasoning_tokens", reasoning);
    }

    cJSON_AddNumberToObject(out, "total_tokens", total);

    return out;
}


static cJSON *
aihub_rs_message_item(const char *id, const char *text, const char *status)
{
    cJSON  *item, *content, *part;

    item = cJSON_CreateObject();
    if (item == NULL) {
        return NULL;
    }

    cJSON_AddStringToObject(item, "id", id);
    cJSON_AddStringToObject(item, "type", "message");
    cJSON_AddStringToObject(item, "status", status);
    cJSON_AddStringToObject(item, "role", "assistant");
    content = cJSON_AddArrayToObject(item, "content");

    if (content != NULL && text != NULL) {
        part = cJSON_CreateObject();

        if (part != NULL) {
            cJSON_AddItemToArray(content, part);
            cJSON_AddStringToObject(part, "type", "output_text");
            cJSON_AddStringToObject(part, "text", text);
            cJSON_AddArrayToObject(part, "annotations");
            cJSON_AddArrayToObject(part, "logprobs");
        }
    }

    return item;
}


/*
 * extra: the chat tool call's "extra_content", or NULL.  Gemini puts there
 * the call's thought signature (extra_content.google.thought_signature),
 * which Gemini 3 wants back with the call in the next request (400
 * "Function call is missing a thought_signature" otherwise): the item
 * carries it as its own "extra_content", which the SDKs keep when a
 * response's output is passed back as input, and the request's
 * translation hands it back to the tool call.
 */

static cJSON *
aihub_rs_call_item(const char *id, const char *call_id, const char *name,
    const char *arguments, const char *status, const cJSON *extra)
{
    cJSON  *item;

    item = cJSON_CreateObject();
    if (item == NULL) {
        return NULL;
    }

    cJSON_AddStringToObject(item, "id", id);
    cJSON_AddStringToObject(item, "type", "function_call");
    cJSON_AddStringToObject(item, "status", status);
    cJSON_AddStringToObject(item, "call_id", call_id);
    cJSON_AddStringToObject(item, "name", name);
    cJSON_AddStringToObject(item, "arguments", arguments);

    if (cJSON_IsObject(extra)) {
        cJSON_AddItemToObject(item, "extra_content",
                              cJSON_Duplicate(extra, 1));
    }

    return item;
}


/* the response object's frame: everything but output and usage */

static cJSON *
aihub_rs_response(const char *id, const char *model, int64_t created,
    const char *status, const char *finish, const char *error)
{
    char    buf[AIHUB_RS_ID_LEN + 8];
    cJSON  *r, *d, *e;

    r = cJSON_CreateObject();
    if (r == NULL) {
        return NULL;
    }

    snprintf(buf, sizeof(buf), "resp_%s", id);
    cJSON_AddStringToObject(r, "id", buf);
    cJSON_AddStringToObject(r, "object", "response");
    cJSON_AddNumberToObject(r, "created_at", (double) created);
    cJSON_AddStringToObject(r, "status", status);

    if (error != NULL) {
        e = cJSON_AddObjectToObject(r, "error");

        if (e != NULL) {
            cJSON_AddStringToObject(e, "code", "server_error");
            cJSON_AddStringToObject(e, "message", error);
        }

    } else {
        cJSON_AddNullToObject(r, "error");
    }

    if (finish != NULL && strcmp(status, "incomplete") == 0) {
        d = cJSON_AddObjectToObject(r, "incomplete_details");

        if (d != NULL) {
            cJSON_AddStringToObject(d, "reason",
                                    strcmp(finish, "length") == 0
                                    ? "max_output_tokens"
                                    : "content_filter");
        }

    } else {
        cJSON_AddNullToObject(r, "incomplete_details");
    }

    cJSON_AddStringToObject(r, "model", model);

    return r;
}


static const char *
aihub_rs_status(const char *finish)
{
    if (finish != NULL && (strcmp(finish, "length") == 0
                           || strcmp(finish, "content_filter") == 0))
    {
        return "incomplete";
    }

    return "completed";
}


char *
aihub_responses_answer(const char *chat, size_t len, const char *id,
    const char *model, int64_t created, size_t *out_len)
{
    int           i;
    char          buf[AIHUB_RS_ID_LEN + 16], *out;
    const char   *finish, *text;
    cJSON        *root, *r, *output, *item, *u;
    const cJSON  *choice, *msg, *content, *calls, *call, *fn, *v, *name;
    const cJSON  *args, *cid;

    root = cJSON_ParseWithLength(chat, len);

    if (!cJSON_IsObject(root)
        || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "choices")))
    {
        cJSON_Delete(root);
        return NULL;
    }

    choice = cJSON_GetArrayItem(
                 cJSON_GetObjectItemCaseSensitive(root, "choices"), 0);
    msg = cJSON_GetObjectItemCaseSensitive(choice, "message");

    v = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
    finish = cJSON_IsString(v) ? v->valuestring : NULL;

    v = cJSON_GetObjectItemCaseSensitive(root, "created");
    /* a provider's own "created", if it is a plausible Unix time */
    if (cJSON_IsNumber(v) && v->valuedouble >= 0
        && v->valuedouble <= 253402300799.0)
    {
        created = (int64_t) v->valuedouble;
    }

    r = aihub_rs_response(id, model, created, aihub_rs_status(finish),
                          finish, NULL);
    if (r == NULL) {
        cJSON_Delete(root);
        return NULL;
    }

    output = cJSON_AddArrayToObject(r, "output");

    content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    text = cJSON_IsString(content) ? content->valuestring : "";

    if (output != NULL
        && (text[0] != '\0' || cJSON_GetArraySize(calls) == 0))
    {
        snprintf(buf, sizeof(buf), "msg_%s", id);
        item = aihub_rs_message_item(buf, text, "completed");

        if (item != NULL) {
            cJSON_AddItemToArray(output, item);
        }
    }

    i = 0;

    cJSON_ArrayForEach(call, calls) {
        fn = cJSON_GetObjectItemCaseSensitive(call, "function");
        name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        cid = cJSON_GetObjectItemCaseSensitive(call, "id");

        snprintf(buf, sizeof(buf), "fc_%s_%d", id, i++);

        item = aihub_rs_call_item(buf,
                                  cJSON_IsString(cid) ? cid->valuestring
                                                      : buf,
                                  cJSON_IsString(name) ? name->valuestring
                                                       : "",
                                  cJSON_IsString(args) ? args->valuestring
                                                       : "",
                                  "completed",
                                  cJSON_GetObjectItemCaseSensitive(
                                      call, "extra_content"));

        if (item != NULL && output != NULL) {
            cJSON_AddItemToArray(output, item);
        }
    }

    u = aihub_rs_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"));
    if (u != NULL) {
        cJSON_AddItemToObject(r, "usage", u);
    }

    cJSON_Delete(root);

    out = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);

    if (out != NULL) {
        *out_len = strlen(out);
    }

    return out;
}


/* --- the stream -------------------------------------------------------- */

typedef struct {
    int      index;                  /* the chat tool call's index (none:
                                        the next one not used) */
    int      output_index;
    char     item_id[AIHUB_RS_ID_LEN + 16];
    char    *call_id;
    char    *name;
    char    *args;
    size_t   args_len;
    cJSON   *extra;                  /* its "extra_content", or NULL */
} aihub_rs_call_t;


struct aihub_rstream_s {
    char             id[AIHUB_RS_ID_LEN];
    char            *model;
    int64_t          created;
    size_t           max_event;
    size_t           max_text;

    /* the event being read */
    char            *event;
    size_t           event_len;
    int              event_data;       /* the event has a data line */
    int              overlong;
    char             line[8];          /* a line's first bytes */
    size_t           line_len;
    int              in_data;          /* the line is a data line */
    int              skip_space;       /* after "data:" */
    int              cr;

    /* what the answer said so far */
    int              started;
    int              done;
    unsigned         seq;
    int              outputs;
    int              msg_index;        /* -1: no message item yet */
    char             msg_id[AIHUB_RS_ID_LEN + 8];
    char            *text;
    size_t           text_len;
    size_t           kept;             /* text and arguments kept */
    aihub_rs_call_t  calls[AIHUB_RS_TOOLS];
    int              ncalls;
    char            *finish;
    cJSON           *usage;            /* the provider's, a copy */

    /* for the client */
    unsigned char   *out;
    size_t           out_len;
    size_t           out_size;
    int              nomem;
};


static void aihub_rs_dispatch(aihub_rstream_t *s);
static void aihub_rs_close(aihub_rstream_t *s, const char *error);


static char *
aihub_rs_strdup(const char *p)
{
    size_t  n;
    char   *d;

    n = strlen(p);
    d = malloc(n + 1);

    if (d != NULL) {
        memcpy(d, p, n + 1);
    }

    return d;
}


aihub_rstream_t *
aihub_rstream_create(const char *id, const char *model, int64_t created,
    size_t max_event, size_t max_text)
{
    aihub_rstream_t  *s;

    s = calloc(1, sizeof(aihub_rstream_t));
    if (s == NULL) {
        return NULL;
    }

    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->msg_id, sizeof(s->msg_id), "msg_%s", id);
    s->model = aihub_rs_strdup(model);
    s->created = created;
    s->max_event = max_event;
    s->max_text = max_text;
    s->msg_index = -1;
    s->event = malloc(max_event + 1);

    if (s->model == NULL || s->event == NULL) {
        aihub_rstream_destroy(s);
        return NULL;
    }

    return s;
}


void
aihub_rstream_destroy(aihub_rstream_t *s)
{
    int  i;

    if (s == NULL) {
        return;
    }

    for (i = 0; i < s->ncalls; i++) {
        free(s->calls[i].call_id);
        free(s->calls[i].name);
        free(s->calls[i].args);
        cJSON_Delete(s->calls[i].extra);
    }

    cJSON_Delete(s->usage);
    free(s->finish);
    free(s->text);
    free(s->event);
    free(s->model);
    free(s->out);
    free(s);
}


static void
aihub_rs_write(aihub_rstream_t *s, const char *p, size_t n)
{
    size_t          size;
    unsigned char  *q;

    if (s->out_len + n > s->out_size) {
        size = s->out_size ? s->out_size : 4096;

        while (size < s->out_len + n) {
            size *= 2;
        }

        q = realloc(s->out, size);
        if (q == NULL) {
            s->nomem = 1;
            return;
        }

        s->out = q;
        s->out_size = size;
    }

    memcpy(s->out + s->out_len, p, n);
    s->out_len += n;
}


/* a new event object: type and sequence number first */

static cJSON *
aihub_rs_event(aihub_rstream_t *s, const char *type)
{
    cJSON  *e;

    e = cJSON_CreateObject();
    if (e == NULL) {
        s->nomem = 1;
        return NULL;
    }

    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNumberToObject(e, "sequence_number", s->seq++);

    return e;
}


static void
aihub_rs_emit(aihub_rstream_t *s, cJSON *e)
{
    char        *json;
    const char  *type;

    if (e == NULL) {
        return;
    }

    type = cJSON_GetObjectItemCaseSensitive(e, "type")->valuestring;
    json = cJSON_PrintUnformatted(e);

    if (json == NULL) {
        s->nomem = 1;
        cJSON_Delete(e);
        return;
    }

    aihub_rs_write(s, "event: ", 7);
    aihub_rs_write(s, type, strlen(type));
    aihub_rs_write(s, "\ndata: ", 7);
    aihub_rs_write(s, json, strlen(json));
    aihub_rs_write(s, "\n\n", 2);

    cJSON_free(json);
    cJSON_Delete(e);
}


/* the response object as it stands; final: with its output and usage */

static cJSON *
aihub_rs_snapshot(aihub_rstream_t *s, const char *status, const char *error,
    int final)
{
    int     i, k;
    cJSON  *r, *output, *item;

    r = aihub_rs_response(s->id, s->model, s->created, status, s->finish,
                          error);
    if (r == NULL) {
        s->nomem = 1;
        return NULL;
    }

    output = cJSON_AddArrayToObject(r, "output");

    for (k = 0; final && output != NULL && k < s->outputs; k++) {
        item = NULL;

        if (k == s->msg_index) {
            item = aihub_rs_message_item(s->msg_id,
                                         s->text ? s->text : "",
                                         "completed");
        }

        for (i = 0; item == NULL && i < s->ncalls; i++) {
            if (s->calls[i].output_index == k) {
                item = aihub_rs_call_item(s->calls[i].item_id,
                                          s->calls[i].call_id,
                                          s->calls[i].name,
                                          s->calls[i].args
                                          ? s->calls[i].args : "",
                                          "completed", s->calls[i].extra);
            }
        }

        if (item != NULL) {
            cJSON_AddItemToArray(output, item);
        }
    }

    if (final && s->usage != NULL) {
        cJSON_AddItemToObject(r, "usage", aihub_rs_usage(s->usage));

    } else {
        cJSON_AddNullToObject(r, "usage");
    }

    return r;
}


static void
aihub_rs_start(aihub_rstream_t *s)
{
    cJSON  *e;

    if (s->started) {
        return;
    }

    s->started = 1;

    e = aihub_rs_event(s, "response.created");
    if (e != NULL) {
        cJSON_AddItemToObject(e, "response",
                              aihub_rs_snapshot(s, "in_progress", NULL, 0));
        aihub_rs_emit(s, e);
    }

    e = aihub_rs_event(s, "response.in_progress");
    if (e != NULL) {
        cJSON_AddItemToObject(e, "response",
                              aihub_rs_snapshot(s, "in_progress", NULL, 0));
        aihub_rs_emit(s, e);
    }
}


/* appends to a kept string; -1 beyond max_text */

static int
aihub_rs_keep(aihub_rstream_t *s, char **dst, size_t *dst_len,
    const char *p)
{
    size_t   n;
    char    *q;

    n = strlen(p);

    if (s->kept + n > s->max_text) {
        return -1;
    }

    q = realloc(*dst, *dst_len + n + 1);
    if (q == NULL) {
        s->nomem = 1;
        return -1;
    }

    memcpy(q + *dst_len, p, n + 1);
    *dst = q;
    *dst_len += n;
    s->kept += n;

    return 0;
}


static void
aihub_rs_text(aihub_rstream_t *s, const char *delta)
{
    cJSON  *e, *part;

    if (delta[0] == '\0') {
        return;
    }

    if (s->msg_index < 0) {
        s->msg_index = s->outputs++;

        e = aihub_rs_event(s, "response.output_item.added");
        if (e != NULL) {
            cJSON_AddNumberToObject(e, "output_index", s->msg_index);
            cJSON_AddItemToObject(e, "item",
                                  aihub_rs_message_item(s->msg_id, NULL,
                                                        "in_progress"));
            aihub_rs_emit(s, e);
        }

        e = aihub_rs_event(s, "response.content_part.added");
        if (e != NULL) {
            cJSON_AddStringToObject(e, "item_id", s->msg_id);
            cJSON_AddNumberToObject(e, "output_index", s->msg_index);
            cJSON_AddNumberToObject(e, "content_index", 0);
            part = cJSON_AddObjectToObject(e, "part");

            if (part != NULL) {
                cJSON_AddStringToObject(part, "type", "output_text");
                cJSON_AddStringToObject(part, "text", "");
                cJSON_AddArrayToObject(part, "annotations");
                cJSON_AddArrayToObject(part, "logprobs");
            }

            aihub_rs_emit(s, e);
        }
    }

    if (aihub_rs_keep(s, &s->text, &s->text_len, delta) != 0) {
        aihub_rs_close(s, "The answer is too long for the gateway to "
                          "translate.");
        return;
    }

    e = aihub_rs_event(s, "response.output_text.delta");
    if (e != NULL) {
        cJSON_AddStringToObject(e, "item_id", s->msg_id);
        cJSON_AddNumberToObject(e, "output_index", s->msg_index);
        cJSON_AddNumberToObject(e, "content_index", 0);
        cJSON_AddStringToObject(e, "delta", delta);
        cJSON_AddArrayToObject(e, "logprobs");
        aihub_rs_emit(s, e);
    }
}


/* a tool call delta's "extra_content" (Gemini's thought signature) kept */

static void
aihub_rs_tool_extra(aihub_rstream_t *s, aihub_rs_call_t *c, const cJSON *tc)
{
    const cJSON  *extra;

    extra = cJSON_GetObjectItemCaseSensitive(tc, "extra_content");

    if (!cJSON_IsObject(extra) || c->extra != NULL) {
        return;
    }

    c->extra = cJSON_Duplicate(extra, 1);

    if (c->extra == NULL) {
        s->nomem = 1;
    }
}


/*
 * A tool call delta's call.  With "index" (OpenAI, and most providers),
 * the call of that index.  Without (Gemini's OpenAI-compatible endpoint
 * sends each call whole, with its id, several in one delta or one a
 * chunk), the call of that id, or a new one for a new id; a delta with
 * neither (an empty id is none) goes on with the last call.  A new call
 * without index is given the next index not used.
 */

static void
aihub_rs_tool(aihub_rstream_t *s, const cJSON *tc)
{
    int               i, index;
    char              buf[AIHUB_RS_ID_LEN + 16];
    cJSON            *e;
    const cJSON      *v, *id, *fn, *name, *args;
    aihub_rs_call_t  *c;

    v = cJSON_GetObjectItemCaseSensitive(tc, "index");
    id = cJSON_GetObjectItemCaseSensitive(tc, "id");
    fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");

    c = NULL;

    if (cJSON_IsNumber(v)) {
        index = v->valueint;

        for (i = 0; i < s->ncalls; i++) {
            if (s->calls[i].index == index) {
                c = &s->calls[i];
            }
        }

    } else {
        index = 0;

        for (i = 0; i < s->ncalls; i++) {
            if (s->calls[i].index >= index && s->calls[i].index < INT_MAX) {
                index = s->calls[i].index + 1;
            }
        }

        if (!cJSON_IsString(id) || id->valuestring[0] == '\0') {
            id = NULL;

            if (s->ncalls > 0) {
                c = &s->calls[s->ncalls - 1];
            }

        } else {
            for (i = 0; i < s->ncalls; i++) {
                if (s->calls[i].call_id != NULL
                    && strcmp(s->calls[i].call_id, id->valuestring) == 0)
                {
                    c = &s->calls[i];
                }
            }
        }
    }

    if (c == NULL) {
        if (s->ncalls == AIHUB_RS_TOOLS) {
            aihub_rs_close(s, "The answer has more tool calls than the "
                              "gateway translates.");
            return;
        }

        c = &s->calls[s->ncalls++];
        c->index = index;
        c->output_index = s->outputs++;
        snprintf(buf, sizeof(buf), "fc_%s_%d", s->id, index);
        memcpy(c->item_id, buf, sizeof(c->item_id));

        c->call_id = aihub_rs_strdup(cJSON_IsString(id) ? id->valuestring
                                                        : c->item_id);
        c->name = aihub_rs_strdup(cJSON_IsString(name) ? name->valuestring
                                                       : "");
        if (c->call_id == NULL || c->name == NULL) {
            s->nomem = 1;
            return;
        }

        aihub_rs_tool_extra(s, c, tc);

        e = aihub_rs_event(s, "response.output_item.added");
        if (e != NULL) {
            cJSON_AddNumberToObject(e, "output_index", c->output_index);
            cJSON_AddItemToObject(e, "item",
                                  aihub_rs_call_item(c->item_id, c->call_id,
                                                     c->name, "",
                                                     "in_progress",
                                                     c->extra));
            aihub_rs_emit(s, e);
        }
    }

    aihub_rs_tool_extra(s, c, tc);

    if (!cJSON_IsString(args) || args->valuestring[0] == '\0') {
        return;
    }

    if (aihub_rs_keep(s, &c->args, &c->args_len, args->valuestring) != 0) {
        aihub_rs_close(s, "The answer is too long for the gateway to "
                          "translate.");
        return;
    }

    e = aihub_rs_event(s, "response.function_call_arguments.delta");
    if (e != NULL) {
        cJSON_AddStringToObject(e, "item_id", c->item_id);
        cJSON_AddNumberToObject(e, "output_index", c->output_index);
        cJSON_AddStringToObject(e, "delta", args->valuestring);
        aihub_rs_emit(s, e);
    }
}


/* the items' last events, then the response's */

static void
aihub_rs_close(aihub_rstream_t *s, const char *error)
{
    int               i;
    cJSON            *e, *part;
    const char       *status, *type;
    aihub_rs_call_t  *c;

    if (s->done) {
        return;
    }

    aihub_rs_start(s);
    s->done = 1;

    if (s->msg_index >= 0) {
        e = aihub_rs_event(s, "response.output_text.done");
        if (e != NULL) {
            cJSON_AddStringToObject(e, "item_id", s->msg_id);
            cJSON_AddNumberToObject(e, "output_index", s->msg_index);
            cJSON_AddNumberToObject(e, "content_index", 0);
            cJSON_AddStringToObject(e, "text", s->text ? s->text : "");
            cJSON_AddArrayToObject(e, "logprobs");
            aihub_rs_emit(s, e);
        }

        e = aihub_rs_event(s, "response.content_part.done");
        if (e != NULL) {
            cJSON_AddStringToObject(e, "item_id", s->msg_id);
            cJSON_AddNumberToObject(e, "output_index", s->msg_index);
            cJSON_AddNumberToObject(e, "content_index", 0);
            part = cJSON_AddObjectToObject(e, "part");

            if (part != NULL) {
                cJSON_AddStringToObject(part, "type", "output_text");
                cJSON_AddStringToObject(part, "text",
                                        s->text ? s->text : "");
                cJSON_AddArrayToObject(part, "annotations");
                cJSON_AddArrayToObject(part, "logprobs");
            }

            aihub_rs_emit(s, e);
        }

        e = aihub_rs_event(s, "response.output_item.done");
        if (e != NULL) {
            cJSON_AddNumberToObject(e, "output_index", s->msg_index);
            cJSON_AddItemToObject(e, "item",
                                  aihub_rs_message_item(s->msg_id,
                                      s->text ? s->text : "", "completed"));
            aihub_rs_emit(s, e);
        }
    }

    for (i = 0; i < s->ncalls; i++) {
        c = &s->calls[i];

        e = aihub_rs_event(s, "response.function_call_arguments.done");
        if (e != NULL) {
            cJSON_AddStringToObject(e, "item_id", c->item_id);
            cJSON_AddNumberToObject(e, "output_index", c->output_index);
            cJSON_AddStringToObject(e, "name", c->name);
            cJSON_AddStringToObject(e, "arguments", c->args ? c->args : "");
            aihub_rs_emit(s, e);
        }

        e = aihub_rs_event(s, "response.output_item.done");
        if (e != NULL) {
            cJSON_AddNumberToObject(e, "output_index", c->output_index);
            cJSON_AddItemToObject(e, "item",
                                  aihub_rs_call_item(c->item_id, c->call_id,
                                                     c->name,
                                                     c->args ? c->args : "",
                                                     "completed", c->extra));
            aihub_rs_emit(s, e);
        }
    }

    if (error != NULL) {
        status = "failed";
        type = "response.failed";

    } else {
        status = aihub_rs_status(s->finish);
        type = strcmp(status, "incomplete") == 0 ? "response.incomplete"
                                                 : "response.completed";
    }

    e = aihub_rs_event(s, type);
    if (e != NULL) {
        cJSON_AddItemToObject(e, "response",
                              aihub_rs_snapshot(s, status, error, 1));
        aihub_rs_emit(s, e);
    }
}


/* one chat event, its data joined */

static void
aihub_rs_dispatch(aihub_rstream_t *s)
{
    char         *msg;
    cJSON        *root;
    const cJSON  *err, *choice, *delta, *v, *tc;

    if (s->done || !s->event_data) {
        return;
    }

    if (s->overlong) {
        aihub_rs_close(s, "The provider sent an event too long for the "
                          "gateway to translate.");
        return;
    }

    s->event[s->event_len] = '\0';

    if (strcmp(s->event, "[DONE]") == 0) {
        aihub_rs_close(s, NULL);
        return;
    }

    root = cJSON_ParseWithLength(s->event, s->event_len);

    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return;
    }

    aihub_rs_start(s);

    v = cJSON_GetObjectItemCaseSensitive(root, "usage");

    if (cJSON_IsObject(v)) {
        cJSON_Delete(s->usage);
        s->usage = cJSON_Duplicate(v, 1);
    }

    choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root,
                                                                 "choices"),
                                0);
    delta = cJSON_GetObjectItemCaseSensitive(choice, "delta");

    v = cJSON_GetObjectItemCaseSensitive(delta, "content");
    if (cJSON_IsString(v)) {
        aihub_rs_text(s, v->valuestring);
    }

    cJSON_ArrayForEach(tc, cJSON_GetObjectItemCaseSensitive(delta,
                                                            "tool_calls"))
    {
        aihub_rs_tool(s, tc);
    }

    v = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
    if (cJSON_IsString(v)) {
        free(s->finish);
        s->finish = aihub_rs_strdup(v->valuestring);
    }

    err = cJSON_GetObjectItemCaseSensitive(root, "error");

    if (err != NULL && !cJSON_IsNull(err) && !cJSON_IsFalse(err)) {
        v = cJSON_GetObjectItemCaseSensitive(err, "message");
        msg = cJSON_IsString(err) ? err->valuestring
              : cJSON_IsString(v) ? v->valuestring
              : "The model provider failed.";
        aihub_rs_close(s, msg);
    }

    cJSON_Delete(root);
}


/* a line ended: a data line's payload is already in the event */

static void
aihub_rs_line_end(aihub_rstream_t *s)
{
    if (s->line_len == 0 && !s->in_data) {
        /* a blank line ends the event */
        aihub_rs_dispatch(s);
        s->event_len = 0;
        s->event_data = 0;
        s->overlong = 0;
    }

    s->line_len = 0;
    s->in_data = 0;
    s->skip_space = 0;
}


int
aihub_rstream_feed(aihub_rstream_t *s, const unsigned char *p, size_t len)
{
    size_t  i;
    int     c;

    for (i = 0; i < len && !s->done; i++) {
        c = p[i];

        if (s->cr) {
            s->cr = 0;

            if (c == '\n') {
                continue;
            }
        }

        if (c == '\r' || c == '\n') {
            s->cr = (c == '\r');
            aihub_rs_line_end(s);
            continue;
        }

        if (s->in_data) {
            if (s->skip_space) {
                s->skip_space = 0;

                if (c == ' ') {
                    continue;
                }
            }

            if (s->event_len < s->max_event) {
                s->event[s->event_len++] = (char) c;

            } else {
                s->overlong = 1;
            }

            continue;
        }

        /* the line's field name, up to "data:" and one space */

        if (s->line_len < sizeof(s->line)) {
            s->line[s->line_len] = (char) c;
        }

        s->line_len++;

        if (s->line_len == 5 && memcmp(s->line, "data:", 5) == 0) {
            /* more data lines join with LF */
            if (s->event_data) {
                if (s->event_len < s->max_event) {
                    s->event[s->event_len++] = '\n';

                } else {
                    s->overlong = 1;
                }
            }

            s->event_data = 1;
            s->in_data = 1;
            s->skip_space = 1;
        }
    }

    return s->nomem ? -1 : 0;
}


int
aihub_rstream_finish(aihub_rstream_t *s)
{
    if (!s->done) {
        if (s->event_data) {
            /* the last event, without its blank line */
            s->in_data = 0;
            s->line_len = 0;
            aihub_rs_line_end(s);
        }

        /* a stream cut before [DONE]: what arrived, closed */
        aihub_rs_close(s, s->finish == NULL
                          ? "The model provider's answer ended early."
                          : NULL);
    }

    return s->nomem ? -1 : 0;
}


const unsigned char *
aihub_rstream_take(aihub_rstream_t *s, size_t *len)
{
    *len = s->out_len;
    s->out_len = 0;

    return s->out;
}


int
aihub_rstream_done(const aihub_rstream_t *s)
{
    return s->done;
}
