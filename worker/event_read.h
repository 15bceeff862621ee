/*
 * An event's members read from its JSON text (event_read.c, pure): the
 * form the module writes directly, any other through cJSON.  Either way
 * each known member's first occurrence, as cJSON's lookup by name finds
 * it; event.c validates what was read.
 */

#ifndef AW_EVENT_READ_H
#define AW_EVENT_READ_H

#include <stddef.h>

#include <cjson/cJSON.h>


/* the members of an event (aw_event_names: their names) */
enum {
    AW_M_V = 0, AW_M_ID, AW_M_TS, AW_M_NODE, AW_M_ACCOUNT, AW_M_KEY,
    AW_M_PLAN, AW_M_MODEL, AW_M_PROVIDER, AW_M_PROMPT, AW_M_COMPLETION,
    AW_M_TOTAL, AW_M_COST, AW_M_STATUS, AW_M_STREAMED, AW_M_ABORTED,
    AW_M_ESTIMATED, AW_M_LATENCY, AW_M_N
};

/* what a member holds */
enum {
    AW_V_NONE = 0,      /* absent */
    AW_V_NUM,
    AW_V_STR,
    AW_V_BOOL,
    AW_V_OTHER          /* null, an array, an object */
};

typedef struct {
    int          type;
    double       num;   /* a number's value, or a boolean's (1, 0) */
    const char  *str;   /* a string's text (into the JSON or cJSON's tree) */
    size_t       len;   /* its length up to its first NUL */
} aw_value_t;


extern const char  *aw_event_names[AW_M_N];

/*
 * The form the module writes: an object of members without white space,
 * strings without escapes or control characters, numbers as up to 15
 * digits, booleans.  0: read, m[] filled; -1: not that form, and m[] is
 * to be read with cJSON.
 */
int aw_event_read_plain(const char *json, size_t len, aw_value_t *m);

/*
 * One JSON text parsed by cJSON as strictly as JSON reads it: refused
 * (NULL, *reason set) when it holds a control byte or an escaped NUL
 * (cJSON keeps both in a string, which C then cuts at the NUL), or text
 * after its value but white space (cJSON stops after the first of two
 * values run together).  The tree otherwise, any JSON value; the caller
 * frees it with cJSON_Delete.
 */
cJSON *aw_json_parse_strict(const char *json, size_t len,
    const char **reason);

/* m[] from a parsed object; the values point into its tree */
void aw_event_read_cjson(const cJSON *o, aw_value_t *m);

#endif /* AW_EVENT_READ_H */
