/*
 * The one dispatcher: "aihub-worker COMMAND ..." and "aihub-worker GROUP
 * COMMAND ..." walk the same tables (aw_group_t).  A command says what it
 * needs (MySQL, Redis); after reading its arguments it asks for them with
 * aw_cmd_connect(), which opens them the same way for every command, and
 * the dispatcher closes them when the command returns.
 */

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "command.h"
#include "db.h"
#include "redis.h"


#define AW_REDIS_TIMEOUT_MS  5000


int
aw_cmd_dispatch(const aw_group_t *group, int argc, char **argv)
{
    int              rc;
    const aw_cmd_t  *cmd;
    aw_cmd_ctx_t     ctx;

    if (argc < 1) {
        fputs(group->usage, stderr);
        return AW_EXIT_USAGE;
    }

    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0
        || (group->name == NULL && strcmp(argv[0], "help") == 0))
    {
        fputs(group->usage, stdout);
        return AW_EXIT_OK;
    }

    for (cmd = group->cmds; cmd->name != NULL; cmd++) {
        if (strcmp(argv[0], cmd->name) == 0) {
            break;
        }
    }

    if (cmd->name == NULL) {
        if (group->name == NULL) {
            fprintf(stderr, AW_NAME ": unknown command \"%s\"\n\n%s",
                    argv[0], group->usage);

        } else {
            (void) aw_usage_error(group->usage, "unknown %s command \"%s\"",
                                  group->name, argv[0]);
        }

        return AW_EXIT_USAGE;
    }

    if (cmd->group != NULL) {
        return aw_cmd_dispatch(cmd->group, argc - 1, argv + 1);
    }

    memset(&ctx, 0, sizeof(ctx));
    ctx.needs = cmd->needs;

    rc = cmd->run(&ctx, argc - 1, argv + 1);

    aw_redis_close(ctx.rc);
    aw_db_close(ctx.db);

    return rc;
}


/*
 * Opens what the command's table entry needs: MySQL (the schema, or only
 * the server for "migrate"), then Redis.  0, or -1 with the error logged.
 */

int
aw_cmd_connect(aw_cmd_ctx_t *ctx)
{
    if (ctx->needs & AW_NEEDS_SERVER) {
        ctx->db = aw_db_connect(0, 1);

    } else if (ctx->needs & AW_NEEDS_DB) {
        ctx->db = aw_db_connect(1, 0);
    }

    if ((ctx->needs & (AW_NEEDS_DB | AW_NEEDS_SERVER)) && ctx->db == NULL) {
        return -1;
    }

    if (ctx->needs & AW_NEEDS_REDIS) {
        ctx->rc = aw_redis_connect(AW_REDIS_TIMEOUT_MS);

        if (ctx->rc == NULL) {
            aw_db_close(ctx->db);
            ctx->db = NULL;
            return -1;
        }
    }

    return 0;
}
