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
 * visibly held until the reconciler settles it. CV_ERR_BUSY says a shared
 * resource answered "later" (another job holds the order, an upstream's
 * circuit is open or its budget spent): the job waits delay_ms and spends no
 * attempt, and the worker goes on. delay_ms also lengthens a retry's backoff
 * (an upstream's Retry-After).
 *
 * Follow-up jobs. A handler that moves work on (an order fetched: post it to
 * its carrier) adds the next jobs to its result with wrk_follow(). The loop
 * publishes every follow-up of the batch in one call BEFORE it settles the
 * batch; a job whose follow-ups could not be published is not settled (it is
 * redelivered, and its handler decides again). A follow-up's id is derived
 * from its type and a key the handler names, "<order>:<step>:<key>" with no
 * epoch or attempt in it, so a worker that dies between publish and settle
 * makes a duplicate publish (answered "already there"), never a second job. */
#ifndef CV_WRK_H
#define CV_WRK_H

#include <stddef.h>

#include "cfg.h"
#include "job.h"
#include "jobtype.h"

struct db;
struct rds;
struct httpc;

struct wrk_out;

struct wrk_ctx {
    const struct cfg *cfg;
    struct db *db;            /* NULL until a handler needs PostgreSQL */
    struct rds *rds;          /* fast status (transaction hashes, metrics) */
    struct httpc *http;
    struct wrk_out *out;      /* the upstream pipelines (wrk_out.c) */
};

/* ---- upstreams (wrk_out.c) ------------------------------------------------- */
/* One pipeline per upstream (common/ups.h: breaker, rate limit, credentials,
 * communication log), made on first use with the upstream's credentials
 * vtable. The comm log goes through ctx->db. */
struct wrk_out *wrk_out_new(struct wrk_ctx *ctx);
void wrk_out_free(struct wrk_out *o);     /* NULL-safe; flushes the comm log */
struct ups *wrk_ups(struct wrk_ctx *ctx, int ups_id);
/* Write the buffered comm log rows (the loop calls it after each batch). */
void wrk_out_flush(struct wrk_ctx *ctx);

struct wrk_result {
    enum cv_rc rc;
    int held;
    int64_t delay_ms;         /* at least this long before the next try; 0 = the policy's */
    char error[JOB_ERROR_MAX];
    struct job **next;        /* follow-up jobs (wrk_follow), owned; freed by the loop */
    size_t nnext;
};

typedef void (*wrk_handler_fn)(struct wrk_ctx *ctx, struct job **jobs, size_t n,
                               struct wrk_result *res);

/* The worker's row of a job type: the type's row in the one table
 * (common/jobtype.h: flags JT_NEEDS_PG, JT_HOLDS_EFFECTS, ...) and the
 * handler that runs it. */
struct wrk_handler {
    const struct jobtype *jt;
    wrk_handler_fn fn;
};

/* How the poison-job guard's last_error begins (wrk_loop.c): the reconciler does not
 * replay such a job by itself, since replaying it would kill workers again. */
#define WRK_POISON_ERROR "delivered "

/* NULL when no handler serves type. */
const struct wrk_handler *wrk_handler_find(const char *type);
/* "noop, activation, ..." : the types this worker can run. */
const char *wrk_handler_names(void);

/* Add a follow-up job of type to r (see above). key names the step of the
 * entity ("<order>:post:<carrier>"), payload is JSON text; delay_ms > 0
 * schedules it. The job inherits parent's trace id. */
void wrk_follow(struct wrk_ctx *ctx, const struct job *parent, struct wrk_result *r,
                const char *type, const char *key, const char *payload, int64_t delay_ms);


void h_noop(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res);
void h_activation(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res);
void h_order_fetch(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res);
void h_carrier_post(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res);
void h_tracking_event(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res);
void h_tracking_push(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res);
void h_tracking_poll(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res);
void h_ml_notification(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res);
/* h_activation's payload check on its own (tests/fuzz/fuzz_job.c): 0 and the
 * lower-cased transaction id, user and offer when j's payload is valid. */
int h_activation_parse(const struct job *j, char txn[UUID_STR_LEN], int64_t *user_id,
                       int64_t *offer_id, const char **field);

/* Set the result with a formatted error. */
void wrk_fail(struct wrk_result *r, enum cv_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
