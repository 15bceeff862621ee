/*
 * Invoice delivery: each issued invoice is POSTed as JSON to the
 * configured webhook, signed with HMAC-SHA256 over the time of sending and
 * the exact body ("X-Aihub-Signature: t=<unix s>,v1=<hex of HMAC(secret,
 * t + "." + body)>", so a captured delivery cannot be replayed once the
 * receiver's tolerance has passed), with a stable idempotency key
 * ("Idempotency-Key: aihub-invoice-<id>") so the receiver can drop
 * repeats.  Retried with backoff; every attempt is recorded in
 * webhook_deliveries.  Takes the invoice already rendered (invoice.c
 * renders it and calls this file, never the other way); runs from "invoice
 * close" and "invoice deliver", never from the drain, so a failing webhook
 * cannot block it.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <mysql.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "aihub_worker.h"
#include "db.h"
#include "webhook.h"


#define AW_WEBHOOK_ATTEMPTS  4


void
aw_hmac_sha256_hex(const char *key, const char *data, size_t len, char *out)
{
    unsigned char  md[EVP_MAX_MD_SIZE];
    unsigned int   n, i;
    static const char  hex[] = "0123456789abcdef";

    n = 0;
    HMAC(EVP_sha256(), key, (int) strlen(key), (const unsigned char *) data,
         len, md, &n);

    for (i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }

    out[2 * n] = '\0';
}


long long
aw_webhook_clock_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static size_t
aw_curl_discard(char *p, size_t size, size_t n, void *data)
{
    (void) p;
    (void) data;

    return size * n;
}


/* one POST; returns the HTTP status, 0 on a transport error (in err) */

static long
aw_webhook_post(const char *body, long long id, int attempt, long ms,
    char *err, size_t errsize)
{
    CURL               *c;
    CURLcode            rc;
    struct curl_slist  *h;
    long                status;
    long long           t;
    char                line[256], sig[2 * EVP_MAX_MD_SIZE + 1];
    char                cerr[CURL_ERROR_SIZE];
    aw_buf_t            signed_text;

    c = curl_easy_init();
    if (c == NULL) {
        snprintf(err, errsize, "curl_easy_init() failed");
        return 0;
    }

    t = (long long) time(NULL);

    aw_buf_init(&signed_text);
    aw_buf_printf(&signed_text, "%lld.", t);
    aw_buf_puts(&signed_text, body);
    aw_hmac_sha256_hex(aw_cfg.webhook_secret, signed_text.data,
                       signed_text.len, sig);
    aw_buf_free(&signed_text);

    h = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(line, sizeof(line), "X-Aihub-Signature: t=%lld,v1=%s", t, sig);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "Idempotency-Key: aihub-invoice-%lld", id);
    h = curl_slist_append(h, line);
    h = curl_slist_append(h, "X-Aihub-Event: invoice.issued");
    snprintf(line, sizeof(line), "X-Aihub-Delivery-Attempt: %d", attempt);
    h = curl_slist_append(h, line);

    cerr[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, aw_cfg.webhook_url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_USERAGENT, AW_NAME);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms < 10000 ? ms : 10000L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms < 5000 ? ms : 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, aw_curl_discard);

    status = 0;
    rc = curl_easy_perform(c);

    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        snprintf(err, errsize, "%s", status >= 200 && status < 300 ? ""
                                     : "non-2xx answer");

    } else {
        snprintf(err, errsize, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
    }

    curl_slist_free_all(h);
    curl_easy_cleanup(c);

    return status;
}


/*
 * POSTs one rendered invoice, retrying with backoff, until it is delivered
 * or deadline_ms (aw_webhook_clock_ms) has come; records every attempt.
 * Returns 0 once delivered, -1 when every attempt failed, 1 when no time
 * was left for a first attempt.
 */

int
aw_webhook_send(MYSQL *db, long long id, const char *body,
    long long deadline_ms)
{
    int         attempt, tries;
    long        status;
    long long   left, backoff;
    char        err[CURL_ERROR_SIZE + 32], n[5][40];
    const char *v[7];

    if (deadline_ms - aw_webhook_clock_ms() < 100) {
        return 1;
    }

    attempt = (int) aw_db_scalar(db, 0, "SELECT COUNT(*) FROM "
                                 "webhook_deliveries WHERE invoice = "
                                 "%lld", id);
    backoff = 500;
    status = 0;

    curl_global_init(CURL_GLOBAL_DEFAULT);

    for (tries = 0; tries < AW_WEBHOOK_ATTEMPTS; tries++) {
        left = deadline_ms - aw_webhook_clock_ms();

        if (left < 100) {
            break;
        }

        attempt++;
        status = aw_webhook_post(body, id, attempt, (long) left, err,
                                 sizeof(err));

        err[200] = '\0';
        snprintf(n[0], sizeof(n[0]), "%lld", id);
        snprintf(n[1], sizeof(n[1]), "aihub-invoice-%lld", id);
        snprintf(n[2], sizeof(n[2]), "%d", attempt);
        snprintf(n[3], sizeof(n[3]), "%ld", status);
        snprintf(n[4], sizeof(n[4]), "%d", status >= 200 && status < 300);
        v[0] = n[0];
        v[1] = aw_cfg.webhook_url;
        v[2] = n[1];
        v[3] = n[2];
        v[4] = n[3];
        v[5] = err;
        v[6] = n[4];
        aw_db_exec_params(db, "INSERT INTO webhook_deliveries (invoice, url, "
                          "idempotency_key, attempt, http_status, error, "
                          "delivered) VALUES (?, ?, ?, ?, ?, ?, ?)", v, 7);

        if (status >= 200 && status < 300) {
            break;
        }

        aw_log(AW_LOG_WARN, "webhook delivery of invoice %lld, attempt "
               "%d: %s%s%ld", id, attempt, err, status ? ", HTTP " : "",
               status);

        if (tries + 1 < AW_WEBHOOK_ATTEMPTS) {
            left = deadline_ms - aw_webhook_clock_ms();
            usleep((useconds_t) ((backoff < left ? backoff
                                                 : (left > 0 ? left : 0))
                                 * 1000));
            backoff *= 2;
        }
    }

    curl_global_cleanup();

    return status >= 200 && status < 300 ? 0 : -1;
}
