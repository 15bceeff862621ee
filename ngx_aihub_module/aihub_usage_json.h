/*
 * Usage metering from provider answers: an incremental, allocation-free JSON
 * scanner that picks the few members billing needs out of a chat completion
 * (or one SSE chunk of one), fed in pieces split at any byte, and the billing
 * rule that turns what was read into the numbers of a usage event.
 *
 * Pure C11: no nginx, no hiredis, no cJSON, no allocation.
 *
 * What the scanner reads, by path from the top-level object only:
 *
 *   usage.prompt_tokens, usage.completion_tokens, usage.total_tokens
 *                          numbers; taken when the usage object closes, so a
 *                          cut usage object is ignored; "usage": null and
 *                          nested members (prompt_tokens_details, ...) are
 *                          ignored.  The Responses API's input_tokens and
 *                          output_tokens count as prompt and completion
 *                          (output_tokens includes reasoning tokens)
 *   response.usage, response.error
 *                          the same inside "response" (the Responses API's
 *                          stream events: response.completed,
 *                          response.incomplete, response.failed)
 *   error                  any value but null or false marks an error; the
 *                          string itself or error.message is kept (short)
 *   type                   the string "error" marks an error (a Responses
 *                          API stream's error event)
 *   choices                null, [] or absent: "no choices"
 *   choices[*].delta.content, choices[*].message.content, and the same
 *   with reasoning or reasoning_content instead of content, and a
 *   top-level "delta" string (Responses API text deltas)
 *                          strings: their characters (Unicode code points)
 *                          are counted into delivered_chars for estimates,
 *                          and so are a tool call's function name and
 *                          arguments
 *   output[*].content[*].text (or .refusal), output[*].name and .arguments
 *                          the same, of a Responses API answer (a stream's
 *                          "response" is not counted: its deltas were)
 *
 * "usage" anywhere else (inside choices, inside a string) never counts.
 * Member names written with escapes ("us\u0061ge") are not recognised.
 */

#ifndef AIHUB_USAGE_JSON_H
#define AIHUB_USAGE_JSON_H

#include <stddef.h>
#include <stdint.h>


#define AIHUB_USAGE_MAX        1000000000  /* above 10^9 tokens is absurd */
#define AIHUB_USAGE_MSG_LEN    128         /* error message copy, with NUL */
#define AIHUB_JSON_MAX_DEPTH   256         /* deeper documents are refused */
#define AIHUB_JSON_TRACK       7           /* nesting levels given roles:
                                              as deep as a tool call's
                                              choices[].delta.tool_calls[]
                                              .function.arguments */
#define AIHUB_JSON_KEY_LEN     20          /* longest member name matched */

/* aihub_json_feed() and aihub_usage_json_feed() return values */
#define AIHUB_JSON_AGAIN       0           /* the document is not complete */
#define AIHUB_JSON_DONE        1           /* the top-level value is closed */
#define AIHUB_JSON_ERROR       -1          /* not JSON; scanning stopped */


/*
 * What one call's answer reported, accumulated over a whole response (the
 * JSON body, or every chunk of an SSE stream).  A number that is negative,
 * fractional or above AIHUB_USAGE_MAX sets its bad_ bit and clamped; it is
 * stored clamped to [0, AIHUB_USAGE_MAX] but aihub_usage_finalize() never
 * trusts it.
 */

typedef struct {
    int64_t    prompt;
    int64_t    completion;
    int64_t    total;
    uint64_t   delivered_chars;    /* content characters seen */

    unsigned   found:1;            /* a complete usage object was read */
    unsigned   has_prompt:1;
    unsigned   has_completion:1;
    unsigned   has_total:1;
    unsigned   bad_prompt:1;
    unsigned   bad_completion:1;
    unsigned   bad_total:1;
    unsigned   clamped:1;          /* some number was bad */
    unsigned   error:1;            /* the provider sent an error object */
    unsigned   done:1;             /* SSE: "data: [DONE]" was seen */
    unsigned   overlong:1;         /* SSE: an event too long to hold */
    unsigned   invalid:1;          /* a JSON document was not well formed */
    unsigned   estimated:1;        /* set by aihub_usage_finalize() */

    size_t     error_len;
    char       error_msg[AIHUB_USAGE_MSG_LEN];   /* NUL terminated */
} aihub_usage_t;


/*
 * The scanner's state: plain data, embed it anywhere.  Fields below are
 * read by aihub_sse.c; everything else is private.
 */

typedef struct {
    uint8_t    state;
    uint8_t    str_role;
    uint8_t    num_role;
    uint8_t    num_phase;
    uint8_t    lit;
    uint8_t    lit_pos;
    uint8_t    hex_left;
    uint8_t    key_len;
    uint8_t    type_pos;            /* "type": characters of "error" seen */
    uint8_t    type_other;          /* ... and it is something else */
    uint32_t   hex;
    uint32_t   depth;
    uint64_t   is_object[AIHUB_JSON_MAX_DEPTH / 64];
    uint8_t    ctx[AIHUB_JSON_TRACK + 1];
    uint8_t    key[AIHUB_JSON_TRACK + 1];
    char       key_buf[AIHUB_JSON_KEY_LEN];

    uint64_t   mant;
    int64_t    exp10;
    int64_t    exp_val;
    unsigned   num_neg:1;
    unsigned   num_exp_neg:1;
    unsigned   num_inexact:1;
    unsigned   num_digits:1;

    /* the usage object being read, copied out when it closes */
    int64_t    cur[3];
    uint8_t    cur_has;
    uint8_t    cur_bad;

    /* findings: read by aihub_sse.c */
    int64_t    val[3];              /* prompt, completion, total */
    uint8_t    val_has;             /* bit 0 prompt, 1 completion, 2 total */
    uint8_t    val_bad;
    unsigned   usage:1;             /* a usage object closed */
    unsigned   top_usage:1;         /* ... the top-level object's own */
    unsigned   started:1;           /* the first value began */
    unsigned   top_object:1;        /* the top-level value is an object */
    unsigned   choices:1;           /* choices has at least one element */
    unsigned   error:1;
    unsigned   complete:1;          /* the top-level value closed */
    unsigned   invalid:1;
    unsigned   trailing:1;          /* non-space after the top-level value */
    uint64_t   chars;               /* cumulative, kept by _reset() */
    size_t     msg_len;
    char       msg[AIHUB_USAGE_MSG_LEN];
} aihub_json_t;


typedef struct {
    aihub_json_t   json;
    aihub_usage_t  usage;
} aihub_usage_json_t;


/* the scanner, for one JSON document at a time */
void aihub_json_init(aihub_json_t *j);
void aihub_json_reset(aihub_json_t *j);   /* next document; keeps chars */
int aihub_json_feed(aihub_json_t *j, const unsigned char *p, size_t len);
void aihub_json_commit(const aihub_json_t *j, aihub_usage_t *u);

/*
 * a non-streaming answer: the body in as many pieces as it arrives (a
 * first piece that is all of a plain answer is read in one pass,
 * aihub_usage_fast.h, with the same findings)
 */
void aihub_usage_json_init(aihub_usage_json_t *uj);
int aihub_usage_json_feed(aihub_usage_json_t *uj, const unsigned char *p,
    size_t len);

/*
 * The billing rule, applied once per call when the answer is over:
 *
 *   prompt      the reported number, else prompt_estimate (the caller's
 *               estimate from the request, e.g. body bytes / 4)
 *   completion  the reported number, else ceil(delivered_chars / 4)
 *   total       max(reported total, prompt + completion): providers such as
 *               Gemini bill thinking tokens only in total_tokens
 *
 * A missing or bad prompt or completion sets estimated; a bad total sets
 * estimated too.  A missing total alone does not: prompt + completion is
 * then exact.  On return prompt, completion and total are final and
 * 0 <= prompt + completion <= total.
 */
void aihub_usage_finalize(aihub_usage_t *u, int64_t prompt_estimate);


#endif /* AIHUB_USAGE_JSON_H */
