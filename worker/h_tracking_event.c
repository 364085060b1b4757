/* h_tracking_event.c - apply one carrier tracking event to its order (seed
 * 004, step 4), whether it came by webhook (the API enqueued it) or by a
 * change feed.
 *
 * cv_order_track (0002_orders.sql) decides, in one transaction:
 *   the order does not exist yet, or is not yet AWAITING_TRACKING
 *       -> the event is kept (tracking_pending) and applied, in event order,
 *          when carrier-post moves the order to AWAITING_TRACKING: never lost;
 *   older than the last event applied (event_at, then seq)
 *       -> history only: a delivered-then-in-transit pair never moves back;
 *   a webhook id seen before -> nothing (a duplicate delivery);
 *   else carrier_status is updated and AWAITING_TRACKING -> TRACKED (or
 *       FAILED_TRACKING on a terminal exception).
 * An order that became TRACKED gets its tracking-push follow-up. The job holds
 * the order's claim while it applies, so two events of one order never apply
 * at once; the claim also fences a delivery that was reclaimed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "log.h"
#include "ord.h"

static void one(struct wrk_ctx *ctx, struct job *j, struct wrk_result *r)
{
    cJSON *p = json_parse(j->payload, j->payload_len);
    char order_id[80], carrier[40], status[40], event_at[48], tn[80], wid[260], seq[24],
        term[8], trace[33];
    car_json_str(p, "order_id", order_id, sizeof(order_id));
    car_json_str(p, "carrier", carrier, sizeof(carrier));
    car_json_str(p, "status", status, sizeof(status));
    car_json_str(p, "event_at", event_at, sizeof(event_at));
    car_json_str(p, "tracking_number", tn, sizeof(tn));
    car_json_str(p, "webhook_id", wid, sizeof(wid));
    car_json_str(p, "seq", seq, sizeof(seq));
    car_json_str(p, "terminal", term, sizeof(term));
    cJSON_Delete(p);
    ord_trace_id(j, trace);

    for (char *c = status; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    const struct car *car = car_find(carrier);
    int terminal = term[0] == '1';
    int st = car && car->status_map ? car->status_map(status, &terminal) : otrack_parse(status);
    if (st < 0) {
        wrk_fail(r, CV_ERR_PERMANENT, "unknown tracking status '%s' from %s", status, carrier);
        return;
    }
    int claimed = 0;
    enum cv_rc crc = ord_claim(ctx, j, order_id, r);
    if (crc == CV_OK)
        claimed = 1;
    else if (crc != CV_ERR_NOT_FOUND)
        return;           /* busy, fenced or unavailable: r says so */

    struct ostore_event e;
    memset(&e, 0, sizeof(e));
    e.order_id = order_id;
    e.carrier = carrier;
    e.status = (enum otrack)st;
    e.terminal = terminal;
    e.event_at = event_at;
    e.has_seq = seq[0] != '\0';
    e.seq = e.has_seq ? atoll(seq) : 0;
    e.tracking_number = tn[0] ? tn : NULL;
    e.webhook_id = wid[0] ? wid : NULL;
    e.payload_json = j->payload;
    e.job_id = j->id;
    e.epoch = j->epoch;
    e.trace_id = trace;
    enum ostore_result res;
    int state = -1;
    enum cv_rc rc = ostore_track(ctx->db, &e, &res, &state);
    r->rc = CV_OK;
    if (rc != CV_OK) {
        wrk_fail(r, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(rc));
    } else if (res == OSTORE_FENCED) {
        wrk_fail(r, CV_ERR_FENCED, "a newer delivery holds order %s", order_id);
    } else if (res == OSTORE_BUSY) {
        wrk_fail(r, CV_ERR_BUSY, "order %s is held by another job", order_id);
        r->delay_ms = 500;
    } else if (res == OSTORE_OK && state == OSTATE_TRACKED) {
        /* the push's key counts the order's failures, so a retried order pushes again */
        ord_follow_push(ctx, j, order_id, r);
    }
    LOG_INFO("order.tracking_event", "order_id=%s carrier=%s status=%s result=%s state=%s",
             order_id, carrier, status, rc == CV_OK ? ostore_result_str(res) : "error",
             state >= 0 ? ostate_str((enum ostate)state) : "none");
    if (claimed && r->rc != CV_ERR_FENCED)
        ord_release(ctx, j, order_id);
}

void h_tracking_event(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res)
{
    for (size_t i = 0; i < n; i++)
        one(ctx, jobs[i], &res[i]);
}
