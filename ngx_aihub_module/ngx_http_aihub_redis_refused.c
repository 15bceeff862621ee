/*
 * Redis refusing what calls need: at its maxmemory (noeviction) it
 * answers "OOM" to every command that adds data, and aborts a transaction
 * that queued one (EXECABORT); without its data (no epoch marker) it has
 * no lease and no key record to give until aihub-worker restores it.
 * Every call that needs Redis and every batch retry meets it, hundreds a
 * second: the worker process says so once when the spell starts, with
 * the reason, and once when a batch goes through again, with the number
 * of refusals between.  A spell is this process's own; each worker
 * process says it once.
 *
 * What a call meets alone (Redis not answering in time, a call passed
 * failing open) is said for the first call and then at most every 10 s,
 * with the number of calls the line stands for.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis_refused.h"


static ngx_uint_t  ngx_http_aihub_redis_refusals;


/*
 * Whether the reply is a refusal Redis lifts by itself, so that what it
 * refused goes again: at its maxmemory (OOM), a replica after a failover
 * (READONLY), snapshots failing to disk (MISCONF), too few replicas
 * (NOREPLICAS), a script running long (BUSY), loading its data (LOADING),
 * a replica cut from its master (MASTERDOWN).  Without a shebang a script
 * meets these at its first write, as its own error: Redis 7 answers that
 * error as it is, Redis 6.2 inside its own ("ERR Error running script
 * (call to f_...): @user_script:1: -OOM command not allowed ..."), which
 * was taken for a refusal for good, and a batch of settles alone dropped.
 */

ngx_uint_t
ngx_http_aihub_redis_for_now(redisReply *rep)
{
    u_char      *p;
    size_t       n;
    ngx_uint_t   i;

    static const char  *words[] = {
        "OOM ", "READONLY ", "MISCONF ", "NOREPLICAS ", "BUSY ",
        "LOADING ", "MASTERDOWN ", NULL
    };

    if (rep == NULL || rep->type != REDIS_REPLY_ERROR) {
        return 0;
    }

    for (i = 0; words[i]; i++) {
        n = ngx_strlen(words[i]);

        if (rep->len >= n && ngx_strncmp(rep->str, words[i], n) == 0) {
            return 1;
        }
    }

    if (ngx_strncmp(rep->str, "ERR Error running script",
                    sizeof("ERR Error running script") - 1) != 0)
    {
        return 0;
    }

    /* Redis 6.2: the script's error inside, after a '-' */

    for (p = (u_char *) rep->str; (p = (u_char *) ngx_strchr(p, '-'));
         p++)
    {
        for (i = 0; words[i]; i++) {
            n = ngx_strlen(words[i]);

            if (ngx_strncmp(p + 1, words[i], n) == 0) {
                return 1;
            }
        }
    }

    return 0;
}


void
ngx_http_aihub_redis_refused(ngx_log_t *log, const char *what,
    const char *err)
{
    if (ngx_http_aihub_redis_refusals++ == 0) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "aihub: redis refused %s: %s; calls that need it get "
                      "503 (or pass, failing open), usage events and "
                      "settles wait in this process's buffer until redis "
                      "takes them (said once until then)", what, err);
    }
}


/* a batch went through: a spell of refusals, if any, is over */

void
ngx_http_aihub_redis_accepted(ngx_log_t *log)
{
    if (ngx_http_aihub_redis_refusals) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "aihub: redis takes writes again, after %ui refusals",
                      ngx_http_aihub_redis_refusals);
        ngx_http_aihub_redis_refusals = 0;
    }
}


/*
 * Whether this call's line is written (1) or counted (0); *more: the calls
 * counted since the last line written.
 */

ngx_uint_t
ngx_http_aihub_redis_say(ngx_http_aihub_redis_said_t *said, ngx_uint_t *more)
{
    ngx_msec_t  now;

    now = ngx_current_msec;

    if (said->said && now - said->at < NGX_HTTP_AIHUB_SAY_EVERY) {
        said->more++;
        return 0;
    }

    *more = said->more;
    said->said = 1;
    said->at = now;
    said->more = 0;

    return 1;
}
