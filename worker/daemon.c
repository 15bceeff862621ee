/*
 * "aihub-worker run": the life of the daemon.  Read the options, open the
 * log, write the pid file, install the signal handlers, then run the
 * ledger's rounds (ledger.c) until asked to stop; close and remove the pid
 * file.  Signal handlers only set flags: SIGTERM/SIGINT stop after the
 * batch in hand, SIGHUP reopens the log file.
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aihub_worker.h"
#include "command.h"
#include "ledger.h"


static aw_flag_t  aw_stop;
static aw_flag_t  aw_reopen;


static const char  aw_run_usage[] =
    "usage: " AW_NAME " run [--batch 512] [--block-ms 1000] [--linger-ms "
    "50]\n"
    "                     [--consumer NAME] [--claim-idle-ms 30000]\n"
    "                     [--insert bulk|text] [--log FILE] [--pidfile "
    "FILE]\n"
    "\n"
    "Drains the usage stream into MySQL (consumer group " AIHUB_USAGE_GROUP
    "), at\n"
    "most --batch events per transaction (a stream entry carries one or "
    "more).\n"
    "After a round of fewer than --batch / 2 events the next read waits "
    "until\n"
    "--linger-ms have passed since it began (0: never).\n"
    "Several workers may run at once with different --consumer names\n"
    "(default: the host name).  A batch is one bulk execution of a prepared\n"
    "INSERT where the server is MariaDB 10.2.7 or later, else one multi-row\n"
    "INSERT (--insert text: always).  SIGTERM finishes the batch and exits,\n"
    "SIGHUP reopens the log file.\n";


static void
aw_signal(int signo)
{
    if (signo == SIGHUP) {
        aw_reopen = 1;

    } else {
        aw_stop = 1;
    }
}


static int
aw_pidfile_write(const char *path)
{
    FILE  *fp;

    fp = fopen(path, "w");
    if (fp == NULL) {
        aw_log(AW_LOG_ERROR, "cannot write pid file \"%s\": %s", path,
               strerror(errno));
        return -1;
    }

    fprintf(fp, "%d\n", (int) getpid());
    fclose(fp);

    return 0;
}


static void
aw_signals_install(void)
{
    struct sigaction  sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = aw_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}


int
aw_cmd_run(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *batch, *block, *linger, *consumer, *idle, *insert, *log;
    const char  *pidfile;
    char         host[256];
    int          rc, npos;
    long long    nbatch, block_ms, linger_ms, idle_ms;
    aw_drain_t  *d;
    aw_opt_t     opts[] = {
        { "--batch", 1, &batch },
        { "--block-ms", 1, &block },
        { "--linger-ms", 1, &linger },
        { "--consumer", 1, &consumer },
        { "--claim-idle-ms", 1, &idle },
        { "--insert", 1, &insert },
        { "--log", 1, &log },
        { "--pidfile", 1, &pidfile },
        { NULL, 0, NULL }
    };

    (void) ctx;     /* the drain keeps its own connections, reconnecting */

    batch = block = linger = consumer = idle = insert = log = pidfile = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_run_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    /* two stream entries of the module's fullest batches: a round of
       whole entries fills one transaction */
    nbatch = 2 * AIHUB_USAGE_EVENTS_MAX;
    block_ms = 1000;
    linger_ms = 50;
    idle_ms = 30000;

    if ((batch && aw_parse_int(batch, 1, 100000, &nbatch) != 0)
        || (block && aw_parse_int(block, 1, 600000, &block_ms) != 0)
        || (linger && aw_parse_int(linger, 0, 10000, &linger_ms) != 0)
        || (idle && aw_parse_int(idle, 1, 86400000, &idle_ms) != 0))
    {
        aw_usage_error(aw_run_usage, "invalid number in --batch, --block-ms, "
                       "--linger-ms or --claim-idle-ms");
        return AW_EXIT_USAGE;
    }

    if (insert && strcmp(insert, "bulk") != 0 && strcmp(insert, "text") != 0)
    {
        aw_usage_error(aw_run_usage, "--insert is bulk or text");
        return AW_EXIT_USAGE;
    }

    if (consumer == NULL) {
        if (gethostname(host, sizeof(host)) != 0) {
            snprintf(host, sizeof(host), "worker");
        }

        host[sizeof(host) - 1] = '\0';
        consumer = host;

    } else if (*consumer == '\0') {
        aw_usage_error(aw_run_usage, "empty --consumer");
        return AW_EXIT_USAGE;
    }

    if (log == NULL && aw_cfg.log_file[0]) {
        log = aw_cfg.log_file;
    }

    aw_log_init(1, log, AW_LOG_INFO);

    if (pidfile && aw_pidfile_write(pidfile) != 0) {
        return AW_EXIT_FAIL;
    }

    aw_signals_install();

    d = aw_drain_create(nbatch, block_ms, linger_ms, idle_ms, consumer,
                        insert != NULL && strcmp(insert, "text") == 0,
                        &aw_stop);

    aw_log(AW_LOG_INFO, AW_NAME " started (batch %lld, block %lld ms, "
           "linger %lld ms, claim idle %lld ms, insert %s)", nbatch,
           block_ms, linger_ms, idle_ms, insert ? insert : "bulk");

    while (!aw_stop) {
        if (aw_reopen) {
            aw_reopen = 0;

            if (aw_log_reopen() != 0) {
                aw_log(AW_LOG_ERROR, "cannot reopen log file: %s",
                       strerror(errno));
            }

            aw_log(AW_LOG_INFO, "log file reopened");
        }

        aw_drain_step(d);
    }

    aw_drain_destroy(d);

    if (pidfile) {
        unlink(pidfile);
    }

    return AW_EXIT_OK;
}
