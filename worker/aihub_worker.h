/*
 * aihub-worker: the common header of every file: the program's name and
 * exit codes, configuration, logging, strings, options, and the pure
 * functions (events, months, money strings, billing, keys) that take and
 * return plain values, so the unit tests need no server.  The MySQL and
 * Redis layers and everything above them have a header each (db.h,
 * redis.h, sync.h, account.h, admin.h, ledger.h, invoice.h, webhook.h,
 * report.h, command.h): a file's #include lines say what it uses.
 */

#ifndef AIHUB_WORKER_H
#define AIHUB_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <time.h>

#include "aihub_money.h"
#include "aihub_protocol.h"


#define AW_NAME        "aihub-worker"

#define AW_EXIT_OK      0
#define AW_EXIT_FAIL    1
#define AW_EXIT_USAGE   2


/* config.c */

typedef struct {
    char  *redis;            /* host:port or unix:/path */
    char  *redis_user;       /* AUTH: an ACL user, "" the default */
    char  *redis_password;   /* AUTH, "" none */
    char  *redis_prefix;
    char  *mysql_host;
    int    mysql_port;
    char  *mysql_socket;
    char  *mysql_user;
    char  *mysql_password;
    char  *mysql_db;
    char  *webhook_url;
    char  *webhook_secret;
    char  *log_file;
} aw_config_t;

extern aw_config_t  aw_cfg;

int aw_config_load(int *argc, char **argv);


/* log.c */

enum {
    AW_LOG_DEBUG = 0,
    AW_LOG_INFO,
    AW_LOG_WARN,
    AW_LOG_ERROR
};

void aw_log_init(int daemon_mode, const char *file, int level);
int aw_log_reopen(void);
void aw_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));


/* buf.c: a growing string */

typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
} aw_buf_t;

void aw_buf_init(aw_buf_t *b);
void aw_buf_free(aw_buf_t *b);
void aw_buf_reset(aw_buf_t *b);
void aw_buf_append(aw_buf_t *b, const char *s, size_t n);
void aw_buf_puts(aw_buf_t *b, const char *s);
void aw_buf_put_ull(aw_buf_t *b, unsigned long long v);
void aw_buf_put_ll(aw_buf_t *b, long long v);
void aw_buf_printf(aw_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void *aw_xmalloc(size_t n);
char *aw_xstrdup(const char *s);


/* opts.c: command line options of one command */

typedef struct {
    const char   *name;      /* "--batch" */
    int           has_arg;
    const char  **value;     /* set to the argument, or to "1" */
} aw_opt_t;

/* returns 0, 1 for --help (usage printed), -1 on error (message printed) */
int aw_opts_parse(int argc, char **argv, aw_opt_t *opts, char **pos,
    int max_pos, int *npos, const char *usage);
int aw_parse_int(const char *s, long long min, long long max,
    long long *out);
int aw_usage_error(const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));


/* event.c: the usage event (pure) */

typedef struct {
    char       id[AIHUB_EVENT_ID_LEN + 1];
    long long  ts_ms;
    char       node[256];
    long long  account;
    char       key[33];
    char       plan[33];
    char       model[129];
    char       provider[33];
    long long  prompt_tokens;
    long long  completion_tokens;
    long long  total_tokens;
    long long  cost_micros;
    int        status;
    int        streamed;
    int        aborted;
    int        estimated;
    long long  latency_ms;
} aw_event_t;

/*
 * A call that counts, in the period counters and on the invoice: the
 * provider answered it (2xx), or the client went away after it reached
 * the provider (aborted, status 499: the provider works and bills on;
 * README "Calls that end badly"), as the module settles it.  In C, and
 * in SQL over usage_events ("t" its alias and a dot, or "").
 */
#define AW_EVENT_COUNTED(ev)                                                 \
    (((ev)->status >= 200 && (ev)->status < 300) || (ev)->aborted)
#define AW_SQL_COUNTED(t)                                                    \
    "(" t "status BETWEEN 200 AND 299 OR " t "aborted = 1)"

/* 0 if valid; else -1 and *reason names the problem */
int aw_event_parse(const char *json, size_t len, aw_event_t *ev,
    const char **reason);
/* the same; plain 0: every event through cJSON (the unit test compares) */
int aw_event_parse_with(const char *json, size_t len, int plain,
    aw_event_t *ev, const char **reason);
void aw_ts_format(long long ts_ms, char *out, size_t size);
void aw_day_format(long long ts_ms, char *out, size_t size);

/*
 * Unix seconds as a quoted DATETIME literal, for SQL, and a DATETIME
 * column as unix seconds: MariaDB before 11.5 (Debian 12's is 10.11)
 * reads FROM_UNIXTIME() and UNIX_TIMESTAMP() of a time past 2038-01-19
 * as NULL, so a month of 2038 closed with nothing billed and a key could
 * not expire past it.  The session runs in UTC (db.c).
 */
#define AW_SQL_TIME_LEN  32
char *aw_sql_time(long long sec, char *buf);
#define AW_SQL_UNIX(col)  "TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', " \
                          col ")"
/* stream entries the drain asks per read: about batch events a round */
long long aw_usage_read_count(long long batch, size_t entries,
    size_t events);


/* period.c (pure) */

int aw_period_parse(const char *s, int *year, int *month);
int aw_period_bounds(const char *s, time_t *start, time_t *end);
void aw_period_of(time_t t, char *out, size_t size);
void aw_period_prev(const char *s, char *out, size_t size);


/*
 * money.c: money strings (pure).  The cost rule is aihub_money.c's; the
 * two inline names below are the worker's spelling of it (its unit test
 * checks the rule through them), not a second rule.
 */

static inline long long
aw_money_line_cents(long long prompt_tokens, long long completion_tokens,
    long long price_in_micros, long long price_out_micros)
{
    return aihub_money_line_cents(prompt_tokens, completion_tokens,
                                  price_in_micros, price_out_micros);
}


static inline long long
aw_money_micros_to_cents(long long micros)
{
    return aihub_money_micros_to_cents(micros);
}

void aw_money_format(long long cents, char *out, size_t size);
int aw_money_cents_parse(const char *s, long long *cents);
int aw_money_fee_parse(const char *s, long long *cents);
int aw_money_price_per_token(const char *s, long long *micros_per_m);


/* billing.c (pure) */

typedef struct {
    char       model[129];
    long long  price_in;
    long long  price_out;
    long long  prompt_tokens;
    long long  completion_tokens;
    long long  calls;
    long long  amount_cents;
} aw_usage_line_t;

typedef struct {
    long long         included;
    long long         calls;
    long long         over_calls;
    long long         unbilled_calls;
    long long         prompt_tokens;
    long long         completion_tokens;
    aw_usage_line_t  *lines;
    size_t            nlines;
    size_t            cap;
} aw_billing_t;

void aw_billing_init(aw_billing_t *b, long long included);
void aw_billing_free(aw_billing_t *b);
int aw_billing_call(aw_billing_t *b, const char *model, int overage_allowed,
    long long price_in, long long price_out, long long prompt_tokens,
    long long completion_tokens);
void aw_billing_over(aw_billing_t *b, const char *model, int overage_allowed,
    long long price_in, long long price_out, long long n,
    long long prompt_tokens, long long output_tokens);
long long aw_billing_finish(aw_billing_t *b);
long long aw_billing_output_tokens(long long prompt_tokens,
    long long completion_tokens, long long total_tokens);


/* key helpers (keygen.c) */

void aw_sha256_hex(const char *s, size_t len, char *out);
int aw_key_generate(char *key);


#endif /* AIHUB_WORKER_H */
