/*
 * Key changes made through the developer API (admin.c).
 */

#ifndef AW_ADMIN_H
#define AW_ADMIN_H

#include "db.h"
#include "redis.h"


/* admin.c: developer API key changes, persisted by the drain */
int aw_admin_drain(redisContext *rc, MYSQL *db, const char *consumer,
    int *pending);


#endif /* AW_ADMIN_H */
