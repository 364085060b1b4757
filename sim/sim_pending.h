/* sim_pending.h - answers the simulator gives later, or never.
 *
 * A delayed answer (latency) is a one-shot evtimer; when it fires the
 * prepared response is sent. A held request (an injected timeout) is never
 * answered: it is kept until its client disconnects (found by a sweep that
 * peeks at held sockets once a second, a capped number per tick) or until
 * SIM_HOLD_MAX_MS, and then its connection is closed without a reply.
 * Nothing here blocks the loop. Each pending request costs one allocation
 * (its timer lives inside it). Loop thread only. */
#ifndef SIM_PENDING_H
#define SIM_PENDING_H

#include <stddef.h>
#include <stdint.h>

#define SIM_HOLD_MAX_MS 120000
#define SIM_SWEEP_INTERVAL_MS 1000
#define SIM_SWEEP_MAX 1024               /* held sockets peeked per tick */

struct event;
struct event_base;
struct evhttp_request;
struct sim_pending;

struct sim_pending_set {
    struct event_base *base;
    struct event *sweep;
    const struct timeval *hold_tv;       /* a common timeout: many same-length timers */
    struct sim_pending *delayed;         /* lists in arrival order */
    struct sim_pending *held;
    struct sim_pending *cursor;          /* where the next sweep resumes in held */
    size_t ndelayed;
    size_t nheld;
};

void sim_pending_init(struct sim_pending_set *ps, struct event_base *base);
/* Close every pending and held request without an answer; free everything. */
void sim_pending_cleanup(struct sim_pending_set *ps);

/* Send status with the response already written into req after delay_ms
 * (0: now). The set owns req until then. */
void sim_pending_answer(struct sim_pending_set *ps, struct evhttp_request *req, int status,
                        int delay_ms, int64_t start_us);

/* Never answer req (see above). The set owns req from now on. */
void sim_pending_hold(struct sim_pending_set *ps, struct evhttp_request *req, int64_t start_us);

#endif
