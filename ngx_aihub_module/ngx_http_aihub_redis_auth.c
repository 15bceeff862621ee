/*
 * Redis credentials (README, "aihub_redis"): "user=NAME" for an ACL user,
 * "password_env=VAR" for the password, which nginx.conf never holds: each
 * worker process reads it from its environment at start (nginx's "env"
 * directive passes it).  AUTH goes first on every new connection, before
 * any other command of it, which wait for its reply (ngx_http_aihub_redis.c:
 * a refusal is logged, without the password, and drops the connection,
 * made again with the backoff).
 */

#include "ngx_http_aihub_common.h"
#include "ngx_http_aihub_redis_auth.h"


static ngx_str_t   ngx_http_aihub_redis_user;
static ngx_str_t   ngx_http_aihub_redis_password;


/* the parameters of "aihub_redis" after the address */

ngx_int_t
ngx_http_aihub_redis_auth_args(ngx_conf_t *cf,
    ngx_http_aihub_main_conf_t *amcf)
{
    ngx_str_t   *arg;
    ngx_uint_t   i;

    arg = cf->args->elts;

    for (i = 2; i < cf->args->nelts; i++) {

        if (arg[i].len > 5 && ngx_strncmp(arg[i].data, "user=", 5) == 0) {
            amcf->redis_user.data = arg[i].data + 5;
            amcf->redis_user.len = arg[i].len - 5;
            continue;
        }

        if (arg[i].len > 13
            && ngx_strncmp(arg[i].data, "password_env=", 13) == 0)
        {
            amcf->redis_password_env.data = arg[i].data + 13;
            amcf->redis_password_env.len = arg[i].len - 13;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &arg[i]);
        return NGX_ERROR;
    }

    /* AUTH is sent only with a password: a user alone would go unused */

    if (amcf->redis_user.len && amcf->redis_password_env.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"user=%V\" needs \"password_env=\"",
                           &amcf->redis_user);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_aihub_redis_auth_init_process(ngx_cycle_t *cycle,
    ngx_http_aihub_main_conf_t *amcf)
{
    u_char  *name, *val;

    ngx_http_aihub_redis_user = amcf->redis_user;

    if (amcf->redis_password_env.len == 0) {
        return NGX_OK;
    }

    name = ngx_pnalloc(cycle->pool, amcf->redis_password_env.len + 1);
    if (name == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(name, amcf->redis_password_env.data,
                amcf->redis_password_env.len + 1);

    val = (u_char *) getenv((char *) name);

    if (val == NULL || *val == '\0') {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "aihub: redis password: environment variable \"%s\" "
                      "is not set (is it passed with the \"env\" "
                      "directive?); connecting without AUTH", name);
        return NGX_OK;
    }

    ngx_http_aihub_redis_password.len = ngx_strlen(val);
    ngx_http_aihub_redis_password.data = ngx_pnalloc(cycle->pool,
                                             ngx_http_aihub_redis_password.len);
    if (ngx_http_aihub_redis_password.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_http_aihub_redis_password.data, val,
               ngx_http_aihub_redis_password.len);

    return NGX_OK;
}


/*
 * AUTH [user] password, first on a new connection: "done" gets its reply.
 * NGX_DECLINED: no password, nothing sent.
 */

ngx_int_t
ngx_http_aihub_redis_auth_send(redisAsyncContext *ac, redisCallbackFn *done,
    void *data)
{
    int          argc;
    size_t       argvlen[3];
    const char  *argv[3];

    if (ngx_http_aihub_redis_password.len == 0) {
        return NGX_DECLINED;
    }

    argc = 0;
    argv[argc] = "AUTH";
    argvlen[argc++] = sizeof("AUTH") - 1;

    if (ngx_http_aihub_redis_user.len) {
        argv[argc] = (const char *) ngx_http_aihub_redis_user.data;
        argvlen[argc++] = ngx_http_aihub_redis_user.len;
    }

    argv[argc] = (const char *) ngx_http_aihub_redis_password.data;
    argvlen[argc++] = ngx_http_aihub_redis_password.len;

    if (redisAsyncCommandArgv(ac, done, data, argc, argv, argvlen)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* AUTH's reply: 1 (logged, without the password) when Redis refused it */

ngx_uint_t
ngx_http_aihub_redis_auth_refused(redisReply *rep, const char *name)
{
    if (rep->type != REDIS_REPLY_ERROR) {
        return 0;
    }

    if (ngx_http_aihub_redis_user.len == 0) {
        /* (no %V of an empty name: its data is NULL) */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "aihub: %s: redis refused the credentials: %s",
                      name, rep->str);

    } else {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "aihub: %s: redis refused the credentials of user "
                      "\"%V\": %s", name, &ngx_http_aihub_redis_user,
                      rep->str);
    }

    return 1;
}


/*
 * Whether Redis's error "err" says it requires credentials (NOAUTH) and
 * none were given (said with a hint, at most every 60 s).  hiredis closes
 * a subscriber's connection on it, and puts it in the context's errstr.
 */

ngx_uint_t
ngx_http_aihub_redis_auth_missing(const char *err, const char *name)
{
    ngx_msec_t  now;

    static ngx_msec_t  said;

    if (ngx_strncmp(err, "NOAUTH", 6) != 0) {
        return 0;
    }

    now = ngx_current_msec;

    if (ngx_http_aihub_redis_password.len == 0
        && (said == 0 || now - said >= 60000))
    {
        said = now;
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "aihub: %s: redis requires credentials, and "
                      "\"aihub_redis\" gives none (user= and password_env=)",
                      name);
    }

    return 1;
}
