/*
 * Redis helpers (redis.c): synchronous hiredis with timeouts.
 */

#ifndef AW_REDIS_H
#define AW_REDIS_H

#include "aihub_worker.h"


/* redis.c */

typedef struct redisContext  redisContext;
typedef struct redisReply  redisReply;

redisContext *aw_redis_connect(int timeout_ms);
void aw_redis_close(redisContext *c);
char *aw_rkey(char *buf, size_t size, const char *name, const char *arg);
redisReply *aw_redis_argv(redisContext *c, int argc, const char **argv);


#endif /* AW_REDIS_H */
