/*
 * Configuration: global options may stand before or after the command.
 * Precedence: flag > environment > config file > default.  The config file
 * has "name = value" lines with the flag names written with underscores
 * (mysql_host, redis_prefix, ...) and "#" comments: a line starting with
 * "#", or a "#" after a space or tab ending an unquoted value.  A value in
 * double quotes is taken as written ("a # b" keeps its "#"), with \" and
 * \\ for a quote and a backslash; only a comment may follow it.
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aihub_worker.h"


aw_config_t  aw_cfg;


typedef struct {
    const char  *flag;       /* --mysql-host */
    const char  *file;       /* mysql_host */
    const char  *env;        /* AIHUB_MYSQL_HOST */
    const char  *dflt;
    char       **target;
    const char  *from_flag;
    char        *from_file;
} aw_setting_t;


static char  *aw_cfg_port;

static aw_setting_t  aw_settings[] = {
    { "--redis", "redis", "AIHUB_REDIS", "127.0.0.1:6379",
      &aw_cfg.redis, NULL, NULL },
    { "--redis-user", "redis_user", "AIHUB_REDIS_USER", "",
      &aw_cfg.redis_user, NULL, NULL },
    { "--redis-password", "redis_password", "AIHUB_REDIS_PASSWORD", "",
      &aw_cfg.redis_password, NULL, NULL },
    { "--redis-prefix", "redis_prefix", "AIHUB_REDIS_PREFIX",
      AIHUB_REDIS_PREFIX_DEFAULT, &aw_cfg.redis_prefix, NULL, NULL },
    { "--mysql-host", "mysql_host", "AIHUB_MYSQL_HOST", "127.0.0.1",
      &aw_cfg.mysql_host, NULL, NULL },
    { "--mysql-port", "mysql_port", "AIHUB_MYSQL_PORT", "3306",
      &aw_cfg_port, NULL, NULL },
    { "--mysql-socket", "mysql_socket", "AIHUB_MYSQL_SOCKET", "",
      &aw_cfg.mysql_socket, NULL, NULL },
    { "--mysql-user", "mysql_user", "AIHUB_MYSQL_USER", "root",
      &aw_cfg.mysql_user, NULL, NULL },
    { "--mysql-password", "mysql_password", "AIHUB_MYSQL_PASSWORD", "",
      &aw_cfg.mysql_password, NULL, NULL },
    { "--mysql-db", "mysql_db", "AIHUB_MYSQL_DB", "aihub",
      &aw_cfg.mysql_db, NULL, NULL },
    { "--webhook-url", "webhook_url", "AIHUB_WEBHOOK_URL", "",
      &aw_cfg.webhook_url, NULL, NULL },
    { "--webhook-secret", "webhook_secret", "AIHUB_WEBHOOK_SECRET", "",
      &aw_cfg.webhook_secret, NULL, NULL },
    { NULL, "log", "AIHUB_LOG", "", &aw_cfg.log_file, NULL, NULL },
    { NULL, NULL, NULL, NULL, NULL, NULL, NULL }
};


static char *
aw_trim(char *s)
{
    char  *e;

    while (isspace((unsigned char) *s)) {
        s++;
    }

    e = s + strlen(s);

    while (e > s && isspace((unsigned char) e[-1])) {
        *--e = '\0';
    }

    return s;
}


/*
 * The value of a line, in place: quoted, or unquoted up to a comment.
 * Returns it, or NULL if a quoted value is not closed or is followed by
 * something other than a comment.
 */

static char *
aw_config_value(char *v)
{
    char  *r, *w;

    if (*v != '"') {
        for (r = v; *r; r++) {
            if (*r == '#' && (r == v || r[-1] == ' ' || r[-1] == '\t')) {
                *r = '\0';
                break;
            }
        }

        return aw_trim(v);
    }

    for (r = v + 1, w = v; *r && *r != '"'; r++) {
        if (*r == '\\' && (r[1] == '"' || r[1] == '\\')) {
            r++;
        }

        *w++ = *r;
    }

    if (*r != '"') {
        return NULL;
    }

    *w = '\0';

    for (r++; *r == ' ' || *r == '\t'; r++) {
        /* void */
    }

    return *r == '\0' || *r == '#' ? v : NULL;
}


static int
aw_config_read_file(const char *path)
{
    FILE          *fp;
    char           line[4096], *p, *eq, *name, *value;
    int            lineno;
    aw_setting_t  *s;

    fp = fopen(path, "r");
    if (fp == NULL) {
        fprintf(stderr, AW_NAME ": cannot open config file \"%s\": %s\n",
                path, strerror(errno));
        return -1;
    }

    lineno = 0;

    while (fgets(line, sizeof(line), fp) != NULL) {
        lineno++;
        p = aw_trim(line);

        if (*p == '\0' || *p == '#') {
            continue;
        }

        eq = strchr(p, '=');
        if (eq == NULL) {
            fprintf(stderr, AW_NAME ": %s:%d: expected \"name = value\"\n",
                    path, lineno);
            fclose(fp);
            return -1;
        }

        *eq = '\0';
        name = aw_trim(p);
        value = aw_config_value(aw_trim(eq + 1));

        if (value == NULL) {
            fprintf(stderr, AW_NAME ": %s:%d: a quoted value must end with "
                    "\" (and only a # comment may follow)\n", path, lineno);
            fclose(fp);
            return -1;
        }

        for (s = aw_settings; s->file; s++) {
            if (strcmp(s->file, name) == 0) {
                break;
            }
        }

        if (s->file == NULL) {
            fprintf(stderr, AW_NAME ": %s:%d: unknown setting \"%s\"\n",
                    path, lineno, name);
            fclose(fp);
            return -1;
        }

        free(s->from_file);
        s->from_file = aw_xstrdup(value);
    }

    fclose(fp);

    return 0;
}


/*
 * Takes the global options out of argv (shifting the rest down), reads
 * the config file and resolves every setting.  Returns 0, or -1 after
 * printing the problem (exit code 2).
 */

int
aw_config_load(int *argc, char **argv)
{
    int            i, j;
    size_t         n;
    long long      port;
    const char    *arg, *eq, *value, *config_file, *env;
    aw_setting_t  *s;

    config_file = getenv("AIHUB_WORKER_CONFIG");

    for (i = 1, j = 1; i < *argc; i++) {
        arg = argv[i];

        if (strcmp(arg, "--") == 0) {
            while (i < *argc) {
                argv[j++] = argv[i++];
            }
            break;
        }

        eq = strchr(arg, '=');
        n = eq ? (size_t) (eq - arg) : strlen(arg);

        if (n == 8 && strncmp(arg, "--config", 8) == 0) {
            s = NULL;

        } else {
            for (s = aw_settings; s->file; s++) {
                if (s->flag && strlen(s->flag) == n
                    && strncmp(s->flag, arg, n) == 0)
                {
                    break;
                }
            }

            if (s->file == NULL) {
                argv[j++] = argv[i];
                continue;
            }
        }

        if (eq) {
            value = eq + 1;

        } else if (i + 1 < *argc) {
            value = argv[++i];

        } else {
            fprintf(stderr, AW_NAME ": option \"%.*s\" needs a value\n",
                    (int) n, arg);
            return -1;
        }

        if (s == NULL) {
            config_file = value;

        } else {
            s->from_flag = value;
        }
    }

    argv[j] = NULL;
    *argc = j;

    if (config_file != NULL && aw_config_read_file(config_file) != 0) {
        return -1;
    }

    for (s = aw_settings; s->file; s++) {
        env = s->env ? getenv(s->env) : NULL;

        if (s->from_flag) {
            value = s->from_flag;

        } else if (env != NULL && *env != '\0') {
            value = env;

        } else if (s->from_file) {
            value = s->from_file;

        } else {
            value = s->dflt;
        }

        *s->target = aw_xstrdup(value);
    }

    if (aw_parse_int(aw_cfg_port, 1, 65535, &port) != 0) {
        fprintf(stderr, AW_NAME ": invalid MySQL port \"%s\"\n",
                aw_cfg_port);
        return -1;
    }

    aw_cfg.mysql_port = (int) port;

    /* an unsigned delivery could be forged by anyone */

    if (aw_cfg.webhook_url[0] != '\0' && aw_cfg.webhook_secret[0] == '\0') {
        fprintf(stderr, AW_NAME ": webhook_url is set but webhook_secret is "
                "empty: deliveries must be signed\n");
        return -1;
    }

    return 0;
}
