/* sim_webhook.h - the webhooks the simulator sends to the Conveyor API.
 *
 * Pushing carriers (SEUR, OnTime, Correos Express) tell the API about their
 * shipments: after sim.webhook_delay_ms from a create they POST
 *
 *   <sim.webhook_url>/api/v1/carriers/<carrier>/webhook
 *
 * with carrier one of "seur", "ontime", "correos-express" ("tipsa" never
 * pushes: it is polled), signed with the Standard Webhooks scheme
 * (https://www.standardwebhooks.com):
 *
 *   webhook-id: msg_<uuid>             the same on every retry of one message
 *   webhook-timestamp: <unix seconds>  when this attempt was signed
 *   webhook-signature: v1,<base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>"))>
 *   Content-Type: application/json
 *
 * where sim.webhook_secret is "whsec_<base64 key>" and key is the decoded
 * bytes (one secret for all carriers). The body is our documented
 * carrier-tracking shape; the API validates it field by field:
 *
 *   {"type":"shipment.tracking",
 *    "timestamp":"2025-06-01T10:00:00.123Z",          RFC 3339, when the carrier emitted it
 *    "data":{"carrier":"seur",
 *            "reference":"<the order id the client sent as its reference>",
 *            "expedition_id":"<the carrier's shipment id>",
 *            "tracking_number":"<tracking number>",
 *            "status":"ACCEPTED|IN_TRANSIT|OUT_FOR_DELIVERY|DELIVERED|EXCEPTION",
 *            "event_at":"2025-06-01T10:00:00.123Z",   RFC 3339 with ms, when it happened
 *            "seq":1,                                 1, 2, 3... per shipment, in event order
 *            "description":"..."}}
 *
 * ACCEPTED comes first, then IN_TRANSIT and DELIVERED after
 * sim.transit_delay_ms and sim.deliver_delay_ms (0 = not sent). A reply that
 * is not 2xx (or none within 5 s) is retried with the same webhook-id after
 * 0.5, 1, 2 and 4 s, then given up (counted as failed).
 *
 * Mercado Livre notifications go through the same sender, unsigned (the real
 * one does not sign), to <sim.webhook_url>/api/webhook/mercado-livre.
 *
 * Faults, each "the next N messages" and/or "this fraction of messages":
 * duplicate (the same message, same webhook-id, sent twice), reverse (a
 * shipment's events sent newest first), bad_signature (a wrong v1
 * signature), stale (a timestamp 10 minutes old, correctly signed).
 *
 * With sim.webhook_url empty nothing is sent (messages are counted as
 * skipped). Everything is non-blocking on the sim's loop (evhttp client,
 * a few keep-alive connections). Loop thread only. */
#ifndef SIM_WEBHOOK_H
#define SIM_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#define SIM_WH_ATTEMPTS 5
#define SIM_WH_TIMEOUT_S 5
#define SIM_WH_STALE_S 600
#define SIM_WH_CONNS 4
#define SIM_WH_KEY_MAX 64

struct event_base;
struct sim_rng;
struct sim_ship;

struct sim_wh_faults {
    int64_t duplicate_next;
    double duplicate_rate;
    int64_t reverse_next;                /* counted per shipment */
    double reverse_rate;
    int64_t bad_signature_next;
    double bad_signature_rate;
    int64_t stale_next;
    double stale_rate;
};

struct sim_wh_stats {
    int64_t scheduled;                   /* messages queued (duplicates included) */
    int64_t attempts;                    /* POSTs started */
    int64_t delivered;                   /* 2xx answers */
    int64_t retries;                     /* attempts after a failed one */
    int64_t failed;                      /* given up after SIM_WH_ATTEMPTS */
    int64_t skipped;                     /* not sent: no sim.webhook_url */
    int64_t duplicates, reversed, bad_signatures, stale;   /* faults injected */
};

struct sim_webhook;

/* A sender for url (the API's base, may be "" = disabled) signing with secret
 * ("whsec_<base64>"). NULL after logging why when the url or secret is not
 * valid. Free with sim_webhook_free(), which drops whatever is still queued. */
struct sim_webhook *sim_webhook_new(struct event_base *base, struct sim_rng *rng,
                                    const char *url, const char *secret);
void sim_webhook_free(struct sim_webhook *w);     /* NULL-safe */

/* Queue the tracking webhooks of shipment sp (stored under reference) for
 * carrier, at the times of its schedule; f decides the faults. */
void sim_webhook_shipment(struct sim_webhook *w, const char *carrier, const struct sim_ship *sp,
                          struct sim_wh_faults *f);

/* Queue one unsigned JSON POST to <url><path> now (Mercado Livre notifications). */
void sim_webhook_post(struct sim_webhook *w, const char *path, const char *body);

/* Drop every queued message (admin reset); the counters too. */
void sim_webhook_reset(struct sim_webhook *w);

const struct sim_wh_stats *sim_webhook_stats(const struct sim_webhook *w);
size_t sim_webhook_queued(const struct sim_webhook *w);

#endif
