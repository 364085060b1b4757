/* retry.h - the one place that decides what a failed delivery becomes. */
#ifndef CV_RETRY_H
#define CV_RETRY_H

#include <stdint.h>

#include "broker.h"
#include "rc.h"

/* Decide how a delivery that ended with rc on attempt `attempt` of
 * `max_attempts` settles. Retryable errors (transient, io, rate) back off
 * base_ms * 2^(attempt-1) capped at max_ms, +-20% jitter from rnd in [0,1),
 * written to *delay_ms; when no attempt is left the job goes dead. Any other
 * error fails the job at once. CV_OK acks. CV_ERR_UNAVAILABLE (the worker's own
 * PostgreSQL or Redis was down) and CV_ERR_BUSY (a shared resource said "later")
 * defer: back after about base_ms (or the caller's longer hint), same attempt. */
enum broker_outcome retry_decide(enum cv_rc rc, int attempt, int max_attempts, int base_ms,
                                 int max_ms, double rnd, int64_t *delay_ms);

#endif
