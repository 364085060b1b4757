/* ostate.h - the order state machine (issue 6): states, the one transition
 * table, and the carrier tracking vocabulary. Pure: no I/O, no allocation,
 * callable from any thread.
 *
 * Lifecycle (seed 004, "State Transitions"):
 *
 *   PENDING_POST -> POSTED -> AWAITING_TRACKING -> TRACKED -> MIRAKL_OK -> COMPLETE
 *        |            |              |                |
 *   FAILED_POST  FAILED_POST  FAILED_TRACKING    FAILED_PUSH
 *
 *   PENDING_POST       fetched from the marketplace, ready for a carrier (order-fetch)
 *   POSTED             the carrier accepted the shipment (carrier-post)
 *   AWAITING_TRACKING  carrier code, expedition id and tracking number recorded;
 *                      waiting for the carrier to confirm tracking (carrier-post)
 *   TRACKED            the carrier confirmed tracking (a tracking event)
 *   MIRAKL_OK          tracking pushed to the marketplace, OR23 (tracking-push)
 *   COMPLETE           shipped on the marketplace, OR24 (tracking-push); terminal
 *
 * Seed 004 says a FAILED_* state goes to "previous state or PENDING_POST". We read
 * "previous state" as the state whose step failed and is retried:
 *   FAILED_POST     -> PENDING_POST                 (posting starts again; the state
 *                                                    before it is PENDING_POST either way)
 *   FAILED_TRACKING -> AWAITING_TRACKING | PENDING_POST
 *   FAILED_PUSH     -> TRACKED | PENDING_POST
 * PENDING_POST from FAILED_TRACKING/FAILED_PUSH is the operator's "post it again"
 * (a new shipment). There is no edge into a FAILED_* state from another FAILED_*
 * state and none out of COMPLETE.
 *
 * The same edges are rows of the PostgreSQL table order_edges
 * (migrations/0002_orders.sql); tests/integ/test_ostore.c checks that both agree.
 * A change of the table is a change of both, and of tests/unit/test_ostate.c. */
#ifndef CV_OSTATE_H
#define CV_OSTATE_H

enum ostate {
    OSTATE_PENDING_POST,
    OSTATE_POSTED,
    OSTATE_AWAITING_TRACKING,
    OSTATE_TRACKED,
    OSTATE_MIRAKL_OK,
    OSTATE_COMPLETE,
    OSTATE_FAILED_POST,
    OSTATE_FAILED_TRACKING,
    OSTATE_FAILED_PUSH,
    OSTATE_N
};

/* The stable upper-case name ("PENDING_POST"), as stored in orders.internal_state.
 * "?" for a value out of range. Never NULL. */
const char *ostate_str(enum ostate s);

/* The state named s (exact, upper case), or -1 when unknown or NULL. */
int ostate_parse(const char *s);

/* 1 when the table has the edge from -> to, else 0 (also for values out of range).
 * A state to itself is not an edge: callers treat it as an idempotent no-op. */
int ostate_allowed(enum ostate from, enum ostate to);

/* Progress along the happy path: PENDING_POST 0, POSTED 1, AWAITING_TRACKING 2,
 * TRACKED 3, MIRAKL_OK 4, COMPLETE 5. A FAILED_* state ranks with the state its
 * failed step was trying to reach: FAILED_POST 1, FAILED_TRACKING 3, FAILED_PUSH 4.
 * Every edge keeps or raises the rank except the retry edges out of a FAILED_*
 * state; code that applies information of unknown age (a re-fetch, a late tracking
 * event) never lowers it. -1 for a value out of range. */
int ostate_rank(enum ostate s);

/* 1 for COMPLETE (no edge leaves it). */
int ostate_terminal(enum ostate s);

/* 1 for FAILED_POST, FAILED_TRACKING, FAILED_PUSH. */
int ostate_failed(enum ostate s);

/* ---- carrier tracking ---------------------------------------------------------
 * Every carrier's own status codes are normalised to these five by its client
 * (worker side); orders.carrier_status stores the name. What a tracking event
 * does to an order in AWAITING_TRACKING (otrack_target):
 *   ACCEPTED, IN_TRANSIT, OUT_FOR_DELIVERY, DELIVERED -> TRACKED (the carrier
 *       confirms it tracks the parcel: ACCEPTED or any later status)
 *   EXCEPTION with the carrier's terminal flag (lost, refused, returned)
 *                                                      -> FAILED_TRACKING
 *   EXCEPTION without it (a delay, a failed attempt)   -> no state change
 * Events move nothing in other states; they only update carrier_status when they
 * are newer than the last one applied (cv_order_track in 0002_orders.sql, whose
 * cv_otrack_target must give the same answers). */
enum otrack {
    OTRACK_ACCEPTED,
    OTRACK_IN_TRANSIT,
    OTRACK_OUT_FOR_DELIVERY,
    OTRACK_DELIVERED,
    OTRACK_EXCEPTION,
    OTRACK_N
};

/* "ACCEPTED", ...; "?" out of range. Never NULL. */
const char *otrack_str(enum otrack t);

/* The status named s (exact, upper case), or -1 when unknown or NULL. */
int otrack_parse(const char *s);

/* The state an order in AWAITING_TRACKING moves to on an event with status t
 * (terminal: the carrier flagged the exception as final), or -1 for none. */
int otrack_target(enum otrack t, int terminal);

#endif
