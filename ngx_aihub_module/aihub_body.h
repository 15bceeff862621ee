/*
 * The chat request body, checked and rewritten: a pure function of the
 * body's bytes and the gateway's policy, so that what the provider is
 * sent is exactly what the gateway checked (aihub_body_rules.h has the
 * rules).  The nginx body step reads the body, calls aihub_body_check(),
 * acts on the verdict, and later aihub_body_rewrite() for the provider.
 * Plain C11 and cJSON, no nginx types.
 */

#ifndef AIHUB_BODY_H
#define AIHUB_BODY_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>


/* an image or audio part counts as this many characters of prompt: 765
   tokens, a high-detail image at OpenAI */
#define AIHUB_BODY_MEDIA_CHARS  (765 * 4)


typedef enum {
    AIHUB_BODY_OK = 0,
    AIHUB_BODY_EMPTY,
    AIHUB_BODY_NUL,                 /* a string holds \u0000 */
    AIHUB_BODY_NUL_BYTE,            /* a NUL byte: cJSON's strings end
                                       there, the provider's do not */
    AIHUB_BODY_SYNTAX,              /* not one JSON value */
    AIHUB_BODY_NOT_OBJECT,
    AIHUB_BODY_DUPLICATE,           /* member: the name given twice */
    AIHUB_BODY_REFUSED,             /* member: routes or bills */
    AIHUB_BODY_STORED,              /* member: names an object stored in
                                       the provider account */
    AIHUB_BODY_TOOL,                /* member: the type of a tool the
                                       provider runs itself */
    AIHUB_BODY_NO_MODEL,
    AIHUB_BODY_BAD_MODEL,
    AIHUB_BODY_BAD_MESSAGES,
    AIHUB_BODY_BAD_STREAM,
    AIHUB_BODY_BAD_STREAM_OPTIONS,
    AIHUB_BODY_BAD_MAX_TOKENS
} aihub_body_verdict_e;


typedef struct {
    int64_t                 max_tokens_max;   /* the largest max_tokens */
    unsigned                stream_usage:1;   /* a stream must ask for its
                                                 usage chunk */
    unsigned                model_only:1;     /* not chat completions: the
                                                 check stops after "model",
                                                 the endpoint reads its own
                                                 members (embeddings,
                                                 responses) */
    unsigned                stored_objects:1; /* members that name the
                                                 provider account's stored
                                                 objects pass */
    unsigned                no_store:2;       /* AIHUB_STORE_*: what the
                                                 rewrite does with
                                                 "store" */
    int64_t                 cap;              /* > 0: the rewrite sends
                                                 this cap on the output
                                                 tokens of a body that
                                                 asked none (its
                                                 max_tokens 0) */
    const char             *cap_name;         /* ... as this member */
    const char             *cap_other;        /* NULL, or a member the
                                                 provider reads the same
                                                 way: if a rewrite before
                                                 put the cap there, it
                                                 becomes null */
    unsigned                no_stream_options:1;  /* the provider refuses
                                                 the member: the client's
                                                 goes */
} aihub_body_policy_t;

/* the policy's no_store: nothing kept in the provider account */
#define AIHUB_STORE_AS_SENT     0   /* "store" forwarded as it came */
#define AIHUB_STORE_NOT_TRUE    1   /* one that is not false becomes
                                       false (chat completions: absent
                                       is false at the provider) */
#define AIHUB_STORE_FALSE       2   /* and one is added when absent (the
                                       Responses API: absent is true) */

/* the body's store */
#define AIHUB_BODY_STORE_NONE   0   /* absent */
#define AIHUB_BODY_STORE_FALSE  1
#define AIHUB_BODY_STORE_OTHER  2   /* true, null or anything else */


/*
 * What the check found.  The fields are filled in the order the checks
 * run, so a refused body keeps what was read before the refusal (a model
 * for the access log, say).
 */

typedef struct {
    aihub_body_verdict_e    verdict;
    const char             *member;         /* DUPLICATE, REFUSED,
                                               STORED, TOOL */
    cJSON                  *json;           /* the parsed body, or NULL
                                               (none, or not parsed into
                                               a tree) */
    const char             *model;          /* in json, or in the body's
                                               bytes (not NUL-terminated);
                                               NULL: none read */
    size_t                  model_len;
    int64_t                 prompt_chars;   /* characters of prompt text */
    int64_t                 max_tokens;     /* 0: none asked */
    unsigned                stream:1;
    unsigned                include_usage:1;
    unsigned                store:2;        /* AIHUB_BODY_STORE_* */
} aihub_body_t;


/*
 * b is filled; free it with aihub_body_free() whatever the verdict.  A
 * plain chat body is read in one pass without a tree (b->json NULL,
 * aihub_body_fast()); any other body, and every body of a model_only
 * policy, is parsed into b->json (aihub_body_check_tree()).
 */
void aihub_body_check(aihub_body_t *b, const unsigned char *p, size_t n,
    const aihub_body_policy_t *policy);

/* the same check, always through cJSON's tree */
void aihub_body_check_tree(aihub_body_t *b, const unsigned char *p, size_t n,
    const aihub_body_policy_t *policy);

/*
 * The check in one pass over the bytes (aihub_body_fast.c): 0 and b
 * filled as aihub_body_check_tree() would fill it, less the tree, for a
 * chat body it reads exactly as the tree check does and accepts; -1 (b
 * untouched) for every other body, which only the tree check decides.
 */
int aihub_body_fast(aihub_body_t *b, const unsigned char *p, size_t n,
    const aihub_body_policy_t *policy);

/*
 * The body for the provider: its own model id (a C string), for a stream
 * stream_options.include_usage when the policy wants it, "store": false
 * as the policy's no_store says (put in place of the value the body gave,
 * or added; the client's stream_options left out with
 * no_stream_options; with AIHUB_STORE_FALSE, a Responses input's reasoning items
 * without encrypted_content are left out: the provider kept none of
 * them), and the policy's cap when b->max_tokens is 0 (in place of a
 * null, or added).  p and n
 * are the bytes b was checked from; only the bytes of what changes are
 * edited, every other byte is forwarded as it came.
 * 0: nothing changes, forward p as it is; 1: *out holds the body to
 * forward (*len bytes and a NUL; free it with free()); -1: no memory.
 * b's model and include_usage then describe *out (b->model is upstream).
 */
int aihub_body_rewrite(aihub_body_t *b, const aihub_body_policy_t *policy,
    const unsigned char *p, size_t n, const char *upstream, char **out,
    size_t *len);

/* the client's message for a verdict; for DUPLICATE, REFUSED and STORED,
   what follows "The member "<name>"", for TOOL "The tool type "<type>"" */
const char *aihub_body_message(aihub_body_verdict_e verdict);

void aihub_body_free(aihub_body_t *b);


#endif /* AIHUB_BODY_H */
