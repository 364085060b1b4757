/* wrk_loop.c - read, run, settle; plus the periodic duties every worker
 * shares: heartbeat, promoting due delayed jobs, reclaiming deliveries that a
 * dead worker left behind, removing the consumers of dead workers, the
 * dead-letter retention and the reconciler of held money. Each duty does a
 * capped amount per turn.
 *
 * Outages of our own infrastructure. When a handler reports
 * CV_ERR_UNAVAILABLE (its PostgreSQL is down) the jobs go back to the delayed
 * set without spending an attempt (BROKER_DEFER) and the worker stops
 * consuming: it pauses with a doubling backoff (capped at worker.pause_max_ms),
 * still heartbeating and still answering SIGTERM, and consumes again only once
 * the store answers. A Redis outage shows as failed consume or settle calls and
 * is handled the same way: deliveries left unsettled are reclaimed later,
 * which costs no attempt either.
 *
 * The poison-job guard. A job whose deliveries never settle (its worker dies
 * or stalls every time) would be reclaimed forever. The start script counts
 * the deliveries since the last settle of the job's current life (a replay
 * starts a new life); past jobs.max_deliveries the job goes dead with a clear
 * error, replayable, and held when its handler may have left effects
 * unsettled. */
#include "wrk_loop.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "clock.h"
#include "db.h"
#include "jobopt.h"
#include "log.h"
#include "mem.h"
#include "rds.h"
#include "retry.h"
#include "sbuf.h"
#include "trc.h"
#include "uuid.h"

#define PROMOTE_EVERY_MS 100
#define PROMOTE_MAX 1000

/* The handler of each job type this worker can run, by the type's row in
 * common/jobtype.c. */
static const wrk_handler_fn handler_fns[JT_N] = {
    [JT_NOOP] = h_noop,
    [JT_ACTIVATION] = h_activation,
    [JT_ORDER_FETCH] = h_order_fetch,
    [JT_CARRIER_POST] = h_carrier_post,
    [JT_TRACKING_EVENT] = h_tracking_event,
    [JT_TRACKING_PUSH] = h_tracking_push,
    [JT_TRACKING_POLL] = h_tracking_poll,
    [JT_ML_NOTIFICATION] = h_ml_notification,
};
static struct wrk_handler handlers[JT_N];

const struct wrk_handler *wrk_handler_find(const char *type)
{
    int i = jobtype_index(type);
    if (i < 0 || !handler_fns[i])
        return NULL;
    handlers[i].jt = jobtype_at(i);   /* constant data: the same on every thread */
    handlers[i].fn = handler_fns[i];
    return &handlers[i];
}

const char *wrk_handler_names(void)
{
    static char buf[256];
    size_t o = 0;
    for (int i = 0; i < JT_N && o < sizeof(buf); i++)
        if (handler_fns[i])
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", o ? ", " : "",
                                  jobtype_at(i)->name);
    return buf;
}

void wrk_follow(struct wrk_ctx *ctx, const struct job *parent, struct wrk_result *r,
                const char *type, const char *key, const char *payload, int64_t delay_ms)
{
    struct job *j = jobopt_derived(ctx->cfg, parent ? parent->traceparent : NULL, type, key,
                                   payload, delay_ms);
    r->next = xrealloc(r->next, (r->nnext + 1) * sizeof(*r->next));
    r->next[r->nnext++] = j;
}

struct follow_pub {
    enum cv_rc rc;
};

static void on_follow_published(void *arg, enum cv_rc rc, const char *const *ids,
                                const int *dup, size_t n)
{
    (void)ids;
    (void)dup;
    (void)n;
    ((struct follow_pub *)arg)->rc = rc;
}

/* Publish the follow-ups of every result that is about to settle, in one
 * call. On failure those results become CV_ERR_UNAVAILABLE-like: their jobs
 * are left unsettled (redelivered later, the handler decides again). Returns
 * the publish rc. */
static enum cv_rc publish_follow_ups(struct wrk *w, struct wrk_result *res, size_t n)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        if (res[i].rc != CV_ERR_FENCED)
            total += res[i].nnext;
    if (total == 0)
        return CV_OK;
    struct job **all = xmalloc(total * sizeof(*all));
    for (size_t i = 0; i < n; i++)
        if (res[i].rc != CV_ERR_FENCED)
            for (size_t f = 0; f < res[i].nnext; f++)
                all[k++] = res[i].next[f];
    struct follow_pub fp = { CV_ERR_INTERNAL };
    broker_publish(w->broker, all, total, w->cfg->idempotency_ttl_s, on_follow_published, &fp);
    if (fp.rc != CV_OK)
        LOG_ERROR("worker.follow_up_failed", "count=%zu rc=%s", total, cv_rc_str(fp.rc));
    free(all);
    return fp.rc;
}

void wrk_fail(struct wrk_result *r, enum cv_rc rc, const char *fmt, ...)
{
    va_list ap;
    r->rc = rc;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
}

static double rnd01(void)
{
    static __thread uint64_t x;
    if (!x)
        uuid_random_bytes(&x, sizeof(x));
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return (double)(x >> 11) / 9007199254740992.0;
}

int wrk_past_grace(void *arg)
{
    struct wrk *w = arg;
    if (!w->stop || !*w->stop)
        return 0;
    int64_t now = clock_mono_ms();
    if (!w->stop_seen_ms)
        w->stop_seen_ms = now;
    return now - w->stop_seen_ms >= w->cfg->grace_ms;
}

/* The payload validator the API ran, run again: a job written by another
 * producer, or by an older version, must not reach its handler malformed.
 * Jobs that fail are settled as failed here (in res) and dropped from the
 * group; returns the group's new size. Types without a validator cost
 * nothing. */
static size_t check_payloads(const struct wrk_handler *h, struct job **group,
                             struct wrk_result *gres, size_t *gidx, struct wrk_result *res,
                             size_t g)
{
    if (!h->jt->fields && !h->jt->check)
        return g;
    size_t kept = 0;
    struct sbuf canon;
    sbuf_init(&canon);
    for (size_t k = 0; k < g; k++) {
        const char *field = NULL, *why = NULL;
        sbuf_reset(&canon);
        if (jobtype_check_text(h->jt, group[k]->payload, group[k]->payload_len, group[k]->id,
                               &canon, &field, &why) != CV_OK) {
            wrk_fail(&res[gidx[k]], CV_ERR_PERMANENT, "payload%s%s: %s", field ? "." : "",
                     field ? field : "", why);
            continue;
        }
        group[kept] = group[k];
        gidx[kept] = gidx[k];
        gres[kept] = gres[k];
        kept++;
    }
    sbuf_cleanup(&canon);
    return kept;
}

/* The lease of deliveries just read: another worker may reclaim one once it
 * has been idle for the visibility timeout, so a call upstream that goes out
 * after that could repeat an effect the new owner makes (the fencing token
 * stops our writes to Redis and PostgreSQL, but a marketplace or a carrier
 * knows nothing of it). Each job gets a send-by time (ups_call.send_by_ms):
 * the visibility timeout from the moment its read returned, less a fifth
 * for the call to land and for the read's own latency. A transport that
 * redelivers by itself (Kafka: a rebalance) has no idle clock: no bound. */
static void set_send_by(struct wrk *w, struct job **jobs, size_t n)
{
    if (!(broker_caps(w->broker) & BROKER_CAP_RECLAIM_IDLE))
        return;
    int64_t vis = w->cfg->visibility_timeout_ms;
    int64_t by = clock_mono_ms() + vis - vis / 5;
    for (size_t i = 0; i < n; i++)
        jobs[i]->send_by_ms = by;
}

/* The handler over group[0..g), and, when the worker module is traced, one
 * span per job (trc.h): the batch's time, the job's id, trace and outcome. */
static void run_handler(struct wrk *w, const struct wrk_handler *h, struct job **group, size_t g,
                        struct wrk_result *gres)
{
    struct trc_span *sp = NULL;
    if (trc_on(TRC_WORKER)) {
        char fn[64];
        snprintf(fn, sizeof(fn), "handler %s", group[0]->type);
        sp = xcalloc(g, sizeof(*sp));
        for (size_t k = 0; k < g; k++)
            trc_enter(&sp[k], TRC_WORKER, fn, group[k]->id, group[k]->traceparent);
    }
    h->fn(&w->ctx, group, g, gres);
    for (size_t k = 0; sp && k < g; k++)
        trc_exit(&sp[k], gres[k].rc == CV_OK ? NULL : cv_rc_str(gres[k].rc));
    free(sp);
}

/* Run one batch of deliveries through their handlers and settle it. */
static void run_batch(struct wrk *w, struct job **jobs, size_t n)
{
    set_send_by(w, jobs, n);
    struct wrk_result *res = xcalloc(n, sizeof(*res));
    struct job **group = xmalloc(sizeof(*group) * n);
    struct wrk_result *gres = xcalloc(n, sizeof(*gres));
    size_t *gidx = xmalloc(sizeof(*gidx) * n);
    char *done = xcalloc(n, 1);
    char *poison = xcalloc(n, 1);

    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        size_t g = 0;
        for (size_t k = i; k < n; k++) {
            if (done[k] || strcmp(jobs[k]->type, jobs[i]->type) != 0)
                continue;
            done[k] = 1;
            /* A job delivered again and again without ever settling is killing
             * or stalling its workers: stop delivering it (dead, replayable). */
            if (jobs[k]->deliveries > (int64_t)w->cfg->max_deliveries) {
                const struct wrk_handler *ph = wrk_handler_find(jobs[k]->type);
                wrk_fail(&res[k], CV_ERR_PERMANENT,
                         WRK_POISON_ERROR "%lld times in a row without settling (its worker "
                         "died or stalled each time); replay it once the cause is fixed",
                         (long long)jobs[k]->deliveries);
                res[k].held = ph && (ph->jt->flags & JT_HOLDS_EFFECTS);
                poison[k] = 1;
                continue;
            }
            group[g] = jobs[k];
            gidx[g] = k;
            memset(&gres[g], 0, sizeof(gres[g]));
            gres[g].rc = CV_ERR_INTERNAL;
            g++;
        }
        if (g == 0)
            continue;
        const struct wrk_handler *h = wrk_handler_find(jobs[i]->type);
        if (!h) {
            for (size_t k = 0; k < g; k++)
                wrk_fail(&gres[k], CV_ERR_PERMANENT, "no handler for type %s", jobs[i]->type);
        } else {
            g = check_payloads(h, group, gres, gidx, res, g);
            if (g > 0)
                run_handler(w, h, group, g, gres);
        }
        for (size_t k = 0; k < g; k++)
            res[gidx[k]] = gres[k];
    }

    /* follow-ups first: a job settles only once its next jobs exist */
    int follow_failed = publish_follow_ups(w, res, n) != CV_OK;

    /* settle everything but fenced deliveries in one round trip */
    struct broker_settle *st = xcalloc(n, sizeof(*st));
    struct job **sj = xmalloc(sizeof(*sj) * n);
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        struct job *j = jobs[i];
        if (res[i].rc == CV_ERR_FENCED) {
            LOG_WARN("job.fenced", "job_id=%s type=%s epoch=%lld", j->id, j->type,
                     (long long)j->epoch);
            continue;
        }
        if (follow_failed && res[i].nnext > 0) {
            /* Redis refused the follow-ups: leave the delivery pending (it is
             * reclaimed later, no attempt spent) and stop consuming for now */
            w->infra_down = 1;
            continue;
        }
        if (res[i].rc == CV_ERR_UNAVAILABLE)
            w->infra_down = 1;
        if ((cv_rc_retryable(res[i].rc) || res[i].rc == CV_ERR_UNAVAILABLE) &&
            wrk_past_grace(w)) {
            /* Stopping, out of grace: leave the delivery pending. Another worker
             * reclaims it after the visibility timeout, without losing an attempt. */
            LOG_WARN("job.abandoned", "job_id=%s type=%s attempt=%d", j->id, j->type,
                     j->attempt);
            continue;
        }
        int64_t delay = 0;
        const struct cfg_jobtype *ct = cfg_type(w->cfg, j->type);
        enum broker_outcome o = retry_decide(res[i].rc, j->attempt, j->max_attempts,
                                             ct->retry_base_ms, ct->retry_max_ms, rnd01(),
                                             &delay);
        if (poison[i])
            o = BROKER_DEAD;
        if ((o == BROKER_RETRY || o == BROKER_DEFER) && res[i].delay_ms > delay)
            delay = res[i].delay_ms;
        st[ns].outcome = o;
        st[ns].delay_ms = delay;
        st[ns].error = res[i].rc == CV_OK ? NULL : res[i].error;
        st[ns].held = res[i].held;
        sj[ns++] = j;
        if (o == BROKER_ACK) {
            LOG_DEBUG("job.succeeded", "job_id=%s type=%s attempt=%d", j->id, j->type,
                      j->attempt);
        } else if (res[i].rc == CV_ERR_BUSY) {
            /* flow control (an order held by another job, a circuit open, a rate
             * budget spent): expected, counted as deferred in the metrics */
            char e[LOG_STR_MAX];
            LOG_DEBUG("job.deferred", "job_id=%s type=%s attempt=%d delay_ms=%lld error=%s",
                      j->id, j->type, j->attempt, (long long)delay, log_str(e, res[i].error));
        } else {
            char e[LOG_STR_MAX];
            LOG_WARN(o == BROKER_RETRY   ? "job.retry_scheduled"
                     : o == BROKER_DEFER ? "job.deferred"
                     : o == BROKER_DEAD  ? "job.dead"
                                         : "job.failed",
                     "job_id=%s type=%s attempt=%d max_attempts=%d delay_ms=%lld rc=%s "
                     "held=%d error=%s trace=%.55s",
                     j->id, j->type, j->attempt, j->max_attempts, (long long)delay,
                     cv_rc_str(res[i].rc), res[i].held, log_str(e, res[i].error),
                     j->traceparent);
        }
    }
    if (ns > 0) {
        struct trc_span sp;
        char fn[64];
        snprintf(fn, sizeof(fn), "broker_settle %zu", ns);
        trc_enter(&sp, TRC_BROKER, fn, ns == 1 ? sj[0]->id : NULL,
                  ns == 1 ? sj[0]->traceparent : NULL);
        enum cv_rc rc = broker_settle(w->broker, sj, st, ns, w->cfg->status_ttl_s);
        trc_exit(&sp, rc == CV_OK ? NULL : cv_rc_str(rc));
        if (rc != CV_OK) {
            /* Redis is down: the deliveries stay pending and are reclaimed later
             * (no attempt spent); stop consuming until it is back. */
            LOG_ERROR("worker.settle_failed", "count=%zu rc=%s", ns, cv_rc_str(rc));
            w->infra_down = 1;
        }
        for (size_t i = 0; rc == CV_OK && i < ns; i++)
            if (st[i].fenced)
                LOG_WARN("job.fenced", "job_id=%s type=%s epoch=%lld at=settle", sj[i]->id,
                         sj[i]->type, (long long)sj[i]->epoch);
        w->processed += ns;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t f = 0; f < res[i].nnext; f++)
            job_free(res[i].next[f]);
        free(res[i].next);
    }
    free(st);
    free(sj);
    free(res);
    free(group);
    free(gres);
    free(gidx);
    free(done);
    free(poison);
}

static void heartbeat(struct wrk *w)
{
    struct worker_info wi;
    memset(&wi, 0, sizeof(wi));
    snprintf(wi.name, sizeof(wi.name), "%s", w->name);
    gethostname(wi.host, sizeof(wi.host) - 1);
    snprintf(wi.types, sizeof(wi.types), "%s", w->cfg->worker_types);
    wi.pid = (int)getpid();
    wi.concurrency = w->cfg->concurrency;
    wi.started_ms = w->started_ms;
    wi.processed = (long long)w->processed;
    wi.recent = (long long)(w->processed - w->hb_processed);
    w->hb_processed = w->processed;
    if (broker_heartbeat(w->broker, &wi, w->cfg->heartbeat_ms * 5) != CV_OK)
        LOG_WARN("worker.heartbeat_failed", "name=%s", w->name);
    /* the modules traced now (trc.h): an operator's switch reaches every
     * worker within a heartbeat; Redis down keeps the mask as it was */
    struct rds_reply *r = w->ctx.rds ? rds_cmdf(w->ctx.rds, "GET %s", TRC_KEY) : NULL;
    if (r && rds_reply_type(r) == RDS_STR)
        trc_follow(rds_reply_str(r, NULL));
    else if (r && rds_reply_type(r) == RDS_NIL)
        trc_follow(NULL);
    rds_reply_free(r);
}

static void free_jobs(struct job **jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        job_free(jobs[i]);
}

/* Consumers of SIGKILLed workers, and dead letters past their type's retention. */
static void housekeeping(struct wrk *w)
{
    size_t n = 0;
    int64_t idle = w->cfg->visibility_timeout_ms > 60000 ? w->cfg->visibility_timeout_ms : 60000;
    /* a transport without the capability forgets dead members by itself */
    if (broker_caps(w->broker) & BROKER_CAP_CONSUMER_GC) {
        if (broker_gc_consumers(w->broker, idle, idle, &n) != CV_OK)
            LOG_WARN("worker.gc_failed", "name=%s", w->name);
        else if (n)
            LOG_INFO("worker.consumers_removed", "count=%zu idle_ms=%lld", n, (long long)idle);
    }
    for (size_t t = 0; t < w->ntypes; t++) {
        int64_t keep_s = cfg_type(w->cfg, w->types[t])->dead_retention_s;
        if (keep_s <= 0)
            continue;
        n = 0;
        if (broker_dead_expire(w->broker, w->types[t], keep_s * 1000, 1000, &n) != CV_OK)
            LOG_WARN("worker.dead_expire_failed", "type=%s", w->types[t]);
        else if (n)
            LOG_INFO("dead.expired", "type=%s count=%zu retention_s=%lld", w->types[t], n,
                     (long long)keep_s);
    }
}

/* Deliveries idle past the visibility timeout (a dead worker's). A transport
 * without BROKER_CAP_RECLAIM_IDLE redelivers them by itself (Kafka: a rebalance). */
static void reclaim(struct wrk *w, struct job **buf)
{
    if (!(broker_caps(w->broker) & BROKER_CAP_RECLAIM_IDLE))
        return;
    for (size_t t = 0; t < w->ntypes; t++) {
        size_t n = 0;
        enum cv_rc rc = broker_reclaim(w->broker, w->name, w->types[t],
                                       w->cfg->visibility_timeout_ms, w->batch, buf, &n);
        if (rc != CV_OK)
            LOG_WARN("worker.reclaim_failed", "type=%s rc=%s", w->types[t], cv_rc_str(rc));
        if (n > 0) {
            run_batch(w, buf, n);
            free_jobs(buf, n);
        }
    }
}

/* Wait out an outage of our own store: sleep in slices (heartbeats go on and a
 * stop is noticed at once), then ask the store. Returns once it answers or a
 * stop was asked for. */
static void pause_until_up(struct wrk *w, int64_t *next_hb)
{
    int pause_ms = 100;
    LOG_WARN("worker.paused", "name=%s reason=store_unavailable", w->name);
    while (!*w->stop) {
        int64_t until = clock_mono_ms() + pause_ms;
        while (!*w->stop && clock_mono_ms() < until) {
            if (clock_mono_ms() >= *next_hb) {
                heartbeat(w);
                *next_hb = clock_mono_ms() + w->cfg->heartbeat_ms;
            }
            usleep(50 * 1000);
        }
        if (*w->stop)
            break;
        if (broker_ready(w->broker) && (!w->ctx.db || db_ensure(w->ctx.db) == 0))
            break;
        pause_ms = pause_ms * 2 > w->cfg->pause_max_ms ? w->cfg->pause_max_ms : pause_ms * 2;
        LOG_WARN("worker.still_paused", "name=%s pause_ms=%d", w->name, pause_ms);
    }
    w->infra_down = 0;
    LOG_INFO("worker.resumed", "name=%s", w->name);
}

int wrk_run(struct wrk *w, volatile sig_atomic_t *stop)
{
    w->stop = stop;
    struct job **buf = xcalloc(w->batch, sizeof(*buf));
    int64_t now = clock_mono_ms();
    int64_t next_hb = now, next_promote = now, next_reclaim = now + w->cfg->reclaim_interval_ms;
    int64_t next_reconcile = now + w->cfg->reconcile_interval_ms / 2;
    int64_t next_sched = now;
    int backoff_ms = 0;
    heartbeat(w);
    LOG_INFO("worker.started", "name=%s types=%s concurrency=%d transport=%s caps=%#x", w->name,
             w->cfg->worker_types, w->cfg->concurrency, broker_transport(w->broker),
             broker_caps(w->broker));
    while (!*stop) {
        now = clock_mono_ms();
        if (now >= next_hb) {
            heartbeat(w);
            next_hb = now + w->cfg->heartbeat_ms;
        }
        if (now >= next_promote) {
            size_t moved = 0;
            if (broker_promote(w->broker, PROMOTE_MAX, &moved) != CV_OK)
                LOG_WARN("worker.promote_failed", "name=%s", w->name);
            else if (moved)
                LOG_DEBUG("worker.promoted", "count=%zu", moved);
            next_promote = now + PROMOTE_EVERY_MS + (int64_t)(rnd01() * 20);
        }
        if (now >= next_sched) {
            wrk_sched_tick(w);
            next_sched = now + 1000;
        }
        if (now >= next_reconcile) {
            wrk_reconcile_tick(w);
            next_reconcile = now + w->cfg->reconcile_interval_ms;
        }
        if (w->infra_down)
            pause_until_up(w, &next_hb);
        if (*stop)
            break;
        if (now >= next_reclaim) {
            reclaim(w, buf);
            housekeeping(w);
            /* jitter so that a fleet does not sweep in lockstep */
            next_reclaim = now + w->cfg->reclaim_interval_ms +
                           (int64_t)(rnd01() * w->cfg->reclaim_interval_ms / 5);
        }
        int64_t until = next_promote - clock_mono_ms();
        if (next_hb - clock_mono_ms() < until)
            until = next_hb - clock_mono_ms();
        int block = (int)(until < 1 ? 1 : until > w->cfg->block_ms ? w->cfg->block_ms : until);
        size_t n = 0;
        enum cv_rc rc = broker_consume(w->broker, w->name, (const char *const *)w->types,
                                       w->ntypes, w->batch, block, buf, &n);
        if (n > 0) {
            /* run what was started even when a later stream of the same read
             * failed: those deliveries are ours now */
            run_batch(w, buf, n);
            free_jobs(buf, n);
        }
        if (rc != CV_OK) {
            /* Redis is down or restarting: back off, keep the process alive. */
            backoff_ms = backoff_ms ? (backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2) : 50;
            LOG_WARN("worker.consume_failed", "rc=%s backoff_ms=%d", cv_rc_str(rc), backoff_ms);
            usleep((useconds_t)backoff_ms * 1000);
            continue;
        }
        backoff_ms = 0;
    }
    LOG_INFO("worker.stopping", "name=%s processed=%llu", w->name,
             (unsigned long long)w->processed);
    broker_worker_gone(w->broker, w->name);
    free(buf);
    return 0;
}
