/*
 * The ledger's state, shared by ledger.c (the rounds), ledger_read.c (the
 * stream side) and ledger_store.c (the MySQL side).  Private to those.
 */

#ifndef AW_LEDGER_STATE_H
#define AW_LEDGER_STATE_H

#include "db.h"
#include "ledger.h"
#include "redis.h"
#include "restore.h"


/*
 * One event of a usage stream entry.  An entry carries one or more
 * "event" fields (AIHUB_USAGE_EVENTS_MAX at most): each is an aw_entry_t
 * of its own, consecutive in d->all and sharing the entry's stream_id
 * pointer; an entry with none is one aw_entry_t, dead-lettered.
 */

typedef struct {
    const char  *stream_id;      /* points into the reply */
    const char  *raw;            /* this "event" field, or NULL */
    size_t       raw_len;
    aw_event_t   ev;
    const char  *reason;         /* NULL: valid and not yet refused */
    char         reason_buf[256];
} aw_entry_t;


/*
 * A round's events held beyond its own store: read ahead while MySQL
 * stored the round before (ahead), or committed and not yet ACKed (done).
 * The reply owns the strings the entries point to; NULL: nothing held.
 */

typedef struct {
    redisReply  *reply;
    aw_entry_t  *all;
    size_t       size;           /* slots in all */
    size_t       n;              /* events in all */
    char         marker[AW_MARKER_LEN];  /* the epoch marker's value when
                                            it was read */
} aw_round_t;


/*
 * A transaction's rows fit half the server's max_allowed_packet
 * (aw_drain_slice): read on each connection, this until it is.  A row's
 * bytes are its strings, escaped at their worst, and AW_INSERT_ROW for
 * the rest (numbers, time, quotes and commas).
 */
#define AW_PACKET_GUESS  1048576
#define AW_INSERT_HEAD   512
#define AW_INSERT_ROW    320


/*
 * After a restore, the module sends again within seconds the batches Redis
 * refused without its data (NGX_HTTP_AIHUB_WIPED_WAIT_MAX, 2 s between
 * tries): a worker that starts less than this many seconds after a
 * restore leaves the counters as it wrote them (aw_drain_sync, ledger.c).
 */
#define AW_RESENT_WITHIN  60

/* ledger_bulk.c's columns and prepared statement */
typedef struct aw_bulk_s  aw_bulk_t;


typedef struct {
    long long    account;
    char         day[11];
    const char  *model;
    long long    requests;
    long long    calls;
    long long    prompt_tokens;
    long long    completion_tokens;
    long long    total_tokens;
    long long    cost_micros;
} aw_rollup_t;


struct aw_drain_s {
    aw_flag_t     *stop;             /* the daemon's stop request */
    redisContext  *rc;
    MYSQL         *db;
    long long      batch;
    size_t         packet_max;       /* the server's max_allowed_packet,
                                        0: not read on this connection */
    long long      block_ms;
    long long      claim_idle_ms;
    const char    *consumer;
    char           stream[128];
    char           dead[128];
    int            read_pending;
    int            admin_pending;
    int            synced;
    int            grouped;          /* our consumer group is there */
    char           claim_cursor[64];
    long long      last_claim_ms;
    long long      last_db_try_ms;
    long long      last_chores_ms;
    unsigned       redis_backoff;
    unsigned       restore_backoff;  /* Redis without its marker */
    unsigned       db_backoff;
    long long      stored;
    long long      duplicates;
    long long      dead_count;
    long long      count;            /* stream entries asked per read */
    aw_entry_t    *all;              /* the round's events, in order */
    size_t         all_size;         /* slots in all, >= batch */
    aw_entry_t    *entries;          /* the slice of all stored now: at
                                        most batch, one transaction */
    aw_round_t     ahead;            /* the next round, read ahead */
    aw_round_t     done;             /* the last round, to ACK */
    int            overlap;          /* the round's INSERT may overlap the
                                        ACK of done and the read ahead */
    aw_buf_t       next_sql;         /* the INSERT of the first slice of
                                        the round read ahead, built while
                                        MySQL worked; for next_entries */
    aw_entry_t    *next_entries;     /* NULL: none built */
    size_t         next_n;
    size_t         next_valid;
    unsigned long long  next_tag;
    int            bulk_off;         /* --insert text */
    aw_bulk_t     *bulk;             /* NULL until a batch needs it */
    aw_rollup_t   *rollups;
    unsigned      *rollup_hash;      /* index + 1 into rollups, 0: empty */
    size_t         rollup_hash_size; /* a power of two, >= 2 * batch */
    long long      last_report;
    long long      linger_ms;        /* --linger-ms */
    long long      round_ms;         /* when the last round began */
    size_t         round_n;          /* and its events */
    char           marker[AW_MARKER_LEN];  /* the epoch marker's value as
                                              last read, "": missing */
    char           read_marker[AW_MARKER_LEN];  /* the marker of the round
                                                   read last, "": not known
                                                   (aw_drain_fetch) */
    char           store_marker[AW_MARKER_LEN]; /* of the round stored */
    int            gate_warned;      /* no ledger_gate table: said once */
    long long      gate_epoch;       /* the gate's epoch as last read */
    int            add_pending;      /* kept additions may be left
                                        (aw_drain_add_made) */
    int            add_missing;      /* no table ledger_additions */
    long long      add_polled_ms;    /* when the chores last made them */
};


/* ledger_slice.c */
size_t aw_drain_slice(aw_drain_t *d, const aw_entry_t *en, size_t n);

/* ledger_read.c (each returns as its comment there says) */
long long aw_now_ms(void);
void aw_drain_redis_lost(aw_drain_t *d);
int aw_drain_redis_open(aw_drain_t *d);
int aw_drain_group_make(aw_drain_t *d);
void aw_drain_reserve(aw_drain_t *d, size_t need);
redisReply *aw_drain_fetch(aw_drain_t *d, size_t *n, int block);
void aw_drain_swap(aw_drain_t *d, aw_round_t *x);
int aw_drain_ack(aw_drain_t *d, aw_entry_t *all, size_t n);
void aw_drain_ack_done(aw_drain_t *d);
void aw_drain_overlap(aw_drain_t *d);

/* the rollups' upsert: each sum added to the day's row */
#define AW_ROLLUP_UPSERT                                                     \
    " ON DUPLICATE KEY UPDATE "                                              \
    "requests = requests + VALUES(requests), "                               \
    "calls = calls + VALUES(calls), "                                        \
    "prompt_tokens = prompt_tokens + VALUES(prompt_tokens), "                \
    "completion_tokens = completion_tokens + VALUES(completion_tokens), "    \
    "total_tokens = total_tokens + VALUES(total_tokens), "                   \
    "cost_micros = cost_micros + VALUES(cost_micros)"

/* ledger_rollup.c */
void aw_rollup_reset(aw_drain_t *d, size_t *nroll);
void aw_rollup_add(aw_drain_t *d, size_t *nroll, const aw_event_t *ev);
int aw_rollup_apply(aw_drain_t *d, size_t nroll, aw_buf_t *q);

/* ledger_gate.c */
long long aw_drain_gate(aw_drain_t *d);
int aw_drain_add_due(aw_drain_t *d, long long epoch);
int aw_drain_add_keep(aw_drain_t *d, long long epoch, const char *where,
    unsigned long long tag);
int aw_drain_add_made(aw_drain_t *d, unsigned long long tag);

/* ledger_store.c (each returns as its comment there says) */
int aw_drain_store_batch(aw_drain_t *d, size_t n, long long *inserted,
    long long *dups);
int aw_drain_store_rows(aw_drain_t *d, size_t n, int each,
    long long *inserted, long long *dups);
void aw_drain_db_lost(aw_drain_t *d);

/* ledger_bulk.c (each returns as its comment there says) */
int aw_bulk_supported(MYSQL *db);
int aw_bulk_insert(aw_drain_t *d, aw_entry_t *entries, size_t n,
    unsigned long long tag, size_t *valid, long long *inserted);
void aw_bulk_close(aw_bulk_t *b);
void aw_bulk_destroy(aw_bulk_t *b);


#endif /* AW_LEDGER_STATE_H */
