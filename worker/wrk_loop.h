/* wrk_loop.h - the worker's main loop. */
#ifndef CV_WRK_LOOP_H
#define CV_WRK_LOOP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "wrk.h"

struct broker;

struct wrk {
    const struct cfg *cfg;
    struct broker *broker;
    struct wrk_ctx ctx;
    char name[128];
    char **types;
    size_t ntypes;
    size_t batch;
    int64_t started_ms;
    uint64_t processed;
    uint64_t hb_processed;    /* processed at the previous heartbeat */
    volatile sig_atomic_t *stop;
    int64_t stop_seen_ms;     /* monotonic time the stop was first noticed, 0 before */
    int infra_down;           /* our PostgreSQL or Redis failed: pause before consuming */
    int64_t sched_period[JT_N]; /* wrk_sched.c: the last period published, per type */
};

/* 1 once a stop was asked for and the grace period (worker.grace_ms) is over:
 * outbound calls still running are abandoned. arg is the struct wrk. */
int wrk_past_grace(void *arg);

/* Run until *stop is set; the batch in hand is finished first. Returns the
 * exit code. */
int wrk_run(struct wrk *w, volatile sig_atomic_t *stop);

/* wrk_reconcile.c: one pass of the reconciler of held money, when this worker
 * has PostgreSQL and holds the fleet's lease on the duty. */
void wrk_reconcile_tick(struct wrk *w);

/* wrk_sched.c: enqueue the scheduled jobs that are due (jobs.types.<name>.every_s):
 * exactly one job per type and period across the fleet. Cheap when none is due. */
void wrk_sched_tick(struct wrk *w);

#endif
