/*
 * The usage event as JSON (the format: aihub_protocol.h, AIHUB_EV_*): one
 * object, members in a fixed order, no white space.  Strings are escaped
 * as nginx's ngx_escape_json() does: '"' and '\\' get a backslash, \b \f
 * \n \r \t their short escapes, the other bytes below 0x20 \u00XX
 * (upper-case hex); every other byte, 0x7f and bytes of invalid UTF-8
 * included, is copied as it is.  Plain C11, no nginx types.
 */

#ifndef AIHUB_USAGE_EVENT_H
#define AIHUB_USAGE_EVENT_H

#include <stddef.h>
#include <stdint.h>


typedef struct {
    const unsigned char  *data;
    size_t                len;
} aihub_event_str_t;


typedef struct {
    aihub_event_str_t     id;           /* AIHUB_EVENT_ID_LEN characters */
    uint64_t              ts_ms;
    aihub_event_str_t     node;
    uint64_t              account;
    aihub_event_str_t     key;          /* the key's display prefix */
    aihub_event_str_t     plan;
    aihub_event_str_t     model;
    aihub_event_str_t     provider;
    int64_t               prompt_tokens;
    int64_t               completion_tokens;
    int64_t               total_tokens;
    int64_t               cost_micros;
    uint64_t              status;
    uint64_t              latency_ms;
    unsigned              streamed:1;
    unsigned              aborted:1;
    unsigned              estimated:1;
} aihub_usage_event_t;


/* bytes that escaping s takes */
size_t aihub_event_escaped_len(const unsigned char *s, size_t n);

/* s escaped into out; returns the end */
unsigned char *aihub_event_escape(unsigned char *out, const unsigned char *s,
    size_t n);

/* v in decimal (at most 20 bytes) into p, without printf; returns the end */
unsigned char *aihub_event_int(unsigned char *p, int64_t v);
unsigned char *aihub_event_uint(unsigned char *p, uint64_t v);

/* at least the bytes aihub_usage_event_render() writes for ev */
size_t aihub_usage_event_len(const aihub_usage_event_t *ev);

/* the same without reading the strings: six bytes for each of their bytes */
size_t aihub_usage_event_bound(const aihub_usage_event_t *ev);

/* the event into out (aihub_usage_event_len() bytes); returns the length */
size_t aihub_usage_event_render(unsigned char *out,
    const aihub_usage_event_t *ev);


#endif /* AIHUB_USAGE_EVENT_H */
