/* jobopt.h - the one parser of job options, and the one way to make a job
 * from a type, options and a payload.
 *
 * Every producer goes through it: POST /v1/jobs/{type} and its batch form,
 * the seed endpoints (POST /activate, the orchestrator's routes, webhooks),
 * the worker's follow-up jobs and `conveyorctl submit`. So the limits are the
 * same everywhere: delay_ms 0..30 days, run_at at most 30 days ahead,
 * max_attempts 1..100, an Idempotency-Key of 1..128 printable ASCII, a job id
 * that is a UUID, a traceparent kept when well-formed and made otherwise. */
#ifndef CV_JOBOPT_H
#define CV_JOBOPT_H

#include <stdint.h>

#include "cfg.h"
#include "job.h"
#include "jobtype.h"
#include "json.h"

#define JOBOPT_DELAY_MAX_MS (30LL * 24 * 3600 * 1000)
#define JOBOPT_ATTEMPTS_MAX 100

struct jobopt {
    int64_t not_before_ms;            /* 0 = now */
    int max_attempts;                 /* 0 = the type's configured default */
    char idem[JOB_IDEM_MAX + 1];      /* "" = none */
    char job_id[UUID_STR_LEN];        /* "" = a new id */
    char traceparent[JOB_TRACEPARENT_LEN]; /* "" = a new one */
    unsigned seen;                    /* options given (each at most once) */
};

/* Names of the options, for "known:" messages. */
#define JOBOPT_NAMES "delay_ms, run_at, max_attempts"

/* Set one option from text: "delay_ms", "run_at", "max_attempts" (the query
 * options), "idempotency_key", "job_id", "traceparent" (headers). now is the
 * wall clock in ms. CV_ERR_INVALID with *why (and the option named) when the
 * value is bad or given twice; CV_ERR_NOT_FOUND for an unknown name. A bad
 * traceparent is not an error: a new one is made. */
enum cv_rc jobopt_set(struct jobopt *o, const char *name, const char *value, int64_t now,
                      const char **why);

/* Make a job of type t: id, producer, options, and the payload checked by the
 * type's validator (given parsed as node, with its text raw/rawlen when the
 * caller has it, to keep it byte for byte). idem overrides o->idem when not
 * NULL (a batch's "<key>:<i>"). CV_OK with *out (free with job_free), else
 * CV_ERR_INVALID with *field and *why. */
enum cv_rc jobopt_make(const struct cfg *c, const struct jobtype *t, const struct jobopt *o,
                       const char *idem, const char *producer, const cJSON *node,
                       const char *raw, size_t rawlen, int64_t now, struct job **out,
                       const char **field, const char **why);

/* The producer of derived jobs: not a possible API key name (those are
 * [A-Za-z0-9._-]), so no client can claim a derived job's id. */
#define JOBOPT_PRODUCER "@conveyor"

/* A job whose id is derived from its type and key: the same (type, key) gives
 * the same id, so publishing it twice makes one job (the second publish is a
 * duplicate). For work that several places may start: a handler's follow-ups
 * ("<order>:<step>:<key>", no epoch or attempt in it), a schedule's period, an
 * orchestrator sweep, a webhook's id. Producer JOBOPT_PRODUCER; the trace of
 * traceparent when valid (a new span), else a new trace; delay_ms > 0
 * schedules it. Free with job_free. */
struct job *jobopt_derived(const struct cfg *c, const char *traceparent, const char *type,
                           const char *key, const char *payload, int64_t delay_ms);

#endif
