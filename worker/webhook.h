/*
 * Invoice delivery to the webhook (webhook.c).
 */

#ifndef AW_WEBHOOK_H
#define AW_WEBHOOK_H

#include "db.h"


/* webhook.c: POSTs one rendered invoice; 0 once delivered */
int aw_webhook_send(MYSQL *db, long long id, const char *body);


#endif /* AW_WEBHOOK_H */
