#include "retry.h"

#include "job.h"

enum broker_outcome retry_decide(enum cv_rc rc, int attempt, int max_attempts, int base_ms,
                                 int max_ms, double rnd, int64_t *delay_ms)
{
    *delay_ms = 0;
    if (rc == CV_OK)
        return BROKER_ACK;
    if (rc == CV_ERR_UNAVAILABLE || rc == CV_ERR_BUSY) {
        /* our own store was down: nothing was tried, nothing is spent */
        *delay_ms = job_backoff_ms(1, base_ms, max_ms, rnd);
        return BROKER_DEFER;
    }
    if (!cv_rc_retryable(rc))
        return BROKER_FAIL;
    if (attempt >= max_attempts)
        return BROKER_DEAD;
    *delay_ms = job_backoff_ms(attempt, base_ms, max_ms, rnd);
    return BROKER_RETRY;
}
