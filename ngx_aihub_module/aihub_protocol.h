/*
 * aihub wire contracts shared by ngx_aihub_module (the writer) and
 * aihub-worker (the reader): the API key format, the Redis keyspace and the
 * usage event.  Plain C11, no nginx and no hiredis types, so both programs
 * and the unit tests include it.  README.md ("Contracts") documents the same
 * thing for humans; change both together.
 */

#ifndef AIHUB_PROTOCOL_H
#define AIHUB_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>


/*
 * API keys: "ai-hub-" + 32 random base62 characters + 6 base62 characters
 * of checksum (CRC-32 of the random part, big-endian base62, zero padded).
 * A key of the wrong length, alphabet or checksum is refused with no I/O.
 * Stored only as the lowercase hex SHA-256 of the whole key.  The display
 * prefix ("ai-hub-" + the first 8 random characters) names the key in
 * listings, logs, usage events and the developer API.
 */

#define AIHUB_KEY_TAG           "ai-hub-"
#define AIHUB_KEY_TAG_LEN       7
#define AIHUB_KEY_RANDOM_LEN    32
#define AIHUB_KEY_CHECK_LEN     6
#define AIHUB_KEY_LEN                                                        \
    (AIHUB_KEY_TAG_LEN + AIHUB_KEY_RANDOM_LEN + AIHUB_KEY_CHECK_LEN)
#define AIHUB_KEY_PREFIX_LEN    (AIHUB_KEY_TAG_LEN + 8)
#define AIHUB_SHA256_HEX_LEN    64


/*
 * Redis keyspace.  Every name starts with a configurable prefix, "aihub:"
 * by default; the names below follow it.
 *
 *   key:<sha256hex>        HASH  the key record (fields AIHUB_KF_*), written
 *                                by the worker from MySQL, read by nginx
 *   model:<public id>      HASH  provider, upstream, tier, price_in,
 *                                price_out, kind, api, created, fallbacks
 *   models                 SET   public ids of all enabled models
 *   plan:<name>            HASH  base_fee_cents, included, hard_quota,
 *                                overage, rpm, tpm, max_tokens,
 *                                model_tier, priority; written by the
 *                                worker from MySQL (sync, rebuild)
 *   usage                  STREAM usage events, field "event" = JSON
 *   usage:dead             STREAM events the worker could not store
 *   heartbeat:<node>:<pid> CHANNEL each nginx worker process publishes
 *                                to its own channel every second and checks
 *                                that its subscription hears it
 *   invalidate             CHANNEL "key:<sha256hex>", "account:<id>",
 *                                "models", "all"
 *   period:<account>:<YYYYMMDD>  HASH calls (used), prompt, completion,
 *                                total, cost and overage (micro-dollars;
 *                                overage: the cost of calls beyond the
 *                                included ones) of the billing period
 *                                starting that UTC day; leased_calls and
 *                                leased_cost, what the outstanding leases
 *                                hold; "lease:<id>" = "<calls>:<cost>",
 *                                what one lease still holds, then
 *                                ":<rpm>" if each of its calls took a
 *                                token of the global rate limit
 *   leases:<account>:<YYYYMMDD>  ZSET the period's outstanding lease ids
 *                                by expiry (Redis time, unix ms); an
 *                                expired lease is reclaimed (what it holds
 *                                goes back) by the next grant or the sweep
 *   leases-due             ZSET  "<account>:<YYYYMMDD>" of every period with
 *                                outstanding leases, by the earliest
 *                                expiry among them: one nginx worker
 *                                process per node sweeps the due ones
 *   batch:<id>             STRING a batch of usage events and settles
 *                                applied (kept a day): a resent batch is
 *                                applied once
 *   epoch                  STRING set by the worker once Redis holds its
 *                                copy of MySQL (key records, plans, models,
 *                                the period counters from the ledger);
 *                                missing, Redis lost its data: the module
 *                                reads no missing key or model as unknown,
 *                                grants no lease and holds its batches.
 *                                Its value is the epoch of the restore
 *                                that set it (MySQL's ledger_gate), a
 *                                number that only grows
 *   added:<tag>:<account>  STRING the worker added a round it stored after
 *                                a restore to the account's counters (kept
 *                                as long as the period hash): added once
 *   rl:<account>           STRING Redis-global rate limit state of an
 *                                account (all its keys share it)
 *   account-keys:<id>      HASH  display prefix -> sha256hex, the keys of
 *                                an account that may be used, and those
 *                                revoked or expired since the index was
 *                                last pruned (a create prunes it at twice
 *                                the cap; a restore writes live keys only)
 *   keys-made:<id>         STRING keys an account created through the
 *                                developer API in the current minute
 *                                (expires with it)
 *   admin                  STREAM key changes made through the developer
 *                                API, field "event" = JSON
 *                                {"type":"key.created","account":N,
 *                                 "hash":..,"prefix":..,"scopes":..,
 *                                 "label":..,"ts":ms,"expires":unix
 *                                 seconds, 0 = never} or
 *                                {"type":"key.revoked","account":N,
 *                                 "prefix":..,"ts":ms}
 */

#define AIHUB_REDIS_PREFIX_DEFAULT   "aihub:"
#define AIHUB_RK_KEY                 "key:"
#define AIHUB_RK_MODEL               "model:"
#define AIHUB_RK_MODELS              "models"
#define AIHUB_RK_USAGE               "usage"
#define AIHUB_RK_USAGE_DEAD          "usage:dead"
#define AIHUB_RK_INVALIDATE          "invalidate"
#define AIHUB_RK_HEARTBEAT           "heartbeat:"   /* + node:pid, CHANNEL */
#define AIHUB_RK_PERIOD              "period:"
#define AIHUB_PERIOD_KEEP_SEC        (40 * 86400)   /* a period hash lives
                                                  this long past the
                                                  period's end, for the
                                                  worker */
#define AIHUB_RK_ACCOUNT_KEYS        "account-keys:"
#define AIHUB_RK_ADMIN               "admin"
#define AIHUB_RK_KEYS_MADE           "keys-made:"
#define AIHUB_RK_PLAN                "plan:"
#define AIHUB_RK_RATE                "rl:"
#define AIHUB_RK_LEASES              "leases:"
#define AIHUB_RK_BATCH               "batch:"       /* + an nginx worker
                                                  process's id: the number
                                                  of its last batch applied */
#define AIHUB_RK_EPOCH               "epoch"        /* Redis holds MySQL's
                                                  copy (set by the worker) */
#define AIHUB_RK_ADDED               "added:"       /* + tag:account */
#define AIHUB_RK_LEASES_DUE          "leases-due"
#define AIHUB_USAGE_GROUP            "aihub-drain"
/* a usage stream entry carries its events as "event" fields, one event
   each, and/or as "events" fields, one event per line ('\n' between them;
   the module writes one "events" field per batch); in order, at most
   AIHUB_USAGE_EVENTS_MAX events in all */
#define AIHUB_USAGE_FIELD            "event"
#define AIHUB_USAGE_LINES_FIELD      "events"
#define AIHUB_USAGE_EVENTS_MAX       256
#define AIHUB_ADMIN_FIELD            "event"        /* of the admin stream */

/* messages on the invalidation channel: a prefix + id, or a whole word */
#define AIHUB_INV_KEY                "key:"         /* + sha256hex */
#define AIHUB_INV_ACCOUNT            "account:"     /* + account id */
#define AIHUB_INV_MODELS             "models"
#define AIHUB_INV_ALL                "all"

/* members of the admin stream's event JSON, and its types */
#define AIHUB_AE_TYPE                "type"
#define AIHUB_AE_ACCOUNT             "account"
#define AIHUB_AE_HASH                "hash"
#define AIHUB_AE_PREFIX              "prefix"
#define AIHUB_AE_SCOPES              "scopes"
#define AIHUB_AE_LABEL               "label"
#define AIHUB_AE_EXPIRES             "expires"
#define AIHUB_AE_TS                  "ts"
#define AIHUB_AE_KEY_CREATED         "key.created"
#define AIHUB_AE_KEY_REVOKED         "key.revoked"

/* fields of the model record HASH (model:<public id>) */
#define AIHUB_MF_PROVIDER    "provider"
#define AIHUB_MF_UPSTREAM    "upstream"
#define AIHUB_MF_TIER        "tier"
#define AIHUB_MF_PRICE_IN    "price_in"     /* micro-dollars per 1M tokens */
#define AIHUB_MF_PRICE_OUT   "price_out"
#define AIHUB_MF_KIND        "kind"         /* "chat" or "embedding" */
#define AIHUB_MF_API         "api"          /* "chat": the provider speaks
                                               chat completions only;
                                               "responses": the Responses
                                               API too */
#define AIHUB_MF_CREATED     "created"      /* unix seconds */
#define AIHUB_MF_FALLBACKS   "fallbacks"    /* comma list of public ids */

/* fields of the plan record HASH (plan:<name>) */
#define AIHUB_PF_BASE_FEE    "base_fee_cents"
#define AIHUB_PF_INCLUDED    "included"
#define AIHUB_PF_HARD_QUOTA  "hard_quota"
#define AIHUB_PF_OVERAGE     "overage"
#define AIHUB_PF_RPM         "rpm"
#define AIHUB_PF_TPM         "tpm"
#define AIHUB_PF_MAX_TOKENS  "max_tokens"
#define AIHUB_PF_MODEL_TIER  "model_tier"
#define AIHUB_PF_PRIORITY    "priority"

/* fields of the period counter HASH (period:<account>:<YYYYMMDD>) */
#define AIHUB_CF_CALLS       "calls"
#define AIHUB_CF_PROMPT      "prompt"
#define AIHUB_CF_COMPLETION  "completion"
#define AIHUB_CF_TOTAL       "total"
#define AIHUB_CF_COST        "cost"         /* micro-dollars */
#define AIHUB_CF_OVERAGE     "overage"      /* micro-dollars */
#define AIHUB_CF_LEASED_CALLS "leased_calls" /* calls held by the
                                               outstanding leases */
#define AIHUB_CF_LEASE       "lease:"       /* + lease id: "calls:cost" the
                                               lease holds, not settled
                                               (":rpm": it holds tokens) */
#define AIHUB_CF_LEASED_COST "leased_cost"  /* micro-dollars held by the
                                               outstanding leases */

/* fields of the key record HASH */
#define AIHUB_KF_ACCOUNT     "account"      /* account id (decimal) */
#define AIHUB_KF_PREFIX      "prefix"       /* display prefix */
#define AIHUB_KF_PLAN        "plan"         /* plan name */
#define AIHUB_KF_STATUS      "status"       /* active | revoked | suspended */
#define AIHUB_KF_SCOPES      "scopes"       /* "chat", "admin" or
                                               "chat,admin" */
#define AIHUB_KF_EXPIRES     "expires"      /* unix seconds, 0 = never */
#define AIHUB_KF_RPM         "rpm"          /* requests/minute, 0 = none */
#define AIHUB_KF_TPM         "tpm"          /* tokens/minute, 0 = none */
#define AIHUB_KF_INCLUDED    "included"     /* calls per period */
#define AIHUB_KF_OVERAGE     "overage"      /* 1: calls beyond included
                                               go on, billed per token */
#define AIHUB_KF_SPEND_CAP   "spend_cap"    /* micro-dollars/period, 0 none */
#define AIHUB_KF_MAX_TOKENS  "max_tokens"   /* per request, 0 = none */
#define AIHUB_KF_MODELS      "models"       /* "*", or a comma list of ids
                                               and "tier:<tier>" entries */
#define AIHUB_KF_ANCHOR      "anchor"       /* period anchor, unix seconds */
#define AIHUB_KF_LABEL       "label"
#define AIHUB_KF_CREATED     "created"      /* unix seconds */
#define AIHUB_KF_PRIORITY    "priority"     /* the plan's priority: 0 the
                                               free lane, higher first */


/*
 * The usage event: one JSON object per call that reached a provider, XADDed
 * by nginx to <prefix>usage as field "event", validated and stored by the
 * worker.  Version 1 members, all present:
 *
 *   v                  1
 *   id                 32 lowercase hex chars, random per request (unique
 *                      across nodes and restarts); UNIQUE in MySQL
 *   ts                 request start, unix milliseconds
 *   node               the nginx host name
 *   account            account id (integer)
 *   key                key display prefix
 *   plan               plan name at the time of the call
 *   model              public model id ("" when none was parsed)
 *   provider           provider name
 *   prompt_tokens      integer >= 0
 *   completion_tokens  integer >= 0
 *   total_tokens       integer >= prompt + completion
 *   cost_micros        integer micro-dollars (real-time figure)
 *   status             HTTP status the client got
 *   streamed           boolean
 *   aborted            boolean, the client went away before the end
 *   estimated          boolean, tokens estimated or clamped
 *   latency_ms         integer
 */

#define AIHUB_EVENT_VERSION  1
#define AIHUB_EVENT_ID_LEN   32

/* the event's member names, as the module writes and the worker reads them */
#define AIHUB_EV_V                  "v"
#define AIHUB_EV_ID                 "id"
#define AIHUB_EV_TS                 "ts"
#define AIHUB_EV_NODE               "node"
#define AIHUB_EV_ACCOUNT            "account"
#define AIHUB_EV_KEY                "key"
#define AIHUB_EV_PLAN               "plan"
#define AIHUB_EV_MODEL              "model"
#define AIHUB_EV_PROVIDER           "provider"
#define AIHUB_EV_PROMPT_TOKENS      "prompt_tokens"
#define AIHUB_EV_COMPLETION_TOKENS  "completion_tokens"
#define AIHUB_EV_TOTAL_TOKENS       "total_tokens"
#define AIHUB_EV_COST_MICROS        "cost_micros"
#define AIHUB_EV_STATUS             "status"
#define AIHUB_EV_STREAMED           "streamed"
#define AIHUB_EV_ABORTED            "aborted"
#define AIHUB_EV_ESTIMATED          "estimated"
#define AIHUB_EV_LATENCY_MS         "latency_ms"


/* key format helpers (aihub_key_format.c) */

int aihub_key_check(const char *key, size_t len);
void aihub_key_checksum(const char *random, char *out);
int aihub_key_make(const unsigned char *entropy, size_t n, char *out);


#endif /* AIHUB_PROTOCOL_H */
