/*
 * The worker's two readers of a usage event (worker/event.c and
 * worker/event_read.c), on the same bytes as a stream entry holds them.
 *
 * The input is the entry's text, any bytes, NUL included.  Properties:
 *   - the direct reader and cJSON give the same verdict, the same reason
 *     for a refusal and the same event, field by field;
 *   - a text the direct reader takes has each member's string inside the
 *     input, free of escapes and control bytes, and each of its numbers
 *     at most 15 digits: the form the module writes, nothing more;
 *   - an event either reader accepts holds what the ledger relies on
 *     (README, "The usage event"): an id of 32 lowercase hex digits,
 *     NUL-terminated strings that fit their columns, a time in
 *     2000..2200, counts that are not negative, total_tokens at least
 *     prompt + completion, an HTTP status.
 */

#include <string.h>

#include "aihub_worker.h"
#include "event_read.h"
#include "fuzz.h"


static void
check_plain(const uint8_t *data, size_t size, const aw_value_t *m)
{
    int          k;
    size_t       i;
    const char  *in = (const char *) data;

    for (k = 0; k < AW_M_N; k++) {

        if (m[k].type != AW_V_STR) {
            continue;
        }

        FUZZ_CHECK(m[k].str >= in && m[k].str + m[k].len <= in + size);

        for (i = 0; i < m[k].len; i++) {
            FUZZ_CHECK(m[k].str[i] != '\\');
            FUZZ_CHECK((unsigned char) m[k].str[i] >= 0x20);
        }
    }
}


static void
check_event(const aw_event_t *ev)
{
    size_t  i;

    FUZZ_CHECK(strlen(ev->id) == AIHUB_EVENT_ID_LEN);

    for (i = 0; i < AIHUB_EVENT_ID_LEN; i++) {
        FUZZ_CHECK((ev->id[i] >= '0' && ev->id[i] <= '9')
                   || (ev->id[i] >= 'a' && ev->id[i] <= 'f'));
    }

    FUZZ_CHECK(memchr(ev->node, '\0', sizeof(ev->node)) != NULL);
    FUZZ_CHECK(memchr(ev->key, '\0', sizeof(ev->key)) != NULL);
    FUZZ_CHECK(memchr(ev->plan, '\0', sizeof(ev->plan)) != NULL);
    FUZZ_CHECK(memchr(ev->model, '\0', sizeof(ev->model)) != NULL);
    FUZZ_CHECK(memchr(ev->provider, '\0', sizeof(ev->provider)) != NULL);

    /* 2000-01-01 .. 2200-01-01: a day the ledger's DATETIME(3) holds */
    FUZZ_CHECK(ev->ts_ms >= 946684800000LL && ev->ts_ms <= 7258118400000LL);

    FUZZ_CHECK(ev->account >= 1 && ev->cost_micros >= 0
               && ev->latency_ms >= 0 && ev->status >= 100
               && ev->status <= 599);
    FUZZ_CHECK(ev->prompt_tokens >= 0 && ev->completion_tokens >= 0
               && ev->total_tokens >= ev->prompt_tokens
                                      + ev->completion_tokens);
    FUZZ_CHECK((ev->streamed | ev->aborted | ev->estimated) <= 1
               && ev->streamed >= 0 && ev->aborted >= 0
               && ev->estimated >= 0);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int          r1, r2;
    aw_event_t   e1, e2;
    aw_value_t   m[AW_M_N];
    const char  *why1, *why2;

    why1 = why2 = NULL;

    r1 = aw_event_parse_with((const char *) data, size, 1, &e1, &why1);
    r2 = aw_event_parse_with((const char *) data, size, 0, &e2, &why2);

    FUZZ_CHECK(r1 == r2);

    if (r1 != 0) {
        FUZZ_CHECK(why1 != NULL && why2 != NULL && strcmp(why1, why2) == 0);

    } else {
        FUZZ_CHECK(memcmp(&e1, &e2, sizeof(e1)) == 0);
        check_event(&e1);
    }

    if (aw_event_read_plain((const char *) data, size, m) == 0) {
        check_plain(data, size, m);
    }

    return 0;
}
