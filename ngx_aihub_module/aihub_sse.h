/*
 * The streaming usage scanner: reads a provider's SSE response as it passes
 * through, in pieces split at any byte, and optionally removes the usage
 * chunk the gateway asked for on the client's behalf.
 *
 * Pure C11, no allocation: the state is embedded by the caller; the only
 * buffer is the hold buffer the caller passes when stripping.
 *
 * Parsing (text/event-stream): lines end in LF, CRLF or CR; a blank line
 * ends an event; "data:" with or without one space; the data lines of one
 * event are one JSON document (joined by LF, as the SSE spec says), read
 * incrementally by aihub_usage_json's scanner, so a data line of any length
 * is parsed with no line buffer.  Comment lines (":" keep-alives), "event:",
 * "id:", "retry:" and unknown fields pass through untouched.  "data: [DONE]"
 * sets done.  An event's usage, error and content count are taken when it
 * ends (its blank line, or aihub_sse_finish()); the last usage object wins.
 * A byte order mark (EF BB BF) at the start of the stream is not part of
 * the first field's name (the SSE spec ignores it); it passes through.
 *
 * Stripping (hold != NULL): an event whose JSON is complete, has a usage
 * object as a member of its top-level object (not inside "response"), has
 * choices null, [] or absent and no error member, is removed with its
 * blank line.  To decide, the bytes of each event are held from its
 * first byte only until the event can no longer be a usage chunk: at the
 * first element of choices, an error member, a payload that is not a JSON
 * object ("[DONE]"), or the end of the event, whichever comes first; then
 * they are released and the rest of the event passes straight through.  An
 * event longer than the hold buffer is released and never stripped
 * (usage.overlong is set).  Output is otherwise byte-identical and in order.
 *
 * Without stripping (hold == NULL) nothing is ever held: the output of each
 * aihub_sse_feed() is exactly its input, so the caller may forward its own
 * buffers and pass out = NULL.
 */

#ifndef AIHUB_SSE_H
#define AIHUB_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "aihub_usage_json.h"


/*
 * A sensible hold buffer size: usage chunks are well under 1 KB, and other
 * events are released at their first choice, a few hundred bytes in.
 */
#define AIHUB_SSE_HOLD_SIZE  8192


typedef struct {
    aihub_usage_t   usage;           /* the results, valid at any time */
    aihub_json_t    json;            /* the current event's document */

    unsigned char  *hold;            /* NULL: no stripping */
    size_t          hold_size;
    size_t          held;
    size_t          event_len;       /* bytes of the current event */
    uint64_t        stripped;        /* events removed */

    uint8_t         line;            /* line state */
    uint8_t         mode;            /* pass, hold, between events */
    uint8_t         field_pos;
    uint8_t         done_pos;
    uint8_t         bom;             /* bytes of a leading byte order mark
                                        read; AIHUB_SSE_BOM_PAST: past it */
    unsigned        cr:1;            /* the last line ended in CR */
    unsigned        skip_lf:1;       /* ... and its LF is removed */
    unsigned        event:1;         /* the current event has a line */
    unsigned        data:1;          /* ... and a data line */
} aihub_sse_t;


/* hold: a buffer of hold_size bytes to strip the usage chunk, or NULL */
void aihub_sse_init(aihub_sse_t *s, unsigned char *hold, size_t hold_size);

/* the output capacity that the next aihub_sse_feed() of len bytes needs */
#define aihub_sse_out_size(s, len)  ((s)->held + (len))

/*
 * Feeds in[0..len), writes the bytes the client must receive to out (at
 * least aihub_sse_out_size() bytes, not overlapping in; may be NULL without
 * stripping) and returns their number.
 */
size_t aihub_sse_feed(aihub_sse_t *s, const unsigned char *in, size_t len,
    unsigned char *out);

/*
 * The end of the stream, or the client went away: settles the last event
 * and writes what is still held (at most aihub_sse_out_size(s, 0) bytes)
 * to out, or discards it if out is NULL.  Returns the bytes written.
 */
size_t aihub_sse_finish(aihub_sse_t *s, unsigned char *out);


#endif /* AIHUB_SSE_H */
