/*
 * Rules for request bodies: what the gateway refuses so that what it
 * forwards is exactly what it checked.  Providers' JSON parsers keep the
 * last of two members with the same name while cJSON returns the first,
 * and a "\u0000" cuts a C string short; both would let a body say one
 * thing to the gateway and another to the provider.  Some members change
 * routing or cost at the provider behind the gateway's back.  Plain C11
 * and cJSON, no nginx types.
 */

#ifndef AIHUB_BODY_RULES_H
#define AIHUB_BODY_RULES_H

#include <stddef.h>

#include <cjson/cJSON.h>


/*
 * The member "name" of an object, or NULL: cJSON_GetObjectItemCaseSensitive()
 * for the request's path, which compares a member's first byte before the
 * rest (most names differ there, and most lookups find nothing).
 */
cJSON *aihub_json_get(const cJSON *obj, const char *name);

/* the first member name that appears twice in an object, or NULL */
const char *aihub_json_duplicate_member(const cJSON *obj);

/*
 * The same at any depth: the first member name that appears twice in any
 * object of the document (a message's "content" twice would let the
 * prompt estimate read one and the provider the other), or NULL.
 */
const char *aihub_json_duplicate_member_deep(const cJSON *item);

/* 1 if a string in the JSON text holds the escape \u0000 */
int aihub_json_has_nul_escape(const unsigned char *p, size_t n);

/*
 * The first top-level member that changes routing or cost at the provider
 * and is refused: OpenRouter's "models", "route", "provider", "plugins"
 * and "preset" (a stored configuration: models, providers, server
 * tools), OpenAI's "web_search_options" and xAI's "search_parameters"
 * (searches billed per call or per source, beyond tokens), "service_tier"
 * other than "auto"/"default", "n" other than 1.
 * NULL when there is none.
 */
const char *aihub_body_refused_member(const cJSON *root);

/*
 * The type of the first tool in "tools" that the provider runs itself
 * (web search, file search, code interpreter, xAI's live_search, ...: each
 * billed per use, beyond the tokens in "usage"), "?" for one without a
 * type; NULL when every tool is one the client runs, the model only
 * writing its calls: "function", "custom", and the Responses API's
 * "local_shell" and "apply_patch" (Codex CLI's).
 */
const char *aihub_body_provider_tool(const cJSON *root);

/*
 * The first member that names an object stored in the provider account
 * the gateway calls with, which every developer of the gateway shares, so
 * that one developer could read what another stored: at the top level
 * "previous_response_id", "conversation" and "prompt" (a stored prompt),
 * Gemini's "cached_content" (a context cache, in "google" or in
 * "extra_body"'s), "file_id" (an uploaded file) in a message or input
 * item or a part of its content, and an input item of type
 * "item_reference" (an item of a stored response).  Values null name
 * nothing.  NULL when there is none.
 */
const char *aihub_body_stored_member(const cJSON *root);


#endif /* AIHUB_BODY_RULES_H */
