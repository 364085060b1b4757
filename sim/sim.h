/* sim.h - the simulator process: one event loop, one HTTP server, and the
 * state of every outside system it stands in for.
 *
 * conveyor-sim replaces the systems Conveyor calls (today the offer
 * activation system; later the marketplace and the carriers) with a real
 * HTTP server whose latency and failures tests control at run time through
 * /admin. Each system is one sim_<system>.c that adds its routes with
 * sim_route_add() from its sim_<system>_register(). Everything runs on the
 * one libevent loop in main.c: handlers never block and never sleep; a slow
 * answer is a timer (sim_pending.h).
 *
 * Systems and their path prefixes (each file's header documents its routes):
 *   /activate, /activations/   offer activation      sim_activation.h
 *   /mirakl/api/orders...      Mirakl seller API     sim_mirakl.h
 *   /tipsa/SOAP                TIPSA (SOAP, polled)  sim_tipsa.h
 *   /seur/...                  SEUR (pushes)         sim_seur.h
 *   /cex/...                   Correos Express       sim_cex.h
 *   /ontime/...                OnTime (batches)      sim_ontime.h
 *   /meli/...                  Mercado Livre         sim_meli.h
 * An upstream base URL in Conveyor's config is http://127.0.0.1:PORT/<prefix>.
 *
 * Admin API (no authentication: the sim binds 127.0.0.1 and is a test tool):
 *   GET/POST /admin/config, GET /admin/stats   the activation system (sim_admin.h)
 *   POST /admin/reset                          everything back to the start config:
 *                                              records, stats, faults, credentials,
 *                                              tokens, queued webhooks
 *   GET/POST /admin/<system>/faults            per-system faults (sim_sys.h lists the
 *                                              fields: latency, error_rate/status,
 *                                              timeout_rate, fail_next,
 *                                              apply_then_timeout_next, throttle_next /
 *                                              throttle_on + retry_after_s (429 mode),
 *                                              unauthorized_next, token_ttl_s, fail_keys,
 *                                              webhook_{duplicate,reverse,bad_signature,
 *                                              stale}_{next,rate}, expire_tokens_now)
 *   GET      /admin/<system>/stats             calls, faults fired, logins, and per
 *                                              reference create counts (carriers),
 *                                              per-operation calls and per-order
 *                                              OR23/OR24 (Mirakl), webhook counters
 *   GET/POST /admin/<system>/credentials       the demo credentials (names only on GET)
 *   POST     /admin/mirakl/orders|budget|order_rate, GET /admin/mirakl/orders/{id}
 *   POST     /admin/meli/orders|notify
 * <system> is mirakl, tipsa, seur, cex, ontime or meli. Webhooks: sim_webhook.h. */
#ifndef SIM_H
#define SIM_H

#include "sim_faults.h"
#include "sim_http.h"
#include "sim_pending.h"
#include "sim_sys.h"

struct cfg;
struct event_base;
struct evhttp;
struct sim_activation;
struct sim_webhook;

struct sim {
    const struct cfg *cfg;
    struct event_base *base;
    struct evhttp *http;
    struct sim_router router;
    struct sim_pending_set pending;
    struct sim_rng rng;
    struct sim_faults faults;            /* live; changed by POST /admin/config */
    struct sim_faults faults_start;      /* from the config; POST /admin/reset restores it */
    struct sim_activation *act;
    struct sim_sys *sys[SIM_SYS_N];      /* the order pipeline's systems (sim_sys.h) */
    int sys_admin_routed;                /* the /admin/<system>/ route is added */
    struct sim_webhook *wh;              /* carrier webhooks and notifications to the API */
};

#endif
