/*
 * The bodies of the endpoints other than chat completions, once parsed
 * (body.c reads the body, checks it is one JSON object without duplicate
 * or routing members, and reads "model"):
 *
 *   POST /v1/embeddings   "input": a string, or a non-empty array of
 *                         strings, of token ids, or of arrays of token ids
 *   POST /v1/responses    "input" (a string or an array of items, or
 *                         absent), "instructions", "stream",
 *                         "max_output_tokens" (the plan's max_tokens cap);
 *                         no "background"
 *
 * Each records what the later steps need (stream, max_tokens, the prompt
 * estimate in characters) as chat does.  NGX_DECLINED: refused, the
 * verdict is given.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_answer.h"
#include "ngx_http_aihub_body.h"
#include "ngx_http_aihub_body_api.h"
#include "aihub_body_rules.h"

#include <cjson/cJSON.h>


/* a token id stands for about 4 characters of the prompt estimate */
#define NGX_HTTP_AIHUB_TOKEN_CHARS  4


static ngx_int_t ngx_http_aihub_body_background(ngx_http_aihub_ctx_t *ctx,
    cJSON *root);
static int64_t ngx_http_aihub_body_api_json_chars(cJSON *item);
static int64_t ngx_http_aihub_body_api_content_chars(cJSON *content);


ngx_int_t
ngx_http_aihub_body_embeddings(ngx_http_aihub_ctx_t *ctx, cJSON *root)
{
    int64_t   n;
    cJSON    *input, *it, *tok;

    input = aihub_json_get(root, "input");
    n = 0;

    if (cJSON_IsString(input)) {
        n = ngx_http_aihub_body_chars(input->valuestring);
        goto done;
    }

    if (!cJSON_IsArray(input) || cJSON_GetArraySize(input) == 0) {
        ngx_http_aihub_bad_request(ctx, "The input parameter must be a "
                                        "string or a non-empty array of "
                                        "strings or token ids.");
        return NGX_DECLINED;
    }

    cJSON_ArrayForEach(it, input) {

        if (cJSON_IsString(it)) {
            n += ngx_http_aihub_body_chars(it->valuestring);
            continue;
        }

        if (cJSON_IsNumber(it)) {
            n += NGX_HTTP_AIHUB_TOKEN_CHARS;
            continue;
        }

        if (cJSON_IsArray(it)) {
            cJSON_ArrayForEach(tok, it) {
                if (!cJSON_IsNumber(tok)) {
                    goto invalid;
                }

                n += NGX_HTTP_AIHUB_TOKEN_CHARS;
            }

            continue;
        }

        goto invalid;
    }

done:

    ctx->body.prompt_estimate = n;
    ctx->body.stream = 0;

    return NGX_OK;

invalid:

    ngx_http_aihub_bad_request(ctx, "The input parameter must be a string "
                                    "or a non-empty array of strings or "
                                    "token ids.");
    return NGX_DECLINED;
}


ngx_int_t
ngx_http_aihub_body_responses(ngx_http_aihub_ctx_t *ctx, cJSON *root)
{
    int64_t   n;
    cJSON    *input, *it, *v, *stream, *max;

    static const char  *extras[] = { "tools", "tool_choice", "text", NULL };
    static const char  *members[] = { "content", "output", "arguments",
                                      NULL };
    const char        **name;

    n = 0;

    input = aihub_json_get(root, "input");

    if (cJSON_IsString(input)) {
        n += ngx_http_aihub_body_chars(input->valuestring);

    } else if (cJSON_IsArray(input)) {

        cJSON_ArrayForEach(it, input) {

            if (!cJSON_IsObject(it)) {
                ngx_http_aihub_bad_request(ctx, "Each item of the input "
                                                "parameter must be an "
                                                "object.");
                return NGX_DECLINED;
            }

            /* a message's content, a tool's output, a call's arguments */

            for (name = members; *name; name++) {
                v = aihub_json_get(it, *name);
                n += ngx_http_aihub_body_api_content_chars(v);
            }
        }

    } else if (input != NULL && !cJSON_IsNull(input)) {
        ngx_http_aihub_bad_request(ctx, "The input parameter must be a "
                                        "string or an array of items.");
        return NGX_DECLINED;
    }

    v = aihub_json_get(root, "instructions");

    if (cJSON_IsString(v)) {
        n += ngx_http_aihub_body_chars(v->valuestring);

    } else if (v != NULL && !cJSON_IsNull(v)) {
        ngx_http_aihub_bad_request(ctx, "The instructions parameter must be "
                                        "a string.");
        return NGX_DECLINED;
    }

    /* tool definitions and output formats reach the model as prompt */

    for (name = extras; *name; name++) {
        n += ngx_http_aihub_body_api_json_chars(
                 aihub_json_get(root, *name));
    }

    stream = aihub_json_get(root, "stream");

    if (stream != NULL && !cJSON_IsBool(stream) && !cJSON_IsNull(stream)) {
        ngx_http_aihub_bad_request(ctx, "The stream parameter must be a "
                                        "boolean.");
        return NGX_DECLINED;
    }

    ctx->body.stream = cJSON_IsTrue(stream);

    max = aihub_json_get(root, "max_output_tokens");

    if (max != NULL && !cJSON_IsNull(max)) {
        if (!cJSON_IsNumber(max) || max->valuedouble < 1
            || max->valuedouble > 1e9
            || max->valuedouble != (double) (int64_t) max->valuedouble)
        {
            ngx_http_aihub_bad_request(ctx, "max_output_tokens must be a "
                                            "positive integer.");
            return NGX_DECLINED;
        }

        ctx->body.max_tokens = (int64_t) max->valuedouble;
    }

    ctx->body.prompt_estimate = n;

    return ngx_http_aihub_body_background(ctx, root);
}


/*
 * "background": the response is generated after the answer (which says
 * "queued", with no usage), and fetched later from GET /v1/responses/{id},
 * which the gateway does not serve; nor would a stream the client leaves
 * stop it: the provider would bill the operator output the gateway never
 * meters.  Whichever API the provider speaks.
 */

static ngx_int_t
ngx_http_aihub_body_background(ngx_http_aihub_ctx_t *ctx, cJSON *root)
{
    cJSON  *v;

    v = aihub_json_get(root, "background");

    if (v != NULL && !cJSON_IsNull(v) && !cJSON_IsFalse(v)) {
        ngx_http_aihub_bad_request(ctx, "The member \"background\" is not "
                                   "accepted by this gateway: it meters a "
                                   "call by its answer, and a background "
                                   "response is generated after it.");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* a string's characters; the text of content parts; media at a flat cost */

static int64_t
ngx_http_aihub_body_api_content_chars(cJSON *content)
{
    int64_t   n;
    cJSON    *part, *text, *type;

    if (cJSON_IsString(content)) {
        return ngx_http_aihub_body_chars(content->valuestring);
    }

    if (!cJSON_IsArray(content)) {
        return 0;
    }

    n = 0;

    cJSON_ArrayForEach(part, content) {
        text = aihub_json_get(part, "text");
        type = aihub_json_get(part, "type");

        if (cJSON_IsString(text)) {
            n += ngx_http_aihub_body_chars(text->valuestring);

        } else if (cJSON_IsString(type)) {
            /* input_image, input_file, input_audio */
            n += NGX_HTTP_AIHUB_MEDIA_CHARS;
        }
    }

    return n;
}


static int64_t
ngx_http_aihub_body_api_json_chars(cJSON *item)
{
    char     *printed;
    int64_t   n;

    if (item == NULL || cJSON_IsNull(item)) {
        return 0;
    }

    printed = cJSON_PrintUnformatted(item);
    if (printed == NULL) {
        return 0;
    }

    n = ngx_http_aihub_body_chars(printed);
    cJSON_free(printed);

    return n;
}


/* UTF-8 continuation bytes (10xxxxxx) do not start a character */

int64_t
ngx_http_aihub_body_chars(const char *s)
{
    int64_t        n;
    const u_char  *p;

    n = 0;

    for (p = (const u_char *) s; *p; p++) {
        n += ((*p & 0xc0) != 0x80);
    }

    return n;
}
