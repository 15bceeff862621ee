/*
 * The chat request body, checked and rewritten (see aihub_body.h).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aihub_bytes.h"
#include "aihub_body_rules.h"
#include "aihub_body.h"


static int aihub_body_bad_escape(const unsigned char *p, size_t n);
static int aihub_json_hex(int c);
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
    if (aihub_body_fast(b, p, n, policy) != 0) {
        aihub_body_check_tree(b, p, n, policy);
    }
}


void
aihub_body_check_tree(aihub_body_t *b, const unsigned char *p, size_t n,
    const aihub_body_policy_t *policy)
{
    cJSON  *root, *model, *messages, *store;

    memset(b, 0, sizeof(aihub_body_t));

    if (n == 0) {
        b->verdict = AIHUB_BODY_EMPTY;
        return;
    }

    if (aihub_json_has_nul_escape(p, n)) {
        b->verdict = AIHUB_BODY_NUL;
        return;
    }

    if (memchr(p, '\0', n) != NULL) {
        b->verdict = AIHUB_BODY_NUL_BYTE;
        return;
    }

    /*
     * a UTF-8 byte order mark: cJSON skips it, the rewrite and the
     * provider would not (RFC 8259: JSON text is not sent with one)
     */

    if (aihub_body_bad_escape(p, n)
        || (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf))
    {
        b->verdict = AIHUB_BODY_SYNTAX;
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
        || aihub_body_members(b, aihub_json_get(
                                     root, "stream_options"))
           != 0)
    {
        return;
    }

    store = aihub_json_get(root, "store");
    b->store = (store == NULL) ? AIHUB_BODY_STORE_NONE
               : cJSON_IsFalse(store) ? AIHUB_BODY_STORE_FALSE
               : AIHUB_BODY_STORE_OTHER;

    b->member = aihub_body_provider_tool(root);

    if (b->member != NULL) {
        b->verdict = AIHUB_BODY_TOOL;
        return;
    }

    if (!policy->stored_objects) {
        b->member = aihub_body_stored_member(root);

        if (b->member != NULL) {
            b->verdict = AIHUB_BODY_STORED;
            return;
        }
    }

    model = aihub_json_get(root, "model");

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

    if (policy->model_only) {
        return;
    }

    messages = aihub_json_get(root, "messages");

    if (!cJSON_IsArray(messages)) {
        b->verdict = AIHUB_BODY_BAD_MESSAGES;
        return;
    }

    b->prompt_chars = aihub_body_prompt_chars(root, messages);

    aihub_body_options(b, policy);
}


/*
 * A \u not followed by four hex digits: invalid JSON, which cJSON reads
 * as a NUL ("model\u0z0e9" is its member "model"), cutting the name short
 * where the provider would not.
 */

static int
aihub_body_bad_escape(const unsigned char *p, size_t n)
{
    size_t                i, k;
    const unsigned char  *bs;

    i = 0;

    /* from one backslash to the next */

    while (i + 1 < n) {
        bs = memchr(p + i, '\\', n - i);
        if (bs == NULL) {
            return 0;
        }

        i = (size_t) (bs - p);

        if (i + 1 >= n) {
            return 0;
        }

        if (p[i + 1] == 'u') {
            for (k = 2; k < 6; k++) {
                if (i + k >= n || aihub_json_hex(p[i + k]) < 0) {
                    return 1;
                }
            }
        }

        i += 2;     /* the escaped character is not an escape itself */
    }

    return 0;
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

    name = (obj == b->json) ? aihub_json_duplicate_member_deep(obj)
                            : aihub_json_duplicate_member(obj);

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


/* stream, stream_options.include_usage, max_tokens and
   max_completion_tokens */

static void
aihub_body_options(aihub_body_t *b, const aihub_body_policy_t *policy)
{
    int     i;
    cJSON  *root, *stream, *max, *opts, *inc;

    static const char  *names[] = { "max_completion_tokens", "max_tokens" };

    root = b->json;

    stream = aihub_json_get(root, "stream");

    if (stream != NULL && !cJSON_IsBool(stream) && !cJSON_IsNull(stream)) {
        b->verdict = AIHUB_BODY_BAD_STREAM;
        return;
    }

    b->stream = cJSON_IsTrue(stream);

    opts = aihub_json_get(root, "stream_options");

    if (opts != NULL && !cJSON_IsObject(opts) && !cJSON_IsNull(opts)) {
        b->verdict = AIHUB_BODY_BAD_STREAM_OPTIONS;
        return;
    }

    inc = aihub_json_get(opts, "include_usage");
    b->include_usage = cJSON_IsTrue(inc);

    /*
     * Both are checked, and the larger is the call's bound: a provider
     * may read either (DeepSeek and some OpenAI-compatible servers know
     * only max_tokens, OpenAI prefers max_completion_tokens)
     */

    for (i = 0; i < 2; i++) {
        max = aihub_json_get(root, names[i]);

        if (max == NULL || cJSON_IsNull(max)) {
            continue;
        }

        if (!cJSON_IsNumber(max) || max->valuedouble < 1
            || max->valuedouble > (double) policy->max_tokens_max
            || max->valuedouble != (double) (int64_t) max->valuedouble)
        {
            b->verdict = AIHUB_BODY_BAD_MAX_TOKENS;
            return;
        }

        if ((int64_t) max->valuedouble > b->max_tokens) {
            b->max_tokens = (int64_t) max->valuedouble;
        }
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
        content = aihub_json_get(msg, "content");

        if (cJSON_IsString(content)) {
            n += aihub_body_utf8_chars(content->valuestring);

        } else if (cJSON_IsArray(content)) {
            cJSON_ArrayForEach(part, content) {
                text = aihub_json_get(part, "text");
                type = aihub_json_get(part, "type");

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
        extra = aihub_json_get(msg, "tool_calls");

        if (extra != NULL && (printed = cJSON_PrintUnformatted(extra))) {
            n += aihub_body_utf8_chars(printed);
            cJSON_free(printed);
        }
    }

    /* tool definitions and schemas reach the model as prompt */

    for (name = extras; *name; name++) {
        extra = aihub_json_get(root, *name);

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
    return (int64_t) aihub_bytes_utf8_chars((const unsigned char *) s,
                                            strlen(s));
}


/*
 * The rewrite edits the bytes the client sent, so that every other byte
 * reaches the provider as it came: printing the parsed tree again would
 * round numbers (cJSON keeps a double: 1.7976931348623157e308 came out as
 * 1.79769313486232e+308, past the largest double) and respell strings.
 * The text was parsed by cJSON already: it is one valid object, and these
 * scanners only find where members are.
 */

/* what a stream is made to ask for; the comma goes when nothing precedes */
#define AIHUB_BODY_USAGE_MEMBER    "\"include_usage\":true"
#define AIHUB_BODY_STORE_MEMBER    "\"store\":false"
#define AIHUB_BODY_OPTIONS         "{" AIHUB_BODY_USAGE_MEMBER "}"
#define AIHUB_BODY_OPTIONS_MEMBER  "\"stream_options\":" AIHUB_BODY_OPTIONS


typedef struct {
    size_t                  at;         /* bytes [at, at + cut) become */
    size_t                  cut;
    const char             *text;       /* text */
    size_t                  len;
} aihub_body_edit_t;


typedef struct {
    size_t                  value;      /* the value's first byte */
    size_t                  end;        /* one past its last */
    size_t                  cut;        /* the member taken out: from cut */
    size_t                  cut_end;    /* to cut_end (its name to the
                                           next member's, or, the last,
                                           from the member before it) */
} aihub_json_span_t;


/* cJSON skips every byte up to 32 as white space */

static size_t
aihub_json_ws(const unsigned char *p, size_t n, size_t i)
{
    while (i < n && p[i] <= 32) {
        i++;
    }

    return i;
}


/* i at a value: one past it */

static size_t
aihub_json_skip(const unsigned char *p, size_t n, size_t i)
{
    size_t  depth;

    depth = 0;

    do {
        if (i >= n) {
            return n;
        }

        if (p[i] == '"') {
            for (i++; i < n && p[i] != '"'; i++) {
                if (p[i] == '\\') {
                    i++;
                }
            }

            i++;

        } else if (p[i] == '{' || p[i] == '[') {
            depth++;
            i++;

        } else if (p[i] == '}' || p[i] == ']') {
            depth--;
            i++;

        } else if (depth == 0) {
            /* a number, true, false or null: to what ends it */
            while (i < n && p[i] > 32 && p[i] != ',' && p[i] != '}'
                   && p[i] != ']')
            {
                i++;
            }

        } else {
            i++;
        }

    } while (depth > 0);

    return i < n ? i : n;
}


static int
aihub_json_hex(int c)
{
    return (c >= '0' && c <= '9') ? c - '0'
           : (c >= 'a' && c <= 'f') ? c - 'a' + 10
           : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
}


/* the string at p[i] (a '"'), decoded, is name (ASCII) */

static int
aihub_json_key_is(const unsigned char *p, size_t n, size_t i,
    const char *name)
{
    int     c, k, h;
    size_t  j;

    j = 0;

    for (i++; i < n && p[i] != '"'; i++) {
        c = p[i];

        if (c == '\\' && i + 1 < n) {
            i++;

            switch (p[i]) {
            case 'b':  c = '\b'; break;
            case 'f':  c = '\f'; break;
            case 'n':  c = '\n'; break;
            case 'r':  c = '\r'; break;
            case 't':  c = '\t'; break;
            case 'u':
                c = 0;

                for (k = 1; k <= 4; k++) {
                    h = (i + k < n) ? aihub_json_hex(p[i + k]) : -1;
                    if (h < 0) {
                        return 0;
                    }

                    c = c * 16 + h;
                }

                i += 4;

                if (c >= 0x80) {
                    return 0;       /* not ASCII: no name of ours */
                }

                break;

            default:
                c = p[i];           /* '"', '\\', '/' */
            }
        }

        if (name[j] == '\0' || name[j] != c) {
            return 0;
        }

        j++;
    }

    return name[j] == '\0';
}


/*
 * The member name of the object at p[obj] (a '{'): 1 and where its value
 * is, or 0.  *close: where the object's '}' is, and *empty whether it has
 * no member.
 */

static int
aihub_json_member(const unsigned char *p, size_t n, size_t obj,
    const char *name, aihub_json_span_t *span, size_t *close, int *empty)
{
    int     found;
    size_t  i, key, val, end, prev;

    found = 0;
    *empty = 1;
    prev = obj + 1;

    i = aihub_json_ws(p, n, obj + 1);

    while (i < n && p[i] == '"') {
        *empty = 0;
        key = i;

        i = aihub_json_skip(p, n, i);
        i = aihub_json_ws(p, n, i) + 1;         /* the ':' */
        val = aihub_json_ws(p, n, i);

        end = aihub_json_skip(p, n, val);
        i = aihub_json_ws(p, n, end);

        if (!found && aihub_json_key_is(p, n, key, name)) {
            span->value = val;
            span->end = end;
            span->cut = (i < n && p[i] == ',') ? key : prev;
            span->cut_end = (i < n && p[i] == ',') ? aihub_json_ws(p, n, i + 1)
                                                   : end;
            found = 1;
        }

        prev = end;

        if (i < n && p[i] == ',') {
            i = aihub_json_ws(p, n, i + 1);
        }
    }

    *close = i;

    return found;
}


/*
 * A Responses input item the provider cannot read once told "store": false:
 * a reasoning item without its encrypted_content stands for the one the
 * provider kept by its id, and it kept none.  OpenAI answers 404 "Item with
 * id 'rs_...' not found. Items are not persisted when `store` is set to
 * false", and the SDKs' pattern of passing a response's output back as the
 * next input carries such items whenever the model reasoned.
 */

static int
aihub_body_unkept(const cJSON *item)
{
    const cJSON  *type, *enc;

    if (!cJSON_IsObject(item)) {
        return 0;
    }

    type = cJSON_GetObjectItemCaseSensitive(item, "type");
    enc = cJSON_GetObjectItemCaseSensitive(item, "encrypted_content");

    return cJSON_IsString(type) && strcmp(type->valuestring, "reasoning") == 0
           && !(cJSON_IsString(enc) && enc->valuestring[0] != '\0');
}


/*
 * The input array at p[arr] (a '['), less its unkept items, each other
 * element's bytes as they came: a malloc()ed string, or NULL (no memory).
 * items: the same array in the body's tree (the check refused a repeated
 * member, so the tree's "input" is the bytes' one, element for element).
 */

static char *
aihub_body_input_kept(const unsigned char *p, size_t n, size_t arr,
    const cJSON *items, size_t *len)
{
    char          *o, *q;
    size_t         i, end;
    const cJSON   *it;

    o = malloc(aihub_json_skip(p, n, arr) - arr + 1);
    if (o == NULL) {
        return NULL;
    }

    q = o;
    *q++ = '[';

    i = aihub_json_ws(p, n, arr + 1);
    it = items->child;

    while (i < n && p[i] != ']' && it != NULL) {
        end = aihub_json_skip(p, n, i);

        if (!aihub_body_unkept(it)) {
            if (q > o + 1) {
                *q++ = ',';
            }

            memcpy(q, p + i, end - i);
            q += end - i;
        }

        it = it->next;

        i = aihub_json_ws(p, n, end);

        if (i < n && p[i] == ',') {
            i = aihub_json_ws(p, n, i + 1);
        }
    }

    *q++ = ']';
    *len = q - o;

    return o;
}


/*
 * The policy's cap on the output tokens of a body that asked none: put in
 * place of the member's null, or added at the root's end (the text in buf,
 * its comma dropped when nothing precedes it); the other name's number,
 * which only a rewrite before can have put there (the check read none),
 * becomes null.  Returns the number of edits written, -1 if buf is short.
 */

static int
aihub_body_cap_edits(const unsigned char *p, size_t n, size_t root,
    const aihub_body_policy_t *policy, int closed, char *buf, size_t size,
    aihub_body_edit_t *edits)
{
    int                 k, w, empty;
    size_t              close;
    const char         *num;
    aihub_json_span_t   span;

    w = snprintf(buf, size, ",\"%s\":%lld", policy->cap_name,
                 (long long) policy->cap);

    if (w < 0 || (size_t) w >= size) {
        return -1;
    }

    k = 0;

    if (aihub_json_member(p, n, root, policy->cap_name, &span, &close,
                          &empty))
    {
        num = strchr(buf + 2, ':') + 1;
        edits[k++] = (aihub_body_edit_t) { span.value, span.end - span.value,
                                           num, strlen(num) };

    } else {
        empty = empty && !closed;
        edits[k++] = (aihub_body_edit_t) { close, 0, buf + empty,
                                           (size_t) w - empty };
    }

    if (policy->cap_other != NULL
        && aihub_json_member(p, n, root, policy->cap_other, &span, &close,
                             &empty)
        && p[span.value] != 'n')
    {
        edits[k++] = (aihub_body_edit_t) { span.value, span.end - span.value,
                                           "null", 4 };
    }

    return k;
}


int
aihub_body_rewrite(aihub_body_t *b, const aihub_body_policy_t *policy,
    const unsigned char *p, size_t n, const char *upstream, char **out,
    size_t *len)
{
    int                 rename, usage, store, empty, closed, k, j, nedits;
    int                 unkept, cap, drop;
    char               *id, *o, *input;
    char                capbuf[64];
    size_t              root, close, at, total, input_len;
    const char         *text;
    cJSON              *item;
    const cJSON        *items, *it;
    aihub_body_edit_t   edits[7], t;
    aihub_json_span_t   span, inc, kept, cut;

    rename = (strlen(upstream) != b->model_len
              || memcmp(upstream, b->model, b->model_len) != 0);

    usage = policy->stream_usage && b->stream && !b->include_usage;

    root = aihub_json_ws(p, n, 0);

    /* store: 1 to add, 2 to put false in place of the value given */

    store = 0;

    if (policy->no_store != AIHUB_STORE_AS_SENT
        && b->store == AIHUB_BODY_STORE_OTHER)
    {
        store = 2;

    } else if (policy->no_store == AIHUB_STORE_FALSE
               && b->store == AIHUB_BODY_STORE_NONE)
    {
        store = 1;
    }

    /* the Responses API (a model_only policy) told "store": false: its
       unkept items go */

    unkept = 0;
    items = NULL;

    if (policy->no_store == AIHUB_STORE_FALSE && policy->model_only
        && b->json != NULL)
    {
        items = cJSON_GetObjectItemCaseSensitive(b->json, "input");

        if (cJSON_IsArray(items)) {
            cJSON_ArrayForEach(it, items) {
                unkept += aihub_body_unkept(it);
            }
        }
    }

    /* the plan's cap, for a body that asked none */

    cap = (policy->cap > 0 && policy->cap_name != NULL
           && b->max_tokens == 0);

    /*
     * a provider that refuses stream_options (Mistral: 422) is sent none,
     * the client's own left out too (LangChain's stream_usage, the AI
     * SDK's provider and SDK users asking for the usage chunk send it):
     * before, it went on, and the client got 502
     */

    drop = (policy->no_stream_options
            && aihub_json_member(p, n, root, "stream_options", &cut, &close,
                                 &empty));

    if (!rename && !usage && !store && !unkept && !cap && !drop) {
        return 0;
    }

    nedits = 0;
    id = NULL;
    input = NULL;
    closed = 0;     /* something added before the root's '}' */

    if (unkept) {
        if (!aihub_json_member(p, n, root, "input", &span, &close, &empty)
            || p[span.value] != '[')
        {
            return -1;
        }

        input = aihub_body_input_kept(p, n, span.value, items, &input_len);
        if (input == NULL) {
            return -1;
        }

        edits[nedits++] = (aihub_body_edit_t) { span.value,
                                                span.end - span.value,
                                                input, input_len };
    }

    if (rename) {
        /* the provider's id as a JSON string, as cJSON escapes it */

        item = cJSON_CreateString(upstream);
        id = item ? cJSON_PrintUnformatted(item) : NULL;
        cJSON_Delete(item);

        if (id == NULL
            || !aihub_json_member(p, n, root, "model", &span, &close, &empty))
        {
            cJSON_free(id);
            free(input);
            return -1;
        }

        edits[nedits++] = (aihub_body_edit_t) { span.value,
                                                span.end - span.value,
                                                id, strlen(id) };
    }

    if (usage) {
        if (!aihub_json_member(p, n, root, "stream_options", &span, &close,
                               &empty))
        {
            text = "," AIHUB_BODY_OPTIONS_MEMBER;
            edits[nedits++] = (aihub_body_edit_t) { close, 0, text + empty,
                                                    strlen(text + empty) };
            closed = 1;

        } else if (p[span.value] != '{') {
            /* null */
            text = AIHUB_BODY_OPTIONS;
            edits[nedits++] = (aihub_body_edit_t) { span.value,
                                                    span.end - span.value,
                                                    text, strlen(text) };

        } else if (aihub_json_member(p, n, span.value, "include_usage",
                                     &inc, &close, &empty))
        {
            edits[nedits++] = (aihub_body_edit_t) { inc.value,
                                                    inc.end - inc.value,
                                                    "true", 4 };

        } else {
            text = "," AIHUB_BODY_USAGE_MEMBER;
            edits[nedits++] = (aihub_body_edit_t) { close, 0, text + empty,
                                                    strlen(text + empty) };
        }
    }

    if (drop) {
        edits[nedits++] = (aihub_body_edit_t) { cut.cut, cut.cut_end - cut.cut,
                                                "", 0 };
    }

    if (store) {
        /* (a name written with escapes is found too: the check refused a
           second "store", and the provider reads names decoded) */

        if (aihub_json_member(p, n, root, "store", &kept, &close, &empty))
        {
            edits[nedits++] = (aihub_body_edit_t) { kept.value,
                                                    kept.end - kept.value,
                                                    "false", 5 };

        } else {
            text = "," AIHUB_BODY_STORE_MEMBER;
            empty = empty && !closed;
            edits[nedits++] = (aihub_body_edit_t) { close, 0, text + empty,
                                                    strlen(text + empty) };
            closed = 1;
        }
    }

    if (cap) {
        k = aihub_body_cap_edits(p, n, root, policy, closed, capbuf,
                                 sizeof(capbuf), edits + nedits);
        if (k < 0) {
            cJSON_free(id);
            free(input);
            return -1;
        }

        nedits += k;
    }

    /* in the order of the bytes; two added at the root's end keep theirs */

    for (k = 1; k < nedits; k++) {
        t = edits[k];

        for (j = k; j > 0 && edits[j - 1].at > t.at; j--) {
            edits[j] = edits[j - 1];
        }

        edits[j] = t;
    }

    total = n;

    for (k = 0; k < nedits; k++) {
        total = total - edits[k].cut + edits[k].len;
    }

    o = malloc(total + 1);
    if (o == NULL) {
        cJSON_free(id);
        free(input);
        return -1;
    }

    *out = o;
    at = 0;

    for (k = 0; k < nedits; k++) {
        memcpy(o, p + at, edits[k].at - at);
        o += edits[k].at - at;
        memcpy(o, edits[k].text, edits[k].len);
        o += edits[k].len;
        at = edits[k].at + edits[k].cut;
    }

    memcpy(o, p + at, n - at);
    o += n - at;
    *o = '\0';
    *len = total;

    cJSON_free(id);
    free(input);

    if (rename) {
        b->model = upstream;
        b->model_len = strlen(upstream);
    }

    if (usage) {
        b->include_usage = 1;
    }

    if (store) {
        b->store = AIHUB_BODY_STORE_FALSE;
    }

    if (cap) {
        b->max_tokens = policy->cap;
    }

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

    case AIHUB_BODY_NUL_BYTE:
        return "The request body holds a NUL byte, which the gateway does "
               "not accept.";

    case AIHUB_BODY_SYNTAX:
        return "We could not parse the JSON body of your request.";

    case AIHUB_BODY_NOT_OBJECT:
        return "The request body must be a JSON object.";

    case AIHUB_BODY_DUPLICATE:
        return "appears more than once";

    case AIHUB_BODY_REFUSED:
        return "is not accepted by this gateway (it would change how the "
               "provider routes or bills the call)";

    case AIHUB_BODY_STORED:
        return "names an object stored in the provider account this "
               "gateway calls with, which every developer of the gateway "
               "shares: it is not accepted here";

    case AIHUB_BODY_TOOL:
        return "is not accepted by this gateway: the provider runs it and "
               "bills it per use, beyond the tokens the gateway meters "
               "(\"function\", \"custom\", \"local_shell\" and "
               "\"apply_patch\" tools are the client's own)";

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

    default: /* AIHUB_BODY_BAD_MAX_TOKENS */
        return "max_tokens must be a positive integer.";
    }
}


void
aihub_body_free(aihub_body_t *b)
{
    cJSON_Delete(b->json);
    b->json = NULL;
}
