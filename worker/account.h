/*
 * Accounts and plans by name (account.c).
 */

#ifndef AW_ACCOUNT_H
#define AW_ACCOUNT_H

#include "db.h"


/* account.c */

long long aw_account_id(MYSQL *db, const char *name);
long long aw_plan_id(MYSQL *db, const char *name);
int aw_account_name_ok(const char *name);
int aw_has_control(const char *s);
long long aw_account_create(MYSQL *db, const char *name, const char *plan);


#endif /* AW_ACCOUNT_H */
