/*
 * "aihub-worker model list [--json]": the catalog as a table, or as JSON
 * (prices in integer micro-dollars per million tokens, created in unix
 * seconds).
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


static const char  aw_model_list_usage[] =
    "usage: " AW_NAME " model list [--json]\n"
    "\n"
    "Prints every model of the catalog (enabled or not) with its provider,\n"
    "upstream id, tier, kind, API, prices (US dollars per million tokens)\n"
    "and fallbacks; --json prints the same as a JSON array.\n";


int
aw_model_list(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    int          rc, npos;
    char        *s, in[32], out[32];
    const char  *json, *cells[10];
    MYSQL_RES   *res;
    MYSQL_ROW    row;
    aw_table_t   t;
    cJSON       *arr, *o, *fb;
    aw_opt_t     opts[] = {
        { "--json", 0, &json },
        { NULL, 0, NULL }
    };
    static const char *const  head[10] = {
        "MODEL", "PROVIDER", "UPSTREAM", "TIER", "KIND", "API", "IN/M",
        "OUT/M", "ENABLED", "FALLBACKS"
    };

    json = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_model_list_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (aw_cmd_connect(ctx) != 0) {
        return AW_EXIT_FAIL;
    }

    res = aw_db_query(ctx->db, "SELECT public_id, provider, upstream_id, "
                      "tier, kind, api, price_in_micros, price_out_micros, "
                      "enabled, fallbacks, " AW_SQL_UNIX("created_at") " "
                      "FROM models ORDER BY public_id");
    if (res == NULL) {
        return AW_EXIT_FAIL;
    }

    arr = cJSON_CreateArray();
    aw_table_init(&t, 10, head);

    while ((row = mysql_fetch_row(res)) != NULL) {
        aw_catalog_price_format(strtoll(row[6], NULL, 10), in, sizeof(in));
        aw_catalog_price_format(strtoll(row[7], NULL, 10), out, sizeof(out));

        memcpy(cells, row, 6 * sizeof(char *));
        cells[6] = in;
        cells[7] = out;
        cells[8] = row[8][0] == '1' ? "yes" : "no";
        cells[9] = row[9][0] ? row[9] : "-";
        aw_table_add(&t, cells);

        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", row[0]);
        cJSON_AddStringToObject(o, "provider", row[1]);
        cJSON_AddStringToObject(o, "upstream", row[2]);
        cJSON_AddStringToObject(o, "tier", row[3]);
        cJSON_AddStringToObject(o, "kind", row[4]);
        cJSON_AddStringToObject(o, "api", row[5]);
        cJSON_AddNumberToObject(o, "price_in_micros",
                                (double) strtoll(row[6], NULL, 10));
        cJSON_AddNumberToObject(o, "price_out_micros",
                                (double) strtoll(row[7], NULL, 10));
        cJSON_AddBoolToObject(o, "enabled", row[8][0] == '1');

        fb = cJSON_AddArrayToObject(o, "fallbacks");

        for (s = strtok(row[9], ","); s; s = strtok(NULL, ",")) {
            cJSON_AddItemToArray(fb, cJSON_CreateString(s));
        }

        cJSON_AddNumberToObject(o, "created",
                                (double) strtoll(row[10], NULL, 10));
        cJSON_AddItemToArray(arr, o);
    }

    mysql_free_result(res);

    aw_table_emit(&t, arr, json != NULL);

    return AW_EXIT_OK;
}
