/*
 * Records read from Redis HASHes (see aihub_record.h).
 */

#include <string.h>

#include "aihub_protocol.h"
#include "aihub_record.h"


/* the known fields, in the order of the tables below */

enum {
    AIHUB_KR_ACCOUNT = 0,
    AIHUB_KR_PREFIX,
    AIHUB_KR_PLAN,
    AIHUB_KR_SCOPES,
    AIHUB_KR_STATUS,
    AIHUB_KR_EXPIRES,
    AIHUB_KR_ANCHOR,
    AIHUB_KR_RPM,
    AIHUB_KR_TPM,
    AIHUB_KR_INCLUDED,
    AIHUB_KR_OVERAGE,
    AIHUB_KR_SPEND_CAP,
    AIHUB_KR_MAX_TOKENS,
    AIHUB_KR_PRIORITY,
    AIHUB_KR_MODELS,
    AIHUB_REC_KEY_FIELDS
};


enum {
    AIHUB_MR_PROVIDER = 0,
    AIHUB_MR_UPSTREAM,
    AIHUB_MR_TIER,
    AIHUB_MR_KIND,
    AIHUB_MR_API,
    AIHUB_MR_FALLBACKS,
    AIHUB_MR_PRICE_IN,
    AIHUB_MR_PRICE_OUT,
    AIHUB_MR_CREATED,
    AIHUB_REC_MODEL_FIELDS
};


#define AIHUB_REC_DONE      -1     /* no more fields */
#define AIHUB_REC_REPEATED  -2     /* a known field given twice */

static int aihub_record_next(const aihub_rstr_t *elts, size_t n, size_t *i,
    const char *const *known, int nknown, unsigned char *seen,
    const aihub_rstr_t **v);
static int aihub_record_field(const aihub_rstr_t *f, const char *name);
static int aihub_record_has(const aihub_rstr_t *s, const char *word);
static uint64_t aihub_record_unsigned(const aihub_rstr_t *s);


int64_t
aihub_record_number(const unsigned char *s, size_t len)
{
    size_t   i;
    int64_t  n;

    if (s == NULL || len == 0) {
        return -1;
    }

    n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        if (n > (INT64_MAX - (s[i] - '0')) / 10) {
            return -1;
        }

        n = n * 10 + (s[i] - '0');
    }

    return n;
}


int
aihub_key_record_parse(aihub_key_record_t *rec, const aihub_rstr_t *elts,
    size_t n)
{
    int                  k;
    size_t               i;
    int64_t              num;
    unsigned char        seen[AIHUB_REC_KEY_FIELDS];
    const aihub_rstr_t  *v;

    static const char  *known[AIHUB_REC_KEY_FIELDS] = {
        [AIHUB_KR_ACCOUNT] = AIHUB_KF_ACCOUNT,
        [AIHUB_KR_PREFIX] = AIHUB_KF_PREFIX,
        [AIHUB_KR_PLAN] = AIHUB_KF_PLAN,
        [AIHUB_KR_SCOPES] = AIHUB_KF_SCOPES,
        [AIHUB_KR_STATUS] = AIHUB_KF_STATUS,
        [AIHUB_KR_EXPIRES] = AIHUB_KF_EXPIRES,
        [AIHUB_KR_ANCHOR] = AIHUB_KF_ANCHOR,
        [AIHUB_KR_RPM] = AIHUB_KF_RPM,
        [AIHUB_KR_TPM] = AIHUB_KF_TPM,
        [AIHUB_KR_INCLUDED] = AIHUB_KF_INCLUDED,
        [AIHUB_KR_OVERAGE] = AIHUB_KF_OVERAGE,
        [AIHUB_KR_SPEND_CAP] = AIHUB_KF_SPEND_CAP,
        [AIHUB_KR_MAX_TOKENS] = AIHUB_KF_MAX_TOKENS,
        [AIHUB_KR_PRIORITY] = AIHUB_KF_PRIORITY,
        [AIHUB_KR_MODELS] = AIHUB_KF_MODELS
    };

    memset(rec, 0, sizeof(aihub_key_record_t));
    memset(seen, 0, sizeof(seen));
    i = 0;

    while ((k = aihub_record_next(elts, n, &i, known, AIHUB_REC_KEY_FIELDS,
                                  seen, &v))
           >= 0)
    {
        switch (k) {

        case AIHUB_KR_ACCOUNT:
            num = aihub_record_number(v->data, v->len);
            if (num <= 0) {
                return -1;
            }

            rec->account_id = (uint64_t) num;
            break;

        case AIHUB_KR_PREFIX:
            if (v->len == 0 || v->len > AIHUB_KEY_PREFIX_LEN) {
                return -1;
            }

            rec->prefix = *v;
            break;

        case AIHUB_KR_PLAN:
            rec->plan = *v;
            break;

        case AIHUB_KR_SCOPES:
            rec->chat = aihub_record_has(v, "chat");
            rec->admin = aihub_record_has(v, "admin");
            break;

        case AIHUB_KR_STATUS:
            rec->active = (v->len == 6 && memcmp(v->data, "active", 6) == 0);
            break;

        case AIHUB_KR_EXPIRES:
            rec->expires = (int64_t) aihub_record_unsigned(v);
            break;

        case AIHUB_KR_ANCHOR:
            rec->anchor = (int64_t) aihub_record_unsigned(v);
            break;

        case AIHUB_KR_RPM:
            rec->rpm = aihub_record_unsigned(v);
            break;

        case AIHUB_KR_TPM:
            rec->tpm = aihub_record_unsigned(v);
            break;

        case AIHUB_KR_INCLUDED:
            rec->included = aihub_record_unsigned(v);
            break;

        case AIHUB_KR_OVERAGE:
            rec->overage = (aihub_record_unsigned(v) != 0);
            break;

        case AIHUB_KR_SPEND_CAP:
            rec->spend_cap = aihub_record_unsigned(v);
            break;

        case AIHUB_KR_MAX_TOKENS:
            rec->max_tokens = aihub_record_unsigned(v);
            break;

        case AIHUB_KR_PRIORITY:
            rec->priority = aihub_record_unsigned(v);
            break;

        default: /* AIHUB_KR_MODELS */
            rec->models = *v;
            break;
        }
    }

    if (k == AIHUB_REC_REPEATED || rec->account_id == 0 || rec->prefix.len == 0) {
        return -1;
    }

    return 0;
}


int
aihub_model_record_parse(aihub_model_record_t *m, const aihub_rstr_t *elts,
    size_t n)
{
    int                  k;
    size_t               i;
    unsigned char        seen[AIHUB_REC_MODEL_FIELDS];
    const aihub_rstr_t  *v;

    static const char  *known[AIHUB_REC_MODEL_FIELDS] = {
        [AIHUB_MR_PROVIDER] = AIHUB_MF_PROVIDER,
        [AIHUB_MR_UPSTREAM] = AIHUB_MF_UPSTREAM,
        [AIHUB_MR_TIER] = AIHUB_MF_TIER,
        [AIHUB_MR_KIND] = AIHUB_MF_KIND,
        [AIHUB_MR_API] = AIHUB_MF_API,
        [AIHUB_MR_FALLBACKS] = AIHUB_MF_FALLBACKS,
        [AIHUB_MR_PRICE_IN] = AIHUB_MF_PRICE_IN,
        [AIHUB_MR_PRICE_OUT] = AIHUB_MF_PRICE_OUT,
        [AIHUB_MR_CREATED] = AIHUB_MF_CREATED
    };

    memset(m, 0, sizeof(aihub_model_record_t));
    memset(seen, 0, sizeof(seen));
    i = 0;

    while ((k = aihub_record_next(elts, n, &i, known,
                                  AIHUB_REC_MODEL_FIELDS, seen, &v))
           >= 0)
    {
        switch (k) {

        case AIHUB_MR_PROVIDER:
            m->provider = *v;
            break;

        case AIHUB_MR_UPSTREAM:
            m->upstream = *v;
            break;

        case AIHUB_MR_TIER:
            m->tier = *v;
            break;

        case AIHUB_MR_KIND:
            m->kind = *v;
            break;

        case AIHUB_MR_API:
            m->api = *v;
            break;

        case AIHUB_MR_FALLBACKS:
            m->fallbacks = *v;
            break;

        case AIHUB_MR_PRICE_IN:
            m->price_in = aihub_record_unsigned(v);
            break;

        case AIHUB_MR_PRICE_OUT:
            m->price_out = aihub_record_unsigned(v);
            break;

        default: /* AIHUB_MR_CREATED */
            m->created = (int64_t) aihub_record_unsigned(v);
            break;
        }
    }

    return k == AIHUB_REC_REPEATED ? -1 : 0;
}


/*
 * The next known field from element *i on (pairs of field and value;
 * pairs that are not strings and unknown fields are passed over): its
 * index in known, its value in *v; AIHUB_REC_DONE at the end;
 * AIHUB_REC_REPEATED when a known field comes a second time.
 */

static int
aihub_record_next(const aihub_rstr_t *elts, size_t n, size_t *i,
    const char *const *known, int nknown, unsigned char *seen,
    const aihub_rstr_t **v)
{
    int                  k;
    const aihub_rstr_t  *f;

    for ( /* void */ ; *i + 1 < n; *i += 2) {
        f = &elts[*i];
        *v = &elts[*i + 1];

        if (f->data == NULL || (*v)->data == NULL) {
            continue;
        }

        for (k = 0; k < nknown; k++) {
            if (aihub_record_field(f, known[k])) {
                break;
            }
        }

        if (k == nknown) {
            continue;
        }

        *i += 2;

        return seen[k]++ ? AIHUB_REC_REPEATED : k;
    }

    return AIHUB_REC_DONE;
}


static int
aihub_record_field(const aihub_rstr_t *f, const char *name)
{
    size_t  len;

    len = strlen(name);

    return f->len == len && memcmp(f->data, name, len) == 0;
}


/* word anywhere in s, in any case of ASCII letters */

static int
aihub_record_has(const aihub_rstr_t *s, const char *word)
{
    size_t  i, j, len;
    int     a, b;

    len = strlen(word);

    for (i = 0; i + len <= s->len; i++) {

        for (j = 0; j < len; j++) {
            a = s->data[i + j];
            b = (unsigned char) word[j];
            a = (a >= 'A' && a <= 'Z') ? a + ('a' - 'A') : a;

            if (a != b) {
                break;
            }
        }

        if (j == len) {
            return 1;
        }
    }

    return 0;
}


static uint64_t
aihub_record_unsigned(const aihub_rstr_t *s)
{
    int64_t  n;

    n = aihub_record_number(s->data, s->len);

    return n < 0 ? 0 : (uint64_t) n;
}
