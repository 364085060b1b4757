/* sim.h - the simulator process: one event loop, one HTTP server, and the
 * state of every outside system it stands in for.
 *
 * conveyor-sim replaces the systems Conveyor calls (today the offer
 * activation system; later the marketplace and the carriers) with a real
 * HTTP server whose latency and failures tests control at run time through
 * /admin. Each system is one sim_<system>.c that adds its routes with
 * sim_route_add() from its sim_<system>_register(). Everything runs on the
 * one libevent loop in main.c: handlers never block and never sleep; a slow
 * answer is a timer (sim_pending.h). */
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
