/*
 * aihub-worker: the life of the process.  Read the global options and
 * the config file, pick the command from the table (command.c dispatches
 * and opens what the command needs), run it, exit with its code: 0 done,
 * 1 runtime failure, 2 bad arguments.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include "aihub_worker.h"
#include "command.h"


static const char  aw_usage[] =
    "usage: " AW_NAME " [global options] COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  migrate            create the database, apply pending sql/NNN_*.sql\n"
    "  key                create | list | revoke API keys\n"
    "  account            create | show | list | plan | override | suspend"
    " | resume\n"
    "                     | cancel\n"
    "  sync               write keys, plans and models from MySQL to Redis\n"
    "  rebuild            restore Redis from MySQL after a data loss\n"
    "  run                drain the usage stream into MySQL (the daemon)\n"
    "  invoice            close | show | check | deliver | void monthly"
    " invoices\n"
    "  report             billing report for a period (CSV, JSON, HTML)\n"
    "  prices             sync model prices from a provider catalog\n"
    "  model              add | set | list | remove models of the catalog\n"
    "  plan               add | set | list | remove plans\n"
    "\n"
    "global options (flag > environment > config file > default):\n"
    "  --config FILE            \"name = value\" lines (redis, mysql_host,"
    " ...)\n"
    "                           (AIHUB_WORKER_CONFIG)\n"
    "  --redis HOST:PORT        or unix:/path (AIHUB_REDIS,"
    " 127.0.0.1:6379)\n"
    "  --redis-user U           Redis ACL user (AIHUB_REDIS_USER)\n"
    "  --redis-password W       AUTH (AIHUB_REDIS_PASSWORD)\n"
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


static const aw_cmd_t  aw_commands[] = {
    { "migrate", aw_cmd_migrate, AW_NEEDS_SERVER, NULL },
    { "key", NULL, 0, &aw_key_group },
    { "keys", NULL, 0, &aw_key_group },
    { "account", NULL, 0, &aw_account_group },
    { "accounts", NULL, 0, &aw_account_group },
    { "sync", aw_cmd_sync, AW_NEEDS_DB | AW_NEEDS_REDIS, NULL },
    { "rebuild", aw_cmd_rebuild, AW_NEEDS_DB | AW_NEEDS_REDIS, NULL },
    { "run", aw_cmd_run, 0, NULL },
    { "invoice", NULL, 0, &aw_invoice_group },
    { "report", aw_cmd_report, AW_NEEDS_DB, NULL },
    { "prices", NULL, 0, &aw_prices_group },
    { "model", NULL, 0, &aw_model_group },
    { "models", NULL, 0, &aw_model_group },
    { "plan", NULL, 0, &aw_plan_group },
    { "plans", NULL, 0, &aw_plan_group },
    { NULL, NULL, 0, NULL }
};


static const aw_group_t  aw_top = { NULL, aw_usage, aw_commands };


int
main(int argc, char **argv)
{
    int  rc;

    aw_log_init(0, NULL, AW_LOG_INFO);

    if (aw_config_load(&argc, argv) != 0) {
        return AW_EXIT_USAGE;
    }

    if (mysql_library_init(0, NULL, NULL) != 0) {
        fprintf(stderr, AW_NAME ": cannot initialize the MySQL library\n");
        return AW_EXIT_FAIL;
    }

    rc = aw_cmd_dispatch(&aw_top, argc - 1, argv + 1);

    mysql_library_end();

    return rc;
}
