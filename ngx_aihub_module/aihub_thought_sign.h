/*
 * Gemini 3's thought signatures on a chat completion request the gateway
 * wrote (a Responses request translated).  Plain C11 and cJSON.
 *
 * Gemini signs the function calls it makes (on its OpenAI-compatible
 * endpoint: a tool call's extra_content.google.thought_signature, on the
 * first call of each assistant message), and Gemini 3 refuses a request
 * in which such a call of the current turn (the messages after the last
 * user message) comes back without it: 400 "Function call is missing a
 * thought_signature in functionCall parts".  The translation hands back
 * what the answer's translation kept (a function_call item's
 * extra_content), but a client that rebuilt its history, or began the
 * conversation with another model, has none to give.  For such calls
 * Google documents a value that passes the check,
 * "skip_thought_signature_validator" (ai.google.dev, "Thought
 * signatures"): the call is answered rather than refused, at the cost of
 * the reasoning context a real signature carries.
 */

#ifndef AIHUB_THOUGHT_SIGN_H
#define AIHUB_THOUGHT_SIGN_H

#include <cjson/cJSON.h>


#define AIHUB_THOUGHT_SIGN_SKIP  "skip_thought_signature_validator"


/*
 * 1 when the provider's model id names a Gemini that checks signatures:
 * "gemini-N..." with N >= 3 ("gemini-3-pro-preview", "gemini-3.1-flash"),
 * also after "models/"; 0 for any other id (Gemini 2.5 signs its calls
 * but does not refuse a call without a signature).
 */
int aihub_thought_sign_checked(const char *model);


/*
 * Gives the first tool call of each assistant message of the current turn
 * of chat (a chat completion request) Google's value, where it has no
 * signature of its own (none, or not a non-empty string); a signature
 * there is left as it is, as are the other calls and earlier turns.
 * Returns the calls signed, or -1 when out of memory.
 */
int aihub_thought_sign_calls(cJSON *chat);


#endif /* AIHUB_THOUGHT_SIGN_H */
