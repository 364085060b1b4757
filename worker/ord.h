/* ord.h - what the order handlers share: claiming an order for a delivery,
 * reading it as a carrier needs it, the carrier rules, and turning store
 * answers into job results.
 *
 * Every order handler works the same way:
 *   1. claim the order for (job id, epoch) for the visibility timeout: another
 *      job holding it -> CV_ERR_BUSY (the job waits, spends no attempt); a newer
 *      delivery of this job holding it -> CV_ERR_FENCED;
 *   2. read the order and decide from its state (a state the step does not
 *      start from means someone else already did it: the job succeeds);
 *   3. call the outside world; 4. move the order with ostore_transition, which
 *      checks the claim again (fencing) and the edge;
 *   5. release the claim (a crash leaves it to expire; a redelivery of the
 *      same job takes it over at once). */
#ifndef CV_ORD_H
#define CV_ORD_H

#include "car.h"
#include "ostore.h"
#include "wrk.h"

/* Claim order_id for job j. CV_OK; CV_ERR_BUSY (r->delay_ms set) or
 * CV_ERR_FENCED or CV_ERR_NOT_FOUND (no such order) or CV_ERR_UNAVAILABLE,
 * with r filled for the loop. */
enum cv_rc ord_claim(struct wrk_ctx *ctx, const struct job *j, const char *order_id,
                     struct wrk_result *r);
/* Release it (best effort: a claim left behind expires). */
void ord_release(struct wrk_ctx *ctx, const struct job *j, const char *order_id);

/* Move an order for job j (c's job, epoch and trace are filled from j). Fills
 * r and returns its rc when the move did not happen as asked (FENCED, BUSY,
 * MISSING, EDGE -> a permanent error naming the edge, UNAVAILABLE); CV_OK
 * with *moved on success or SAME. */
enum cv_rc ord_move(struct wrk_ctx *ctx, const struct job *j, struct ostore_change *c,
                    struct ostore_moved *moved, struct wrk_result *r);

/* The job result for a move that came back as moved (ostore_transition or a
 * plan of ostore_move_many): CV_OK for OK and SAME (an order that entered a
 * FAILED_* state is announced), else r filled as ord_move says. */
enum cv_rc ord_moved_rc(struct wrk_ctx *ctx, const struct job *j, const struct ostore_change *c,
                        const struct ostore_moved *moved, struct wrk_result *r);

/* The order as a carrier needs it, from its columns (strings point into them). */
void ord_car_order_of(const char *order_id, const char *customer, const char *country,
                      const char *weight_kg, struct car_order *out, char *name, size_t name_cap,
                      char *street, char *city, char *zip, size_t cap);
/* The order as a carrier needs it; strings point into o. */
void ord_car_order(const struct ostore_order *o, struct car_order *out, char *name,
                   size_t name_cap, char *street, char *city, char *zip, size_t cap);

/* The carrier the rules (table carrier_rules, cached for a minute) give an
 * order shipping to country with this weight; NULL when no rule matches or
 * PostgreSQL cannot be read (*rc says which). */
const char *ord_rules_pick(struct wrk_ctx *ctx, const char *country, double weight_kg,
                           enum cv_rc *rc);

/* Add the tracking-push follow-up of order_id (now TRACKED) to r, keyed
 * "<order>:push:<attempts>" (the order's failures count in the key, so a
 * retried order pushes again). Reads the order: CV_OK, or CV_ERR_UNAVAILABLE
 * with r filled. */
enum cv_rc ord_follow_push(struct wrk_ctx *ctx, const struct job *j, const char *order_id,
                           struct wrk_result *r);

/* Where a step starts: 1 when the order (in state) is where the step begins
 * (from) and the step should run. A `failed` order on a fresh life of the job
 * (attempt 1, first delivery: a replay, a new job) first takes the retry edge
 * back to from (retry_action in the operations log). Otherwise 0, with r set:
 * CV_OK when the step is done already or not due, CV_ERR_PERMANENT naming
 * last_error when the order is `failed` from an earlier life, or what ord_move
 * said. */
int ord_step_start(struct wrk_ctx *ctx, const struct job *j, const char *order_id,
                   enum ostate state, enum ostate from, enum ostate failed, const char *scope,
                   const char *retry_action, const char *last_error, struct wrk_result *r);

/* The job's trace id (32 hex) into out[33]. */
void ord_trace_id(const struct job *j, char out[33]);
/* A zeroed call upstream for job j about order_id: its trace, comm_log ids
 * and its send-by time (j->send_by_ms: not sent once the delivery's lease may
 * have passed to another worker). trace and order_id must outlive the call. */
void ord_call_init(struct ups_call *c, const struct job *j, const char *trace,
                   const char *order_id);
/* A batch move's plan for job j's order (ostore_move_many): fenced by j's id
 * and epoch, releasing the claim, its steps at steps (nsteps set by the caller). */
void ord_plan(struct ostore_plan *pl, const struct job *j, const char *order_id,
              const char *trace_id, const struct ostore_change *steps);

#endif
