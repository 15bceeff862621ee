/*
 * The command runtime (command.c) and the commands (cmd_*.c, daemon.c)
 * for main.c's table.
 */

#ifndef AW_COMMAND_H
#define AW_COMMAND_H

#include "db.h"
#include "redis.h"


/*
 * command.c: the command tables and their one dispatcher.  A command
 * reads its arguments, then calls aw_cmd_connect() for what its entry
 * needs; the dispatcher closes it afterwards.
 */

#define AW_NEEDS_DB      0x1     /* MySQL, the aihub schema */
#define AW_NEEDS_SERVER  0x2     /* MySQL, no schema yet, multi statements */
#define AW_NEEDS_REDIS   0x4

typedef struct {
    unsigned        needs;
    MYSQL          *db;
    redisContext   *rc;
} aw_cmd_ctx_t;

typedef struct aw_group_s  aw_group_t;

typedef struct {
    const char        *name;
    int              (*run)(aw_cmd_ctx_t *ctx, int argc, char **argv);
    unsigned           needs;
    const aw_group_t  *group;       /* or a group of commands */
} aw_cmd_t;

struct aw_group_s {
    const char        *name;        /* NULL: the top level */
    const char        *usage;
    const aw_cmd_t    *cmds;        /* ends with a NULL name */
};

int aw_cmd_dispatch(const aw_group_t *group, int argc, char **argv);
int aw_cmd_connect(aw_cmd_ctx_t *ctx);


/* the commands (cmd_*.c, daemon.c) */

extern const aw_group_t  aw_key_group;
extern const aw_group_t  aw_account_group;
extern const aw_group_t  aw_invoice_group;
extern const aw_group_t  aw_prices_group;
extern const aw_group_t  aw_model_group;

/* "model list", cmd_model_list.c */
int aw_model_list(aw_cmd_ctx_t *ctx, int argc, char **argv);
extern const aw_group_t  aw_plan_group;

int aw_cmd_migrate(aw_cmd_ctx_t *ctx, int argc, char **argv);
int aw_cmd_sync(aw_cmd_ctx_t *ctx, int argc, char **argv);
int aw_cmd_rebuild(aw_cmd_ctx_t *ctx, int argc, char **argv);
int aw_cmd_run(aw_cmd_ctx_t *ctx, int argc, char **argv);
int aw_cmd_report(aw_cmd_ctx_t *ctx, int argc, char **argv);


#endif /* AW_COMMAND_H */
