/*
 * aihub-worker: the ledger daemon and admin CLI.  One header for the whole
 * program: configuration, logging, the MySQL and Redis helpers, and the
 * commands.  Pure functions (money, events, periods) are declared here too
 * and take and return plain values, so the unit tests need no server.
 */

#ifndef AIHUB_WORKER_H
#define AIHUB_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <signal.h>
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



/* db.c */

typedef struct st_mysql  MYSQL;
typedef struct st_mysql_res  MYSQL_RES;

MYSQL *aw_db_connect(int with_db, int multi);
void aw_db_close(MYSQL *db);
int aw_db_exec(MYSQL *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
MYSQL_RES *aw_db_query(MYSQL *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int aw_db_buf_exec(MYSQL *db, aw_buf_t *q);
void aw_buf_sql_str(aw_buf_t *b, MYSQL *db, const char *s);
int aw_db_conn_error(MYSQL *db);
long long aw_db_scalar(MYSQL *db, long long dflt, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


/* redis.c */

typedef struct redisContext  redisContext;
typedef struct redisReply  redisReply;

redisContext *aw_redis_connect(int timeout_ms);
void aw_redis_close(redisContext *c);
char *aw_rkey(char *buf, size_t size, const char *name, const char *arg);
redisReply *aw_redis_argv(redisContext *c, int argc, const char **argv);


/* sync.c: MySQL -> Redis */

int aw_sync_keys(MYSQL *db, redisContext *rc, const char *where);
int aw_sync_models(MYSQL *db, redisContext *rc);
int aw_sync_plans(MYSQL *db, redisContext *rc);
int aw_sync_all(MYSQL *db, redisContext *rc);
int aw_publish(redisContext *rc, const char *msg);
int aw_sync_after_change(MYSQL *db, const char *where, const char *inval);


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

/* 0 if valid; else -1 and *reason names the problem */
int aw_event_parse(const char *json, size_t len, aw_event_t *ev,
    const char **reason);
void aw_ts_format(long long ts_ms, char *out, size_t size);
void aw_day_format(long long ts_ms, char *out, size_t size);


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
long long aw_billing_finish(aw_billing_t *b);


/* key helpers (keygen.c) */

void aw_sha256_hex(const char *s, size_t len, char *out);
int aw_key_generate(char *key);


/* account_util.c */

long long aw_account_id(MYSQL *db, const char *name);
long long aw_plan_id(MYSQL *db, const char *name);
int aw_account_name_ok(const char *name);
long long aw_account_create(MYSQL *db, const char *name, const char *plan);


/* ledger.c: the usage stream into MySQL, one round at a time */

typedef struct aw_drain_s  aw_drain_t;
typedef volatile sig_atomic_t  aw_flag_t;     /* set by a signal handler */

aw_drain_t *aw_drain_create(long long batch, long long block_ms,
    long long claim_idle_ms, const char *consumer, aw_flag_t *stop);
void aw_drain_step(aw_drain_t *d);
void aw_drain_destroy(aw_drain_t *d);


/*
 * command.c: the command tables and their one dispatcher.  A command
 * reads its arguments, then calls aw_cmd_connect() for what its entry
 * needs; the dispatcher closes it afterwards.
 */

#define AW_NEEDS_DB      0x1     /* MySQL, the aihub schema */
#define AW_NEEDS_SERVER  0x2     /* MySQL, no schema yet, multi statements */
#define AW_NEEDS_REDIS   0x4

typedef struct {
    unsigned        needs;
    MYSQL          *db;
    redisContext   *rc;
} aw_cmd_ctx_t;

typedef struct aw_group_s  aw_group_t;

typedef struct {
    const char        *name;
    int              (*run)(aw_cmd_ctx_t *ctx, int argc, char **argv);
    unsigned           needs;
    const aw_group_t  *group;       /* or a group of commands */
} aw_cmd_t;

struct aw_group_s {
    const char        *name;        /* NULL: the top level */
    const char        *usage;
    const aw_cmd_t    *cmds;        /* ends with a NULL name */
};

int aw_cmd_dispatch(const aw_group_t *group, int argc, char **argv);
int aw_cmd_connect(aw_cmd_ctx_t *ctx);


/* the commands (cmd_*.c, daemon.c) */

extern const aw_group_t  aw_key_group;
extern const aw_group_t  aw_account_group;
extern const aw_group_t  aw_invoice_group;
extern const aw_group_t  aw_prices_group;

int aw_cmd_migrate(aw_cmd_ctx_t *ctx, int argc, char **argv);
int aw_cmd_sync(aw_cmd_ctx_t *ctx, int argc, char **argv);
int aw_cmd_rebuild(aw_cmd_ctx_t *ctx, int argc, char **argv);
int aw_cmd_run(aw_cmd_ctx_t *ctx, int argc, char **argv);
int aw_cmd_report(aw_cmd_ctx_t *ctx, int argc, char **argv);

/* admin.c: developer API key changes, persisted by the drain */
int aw_admin_drain(redisContext *rc, MYSQL *db, const char *consumer,
    int *pending);


/* webhook.c: POSTs one rendered invoice; 0 once delivered */
int aw_webhook_send(MYSQL *db, long long id, const char *body);

/*
 * invoice.c: the invoice of one account and period, computed from
 * usage_events, and its JSON; invoice_issue.c: issuing and checking;
 * cmd_invoice.c: the commands.
 */

typedef struct {
    char       kind[12];
    char       model[129];
    long long  price_in;
    long long  price_out;
    long long  prompt_tokens;
    long long  completion_tokens;
    long long  calls;
    long long  amount_cents;
    char       ref_period[8];
    char       description[256];
} aw_line_t;


typedef struct {
    long long   account;
    char        plan[33];
    long long   included;
    long long   calls;
    long long   total_cents;
    aw_line_t  *lines;
    size_t      nlines;
    size_t      cap;
} aw_invoice_t;


/* which events a computation reads */
#define AW_EVENTS_ALL     -1LL     /* every event of the period */
#define AW_EVENTS_BILLED   0LL     /* events some invoice billed */


aw_line_t *aw_invoice_add(aw_invoice_t *inv, const char *kind);
void aw_invoice_free(aw_invoice_t *inv);
int aw_invoice_compute(MYSQL *db, long long account, const char *period,
    long long which, aw_invoice_t *inv);

typedef struct cJSON  cJSON;

int aw_invoice_issue(MYSQL *db, long long account, const char *period,
    time_t start, time_t end, long long *total);
int aw_invoice_check_one(MYSQL *db, long long id, long long account,
    const char *period, long long total);
cJSON *aw_invoice_json(MYSQL *db, long long id);
int aw_invoice_deliver_all(MYSQL *db, const char *period);


/* report.c: the billing report's three files */
int aw_report_write(MYSQL *db, const char *period, time_t start, time_t end,
    const char *out);
long long aw_account_allowance(MYSQL *db, long long account, time_t start,
    time_t end);


#endif /* AIHUB_WORKER_H */
