/* job.h - the job envelope and its lifecycle.
 *
 * Lifecycle. A producer (conveyor-api, conveyorctl) publishes a job: its
 * status hash is written as `queued` (or `scheduled` when not_before is in the
 * future, then the job waits in the delayed set). A worker reads it from its
 * type's stream through the type's consumer group; the delivery has a new,
 * larger lease epoch and the job reads as `running` (on Redis Streams from the
 * consumer group's pending entry, with no write: jstore_lua.h). The handler's
 * outcome decides what happens:
 *
 *   ok                      -> succeeded (acked; its status is retired after
 *                                          status_ttl_s, or sooner past its type's
 *                                          retain count on Redis Streams)
 *   transient, attempts left-> retrying  (acked; back into the delayed set with
 *                                          backoff 1,2,4,8,16 s + jitter; attempt+1)
 *   transient, none left    -> dead      (acked; in the dead-letter set, replayable)
 *   permanent               -> failed    (acked; in the dead-letter set, replayable)
 *   fenced                  -> nothing   (a newer delivery owns the job)
 *
 * A worker that dies leaves its deliveries pending; once they are idle longer
 * than the visibility timeout a live worker reclaims them (a new delivery, a
 * new epoch). Every state write checks the epoch, so a slow worker whose job
 * was reclaimed cannot overwrite the new owner's outcome.
 *
 * Envelope versioning: jobs waiting in Redis outlive a deploy. Add fields only
 * at the end, give them defaults when absent, and bump JOB_ENVELOPE_VERSION
 * when a field changes meaning; decoders accept the previous version. */
#ifndef CV_JOB_H
#define CV_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "rc.h"
#include "uuid.h"

#define JOB_ENVELOPE_VERSION 1
#define JOB_TYPE_MAX 32          /* bytes including NUL */
#define JOB_IDEM_MAX 128         /* idempotency key, bytes excluding NUL */
#define JOB_TRACEPARENT_LEN 56   /* "00-<32 hex>-<16 hex>-<2 hex>" + NUL */
#define JOB_ERROR_MAX 256
#define JOB_PRODUCER_MAX 64      /* producer name (the API key's name), bytes including NUL */

enum job_state {
    JOB_STATE_QUEUED,
    JOB_STATE_SCHEDULED,
    JOB_STATE_RUNNING,
    JOB_STATE_RETRYING,
    JOB_STATE_SUCCEEDED,
    JOB_STATE_FAILED,
    JOB_STATE_DEAD,
};
const char *job_state_str(enum job_state s);
/* Returns the state for its name, or -1. */
int job_state_parse(const char *s);

struct job {
    char id[UUID_STR_LEN];
    char type[JOB_TYPE_MAX];
    char *payload;             /* raw JSON text, owned */
    size_t payload_len;
    int attempt;               /* 1 for the first try */
    int max_attempts;
    int64_t created_ms;        /* wall clock, epoch ms */
    int64_t not_before_ms;     /* 0 = now */
    char *idem_key;            /* NULL when none, owned */
    char traceparent[JOB_TRACEPARENT_LEN];
    /* Who published it: the API key's name, "" for tools. Idempotency keys are
     * scoped by it, and a publish that names an existing job's id is a
     * duplicate only for the same type and producer (a conflict otherwise).
     * Stored in the status hash as field "pr"; workers ignore it. */
    char producer[JOB_PRODUCER_MAX];
    /* 1: subject to its type's max_queued backpressure (set by the API for what
     * clients and webhooks submit; the system's own jobs, follow-ups and
     * schedules are never refused). Not stored. */
    int bounded;
    /* 1: the id was drawn by job_fresh_id for this publish and never sent
     * before (jobopt_make without a job id given, a benchmark's fill): no job
     * can hold it, so the publish skips its existence check, and on Redis
     * Streams the job's status index goes in the bucket of the id's time
     * (jstore_lua.h). Never set it on a job whose publish may be repeated
     * under the same id. Not stored. */
    int fresh_id;
    /* set by the broker on delivery */
    char msg_id[48];           /* transport position (stream entry id) */
    int64_t epoch;             /* lease epoch: the fencing token of this delivery */
    int64_t deliveries;        /* how many times this job has been delivered */
    /* 1: a lean Redis Streams delivery, started from its entry alone: its
     * fencing token is (msg_id, deliveries), checked against the consumer
     * group's pending entry, and epoch = the entry's epoch base + deliveries
     * (jstore_lua.h). 0: fenced by the status hash's epoch (Kafka, and entries
     * published before the lean path). */
    int lean;
    /* set by the worker: monotonic ms by which a call upstream must have gone
     * out (ups_call.send_by_ms), or 0 for no bound. See wrk_loop.c. */
    int64_t send_by_ms;
};

/* A new zeroed job with a fresh id. Free with job_free(). */
struct job *job_new(const char *type);
/* Draw a new time-ordered (v7) id for j, now, and mark it fresh (fresh_id). */
void job_fresh_id(struct job *j);
void job_free(struct job *j);
void job_set_payload(struct job *j, const char *json, size_t len);

/* 1 when s is a valid job type name: 1..31 chars of [a-z0-9_-]. */
int job_type_valid(const char *s, size_t len);

/* A fresh W3C traceparent ("00-<trace>-<span>-01"). */
void job_traceparent_new(char out[JOB_TRACEPARENT_LEN]);
/* 1 when s is a well-formed traceparent header value. */
int job_traceparent_valid(const char *s);

/* Backoff before attempt `attempt`+1 after attempt `attempt` failed:
 * base * 2^(attempt-1), capped at max_ms, then +-20% jitter from rnd in [0,1). */
int64_t job_backoff_ms(int attempt, int base_ms, int max_ms, double rnd);

#endif
