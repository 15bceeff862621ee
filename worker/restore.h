/*
 * Redis restored from MySQL after it lost its data: the epoch marker, the
 * period counters from the ledger (restore.c).
 */

#ifndef AW_RESTORE_H
#define AW_RESTORE_H

#include "db.h"
#include "redis.h"


int aw_restore_needed(redisContext *r);
long long aw_restore_counters(MYSQL *db, redisContext *r, int wiped);
int aw_restore_all(MYSQL *db, redisContext *r, int *keys,
    long long *counters);


#endif /* AW_RESTORE_H */
