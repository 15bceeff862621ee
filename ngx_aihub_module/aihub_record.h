/*
 * Records read from Redis HASHes (HGETALL replies): a key record (fields
 * AIHUB_KF_*) and a catalog entry (AIHUB_MF_*), parsed from the reply's
 * elements as (field, value) byte strings.  Plain C11, no nginx or hiredis
 * types: the module turns a hiredis reply into an array of aihub_rstr_t.
 *
 * The rules, the same for both records:
 *   - elements go in pairs, field then value; a last odd element is
 *     ignored, and so is a pair where either is not a string (data NULL);
 *   - unknown fields are ignored, and the order of fields does not matter;
 *   - a known field that appears twice makes the record invalid (a Redis
 *     HASH cannot hold that: the reply is not what it claims to be);
 *   - a number is decimal digits only, at most INT64_MAX; anything else
 *     (empty, a sign, other bytes, overflow) reads as 0, which for every
 *     limit means "none": the worker writes "" for a value the database
 *     does not set;
 *   - a key record needs a positive account id (a bad one is invalid, not
 *     0) and a non-empty prefix of at most AIHUB_KEY_PREFIX_LEN bytes.
 *
 * Strings are views into the elements: they live as long as the reply.
 */

#ifndef AIHUB_RECORD_H
#define AIHUB_RECORD_H

#include <stddef.h>
#include <stdint.h>


typedef struct {
    const unsigned char  *data;         /* NULL: not a string */
    size_t                len;
} aihub_rstr_t;


typedef struct {
    uint64_t              account_id;   /* > 0 */
    int64_t               expires;      /* 0: never */
    int64_t               anchor;
    uint64_t              rpm;          /* 0: unlimited */
    uint64_t              tpm;
    uint64_t              included;
    uint64_t              spend_cap;
    uint64_t              max_tokens;
    uint64_t              priority;     /* the plan's; 0: free */
    aihub_rstr_t          prefix;       /* 1..AIHUB_KEY_PREFIX_LEN bytes */
    aihub_rstr_t          plan;
    aihub_rstr_t          models;
    unsigned              active:1;     /* status is exactly "active" */
    unsigned              overage:1;    /* overage is a number, not 0 */
    unsigned              chat:1;       /* scopes hold "chat" (any case) */
    unsigned              admin:1;      /* scopes hold "admin" */
} aihub_key_record_t;


typedef struct {
    aihub_rstr_t          provider;
    aihub_rstr_t          upstream;     /* empty: the public id */
    aihub_rstr_t          tier;
    aihub_rstr_t          kind;
    aihub_rstr_t          api;
    aihub_rstr_t          fallbacks;
    uint64_t              price_in;     /* micro-dollars per 1M tokens */
    uint64_t              price_out;
    int64_t               created;      /* unix seconds, 0: unknown */
} aihub_model_record_t;


/* the number in s, or -1 if s is not one (see above) */
int64_t aihub_record_number(const unsigned char *s, size_t len);

/* 0: rec is filled; -1: the record is invalid.  elts holds n elements. */
int aihub_key_record_parse(aihub_key_record_t *rec, const aihub_rstr_t *elts,
    size_t n);
int aihub_model_record_parse(aihub_model_record_t *m,
    const aihub_rstr_t *elts, size_t n);


#endif /* AIHUB_RECORD_H */
