/* wrk.h - the worker process: what handlers get and must give back.
 *
 * The loop reads a batch of deliveries, hands each type's share to its
 * handler in one call (so a handler can batch its own round trips to
 * PostgreSQL, Redis and the outside world), then settles the whole batch in
 * one round trip. A handler sets res[i] for every job: rc CV_OK when done,
 * CV_ERR_TRANSIENT/CV_ERR_IO to retry with backoff, CV_ERR_UNAVAILABLE when the
 * worker's own infrastructure (PostgreSQL, Redis) is down (the job goes back
 * without spending an attempt and the worker pauses consuming), another error
 * to fail it at once, CV_ERR_FENCED when a newer delivery owns the job (nothing
 * is settled: the new owner will). held = 1 says that the job's effects may be
 * unsettled (money debited, outcome unknown): should it end dead, it stays
 * visibly held until the reconciler settles it. */
#ifndef CV_WRK_H
#define CV_WRK_H

#include <stddef.h>

#include "cfg.h"
#include "job.h"

struct db;
struct rds;
struct httpc;

struct wrk_ctx {
    const struct cfg *cfg;
    struct db *db;            /* NULL until a handler needs PostgreSQL */
    struct rds *rds;          /* fast status (transaction hashes, metrics) */
    struct httpc *http;
};

struct wrk_result {
    enum cv_rc rc;
    int held;
    char error[JOB_ERROR_MAX];
};

typedef void (*wrk_handler_fn)(struct wrk_ctx *ctx, struct job **jobs, size_t n,
                               struct wrk_result *res);

struct wrk_handler {
    const char *type;
    wrk_handler_fn fn;
    int needs_db;
    int holds_effects;        /* a job stopped before it settled may leave effects
                               * unsettled (money): such a job ends dead and held */
};

/* How the poison-job guard's last_error begins (wrk_loop.c): the reconciler does not
 * replay such a job by itself, since replaying it would kill workers again. */
#define WRK_POISON_ERROR "delivered "

/* NULL when no handler serves type. */
const struct wrk_handler *wrk_handler_find(const char *type);

void h_noop(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res);
void h_activation(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res);
/* h_activation's payload check on its own (tests/fuzz/fuzz_job.c): 0 and the
 * lower-cased transaction id, user and offer when j's payload is valid. */
int h_activation_parse(const struct job *j, char txn[UUID_STR_LEN], int64_t *user_id,
                       int64_t *offer_id, const char **field);

/* Set the result with a formatted error. */
void wrk_fail(struct wrk_result *r, enum cv_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
