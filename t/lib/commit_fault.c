/*
 * A fault for t/70: preloaded into aihub-worker, it makes MySQL refuse the
 * COMMIT of any transaction that wrote the model "commit-poison", with a
 * data error (ER_ERROR_DURING_COMMIT, 1180), as a storage engine or a
 * replication hook may.  The transaction is rolled back for real; every
 * other statement goes to the client library unchanged.
 *
 *   cc -shared -fPIC -o commit_fault.so commit_fault.c -ldl
 */

#define _GNU_SOURCE

#include <dlfcn.h>
#include <string.h>
#include <strings.h>

#include <mysql.h>


#define POISON  "commit-poison"


static MYSQL  *poisoned;
static MYSQL  *refused;


static void *
real(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}


int
mysql_real_query(MYSQL *db, const char *q, unsigned long len)
{
    int  (*f)(MYSQL *, const char *, unsigned long);

    f = real("mysql_real_query");

    if (refused == db) {
        refused = NULL;
    }

    if (memmem(q, len, POISON, sizeof(POISON) - 1) != NULL) {
        poisoned = db;
    }

    return f(db, q, len);
}


/* the drain's batch INSERT is sent, then its answer read */

int
mysql_send_query(MYSQL *db, const char *q, unsigned long len)
{
    int  (*f)(MYSQL *, const char *, unsigned long);

    f = real("mysql_send_query");

    if (refused == db) {
        refused = NULL;
    }

    if (memmem(q, len, POISON, sizeof(POISON) - 1) != NULL) {
        poisoned = db;
    }

    return f(db, q, len);
}


int
mysql_query(MYSQL *db, const char *q)
{
    int  (*f)(MYSQL *, const char *);

    f = real("mysql_query");

    if (refused == db) {
        refused = NULL;
    }

    if (strcasecmp(q, "COMMIT") == 0 && poisoned == db) {
        poisoned = NULL;
        f(db, "ROLLBACK");
        refused = db;
        return 1;
    }

    if (strcasecmp(q, "ROLLBACK") == 0
        || strcasecmp(q, "START TRANSACTION") == 0)
    {
        if (poisoned == db) {
            poisoned = NULL;
        }
    }

    return f(db, q);
}


unsigned int
mysql_errno(MYSQL *db)
{
    unsigned int  (*f)(MYSQL *);

    f = real("mysql_errno");

    return refused == db ? 1180 : f(db);
}


const char *
mysql_error(MYSQL *db)
{
    const char  *(*f)(MYSQL *);

    f = real("mysql_error");

    return refused == db ? "Got error 1 \"injected\" during COMMIT" : f(db);
}
