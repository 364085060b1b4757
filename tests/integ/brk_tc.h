/* brk_tc.h - what the broker tests share: the contract (test_broker.c, once per
 * transport) and the Redis internals (test_rstream.c). Included by each; the state
 * is per test file, and the helpers are static inline so that a file may use
 * some of them only. Redis runs for every transport: it holds the job status. */
#ifndef CV_BRK_TC_H
#define CV_BRK_TC_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "cfg.h"
#include "clock.h"
#include "rds.h"

static struct cfg cfg;
static struct broker *b;
static struct rds *r;
/* How long a read waits for a job that must come (Kafka: the group's first
 * join takes seconds), and for one that must not. */
static int tc_block_ms = 10, tc_none_ms = 10;

/* Kafka settings for a test: the harness's mock cluster, a topic prefix of its
 * own (the cluster outlives tests, Redis is flushed), a session timeout the
 * mock handles well (PLATFORM.md). */
static inline void tc_kafka(struct cfg *c)
{
    const char *boot = getenv("CONVEYOR_TEST_KAFKA_BOOTSTRAP");
    cr_assert_not_null(boot, "run through tests/harness/run-integ.sh (it starts the mock cluster)");
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "t%d-%lld", (int)getpid(), (long long)clock_wall_ms());
    cr_assert_eq(cfg_set(c, "broker.topic_prefix", prefix), 0);
    cr_assert_eq(cfg_set(c, "kafka.bootstrap.servers", boot), 0);
    cr_assert_eq(cfg_set(c, "kafka.session.timeout.ms", "6000"), 0);
    cr_assert_eq(cfg_set(c, "kafka.heartbeat.interval.ms", "500"), 0);
}

/* A fresh Redis and a broker on the named transport. */
static inline void tc_setup(const char *transport)
{
    cr_assert_eq(cfg_load(&cfg, NULL), 0);
    cr_assert_not_null(getenv("CONVEYOR_REDIS_URL"), "run through tests/harness/run-integ.sh");
    cr_assert_eq(cfg_set(&cfg, "broker.transport", transport), 0, "transport %s", transport);
    if (!strcmp(transport, "kafka")) {
        tc_kafka(&cfg);
        tc_block_ms = 20000;
        tc_none_ms = 1500;
    }
    r = rds_connect(cfg.redis_url, 5000);
    cr_assert_not_null(r);
    rds_reply_free(rds_cmdf(r, "FLUSHALL"));
    b = broker_open(&cfg, NULL);
    cr_assert_not_null(b);
}

static inline void tc_teardown(void)
{
    broker_close(b);
    rds_free(r);
    cfg_cleanup(&cfg);
}

struct pub_out {
    enum cv_rc rc;
    size_t n;
    char ids[1000][UUID_STR_LEN];
    int dup[1000];
};

static inline void on_pub(void *arg, enum cv_rc rc, const char *const *ids, const int *dup, size_t n)
{
    struct pub_out *o = arg;
    o->rc = rc;
    o->n = n;
    for (size_t i = 0; i < n && i < 1000; i++) {
        snprintf(o->ids[i], UUID_STR_LEN, "%s", ids[i]);
        o->dup[i] = dup[i];
    }
}

static inline struct job *mk(const char *type, const char *payload)
{
    struct job *j = job_new(type);
    job_set_payload(j, payload, strlen(payload));
    j->max_attempts = 3;
    j->created_ms = clock_wall_ms();
    job_traceparent_new(j->traceparent);
    return j;
}

static inline void publish1(struct job *j, struct pub_out *o)
{
    broker_publish(b, &j, 1, 60, on_pub, o);
    cr_assert_eq(o->rc, CV_OK);
    cr_assert_eq(o->n, 1);
}

struct st_out {
    enum cv_rc rc;
    struct job_status st;
};

/* The job's status; its strings are freed at once (the tests read the rest). */
static inline void get_status(const char *id, struct st_out *o)
{
    o->rc = broker_get_copy(b, id, &o->st);
    job_status_cleanup(&o->st);
}

static inline enum job_state state_of(const char *id)
{
    struct st_out o;
    get_status(id, &o);
    cr_assert_eq(o.rc, CV_OK, "status of %s: %s", id, cv_rc_str(o.rc));
    return o.st.state;
}

struct q_out {
    enum cv_rc rc;
    struct queue_stat q;
    int found;
};

static inline void on_queues(void *arg, enum cv_rc rc, const struct queue_stat *q, size_t n)
{
    struct q_out *o = arg;
    o->rc = rc;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(q[i].type, "noop")) {
            o->q = q[i];
            o->found = 1;
        }
}

/* Jobs of the noop queue not settled yet: waiting plus delivered. */
static inline long long unsettled_now(void)
{
    struct q_out q;
    memset(&q, 0, sizeof(q));
    broker_queues(b, on_queues, &q);
    cr_assert_eq(q.rc, CV_OK);
    return q.q.depth + q.q.pending;
}

/* unsettled_now() once it equals want, or after a deadline (Kafka commits
 * finished offsets every second: its count follows a settle, it does not
 * change with it). */
static inline long long unsettled(long long want)
{
    int64_t end = clock_mono_ms() + (tc_block_ms > 10 ? 10000 : 0);
    long long n = unsettled_now();
    while (n != want && clock_mono_ms() < end) {
        cr_assert(broker_ready(b)); /* a round trip instead of a sleep */
        n = unsettled_now();
    }
    return n;
}

/* Read up to max jobs; waits up to tc_block_ms for the first. */
static inline size_t consume(const char *consumer, const char *type, struct job **out, size_t max)
{
    const char *types[] = { type };
    size_t n = 0;
    cr_assert_eq(broker_consume(b, consumer, types, 1, max, tc_block_ms, out, &n), CV_OK);
    return n;
}

/* Read until want jobs came (several reads on Kafka, where messages arrive
 * one fetch at a time), or the deadline. Returns how many. */
static inline size_t consume_n(const char *consumer, const char *type, struct job **out,
                               size_t want)
{
    size_t n = 0;
    int64_t end = clock_mono_ms() + tc_block_ms;
    while (n < want && clock_mono_ms() < end)
        n += consume(consumer, type, out + n, want - n);
    return n;
}

/* A read that must find nothing: it waits tc_none_ms. */
static inline size_t consume_none(const char *consumer, const char *type)
{
    const char *types[] = { type };
    struct job *out[4];
    size_t n = 0;
    cr_assert_eq(broker_consume(b, consumer, types, 1, 4, tc_none_ms, out, &n), CV_OK);
    for (size_t i = 0; i < n; i++)
        job_free(out[i]);
    return n;
}

static inline void settle1(struct job *j, enum broker_outcome o, int64_t delay, int *fenced)
{
    struct broker_settle s = { o, delay, "boom", 0, 0 };
    cr_assert_eq(broker_settle(b, &j, &s, 1, 60), CV_OK);
    *fenced = s.fenced;
}

/* Consume one job of type as consumer and settle it with outcome (held as given). */
static inline void take_and_settle(const char *consumer, enum broker_outcome o, int held, char *id_out)
{
    struct job *got[1];
    cr_assert_eq(consume(consumer, "noop", got, 1), 1);
    struct broker_settle s = { o, 0, "boom", held, 0 };
    cr_assert_eq(broker_settle(b, got, &s, 1, 60), CV_OK);
    cr_assert_eq(s.fenced, 0);
    if (id_out)
        snprintf(id_out, UUID_STR_LEN, "%s", got[0]->id);
    job_free(got[0]);
}

static inline void dead_one(struct pub_out *o, int held, char id[UUID_STR_LEN])
{
    struct job *j = mk("noop", "{}");
    publish1(j, o);
    job_free(j);
    take_and_settle("c1", BROKER_DEAD, held, id);
}

/* Publish n (<= 1000) new jobs of type in one call: all are new. */
static inline void publish_batch(const char *type, size_t n)
{
    struct job *jobs[1000];
    cr_assert_leq(n, 1000);
    for (size_t i = 0; i < n; i++)
        jobs[i] = mk(type, "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    broker_publish(b, jobs, n, 60, on_pub, o);
    cr_assert_eq(o->rc, CV_OK);
    cr_assert_eq(o->n, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(o->dup[i], 0);
        job_free(jobs[i]);
    }
    free(o);
}

/* Consume and ack what type holds, up to max jobs, never more (30 s at most).
 * Returns how many. */
static inline size_t ack_all(const char *type, size_t max)
{
    size_t total = 0;
    struct job *got[256];
    int64_t end = clock_mono_ms() + 30000;
    while (total < max && clock_mono_ms() < end) {
        size_t n = consume("c1", type, got, max - total < 256 ? max - total : 256);
        struct broker_settle s[256];
        memset(s, 0, sizeof(s));
        cr_assert_eq(broker_settle(b, got, s, n, 60), CV_OK);
        for (size_t i = 0; i < n; i++)
            job_free(got[i]);
        total += n;
    }
    return total;
}

#endif
