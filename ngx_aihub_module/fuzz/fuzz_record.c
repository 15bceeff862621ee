/*
 * The parsers of Redis replies (aihub_record.c): key records and catalog
 * entries.
 *
 * The input is the reply's elements: a byte 0xff is an element that is
 * not a string (nil, an integer, an array), any other byte b is a string
 * of the next b & 0x3f bytes.  Properties, for both records:
 *   - the parse agrees with a separate reading of the rules of
 *     aihub_record.h: numbers read with strtoll (digits only, no
 *     overflow), a repeated known field or a missing or bad required one
 *     refused, and every field's value;
 *   - the result does not depend on the order of the (field, value) pairs
 *     (reversed, and rotated by a fuzzer-chosen amount);
 *   - an unknown field added anywhere changes nothing;
 *   - numbers are in range (nothing negative, the account id above 0).
 */

#include <errno.h>
#include <string.h>

#include "aihub_protocol.h"
#include "aihub_record.h"
#include "fuzz.h"


#define MAX_ELTS  256


/* the digits of s as strtoll reads them, or -1 */

static int64_t
ref_number(const aihub_rstr_t *s)
{
    char       buf[64], *end;
    size_t     i;
    long long  n;

    if (s->data == NULL || s->len == 0 || s->len >= sizeof(buf)) {
        /* more than 63 digits overflow anyway, unless leading zeros */
        if (s->data == NULL || s->len == 0) {
            return -1;
        }

        for (i = 0; i < s->len && s->data[i] == '0'; i++) { /* void */ }

        if (s->len - i >= sizeof(buf)) {
            for (/* void */; i < s->len; i++) {
                if (s->data[i] < '0' || s->data[i] > '9') {
                    return -1;
                }
            }

            return -1;
        }

        return ref_number(&(aihub_rstr_t) { s->data + i, s->len - i });
    }

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < '0' || s->data[i] > '9') {
            return -1;
        }
    }

    memcpy(buf, s->data, s->len);
    buf[s->len] = '\0';

    errno = 0;
    n = strtoll(buf, &end, 10);

    if (errno == ERANGE || *end != '\0') {
        return -1;
    }

    return n;
}


static int
is(const aihub_rstr_t *f, const char *name)
{
    return f->data != NULL && f->len == strlen(name)
           && memcmp(f->data, name, f->len) == 0;
}


/* the value of the one (field, value) pair named name, or NULL */

static const aihub_rstr_t *
ref_find(const aihub_rstr_t *e, size_t n, const char *name, int *count)
{
    size_t               i;
    const aihub_rstr_t  *v;

    v = NULL;

    for (i = 0; i + 1 < n; i += 2) {
        if (e[i].data != NULL && e[i + 1].data != NULL && is(&e[i], name)) {
            v = &e[i + 1];
            (*count)++;
        }
    }

    return v;
}


static uint64_t
ref_unsigned(const aihub_rstr_t *v)
{
    int64_t  n;

    n = v ? ref_number(v) : -1;

    return n < 0 ? 0 : (uint64_t) n;
}


static int
ref_has(const aihub_rstr_t *v, const char *word)
{
    size_t  i, j, len;

    len = strlen(word);

    for (i = 0; v && i + len <= v->len; i++) {
        for (j = 0; j < len; j++) {
            if ((v->data[i + j] | 0x20) != word[j]
                || !((v->data[i + j] >= 'a' && v->data[i + j] <= 'z')
                     || (v->data[i + j] >= 'A' && v->data[i + j] <= 'Z')))
            {
                break;
            }
        }

        if (j == len) {
            return 1;
        }
    }

    return 0;
}


static int
same(aihub_rstr_t a, aihub_rstr_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len)
                                            == 0);
}


static int
same_key(const aihub_key_record_t *a, const aihub_key_record_t *b)
{
    return a->account_id == b->account_id && a->expires == b->expires
           && a->anchor == b->anchor && a->rpm == b->rpm
           && a->tpm == b->tpm && a->included == b->included
           && a->spend_cap == b->spend_cap && a->max_tokens == b->max_tokens
           && a->priority == b->priority
           && same(a->prefix, b->prefix) && same(a->plan, b->plan)
           && same(a->models, b->models) && a->active == b->active
           && a->overage == b->overage && a->chat == b->chat
           && a->admin == b->admin;
}


static int
same_model(const aihub_model_record_t *a, const aihub_model_record_t *b)
{
    return same(a->provider, b->provider) && same(a->upstream, b->upstream)
           && same(a->tier, b->tier) && same(a->kind, b->kind)
           && same(a->api, b->api) && same(a->fallbacks, b->fallbacks)
           && a->price_in == b->price_in && a->price_out == b->price_out
           && a->created == b->created;
}


static void
check_key(const aihub_rstr_t *e, size_t n, int rc,
    const aihub_key_record_t *rec)
{
    int                  count, want;
    int64_t              account;
    const aihub_rstr_t  *v;
    static const char   *fields[] = {
        AIHUB_KF_ACCOUNT, AIHUB_KF_PREFIX, AIHUB_KF_PLAN, AIHUB_KF_SCOPES,
        AIHUB_KF_STATUS, AIHUB_KF_EXPIRES, AIHUB_KF_ANCHOR, AIHUB_KF_RPM,
        AIHUB_KF_TPM, AIHUB_KF_INCLUDED, AIHUB_KF_OVERAGE,
        AIHUB_KF_SPEND_CAP, AIHUB_KF_MAX_TOKENS, AIHUB_KF_PRIORITY,
        AIHUB_KF_MODELS, NULL
    };
    const char         **f;

    want = 0;

    for (f = fields; *f; f++) {
        count = 0;
        (void) ref_find(e, n, *f, &count);

        if (count > 1) {
            want = -1;
        }
    }

    count = 0;
    v = ref_find(e, n, AIHUB_KF_ACCOUNT, &count);
    account = v ? ref_number(v) : -1;

    if (account <= 0) {
        want = -1;
    }

    v = ref_find(e, n, AIHUB_KF_PREFIX, &count);

    if (v == NULL || v->len == 0 || v->len > AIHUB_KEY_PREFIX_LEN) {
        want = -1;
    }

    FUZZ_CHECK(rc == want);

    if (rc != 0) {
        return;
    }

    FUZZ_CHECK(rec->account_id == (uint64_t) account && account > 0);
    FUZZ_CHECK(same(rec->prefix, *v));

#define REF(name)  ref_find(e, n, name, &count)

    FUZZ_CHECK(rec->expires >= 0 && rec->anchor >= 0);
    FUZZ_CHECK((uint64_t) rec->expires == ref_unsigned(REF(AIHUB_KF_EXPIRES)));
    FUZZ_CHECK((uint64_t) rec->anchor == ref_unsigned(REF(AIHUB_KF_ANCHOR)));
    FUZZ_CHECK(rec->rpm == ref_unsigned(REF(AIHUB_KF_RPM)));
    FUZZ_CHECK(rec->tpm == ref_unsigned(REF(AIHUB_KF_TPM)));
    FUZZ_CHECK(rec->included == ref_unsigned(REF(AIHUB_KF_INCLUDED)));
    FUZZ_CHECK(rec->spend_cap == ref_unsigned(REF(AIHUB_KF_SPEND_CAP)));
    FUZZ_CHECK(rec->max_tokens == ref_unsigned(REF(AIHUB_KF_MAX_TOKENS)));
    FUZZ_CHECK(rec->priority == ref_unsigned(REF(AIHUB_KF_PRIORITY)));
    FUZZ_CHECK(rec->overage == (ref_unsigned(REF(AIHUB_KF_OVERAGE)) != 0));
    FUZZ_CHECK(rec->chat == ref_has(REF(AIHUB_KF_SCOPES), "chat"));
    FUZZ_CHECK(rec->admin == ref_has(REF(AIHUB_KF_SCOPES), "admin"));

    v = REF(AIHUB_KF_STATUS);
    FUZZ_CHECK(rec->active == (v != NULL && v->len == 6
                               && memcmp(v->data, "active", 6) == 0));

    v = REF(AIHUB_KF_PLAN);
    FUZZ_CHECK(v ? same(rec->plan, *v) : rec->plan.len == 0);
    v = REF(AIHUB_KF_MODELS);
    FUZZ_CHECK(v ? same(rec->models, *v) : rec->models.len == 0);
}


static void
check_model(const aihub_rstr_t *e, size_t n, int rc,
    const aihub_model_record_t *m)
{
    int                  count, want;
    const aihub_rstr_t  *v;
    static const char   *fields[] = {
        AIHUB_MF_PROVIDER, AIHUB_MF_UPSTREAM, AIHUB_MF_TIER, AIHUB_MF_KIND,
        AIHUB_MF_API, AIHUB_MF_FALLBACKS, AIHUB_MF_PRICE_IN,
        AIHUB_MF_PRICE_OUT, AIHUB_MF_CREATED, NULL
    };
    const char         **f;

    want = 0;

    for (f = fields; *f; f++) {
        count = 0;
        (void) ref_find(e, n, *f, &count);

        if (count > 1) {
            want = -1;
        }
    }

    FUZZ_CHECK(rc == want);

    if (rc != 0) {
        return;
    }

    FUZZ_CHECK(m->created >= 0);
    FUZZ_CHECK(m->price_in == ref_unsigned(REF(AIHUB_MF_PRICE_IN)));
    FUZZ_CHECK(m->price_out == ref_unsigned(REF(AIHUB_MF_PRICE_OUT)));
    FUZZ_CHECK((uint64_t) m->created == ref_unsigned(REF(AIHUB_MF_CREATED)));

    v = REF(AIHUB_MF_PROVIDER);
    FUZZ_CHECK(v ? same(m->provider, *v) : m->provider.len == 0);
    v = REF(AIHUB_MF_UPSTREAM);
    FUZZ_CHECK(v ? same(m->upstream, *v) : m->upstream.len == 0);
    v = REF(AIHUB_MF_TIER);
    FUZZ_CHECK(v ? same(m->tier, *v) : m->tier.len == 0);
    v = REF(AIHUB_MF_KIND);
    FUZZ_CHECK(v ? same(m->kind, *v) : m->kind.len == 0);
    v = REF(AIHUB_MF_API);
    FUZZ_CHECK(v ? same(m->api, *v) : m->api.len == 0);
    v = REF(AIHUB_MF_FALLBACKS);
    FUZZ_CHECK(v ? same(m->fallbacks, *v) : m->fallbacks.len == 0);

#undef REF
}


/* the pairs of e in another order (and a last odd element kept last) */

static void
reorder(aihub_rstr_t *out, const aihub_rstr_t *e, size_t n, size_t rot,
    int reverse)
{
    size_t  i, pairs, j;

    pairs = n / 2;

    for (i = 0; i < pairs; i++) {
        j = reverse ? pairs - 1 - i : (i + rot) % pairs;
        out[2 * i] = e[2 * j];
        out[2 * i + 1] = e[2 * j + 1];
    }

    if (n % 2) {
        out[n - 1] = e[n - 1];
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                   rc, rc2, v;
    size_t                n, len, rot, at, i;
    const uint8_t        *p, *last;
    aihub_rstr_t          e[MAX_ELTS], o[MAX_ELTS + 2];
    aihub_key_record_t    k, k2;
    aihub_model_record_t  m, m2;

    static const aihub_rstr_t  unknown[2] = {
        { (const unsigned char *) "no-such-field", 13 },
        { (const unsigned char *) "1", 1 }
    };

    if (size == 0) {
        return 0;
    }

    rot = data[0];
    p = data + 1;
    last = data + size;
    n = 0;

    while (p < last && n < MAX_ELTS) {
        if (*p == 0xff) {
            e[n].data = NULL;
            e[n].len = 0;
            p++;

        } else {
            len = *p++ & 0x3f;
            len = len < (size_t) (last - p) ? len : (size_t) (last - p);
            e[n].data = p;
            e[n].len = len;
            p += len;
        }

        n++;
    }

    rc = aihub_key_record_parse(&k, e, n);
    check_key(e, n, rc, &k);

    v = aihub_model_record_parse(&m, e, n);
    check_model(e, n, v, &m);

    if (n >= 2) {
        for (i = 0; i < 2; i++) {
            reorder(o, e, n, rot, (int) i);

            rc2 = aihub_key_record_parse(&k2, o, n);
            FUZZ_CHECK(rc2 == rc && (rc != 0 || same_key(&k, &k2)));

            rc2 = aihub_model_record_parse(&m2, o, n);
            FUZZ_CHECK(rc2 == v && (v != 0 || same_model(&m, &m2)));
        }
    }

    /* an unknown field, at a pair boundary chosen by the input */

    at = 2 * (rot % (n / 2 + 1));
    memcpy(o, e, at * sizeof(aihub_rstr_t));
    o[at] = unknown[0];
    o[at + 1] = unknown[1];
    memcpy(o + at + 2, e + at, (n - at) * sizeof(aihub_rstr_t));

    rc2 = aihub_key_record_parse(&k2, o, n + 2);
    FUZZ_CHECK(rc2 == rc && (rc != 0 || same_key(&k, &k2)));

    rc2 = aihub_model_record_parse(&m2, o, n + 2);
    FUZZ_CHECK(rc2 == v && (v != 0 || same_model(&m, &m2)));

    return 0;
}
