/* broker.h - the job transport, independent of what carries the jobs.
 *
 * Producers publish jobs; workers consume them through a consumer group per
 * type, settle each delivery (ack, retry later, fail, dead-letter), reclaim
 * deliveries a dead worker left behind and promote due delayed jobs. The status
 * of every job (queued ... dead) is kept beside it and read through the same
 * interface. Nothing here names Redis: rstream.c implements it on Redis
 * Streams; a transport's internals (struct broker_ops, the base struct) live in
 * the private header broker_int.h, which only the transports include. Callers
 * see struct broker as an opaque handle.
 *
 * Two modes. broker_open(cfg, NULL) is synchronous (workers, conveyorctl,
 * tests): every call with a callback runs it before returning. broker_open(cfg,
 * base) is asynchronous on a libevent loop (conveyor-api): calls return at once
 * and the callback runs later on that loop. Worker-side calls (consume, settle,
 * reclaim, promote, heartbeat) exist only in synchronous mode. */
#ifndef CV_BROKER_H
#define CV_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "job.h"
#include "rc.h"

struct event_base;
struct broker;

/* What GET /v1/jobs/{id} shows. Strings are owned by the struct; see job_status_cleanup. */
struct job_status {
    char id[UUID_STR_LEN];
    char type[JOB_TYPE_MAX];
    enum job_state state;
    int attempt;
    int max_attempts;
    int64_t created_ms, updated_ms, not_before_ms, started_ms, finished_ms;
    int64_t epoch;
    char last_error[JOB_ERROR_MAX];
    char traceparent[JOB_TRACEPARENT_LEN];
    int held;                 /* dead or failed with effects that may be unsettled */
    char *payload;            /* raw JSON, may be NULL */
    char *idem_key;           /* may be NULL */
};
void job_status_cleanup(struct job_status *s);

struct queue_stat {
    char type[JOB_TYPE_MAX];
    long long depth;          /* published, not yet delivered */
    long long pending;        /* delivered, not yet settled */
    long long consumers;
    long long scheduled;      /* waiting for their not-before time or a retry */
    long long dead;           /* in the dead-letter set */
    long long lag;            /* the consumer group's lag: Redis, entries not yet read;
                               * Kafka, offsets not yet committed (read or not); -1 unknown */
    int64_t oldest_age_ms;    /* age of the oldest unsettled job, 0 when none */
};

struct worker_info {
    char name[128];
    char host[64];
    char types[256];
    int pid;
    int concurrency;
    int64_t started_ms;
    int64_t last_seen_ms;
    long long processed;
    long long recent;         /* jobs settled since its previous heartbeat (busy when > 0) */
};

/* How a delivery ends. */
enum broker_outcome {
    BROKER_ACK,       /* succeeded */
    BROKER_RETRY,     /* transient failure: back to the delayed set, attempt+1 */
    BROKER_FAIL,      /* permanent failure: failed, into the dead-letter set */
    BROKER_DEAD,      /* out of attempts: dead, into the dead-letter set */
    BROKER_DEFER,     /* our own infrastructure was down: back to the delayed set with
                       * the same attempt (nothing was spent) */
};

struct broker_settle {
    enum broker_outcome outcome;
    int64_t delay_ms;                 /* for BROKER_RETRY and BROKER_DEFER */
    const char *error;                /* last_error for RETRY/FAIL/DEAD/DEFER, may be NULL */
    int held;                         /* FAIL/DEAD: the job's effects may be unsettled (money
                                       * held): it stays in the dead-letter set, listed as
                                       * held, until replayed or broker_dead_unhold() */
    int fenced;                       /* out: 1 when a newer delivery owns the job */
};

/* The transports this build has, by the name broker.transport gives ("redis",
 * the default). broker_transport_known: 1 when name is one of them.
 * broker_transport_names: their names, comma separated, into out (truncated to cap). */
int broker_transport_known(const char *name);
void broker_transport_names(char *out, size_t cap);

/* What a transport can do, as bit flags (broker_caps). A caller that relies on
 * one checks it first; the broker_* call of a capability the transport lacks
 * does nothing and returns CV_OK with no result (n, *moved, *removed = 0).
 * The worker's loop runs reclaim, promote and consumer GC only when they apply. */
enum broker_cap {
    /* broker_reclaim takes over deliveries idle longer than a given time (a dead
     * or stalled worker's). Without it the transport redelivers by itself (on
     * Kafka: the group rebalance after a member's session times out). */
    BROKER_CAP_RECLAIM_IDLE = 1u << 0,
    /* broker_publish of n jobs is one atomic step with their status records: all
     * or none is queued and recorded. Without it a batch is recorded first and
     * produced after, and a sweep produces again what was recorded but never
     * produced (the transport says how in its file). */
    BROKER_CAP_ATOMIC_BATCH = 1u << 1,
    /* Scheduled jobs and retries wait in a delayed set that broker_promote moves
     * to their queues when due (any number of workers may run it at once). */
    BROKER_CAP_DELAYED_SET = 1u << 2,
    /* Consumers of workers that died without leaving stay in the group until
     * broker_gc_consumers removes them. */
    BROKER_CAP_CONSUMER_GC = 1u << 3,
};

/* Open a broker on the transport cfg->broker_transport names (cfg_load refuses
 * an unknown one; here it is logged and NULL returned). base NULL = synchronous mode.
 * Returns NULL after logging when the transport cannot be reached in sync mode;
 * in async mode it connects in the background and fails calls until it is up. */
struct broker *broker_open(const struct cfg *cfg, struct event_base *base);
void broker_close(struct broker *b);
/* The transport's capabilities: enum broker_cap bits. Any thread, any mode. */
unsigned broker_caps(const struct broker *b);
/* The transport's name as broker.transport spells it ("redis"). */
const char *broker_transport(const struct broker *b);
/* 1 when the transport answered recently (async) or answers a ping (sync). */
int broker_ready(struct broker *b);

/* ---- both modes: producers and readers --------------------------------- */

/* ids[i] is the id of job i, or of the first job its producer published with
 * the same idempotency key; dup[i] is 0 for a new job, 1 for such a duplicate
 * (also when a job with this id, type and producer exists already: publishes
 * are idempotent by id), 2 when a job with this id exists with another type or
 * producer (nothing published), 3 when the job was refused by backpressure
 * (job.bounded and its type's max_queued reached: nothing published; ids[i]
 * is then the seconds to wait, from the type's drain rate). Both are valid
 * during the call. */
typedef void (*broker_publish_cb)(void *arg, enum cv_rc rc, const char *const *ids,
                                  const int *dup, size_t n);
/* Publish n jobs. Jobs with not_before_ms in the future are scheduled. The
 * jobs stay owned by the caller and may be freed as soon as this returns.
 * What "published" means depends on BROKER_CAP_ATOMIC_BATCH:
 * - with it (Redis Streams) the n jobs are queued and recorded in one atomic
 *   step, all or none: CV_OK means all are on their queues.
 * - without it (Kafka) the n jobs are recorded in Redis in one atomic step
 *   (all or none), then produced; the callback runs once every delivery
 *   report is in. CV_OK: every new job is written to the cluster.
 *   CV_ERR_UNAVAILABLE after the call returned: the jobs are recorded but the
 *   cluster did not confirm them all in time; they are produced again by the
 *   transport's sweep and run once (a retry with the same ids or idempotency
 *   keys finds them). An error before the call returns: nothing recorded. */
void broker_publish(struct broker *b, struct job *const *jobs, size_t n, int idem_ttl_s,
                    broker_publish_cb cb, void *arg);

typedef void (*broker_status_cb)(void *arg, enum cv_rc rc, const struct job_status *st);
/* rc CV_ERR_NOT_FOUND when no such job (or its status expired). */
void broker_get(struct broker *b, const char *id, broker_status_cb cb, void *arg);
/* Synchronous mode: broker_get into *out, whose strings are then owned by the
 * caller (free with job_status_cleanup; *out is zeroed when rc is not CV_OK). */
enum cv_rc broker_get_copy(struct broker *b, const char *id, struct job_status *out);

typedef void (*broker_list_cb)(void *arg, enum cv_rc rc, const struct job_status *st, size_t n);
/* Newest first; type NULL = all types. */
void broker_dead_list(struct broker *b, const char *type, int limit, broker_list_cb cb,
                      void *arg);

/* A page of the dead-letter set, newest first, to walk all of it (conveyorctl's
 * bulk replay and --since). Entries that ended at or after since_ms (0 = any)
 * and, when cursor is not "", before the entry the cursor names (the next of
 * the previous page). next is the cursor of the following page, "" when this
 * page was the last. Entries replayed or purged meanwhile do not upset the
 * walk: a job that dies again is newer than the cursor and is not seen twice.
 * type NULL = all types. st and next are valid during the call. */
#define BROKER_CURSOR_LEN 32
typedef void (*broker_page_cb)(void *arg, enum cv_rc rc, const struct job_status *st, size_t n,
                               const char *next);
void broker_dead_page(struct broker *b, const char *type, int64_t since_ms, const char *cursor,
                      int limit, broker_page_cb cb, void *arg);

typedef void (*broker_done_cb)(void *arg, enum cv_rc rc);
/* Put a dead or failed job back on its queue: a new life, with a fresh attempt
 * count and a fresh count of unsettled deliveries (the lease epoch keeps
 * growing: fencing spans lives). CV_ERR_NOT_FOUND when unknown,
 * CV_ERR_CONFLICT when it is not dead/failed. */
void broker_dead_retry(struct broker *b, const char *id, broker_done_cb cb, void *arg);

/* Outcomes of broker_dead_purge. */
enum broker_purge {
    BROKER_PURGED,        /* gone: status and dead-letter entries deleted */
    BROKER_PURGE_UNKNOWN, /* no such job */
    BROKER_PURGE_LIVE,    /* not dead or failed */
    BROKER_PURGE_HELD,    /* its effects may be unsettled (held money): reconcile first */
};
typedef void (*broker_purge_cb)(void *arg, enum cv_rc rc, enum broker_purge what);
/* An operator's purge of one dead or failed job. Dead jobs leave the set only
 * this way or by the retention configured for their type, never while held. */
void broker_dead_purge(struct broker *b, const char *id, broker_purge_cb cb, void *arg);

typedef void (*broker_queues_cb)(void *arg, enum cv_rc rc, const struct queue_stat *q, size_t n);
void broker_queues(struct broker *b, broker_queues_cb cb, void *arg);

typedef void (*broker_workers_cb)(void *arg, enum cv_rc rc, const struct worker_info *w,
                                  size_t n);
/* Workers whose last heartbeat is younger than alive_ms. */
void broker_workers(struct broker *b, int64_t alive_ms, broker_workers_cb cb, void *arg);

/* Per-type counters, one table: the names are how they are stored and the
 * outcome label of conveyor_jobs_total. */
enum broker_counter {
    BROKER_C_ENQUEUED,
    BROKER_C_SUCCEEDED,
    BROKER_C_FAILED,
    BROKER_C_RETRIED,
    BROKER_C_DEAD,
    BROKER_C_DEFERRED,   /* sent back without spending an attempt (our store was down) */
    BROKER_C_REPLAYED,
    BROKER_C_PURGED,
    BROKER_C_EXPIRED,    /* dead letters past their type's retention */
    BROKER_C_RETIRED,    /* stream entries past their type's retain bound or status TTL */
    BROKER_NCOUNTERS
};
extern const char *const broker_counter_names[BROKER_NCOUNTERS];
/* Per-type events that are no job's outcome, stored beside the counters:
 * their names are the fields of cv:stats:<type>, and /metrics renders each
 * as a counter family of its own (broker_event_metrics). */
enum broker_event {
    BROKER_E_RECLAIMED,  /* deliveries taken over from a silent worker (Redis Streams) */
    BROKER_E_FENCED,     /* settles refused: the delivery's lease had passed to a newer one */
    BROKER_NEVENTS
};
extern const char *const broker_event_names[BROKER_NEVENTS];
extern const char *const broker_event_metrics[BROKER_NEVENTS];
struct type_counters {
    char type[JOB_TYPE_MAX];
    long long n[BROKER_NCOUNTERS];
    long long ev[BROKER_NEVENTS];
};
typedef void (*broker_counters_cb)(void *arg, enum cv_rc rc, const struct type_counters *c,
                                   size_t n);
void broker_counters(struct broker *b, broker_counters_cb cb, void *arg);

/* ---- synchronous mode only: workers ------------------------------------- */

/* Read up to max new deliveries for the given types, blocking up to block_ms
 * when none is ready. Each delivery gets a new lease epoch and the status
 * `running` (Redis Streams: read from the consumer group, nothing written).
 * Deliveries of jobs that already ended are settled and skipped. On return
 * *n jobs are in out (free each with job_free). */
enum cv_rc broker_consume(struct broker *b, const char *consumer, const char *const *types,
                          size_t ntypes, size_t max, int block_ms, struct job **out, size_t *n);

/* Take over deliveries of type idle longer than min_idle_ms (their worker died
 * or stalled): up to max, same contract as broker_consume. */
enum cv_rc broker_reclaim(struct broker *b, const char *consumer, const char *type,
                          int64_t min_idle_ms, size_t max, struct job **out, size_t *n);

/* Settle n deliveries in one round trip. Each write checks the delivery's
 * fencing token (its epoch; on Redis Streams its entry's delivery count):
 * s[i].fenced is set when a newer delivery owns job i (nothing written). A
 * success's status is kept for status_ttl_s at most (Redis Streams: retired
 * with its entry, by its type's retain count or at that age). */
enum cv_rc broker_settle(struct broker *b, struct job *const *jobs, struct broker_settle *s,
                         size_t n, int status_ttl_s);

/* Move up to max due delayed jobs back to their queues. Safe to run from many
 * workers at once. *moved may be NULL. */
enum cv_rc broker_promote(struct broker *b, size_t max, size_t *moved);

/* Dead-letter retention: delete up to max dead or failed jobs of type that
 * ended more than retention_ms ago and are not held. *removed may be NULL. */
enum cv_rc broker_dead_expire(struct broker *b, const char *type, int64_t retention_ms,
                              size_t max, size_t *removed);

/* Held dead jobs: up to max ids (a sample when there are more), and clearing
 * the mark once the job's effects are known to be settled. */
enum cv_rc broker_held_ids(struct broker *b, size_t max, char (*ids)[UUID_STR_LEN], size_t *n);
enum cv_rc broker_dead_unhold(struct broker *b, const char *id);

/* Remove consumers that hold no delivery, have not read for idle_ms and whose
 * worker sent no heartbeat for alive_ms (SIGKILLed workers). *removed may be NULL. */
enum cv_rc broker_gc_consumers(struct broker *b, int64_t idle_ms, int64_t alive_ms,
                               size_t *removed);

/* Try to become the one process that runs a fleet-wide duty (name) for ttl_ms.
 * 1 when this owner holds it now, 0 when another does, -1 on error. */
int broker_lease(struct broker *b, const char *name, const char *owner, int64_t ttl_ms);

enum cv_rc broker_heartbeat(struct broker *b, const struct worker_info *w, int ttl_ms);
enum cv_rc broker_worker_gone(struct broker *b, const char *name);

#endif
