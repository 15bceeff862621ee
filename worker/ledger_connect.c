/*
 * The ledger's connection to Redis: made, with the consumer group found
 * (or made), and dropped when it fails.  ledger_read.c reads through it.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "aihub_worker.h"
#include "redis.h"
#include "ledger_state.h"


static void aw_drain_grouped(aw_drain_t *d);


long long
aw_now_ms(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


/* the connection failed: dropped, made again by the next round */

void
aw_drain_redis_lost(aw_drain_t *d)
{
    aw_redis_close(d->rc);
    d->rc = NULL;
    d->read_pending = 1;
}


/*
 * Whether the stream has our consumer group: 1 yes, 0 no, -1 the
 * connection failed.  XINFO only reads, so a Redis at its maxmemory
 * answers it, where it refuses XGROUP CREATE even for a group that
 * exists: the drain that frees its memory must start without creating.
 */

static int
aw_drain_group_exists(aw_drain_t *d)
{
    size_t       i;
    int          found;
    const char  *argv[3];
    redisReply  *r, *g;

    argv[0] = "XINFO";
    argv[1] = "GROUPS";
    argv[2] = d->stream;

    r = redisCommandArgv(d->rc, 3, argv, NULL);
    if (r == NULL) {
        aw_log(AW_LOG_ERROR, "Redis XINFO GROUPS: %s", d->rc->errstr);
        return -1;
    }

    found = 0;

    /* an error: no stream yet */

    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && !found;
         i++)
    {
        g = r->element[i];

        /* each group: a flat list of name, value pairs, "name" first */

        found = g->type == REDIS_REPLY_ARRAY && g->elements >= 2
                && g->element[1]->type == REDIS_REPLY_STRING
                && strcmp(g->element[1]->str, AIHUB_USAGE_GROUP) == 0;
    }

    freeReplyObject(r);

    return found;
}


/*
 * Makes our consumer group (and the stream, if missing), but only while
 * Redis has its epoch marker, in one script: after Redis lost its data
 * the stream may hold events of batches the module sent before the
 * restore (Redis refused their settles, WIPED, but took the XADD beside
 * them); stored before the restore read the ledger, the restored counters
 * would count them, and the module's resent settles again.  The group
 * comes back only once Redis is restored.  1 made or there, 0 no marker
 * yet, -1 Redis failed.
 */

static const char  aw_group_make[] =
    "if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end "
    "local r = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', "
    "'MKSTREAM') "
    "if type(r) == 'table' and r.err and not string.find(r.err, "
    "'BUSYGROUP', 1, true) then return r end "
    "return 1";


int
aw_drain_group_make(aw_drain_t *d)
{
    int          made;
    char         epoch[128];
    const char  *argv[6];
    redisReply  *r;

    aw_rkey(epoch, sizeof(epoch), AIHUB_RK_EPOCH, NULL);

    argv[0] = "EVAL";
    argv[1] = aw_group_make;
    argv[2] = "2";
    argv[3] = d->stream;
    argv[4] = epoch;
    argv[5] = AIHUB_USAGE_GROUP;

    r = aw_redis_argv(d->rc, 6, argv);
    if (r == NULL) {
        return -1;
    }

    made = (r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);

    if (made) {
        aw_drain_grouped(d);
    }

    return made;
}


static void
aw_drain_grouped(aw_drain_t *d)
{
    d->grouped = 1;

    aw_log(AW_LOG_INFO, "draining %s as consumer \"%s\" of group \"%s\" "
           "(Redis %s)", d->stream, d->consumer, AIHUB_USAGE_GROUP,
           aw_cfg.redis);
}


int
aw_drain_redis_open(aw_drain_t *d)
{
    int             exists;
    struct timeval  tv;

    d->rc = aw_redis_connect(3000);
    if (d->rc == NULL) {
        return -1;
    }

    /* the blocking read must outlast BLOCK */

    tv.tv_sec = (d->block_ms + 5000) / 1000;
    tv.tv_usec = ((d->block_ms + 5000) % 1000) * 1000;
    redisSetTimeout(d->rc, tv);

    exists = aw_drain_group_exists(d);

    if (exists < 0) {
        aw_drain_redis_lost(d);
        return -1;
    }

    d->grouped = 0;

    if (exists) {
        aw_drain_grouped(d);

    } else if (aw_drain_group_make(d) < 0) {
        aw_drain_redis_lost(d);
        return -1;
    }

    d->read_pending = 1;
    d->admin_pending = 1;
    d->synced = 0;
    d->last_chores_ms = 0;
    d->redis_backoff = 0;

    return 0;
}
