/*
 * A growing string buffer and allocation helpers that never return NULL:
 * the worker is a short-lived CLI or a daemon with bounded memory, and an
 * allocation failure is fatal.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aihub_worker.h"


void *
aw_xmalloc(size_t n)
{
    void  *p;

    p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, AW_NAME ": out of memory\n");
        abort();
    }

    return p;
}


char *
aw_xstrdup(const char *s)
{
    size_t   n;
    char    *p;

    n = strlen(s) + 1;
    p = aw_xmalloc(n);
    memcpy(p, s, n);

    return p;
}


void
aw_buf_init(aw_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


void
aw_buf_free(aw_buf_t *b)
{
    free(b->data);
    aw_buf_init(b);
}


void
aw_buf_reset(aw_buf_t *b)
{
    b->len = 0;

    if (b->data) {
        b->data[0] = '\0';
    }
}


static void
aw_buf_grow(aw_buf_t *b, size_t need)
{
    size_t   cap;
    char    *p;

    if (b->len + need + 1 <= b->cap) {
        return;
    }

    cap = b->cap ? b->cap : 256;

    while (cap < b->len + need + 1) {
        cap *= 2;
    }

    p = realloc(b->data, cap);
    if (p == NULL) {
        fprintf(stderr, AW_NAME ": out of memory\n");
        abort();
    }

    b->data = p;
    b->cap = cap;
}


void
aw_buf_append(aw_buf_t *b, const char *s, size_t n)
{
    aw_buf_grow(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}


void
aw_buf_puts(aw_buf_t *b, const char *s)
{
    aw_buf_append(b, s, strlen(s));
}


void
aw_buf_printf(aw_buf_t *b, const char *fmt, ...)
{
    va_list  ap;
    int      n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);

    if (n < 0) {
        return;
    }

    aw_buf_grow(b, (size_t) n);

    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
    va_end(ap);

    b->len += (size_t) n;
}


/* a number in decimal (the drain's INSERT writes a dozen per event) */

void
aw_buf_put_ull(aw_buf_t *b, unsigned long long v)
{
    char   tmp[24], *p;

    p = tmp + sizeof(tmp);

    do {
        *--p = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    aw_buf_append(b, p, (size_t) (tmp + sizeof(tmp) - p));
}


void
aw_buf_put_ll(aw_buf_t *b, long long v)
{
    if (v < 0) {
        aw_buf_append(b, "-", 1);
        aw_buf_put_ull(b, 0ULL - (unsigned long long) v);
        return;
    }

    aw_buf_put_ull(b, (unsigned long long) v);
}
