/* wrk_sched.c - fleet-wide schedules: jobs.types.<name>.every_s.
 *
 * Time is cut into periods of every_s seconds of the wall clock (period =
 * now / every_s). Once a second every worker looks for types whose current
 * period it has not handled yet. For such a type it asks Redis for the lease
 * "sched:<type>:<period>" (SET NX PX, held for two periods): the one worker
 * that gets it publishes the period's job; the others only note the period as
 * handled. The job's id is derived from the type and the period as well
 * (jobopt_derived), so even a lease that expired during a stall, or two
 * clocks that disagree on the period's edge, cannot make a second job for one
 * period: the second publish is a duplicate.
 *
 * A worker that is down for a whole period does not make up for it later: a
 * schedule asks "run every N seconds", not "run once per missed period", and
 * the order fetch reads from its last high-water mark anyway. */
#include <stdio.h>

#include "broker.h"
#include "clock.h"
#include "jobopt.h"
#include "log.h"
#include "mem.h"
#include "wrk_loop.h"

struct sched_pub {
    enum cv_rc rc;
    int dup;
};

static void on_published(void *arg, enum cv_rc rc, const char *const *ids, const int *dup,
                         size_t n)
{
    (void)ids;
    struct sched_pub *p = arg;
    p->rc = rc;
    p->dup = rc == CV_OK && n == 1 && dup[0] != 0;
}

void wrk_sched_tick(struct wrk *w)
{
    int64_t now_s = clock_wall_ms() / 1000;
    for (int i = 0; i < JT_N; i++) {
        int every = w->cfg->types[i].every_s;
        if (every <= 0)
            continue;
        int64_t period = now_s / every;
        if (w->sched_period[i] == period)
            continue;
        const char *type = jobtype_at(i)->name;
        char name[96], key[64];
        snprintf(name, sizeof(name), "sched:%s:%lld", type, (long long)period);
        int got = broker_lease(w->broker, name, w->name, (int64_t)every * 2000);
        if (got < 0) {
            LOG_WARN("sched.lease_failed", "type=%s period=%lld", type, (long long)period);
            continue;   /* Redis trouble: try again next second */
        }
        w->sched_period[i] = period;
        if (got == 0)
            continue;   /* another worker has this period */
        snprintf(key, sizeof(key), "schedule:%lld", (long long)period);
        struct job *j = jobopt_derived(w->cfg, NULL, type, key, "{}", 0);
        struct sched_pub p = { CV_ERR_INTERNAL, 0 };
        broker_publish(w->broker, &j, 1, w->cfg->idempotency_ttl_s, on_published, &p);
        if (p.rc != CV_OK) {
            LOG_WARN("sched.publish_failed", "type=%s period=%lld rc=%s", type,
                     (long long)period, cv_rc_str(p.rc));
            w->sched_period[i] = 0;   /* the lease is ours: retry within the period */
        } else {
            LOG_INFO("sched.enqueued", "type=%s period=%lld every_s=%d job_id=%s dup=%d", type,
                     (long long)period, every, j->id, p.dup);
        }
        job_free(j);
    }
}
