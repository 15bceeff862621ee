/*
 * aihub_sse: every recorded stream in streams/ (X.sse) is fed whole, split in
 * two at every byte, byte by byte and in random pieces, with and without
 * stripping.  The expected output (the stream itself, or streams/X.stripped)
 * and the expected usage (streams/X.expect) were written by an independent
 * oracle (Python's json module), not by this code.
 */

#define _DEFAULT_SOURCE

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aihub_sse.h"
#include "tap.h"


typedef struct {
    long      found, prompt, completion, total, has, bad, done, error;
    long      chars, stripped;
    char      msg[AIHUB_USAGE_MSG_LEN];
} expect_t;

typedef struct {
    const char     *name;
    unsigned char  *in;
    size_t          in_len;
    unsigned char  *stripped;
    size_t          stripped_len;
    expect_t        exp;
} stream_t;

/* one run's results */
typedef struct {
    unsigned char  *out;
    size_t          out_len;
    aihub_sse_t     sse;
    int             piece_mismatch;    /* strip off: a feed's out != in */
} run_t;


static const char  *stream_names[] = {
    "openai", "openrouter", "deepseek", "gemini", "nospace", "choices_null",
    "crlf", "cr", "error_mid", "error_only", "no_usage", "cut", "tricky",
    "tools",
    "bad_numbers", "responses", "responses_incomplete", "responses_failed",
    "bom"
};


static unsigned char *
read_file(const char *name, const char *ext, size_t *len)
{
    char            path[512];
    FILE           *f;
    long            n;
    unsigned char  *p;

    snprintf(path, sizeof(path), "%s/%s.%s", AIHUB_STREAMS, name, ext);

    f = fopen(path, "rb");
    if (f == NULL) {
        diag("cannot open %s", path);
        exit(2);
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);

    p = malloc(n + 1);
    if (p == NULL || fread(p, 1, n, f) != (size_t) n) {
        diag("cannot read %s", path);
        exit(2);
    }

    fclose(f);
    p[n] = '\0';
    *len = (size_t) n;

    return p;
}


static void
read_expect(const char *name, expect_t *e)
{
    unsigned char  *p;
    char           *line, *save, *eq;
    size_t          len;

    memset(e, 0, sizeof(expect_t));

    p = read_file(name, "expect", &len);

    for (line = strtok_r((char *) p, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
    {
        eq = strchr(line, '=');
        if (eq == NULL) {
            continue;
        }

        *eq++ = '\0';

#define EXP(f)  if (strcmp(line, #f) == 0) { e->f = atol(eq); continue; }
        EXP(found) EXP(prompt) EXP(completion) EXP(total) EXP(has) EXP(bad)
        EXP(done) EXP(error) EXP(chars) EXP(stripped)
#undef EXP

        if (strcmp(line, "msg") == 0) {
            snprintf(e->msg, sizeof(e->msg), "%s", eq);
        }
    }

    free(p);
}


/* feeds in pieces ending at cuts[0..ncuts), then the rest */

static void
run(stream_t *st, int strip, const size_t *cuts, size_t ncuts, run_t *r)
{
    static unsigned char  hold[AIHUB_SSE_HOLD_SIZE];
    unsigned char        *out;
    size_t                i, from, to, n, cap;

    aihub_sse_init(&r->sse, strip ? hold : NULL, sizeof(hold));

    r->out = malloc(st->in_len + 1);
    r->out_len = 0;
    r->piece_mismatch = 0;

    from = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : st->in_len;

        /* exactly the promised capacity, so ASan sees any overflow */
        cap = aihub_sse_out_size(&r->sse, to - from);
        out = malloc(cap ? cap : 1);

        n = aihub_sse_feed(&r->sse, st->in + from, to - from, out);

        if (n > cap || r->out_len + n > st->in_len) {
            diag("%s: feed wrote %zu bytes, capacity %zu", st->name, n, cap);
            exit(3);
        }

        if (!strip && (n != to - from || memcmp(out, st->in + from, n) != 0))
        {
            r->piece_mismatch = 1;
        }

        memcpy(r->out + r->out_len, out, n);
        r->out_len += n;
        free(out);

        from = to;
    }

    cap = aihub_sse_out_size(&r->sse, 0);
    out = malloc(cap ? cap : 1);
    n = aihub_sse_finish(&r->sse, out);

    if (n > cap || r->out_len + n > st->in_len) {
        diag("%s: finish wrote %zu bytes, capacity %zu", st->name, n, cap);
        exit(3);
    }

    memcpy(r->out + r->out_len, out, n);
    r->out_len += n;
    free(out);
}


/* "" if the run matches the expectations, else what differs */

static const char *
check(stream_t *st, int strip, run_t *r)
{
    static char     why[512];
    aihub_usage_t  *u;
    expect_t       *e;
    unsigned char  *want;
    size_t          want_len;
    long            has, bad;

    u = &r->sse.usage;
    e = &st->exp;

    want = strip ? st->stripped : st->in;
    want_len = strip ? st->stripped_len : st->in_len;

    if (r->out_len != want_len || memcmp(r->out, want, want_len) != 0) {
        snprintf(why, sizeof(why), "output differs (%zu bytes, want %zu)",
                 r->out_len, want_len);
        return why;
    }

    if (r->piece_mismatch) {
        return "a feed's output differs from its input";
    }

    has = u->has_prompt | u->has_completion << 1 | u->has_total << 2;
    bad = u->bad_prompt | u->bad_completion << 1 | u->bad_total << 2;

    if (u->found != e->found
        || (e->found
            && (u->prompt != e->prompt || u->completion != e->completion
                || u->total != e->total || has != e->has || bad != e->bad
                || u->clamped != (e->bad != 0))))
    {
        snprintf(why, sizeof(why),
                 "usage found=%u %lld/%lld/%lld has=%ld bad=%ld, want "
                 "found=%ld %ld/%ld/%ld has=%ld bad=%ld",
                 u->found, (long long) u->prompt, (long long) u->completion,
                 (long long) u->total, has, bad, e->found, e->prompt,
                 e->completion, e->total, e->has, e->bad);
        return why;
    }

    if (u->done != e->done || u->error != e->error) {
        snprintf(why, sizeof(why), "done=%u error=%u, want %ld %ld",
                 u->done, u->error, e->done, e->error);
        return why;
    }

    if (e->error && strcmp(u->error_msg, e->msg) != 0) {
        snprintf(why, sizeof(why), "error message \"%s\", want \"%s\"",
                 u->error_msg, e->msg);
        return why;
    }

    if ((long) u->delivered_chars != e->chars) {
        snprintf(why, sizeof(why), "delivered_chars %llu, want %ld",
                 (unsigned long long) u->delivered_chars, e->chars);
        return why;
    }

    if ((long) r->sse.stripped != (strip ? e->stripped : 0)) {
        snprintf(why, sizeof(why), "stripped %llu events, want %ld",
                 (unsigned long long) r->sse.stripped,
                 strip ? e->stripped : 0);
        return why;
    }

    if (u->invalid || u->overlong) {
        return "invalid or overlong flagged";
    }

    return "";
}


static void
test_stream(stream_t *st, int strip)
{
    const char  *mode, *why, *first;
    size_t       i, k, ncuts, *cuts;
    uint32_t     rnd;
    run_t        r;
    long         fails;

    mode = strip ? "strip" : "pass";

    /* whole */

    run(st, strip, NULL, 0, &r);
    why = check(st, strip, &r);
    ok(*why == '\0', "%s %s: whole %s", st->name, mode, why);
    free(r.out);

    /* two pieces, split at every byte */

    fails = 0;
    first = "";

    for (i = 0; i <= st->in_len; i++) {
        run(st, strip, &i, 1, &r);
        why = check(st, strip, &r);

        if (*why && fails++ == 0) {
            diag("%s %s: split at %zu: %s", st->name, mode, i, why);
            first = "failed";
        }

        free(r.out);
    }

    ok(fails == 0, "%s %s: every split point (%zu) %s", st->name, mode,
       st->in_len + 1, first);

    /* byte by byte */

    cuts = malloc((st->in_len + 1) * sizeof(size_t));

    for (i = 0; i < st->in_len; i++) {
        cuts[i] = i + 1;
    }

    run(st, strip, cuts, st->in_len, &r);
    why = check(st, strip, &r);
    ok(*why == '\0', "%s %s: byte by byte %s", st->name, mode, why);
    free(r.out);

    /* random pieces */

    fails = 0;
    rnd = 12345;

    for (k = 0; k < 200; k++) {
        ncuts = 0;

        for (i = 1; i < st->in_len; i++) {
            rnd = rnd * 1103515245 + 12345;

            if ((rnd >> 16) % 23 == 0) {
                cuts[ncuts++] = i;
            }
        }

        run(st, strip, cuts, ncuts, &r);
        why = check(st, strip, &r);

        if (*why && fails++ == 0) {
            diag("%s %s: random pieces #%zu: %s", st->name, mode, k, why);
        }

        free(r.out);
    }

    ok(fails == 0, "%s %s: 200 random partitions", st->name, mode);

    free(cuts);
}


static size_t
feed_str(aihub_sse_t *s, const char *str, unsigned char *out)
{
    return aihub_sse_feed(s, (const unsigned char *) str, strlen(str), out);
}


static void
test_latency(void)
{
    static unsigned char  hold[AIHUB_SSE_HOLD_SIZE];
    unsigned char         out[4096];
    aihub_sse_t           s;
    const char           *head, *content;
    size_t                n;

    /* strip off: each feed's output is its input, nothing held */

    aihub_sse_init(&s, NULL, 0);
    n = feed_str(&s, "data: {\"choices\":[],\"us", NULL);
    ok(n == 23 && s.held == 0, "pass: a partial usage chunk is not held");

    /* strip on: a content chunk is released once choices is non-empty */

    aihub_sse_init(&s, hold, sizeof(hold));
    head = "data: {\"id\":\"a\",\"choices\":[";
    n = feed_str(&s, head, out);
    ok(n == 0 && s.held == strlen(head),
       "strip: held while it could be a usage chunk");

    content = "{\"delta\":{\"content\":\"hi\"}}]}\n";
    n = feed_str(&s, content, out);
    ok(n == strlen(head) + strlen(content)
       && memcmp(out, head, strlen(head)) == 0
       && memcmp(out + strlen(head), content, strlen(content)) == 0
       && s.held == 0,
       "strip: released at the first choice, before the event ends");

    n = feed_str(&s, "\n", out);
    ok(n == 1 && out[0] == '\n', "strip: the rest passes straight through");

    /* a comment event: released at its blank line */

    n = feed_str(&s, ": OPENROUTER PROCESSING\n", out);
    ok(n == 0, "strip: a comment line is held until its event ends");
    n = feed_str(&s, "\n", out);
    ok(n == 25 && memcmp(out, ": OPENROUTER PROCESSING\n\n", 25) == 0,
       "strip: ... and released by its blank line");

    /* usage null with no choices: not a usage chunk, kept */

    n = feed_str(&s, "data: {\"choices\":[],\"usage\":null}\n", out);
    ok(n == 0, "strip: empty choices held");
    n = feed_str(&s, "\n", out);
    ok(n == 35 && memcmp(out, "data: {\"choices\":[],\"usage\":null}\n\n", 35)
       == 0, "strip: usage null is not stripped");

    /* [DONE] is released at once */

    n = feed_str(&s, "data: [", out);
    ok(n == 7, "strip: [DONE] released before its line ends");

    /* the usage chunk is dropped with its blank line */

    aihub_sse_init(&s, hold, sizeof(hold));
    n = feed_str(&s, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,"
                 "\"completion_tokens\":2,\"total_tokens\":3}}\n", out);
    ok(n == 0, "strip: the usage chunk is held to its end");
    n = feed_str(&s, "\ndata: [DONE]\n\n", out);
    ok(n == 14 && memcmp(out, "data: [DONE]\n\n", 14) == 0
       && s.usage.found && s.usage.total == 3 && s.stripped == 1
       && s.usage.done,
       "strip: the usage chunk and its blank line are removed");

    /* a later usage object with fewer figures keeps the others */

    aihub_sse_init(&s, NULL, 0);
    (void) feed_str(&s, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\""
                    ":100,\"completion_tokens\":50,\"total_tokens\":150}}"
                    "\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\""
                    ":101}}\n\ndata: {\"choices\":[],\"usage\":{}}\n\n",
                    NULL);
    ok(s.usage.found && s.usage.prompt == 101 && s.usage.has_completion
       && s.usage.completion == 50 && s.usage.total == 150,
       "running usage: a figure left out is kept, one given replaces "
       "(prompt %lld, completion %lld, total %lld)",
       (long long) s.usage.prompt, (long long) s.usage.completion,
       (long long) s.usage.total);
}


static void
test_overlong(void)
{
    static unsigned char  small[64], medium[4096];
    unsigned char        *out;
    stream_t              st;
    aihub_sse_t           s;
    size_t                len, n, i, o, content;
    char                 *big;

    /* a hold buffer too small: nothing is stripped, usage still read */

    st.in = read_file("openai", "sse", &st.in_len);

    out = malloc(st.in_len);
    aihub_sse_init(&s, small, sizeof(small));
    o = 0;

    for (i = 0; i < st.in_len; i += 7) {
        n = (st.in_len - i < 7) ? st.in_len - i : 7;
        o += aihub_sse_feed(&s, st.in + i, n, out + o);
    }

    o += aihub_sse_finish(&s, out + o);

    ok(o == st.in_len && memcmp(out, st.in, o) == 0 && s.usage.overlong
       && s.usage.found && s.usage.total == 29 && s.stripped == 0,
       "overlong: events beyond the hold buffer pass, usage still read");

    free(out);
    free(st.in);

    /*
     * found by fuzz_sse: an event decided (here: not JSON) before the hold
     * filled was overlong when fed byte by byte but not in one piece
     */

    {
        static const char  ev[] = "data: {x, this is not JSON at all}\n\n";
        unsigned char      o1[64], o2[64], tiny[16];
        aihub_sse_t        s2;

        aihub_sse_init(&s, tiny, sizeof(tiny));
        o = aihub_sse_feed(&s, (const unsigned char *) ev, sizeof(ev) - 1,
                           o1);
        o += aihub_sse_finish(&s, o1 + o);

        aihub_sse_init(&s2, tiny, sizeof(tiny));
        n = 0;

        for (i = 0; i < sizeof(ev) - 1; i++) {
            n += aihub_sse_feed(&s2, (const unsigned char *) ev + i, 1,
                                o2 + n);
        }

        n += aihub_sse_finish(&s2, o2 + n);

        ok(o == sizeof(ev) - 1 && n == o && memcmp(o1, o2, o) == 0
           && s.usage.overlong && s2.usage.overlong
           && s.usage.invalid && s2.usage.invalid,
           "overlong: the same however the stream is cut");
    }

    /* a 1 MB content line is parsed with no line buffer */

    len = 1 << 20;
    big = malloc(len + 200);
    n = (size_t) sprintf(big, "data: {\"choices\":[{\"delta\":{\"content\":\"");
    memset(big + n, 'x', len);
    n += len;
    n += (size_t) sprintf(big + n, "\"}}]}\n\n");
    content = n;
    n += (size_t) sprintf(big + n, "data: {\"choices\":[],\"usage\":"
                          "{\"prompt_tokens\":5,\"completion_tokens\":262144,"
                          "\"total_tokens\":262149}}\n\n");

    aihub_sse_init(&s, NULL, 0);
    o = aihub_sse_feed(&s, (unsigned char *) big, n, NULL);
    o += aihub_sse_finish(&s, NULL);

    ok(o == n && s.usage.delivered_chars == len && s.usage.found
       && s.usage.completion == 262144,
       "a 1 MB data line is parsed and counted");

    out = malloc(n);
    aihub_sse_init(&s, medium, sizeof(medium));
    o = aihub_sse_feed(&s, (unsigned char *) big, n, out);
    o += aihub_sse_finish(&s, out + o);

    ok(o == content && memcmp(out, big, o) == 0 && s.stripped == 1
       && s.usage.overlong && s.usage.total == 262149,
       "strip: a long content event passes, the usage chunk is removed");

    free(out);
    free(big);
}


static void
test_finish(void)
{
    static unsigned char  hold[AIHUB_SSE_HOLD_SIZE];
    unsigned char         out[256];
    aihub_sse_t           s;
    size_t                n;
    const char           *err;

    aihub_sse_init(&s, NULL, 0);
    n = feed_str(&s, "data: [DONE]", NULL);
    ok(n == 12 && !s.usage.done, "[DONE] without a line end: not yet");
    aihub_sse_finish(&s, NULL);
    ok(s.usage.done, "[DONE] without a line end: done at finish");

    aihub_sse_init(&s, NULL, 0);
    feed_str(&s, "data: [DONE]x\n\ndata: [DONE\n\n", NULL);
    ok(!s.usage.done, "[DONE]x and [DONE are not done");

    /* a usage chunk cut before its blank line: taken, and stripped */

    aihub_sse_init(&s, hold, sizeof(hold));
    n = feed_str(&s, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
                 "\"completion_tokens\":5,\"total_tokens\":9}}", out);
    n += aihub_sse_finish(&s, out + n);
    ok(n == 0 && s.usage.found && s.usage.total == 9,
       "finish: a complete usage chunk without blank line counts");

    /* a held partial event is released by finish, or dropped with NULL */

    aihub_sse_init(&s, hold, sizeof(hold));
    n = feed_str(&s, "data: {\"choices\":[],\"usage\":{\"prompt", out);
    ok(n == 0, "finish: partial usage chunk held");
    n = aihub_sse_finish(&s, out);
    ok(n == 36 && memcmp(out, "data: {\"choices\":[],\"usage\":{\"prompt", 36)
       == 0 && !s.usage.found,
       "finish: a cut usage chunk is released and not counted");

    aihub_sse_init(&s, hold, sizeof(hold));
    feed_str(&s, "data: {\"choices\":[],", out);
    n = aihub_sse_finish(&s, NULL);
    ok(n == 0 && s.held == 0, "finish(NULL) discards what is held");

    /* an error after usage does not strip; invalid JSON flagged */

    aihub_sse_init(&s, hold, sizeof(hold));
    n = feed_str(&s, "data: {\"usage\":{\"total_tokens\":1},\"error\":null}"
                 "\n\n", out);
    ok(n == 0 && s.stripped == 1 && !s.usage.error && s.usage.total == 1,
       "\"error\": null is no error, the chunk is stripped");

    err = "data: {\"usage\":{\"total_tokens\":2},\"error\":{}}\n\n";
    n = feed_str(&s, err, out);
    ok(n == strlen(err) && memcmp(out, err, n) == 0 && s.stripped == 1
       && s.usage.error && s.usage.total == 2,
       "a chunk with an error is kept");

    err = "data: {\"usage\":{\"total_tokens\":3}]\n\n";
    n = feed_str(&s, err, out);
    ok(n == strlen(err) && s.usage.invalid && s.usage.total == 2,
       "broken JSON is flagged, kept, and its usage ignored");
}


/*
 * A byte order mark at the stream's start passes and is not read (the
 * recorded stream "bom" has one); a part of one begins the first field's
 * name, which is then not "data"; one later in the stream is text.
 */

static void
test_bom(void)
{
    static unsigned char  hold[AIHUB_SSE_HOLD_SIZE];
    unsigned char         out[256];
    aihub_sse_t           s;
    size_t                n, i;
    const char           *in;

    static const char  usage[] = "data: {\"choices\":[],\"usage\":{"
                                 "\"prompt_tokens\":3,\"total_tokens\":4}}"
                                 "\n\n";

    /* stripping, a byte at a time: the mark passes, the chunk goes */

    aihub_sse_init(&s, hold, sizeof(hold));
    n = 0;
    in = "\xef\xbb\xbf" "data: {\"choices\":[],\"usage\":{"
         "\"prompt_tokens\":3,\"total_tokens\":4}}\n\n";

    for (i = 0; in[i]; i++) {
        n += aihub_sse_feed(&s, (const unsigned char *) in + i, 1, out + n);
    }

    ok(n == 3 && memcmp(out, "\xef\xbb\xbf", 3) == 0 && s.stripped == 1
       && s.usage.found && s.usage.prompt == 3 && s.usage.total == 4,
       "a byte order mark: not read, passed; the usage chunk after it "
       "read and stripped");

    aihub_sse_init(&s, NULL, 0);
    feed_str(&s, "\xef\xbb", NULL);
    feed_str(&s, usage, NULL);
    ok(!s.usage.found, "a part of a mark begins the field name: not data");

    aihub_sse_init(&s, NULL, 0);
    feed_str(&s, "\xef\xbb\xbf\xef\xbb\xbf", NULL);
    feed_str(&s, usage, NULL);
    ok(!s.usage.found, "a second mark is the field name's");

    aihub_sse_init(&s, NULL, 0);
    feed_str(&s, "\xef\xbb\n", NULL);
    feed_str(&s, usage, NULL);
    ok(s.usage.found && s.usage.total == 4,
       "a line of a part of a mark is no data; the event after it is");
}


/*
 * Random streams built from SSE and JSON fragments: fed whole and in random
 * pieces, the results must agree; without a stripped event the output is
 * the input; with stripping the output is the input minus whole events.
 */

static void
test_random(void)
{
    static const char  *frags[] = {
        "data: ", "data:", "{", "}", "[", "]", "\"", ":", ",", "\n", "\r",
        "\r\n", "\n\n", "\"usage\"", "\"choices\"", "\"error\"",
        "\"prompt_tokens\"", "\"total_tokens\"", "\"content\"",
        "\"delta\"", "null", "true", "12", "-3", "1e3", "[DONE]", ": x",
        "event: e", "\\", "\\u00e9", " ", "\xc3\xa9", "{\"choices\":[],"
        "\"usage\":{\"prompt_tokens\":1,\"total_tokens\":2}}\n\n",
        "{\"choices\":[{\"delta\":{\"content\":\"ab\"}}]}\n\n"
    };

    static unsigned char  hold1[256], hold2[256];
    unsigned char         in[2048], out1[2048], out2[2048];
    aihub_sse_t           a, b;
    size_t                len, n1, n2, i, from, to, f;
    uint32_t              rnd;
    int                   k, strip, bad_split, bad_pass, bad_sub;

    rnd = 987654321;
    bad_split = 0;
    bad_pass = 0;
    bad_sub = 0;

    for (k = 0; k < 20000; k++) {
        strip = k & 1;
        len = 0;

        for ( ;; ) {
            rnd = rnd * 1103515245 + 12345;
            f = (rnd >> 8) % (sizeof(frags) / sizeof(frags[0]));

            if (len + strlen(frags[f]) > 400 || (rnd >> 24) % 40 == 0) {
                break;
            }

            memcpy(in + len, frags[f], strlen(frags[f]));
            len += strlen(frags[f]);
        }

        aihub_sse_init(&a, strip ? hold1 : NULL, sizeof(hold1));
        n1 = aihub_sse_feed(&a, in, len, out1);
        n1 += aihub_sse_finish(&a, out1 + n1);

        aihub_sse_init(&b, strip ? hold2 : NULL, sizeof(hold2));
        n2 = 0;

        for (from = 0; from < len; from = to) {
            rnd = rnd * 1103515245 + 12345;
            to = from + 1 + (rnd >> 16) % 9;
            to = to > len ? len : to;
            n2 += aihub_sse_feed(&b, in + from, to - from, out2 + n2);
        }

        n2 += aihub_sse_finish(&b, out2 + n2);

        if (n1 != n2 || memcmp(out1, out2, n1) != 0
            || a.usage.found != b.usage.found || a.usage.total != b.usage.total
            || a.usage.prompt != b.usage.prompt || a.usage.done != b.usage.done
            || a.usage.error != b.usage.error || a.stripped != b.stripped
            || a.usage.delivered_chars != b.usage.delivered_chars)
        {
            if (bad_split++ == 0) {
                diag("random #%d: whole and pieces differ", k);
            }
        }

        if (a.stripped == 0 && (n1 != len || memcmp(out1, in, len) != 0)) {
            if (bad_pass++ == 0) {
                diag("random #%d: output differs with nothing stripped", k);
            }
        }

        /* the output is the input with some byte ranges removed */

        for (i = 0, f = 0; i < n1 && f < len; f++) {
            if (out1[i] == in[f]) {
                i++;
            }
        }

        if (i != n1) {
            if (bad_sub++ == 0) {
                diag("random #%d: output is not a subsequence of input", k);
            }
        }
    }

    ok(bad_split == 0, "20000 random streams: pieces agree with whole");
    ok(bad_pass == 0, "random streams: nothing stripped, output == input");
    ok(bad_sub == 0, "random streams: output is a subsequence of input");
}


int
main(void)
{
    stream_t  st;
    size_t    i;

    for (i = 0; i < sizeof(stream_names) / sizeof(stream_names[0]); i++) {
        st.name = stream_names[i];
        st.in = read_file(st.name, "sse", &st.in_len);
        st.stripped = read_file(st.name, "stripped", &st.stripped_len);
        read_expect(st.name, &st.exp);

        test_stream(&st, 0);
        test_stream(&st, 1);

        free(st.in);
        free(st.stripped);
    }

    test_latency();
    test_overlong();
    test_finish();
    test_bom();
    test_random();

    return tap_done();
}
