/*
 * The chat body checked and rewritten (aihub_body.c).
 *
 * The first input byte picks the provider's model id (the body's own, or
 * another, with a quote) and the policy (a small max_tokens cap or the
 * gateway's; streams asked for usage or not; "store": false forwarded or
 * not; a plan's cap of 50 sent as max_tokens or max_completion_tokens, or
 * none); the rest is the body.
 * Properties:
 *   - the same bytes always get the same verdict (checked twice);
 *   - an accepted body parses, holds each top-level member once (and each
 *     member of stream_options once), as a separate quadratic walk finds,
 *     has a non-empty model, max_tokens in 1..cap or none;
 *   - nothing rewritten => the provider gets the bytes as they came, and
 *     that is right: the model is the provider's id, no stream lacks
 *     the usage the policy wants, "store" is false where it must be, and
 *     the body asked a max_tokens or the policy has no cap;
 *   - rewritten (by editing the input's bytes) => the output is accepted
 *     by the same check, holds each member once, has the provider's id,
 *     the same stream, max_tokens and prompt estimate, include_usage
 *     where the policy wants it, "store": false where it must be (one
 *     "store", however the input spelled its name), the plan's cap under
 *     its name where the input asked none, every other member of the
 *     input unchanged (member by member, in order) and no other member;
 *     a second rewrite changes nothing (the checked body is the forwarded
 *     one), and one that does not know the cap is in (a fallback's)
 *     writes the same bytes.
 *   - the check (which reads a plain chat body in one pass, without a
 *     tree) gives every body the verdict and figures the tree check
 *     gives; the properties above are checked on the tree's.
 * The check takes the whole body (nginx reads it first), so there is no
 * split of the input to vary.
 */

#include <string.h>

#include "aihub_body.h"
#include "fuzz.h"


/* each member name once, by a walk unlike the engine's sort */

static int
members_unique(const cJSON *obj)
{
    size_t        n;
    const cJSON  *a, *b;

    n = 0;

    for (a = obj->child; a != NULL; a = a->next) {
        if (++n > 4096) {
            return 1;       /* too long to walk twice; the engine did */
        }
    }

    for (a = obj->child; a != NULL; a = a->next) {
        for (b = a->next; b != NULL; b = b->next) {
            if (strcmp(a->string, b->string) == 0) {
                return 0;
            }
        }
    }

    return 1;
}


/*
 * The same tree, member by member in order (cJSON_Compare() looks members
 * up by name, which a nested object with a repeated name defeats).
 */

static int
same_tree(const cJSON *a, const cJSON *b)
{
    if ((a->type & 0xff) != (b->type & 0xff)) {
        return 0;
    }

    if ((a->string == NULL) != (b->string == NULL)
        || (a->string != NULL && strcmp(a->string, b->string) != 0))
    {
        return 0;
    }

    if (cJSON_IsString(a)) {
        return strcmp(a->valuestring, b->valuestring) == 0;
    }

    if (cJSON_IsNumber(a)) {
        return a->valuedouble == b->valuedouble;
    }

    for (a = a->child, b = b->child; a != NULL && b != NULL;
         a = a->next, b = b->next)
    {
        if (!same_tree(a, b)) {
            return 0;
        }
    }

    return a == NULL && b == NULL;
}


/* b: the tree check's result, which the check agrees with */

/*
 * "store" as the policy wants it in what the provider gets: not true (a
 * chat completion: absent, or false) or false (the Responses API); and
 * absent where the input had none, unless it must be false.
 */

static int
store_right(const cJSON *sent, const aihub_body_policy_t *pol,
    const cJSON *input)
{
    const cJSON  *st;

    st = cJSON_GetObjectItemCaseSensitive(sent, "store");

    if (pol->no_store == AIHUB_STORE_FALSE) {
        return cJSON_IsFalse(st);
    }

    if (pol->no_store == AIHUB_STORE_NOT_TRUE) {
        return st == NULL
               ? (input == NULL
                  || cJSON_GetObjectItemCaseSensitive(input, "store") == NULL)
               : cJSON_IsFalse(st);
    }

    return 1;
}


static void
check_both(aihub_body_t *b, const unsigned char *p, size_t n,
    const aihub_body_policy_t *pol)
{
    aihub_body_t  c;

    aihub_body_check(&c, p, n, pol);
    aihub_body_check_tree(b, p, n, pol);

    FUZZ_CHECK(c.verdict == b->verdict);

    if (c.verdict == AIHUB_BODY_OK) {
        FUZZ_CHECK(c.model_len == b->model_len
                   && memcmp(c.model, b->model, b->model_len) == 0);
        FUZZ_CHECK(c.prompt_chars == b->prompt_chars
                   && c.max_tokens == b->max_tokens
                   && c.stream == b->stream
                   && c.include_usage == b->include_usage
                   && c.store == b->store);
    }

    aihub_body_free(&c);
}


static void
check_accepted(const aihub_body_t *b, const aihub_body_policy_t *pol)
{
    cJSON  *opts;

    FUZZ_CHECK(b->json != NULL && cJSON_IsObject(b->json));
    FUZZ_CHECK(members_unique(b->json));

    opts = cJSON_GetObjectItemCaseSensitive(b->json, "stream_options");
    FUZZ_CHECK(!cJSON_IsObject(opts) || members_unique(opts));

    FUZZ_CHECK(b->model != NULL && b->model_len > 0);
    FUZZ_CHECK(b->max_tokens == 0
               || (b->max_tokens >= 1 && b->max_tokens <= pol->max_tokens_max));
    FUZZ_CHECK(b->prompt_chars >= 0);
}


/* whether the body's object has a member named stream_options, however
   its name is written */

static int
has_stream_options(const unsigned char *p, size_t n)
{
    int           has;
    cJSON        *root;
    const cJSON  *it;

    root = cJSON_ParseWithLength((const char *) p, n);
    has = 0;

    if (cJSON_IsObject(root)) {
        for (it = root->child; it != NULL; it = it->next) {
            has |= (it->string != NULL
                    && strcmp(it->string, "stream_options") == 0);
        }
    }

    cJSON_Delete(root);

    return has;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                  rc;
    char                *out;
    size_t               len;
    const char          *upstream;
    const cJSON         *it, *was;
    aihub_body_t         b, again, fwd, was_b;
    aihub_body_policy_t  pol;

    char                 model[256];

    if (size == 0) {
        return 0;
    }

    memset(&pol, 0, sizeof(aihub_body_policy_t));
    pol.max_tokens_max = (data[0] & 1) ? 1000000000 : 4096;
    pol.stream_usage = (data[0] >> 1) & 1;
    pol.no_store = ((data[0] >> 4) & 3) % 3;

    /* a provider that refuses stream_options is asked for no usage */
    pol.no_stream_options = !pol.stream_usage && (size & 1);

    if ((data[0] >> 6) & 1) {
        pol.cap = 50;
        pol.cap_name = (data[0] >> 7) ? "max_completion_tokens"
                                      : "max_tokens";
        pol.cap_other = (data[0] >> 7) ? "max_tokens"
                                       : "max_completion_tokens";
    }

    check_both(&b, data + 1, size - 1, &pol);
    check_both(&again, data + 1, size - 1, &pol);

    FUZZ_CHECK(b.verdict == again.verdict);
    FUZZ_CHECK(b.stream == again.stream && b.max_tokens == again.max_tokens
               && b.prompt_chars == again.prompt_chars);
    aihub_body_free(&again);

    if (b.verdict != AIHUB_BODY_OK) {
        FUZZ_CHECK(aihub_body_message(b.verdict)[0] != '\0');
        FUZZ_CHECK((b.verdict != AIHUB_BODY_DUPLICATE
                    && b.verdict != AIHUB_BODY_REFUSED
                    && b.verdict != AIHUB_BODY_STORED
                    && b.verdict != AIHUB_BODY_TOOL)
                   || b.member != NULL);
        aihub_body_free(&b);
        return 0;
    }

    check_accepted(&b, &pol);

    switch ((data[0] >> 2) & 3) {

    case 0:
        if (b.model_len >= sizeof(model)) {
            aihub_body_free(&b);
            return 0;
        }

        memcpy(model, b.model, b.model_len);
        model[b.model_len] = '\0';
        upstream = model;
        break;

    case 1:
        upstream = "provider/model-1";
        break;

    case 2:
        upstream = "q\"uote\\d\x01";
        break;

    default:
        upstream = "\xc3\xa9";
        break;
    }

    memcpy(&was_b, &b, sizeof(aihub_body_t));

    rc = aihub_body_rewrite(&b, &pol, data + 1, size - 1, upstream, &out,
                            &len);

    FUZZ_CHECK(rc == 0 || rc == 1);

    if (rc == 0) {
        /* nothing to change: right only if nothing had to */
        FUZZ_CHECK(strlen(upstream) == b.model_len
                   && memcmp(upstream, b.model, b.model_len) == 0);
        FUZZ_CHECK(b.model == was_b.model && b.json == was_b.json);
        FUZZ_CHECK(!pol.stream_usage || !b.stream || b.include_usage);
        FUZZ_CHECK(store_right(b.json, &pol, NULL));
        FUZZ_CHECK(pol.cap == 0 || b.max_tokens != 0);
        FUZZ_CHECK(!pol.no_stream_options || !has_stream_options(data + 1,
                                                                 size - 1));
        aihub_body_free(&b);
        return 0;
    }

    /* the forwarded body, read again by the same check */

    check_both(&fwd, (const unsigned char *) out, len, &pol);

    FUZZ_CHECK(fwd.verdict == AIHUB_BODY_OK);
    check_accepted(&fwd, &pol);

    FUZZ_CHECK(fwd.model_len == strlen(upstream)
               && memcmp(fwd.model, upstream, fwd.model_len) == 0);
    FUZZ_CHECK(fwd.stream == b.stream);
    FUZZ_CHECK(fwd.max_tokens == b.max_tokens);
    FUZZ_CHECK(fwd.max_tokens
               == (was_b.max_tokens != 0 ? was_b.max_tokens : pol.cap));

    if (pol.cap && was_b.max_tokens == 0) {
        it = cJSON_GetObjectItemCaseSensitive(fwd.json, pol.cap_name);
        FUZZ_CHECK(cJSON_IsNumber(it) && it->valuedouble == 50);
    }
    if (pol.no_stream_options) {
        /* none sent; the client's wish kept, for the answer */
        FUZZ_CHECK(!has_stream_options((const unsigned char *) out, len));
        FUZZ_CHECK(!fwd.include_usage);
        FUZZ_CHECK(b.include_usage == was_b.include_usage);

    } else {
        FUZZ_CHECK(fwd.include_usage
                   == (was_b.include_usage || (pol.stream_usage && b.stream)));
        FUZZ_CHECK(b.include_usage == fwd.include_usage);
    }
    FUZZ_CHECK(b.model_len == fwd.model_len
               && memcmp(b.model, fwd.model, b.model_len) == 0);

    FUZZ_CHECK(store_right(fwd.json, &pol, b.json));
    FUZZ_CHECK(fwd.store == b.store);

    /* every member but model, stream_options (and store) as it was, no
       other */

    for (it = fwd.json->child; it != NULL; it = it->next) {
        if (strcmp(it->string, "model") == 0
            || strcmp(it->string, "stream_options") == 0
            || (pol.no_store && strcmp(it->string, "store") == 0)
            || (pol.cap && was_b.max_tokens == 0
                && (strcmp(it->string, pol.cap_name) == 0
                    || strcmp(it->string, pol.cap_other) == 0)))
        {
            continue;
        }

        was = cJSON_GetObjectItemCaseSensitive(b.json, it->string);
        FUZZ_CHECK(was != NULL && same_tree(was, it));
    }

    for (it = b.json->child; it != NULL; it = it->next) {
        FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(fwd.json, it->string)
                   != NULL
                   || (pol.no_stream_options
                       && strcmp(it->string, "stream_options") == 0));
    }

    FUZZ_CHECK(fwd.prompt_chars == b.prompt_chars);

    /* and it needs nothing more */

    {
        char    *out2;
        size_t   len2;

        FUZZ_CHECK(aihub_body_rewrite(&fwd, &pol, (const unsigned char *) out,
                                      len, upstream, &out2, &len2)
                   == 0);

        if (pol.cap && was_b.max_tokens == 0) {
            fwd.max_tokens = 0;
            FUZZ_CHECK(aihub_body_rewrite(&fwd, &pol,
                                          (const unsigned char *) out, len,
                                          upstream, &out2, &len2)
                       == 1);
            FUZZ_CHECK(len2 == len && memcmp(out2, out, len) == 0);
            free(out2);
        }
    }

    free(out);
    aihub_body_free(&fwd);
    aihub_body_free(&b);

    return 0;
}
