/*
 * The Responses API translator (aihub_responses.c).
 *
 * Input: byte 0 selects what is fuzzed (0: a chat completion stream,
 * 1: a chat completion, 2: a Responses request), bytes 1-4 the split
 * seed, byte 5 the longest piece, then the document.  Properties:
 *   - a stream's translation does not depend on how the stream is cut;
 *   - it is a sequence of "event: T" / "data: JSON" / blank lines, each
 *     JSON an object whose "type" is T and whose sequence_number counts
 *     from 0, and ends with one final event (response.completed,
 *     .incomplete or .failed) after which nothing is written;
 *   - a translated chat completion is a JSON object, "object":"response";
 *   - a translated request is a JSON object with a "messages" array, or a
 *     refusal with a NUL-terminated reason;
 *   - Gemini 3's thought signatures given to it (and to the document
 *     itself, as if it were a chat request) leave nothing to give on a
 *     second pass.
 */

#include <string.h>

#include <cjson/cJSON.h>

#include "aihub_responses.h"
#include "aihub_thought_sign.h"
#include "fuzz.h"


/* Gemini 3's signatures (aihub_thought_sign.c): once given, every call
   that needs one has one, so a second pass signs nothing */

static void
signed_twice(cJSON *chat)
{
    FUZZ_CHECK(aihub_thought_sign_calls(chat) >= 0);
    FUZZ_CHECK(aihub_thought_sign_calls(chat) == 0);
}


typedef struct {
    char    *p;
    size_t   len;
    size_t   cap;
} out_t;


static void
take(aihub_rstream_t *s, out_t *o)
{
    size_t                n;
    const unsigned char  *p;

    p = aihub_rstream_take(s, &n);

    if (n == 0) {
        return;
    }

    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->p = realloc(o->p, o->cap);
        FUZZ_CHECK(o->p != NULL);
    }

    memcpy(o->p + o->len, p, n);
    o->len += n;
    o->p[o->len] = '\0';
}


static void
translate(const uint8_t *in, size_t len, fuzz_split_t *sp, out_t *o)
{
    size_t            n;
    aihub_rstream_t  *s;

    memset(o, 0, sizeof(out_t));

    s = aihub_rstream_create("id", "model", 1, 512, 4096);
    FUZZ_CHECK(s != NULL);

    while (len) {
        n = sp ? fuzz_split_next(sp, len) : len;
        FUZZ_CHECK(aihub_rstream_feed(s, in, n) == 0);
        take(s, o);
        in += n;
        len -= n;
    }

    FUZZ_CHECK(aihub_rstream_finish(s) == 0);
    take(s, o);
    FUZZ_CHECK(aihub_rstream_done(s));

    /* nothing after the end */
    FUZZ_CHECK(aihub_rstream_feed(s, (const unsigned char *) "data: x\n\n",
                                  9) == 0);
    aihub_rstream_take(s, &n);
    FUZZ_CHECK(n == 0);

    aihub_rstream_destroy(s);
}


static void
check_events(char *p, size_t len)
{
    int          seq, final;
    char        *line, *data, *end;
    size_t       tlen;
    cJSON       *e, *t, *sn;

    seq = 0;
    final = 0;
    end = p + len;
    line = p;

    while (line < end) {
        FUZZ_CHECK(!final);
        FUZZ_CHECK(strncmp(line, "event: ", 7) == 0);
        data = strchr(line, '\n');
        FUZZ_CHECK(data != NULL && strncmp(data + 1, "data: ", 6) == 0);
        tlen = data - line - 7;

        data += 7;
        line = strchr(data, '\n');
        FUZZ_CHECK(line != NULL && line[1] == '\n');
        *line = '\0';

        e = cJSON_Parse(data);
        FUZZ_CHECK(cJSON_IsObject(e));
        t = cJSON_GetObjectItemCaseSensitive(e, "type");
        sn = cJSON_GetObjectItemCaseSensitive(e, "sequence_number");
        FUZZ_CHECK(cJSON_IsString(t) && strlen(t->valuestring) == tlen
                   && strncmp(t->valuestring, data - 6 - tlen - 1, tlen)
                      == 0);
        FUZZ_CHECK(cJSON_IsNumber(sn) && sn->valueint == seq);

        final = strcmp(t->valuestring, "response.completed") == 0
                || strcmp(t->valuestring, "response.incomplete") == 0
                || strcmp(t->valuestring, "response.failed") == 0;

        cJSON_Delete(e);
        seq++;
        line += 2;
    }

    FUZZ_CHECK(final);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char           err[AIHUB_RESPONSES_ERR_LEN], *doc;
    size_t         len;
    out_t          whole, cut;
    cJSON         *req, *chat, *r;
    fuzz_split_t   sp;

    if (size < 6) {
        return 0;
    }

    switch (data[0] % 3) {

    case 0:
        fuzz_split_init(&sp, data + 1, data[5]);
        translate(data + 6, size - 6, NULL, &whole);
        translate(data + 6, size - 6, &sp, &cut);

        FUZZ_CHECK(whole.len == cut.len
                   && (whole.len == 0
                       || memcmp(whole.p, cut.p, whole.len) == 0));
        FUZZ_CHECK(whole.len > 0);

        check_events(whole.p, whole.len);
        free(whole.p);
        free(cut.p);
        break;

    case 1:
        doc = aihub_responses_answer((const char *) data + 6, size - 6,
                                     "id", "model", 1, &len);
        if (doc != NULL) {
            FUZZ_CHECK(strlen(doc) == len);
            r = cJSON_Parse(doc);
            FUZZ_CHECK(cJSON_IsObject(r));
            FUZZ_CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(r, "object")
                              ->valuestring, "response") == 0);
            cJSON_Delete(r);
            cJSON_free(doc);
        }

        break;

    default:
        req = cJSON_ParseWithLength((const char *) data + 6, size - 6);
        err[0] = 'x';
        chat = aihub_responses_request(req, err, sizeof(err));

        if (chat != NULL) {
            FUZZ_CHECK(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(
                                         chat, "messages")));
            signed_twice(chat);
            cJSON_Delete(chat);

        } else {
            FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL
                       && err[0] != '\0');
        }

        /* any JSON as a chat request, for the signatures */
        if (req != NULL) {
            chat = cJSON_Duplicate(req, 1);
            FUZZ_CHECK(chat != NULL);
            signed_twice(chat);
            cJSON_Delete(chat);
        }

        cJSON_Delete(req);
        break;
    }

    return 0;
}
