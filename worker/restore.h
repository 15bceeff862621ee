/*
 * Redis restored from MySQL after it lost its data: the epoch marker, the
 * period counters from the ledger (restore.c).
 */

#ifndef AW_RESTORE_H
#define AW_RESTORE_H

#include "db.h"
#include "redis.h"


/* room for the epoch marker's value */
#define AW_MARKER_LEN  64

int aw_restore_marker(redisContext *r, char *buf, size_t size);
int aw_restore_needed(redisContext *r);
long long aw_restore_counters(MYSQL *db, redisContext *r, int wiped);
int aw_restore_all(MYSQL *db, redisContext *r, int wiped_only, int *keys,
    long long *counters);
int aw_restore_marker_raise(redisContext *r, long long epoch, int restore);
long long aw_restore_epoch(MYSQL *db, const char *lock);
long long aw_restore_add(MYSQL *db, redisContext *r, long long epoch,
    const char *where, unsigned long long tag);
long long aw_restore_additions(MYSQL *db, redisContext *r,
    unsigned long long batch);


#endif /* AW_RESTORE_H */
