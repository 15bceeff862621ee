/*
 * The usage event (aihub_protocol.h): parsing and validation.  Pure: takes
 * the JSON text and fills a struct, or names the first problem found.
 * Sizes match the usage_events columns so a valid event always fits.
 */

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "aihub_worker.h"
#include "aihub_period.h"
#include "event_read.h"


#define AW_MAX_SAFE_INT  9007199254740991LL     /* 2^53 - 1 */

/*
 * What one call may carry, so that sums stay far inside the schema's
 * signed 64-bit columns: 10^9 prompt and 10^9 completion tokens (no
 * model has such a context), a total of up to their sum (a node bills
 * prompt + completion when they pass the total reported: an event of
 * 10^9 of each was dead-lettered), and $1,000,000 (10^12 micro-dollars).  9.2 million calls at
 * these bounds still sum without overflow; anything larger is a broken
 * or hostile event and goes to the dead letters.
 */
#define AW_EV_MAX_TOKENS  1000000000LL
#define AW_EV_MAX_TOTAL   (2 * AW_EV_MAX_TOKENS)
#define AW_EV_MAX_MICROS  1000000000000LL


static int
aw_event_int(const aw_value_t *v, const char *name, long long min,
    long long max, long long *out, const char **reason)
{
    static char  msg[96];

    if (v->type == AW_V_NONE) {
        snprintf(msg, sizeof(msg), "missing member \"%s\"", name);
        *reason = msg;
        return -1;
    }

    if (v->type != AW_V_NUM || v->num != floor(v->num)
        || fabs(v->num) > (double) AW_MAX_SAFE_INT
        || v->num < (double) min || v->num > (double) max)
    {
        snprintf(msg, sizeof(msg), "member \"%s\" is not an integer in "
                 "range", name);
        *reason = msg;
        return -1;
    }

    *out = (long long) v->num;

    return 0;
}


static int
aw_event_str(const aw_value_t *v, const char *name, int may_be_empty,
    char *out, size_t size, const char **reason)
{
    size_t       n;
    static char  msg[96];

    if (v->type == AW_V_NONE) {
        snprintf(msg, sizeof(msg), "missing member \"%s\"", name);
        *reason = msg;
        return -1;
    }

    if (v->type != AW_V_STR) {
        snprintf(msg, sizeof(msg), "member \"%s\" is not a string", name);
        *reason = msg;
        return -1;
    }

    n = v->len;

    if (n >= size || (n == 0 && !may_be_empty)) {
        snprintf(msg, sizeof(msg), "member \"%s\" has a bad length", name);
        *reason = msg;
        return -1;
    }

    memcpy(out, v->str, n);
    out[n] = '\0';

    return 0;
}


static int
aw_event_bool(const aw_value_t *v, const char *name, int *out,
    const char **reason)
{
    static char  msg[96];

    if (v->type != AW_V_BOOL) {
        snprintf(msg, sizeof(msg), "member \"%s\" is %s", name,
                 v->type != AW_V_NONE ? "not a boolean" : "missing");
        *reason = msg;
        return -1;
    }

    *out = v->num != 0;

    return 0;
}


static int aw_event_check(const aw_value_t *m, aw_event_t *ev,
    const char **reason);


int
aw_event_parse(const char *json, size_t len, aw_event_t *ev,
    const char **reason)
{
    return aw_event_parse_with(json, len, 1, ev, reason);
}


int
aw_event_parse_with(const char *json, size_t len, int plain, aw_event_t *ev,
    const char **reason)
{
    int          rc;
    cJSON       *o;
    aw_value_t   m[AW_M_N];

    memset(ev, 0, sizeof(*ev));

    if (plain && aw_event_read_plain(json, len, m) == 0) {
        return aw_event_check(m, ev, reason);
    }

    o = aw_json_parse_strict(json, len, reason);

    if (o == NULL) {
        return -1;
    }

    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        *reason = "not a JSON object";
        return -1;
    }

    aw_event_read_cjson(o, m);
    rc = aw_event_check(m, ev, reason);    /* m points into the tree */
    cJSON_Delete(o);

    return rc;
}


/* the members read, validated into ev */

static int
aw_event_check(const aw_value_t *m, aw_event_t *ev, const char **reason)
{
    long long  v, status;
    size_t     i;

    if (aw_event_int(&m[AW_M_V], AIHUB_EV_V, 0, 1000, &v, reason) != 0) {
        return -1;
    }

    if (v != AIHUB_EVENT_VERSION) {
        *reason = "unsupported event version";
        return -1;
    }

    if (aw_event_str(&m[AW_M_ID], AIHUB_EV_ID, 0, ev->id, sizeof(ev->id),
                     reason)
        != 0)
    {
        return -1;
    }

    for (i = 0; ev->id[i]; i++) {
        if (!((ev->id[i] >= '0' && ev->id[i] <= '9')
              || (ev->id[i] >= 'a' && ev->id[i] <= 'f')))
        {
            break;
        }
    }

    if (i != AIHUB_EVENT_ID_LEN || ev->id[i] != '\0') {
        *reason = "member \"" AIHUB_EV_ID "\" is not 32 lowercase hex "
                  "characters";
        return -1;
    }

    /* 2000-01-01 .. 2200-01-01 in unix milliseconds */

    if (aw_event_int(&m[AW_M_TS], AIHUB_EV_TS, 946684800000LL,
                     7258118400000LL, &ev->ts_ms, reason) != 0
        || aw_event_str(&m[AW_M_NODE], AIHUB_EV_NODE, 1, ev->node,
                        sizeof(ev->node), reason) != 0
        || aw_event_int(&m[AW_M_ACCOUNT], AIHUB_EV_ACCOUNT, 1,
                        AW_MAX_SAFE_INT, &ev->account, reason) != 0
        || aw_event_str(&m[AW_M_KEY], AIHUB_EV_KEY, 0, ev->key,
                        sizeof(ev->key), reason) != 0
        || aw_event_str(&m[AW_M_PLAN], AIHUB_EV_PLAN, 1, ev->plan,
                        sizeof(ev->plan), reason) != 0
        || aw_event_str(&m[AW_M_MODEL], AIHUB_EV_MODEL, 1, ev->model,
                        sizeof(ev->model), reason) != 0
        || aw_event_str(&m[AW_M_PROVIDER], AIHUB_EV_PROVIDER, 1,
                        ev->provider, sizeof(ev->provider), reason) != 0
        || aw_event_int(&m[AW_M_PROMPT], AIHUB_EV_PROMPT_TOKENS, 0,
                        AW_EV_MAX_TOKENS, &ev->prompt_tokens, reason) != 0
        || aw_event_int(&m[AW_M_COMPLETION], AIHUB_EV_COMPLETION_TOKENS, 0,
                        AW_EV_MAX_TOKENS, &ev->completion_tokens, reason)
           != 0
        || aw_event_int(&m[AW_M_TOTAL], AIHUB_EV_TOTAL_TOKENS, 0,
                        AW_EV_MAX_TOTAL, &ev->total_tokens, reason) != 0
        || aw_event_int(&m[AW_M_COST], AIHUB_EV_COST_MICROS, 0,
                        AW_EV_MAX_MICROS, &ev->cost_micros, reason) != 0
        || aw_event_int(&m[AW_M_STATUS], AIHUB_EV_STATUS, 100, 599, &status,
                        reason) != 0
        || aw_event_bool(&m[AW_M_STREAMED], AIHUB_EV_STREAMED, &ev->streamed,
                         reason) != 0
        || aw_event_bool(&m[AW_M_ABORTED], AIHUB_EV_ABORTED, &ev->aborted,
                         reason) != 0
        || aw_event_bool(&m[AW_M_ESTIMATED], AIHUB_EV_ESTIMATED,
                         &ev->estimated, reason) != 0
        || aw_event_int(&m[AW_M_LATENCY], AIHUB_EV_LATENCY_MS, 0,
                        4294967295LL, &ev->latency_ms, reason) != 0)
    {
        return -1;
    }

    ev->status = (int) status;

    if (ev->total_tokens < ev->prompt_tokens + ev->completion_tokens) {
        *reason = AIHUB_EV_TOTAL_TOKENS " is less than prompt + completion";
        return -1;
    }

    return 0;
}


/*
 * "YYYY-MM-DD" (day only) or "YYYY-MM-DD HH:MM:SS.mmm", UTC, for DATE and
 * DATETIME(3), by the engine's calendar arithmetic (aihub_period.h): the
 * drain formats every event's time, and gmtime_r + strftime + snprintf
 * were a fifth of its CPU.  A year outside 0..9999 (no valid event has
 * one) by snprintf, as it is.
 */

static void
aw_time_format(long long ts_ms, int day_only, char *out, size_t size)
{
    char       s[32], *p;
    size_t     n;
    int64_t    y;
    unsigned   m, d, ms;
    long long  days;

    days = (ts_ms >= 0 ? ts_ms : ts_ms - 86399999) / 86400000;
    ms = (unsigned) (ts_ms - days * 86400000);
    aihub_civil_from_days(days, &y, &m, &d);

    if (y < 0 || y > 9999) {
        snprintf(out, size, "%lld-%02u-%02u", (long long) y, m, d);
        return;
    }

    p = aihub_period_digits(s, (unsigned) y, 4);
    *p++ = '-';
    p = aihub_period_digits(p, m, 2);
    *p++ = '-';
    p = aihub_period_digits(p, d, 2);

    if (!day_only) {
        *p++ = ' ';
        p = aihub_period_digits(p, ms / 3600000, 2);
        *p++ = ':';
        p = aihub_period_digits(p, ms / 60000 % 60, 2);
        *p++ = ':';
        p = aihub_period_digits(p, ms / 1000 % 60, 2);
        *p++ = '.';
        p = aihub_period_digits(p, ms % 1000, 3);
    }

    if (size > 0) {
        n = (size_t) (p - s) < size - 1 ? (size_t) (p - s) : size - 1;
        memcpy(out, s, n);
        out[n] = '\0';
    }
}


void
aw_ts_format(long long ts_ms, char *out, size_t size)
{
    aw_time_format(ts_ms, 0, out, size);
}


void
aw_day_format(long long ts_ms, char *out, size_t size)
{
    aw_time_format(ts_ms, 1, out, size);
}


char *
aw_sql_time(long long sec, char *buf)
{
    buf[0] = '\'';
    aw_time_format(sec * 1000, 0, buf + 1, AW_SQL_TIME_LEN - 2);
    strcat(buf, "'");

    return buf;
}


/*
 * The stream entries the drain asks Redis for per read (XREADGROUP and
 * XAUTOCLAIM COUNT), so that a round carries about batch events while
 * every entry read is collected in that round: batch over the events per
 * entry of the last read (entries carried events); before any read
 * (entries 0), batch / AIHUB_USAGE_EVENTS_MAX, room for entries of the
 * most events.  Between 1 and batch.
 */

long long
aw_usage_read_count(long long batch, size_t entries, size_t events)
{
    long long  count;

    if (entries == 0 || events < entries) {
        count = batch / AIHUB_USAGE_EVENTS_MAX;

    } else {
        count = (long long) ((unsigned long long) batch * entries / events);
    }

    return count < 1 ? 1 : count > batch ? batch : count;
}
