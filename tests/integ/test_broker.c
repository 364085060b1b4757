/* The Redis Streams broker against a real redis-server (CONVEYOR_REDIS_URL,
 * started by tests/harness/run-integ.sh). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "cfg.h"
#include "clock.h"
#include "rds.h"

static struct cfg cfg;
static struct broker *b;
static struct rds *r;

static void setup(void)
{
    cr_assert_eq(cfg_load(&cfg, NULL), 0);
    cr_assert_not_null(getenv("CONVEYOR_REDIS_URL"), "run through tests/harness/run-integ.sh");
    r = rds_connect(cfg.redis_url, 5000);
    cr_assert_not_null(r);
    rds_reply_free(rds_cmdf(r, "FLUSHALL"));
    b = broker_open(&cfg, NULL);
    cr_assert_not_null(b);
}

static void teardown(void)
{
    broker_close(b);
    rds_free(r);
    cfg_cleanup(&cfg);
}

TestSuite(broker, .init = setup, .fini = teardown);

struct pub_out {
    enum cv_rc rc;
    size_t n;
    char ids[1000][UUID_STR_LEN];
    int dup[1000];
};

static void on_pub(void *arg, enum cv_rc rc, const char *const *ids, const int *dup, size_t n)
{
    struct pub_out *o = arg;
    o->rc = rc;
    o->n = n;
    for (size_t i = 0; i < n && i < 1000; i++) {
        snprintf(o->ids[i], UUID_STR_LEN, "%s", ids[i]);
        o->dup[i] = dup[i];
    }
}

static struct job *mk(const char *type, const char *payload)
{
    struct job *j = job_new(type);
    job_set_payload(j, payload, strlen(payload));
    j->max_attempts = 3;
    j->created_ms = clock_wall_ms();
    job_traceparent_new(j->traceparent);
    return j;
}

static void publish1(struct job *j, struct pub_out *o)
{
    broker_publish(b, &j, 1, 60, on_pub, o);
    cr_assert_eq(o->rc, CV_OK);
    cr_assert_eq(o->n, 1);
}

struct st_out {
    enum cv_rc rc;
    struct job_status st;
};

static void on_status(void *arg, enum cv_rc rc, const struct job_status *st)
{
    struct st_out *o = arg;
    o->rc = rc;
    if (st) {
        o->st = *st;
        o->st.payload = NULL;
        o->st.idem_key = NULL;
    }
}

static enum job_state state_of(const char *id)
{
    struct st_out o;
    memset(&o, 0, sizeof(o));
    broker_get(b, id, on_status, &o);
    cr_assert_eq(o.rc, CV_OK, "status of %s: %s", id, cv_rc_str(o.rc));
    return o.st.state;
}

struct q_out {
    enum cv_rc rc;
    struct queue_stat q;
    int found;
};

static void on_queues(void *arg, enum cv_rc rc, const struct queue_stat *q, size_t n)
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
static long long unsettled(void)
{
    struct q_out q;
    memset(&q, 0, sizeof(q));
    broker_queues(b, on_queues, &q);
    cr_assert_eq(q.rc, CV_OK);
    return q.q.depth + q.q.pending;
}

static size_t consume(const char *consumer, const char *type, struct job **out, size_t max)
{
    const char *types[] = { type };
    size_t n = 0;
    cr_assert_eq(broker_consume(b, consumer, types, 1, max, 10, out, &n), CV_OK);
    return n;
}

static void settle1(struct job *j, enum broker_outcome o, int64_t delay, int *fenced)
{
    struct broker_settle s = { o, delay, "boom", 0 };
    cr_assert_eq(broker_settle(b, &j, &s, 1, 60), CV_OK);
    *fenced = s.fenced;
}

Test(broker, publish_consume_ack)
{
    struct job *j = mk("noop", "{\"x\":1}");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(j, o);
    cr_assert_str_eq(o->ids[0], j->id);
    cr_assert_eq(o->dup[0], 0);
    cr_assert_eq(state_of(j->id), JOB_STATE_QUEUED);

    struct job *got[4];
    cr_assert_eq(consume("c1", "noop", got, 4), 1);
    cr_assert_str_eq(got[0]->id, j->id);
    cr_assert_str_eq(got[0]->payload, "{\"x\":1}");
    cr_assert_eq(got[0]->attempt, 1);
    cr_assert_eq(got[0]->epoch, 1);
    cr_assert_str_eq(got[0]->traceparent, j->traceparent);
    cr_assert_eq(state_of(j->id), JOB_STATE_RUNNING);

    int fenced;
    settle1(got[0], BROKER_ACK, 0, &fenced);
    cr_assert_eq(fenced, 0);
    cr_assert_eq(state_of(j->id), JOB_STATE_SUCCEEDED);
    cr_assert_eq(unsettled(), 0);
    struct rds_reply *ttl = rds_cmdf(r, "TTL cv:job:%s", j->id);
    cr_assert(rds_reply_int(ttl) > 0 && rds_reply_int(ttl) <= 60);
    rds_reply_free(ttl);
    cr_assert_eq(consume("c1", "noop", got, 4), 0);
    job_free(got[0]);
    job_free(j);
    free(o);
}

Test(broker, idempotency_key_enqueues_once)
{
    struct job *a = mk("noop", "{}"), *c = mk("noop", "{}");
    a->idem_key = strdup("order-42");
    c->idem_key = strdup("order-42");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(a, o);
    publish1(c, o);
    cr_assert_str_eq(o->ids[0], a->id, "a repeat returns the first job's id");
    cr_assert_eq(o->dup[0], 1);
    cr_assert_eq(unsettled(), 1);
    /* the same key for another type is another job */
    struct job *d = mk("activation", "{}");
    d->idem_key = strdup("order-42");
    publish1(d, o);
    cr_assert_eq(o->dup[0], 0);
    job_free(a);
    job_free(c);
    job_free(d);
    free(o);
}

Test(broker, batch_of_1000_is_published_atomically_and_consumed)
{
    struct job *jobs[1000];
    for (int i = 0; i < 1000; i++)
        jobs[i] = mk("noop", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    broker_publish(b, jobs, 1000, 60, on_pub, o);
    cr_assert_eq(o->rc, CV_OK);
    cr_assert_eq(o->n, 1000);
    cr_assert_eq(unsettled(), 1000);
    size_t total = 0;
    struct job *got[256];
    for (int round = 0; round < 10 && total < 1000; round++) {
        size_t n = consume("c1", "noop", got, 256);
        struct broker_settle s[256];
        memset(s, 0, sizeof(s));
        cr_assert_eq(broker_settle(b, got, s, n, 60), CV_OK);
        for (size_t i = 0; i < n; i++)
            job_free(got[i]);
        total += n;
    }
    cr_assert_eq(total, 1000);
    cr_assert_eq(unsettled(), 0);
    /* the promoter trims what was acked */
    size_t moved;
    cr_assert_eq(broker_promote(b, 10, &moved), CV_OK);
    struct rds_reply *x = rds_cmdf(r, "XLEN cv:q:noop");
    cr_assert(rds_reply_int(x) < 1000, "acked entries are trimmed (%lld left)", rds_reply_int(x));
    rds_reply_free(x);
    for (int i = 0; i < 1000; i++)
        job_free(jobs[i]);
    free(o);
}

static size_t promote_until_moved(int timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    size_t moved = 0;
    while (clock_mono_ms() < end) {
        cr_assert_eq(broker_promote(b, 100, &moved), CV_OK);
        if (moved)
            return moved;
        struct rds_reply *x = rds_cmdf(r, "PING"); /* a round trip instead of a sleep */
        rds_reply_free(x);
    }
    return 0;
}

Test(broker, retry_goes_through_delayed_set_with_next_attempt)
{
    struct job *j = mk("noop", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(j, o);
    struct job *got[2];
    cr_assert_eq(consume("c1", "noop", got, 2), 1);
    int fenced;
    settle1(got[0], BROKER_RETRY, 150, &fenced);
    job_free(got[0]);
    cr_assert_eq(state_of(j->id), JOB_STATE_RETRYING);
    size_t moved = 1;
    cr_assert_eq(broker_promote(b, 100, &moved), CV_OK);
    cr_assert_eq(moved, 0, "not due yet");
    cr_assert_eq(consume("c1", "noop", got, 2), 0);
    cr_assert_eq(promote_until_moved(3000), 1);
    cr_assert_eq(state_of(j->id), JOB_STATE_QUEUED);
    cr_assert_eq(consume("c1", "noop", got, 2), 1);
    cr_assert_eq(got[0]->attempt, 2);
    cr_assert_eq(got[0]->epoch, 2);
    struct st_out so;
    memset(&so, 0, sizeof(so));
    broker_get(b, j->id, on_status, &so);
    cr_assert_str_eq(so.st.last_error, "boom");
    job_free(got[0]);
    job_free(j);
    free(o);
}

struct list_out {
    enum cv_rc rc;
    size_t n;
    char first[UUID_STR_LEN];
};

static void on_list(void *arg, enum cv_rc rc, const struct job_status *st, size_t n)
{
    struct list_out *o = arg;
    o->rc = rc;
    o->n = n;
    if (n)
        snprintf(o->first, sizeof(o->first), "%s", st[0].id);
}

static void on_done(void *arg, enum cv_rc rc)
{
    *(enum cv_rc *)arg = rc;
}

Test(broker, dead_letter_list_and_replay)
{
    struct job *j = mk("activation", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(j, o);
    struct job *got[2];
    cr_assert_eq(consume("c1", "activation", got, 2), 1);
    int fenced;
    settle1(got[0], BROKER_DEAD, 0, &fenced);
    job_free(got[0]);
    cr_assert_eq(state_of(j->id), JOB_STATE_DEAD);

    struct list_out l;
    memset(&l, 0, sizeof(l));
    broker_dead_list(b, "activation", 10, on_list, &l);
    cr_assert_eq(l.rc, CV_OK);
    cr_assert_eq(l.n, 1);
    cr_assert_str_eq(l.first, j->id);
    broker_dead_list(b, "noop", 10, on_list, &l);
    cr_assert_eq(l.n, 0);

    enum cv_rc rc = CV_ERR_INTERNAL;
    broker_dead_retry(b, j->id, on_done, &rc);
    cr_assert_eq(rc, CV_OK);
    cr_assert_eq(state_of(j->id), JOB_STATE_QUEUED);
    broker_dead_retry(b, j->id, on_done, &rc);
    cr_assert_eq(rc, CV_ERR_CONFLICT, "a queued job is not dead");
    broker_dead_retry(b, "00000000-0000-4000-8000-000000000000", on_done, &rc);
    cr_assert_eq(rc, CV_ERR_NOT_FOUND);
    broker_dead_list(b, NULL, 10, on_list, &l);
    cr_assert_eq(l.n, 0);

    cr_assert_eq(consume("c1", "activation", got, 2), 1);
    cr_assert_eq(got[0]->attempt, 1, "a replay starts with fresh attempts");
    job_free(got[0]);
    job_free(j);
    free(o);
}

Test(broker, reclaimed_delivery_fences_the_slow_worker)
{
    struct job *j = mk("noop", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(j, o);
    struct job *slow[2], *fresh[2];
    cr_assert_eq(consume("slow", "noop", slow, 2), 1);
    size_t n = 0;
    cr_assert_eq(broker_reclaim(b, "fresh", "noop", 0, 10, fresh, &n), CV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(fresh[0]->id, j->id);
    cr_assert_eq(fresh[0]->epoch, slow[0]->epoch + 1);
    cr_assert_eq(fresh[0]->deliveries, 2);

    int fenced = 0;
    settle1(slow[0], BROKER_ACK, 0, &fenced);
    cr_assert_eq(fenced, 1, "the old delivery must not settle");
    cr_assert_eq(state_of(j->id), JOB_STATE_RUNNING);
    settle1(fresh[0], BROKER_ACK, 0, &fenced);
    cr_assert_eq(fenced, 0);
    cr_assert_eq(state_of(j->id), JOB_STATE_SUCCEEDED);
    job_free(slow[0]);
    job_free(fresh[0]);
    job_free(j);
    free(o);
}

Test(broker, delayed_job_waits_for_its_time)
{
    struct job *j = mk("noop", "{}");
    j->not_before_ms = clock_wall_ms() + 200;
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(j, o);
    cr_assert_eq(state_of(j->id), JOB_STATE_SCHEDULED);
    struct job *got[2];
    cr_assert_eq(consume("c1", "noop", got, 2), 0);
    cr_assert_eq(promote_until_moved(3000), 1);
    cr_assert(clock_wall_ms() >= j->not_before_ms);
    cr_assert_eq(consume("c1", "noop", got, 2), 1);
    job_free(got[0]);
    job_free(j);
    free(o);
}

Test(broker, queue_stats)
{
    struct job *jobs[5];
    for (int i = 0; i < 5; i++)
        jobs[i] = mk("noop", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    broker_publish(b, jobs, 5, 60, on_pub, o);
    struct job *got[2];
    cr_assert_eq(consume("c1", "noop", got, 2), 2);
    struct q_out q;
    memset(&q, 0, sizeof(q));
    broker_queues(b, on_queues, &q);
    cr_assert_eq(q.rc, CV_OK);
    cr_assert(q.found);
    cr_assert_eq(q.q.depth, 3);
    cr_assert_eq(q.q.pending, 2);
    cr_assert_eq(q.q.consumers, 1);
    cr_assert(q.q.oldest_age_ms >= 0);
    for (int i = 0; i < 2; i++)
        job_free(got[i]);
    for (int i = 0; i < 5; i++)
        job_free(jobs[i]);
    free(o);
}

static void on_workers(void *arg, enum cv_rc rc, const struct worker_info *w, size_t n)
{
    int *count = arg;
    cr_assert_eq(rc, CV_OK);
    *count = (int)n;
    if (n)
        cr_assert_str_eq(w[0].name, "w-test");
}

Test(broker, heartbeats_list_live_workers)
{
    struct worker_info w;
    memset(&w, 0, sizeof(w));
    strcpy(w.name, "w-test");
    strcpy(w.types, "noop");
    w.pid = 1;
    cr_assert_eq(broker_heartbeat(b, &w, 5000), CV_OK);
    int count = -1;
    broker_workers(b, 10000, on_workers, &count);
    cr_assert_eq(count, 1);
    cr_assert_eq(broker_worker_gone(b, "w-test"), CV_OK);
    broker_workers(b, 10000, on_workers, &count);
    cr_assert_eq(count, 0);
}

static long long consumers_of(const char *type)
{
    struct rds_reply *x = rds_cmdf(r, "XINFO CONSUMERS cv:q:%s cv", type);
    long long n = (long long)rds_reply_len(x);
    rds_reply_free(x);
    return n;
}

Test(broker, a_leaving_worker_leaves_the_group_unless_it_holds_deliveries)
{
    struct job *a = mk("noop", "{}"), *c = mk("noop", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(a, o);
    struct job *got[2];
    cr_assert_eq(consume("busy", "noop", got, 1), 1);
    publish1(c, o);
    struct job *idle[2];
    cr_assert_eq(consume("idle", "noop", idle, 1), 1);
    struct broker_settle s = { BROKER_ACK, 0, NULL, 0 };
    cr_assert_eq(broker_settle(b, idle, &s, 1, 60), CV_OK);
    cr_assert_eq(consumers_of("noop"), 2);
    cr_assert_eq(broker_worker_gone(b, "idle"), CV_OK);
    cr_assert_eq(broker_worker_gone(b, "busy"), CV_OK);
    cr_assert_eq(consumers_of("noop"), 1, "the one holding a delivery stays");
    job_free(got[0]);
    job_free(idle[0]);
    job_free(a);
    job_free(c);
    free(o);
}

Test(broker, dead_letter_set_keeps_the_newest_dead_max_jobs)
{
    struct cfg small = cfg;
    small.dead_max = 2;
    struct broker *b2 = broker_open(&small, NULL);
    cr_assert_not_null(b2);
    struct pub_out *o = calloc(1, sizeof(*o));
    char ids[3][UUID_STR_LEN];
    for (int i = 0; i < 3; i++) {
        struct job *j = mk("noop", "{}");
        publish1(j, o);
        snprintf(ids[i], UUID_STR_LEN, "%s", j->id);
        job_free(j);
        struct job *got[1];
        cr_assert_eq(consume("c1", "noop", got, 1), 1);
        struct broker_settle s = { BROKER_DEAD, 0, "boom", 0 };
        cr_assert_eq(broker_settle(b2, got, &s, 1, 60), CV_OK);
        job_free(got[0]);
    }
    struct list_out l;
    memset(&l, 0, sizeof(l));
    broker_dead_list(b, "noop", 10, on_list, &l);
    cr_assert_eq(l.n, 2);
    cr_assert_str_eq(l.first, ids[2]);
    struct st_out so;
    memset(&so, 0, sizeof(so));
    broker_get(b, ids[0], on_status, &so);
    cr_assert_eq(so.rc, CV_ERR_NOT_FOUND, "the oldest dead job was dropped");
    broker_close(b2);
    free(o);
}
