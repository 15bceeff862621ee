/*
 * The catalog's rules (catalog.c, pure): what a model id, a provider or
 * a plan name may be, prices as operators write them, and the rules the
 * fallbacks of the whole catalog must keep.  cmd_model.c and cmd_plan.c
 * apply them before anything reaches MySQL.
 */

#ifndef AW_CATALOG_H
#define AW_CATALOG_H

#include "aihub_worker.h"
#include "db.h"


#define AW_CATALOG_ID_MAX        128    /* models.public_id, upstream_id */
#define AW_CATALOG_NAME_MAX      32     /* models.provider, plans.name */
#define AW_CATALOG_PRICE_MAX     1000000000000LL    /* $1,000,000 per M */


/* one model as the fallback rules see it */

typedef struct {
    const char  *id;
    const char  *kind;          /* "chat", "embedding" */
    const char  *tier;          /* "basic", "premium" */
    const char  *fallbacks;     /* comma list of ids, no spaces */
} aw_catalog_model_t;


int aw_catalog_model_id_ok(const char *s);
int aw_catalog_upstream_ok(const char *s);
int aw_catalog_name_ok(const char *s);

/* one of the words of list ("chat|embedding"); 0 if it is one */
int aw_catalog_word_ok(const char *s, const char *list);

/* "on", "off", "yes", "no", "1", "0" */
int aw_catalog_flag_parse(const char *s, int *on);

/* dollars per million tokens ("0.15", "10", "2.5") to micro-dollars */
int aw_catalog_price_parse(const char *s, long long *micros);
void aw_catalog_price_format(long long micros, char *out, size_t size);

/*
 * "a, b,c" -> "a,b,c" in out; "" and "none" -> "".  -1 with *bad set to
 * the offending item (or NULL for an empty item) on a malformed id or a
 * duplicate.
 */
int aw_catalog_fallbacks_parse(const char *s, aw_buf_t *out,
    char *bad, size_t bad_size);

/*
 * The fallback rules over the whole catalog: every fallback names another
 * model of the catalog, of the same kind and tier.  With about, only the
 * problems of that model's fallbacks and of fallbacks naming it count.
 * Appends one line per problem to err ("model X: ..."), returns the number
 * of problems; *first (if not NULL) gets the index of the first model with
 * a problem.
 */
int aw_catalog_check(const aw_catalog_model_t *m, size_t n, const char *about,
    aw_buf_t *err, size_t *first);


/* table.c: a readable table of strings, columns as wide as they need */

typedef struct {
    size_t   ncols;
    size_t   nrows;          /* the header row included */
    char   **cells;
} aw_table_t;

void aw_table_init(aw_table_t *t, size_t ncols, const char *const *head);
void aw_table_add(aw_table_t *t, const char *const *cells);
void aw_table_print(const aw_table_t *t);
void aw_table_free(aw_table_t *t);

/* a list command's output: arr as JSON if json, else the table; frees both */
struct cJSON;
void aw_table_emit(aw_table_t *t, struct cJSON *arr, int json);


/*
 * catalog_sync.c: the rules against the catalog in MySQL (inside the
 * command's transaction), and a committed change to every nginx node.
 */

/* the problems about one model, as aw_catalog_check; *own: the first one
   is in that model's own fallbacks; -1 if MySQL failed */
int aw_catalog_check_db(MYSQL *db, const char *about, aw_buf_t *err,
    int *own);

/* plan NULL: the models; else that plan and its accounts' key records;
   removed: the model or plan deleted from MySQL */
int aw_catalog_publish(MYSQL *db, const char *plan, const char *removed);

/*
 * A --models option ("plan", "account override") into the SET list of st
 * as "models = ...": "default" (NULL: the plan's, or its tier), "*", or
 * model ids of the catalog and tier:basic / tier:premium entries, stored
 * without spaces (in keep, which must outlive the statement).  NULL adds
 * nothing.  0, or -1 with the usage error printed (after usage), or -2
 * when MySQL failed.
 */
int aw_catalog_models_set(MYSQL *db, const char *models, const char *usage,
    aw_stmt_t *st, aw_buf_t *keep);


#endif /* AW_CATALOG_H */
