/* jstore.h - the job-status store in Redis, shared by every transport.
 *
 * Whatever carries the jobs (Redis Streams today, Kafka later), their status
 * stays in Redis, so GET /v1/jobs/{id}, Idempotency-Key, dead letters and the
 * dashboards behave the same on every transport. This module owns the status
 * hashes (read and decode; the writes that must be atomic with a transport's
 * queue stay in that transport's scripts, under the keys jstore_lua.h lists),
 * the dead-letter sets and their held marks, the workers registry, the per-type
 * counters and the fleet-wide leases.
 *
 * A jstore borrows a Redis link from its transport (a sync connection or an
 * async one on a libevent loop: the same two modes as broker.h) and never
 * frees it; calls with a callback run it before returning in sync mode. The
 * functions without a callback need a sync link. The transports call these
 * from their ops (struct broker_ops); nothing outside common/ does. */
#ifndef CV_JSTORE_H
#define CV_JSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"

struct rds;
struct rds_async;
struct rds_reply;
struct jstore;

/* A store on a borrowed link: exactly one of sync and as is non-NULL, and it
 * must outlive the store, as must cfg (each type's max_queued bounds its
 * publishes). In sync mode the scripts are loaded here; NULL when
 * that fails (logged). Free with jstore_free (the link stays open). */
struct jstore *jstore_new(struct rds *sync, struct rds_async *as, const struct cfg *cfg);
void jstore_free(struct jstore *js);

/* Decode one status hash (a flat HGETALL array) into st, whose strings the
 * caller then owns: free them with job_status_cleanup whatever this returns.
 * Returns 0 when the hash holds a job, -1 when it is empty or has no id. The
 * fields and where they land are one table in jstore.c. */
int jstore_status_decode(const struct rds_reply *h, struct job_status *st);

/* How the calling transport carries jobs (the scripts' mode, jstore_lua.h):
 * JSTORE_STREAMS writes the Redis stream in the same atomic step as the
 * status; JSTORE_EXTERNAL (Kafka) writes the status only, and the transport
 * produces what the store recorded (cv:unproduced, the produce count kq). */
enum jstore_mode { JSTORE_STREAMS, JSTORE_EXTERNAL };

/* ---- shared by the transports -------------------------------------------- */

/* broker_publish's contract, at wall time now (a job whose not_before_ms is
 * later is scheduled). keys[i] is job i's ordering key (EXTERNAL; NULL with
 * STREAMS). The jobs may be freed as soon as this returns. */
void jstore_publish(struct jstore *js, enum jstore_mode m, struct job *const *jobs,
                    const char *const *keys, size_t n, int idem_ttl_s, int64_t now,
                    broker_publish_cb cb, void *arg);

/* One delivery to start (sync link only): msg_id is the transport's position
 * (copied into the job), kq the produce count the message carries (EXTERNAL;
 * 0 with STREAMS). Out: what became of it. */
enum jstore_start_res { JSTORE_STARTED, JSTORE_SKIP, JSTORE_WAIT };
struct jstore_delivery {
    const char *msg_id;
    const char *id;
    long long kq;
    enum jstore_start_res res;   /* out */
    int64_t wait_until_ms;       /* out, JSTORE_WAIT: the retry's due time (wall ms) */
};
/* Start deliveries d[0..n) of type for consumer: each started one is
 * appended to out[*nout] as a new job (free with job_free) with a new lease
 * epoch; skipped ones (the job ended, is gone, or the message is stale) and
 * retries not due yet are told in d[i].res. On error nothing is told (all
 * res stay JSTORE_SKIP) and the rc is returned. */
enum cv_rc jstore_start(struct jstore *js, enum jstore_mode m, const char *consumer,
                        const char *type, struct jstore_delivery *d, size_t n,
                        struct job **out, size_t *nout);

/* The key of the status-index bucket (jstore_lua.h JSTORE_LUA_IX_FN) that
 * holds id's field if a job of type was published under it fresh: its field
 * is "<entry id> <producer>". 0 and out set, or -1 when id is no v7 UUID. */
int jstore_ix_key(const char *type, const char *id, char *out, size_t cap);

/* A lean Redis Streams entry (its fields, as XREADGROUP/XAUTOCLAIM give them:
 * the envelope JSTORE_LUA_PUBLISH writes) delivered for the deliveries-th
 * time, as a started job (free with job_free): epoch = the entry's epoch base
 * + deliveries, fenced by (msg_id, deliveries). NULL when the entry is not
 * lean (only an id: published before the lean path; start it with
 * jstore_start) or is malformed. */
struct job *jstore_entry_job(const char *type, const char *msg_id, const struct rds_reply *fields,
                             long long deliveries);

/* broker_settle's contract (sync link only). */
enum cv_rc jstore_settle(struct jstore *js, enum jstore_mode m, struct job *const *jobs,
                         struct broker_settle *s, size_t n, int status_ttl_s);

/* broker_dead_retry's contract; cb also gets, when rc is CV_OK, the job's type,
 * ordering key and produce count (EXTERNAL: the transport produces it now). */
typedef void (*jstore_replay_cb)(void *arg, enum cv_rc rc, const char *type, const char *key,
                                 long long kq);
void jstore_dead_retry(struct jstore *js, enum jstore_mode m, const char *id,
                       jstore_replay_cb cb, void *arg);

/* ---- both modes: the broker_* calls of the same names (broker.h) -------- */
void jstore_get(struct jstore *js, const char *id, broker_status_cb cb, void *arg);
void jstore_dead_list(struct jstore *js, const char *type, int limit, broker_list_cb cb,
                      void *arg);
void jstore_dead_page(struct jstore *js, const char *type, int64_t since_ms, const char *cursor,
                      int limit, broker_page_cb cb, void *arg);
void jstore_dead_purge(struct jstore *js, const char *id, broker_purge_cb cb, void *arg);
void jstore_workers(struct jstore *js, int64_t alive_ms, broker_workers_cb cb, void *arg);
void jstore_counters(struct jstore *js, broker_counters_cb cb, void *arg);

/* ---- sync link only ------------------------------------------------------ */
enum cv_rc jstore_dead_expire(struct jstore *js, const char *type, int64_t retention_ms,
                              size_t max, size_t *removed);
enum cv_rc jstore_held_ids(struct jstore *js, size_t max, char (*ids)[UUID_STR_LEN], size_t *n);
enum cv_rc jstore_dead_unhold(struct jstore *js, const char *id);
int jstore_lease(struct jstore *js, const char *name, const char *owner, int64_t ttl_ms);
enum cv_rc jstore_heartbeat(struct jstore *js, const struct worker_info *w, int ttl_ms);

#endif
