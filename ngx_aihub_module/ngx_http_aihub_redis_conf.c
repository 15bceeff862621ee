/*
 * The "aihub_redis" directive: the address of Redis (a host name resolved
 * here, never in a worker process) and, through
 * ngx_http_aihub_redis_auth.c, the credentials' arguments.
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis.h"
#include "ngx_http_aihub_redis_auth.h"

/*
 * "aihub_redis 127.0.0.1:6379", "aihub_redis unix:/run/redis.sock".  A host
 * name is resolved here, at configuration time, because hiredis would
 * resolve it with a blocking resolver call inside a worker process.
 */

char *
ngx_http_aihub_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_aihub_main_conf_t *amcf = conf;

    u_char     *p;
    ngx_str_t  *value;
    ngx_url_t   u;

    if (amcf->redis_host.data != NULL) {
        return "is duplicate";
    }

    if (ngx_http_aihub_redis_auth_args(cf, amcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (ngx_strncmp(value[1].data, "unix:", 5) == 0) {

        if (value[1].len <= 5) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid Redis address \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        amcf->redis_host.len = value[1].len - 5;
        amcf->redis_host.data = ngx_pnalloc(cf->pool, value[1].len - 4);
        if (amcf->redis_host.data == NULL) {
            return NGX_CONF_ERROR;
        }

        p = ngx_cpymem(amcf->redis_host.data, value[1].data + 5,
                       amcf->redis_host.len);
        *p = '\0';
        amcf->redis_port = 0;

        return NGX_CONF_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in Redis address \"%V\"", u.err, &value[1]);
        }

        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0 || u.uri.len != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid Redis address \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    /* the text form of the first address, without its port */

    amcf->redis_host.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (amcf->redis_host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    amcf->redis_host.len = ngx_sock_ntop(u.addrs[0].sockaddr,
                                         u.addrs[0].socklen,
                                         amcf->redis_host.data,
                                         NGX_SOCKADDR_STRLEN, 0);
    amcf->redis_host.data[amcf->redis_host.len] = '\0';
    amcf->redis_port = u.port;

    return NGX_CONF_OK;
}
