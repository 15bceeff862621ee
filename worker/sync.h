/*
 * MySQL -> Redis: key records, models, plans; invalidations (sync.c).
 */

#ifndef AW_SYNC_H
#define AW_SYNC_H

#include "db.h"
#include "redis.h"


/* sync.c: MySQL -> Redis */

int aw_sync_keys(MYSQL *db, redisContext *rc, const char *where,
    const char *value);
int aw_sync_models(MYSQL *db, redisContext *rc);
int aw_sync_plans(MYSQL *db, redisContext *rc);
int aw_sync_all(MYSQL *db, redisContext *rc);
int aw_publish(redisContext *rc, const char *msg);
int aw_sync_after_change(MYSQL *db, const char *where, const char *value,
    const char *inval);
int aw_sync_after_revoke(MYSQL *db, const char *hash, const char *inval);


#endif /* AW_SYNC_H */
