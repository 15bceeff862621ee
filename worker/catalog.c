/*
 * The catalog's rules (pure): names, prices, fallbacks.  See catalog.h.
 */

#include <stdio.h>
#include <string.h>

#include "aihub_worker.h"
#include "catalog.h"


static int
aw_catalog_chars_ok(const char *s, size_t max, const char *extra, int upper)
{
    size_t  n;

    n = strlen(s);

    if (n == 0 || n > max) {
        return 0;
    }

    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')
          || (upper && *s >= 'A' && *s <= 'Z')))
    {
        return 0;
    }

    for ( ; *s; s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')
            || (upper && *s >= 'A' && *s <= 'Z')
            || strchr(extra, *s) != NULL)
        {
            continue;
        }

        return 0;
    }

    return 1;
}


/* "openai/gpt-4o-mini", "mock-basic", "vendor/model:free", "m@2024.1+x" */

int
aw_catalog_model_id_ok(const char *s)
{
    return aw_catalog_chars_ok(s, AW_CATALOG_ID_MAX, "._:/@+-", 1);
}


/* the provider's own id: printable ASCII, no space, no comma */

int
aw_catalog_upstream_ok(const char *s)
{
    size_t  n;

    n = strlen(s);

    if (n == 0 || n > AW_CATALOG_ID_MAX) {
        return 0;
    }

    for ( ; *s; s++) {
        if (*s <= ' ' || *s > '~' || *s == ',' || *s == '"' || *s == '\\') {
            return 0;
        }
    }

    return 1;
}


/* a provider (the name of an aihub_provider directive) or a plan */

int
aw_catalog_name_ok(const char *s)
{
    return aw_catalog_chars_ok(s, AW_CATALOG_NAME_MAX, "_-", 0);
}


int
aw_catalog_word_ok(const char *s, const char *list)
{
    size_t       n;
    const char  *p, *bar;

    n = strlen(s);

    for (p = list; *p; p = bar + 1) {
        bar = strchr(p, '|');

        if (bar == NULL) {
            bar = p + strlen(p);
        }

        if (n > 0 && (size_t) (bar - p) == n && strncmp(p, s, n) == 0) {
            return 0;
        }

        if (*bar == '\0') {
            break;
        }
    }

    return -1;
}


int
aw_catalog_flag_parse(const char *s, int *on)
{
    if (strcmp(s, "on") == 0 || strcmp(s, "yes") == 0
        || strcmp(s, "1") == 0)
    {
        *on = 1;
        return 0;
    }

    if (strcmp(s, "off") == 0 || strcmp(s, "no") == 0
        || strcmp(s, "0") == 0)
    {
        *on = 0;
        return 0;
    }

    return -1;
}


/*
 * "0.15" (dollars per million tokens) -> 150000 micro-dollars.  At most
 * six decimals (a micro-dollar), no sign, no exponent, at most
 * AW_CATALOG_PRICE_MAX.
 */

int
aw_catalog_price_parse(const char *s, long long *micros)
{
    int        digits, frac;
    long long  v;

    v = 0;
    digits = 0;

    while (*s >= '0' && *s <= '9') {
        if (v > AW_CATALOG_PRICE_MAX / 1000000) {
            return -1;
        }

        v = v * 10 + (*s++ - '0');
        digits++;
    }

    v *= 1000000;

    if (*s == '.') {
        s++;

        for (frac = 0; *s >= '0' && *s <= '9'; frac++, s++) {
            if (frac >= 6) {
                return -1;
            }

            v += (*s - '0') * (long long) (frac == 0 ? 100000
                                           : frac == 1 ? 10000
                                           : frac == 2 ? 1000
                                           : frac == 3 ? 100
                                           : frac == 4 ? 10 : 1);
        }

        if (frac == 0) {
            return -1;
        }

        digits += frac;
    }

    if (digits == 0 || *s != '\0' || v > AW_CATALOG_PRICE_MAX) {
        return -1;
    }

    *micros = v;

    return 0;
}


/* 150000 -> "0.15", 10000000 -> "10.00", 1 -> "0.000001" */

void
aw_catalog_price_format(long long micros, char *out, size_t size)
{
    char  frac[8];
    int   n;

    if (micros < 0) {
        snprintf(out, size, "-");
        return;
    }

    snprintf(frac, sizeof(frac), "%06lld", micros % 1000000);

    for (n = 6; n > 2 && frac[n - 1] == '0'; n--) {
        frac[n - 1] = '\0';
    }

    snprintf(out, size, "%lld.%s", micros / 1000000, frac);
}


int
aw_catalog_fallbacks_parse(const char *s, aw_buf_t *out, char *bad,
    size_t bad_size)
{
    char         item[AW_CATALOG_ID_MAX + 2];
    size_t       n;
    const char  *p, *e, *end, *q;

    aw_buf_reset(out);
    bad[0] = '\0';

    if (strcmp(s, "none") == 0 || *s == '\0') {
        aw_buf_puts(out, "");
        return 0;
    }

    for (p = s; ; p = end + 1) {
        end = strchr(p, ',');

        if (end == NULL) {
            end = p + strlen(p);
        }

        e = end;

        while (p < e && (*p == ' ' || *p == '\t')) {
            p++;
        }

        while (e > p && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }

        n = (size_t) (e - p);

        if (n == 0) {
            return -1;
        }

        snprintf(item, sizeof(item), "%.*s",
                 (int) (n > AW_CATALOG_ID_MAX ? AW_CATALOG_ID_MAX + 1 : n),
                 p);
        snprintf(bad, bad_size, "%s", item);

        if (!aw_catalog_model_id_ok(item)) {
            return -1;
        }

        /* a duplicate: the item is already in out, as a whole */

        if (out->len) {
            for (q = out->data; (q = strstr(q, item)) != NULL; q += n) {
                if ((q == out->data || q[-1] == ',')
                    && (q[n] == ',' || q[n] == '\0'))
                {
                    return -1;
                }
            }

            aw_buf_puts(out, ",");
        }

        aw_buf_append(out, item, n);

        if (*end == '\0') {
            break;
        }
    }

    bad[0] = '\0';

    return 0;
}


static const aw_catalog_model_t *
aw_catalog_find(const aw_catalog_model_t *m, size_t n, const char *id,
    size_t len)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (strlen(m[i].id) == len && strncmp(m[i].id, id, len) == 0) {
            return &m[i];
        }
    }

    return NULL;
}


int
aw_catalog_check(const aw_catalog_model_t *m, size_t n, const char *about,
    aw_buf_t *err, size_t *first)
{
    int                        problems, problem;
    size_t                     i, len;
    const char                *p, *end;
    const aw_catalog_model_t  *f;

    problems = 0;

    for (i = 0; i < n; i++) {
        if (m[i].fallbacks == NULL || m[i].fallbacks[0] == '\0') {
            continue;
        }

        for (p = m[i].fallbacks; ; p = end + 1) {
            end = strchr(p, ',');

            if (end == NULL) {
                end = p + strlen(p);
            }

            len = (size_t) (end - p);

            if (about != NULL && strcmp(m[i].id, about) != 0
                && !(strlen(about) == len && strncmp(about, p, len) == 0))
            {
                goto next;
            }

            f = aw_catalog_find(m, n, p, len);
            problem = 1;

            if (f == &m[i]) {
                aw_buf_printf(err, "model %s: it cannot be its own "
                              "fallback\n", m[i].id);

            } else if (f == NULL) {
                aw_buf_printf(err, "model %s: fallback \"%.*s\" is not in "
                              "the catalog\n", m[i].id, (int) len, p);

            } else if (strcmp(f->kind, m[i].kind) != 0) {
                aw_buf_printf(err, "model %s (kind %s): fallback %s is of "
                              "kind %s\n", m[i].id, m[i].kind, f->id,
                              f->kind);

            } else if (strcmp(f->tier, m[i].tier) != 0) {
                aw_buf_printf(err, "model %s (tier %s): fallback %s is of "
                              "tier %s; a fallback must be of the same "
                              "tier\n", m[i].id, m[i].tier, f->id, f->tier);

            } else {
                problem = 0;
            }

            if (problem && problems++ == 0 && first) {
                *first = i;
            }

        next:

            if (*end == '\0') {
                break;
            }
        }
    }

    return problems;
}
