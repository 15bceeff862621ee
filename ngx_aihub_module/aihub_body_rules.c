/*
 * Request body rules (see aihub_body_rules.h).
 */

#include <stdlib.h>
#include <string.h>

#include "aihub_body_rules.h"


static int
aihub_name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}


cJSON *
aihub_json_get(const cJSON *obj, const char *name)
{
    cJSON  *it;

    if (obj == NULL || name == NULL) {
        return NULL;
    }

    for (it = obj->child; it != NULL; it = it->next) {
        if (it->string != NULL && it->string[0] == name[0]
            && strcmp(it->string, name) == 0)
        {
            return it;
        }
    }

    return NULL;
}


const char *
aihub_json_duplicate_member(const cJSON *obj)
{
    size_t        n, i;
    const char   *dup, *a, *o, *small[32], **names;
    const cJSON  *it, *other;

    if (!cJSON_IsObject(obj)) {
        return NULL;
    }

    n = 0;

    for (it = obj->child; it != NULL; it = it->next) {
        n++;
    }

    if (n < 2) {
        return NULL;
    }

    /* a few names: each against the others */

    if (n <= 8) {
        for (it = obj->child; it != NULL; it = it->next) {
            a = it->string ? it->string : "";

            for (other = it->next; other != NULL; other = other->next) {
                o = other->string ? other->string : "";

                /* (most names differ in their first byte) */
                if (a[0] == o[0] && strcmp(a, o) == 0) {
                    return o;
                }
            }
        }

        return NULL;
    }

    /* more: sorted names side by side, O(n log n) whatever the body holds */

    names = (n <= sizeof(small) / sizeof(small[0]))
            ? small : malloc(n * sizeof(const char *));
    if (names == NULL) {
        return "";
    }

    i = 0;

    for (it = obj->child; it != NULL; it = it->next) {
        names[i++] = it->string != NULL ? it->string : "";
    }

    qsort(names, n, sizeof(const char *), aihub_name_cmp);

    dup = NULL;

    for (i = 1; i < n; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            dup = names[i];
            break;
        }
    }

    if (names != small) {
        free(names);
    }

    return dup;
}


const char *
aihub_json_duplicate_member_deep(const cJSON *item)
{
    const char   *dup;
    const cJSON  *it;

    /* cJSON refuses documents nested deeper than CJSON_NESTING_LIMIT
       (1000), so the recursion is bounded by the parse */

    if (cJSON_IsObject(item)) {
        dup = aihub_json_duplicate_member(item);
        if (dup != NULL) {
            return dup;
        }

    } else if (!cJSON_IsArray(item)) {
        return NULL;
    }

    for (it = item->child; it != NULL; it = it->next) {
        if (cJSON_IsObject(it) || cJSON_IsArray(it)) {
            dup = aihub_json_duplicate_member_deep(it);
            if (dup != NULL) {
                return dup;
            }
        }
    }

    return NULL;
}


int
aihub_json_has_nul_escape(const unsigned char *p, size_t n)
{
    size_t  i;
    int     in_string;

    /* most bodies have no escape at all */
    if (memchr(p, '\\', n) == NULL) {
        return 0;
    }

    in_string = 0;

    for (i = 0; i < n; i++) {

        if (!in_string) {
            if (p[i] == '"') {
                in_string = 1;
            }

            continue;
        }

        if (p[i] == '"') {
            in_string = 0;
            continue;
        }

        if (p[i] != '\\') {
            continue;
        }

        /* an escape: \u0000 is the one that matters; skip the others */

        if (i + 5 < n && p[i + 1] == 'u' && p[i + 2] == '0'
            && p[i + 3] == '0' && p[i + 4] == '0' && p[i + 5] == '0')
        {
            return 1;
        }

        i++;
    }

    return 0;
}


const char *
aihub_body_refused_member(const cJSON *root)
{
    const cJSON  *it;

    static const char  *routing[] = { "models", "route", "provider",
                                      "plugins", "preset",
                                      "web_search_options",
                                      "search_parameters", NULL };

    /*
     * The camelCase spellings of the members the check reads: Gemini's
     * endpoint parses proto JSON, which takes "maxTokens" for
     * "max_tokens", so a limit could be passed under the other name.  No
     * OpenAI API has a member spelled so (OpenAI refuses them).
     */
    static const char  *camel[] = { "maxTokens", "maxCompletionTokens",
                                    "maxOutputTokens", "streamOptions",
                                    "serviceTier", "webSearchOptions",
                                    "searchParameters", "extraBody",
                                    "toolChoice", "responseFormat", NULL };
    const char        **name;

    for (name = routing; *name; name++) {
        if (aihub_json_get(root, *name) != NULL) {
            return *name;
        }
    }

    for (name = camel; *name; name++) {
        if (aihub_json_get(root, *name) != NULL) {
            return *name;
        }
    }

    it = aihub_json_get(root, "service_tier");

    if (it != NULL && !cJSON_IsNull(it)
        && !(cJSON_IsString(it) && (strcmp(it->valuestring, "auto") == 0
                                    || strcmp(it->valuestring, "default")
                                       == 0)))
    {
        return "service_tier";
    }

    it = aihub_json_get(root, "n");

    if (it != NULL && !cJSON_IsNull(it)
        && !(cJSON_IsNumber(it) && it->valuedouble == 1))
    {
        return "n";
    }

    return NULL;
}


/* a member "file_id" other than null in obj, or in its member "file" */

static int
aihub_json_file_id(const cJSON *obj)
{
    const cJSON  *v;

    if (!cJSON_IsObject(obj)) {
        return 0;
    }

    v = aihub_json_get(obj, "file_id");

    if (v != NULL && !cJSON_IsNull(v)) {
        return 1;
    }

    v = aihub_json_get(obj, "file");

    return cJSON_IsObject(v) && aihub_json_file_id(v);
}


/* a member "cached_content" other than null in obj */

static int
aihub_json_cached_content(const cJSON *obj)
{
    const cJSON  *v;

    v = cJSON_IsObject(obj) ? aihub_json_get(obj, "cached_content") : NULL;

    if (v == NULL && cJSON_IsObject(obj)) {
        /* as proto JSON spells it too */
        v = aihub_json_get(obj, "cachedContent");
    }

    return v != NULL && !cJSON_IsNull(v);
}


/*
 * An uploaded file named in a list of messages (chat's "messages") or
 * items (the Responses API's "input"): by an item, or by a part of its
 * content ({"type":"input_file","file_id":...} in the Responses API,
 * {"type":"file","file":{"file_id":...}} in chat).  Nowhere else: a
 * function's parameters may well be called "file_id".
 */

static int
aihub_json_names_file(const cJSON *list)
{
    const cJSON  *item, *content, *part;

    if (!cJSON_IsArray(list)) {
        return 0;
    }

    cJSON_ArrayForEach(item, list) {
        if (aihub_json_file_id(item)) {
            return 1;
        }

        content = cJSON_IsObject(item) ? aihub_json_get(item, "content")
                                       : NULL;

        if (!cJSON_IsArray(content)) {
            continue;
        }

        cJSON_ArrayForEach(part, content) {
            if (aihub_json_file_id(part)) {
                return 1;
            }
        }
    }

    return 0;
}


const char *
aihub_body_stored_member(const cJSON *root)
{
    const cJSON  *it, *items, *type;

    static const char  *top[] = { "previous_response_id", "conversation",
                                  "prompt", "previousResponseId", NULL };
    const char        **name;

    for (name = top; *name; name++) {
        it = aihub_json_get(root, *name);

        if (it != NULL && !cJSON_IsNull(it)) {
            return *name;
        }
    }

    /* a Gemini context cache: "google", or within "extra_body" as the
       OpenAI SDKs send it through Gemini's OpenAI-compatible endpoint */

    if (aihub_json_cached_content(aihub_json_get(root, "google"))
        || aihub_json_cached_content(aihub_json_get(
               aihub_json_get(root, "extra_body"), "google")))
    {
        return "cached_content";
    }

    if (aihub_json_names_file(aihub_json_get(root, "messages"))
        || aihub_json_names_file(aihub_json_get(root, "input")))
    {
        return "file_id";
    }

    /* an item of a response stored before, by its id */

    items = aihub_json_get(root, "input");

    if (cJSON_IsArray(items)) {
        cJSON_ArrayForEach(it, items) {
            type = cJSON_IsObject(it) ? aihub_json_get(it, "type") : NULL;

            if (cJSON_IsString(type)
                && strcmp(type->valuestring, "item_reference") == 0)
            {
                return "item_reference";
            }
        }
    }

    return NULL;
}


const char *
aihub_body_provider_tool(const cJSON *root)
{
    const cJSON  *tools, *tool, *type;

    /* the tools the client runs: the model only writes their calls */
    static const char  *client[] = { "function", "custom", "local_shell",
                                     "apply_patch", NULL };
    const char        **name;

    tools = aihub_json_get(root, "tools");

    if (!cJSON_IsArray(tools)) {
        return NULL;
    }

    cJSON_ArrayForEach(tool, tools) {
        type = cJSON_IsObject(tool) ? aihub_json_get(tool, "type") : NULL;

        if (!cJSON_IsString(type)) {
            return "?";
        }

        for (name = client; *name; name++) {
            if (strcmp(type->valuestring, *name) == 0) {
                break;
            }
        }

        if (*name == NULL) {
            return type->valuestring;
        }
    }

    return NULL;
}
