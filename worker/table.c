/*
 * A readable table for the list commands: every column as wide as its
 * widest cell, two spaces between columns, the last one unpadded.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aihub_worker.h"
#include "catalog.h"


void
aw_table_init(aw_table_t *t, size_t ncols, const char *const *head)
{
    t->ncols = ncols;
    t->nrows = 0;
    t->cells = NULL;

    aw_table_add(t, head);
}


void
aw_table_add(aw_table_t *t, const char *const *cells)
{
    size_t   i;
    char   **p;

    p = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
    if (p == NULL) {
        fprintf(stderr, AW_NAME ": out of memory\n");
        abort();
    }

    t->cells = p;

    for (i = 0; i < t->ncols; i++) {
        p[t->nrows * t->ncols + i] = aw_xstrdup(cells[i] ? cells[i] : "-");
    }

    t->nrows++;
}


void
aw_table_print(const aw_table_t *t)
{
    size_t   r, c, w, *width;
    char    *cell;

    width = aw_xmalloc(t->ncols * sizeof(size_t));

    for (c = 0; c < t->ncols; c++) {
        width[c] = 0;

        for (r = 0; r < t->nrows; r++) {
            w = strlen(t->cells[r * t->ncols + c]);
            width[c] = w > width[c] ? w : width[c];
        }
    }

    for (r = 0; r < t->nrows; r++) {
        for (c = 0; c < t->ncols; c++) {
            cell = t->cells[r * t->ncols + c];

            if (c + 1 == t->ncols) {
                printf("%s\n", cell);

            } else {
                printf("%-*s  ", (int) width[c], cell);
            }
        }
    }

    free(width);
}


void
aw_table_free(aw_table_t *t)
{
    size_t  i;

    for (i = 0; i < t->nrows * t->ncols; i++) {
        free(t->cells[i]);
    }

    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
}


void
aw_table_emit(aw_table_t *t, cJSON *arr, int json)
{
    char  *s;

    if (json) {
        s = cJSON_Print(arr);
        printf("%s\n", s ? s : "[]");
        free(s);

    } else {
        aw_table_print(t);
    }

    aw_table_free(t);
    cJSON_Delete(arr);
}
