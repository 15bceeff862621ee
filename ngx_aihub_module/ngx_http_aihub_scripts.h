/*
 * ngx_http_aihub_scripts.c: the quota engine's Lua scripts, loaded into
 * Redis and run by their SHA1.
 */

#ifndef NGX_HTTP_AIHUB_SCRIPTS_H
#define NGX_HTTP_AIHUB_SCRIPTS_H


#include "ngx_http_aihub_common.h"

#include <hiredis/hiredis.h>


#define NGX_HTTP_AIHUB_SCRIPT_SHA_LEN   40      /* hex SHA1 */


/* in the order of the table in ngx_http_aihub_scripts.c */

typedef enum {
    NGX_HTTP_AIHUB_SCRIPT_GRANT = 0,
    NGX_HTTP_AIHUB_SCRIPT_APPLY,
    NGX_HTTP_AIHUB_SCRIPT_SWEEP,
    NGX_HTTP_AIHUB_SCRIPT_LOOKUP
} ngx_http_aihub_script_e;


void ngx_http_aihub_scripts_init(void);
void ngx_http_aihub_scripts_load(void);
ngx_uint_t ngx_http_aihub_scripts_check(redisReply *reply);
u_char *ngx_http_aihub_script_sha(ngx_http_aihub_script_e which);


#endif /* NGX_HTTP_AIHUB_SCRIPTS_H */
