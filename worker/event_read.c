/*
 * An event's members read from its JSON text (event_read.h).  The drain
 * reads every event: through cJSON (a tree of nodes allocated and freed
 * for each, a number by strtod, three literal compares before each value)
 * that was about two fifths of the worker's CPU in perf, and read here the
 * drain test's worker took 2.2-2.5 us an event instead of 3.4.  Events as
 * the module writes them are read here directly; anything else (white
 * space, an escape, a fraction...) still goes through cJSON, so what an
 * event means does not depend on the reader (the unit test compares them
 * on mutated events).
 */

#include <string.h>

#include "aihub_worker.h"
#include "event_read.h"


const char  *aw_event_names[AW_M_N] = {
    AIHUB_EV_V, AIHUB_EV_ID, AIHUB_EV_TS, AIHUB_EV_NODE, AIHUB_EV_ACCOUNT,
    AIHUB_EV_KEY, AIHUB_EV_PLAN, AIHUB_EV_MODEL, AIHUB_EV_PROVIDER,
    AIHUB_EV_PROMPT_TOKENS, AIHUB_EV_COMPLETION_TOKENS, AIHUB_EV_TOTAL_TOKENS,
    AIHUB_EV_COST_MICROS, AIHUB_EV_STATUS, AIHUB_EV_STREAMED,
    AIHUB_EV_ABORTED, AIHUB_EV_ESTIMATED, AIHUB_EV_LATENCY_MS
};


/* the known member of that name, or -1 */

static int
aw_event_member(const char *name, size_t len)
{
    int  k;

    for (k = 0; k < AW_M_N; k++) {
        if (name[0] == aw_event_names[k][0]
            && strncmp(name, aw_event_names[k], len) == 0
            && aw_event_names[k][len] == '\0')
        {
            return k;
        }
    }

    return -1;
}


/* the end of a string's text at p (after its opening quote), or NULL */

static const char *
aw_plain_string(const char *p, const char *end)
{
    for ( /* void */ ; p < end; p++) {
        if (*p == '"') {
            return p;
        }

        if (*p == '\\' || (unsigned char) *p < 0x20) {
            return NULL;
        }
    }

    return NULL;
}


int
aw_event_read_plain(const char *json, size_t len, aw_value_t *m)
{
    int          k, digits;
    double       n;
    aw_value_t   v;
    const char  *p, *end, *name, *e;

    memset(m, 0, AW_M_N * sizeof(aw_value_t));

    p = json;
    end = json + len;

    if (p == end || *p++ != '{') {
        return -1;
    }

    if (p < end && *p == '}') {
        return p + 1 == end ? 0 : -1;
    }

    for ( ;; ) {
        if (p == end || *p++ != '"') {
            return -1;
        }

        name = p;
        e = aw_plain_string(p, end);

        if (e == NULL || e == name || e + 1 == end || e[1] != ':') {
            return -1;
        }

        k = aw_event_member(name, (size_t) (e - name));
        p = e + 2;

        if (p == end) {
            return -1;
        }

        memset(&v, 0, sizeof(v));

        if (*p == '"') {
            e = aw_plain_string(p + 1, end);

            if (e == NULL) {
                return -1;
            }

            v.type = AW_V_STR;
            v.str = p + 1;
            v.len = (size_t) (e - p - 1);
            p = e + 1;

        } else if (*p >= '0' && *p <= '9') {
            /* 15 digits at most: exact as a double, as cJSON reads them */
            n = 0;

            for (digits = 0; p < end && *p >= '0' && *p <= '9'; p++) {
                if (++digits > 15 || (digits == 2 && n == 0)) {
                    return -1;      /* too long, or a leading zero */
                }

                n = n * 10 + (*p - '0');
            }

            v.type = AW_V_NUM;
            v.num = n;

        } else if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
            v.type = AW_V_BOOL;
            v.num = 1;
            p += 4;

        } else if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
            v.type = AW_V_BOOL;
            p += 5;

        } else {
            return -1;
        }

        if (k >= 0 && m[k].type == AW_V_NONE) {
            m[k] = v;
        }

        if (p == end) {
            return -1;
        }

        if (*p == '}') {
            return p + 1 == end ? 0 : -1;
        }

        if (*p++ != ',') {
            return -1;
        }
    }
}


void
aw_event_read_cjson(const cJSON *o, aw_value_t *m)
{
    int           k;
    aw_value_t    v;
    const cJSON  *c;

    memset(m, 0, AW_M_N * sizeof(aw_value_t));

    for (c = o->child; c != NULL; c = c->next) {
        if (c->string == NULL) {
            continue;
        }

        k = aw_event_member(c->string, strlen(c->string));

        if (k < 0 || m[k].type != AW_V_NONE) {
            continue;
        }

        memset(&v, 0, sizeof(v));

        if (cJSON_IsNumber(c)) {
            v.type = AW_V_NUM;
            v.num = c->valuedouble;

        } else if (cJSON_IsString(c) && c->valuestring != NULL) {
            v.type = AW_V_STR;
            v.str = c->valuestring;
            v.len = strlen(c->valuestring);

        } else if (cJSON_IsBool(c)) {
            v.type = AW_V_BOOL;
            v.num = cJSON_IsTrue(c) ? 1 : 0;

        } else {
            v.type = AW_V_OTHER;
        }

        m[k] = v;
    }
}


/*
 * What cJSON lets through and an event must not hold, for the text that
 * goes to cJSON: a control byte (cJSON skips any byte up to a space as
 * white space, and keeps one inside a string, where RFC 8259 wants it
 * escaped), an escaped NUL (a C string cannot keep it: the member would
 * be stored cut at it) and anything after the object (cJSON stops at its
 * end: a line of two events run together would store the first and drop
 * the second).  This checks the first two (NULL: neither; else the
 * reason), aw_json_parse_strict the third.
 */

static const char *
aw_event_text_check(const char *json, size_t len)
{
    int          in;
    const char  *p, *end;

    in = 0;
    end = json + len;

    for (p = json; p < end; p++) {

        if ((unsigned char) *p < 0x20
            && (in || (*p != '\t' && *p != '\n' && *p != '\r')))
        {
            return "not valid JSON (a control character)";
        }

        if (*p == '"') {
            in = !in;

        } else if (in && *p == '\\') {
            if (end - p >= 6 && memcmp(p + 1, "u0000", 5) == 0) {
                return "a string holds \\u0000 (NUL)";
            }

            p++;        /* the escaped character: not a closing quote */
        }
    }

    return NULL;
}


cJSON *
aw_json_parse_strict(const char *json, size_t len, const char **reason)
{
    cJSON       *o;
    const char  *rest;

    *reason = aw_event_text_check(json, len);

    if (*reason != NULL) {
        return NULL;
    }

    o = cJSON_ParseWithLengthOpts(json, len, &rest, 0);

    if (o == NULL) {
        *reason = "not valid JSON";
        return NULL;
    }

    while (rest < json + len
           && (*rest == ' ' || *rest == '\t' || *rest == '\n'
               || *rest == '\r'))
    {
        rest++;
    }

    if (rest != json + len) {
        cJSON_Delete(o);
        *reason = "not valid JSON (text after the object)";
        return NULL;
    }

    return o;
}
