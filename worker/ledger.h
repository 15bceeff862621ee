/*
 * The ledger: the usage stream into MySQL, one round at a time
 * (ledger.c, ledger_read.c, ledger_store.c, ledger_bulk.c; ledger_state.h
 * is their private state).
 */

#ifndef AW_LEDGER_H
#define AW_LEDGER_H

#include <signal.h>
#include <time.h>

#include "aihub_worker.h"


/* ledger.c: the usage stream into MySQL, one round at a time */

typedef struct aw_drain_s  aw_drain_t;
typedef volatile sig_atomic_t  aw_flag_t;     /* set by a signal handler */

aw_drain_t *aw_drain_create(long long batch, long long block_ms,
    long long linger_ms, long long claim_idle_ms, const char *consumer,
    int text_insert, aw_flag_t *stop);
void aw_drain_step(aw_drain_t *d);
void aw_drain_destroy(aw_drain_t *d);


#endif /* AW_LEDGER_H */
