/*
 * Logging: one function with levels.  The CLI writes plain
 * "aihub-worker: error: ..." lines to stderr; the daemon writes timestamped
 * lines to stderr or to its --log file, reopened on SIGHUP.  Never pass an
 * API key to aw_log(): only hashes and display prefixes.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "aihub_worker.h"


static struct {
    int          daemon;
    int          level;
    const char  *file;
    FILE        *fp;
} aw_logger = { 0, AW_LOG_INFO, NULL, NULL };


static const char  *aw_log_levels[] = { "debug", "info", "warn", "error" };


void
aw_log_init(int daemon_mode, const char *file, int level)
{
    aw_logger.daemon = daemon_mode;
    aw_logger.level = level;
    aw_logger.file = file;

    if (file != NULL && aw_log_reopen() != 0) {
        fprintf(stderr, AW_NAME ": cannot open log file \"%s\": %s\n",
                file, strerror(errno));
    }
}


int
aw_log_reopen(void)
{
    FILE  *fp;

    if (aw_logger.file == NULL) {
        return 0;
    }

    fp = fopen(aw_logger.file, "a");
    if (fp == NULL) {
        return -1;
    }

    setvbuf(fp, NULL, _IOLBF, 0);

    if (aw_logger.fp != NULL) {
        fclose(aw_logger.fp);
    }

    aw_logger.fp = fp;

    return 0;
}


void
aw_log(int level, const char *fmt, ...)
{
    va_list         ap;
    FILE           *out;
    struct timeval  tv;
    struct tm       tm;
    char            msg[2048], ts[32];

    if (level < aw_logger.level) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    out = aw_logger.fp ? aw_logger.fp : stderr;

    if (!aw_logger.daemon) {
        fprintf(out, AW_NAME ": %s%s%s\n",
                level >= AW_LOG_WARN ? aw_log_levels[level] : "",
                level >= AW_LOG_WARN ? ": " : "", msg);
        return;
    }

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);

    fprintf(out, "%s.%03dZ [%s] %d: %s\n", ts, (int) (tv.tv_usec / 1000),
            aw_log_levels[level], (int) getpid(), msg);
}
