/*
 * "aihub-worker model add | set | list | remove": the catalog of models.
 * A change is made in MySQL in one transaction (a price change is a new
 * model_prices row valid from now, so invoices price every call at the
 * price in force when it happened), checked against the fallback rules
 * (catalog.c), then the catalog is written to Redis and "models" is
 * published so every nginx node reloads it at once.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "catalog.h"
#include "command.h"
#include "db.h"


static const char  aw_model_usage[] =
    "usage: " AW_NAME " model add ID --provider NAME --price-in USD "
    "--price-out USD\n"
    "             [--upstream ID] [--tier basic|premium] "
    "[--kind chat|embedding]\n"
    "             [--api chat|responses] [--fallbacks ID,ID...]\n"
    "       " AW_NAME " model set ID [the options of add] "
    "[--enabled on|off]\n"
    "       " AW_NAME " model list [--json]\n"
    "       " AW_NAME " model remove ID\n"
    "\n"
    "ID          the public id clients send as \"model\" (letters, digits,\n"
    "            . _ : / @ + -)\n"
    "--provider  the name of an aihub_provider directive of the nginx\n"
    "            nodes ([a-z0-9_-]); the worker cannot see nginx's\n"
    "            configuration, so a provider no model used before is\n"
    "            accepted with a warning\n"
    "--upstream  the provider's id of the model (default: ID)\n"
    "--price-in, --price-out\n"
    "            US dollars per million prompt / completion tokens, at most\n"
    "            six decimals (\"0.15\"); a change applies from now on,\n"
    "            earlier calls keep their price\n"
    "--tier      basic (every plan) or premium (plans with model tier all);\n"
    "            default basic\n"
    "--kind      chat or embedding (default chat)\n"
    "--api       the API the provider speaks for it: chat (chat\n"
    "            completions) or responses (default chat)\n"
    "--fallbacks models tried in order when this one fails: other models\n"
    "            of the catalog of the same kind and tier (\"none\" clears)\n"
    "--enabled   off hides the model from clients (404) and keeps it here\n"
    "remove      deletes the model; its price history stays for invoices;\n"
    "            refused while another model names it as a fallback\n"
    "\n"
    "Every change reaches every nginx node within a second.\n";


typedef struct {
    const char  *provider;
    const char  *upstream;
    const char  *tier;
    const char  *kind;
    const char  *api;
    const char  *price_in;
    const char  *price_out;
    const char  *fallbacks;
    const char  *enabled;
    long long    pin;
    long long    pout;
    int          on;
    aw_buf_t     fb;
} aw_model_args_t;


/* the options' values checked; 0, or -1 with the usage error printed */

static int
aw_model_args_check(aw_model_args_t *a)
{
    char  bad[AW_CATALOG_ID_MAX + 2];

    if (a->provider && !aw_catalog_name_ok(a->provider)) {
        return aw_usage_error(aw_model_usage, "invalid provider \"%s\": a "
                              "provider is the name of an aihub_provider "
                              "directive, [a-z0-9_-], at most %d characters",
                              a->provider, AW_CATALOG_NAME_MAX);
    }

    if (a->upstream && !aw_catalog_upstream_ok(a->upstream)) {
        return aw_usage_error(aw_model_usage, "invalid upstream id \"%s\"",
                              a->upstream);
    }

    if (a->tier && aw_catalog_word_ok(a->tier, "basic|premium") != 0) {
        return aw_usage_error(aw_model_usage, "invalid tier \"%s\" (basic "
                              "or premium)", a->tier);
    }

    if (a->kind && aw_catalog_word_ok(a->kind, "chat|embedding") != 0) {
        return aw_usage_error(aw_model_usage, "invalid kind \"%s\" (chat or "
                              "embedding)", a->kind);
    }

    if (a->api && aw_catalog_word_ok(a->api, "chat|responses") != 0) {
        return aw_usage_error(aw_model_usage, "invalid api \"%s\" (chat or "
                              "responses)", a->api);
    }

    if (a->price_in && aw_catalog_price_parse(a->price_in, &a->pin) != 0) {
        return aw_usage_error(aw_model_usage, "invalid --price-in \"%s\": "
                              "US dollars per million tokens, not negative, "
                              "at most six decimals", a->price_in);
    }

    if (a->price_out && aw_catalog_price_parse(a->price_out, &a->pout) != 0)
    {
        return aw_usage_error(aw_model_usage, "invalid --price-out \"%s\": "
                              "US dollars per million tokens, not negative, "
                              "at most six decimals", a->price_out);
    }

    if (a->enabled && aw_catalog_flag_parse(a->enabled, &a->on) != 0) {
        return aw_usage_error(aw_model_usage, "invalid --enabled \"%s\" (on "
                              "or off)", a->enabled);
    }

    if (a->fallbacks
        && aw_catalog_fallbacks_parse(a->fallbacks, &a->fb, bad,
                                      sizeof(bad)) != 0)
    {
        return aw_usage_error(aw_model_usage, "invalid --fallbacks \"%s\"%s"
                              "%s%s", a->fallbacks,
                              bad[0] ? ": \"" : " (an empty item)",
                              bad, bad[0] ? "\" is malformed or repeated"
                                          : "");
    }

    return 0;
}


/*
 * Reads ID and the options; 1 and *exit_code when the command is done
 * (help, usage error), else 0.
 */

static int
aw_model_args(int argc, char **argv, aw_model_args_t *a, int with_values,
    const char **id, int *exit_code)
{
    char      *pos[1];
    int        rc, npos;
    aw_opt_t   opts[] = {
        { "--provider", 1, &a->provider },
        { "--upstream", 1, &a->upstream },
        { "--tier", 1, &a->tier },
        { "--kind", 1, &a->kind },
        { "--api", 1, &a->api },
        { "--price-in", 1, &a->price_in },
        { "--price-out", 1, &a->price_out },
        { "--fallbacks", 1, &a->fallbacks },
        { "--enabled", 1, &a->enabled },
        { NULL, 0, NULL }
    };

    memset(a, 0, sizeof(*a));
    aw_buf_init(&a->fb);

    rc = aw_opts_parse(argc, argv, with_values ? opts : NULL, pos, 1, &npos,
                       aw_model_usage);
    if (rc != 0) {
        *exit_code = rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
        return 1;
    }

    if (npos != 1 || !aw_catalog_model_id_ok(pos[0])) {
        aw_usage_error(aw_model_usage, "a valid model ID is required");
        *exit_code = AW_EXIT_USAGE;
        return 1;
    }

    *id = pos[0];

    if (aw_model_args_check(a) != 0) {
        *exit_code = AW_EXIT_USAGE;
        return 1;
    }

    return 0;
}


/*
 * The fallback rules after the change, inside the transaction: 0 if
 * kept; else the problems printed and the exit code (2 when the model's
 * own fallbacks are wrong, 1 when the change breaks another model's).
 */

static int
aw_model_rules(MYSQL *db, const char *id)
{
    int       n, own;
    aw_buf_t  err;

    aw_buf_init(&err);

    n = aw_catalog_check_db(db, id, &err, &own);

    if (n < 0) {
        aw_buf_free(&err);
        return AW_EXIT_FAIL;
    }

    if (n > 0) {
        fprintf(stderr, "%s", err.data);
        fprintf(stderr, AW_NAME ": model %s: nothing changed (the fallback "
                "rules: see \"" AW_NAME " model --help\")\n", id);
    }

    aw_buf_free(&err);

    return n == 0 ? 0 : own ? AW_EXIT_USAGE : AW_EXIT_FAIL;
}


/* a provider no model used: nginx must know it, the worker cannot tell */

static void
aw_model_provider_note(MYSQL *db, const char *id, const char *provider)
{
    aw_stmt_t   q;
    long long  n;

    aw_stmt_init(&q);
    aw_buf_puts(&q.sql, "SELECT COUNT(*) FROM models WHERE provider = ");
    aw_stmt_str(&q, provider);
    aw_buf_puts(&q.sql, " AND public_id <> ");
    aw_stmt_str(&q, id);

    n = aw_stmt_scalar(db, -1, &q);
    aw_stmt_free(&q);

    if (n == 0) {
        aw_log(AW_LOG_WARN, "provider \"%s\" is new to the catalog: every "
               "nginx node needs \"aihub_provider %s url=...\" or calls "
               "of %s fail with 502", provider, provider, id);
    }
}


/*
 * A price from now on; a model's first is in force from 2000 on, as the
 * seeded ones are: a call is stamped by its nginx node's clock, which may
 * be behind MySQL's, and a call of a model just added must have a price.
 */

static int
aw_model_price_row(MYSQL *db, const char *id, long long pin, long long pout)
{
    int        rc;
    long long  rows;
    aw_stmt_t  q;

    aw_stmt_init(&q);
    aw_buf_puts(&q.sql, "SELECT COUNT(*) FROM model_prices WHERE model = ");
    aw_stmt_str(&q, id);
    rows = aw_stmt_scalar(db, -1, &q);
    aw_stmt_free(&q);

    if (rows < 0) {
        return -1;
    }

    aw_stmt_init(&q);
    aw_buf_puts(&q.sql, "INSERT INTO model_prices (model, price_in_micros, "
                "price_out_micros, valid_from, source) VALUES (");
    aw_stmt_str(&q, id);
    aw_buf_printf(&q.sql, ", %lld, %lld, %s, 'cli')", pin, pout,
                  rows ? "UTC_TIMESTAMP(3)" : "'2000-01-01 00:00:00'");

    rc = aw_stmt_exec(db, &q);
    aw_stmt_free(&q);

    return rc;
}


static int
aw_model_add(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int              rc;
    char             in[32], out[32];
    aw_stmt_t         q;
    MYSQL           *db;
    const char      *id;
    aw_model_args_t  a;

    if (aw_model_args(argc, argv, &a, 1, &id, &rc)) {
        aw_buf_free(&a.fb);
        return rc;
    }

    rc = AW_EXIT_USAGE;

    if (a.provider == NULL || a.price_in == NULL || a.price_out == NULL) {
        aw_usage_error(aw_model_usage, "model add: --provider, --price-in "
                       "and --price-out are required");
        goto done;
    }

    if (a.enabled) {
        aw_usage_error(aw_model_usage, "model add: --enabled is for model "
                       "set");
        goto done;
    }

    rc = AW_EXIT_FAIL;

    if (aw_cmd_connect(ctx) != 0) {
        goto done;
    }

    db = ctx->db;

    if (aw_db_exec(db, "START TRANSACTION") != 0) {
        goto done;
    }

    aw_stmt_init(&q);
    aw_buf_puts(&q.sql, "SELECT COUNT(*) FROM models WHERE public_id = ");
    aw_stmt_str(&q, id);

    if (aw_stmt_scalar(db, -1, &q) != 0) {
        aw_stmt_free(&q);
        aw_log(AW_LOG_ERROR, "model \"%s\" exists: change it with \""
               AW_NAME " model set\"", id);
        goto rollback;
    }

    aw_stmt_reset(&q);
    aw_buf_puts(&q.sql, "INSERT INTO models (public_id, provider, upstream_id, "
                "tier, kind, api, created_at, price_in_micros, "
                "price_out_micros, fallbacks) VALUES (");
    aw_stmt_str(&q, id);
    aw_buf_puts(&q.sql, ", ");
    aw_stmt_str(&q, a.provider);
    aw_buf_puts(&q.sql, ", ");
    aw_stmt_str(&q, a.upstream ? a.upstream : id);
    aw_buf_puts(&q.sql, ", ");
    aw_stmt_str(&q, a.tier ? a.tier : "basic");
    aw_buf_puts(&q.sql, ", ");
    aw_stmt_str(&q, a.kind ? a.kind : "chat");
    aw_buf_puts(&q.sql, ", ");
    aw_stmt_str(&q, a.api ? a.api : "chat");
    aw_buf_printf(&q.sql, ", UTC_TIMESTAMP(), %lld, %lld, ", a.pin, a.pout);
    aw_stmt_str(&q, a.fallbacks ? a.fb.data : "");
    aw_buf_puts(&q.sql, ")");

    if (aw_stmt_exec(db, &q) != 0) {
        aw_stmt_free(&q);
        goto rollback;
    }

    aw_stmt_free(&q);

    if (aw_model_price_row(db, id, a.pin, a.pout) != 0) {
        goto rollback;
    }

    rc = aw_model_rules(db, id);

    if (rc != 0) {
        goto rollback;
    }

    rc = AW_EXIT_FAIL;

    if (aw_db_exec(db, "COMMIT") != 0) {
        goto rollback;
    }

    aw_model_provider_note(db, id, a.provider);

    if (aw_catalog_publish(db, NULL, NULL) != 0) {
        goto done;
    }

    aw_catalog_price_format(a.pin, in, sizeof(in));
    aw_catalog_price_format(a.pout, out, sizeof(out));
    printf("model %s added: provider %s, tier %s, $%s/$%s per M tokens "
           "(in/out)\n", id, a.provider, a.tier ? a.tier : "basic", in, out);

    rc = AW_EXIT_OK;
    goto done;

rollback:

    aw_db_exec(db, "ROLLBACK");

done:

    aw_buf_free(&a.fb);

    return rc;
}


/* one "col = 'value'" into the SET list */

static void
aw_model_set_str(aw_stmt_t *set, const char *col, const char *v)
{
    if (v == NULL) {
        return;
    }

    aw_buf_printf(&set->sql, "%s%s = ", set->sql.len ? ", " : "", col);
    aw_stmt_str(set, v);
}


static int
aw_model_set(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int              rc;
    char             oin[32], oout[32], nin[32], nout[32];
    long long        cur_in, cur_out;
    aw_stmt_t        q, set;
    MYSQL           *db;
    aw_rows_t       *res;
    char           **row;
    const char      *id;
    aw_model_args_t  a;

    if (aw_model_args(argc, argv, &a, 1, &id, &rc)) {
        aw_buf_free(&a.fb);
        return rc;
    }

    if (!a.provider && !a.upstream && !a.tier && !a.kind && !a.api
        && !a.price_in && !a.price_out && !a.fallbacks && !a.enabled)
    {
        aw_buf_free(&a.fb);
        aw_usage_error(aw_model_usage, "model set: nothing to set");
        return AW_EXIT_USAGE;
    }

    rc = AW_EXIT_FAIL;
    aw_stmt_init(&q);
    aw_stmt_init(&set);

    if (aw_cmd_connect(ctx) != 0) {
        goto done;
    }

    db = ctx->db;

    if (aw_db_exec(db, "START TRANSACTION") != 0) {
        goto done;
    }

    aw_buf_puts(&q.sql, "SELECT price_in_micros, price_out_micros FROM models "
                "WHERE public_id = ");
    aw_stmt_str(&q, id);
    aw_buf_puts(&q.sql, " FOR UPDATE");

    res = aw_stmt_select(db, &q);
    if (res == NULL) {
        goto rollback;
    }

    row = aw_rows_next(res);

    if (row == NULL) {
        aw_rows_free(res);
        aw_log(AW_LOG_ERROR, "no model \"%s\" (see \"" AW_NAME " model "
               "list\")", id);
        goto rollback;
    }

    cur_in = strtoll(row[0], NULL, 10);
    cur_out = strtoll(row[1], NULL, 10);
    aw_rows_free(res);

    if (!a.price_in) {
        a.pin = cur_in;
    }

    if (!a.price_out) {
        a.pout = cur_out;
    }

    aw_buf_printf(&set.sql, "price_in_micros = %lld, price_out_micros = %lld",
                  a.pin, a.pout);
    aw_model_set_str(&set, "provider", a.provider);
    aw_model_set_str(&set, "upstream_id", a.upstream);
    aw_model_set_str(&set, "tier", a.tier);
    aw_model_set_str(&set, "kind", a.kind);
    aw_model_set_str(&set, "api", a.api);
    aw_model_set_str(&set, "fallbacks", a.fallbacks ? a.fb.data : NULL);

    if (a.enabled) {
        aw_buf_printf(&set.sql, ", enabled = %d", a.on);
    }

    aw_stmt_reset(&q);
    aw_buf_puts(&q.sql, "UPDATE models SET ");
    aw_stmt_append(&q, &set);
    aw_buf_puts(&q.sql, " WHERE public_id = ");
    aw_stmt_str(&q, id);

    if (aw_stmt_exec(db, &q) != 0) {
        goto rollback;
    }

    if ((a.pin != cur_in || a.pout != cur_out)
        && aw_model_price_row(db, id, a.pin, a.pout) != 0)
    {
        goto rollback;
    }

    rc = aw_model_rules(db, id);

    if (rc != 0) {
        goto rollback;
    }

    rc = AW_EXIT_FAIL;

    if (aw_db_exec(db, "COMMIT") != 0) {
        goto rollback;
    }

    if (a.provider) {
        aw_model_provider_note(db, id, a.provider);
    }

    if (aw_catalog_publish(db, NULL, NULL) != 0) {
        goto done;
    }

    if (a.pin != cur_in || a.pout != cur_out) {
        aw_catalog_price_format(cur_in, oin, sizeof(oin));
        aw_catalog_price_format(cur_out, oout, sizeof(oout));
        aw_catalog_price_format(a.pin, nin, sizeof(nin));
        aw_catalog_price_format(a.pout, nout, sizeof(nout));
        printf("model %s: $%s/$%s -> $%s/$%s per M tokens (in/out) from "
               "now on\n", id, oin, oout, nin, nout);
    }

    printf("model %s updated\n", id);

    rc = AW_EXIT_OK;
    goto done;

rollback:

    aw_db_exec(db, "ROLLBACK");

done:

    aw_stmt_free(&q);
    aw_stmt_free(&set);
    aw_buf_free(&a.fb);

    return rc;
}


static int
aw_model_remove(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int              rc;
    aw_stmt_t         q;
    MYSQL           *db;
    const char      *id;
    aw_model_args_t  a;

    if (aw_model_args(argc, argv, &a, 0, &id, &rc)) {
        aw_buf_free(&a.fb);
        return rc;
    }

    aw_buf_free(&a.fb);

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    db = ctx->db;
    rc = AW_EXIT_FAIL;

    if (aw_db_exec(db, "START TRANSACTION") != 0) {
        return AW_EXIT_FAIL;
    }

    aw_stmt_init(&q);
    aw_buf_puts(&q.sql, "DELETE FROM models WHERE public_id = ");
    aw_stmt_str(&q, id);

    if (aw_stmt_exec(db, &q) != 0) {
        goto rollback;
    }

    if (aw_db_affected_rows() != 1) {
        aw_log(AW_LOG_ERROR, "no model \"%s\" (see \"" AW_NAME " model "
               "list\")", id);
        goto rollback;
    }

    if (aw_model_rules(db, id) != 0) {
        fprintf(stderr, AW_NAME ": change the fallbacks of those models "
                "first (" AW_NAME " model set ID --fallbacks ...)\n");
        goto rollback;
    }

    if (aw_db_exec(db, "COMMIT") != 0) {
        goto rollback;
    }

    if (aw_catalog_publish(db, NULL, id) != 0) {
        goto done;
    }

    printf("model %s removed (its price history stays for invoices)\n", id);

    rc = AW_EXIT_OK;
    goto done;

rollback:

    aw_db_exec(db, "ROLLBACK");

done:

    aw_stmt_free(&q);

    return rc;
}


static const aw_cmd_t  aw_model_cmds[] = {
    { "add", aw_model_add, AW_NEEDS_DB, NULL },
    { "set", aw_model_set, AW_NEEDS_DB, NULL },
    { "list", aw_model_list, AW_NEEDS_DB, NULL },
    { "remove", aw_model_remove, AW_NEEDS_DB, NULL },
    { NULL, NULL, 0, NULL }
};


const aw_group_t  aw_model_group = {
    "model", aw_model_usage, aw_model_cmds
};
