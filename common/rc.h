/* rc.h - return codes shared by every module.
 *
 * Values are stable: they go into logs, metrics and a job's last_error.
 * Append new codes at the end; never renumber or reuse a retired one. */
#ifndef CV_RC_H
#define CV_RC_H

enum cv_rc {
    CV_OK = 0,
    CV_ERR_INVALID,      /* bad input from a client or a job payload */
    CV_ERR_NOT_FOUND,    /* unknown id, type or route */
    CV_ERR_AUTH,         /* missing or wrong credentials */
    CV_ERR_FORBIDDEN,    /* credentials fine, scope not */
    CV_ERR_TOO_LARGE,    /* body or batch over its limit */
    CV_ERR_CONFLICT,     /* state does not allow the change */
    CV_ERR_TRANSIENT,    /* network, timeout, 5xx, 429: retry later */
    CV_ERR_PERMANENT,    /* the outside world said no: never retry */
    CV_ERR_IO,           /* our own store (Redis, PostgreSQL) failed */
    CV_ERR_FENCED,       /* a newer delivery owns the job: drop our writes */
    CV_ERR_UNSUPPORTED,  /* method or media type not handled */
    CV_ERR_RATE,         /* too many requests */
    CV_ERR_CONFIG,       /* bad configuration */
    CV_ERR_INTERNAL,     /* a bug: CV_ASSERT-worthy but survivable */
    CV_ERR_UNAVAILABLE,  /* our own infrastructure (PostgreSQL, Redis) is down: the job
                          * waits and spends no attempt; the worker pauses consuming */
    CV_ERR_BUSY,         /* a shared resource says "later": another job holds the order, an
                          * upstream's circuit is open or its rate budget is spent. The job
                          * waits (the handler's delay), spends no attempt; the worker goes on */
};

/* The stable lower-case name of rc ("transient", ...). Never NULL. */
const char *cv_rc_str(enum cv_rc rc);

/* True when rc should be retried with backoff. */
int cv_rc_retryable(enum cv_rc rc);

#endif
