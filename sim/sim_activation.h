/* sim_activation.h - the offer activation system, simulated.
 *
 *   POST /activate                      activate an offer for a user, idempotent
 *                                       by transaction_id
 *   GET  /activations/{transaction_id}  the recorded result, or 404
 *
 * The first successful POST for a transaction_id records the outcome: an
 * activation (200, a new activation_id) or, when the user is in the decline
 * set, a decline (422). Every later POST with that transaction_id gets the
 * same recorded answer and changes nothing (a "duplicate"). Faults
 * (sim_faults.h) are decided before the record is looked at, so a faulted
 * call has no effect; every answer waits the configured latency. Records
 * live in memory only (sim_table.h) until POST /admin/reset. */
#ifndef SIM_ACTIVATION_H
#define SIM_ACTIVATION_H

#include <stddef.h>
#include <stdint.h>

#define SIM_ACT_RECORDS_MAX (8u << 20)   /* then 503: ~1 GiB of records */
#define SIM_ACT_DECLINES_MAX 10000

struct sim;

struct sim_act_stats {
    int64_t calls;                       /* every POST /activate */
    int64_t activations;                 /* activations recorded (unique) */
    int64_t errors;                      /* injected error answers (fail_next, error_rate) */
    int64_t timeouts;                    /* injected timeouts (held, never answered) */
    int64_t declines;                    /* declines recorded (unique) */
    int64_t duplicates;                  /* answered from an existing record */
};

struct sim_activation;

/* Free with sim_activation_free(). */
struct sim_activation *sim_activation_new(void);
void sim_activation_free(struct sim_activation *a);   /* NULL-safe */

/* Add the activation routes to s->router. */
void sim_activation_register(struct sim *s);

/* Forget every record, the stats and the decline set. */
void sim_activation_reset(struct sim_activation *a);

const struct sim_act_stats *sim_activation_stats(const struct sim_activation *a);

/* Replace the decline set with n user ids (copied; n <= SIM_ACT_DECLINES_MAX). */
void sim_activation_set_declines(struct sim_activation *a, const int64_t *users, size_t n);
/* The decline set, sorted ascending, owned by a. Returns its size. */
size_t sim_activation_declines(const struct sim_activation *a, const int64_t **users);

#endif
