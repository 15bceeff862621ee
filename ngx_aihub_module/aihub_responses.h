/*
 * The Responses API over a provider that speaks only chat completions:
 * the text subset translated both ways.  Plain C11 and cJSON, no nginx
 * types; memory from malloc, bounded by the limits the caller gives.
 *
 * Request: a Responses request becomes a chat completion request:
 *
 *   input (a string)            one user message
 *   input (items)               messages: "message" items (role user,
 *                               assistant, system, developer; content a
 *                               string or input_text / output_text /
 *                               input_image parts), function_call items
 *                               (an assistant message's tool_calls),
 *                               function_call_output items (tool messages)
 *   instructions                a system message first
 *   max_output_tokens           max_tokens
 *   temperature, top_p,         as they are
 *   parallel_tool_calls, user
 *   tools (type "function")     {"type":"function","function":{...}}
 *   tool_choice                 "auto", "none", "required", or a function
 *   text.format                 response_format (json_schema, json_object)
 *   reasoning.effort            reasoning_effort
 *   stream                      stream, with stream_options.include_usage
 *   store, metadata, truncation "disabled", include [], service_tier,
 *   prompt_cache_key, safety_identifier, stream_options (the Responses
 *   API's: obfuscation)
 *                               dropped: chat completions have no such thing
 *                               that changes the answer
 *
 * Anything else (previous_response_id, conversation, background, built-in
 * tools, item references, file inputs, ...) cannot be translated: the
 * translation fails with a message saying which member, and the caller
 * answers 400 without calling the provider.
 *
 * Answer: a chat completion becomes a response object; a chat completion
 * stream becomes the Responses API's events (response.created,
 * response.in_progress, response.output_item.added,
 * response.content_part.added, response.output_text.delta, ...,
 * response.function_call_arguments.delta, ..., response.completed, or
 * response.incomplete when the provider stopped at max_tokens, or
 * response.failed on an error).  Usage: input_tokens = prompt_tokens,
 * output_tokens = total_tokens - prompt_tokens (thinking tokens a provider
 * counts only in the total are output too, as reasoning_tokens),
 * total_tokens as reported.
 */

#ifndef AIHUB_RESPONSES_H
#define AIHUB_RESPONSES_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>


#define AIHUB_RESPONSES_ERR_LEN  192


/*
 * The chat completion request for a Responses request (the model member
 * is left as it is: the caller renames it), or NULL with the reason in
 * err (NUL-terminated) when it cannot be translated.  The caller deletes
 * the result.
 */
cJSON *aihub_responses_request(const cJSON *req, char *err, size_t err_len);


/*
 * A chat completion (JSON text) as a response object (JSON text, malloc'd,
 * NUL-terminated, its length in *out_len), or NULL when the text is not a
 * chat completion.  id: the response's id suffix (e.g. the request id),
 * model: the model as the client named it.
 */
char *aihub_responses_answer(const char *chat, size_t len, const char *id,
    const char *model, int64_t created, size_t *out_len);


/* a chat completion stream, translated as it passes */

typedef struct aihub_rstream_s  aihub_rstream_t;

/*
 * max_event: the longest chat event read (longer ones end the stream with
 * response.failed); max_text: the most text and tool call arguments kept
 * for the final events (beyond, the same).
 */
aihub_rstream_t *aihub_rstream_create(const char *id, const char *model,
    int64_t created, size_t max_event, size_t max_text);

/* feeds the provider's bytes; 0, or -1 when out of memory */
int aihub_rstream_feed(aihub_rstream_t *s, const unsigned char *p,
    size_t len);

/* the provider's stream ended (with or without [DONE]): the last events */
int aihub_rstream_finish(aihub_rstream_t *s);

/* what the client receives, since the last call (then forgotten) */
const unsigned char *aihub_rstream_take(aihub_rstream_t *s, size_t *len);

/* 1 once the final event (completed, incomplete, failed) was written */
int aihub_rstream_done(const aihub_rstream_t *s);

void aihub_rstream_destroy(aihub_rstream_t *s);


#endif /* AIHUB_RESPONSES_H */
