/*
 * aihub-worker: the life of the process.  Read the global options and
 * the config file, pick the command, run it, exit with its code: 0 done,
 * 1 runtime failure, 2 bad arguments.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include "aihub_worker.h"


static const char  aw_usage[] =
    "usage: " AW_NAME " [global options] COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  migrate            create the database, apply pending sql/NNN_*.sql\n"
    "  key                create | list | revoke API keys\n"
    "  account            create | show | list | plan | override | suspend"
    " | resume\n"
    "  sync               write keys, plans and models from MySQL to Redis\n"
    "  rebuild            restore Redis from MySQL after a data loss\n"
    "  run                drain the usage stream into MySQL (the daemon)\n"
    "  invoice            close | show | check monthly invoices\n"
    "  report             billing report for a period (CSV, JSON, HTML)\n"
    "  prices             sync model prices from a provider catalog\n"
    "\n"
    "global options (flag > environment > config file > default):\n"
    "  --config FILE            \"name = value\" lines (redis, mysql_host,"
    " ...)\n"
    "  --redis HOST:PORT        or unix:/path (AIHUB_REDIS,"
    " 127.0.0.1:6379)\n"
    "  --redis-prefix P         key prefix (AIHUB_REDIS_PREFIX, aihub:)\n"
    "  --mysql-host H           (AIHUB_MYSQL_HOST, 127.0.0.1)\n"
    "  --mysql-port P           (AIHUB_MYSQL_PORT, 3306)\n"
    "  --mysql-socket S         (AIHUB_MYSQL_SOCKET)\n"
    "  --mysql-user U           (AIHUB_MYSQL_USER, root)\n"
    "  --mysql-password W       (AIHUB_MYSQL_PASSWORD)\n"
    "  --mysql-db D             (AIHUB_MYSQL_DB, aihub)\n"
    "  --webhook-url URL        invoice webhook (AIHUB_WEBHOOK_URL)\n"
    "  --webhook-secret S       HMAC key (AIHUB_WEBHOOK_SECRET)\n"
    "\n"
    "\"" AW_NAME " COMMAND --help\" describes a command.\n";


typedef struct {
    const char  *name;
    int        (*run)(int argc, char **argv);
} aw_command_t;


static aw_command_t  aw_commands[] = {
    { "migrate", aw_cmd_migrate },
    { "key", aw_cmd_key },
    { "keys", aw_cmd_key },
    { "account", aw_cmd_account },
    { "accounts", aw_cmd_account },
    { "sync", aw_cmd_sync },
    { "rebuild", aw_cmd_rebuild },
    { "run", aw_cmd_run },
    { "invoice", aw_cmd_invoice },
    { "report", aw_cmd_report },
    { "prices", aw_cmd_prices },
    { NULL, NULL }
};


int
main(int argc, char **argv)
{
    aw_command_t  *cmd;
    int            rc;

    aw_log_init(0, NULL, AW_LOG_INFO);

    if (aw_config_load(&argc, argv) != 0) {
        return AW_EXIT_USAGE;
    }

    if (argc < 2) {
        fputs(aw_usage, stderr);
        return AW_EXIT_USAGE;
    }

    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0
        || strcmp(argv[1], "help") == 0)
    {
        fputs(aw_usage, stdout);
        return AW_EXIT_OK;
    }

    for (cmd = aw_commands; cmd->name; cmd++) {
        if (strcmp(cmd->name, argv[1]) == 0) {
            break;
        }
    }

    if (cmd->name == NULL) {
        fprintf(stderr, AW_NAME ": unknown command \"%s\"\n\n%s", argv[1],
                aw_usage);
        return AW_EXIT_USAGE;
    }

    if (mysql_library_init(0, NULL, NULL) != 0) {
        fprintf(stderr, AW_NAME ": cannot initialize the MySQL library\n");
        return AW_EXIT_FAIL;
    }

    rc = cmd->run(argc - 2, argv + 2);

    mysql_library_end();

    return rc;
}
