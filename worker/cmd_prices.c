/*
 * "aihub-worker prices sync --url URL": fetch a provider catalog in
 * OpenRouter's /api/v1/models format ({"data":[{"id":..., "pricing":
 * {"prompt": "$/token", "completion": "$/token"}}]}) with libcurl and
 * update the prices of the models we sell.  Each change is a new
 * model_prices row valid from now, so invoices keep using the price in
 * force when a call happened.  Redis gets the new catalog afterwards.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <mysql.h>

#include "aihub_worker.h"
#include "command.h"
#include "db.h"
#include "redis.h"
#include "sync.h"


#define AW_CATALOG_MAX  (64 * 1024 * 1024)


static const char  aw_prices_usage[] =
    "usage: " AW_NAME " prices sync --url URL [--provider openrouter] "
    "[--dry-run] [--allow-drop]\n"
    "\n"
    "Fetches the catalog (OpenRouter /api/v1/models format) and updates\n"
    "the prices of our models whose public id, or upstream id at that\n"
    "provider, matches.  Price history is kept in model_prices.\n"
    "  --url       e.g. https://openrouter.ai/api/v1/models\n"
    "  --provider  whose upstream ids to match (default openrouter)\n"
    "  --dry-run   print the changes, write nothing\n"
    "  --allow-drop  take prices that fall to less than half (or to 0);\n"
    "              without it such a sync is refused and writes nothing\n";


static size_t
aw_curl_collect(char *p, size_t size, size_t n, void *data)
{
    aw_buf_t  *b;

    b = data;

    if (b->len + size * n > AW_CATALOG_MAX) {
        return 0;
    }

    aw_buf_append(b, p, size * n);

    return size * n;
}


static int
aw_fetch(const char *url, aw_buf_t *body)
{
    CURL      *c;
    CURLcode   rc;
    long       status;
    char       err[CURL_ERROR_SIZE];

    c = curl_easy_init();
    if (c == NULL) {
        return -1;
    }

    err[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, aw_curl_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_USERAGENT, AW_NAME);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);

    rc = curl_easy_perform(c);
    status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);

    if (rc != CURLE_OK) {
        aw_log(AW_LOG_ERROR, "fetching %s: %s", url,
               err[0] ? err : curl_easy_strerror(rc));
        return -1;
    }

    if (status != 200) {
        aw_log(AW_LOG_ERROR, "fetching %s: HTTP %ld", url, status);
        return -1;
    }

    return 0;
}


/*
 * The models one catalog entry prices (by public id, or by upstream id at
 * this provider): prints each change and, unless dry, writes it with its
 * price history row.  0, or -1 when MySQL failed.
 */

static int
aw_prices_apply(MYSQL *db, const char *id, const char *provider,
    long long pin, long long pout, int dry, int allow_drop,
    long long *checked, long long *updated, long long *refused)
{
    long long    cur_in, cur_out;
    char       **row;
    aw_rows_t   *res;
    char         nin[24], nout[24];
    const char  *v[4];

    v[0] = id;
    v[1] = id;
    v[2] = provider;
    res = aw_db_select_params(db, "SELECT public_id, price_in_micros, "
                              "price_out_micros FROM models WHERE "
                              "public_id = ? OR (upstream_id = ? AND "
                              "provider = ?)", v, 3);

    if (res == NULL) {
        return -1;
    }

    while ((row = aw_rows_next(res)) != NULL) {
        (*checked)++;
        cur_in = strtoll(row[1], NULL, 10);
        cur_out = strtoll(row[2], NULL, 10);

        if (cur_in == pin && cur_out == pout) {
            continue;
        }

        /* a fall to less than half is a mistake until someone says so */

        if (!allow_drop && (pin < cur_in - cur_in / 2
                            || pout < cur_out - cur_out / 2))
        {
            aw_log(AW_LOG_ERROR, "%s: %lld/%lld -> %lld/%lld micro-dollars "
                   "per M tokens (in/out) is a drop to less than half; "
                   "pass --allow-drop if it is meant", row[0], cur_in,
                   cur_out, pin, pout);
            (*refused)++;
            continue;
        }

        printf("%s: %lld/%lld -> %lld/%lld micro-dollars per M tokens "
               "(in/out)\n", row[0], cur_in, cur_out, pin, pout);
        (*updated)++;

        if (dry) {
            continue;
        }

        /* the catalog's values as parameters, never as SQL text */

        snprintf(nin, sizeof(nin), "%lld", pin);
        snprintf(nout, sizeof(nout), "%lld", pout);
        v[0] = nin;
        v[1] = nout;
        v[2] = row[0];

        if (aw_db_exec_params(db, "UPDATE models SET price_in_micros = ?, "
                              "price_out_micros = ? WHERE public_id = ?", v,
                              3) != 0)
        {
            aw_rows_free(res);
            return -1;
        }

        v[0] = row[0];
        v[1] = nin;
        v[2] = nout;
        v[3] = provider;

        if (aw_db_exec_params(db, "INSERT INTO model_prices (model, "
                              "price_in_micros, price_out_micros, "
                              "valid_from, source) VALUES (?, ?, ?, "
                              "UTC_TIMESTAMP(3), ?)", v, 4) != 0)
        {
            aw_rows_free(res);
            return -1;
        }
    }

    aw_rows_free(res);

    return 0;
}


/* the new prices to Redis; MySQL is right whatever happens here */

static void
aw_prices_publish(MYSQL *db)
{
    redisContext  *r;

    r = aw_redis_connect(3000);

    if (r == NULL) {
        aw_log(AW_LOG_WARN, "Redis unreachable: run \"" AW_NAME " sync\""
               " to publish the new prices");
        return;
    }

    if (aw_sync_models(db, r) != 0 || aw_publish(r, AIHUB_INV_ALL) != 0) {
        aw_log(AW_LOG_WARN, "publishing the new prices failed");
    }

    aw_redis_close(r);
}


static int
aw_prices_sync(aw_cmd_ctx_t *ctx, int argc, char **argv)
{
    const char  *url, *provider, *dry, *allow_drop;
    int          rc, npos;
    long long    checked, updated, refused, pin, pout;
    aw_buf_t     body;
    cJSON       *root, *data, *m, *id, *pricing, *p, *c;
    MYSQL       *db;
    aw_opt_t     opts[] = {
        { "--url", 1, &url },
        { "--provider", 1, &provider },
        { "--dry-run", 0, &dry },
        { "--allow-drop", 0, &allow_drop },
        { NULL, 0, NULL }
    };

    url = provider = dry = allow_drop = NULL;

    rc = aw_opts_parse(argc, argv, opts, NULL, 0, &npos, aw_prices_usage);
    if (rc != 0) {
        return rc > 0 ? AW_EXIT_OK : AW_EXIT_USAGE;
    }

    if (url == NULL) {
        aw_usage_error(aw_prices_usage, "prices sync: --url is required");
        return AW_EXIT_USAGE;
    }

    if (provider == NULL) {
        provider = "openrouter";
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    aw_buf_init(&body);

    rc = aw_fetch(url, &body);
    curl_global_cleanup();

    if (rc != 0) {
        aw_buf_free(&body);
        return AW_EXIT_FAIL;
    }

    root = cJSON_ParseWithLength(body.data ? body.data : "", body.len);
    aw_buf_free(&body);

    data = root ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL;

    if (!cJSON_IsArray(data)) {
        aw_log(AW_LOG_ERROR, "%s: not a model catalog (no \"data\" array)",
               url);
        cJSON_Delete(root);
        return AW_EXIT_FAIL;
    }

    if (aw_cmd_connect(ctx) != 0) {
        cJSON_Delete(root);
        return AW_EXIT_FAIL;
    }

    db = ctx->db;

    rc = AW_EXIT_FAIL;
    checked = updated = refused = 0;

    if (!dry && aw_db_exec(db, "START TRANSACTION") != 0) {
        goto done;
    }

    cJSON_ArrayForEach(m, data) {
        id = cJSON_GetObjectItemCaseSensitive(m, "id");
        pricing = cJSON_GetObjectItemCaseSensitive(m, "pricing");

        if (!cJSON_IsString(id) || !cJSON_IsObject(pricing)) {
            continue;
        }

        p = cJSON_GetObjectItemCaseSensitive(pricing, "prompt");
        c = cJSON_GetObjectItemCaseSensitive(pricing, "completion");

        if (!cJSON_IsString(p) || !cJSON_IsString(c)
            || aw_money_price_per_token(p->valuestring, &pin) != 0
            || aw_money_price_per_token(c->valuestring, &pout) != 0)
        {
            aw_log(AW_LOG_WARN, "%s: no readable prompt and completion "
                   "price in the catalog; skipped", id->valuestring);
            continue;
        }

        if (aw_prices_apply(db, id->valuestring, provider, pin, pout,
                            dry != NULL, allow_drop != NULL, &checked,
                            &updated, &refused) != 0)
        {
            goto failed;
        }
    }

    if (refused) {
        aw_log(AW_LOG_ERROR, "%lld price drops refused; nothing was %s",
               refused, dry ? "changed" : "written");
        goto failed;
    }

    if (!dry && aw_db_exec(db, "COMMIT") != 0) {
        goto failed;
    }

    printf("prices: %lld models matched, %lld %s\n", checked, updated,
           dry ? "would change" : "updated");

    rc = AW_EXIT_OK;

    if (!dry && updated > 0) {
        aw_prices_publish(db);
    }

    goto done;

failed:

    aw_db_exec(db, "ROLLBACK");

done:

    cJSON_Delete(root);

    return rc;
}


static const aw_cmd_t  aw_prices_cmds[] = {
    { "sync", aw_prices_sync, AW_NEEDS_DB, NULL },
    { NULL, NULL, 0, NULL }
};


const aw_group_t  aw_prices_group = {
    "prices", aw_prices_usage, aw_prices_cmds
};
