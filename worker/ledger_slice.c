/*
 * A transaction's share of a round: as many events as its statements
 * may carry on this connection.
 */

#include <stdio.h>
#include <string.h>

#include "aihub_worker.h"
#include "ledger_state.h"


/*
 * How many of the n events (--batch at most) one transaction stores: its
 * statements must fit the server's max_allowed_packet (16 MB by default:
 * --batch 100000 of 250-byte rows passed it, MySQL refused the INSERT
 * whole and dropped the connection, and the same batch went again for
 * ever, nothing stored).  Half of it, each string counted escaped at its
 * worst; one event at least.
 */

size_t
aw_drain_slice(aw_drain_t *d, const aw_entry_t *en, size_t n)
{
    size_t             i, bytes, budget;
    const aw_event_t  *ev;

    if (n > (size_t) d->batch) {
        n = (size_t) d->batch;
    }

    budget = (d->packet_max ? d->packet_max : AW_PACKET_GUESS) / 2;
    bytes = AW_INSERT_HEAD;

    for (i = 0; i < n; i++) {
        if (en[i].reason) {
            continue;
        }

        ev = &en[i].ev;
        bytes += AW_INSERT_ROW
                 + 2 * (strlen(ev->id) + strlen(ev->key) + strlen(ev->plan)
                        + strlen(ev->model) + strlen(ev->provider)
                        + strlen(ev->node));

        if (bytes > budget && i > 0) {
            break;
        }
    }

    return i;
}
