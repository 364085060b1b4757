/* kfk.h - librdkafka behind one module: the process's producer, group
 * consumers that poll on their own thread, consumer-group lag, and the mock
 * cluster the tests and `make up BROKER=kafka` run on. Nothing else includes
 * <librdkafka/...>; the Kafka transport (kstream.c) is written on this.
 *
 * Every handle takes its settings from cfg: Conveyor's defaults first (below,
 * per handle), then every kafka.* key as is (cfg.h), so an operator can set any
 * librdkafka property (SASL, TLS, tuning). Values of secret-looking names are
 * never logged. */
#ifndef CV_KFK_H
#define CV_KFK_H

#include <stddef.h>
#include <stdint.h>

struct cfg;

/* ---- the producer: one per process -------------------------------------- */

/* Idempotent (enable.idempotence, acks=all), batching by linger.ms, with a
 * bounded delivery wait (message.timeout.ms, 10 s unless set). Its delivery
 * reports are served by a thread of its own. */
struct kfk_producer;

/* A delivery report: ok 1 when the message is written to all in-sync
 * replicas, 0 when it failed or timed out (it may still be written: see
 * kstream.c). Runs on the producer's thread: keep it short, take no lock the
 * producer's callers hold while producing. */
typedef void (*kfk_dr_fn)(void *opaque, int ok);

/* The process's producer, created on first use from cfg (later calls share it
 * and ignore cfg); NULL after logging when librdkafka refuses the settings.
 * Each get is paired with a put; the last put flushes (up to 10 s) and frees. */
struct kfk_producer *kfk_producer_get(const struct cfg *cfg);
void kfk_producer_put(struct kfk_producer *p);

/* Queue one message. 0: queued, fn(opaque, ok) will run exactly once. -1: refused
 * at once (queue full, bad topic): fn is not called. Thread-safe. */
int kfk_produce(struct kfk_producer *p, const char *topic, const char *key, size_t klen,
                const char *val, size_t vlen, kfk_dr_fn fn, void *opaque);

/* 0 for a few seconds after librdkafka reported every broker down or a
 * delivery failed (and none succeeded since), else 1: callers refuse work at
 * once meanwhile, then let one through to find out. Thread-safe, no I/O. */
int kfk_producer_up(const struct kfk_producer *p);

/* Consumer-group lag of group on topic: the sum over partitions of the high
 * watermark minus the group's committed offset (the low watermark when none).
 * Blocks up to timeout_ms (call it off an event loop). 0 or -1. */
int kfk_lag(struct kfk_producer *p, const char *group, const char *topic, int timeout_ms,
            long long *lag, int *partitions);

/* ---- group consumers ------------------------------------------------------- */

/* A member of group reading topic, with manual offset stores
 * (enable.auto.offset.store=false: an offset is stored only through
 * kfk_consumer_store, after the caller's effects are committed), the eager
 * range assignor, auto.offset.reset=earliest. Its own thread polls without
 * pause (so max.poll.interval.ms holds whatever the caller's jobs take) and
 * calls the ops below on that thread. */
struct kfk_consumer;

struct kfk_consumer_ops {
    void *arg;
    /* a message; key/val are valid during the call only */
    void (*message)(void *arg, int32_t partition, int64_t offset, const char *key, size_t klen,
                    const char *val, size_t vlen);
    /* partitions now ours */
    void (*assigned)(void *arg, const int32_t *parts, size_t n);
    /* partitions about to be taken away: fill commit[i] with the offset to
     * commit for parts[i] (the next one to read), or -1 for none. The consumer
     * commits them synchronously before giving the partitions up. */
    void (*revoked)(void *arg, const int32_t *parts, size_t n, int64_t *commit);
};

/* NULL after logging when librdkafka refuses the settings. ops is copied. */
struct kfk_consumer *kfk_consumer_new(const struct cfg *cfg, const char *group,
                                      const char *topic, const struct kfk_consumer_ops *ops);
/* Store next (the next offset to read) for a partition: committed with the
 * next auto commit (auto.commit.interval.ms, 1 s unless set). Ignored for a
 * partition that is no longer assigned. Thread-safe. */
void kfk_consumer_store(struct kfk_consumer *c, int32_t partition, int64_t next);
/* Stop (pause 1) or restart fetching a partition; polling goes on. Thread-safe. */
void kfk_consumer_pause(struct kfk_consumer *c, int32_t partition, int pause);
/* Commit what was stored, leave the group, join the thread, free. */
void kfk_consumer_free(struct kfk_consumer *c);

/* ---- the mock cluster (librdkafka's, real protocol over TCP) ------------------ */

struct kfk_mock;
/* nbrokers brokers on 127.0.0.1, random ports. NULL after logging on failure. */
struct kfk_mock *kfk_mock_new(int nbrokers);
/* "127.0.0.1:p1,127.0.0.1:p2,...", owned by m. */
const char *kfk_mock_bootstraps(const struct kfk_mock *m);
/* Create topic with partitions partitions (replication = min(3, brokers)). 0 or -1. */
int kfk_mock_topic(struct kfk_mock *m, const char *topic, int partitions);
/* Set broker id (1..nbrokers; 0 = every broker) down (up 0) or up (up 1). 0 or -1. */
int kfk_mock_broker(struct kfk_mock *m, int id, int up);
void kfk_mock_free(struct kfk_mock *m);

#endif
