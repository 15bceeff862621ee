/*
 * Options of one command: "--name value", "--name=value", positional
 * arguments, "--" ends the options, "--help" and "-h" print the usage.
 * Errors print one line naming the problem plus the usage to stderr; the
 * caller exits with AW_EXIT_USAGE.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aihub_worker.h"


int
aw_usage_error(const char *usage, const char *fmt, ...)
{
    va_list  ap;

    fprintf(stderr, AW_NAME ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage);

    return -1;
}


int
aw_opts_parse(int argc, char **argv, aw_opt_t *opts, char **pos,
    int max_pos, int *npos, const char *usage)
{
    int          i, only_pos;
    size_t       n;
    const char  *arg, *eq;
    aw_opt_t    *o;

    *npos = 0;
    only_pos = 0;

    for (i = 0; i < argc; i++) {
        arg = argv[i];

        if (!only_pos && strcmp(arg, "--") == 0) {
            only_pos = 1;
            continue;
        }

        if (!only_pos
            && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0))
        {
            fputs(usage, stdout);
            return 1;
        }

        if (only_pos || arg[0] != '-' || arg[1] == '\0') {
            if (*npos >= max_pos) {
                return aw_usage_error(usage, "unexpected argument \"%s\"",
                                      arg);
            }

            pos[(*npos)++] = argv[i];
            continue;
        }

        eq = strchr(arg, '=');
        n = eq ? (size_t) (eq - arg) : strlen(arg);

        for (o = opts; o && o->name; o++) {
            if (strlen(o->name) == n && strncmp(o->name, arg, n) == 0) {
                break;
            }
        }

        if (o == NULL || o->name == NULL) {
            return aw_usage_error(usage, "unknown option \"%.*s\"",
                                  (int) n, arg);
        }

        if (!o->has_arg) {
            if (eq) {
                return aw_usage_error(usage, "option \"%s\" takes no value",
                                      o->name);
            }

            *o->value = "1";
            continue;
        }

        if (eq) {
            *o->value = eq + 1;

        } else if (i + 1 < argc) {
            *o->value = argv[++i];

        } else {
            return aw_usage_error(usage, "option \"%s\" needs a value",
                                  o->name);
        }
    }

    return 0;
}


int
aw_parse_int(const char *s, long long min, long long max, long long *out)
{
    char       *end;
    long long   v;

    if (s == NULL || *s == '\0') {
        return -1;
    }

    errno = 0;
    v = strtoll(s, &end, 10);

    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return -1;
    }

    *out = v;

    return 0;
}
