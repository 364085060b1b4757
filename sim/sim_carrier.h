/* sim_carrier.h - what the simulated carriers share: a system (sim_sys.h)
 * with a shipment store (sim_ship.h), creates that may fail validation, and
 * the webhooks of the carriers that push (sim_webhook.h).
 *
 * Each carrier file (sim_seur.c, sim_ontime.c, sim_cex.c, sim_tipsa.c)
 * embeds a struct sim_carrier first, parses its own request shape, and calls
 * sim_carrier_create() for the effect. Its /admin/<name>/stats adds
 *   "shipments_created": creates since reset (a repeated reference counts again),
 *   "references": {"<ref>":{"creates":n,"code":"...","tracking":"..."}, ...}
 *                 (the first SIM_CARRIER_STATS_REFS references)
 *   and, for pushing carriers, "webhooks": the sender's counters.
 * Loop thread only. */
#ifndef SIM_CARRIER_H
#define SIM_CARRIER_H

#include "sim_ship.h"
#include "sim_sys.h"

#define SIM_CARRIER_STATS_REFS 10000

struct sim_carrier {
    struct sim_sys sys;                  /* first: a struct sim_sys * is a struct sim_carrier * */
    struct sim_ships ships;
    const char *push_name;               /* the webhook path's carrier name; NULL = never pushes */
    const char *code_prefix;             /* shipment codes: prefix + 10 digits */
    const char *trk_prefix;              /* tracking numbers: prefix + 10 digits */
};

/* Set up k (sim_sys_init and the shipment store); the caller sets
 * k->sys.put_error and k->sys.free. */
void sim_carrier_init(struct sim *s, struct sim_carrier *k, enum sim_sys_id id, const char *name,
                      const char *push_name, const char *code_prefix, const char *trk_prefix,
                      const struct sim_cred_def *defs, int ndefs, int token_ttl_s);
void sim_carrier_cleanup(struct sim_carrier *k);

/* Create a shipment for reference ref to postal code zip (may be NULL):
 * refused (NULL, *why set to a sentence, validation_errors counted) when ref
 * is empty or longer than 39 bytes, or ref or zip is in fail_keys; else the
 * record, with its webhooks queued when the carrier pushes. */
struct sim_ship *sim_carrier_create(struct sim *s, struct sim_carrier *k, const char *ref,
                                    const char *zip, const char **why);

/* Events of sp up to now as a JSON array [{"status","seq","event_at"}, ...]. */
void sim_carrier_put_events(struct evbuffer *out, const struct sim_ship *sp);

#endif
