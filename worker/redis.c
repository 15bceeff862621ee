/*
 * Redis helpers (synchronous hiredis: the worker may block, with a
 * timeout so a frozen Redis never hangs it forever).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "aihub_worker.h"
#include "redis.h"


static int aw_redis_auth(redisContext *c);


redisContext *
aw_redis_connect(int timeout_ms)
{
    redisContext    *c;
    struct timeval   tv;
    char             host[256], *colon;
    long long        port;

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;

    if (strncmp(aw_cfg.redis, "unix:", 5) == 0) {
        c = redisConnectUnixWithTimeout(aw_cfg.redis + 5, tv);

    } else {
        snprintf(host, sizeof(host), "%s", aw_cfg.redis);
        colon = strrchr(host, ':');
        port = 6379;

        if (colon != NULL) {
            *colon = '\0';

            if (aw_parse_int(colon + 1, 1, 65535, &port) != 0) {
                aw_log(AW_LOG_ERROR, "invalid Redis address \"%s\"",
                       aw_cfg.redis);
                return NULL;
            }
        }

        c = redisConnectWithTimeout(host, (int) port, tv);
    }

    if (c == NULL || c->err) {
        aw_log(AW_LOG_ERROR, "cannot connect to Redis at %s: %s",
               aw_cfg.redis, c ? c->errstr : "out of memory");
        if (c) {
            redisFree(c);
        }
        return NULL;
    }

    redisSetTimeout(c, tv);

    if (aw_cfg.redis_password[0] && aw_redis_auth(c) != 0) {
        redisFree(c);
        return NULL;
    }

    return c;
}


/* AUTH [user] password; the password is never logged */

static int
aw_redis_auth(redisContext *c)
{
    int          argc;
    const char  *argv[3];
    redisReply  *r;

    argc = 0;
    argv[argc++] = "AUTH";

    if (aw_cfg.redis_user[0]) {
        argv[argc++] = aw_cfg.redis_user;
    }

    argv[argc++] = aw_cfg.redis_password;

    r = redisCommandArgv(c, argc, argv, NULL);

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        aw_log(AW_LOG_ERROR, "Redis at %s refused the credentials%s%s%s: %s",
               aw_cfg.redis, aw_cfg.redis_user[0] ? " of user \"" : "",
               aw_cfg.redis_user, aw_cfg.redis_user[0] ? "\"" : "",
               r ? r->str : c->errstr);
        if (r) {
            freeReplyObject(r);
        }
        return -1;
    }

    freeReplyObject(r);

    return 0;
}


void
aw_redis_close(redisContext *c)
{
    if (c != NULL) {
        redisFree(c);
    }
}


/* <prefix><name><arg> into buf */

char *
aw_rkey(char *buf, size_t size, const char *name, const char *arg)
{
    snprintf(buf, size, "%s%s%s", aw_cfg.redis_prefix, name,
             arg ? arg : "");

    return buf;
}


/* NULL and a logged error on I/O failure or an error reply */

redisReply *
aw_redis_argv(redisContext *c, int argc, const char **argv)
{
    redisReply  *r;

    r = redisCommandArgv(c, argc, argv, NULL);

    if (r == NULL) {
        aw_log(AW_LOG_ERROR, "Redis %s: %s", argv[0], c->errstr);
        return NULL;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        aw_log(AW_LOG_ERROR, "Redis %s: %s", argv[0], r->str);
        freeReplyObject(r);
        return NULL;
    }

    return r;
}
