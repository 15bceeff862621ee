/*
 * Gemini 3's thought signatures on a translated request
 * (aihub_thought_sign.h).
 */

#include <string.h>

#include "aihub_thought_sign.h"


static int aihub_ts_sign(cJSON *call);
static cJSON *aihub_ts_object(cJSON *parent, const char *name);
static int aihub_ts_role(const cJSON *m, const char *role);


int
aihub_thought_sign_checked(const char *model)
{
    unsigned     major;
    const char  *p;

    if (model == NULL) {
        return 0;
    }

    if (strncmp(model, "models/", sizeof("models/") - 1) == 0) {
        model += sizeof("models/") - 1;
    }

    if (strncmp(model, "gemini-", sizeof("gemini-") - 1) != 0) {
        return 0;
    }

    p = model + sizeof("gemini-") - 1;

    if (*p < '0' || *p > '9') {
        return 0;
    }

    for (major = 0; *p >= '0' && *p <= '9' && major < 1000; p++) {
        major = major * 10 + (unsigned) (*p - '0');
    }

    return major >= 3;
}


int
aihub_thought_sign_calls(cJSON *chat)
{
    int     n, rc;
    cJSON  *messages, *m, *turn, *calls;

    messages = cJSON_GetObjectItemCaseSensitive(chat, "messages");

    if (!cJSON_IsArray(messages)) {
        return 0;
    }

    /* the current turn: after the last user message (a tool's result is
       not one), or the whole conversation when there is none */

    turn = messages->child;

    cJSON_ArrayForEach(m, messages) {
        if (aihub_ts_role(m, "user")) {
            turn = m->next;
        }
    }

    n = 0;

    for (m = turn; m != NULL; m = m->next) {

        if (!aihub_ts_role(m, "assistant")) {
            continue;
        }

        calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");

        if (!cJSON_IsArray(calls) || !cJSON_IsObject(calls->child)) {
            continue;
        }

        rc = aihub_ts_sign(calls->child);

        if (rc < 0) {
            return -1;
        }

        n += rc;
    }

    return n;
}


/* 1 when the call got Google's value, 0 when it has its own signature */

static int
aihub_ts_sign(cJSON *call)
{
    cJSON  *google, *sig;

    sig = cJSON_GetObjectItemCaseSensitive(
              cJSON_GetObjectItemCaseSensitive(
                  cJSON_GetObjectItemCaseSensitive(call, "extra_content"),
                  "google"),
              "thought_signature");

    if (cJSON_IsString(sig) && sig->valuestring[0] != '\0') {
        return 0;
    }

    google = aihub_ts_object(aihub_ts_object(call, "extra_content"),
                             "google");
    if (google == NULL) {
        return -1;
    }

    while (cJSON_GetObjectItemCaseSensitive(google, "thought_signature")
           != NULL)
    {
        cJSON_DeleteItemFromObjectCaseSensitive(google, "thought_signature");
    }

    if (cJSON_AddStringToObject(google, "thought_signature",
                                AIHUB_THOUGHT_SIGN_SKIP)
        == NULL)
    {
        return -1;
    }

    return 1;
}


/*
 * parent's object member "name", made one when it is missing or not an
 * object (what was there goes); NULL when out of memory or parent is NULL
 */

static cJSON *
aihub_ts_object(cJSON *parent, const char *name)
{
    cJSON  *o;

    if (parent == NULL) {
        return NULL;
    }

    o = cJSON_GetObjectItemCaseSensitive(parent, name);

    if (cJSON_IsObject(o)) {
        return o;
    }

    while (cJSON_GetObjectItemCaseSensitive(parent, name) != NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(parent, name);
    }

    return cJSON_AddObjectToObject(parent, name);
}


static int
aihub_ts_role(const cJSON *m, const char *role)
{
    const cJSON  *r;

    r = cJSON_GetObjectItemCaseSensitive(m, "role");

    return cJSON_IsString(r) && strcmp(r->valuestring, role) == 0;
}
