/*
 * cJSON's memory in an nginx worker process.  A request body parses into
 * a tree of a few dozen small allocations, all freed together when the
 * request ends; from malloc, those frees filled malloc's fast bins, and
 * the next large allocation of the request (nginx's 1 KB and 4 KB
 * buffers) made malloc merge them: malloc and free were some 2 us of the
 * gateway's 41 us a call.  So while a body is parsed
 * (ngx_http_aihub_json_pool()) cJSON takes its memory from the request's
 * pool and gives none back one by one; at other times from malloc.
 *
 * Every block carries a header that says where it came from, so that
 * cJSON_free() and cJSON_Delete() may be called on any of them, however a
 * tree mixes the two (a parsed tree whose member is replaced later).
 * cJSON's hooks are the process's: memory cJSON gave out must go back
 * through cJSON_free() (as cJSON's documentation asks), never free().
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_json.h"

#include <cjson/cJSON.h>


/* the header: where the block came from; 16 bytes keep malloc's alignment */

#define NGX_HTTP_AIHUB_JSON_HEAD      16
#define NGX_HTTP_AIHUB_JSON_HEAP      0x6865617075ULL
#define NGX_HTTP_AIHUB_JSON_POOLED    0x706f6f6c6564ULL


static void *ngx_http_aihub_json_alloc(size_t size);
static void ngx_http_aihub_json_free(void *p);


static ngx_pool_t  *ngx_http_aihub_json_current;


void
ngx_http_aihub_json_init_process(void)
{
    cJSON_Hooks  hooks;

    hooks.malloc_fn = ngx_http_aihub_json_alloc;
    hooks.free_fn = ngx_http_aihub_json_free;

    cJSON_InitHooks(&hooks);
}


/* cJSON's memory from "pool" until called again with NULL */

void
ngx_http_aihub_json_pool(ngx_pool_t *pool)
{
    ngx_http_aihub_json_current = pool;
}


static void *
ngx_http_aihub_json_alloc(size_t size)
{
    u_char  *p;

    if (size > NGX_MAX_SIZE_T_VALUE - NGX_HTTP_AIHUB_JSON_HEAD) {
        return NULL;
    }

    if (ngx_http_aihub_json_current) {
        p = ngx_palloc(ngx_http_aihub_json_current,
                       size + NGX_HTTP_AIHUB_JSON_HEAD);
        if (p == NULL) {
            return NULL;
        }

        *(uint64_t *) p = NGX_HTTP_AIHUB_JSON_POOLED;

    } else {
        p = malloc(size + NGX_HTTP_AIHUB_JSON_HEAD);
        if (p == NULL) {
            return NULL;
        }

        *(uint64_t *) p = NGX_HTTP_AIHUB_JSON_HEAP;
    }

    return p + NGX_HTTP_AIHUB_JSON_HEAD;
}


static void
ngx_http_aihub_json_free(void *ptr)
{
    u_char  *p;

    if (ptr == NULL) {
        return;
    }

    p = (u_char *) ptr - NGX_HTTP_AIHUB_JSON_HEAD;

    if (*(uint64_t *) p == NGX_HTTP_AIHUB_JSON_POOLED) {
        /* freed with its request's pool */
        return;
    }

    free(p);
}
