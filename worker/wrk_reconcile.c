/* wrk_reconcile.c - the reconciler of held money.
 *
 * Money is held when a transaction is PROCESSING: the account was debited and
 * the activation system's answer is not recorded yet. That is normal for the
 * milliseconds a job runs. It is a problem when no live job will ever finish
 * it: the job went dead (the activation system stayed down past the last
 * attempt, the poison-job guard stopped it), or the job itself was lost (a
 * Redis crash inside its AOF fsync window). Nothing else would ever settle it.
 *
 * One worker of the fleet at a time (a lease in the broker) runs a pass every
 * reconcile.interval_ms:
 *  1. Transactions PROCESSING and untouched for reconcile.held_after_s (every
 *     delivery touches updated_at, so an untouched row has no job working on
 *     it) are looked up in the broker:
 *       - the job is dead or failed -> it is replayed (a new life), unless the
 *                                      poison-job guard stopped it: replaying it
 *                                      would kill workers again, so it stays held
 *                                      for an operator (`conveyorctl held`);
 *       - the job is gone           -> a job with the same id (= transaction id)
 *                                      is published again from the row;
 *       - the job is live           -> left alone (it is waiting for a retry).
 *     Either way the worker settles it the only way money moves here: reserve
 *     finds the row PROCESSING, the activation system is asked again with the
 *     transaction id as Idempotency-Key and answers what it decided the first
 *     time, finish records it. So a replay never debits or activates twice.
 *  2. Dead jobs marked held whose transaction is no longer PROCESSING (or was
 *     never recorded) lose the mark, so an operator may purge them.
 *  3. The held figures (count, amount, age of the oldest) go to the Redis hash
 *     cv:held:stats for /metrics and `conveyorctl held`, and to the log.
 * Each pass handles at most RECONCILE_BATCH rows: a backlog drains over passes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "clock.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "rds.h"
#include "sbuf.h"
#include "wrk_loop.h"

#define RECONCILE_BATCH 200

static const char HELD_SQL[] =
    "SELECT transaction_id::text, user_id, offer_id FROM transactions "
    "WHERE status = 'PROCESSING' AND updated_at < now() - make_interval(secs => $1::int) "
    "ORDER BY updated_at LIMIT $2::int";
static const char STILL_HELD_SQL[] =
    "SELECT transaction_id::text FROM transactions "
    "WHERE transaction_id = ANY($1::uuid[]) AND status = 'PROCESSING'";
static const char FIGURES_SQL[] =
    "SELECT count(*), coalesce(sum(amount), 0)::text, "
    "coalesce(extract(epoch FROM now() - min(updated_at)), 0)::bigint "
    "FROM transactions "
    "WHERE status = 'PROCESSING' AND updated_at < now() - make_interval(secs => $1::int)";

static void on_done(void *arg, enum cv_rc rc)
{
    *(enum cv_rc *)arg = rc;
}

static void on_published(void *arg, enum cv_rc rc, const char *const *ids, const int *dup,
                         size_t n)
{
    (void)ids;
    (void)dup;
    (void)n;
    *(enum cv_rc *)arg = rc;
}

/* Publish the activation job of a transaction whose job was lost. */
static enum cv_rc requeue(struct wrk *w, const char *txn, const char *user, const char *offer)
{
    struct job *j = job_new("activation");
    char payload[160];
    snprintf(j->id, sizeof(j->id), "%s", txn);
    snprintf(payload, sizeof(payload),
             "{\"transaction_id\":\"%s\",\"user_id\":%s,\"offer_id\":%s}", txn, user, offer);
    job_set_payload(j, payload, strlen(payload));
    j->max_attempts = cfg_max_attempts(w->cfg, "activation");
    j->created_ms = clock_wall_ms();
    job_traceparent_new(j->traceparent);
    enum cv_rc rc = CV_ERR_INTERNAL;
    broker_publish(w->broker, &j, 1, w->cfg->idempotency_ttl_s, on_published, &rc);
    job_free(j);
    return rc;
}

/* Pass 1: every held transaction gets a live job again. */
static void revive(struct wrk *w, int *replayed, int *requeued, int *live, int *poison)
{
    char secs[24], lim[24];
    enum cv_rc rc;
    snprintf(secs, sizeof(secs), "%d", w->cfg->reconcile_held_after_s);
    snprintf(lim, sizeof(lim), "%d", RECONCILE_BATCH);
    const char *params[] = { secs, lim };
    struct db_res *r = db_exec(w->ctx.db, HELD_SQL, 2, params, &rc);
    for (int i = 0; r && i < db_res_rows(r); i++) {
        const char *txn = db_res_get(r, i, 0);
        struct job_status st;
        enum cv_rc lrc = broker_get_copy(w->broker, txn, &st);
        int ended = lrc == CV_OK &&
                    (st.state == JOB_STATE_DEAD || st.state == JOB_STATE_FAILED);
        int stopped = ended && strncmp(st.last_error, WRK_POISON_ERROR,
                                       strlen(WRK_POISON_ERROR)) == 0;
        job_status_cleanup(&st);
        enum cv_rc act = CV_OK;
        const char *evt = NULL;
        if (lrc == CV_ERR_NOT_FOUND) {
            act = requeue(w, txn, db_res_get(r, i, 1), db_res_get(r, i, 2));
            evt = "reconcile.requeued";
            *requeued += act == CV_OK;
        } else if (stopped) {
            /* stopped by the poison-job guard: replaying it would kill workers
             * again; it stays held and listed for an operator */
            (*poison)++;
            LOG_WARN("reconcile.poison_held", "transaction_id=%s", txn);
        } else if (ended) {
            act = CV_ERR_INTERNAL;
            broker_dead_retry(w->broker, txn, on_done, &act);
            evt = "reconcile.replayed";
            *replayed += act == CV_OK;
        } else if (lrc == CV_OK) {
            (*live)++;
        } else {
            act = lrc;
            evt = "reconcile.lookup_failed";
        }
        if (evt && act == CV_OK)
            LOG_INFO(evt, "transaction_id=%s", txn);
        else if (evt)
            LOG_WARN("reconcile.failed", "transaction_id=%s step=%s rc=%s", txn, evt,
                     cv_rc_str(act));
    }
    db_res_free(r);
}

/* Pass 2: the held mark goes from dead jobs whose money is settled. */
static void unhold(struct wrk *w, int *cleared)
{
    char (*ids)[UUID_STR_LEN] = xcalloc(RECONCILE_BATCH, sizeof(*ids));
    size_t n = 0;
    struct sbuf arr;
    sbuf_init(&arr);
    if (broker_held_ids(w->broker, RECONCILE_BATCH, ids, &n) != CV_OK || n == 0)
        goto out;
    /* an id that is not a UUID names no transaction: nothing of it is held */
    sbuf_adds(&arr, "{");
    for (size_t i = 0; i < n; i++)
        if (uuid_valid(ids[i]))
            sbuf_addf(&arr, "%s%s", arr.len > 1 ? "," : "", ids[i]);
    sbuf_adds(&arr, "}");
    enum cv_rc rc;
    const char *params[] = { arr.p };
    struct db_res *r = db_exec(w->ctx.db, STILL_HELD_SQL, 1, params, &rc);
    if (!r)
        goto out;
    for (size_t i = 0; i < n; i++) {
        int still = 0;
        for (int k = 0; k < db_res_rows(r) && !still; k++)
            still = strcmp(db_res_get(r, k, 0), ids[i]) == 0;
        if (still)
            continue;
        if (broker_dead_unhold(w->broker, ids[i]) == CV_OK) {
            (*cleared)++;
            LOG_INFO("reconcile.unheld", "job_id=%s", ids[i]);
        }
    }
    db_res_free(r);
out:
    sbuf_cleanup(&arr);
    free(ids);
}

/* Pass 3: the figures, for /metrics and operators. */
static void figures(struct wrk *w)
{
    char secs[24];
    enum cv_rc rc;
    snprintf(secs, sizeof(secs), "%d", w->cfg->reconcile_held_after_s);
    const char *params[] = { secs };
    struct db_res *r = db_exec(w->ctx.db, FIGURES_SQL, 1, params, &rc);
    if (!r || db_res_rows(r) != 1) {
        db_res_free(r);
        return;
    }
    char at[24];
    snprintf(at, sizeof(at), "%lld", (long long)clock_wall_ms());
    const char *argv[] = { "HSET", "cv:held:stats", "count", db_res_get(r, 0, 0), "amount",
                           db_res_get(r, 0, 1), "oldest_s", db_res_get(r, 0, 2), "at_ms", at };
    rds_reply_free(rds_cmd(w->ctx.rds, 10, argv, NULL));
    if (strcmp(db_res_get(r, 0, 0), "0") != 0)
        LOG_WARN("reconcile.held", "count=%s amount=%s oldest_s=%s", db_res_get(r, 0, 0),
                 db_res_get(r, 0, 1), db_res_get(r, 0, 2));
    db_res_free(r);
}

void wrk_reconcile_tick(struct wrk *w)
{
    if (!w->ctx.db)
        return;              /* only workers of a type that moves money have PostgreSQL */
    /* the lease outlives a pass by far; a dead holder's lease lapses after 3 intervals */
    if (broker_lease(w->broker, "reconcile", w->name, (int64_t)w->cfg->reconcile_interval_ms * 3)
        != 1)
        return;
    if (db_ensure(w->ctx.db))
        return;
    int replayed = 0, requeued = 0, live = 0, cleared = 0, poison = 0;
    revive(w, &replayed, &requeued, &live, &poison);
    unhold(w, &cleared);
    figures(w);
    if (replayed || requeued || cleared || poison)
        LOG_INFO("reconcile.pass", "replayed=%d requeued=%d waiting=%d unheld=%d poison=%d",
                 replayed, requeued, live, cleared, poison);
}
