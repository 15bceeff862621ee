/*
 * Invoice delivery to the webhook (webhook.c).
 */

#ifndef AW_WEBHOOK_H
#define AW_WEBHOOK_H

#include "db.h"


/* the total time a delivery run may take: close, and invoice deliver */
#define AW_WEBHOOK_CLOSE_MS    10000
#define AW_WEBHOOK_DELIVER_MS  60000

/* webhook.c: POSTs one rendered invoice before the monotonic deadline
   (aw_webhook_clock_ms); 0 once delivered, -1 failed, 1 no time left */
long long aw_webhook_clock_ms(void);
int aw_webhook_send(MYSQL *db, long long id, const char *body,
    long long deadline_ms);


#endif /* AW_WEBHOOK_H */
