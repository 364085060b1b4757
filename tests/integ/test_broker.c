/* The broker contract: what every transport does, proven through broker.h alone,
 * run once per transport of the table below (test names <transport>_<behaviour>).
 * Redis runs for all of them (run-integ.sh): it holds the job status (jstore).
 * A test that relies on a capability (enum broker_cap) is skipped on a transport
 * without it. What is particular to Redis Streams is in test_rstream.c. */
#include "brk_tc.h"

/* The transports the contract runs on: X(name, test) once each. A transport's
 * setup_<name> brings up what it needs beyond Redis. */
#define TRANSPORTS(X, test) X(redis, test) X(kafka, test)

static void setup_redis(void)
{
    tc_setup("redis");
}

/* the mock cluster run-integ.sh started (CONVEYOR_TEST_KAFKA_BOOTSTRAP) */
static void setup_kafka(void)
{
    tc_setup("kafka");
}

#define ON_TRANSPORT(t, test)                                                                \
    Test(broker, t##_##test, .init = setup_##t, .fini = tc_teardown)                         \
    {                                                                                        \
        ct_##test();                                                                         \
    }
/* CONTRACT(name) { body } defines ct_name and one Criterion test per transport. */
#define CONTRACT(test)                                                                       \
    static void ct_##test(void);                                                             \
    TRANSPORTS(ON_TRANSPORT, test)                                                           \
    static void ct_##test(void)

static void need(unsigned caps)
{
    if ((broker_caps(b) & caps) != caps)
        cr_skip_test("transport %s lacks capability %#x", broker_transport(b), caps);
}

CONTRACT(publish_consume_ack)
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
    cr_assert_eq(unsettled(0), 0);
    /* the status is in Redis on every transport (jstore): a finished one expires */
    struct rds_reply *ttl = rds_cmdf(r, "TTL cv:job:%s", j->id);
    cr_assert(rds_reply_int(ttl) > 0 && rds_reply_int(ttl) <= 60);
    rds_reply_free(ttl);
    cr_assert_eq(consume_none("c1", "noop"), 0);
    job_free(got[0]);
    job_free(j);
    free(o);
}


CONTRACT(idempotency_key_enqueues_once)
{
    struct job *a = mk("noop", "{}"), *c = mk("noop", "{}");
    a->idem_key = strdup("order-42");
    c->idem_key = strdup("order-42");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(a, o);
    publish1(c, o);
    cr_assert_str_eq(o->ids[0], a->id, "a repeat returns the first job's id");
    cr_assert_eq(o->dup[0], 1);
    cr_assert_eq(unsettled(1), 1);
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


CONTRACT(batch_of_1000_is_published_atomically_and_consumed)
{
    publish_batch("noop", 1000);
    cr_assert_eq(unsettled(1000), 1000);
    cr_assert_eq(ack_all("noop", 1000), 1000);
    cr_assert_eq(unsettled(0), 0);
}

static size_t promote_until_moved(int timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    size_t moved = 0;
    while (clock_mono_ms() < end) {
        cr_assert_eq(broker_promote(b, 100, &moved), CV_OK);
        if (moved)
            return moved;
        cr_assert(broker_ready(b)); /* a round trip instead of a sleep */
    }
    return 0;
}

/* Read type until a job comes, running the promoter between reads (Redis
 * Streams: a retry waits in the delayed set; Kafka: in the consumer). */
static size_t take_due(const char *consumer, const char *type, struct job **got)
{
    const char *types[] = { type };
    int64_t end = clock_mono_ms() + 20000;
    size_t n = 0;
    while (n == 0 && clock_mono_ms() < end) {
        cr_assert_eq(broker_promote(b, 100, NULL), CV_OK);
        cr_assert_eq(broker_consume(b, consumer, types, 1, 1, 100, got, &n), CV_OK);
    }
    return n;
}

CONTRACT(a_retry_comes_back_after_its_delay_with_the_next_attempt)
{
    struct job *j = mk("noop", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(j, o);
    struct job *got[2];
    cr_assert_eq(consume("c1", "noop", got, 2), 1);
    int fenced;
    settle1(got[0], BROKER_RETRY, 800, &fenced);
    job_free(got[0]);
    struct st_out so;
    get_status(j->id, &so);
    cr_assert_eq(so.st.state, JOB_STATE_RETRYING);
    cr_assert_str_eq(so.st.last_error, "boom");
    cr_assert_gt(so.st.not_before_ms, clock_wall_ms() - 100);
    cr_assert_eq(take_due("c1", "noop", got), 1);
    cr_assert_geq(clock_wall_ms(), so.st.not_before_ms, "not before its delay");
    cr_assert_eq(got[0]->attempt, 2);
    cr_assert_eq(got[0]->epoch, 2);
    cr_assert_eq(state_of(j->id), JOB_STATE_RUNNING);
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

CONTRACT(dead_letter_list_and_replay)
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


CONTRACT(reclaimed_delivery_fences_the_slow_worker)
{
    need(BROKER_CAP_RECLAIM_IDLE);
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
    /* both are counted (/metrics: conveyor_reclaims_total, conveyor_fenced_writes_total) */
    struct rds_reply *x = rds_cmdf(r, "HMGET cv:stats:noop reclaimed fenced");
    cr_assert_eq(rds_reply_at_int(x, 0, 0), 1, "one delivery reclaimed");
    cr_assert_eq(rds_reply_at_int(x, 1, 0), 1, "one settle fenced");
    rds_reply_free(x);
    job_free(slow[0]);
    job_free(fresh[0]);
    job_free(j);
    free(o);
}


CONTRACT(delayed_job_waits_for_its_time)
{
    need(BROKER_CAP_DELAYED_SET);
    struct job *j = mk("noop", "{}");
    j->not_before_ms = clock_wall_ms() + 200;
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(j, o);
    cr_assert_eq(state_of(j->id), JOB_STATE_SCHEDULED);
    struct job *got[2];
    cr_assert_eq(consume_none("c1", "noop"), 0);
    cr_assert_eq(promote_until_moved(3000), 1);
    cr_assert(clock_wall_ms() >= j->not_before_ms);
    cr_assert_eq(consume("c1", "noop", got, 2), 1);
    job_free(got[0]);
    job_free(j);
    free(o);
}


CONTRACT(queue_stats)
{
    struct job *jobs[5];
    for (int i = 0; i < 5; i++)
        jobs[i] = mk("noop", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    broker_publish(b, jobs, 5, 60, on_pub, o);
    struct job *got[2];
    cr_assert_eq(consume_n("c1", "noop", got, 2), 2);
    struct q_out q;
    memset(&q, 0, sizeof(q));
    broker_queues(b, on_queues, &q);
    cr_assert_eq(q.rc, CV_OK);
    cr_assert(q.found);
    /* five unsettled on every transport; how they split differs (Redis knows
     * what is delivered, Kafka's lag counts up to the committed offset) */
    cr_assert_eq(q.q.depth + q.q.pending, 5);
    cr_assert_geq(q.q.lag, 0);
    if (!strcmp(broker_transport(b), "redis")) {
        cr_assert_eq(q.q.depth, 3);
        cr_assert_eq(q.q.pending, 2);
        cr_assert_eq(q.q.consumers, 1);
    }
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

CONTRACT(heartbeats_list_live_workers)
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


struct purge_out {
    enum cv_rc rc;
    enum broker_purge what;
};

static void on_purge(void *arg, enum cv_rc rc, enum broker_purge what)
{
    struct purge_out *p = arg;
    p->rc = rc;
    p->what = what;
}

static enum broker_purge purge(const char *id)
{
    struct purge_out p = { CV_ERR_INTERNAL, BROKER_PURGE_UNKNOWN };
    broker_dead_purge(b, id, on_purge, &p);
    cr_assert_eq(p.rc, CV_OK);
    return p.what;
}

/* Issue 5: a size cap on the dead-letter set used to delete the oldest job, the
 * only handle on money it held. Dead jobs now leave only by an operator's purge
 * (refused while held) or their type's retention (which skips held ones). */
CONTRACT(dead_letters_leave_only_by_purge_and_never_while_held)
{
    struct pub_out *o = calloc(1, sizeof(*o));
    char held[UUID_STR_LEN], plain[5][UUID_STR_LEN];
    dead_one(o, 1, held);
    for (int i = 0; i < 5; i++)
        dead_one(o, 0, plain[i]);
    struct list_out l;
    memset(&l, 0, sizeof(l));
    broker_dead_list(b, "noop", 100, on_list, &l);
    cr_assert_eq(l.n, 6, "every dead job is kept");
    struct st_out so;
    get_status(held, &so);
    cr_assert_eq(so.rc, CV_OK);
    cr_assert_eq(so.st.held, 1);
    cr_assert_eq(purge(held), BROKER_PURGE_HELD);
    cr_assert_eq(state_of(held), JOB_STATE_DEAD, "a held job survives a purge");
    cr_assert_eq(purge(plain[0]), BROKER_PURGED);
    get_status(plain[0], &so);
    cr_assert_eq(so.rc, CV_ERR_NOT_FOUND);
    cr_assert_eq(purge(plain[0]), BROKER_PURGE_UNKNOWN);
    struct job *live = mk("noop", "{}");
    publish1(live, o);
    cr_assert_eq(purge(live->id), BROKER_PURGE_LIVE);
    job_free(live);
    /* the reconciler clears the mark once the money is settled: then it may go */
    char ids[8][UUID_STR_LEN];
    size_t n = 0;
    cr_assert_eq(broker_held_ids(b, 8, ids, &n), CV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(ids[0], held);
    cr_assert_eq(broker_dead_unhold(b, held), CV_OK);
    cr_assert_eq(broker_held_ids(b, 8, ids, &n), CV_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(purge(held), BROKER_PURGED);
    free(o);
}


CONTRACT(retention_expires_old_dead_letters_but_not_held_ones)
{
    struct pub_out *o = calloc(1, sizeof(*o));
    char held[UUID_STR_LEN], plain[UUID_STR_LEN];
    dead_one(o, 1, held);
    dead_one(o, 0, plain);
    /* both ended at least a millisecond before the retention's cutoff */
    int64_t t0 = clock_wall_ms();
    while (clock_wall_ms() < t0 + 2)
        ;
    size_t gone = 99;
    cr_assert_eq(broker_dead_expire(b, "noop", 3600 * 1000, 100, &gone), CV_OK);
    cr_assert_eq(gone, 0, "nothing is an hour old");
    cr_assert_eq(broker_dead_expire(b, "noop", 0, 100, &gone), CV_OK);
    cr_assert_eq(gone, 1);
    struct st_out so;
    get_status(plain, &so);
    cr_assert_eq(so.rc, CV_ERR_NOT_FOUND);
    cr_assert_eq(state_of(held), JOB_STATE_DEAD);
    free(o);
}


/* Issue 5: the poison-job guard counted every delivery a job ever had, so a
 * replayed job could never settle held money. It counts the deliveries of the
 * current life that never settled; the epoch (fencing) keeps growing. */
CONTRACT(a_replay_starts_a_new_life_for_the_poison_guard)
{
    need(BROKER_CAP_RECLAIM_IDLE | BROKER_CAP_DELAYED_SET);
    struct pub_out *o = calloc(1, sizeof(*o));
    struct job *j = mk("noop", "{}");
    publish1(j, o);
    struct job *got[1];
    cr_assert_eq(consume("c1", "noop", got, 1), 1);
    cr_assert_eq(got[0]->deliveries, 1);
    job_free(got[0]);
    for (int k = 2; k <= 4; k++) {   /* the worker "dies" each time: reclaimed */
        size_t n = 0;
        cr_assert_eq(broker_reclaim(b, "c2", "noop", 0, 1, got, &n), CV_OK);
        cr_assert_eq(n, 1);
        cr_assert_eq(got[0]->deliveries, k);
        if (k < 4)
            job_free(got[0]);
    }
    int64_t epoch = got[0]->epoch;
    struct broker_settle s = { BROKER_DEAD, 0, "poison", 1, 0 };
    cr_assert_eq(broker_settle(b, got, &s, 1, 60), CV_OK);
    job_free(got[0]);
    enum cv_rc rc = CV_ERR_INTERNAL;
    broker_dead_retry(b, j->id, on_done, &rc);
    cr_assert_eq(rc, CV_OK);
    cr_assert_eq(consume("c1", "noop", got, 1), 1);
    cr_assert_eq(got[0]->deliveries, 1, "a new life");
    cr_assert_gt(got[0]->epoch, epoch, "fencing spans lives");
    cr_assert_eq(got[0]->attempt, 1);
    /* a settled retry resets the count too */
    s = (struct broker_settle){ BROKER_RETRY, 0, "again", 0, 0 };
    cr_assert_eq(broker_settle(b, got, &s, 1, 60), CV_OK);
    job_free(got[0]);
    cr_assert_eq(broker_promote(b, 10, NULL), CV_OK);
    cr_assert_eq(consume("c1", "noop", got, 1), 1);
    cr_assert_eq(got[0]->deliveries, 1);
    cr_assert_eq(got[0]->attempt, 2);
    job_free(got[0]);
    job_free(j);
    free(o);
}


/* Issue 5: our own store being down must not spend attempts. */
CONTRACT(a_deferred_job_comes_back_with_the_same_attempt)
{
    struct pub_out *o = calloc(1, sizeof(*o));
    struct job *j = mk("noop", "{}");
    publish1(j, o);
    struct job *got[1];
    cr_assert_eq(consume("c1", "noop", got, 1), 1);
    struct broker_settle s = { BROKER_DEFER, 0, "database unavailable", 0, 0 };
    cr_assert_eq(broker_settle(b, got, &s, 1, 60), CV_OK);
    job_free(got[0]);
    cr_assert_eq(state_of(j->id), JOB_STATE_RETRYING);
    cr_assert_eq(take_due("c1", "noop", got), 1);
    cr_assert_eq(got[0]->attempt, 1);
    job_free(got[0]);
    job_free(j);
    free(o);
}


/* Issue 5: with fewer slots than types the read overflowed the job buffer. */
CONTRACT(a_read_with_fewer_slots_than_types_takes_turns)
{
    const char *types[] = { "noop", "t2", "t3" };
    struct pub_out *o = calloc(1, sizeof(*o));
    for (int i = 0; i < 3; i++) {
        struct job *j = mk(types[i], "{}");
        publish1(j, o);
        job_free(j);
    }
    int seen[3] = { 0, 0, 0 };
    int64_t end = clock_mono_ms() + tc_block_ms;
    while (seen[0] + seen[1] + seen[2] < 3 && clock_mono_ms() < end) {
        struct job *got[1] = { NULL };
        size_t n = 0;
        cr_assert_eq(broker_consume(b, "c1", types, 3, 1, 10, got, &n), CV_OK);
        cr_assert_leq(n, 1);
        for (size_t k = 0; k < n; k++) {
            for (int t = 0; t < 3; t++)
                seen[t] += !strcmp(got[k]->type, types[t]);
            int fenced;
            settle1(got[k], BROKER_ACK, 0, &fenced);
            job_free(got[k]);
        }
    }
    cr_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1, "%d %d %d", seen[0], seen[1],
              seen[2]);
    free(o);
}


/* One read of 64 slots over types[0..2) that fills them all: a read that
 * finds fewer (Kafka: the messages are still arriving) gives them back
 * (deferred: no attempt spent) and reads again. Every job read is settled.
 * Returns the read's size; *nt2 = how many were t2. */
static size_t read_full(const char *const *types, struct job **got, int *nt2)
{
    size_t n = 0;
    int64_t end = clock_mono_ms() + tc_block_ms;
    for (;;) {
        n = 0;
        cr_assert_eq(broker_consume(b, "c1", types, 2, 64, 10, got, &n), CV_OK);
        int full = n == 64 || clock_mono_ms() >= end;
        struct broker_settle s[64];
        memset(s, 0, sizeof(s));
        *nt2 = 0;
        for (size_t k = 0; k < n; k++) {
            *nt2 += !strcmp(got[k]->type, "t2");
            s[k].outcome = full ? BROKER_ACK : BROKER_DEFER;
        }
        cr_assert_eq(broker_settle(b, got, s, n, 60), CV_OK);
        for (size_t k = 0; k < n; k++)
            job_free(got[k]);
        if (full)
            return n;
        cr_assert_eq(broker_promote(b, 1000, NULL), CV_OK);   /* deferred, due now */
    }
}

/* Slots a type leaves unused go to the types with work waiting: with two
 * types and 64 slots, a busy queue gives 64 jobs a read, not 32; both shares
 * together never pass the slots. */
CONTRACT(idle_types_lend_their_slots_to_busy_ones)
{
    const char *types[] = { "noop", "t2" };
    struct pub_out *o = calloc(1, sizeof(*o));
    struct job *js[100];
    for (int i = 0; i < 100; i++)
        js[i] = mk("noop", "{}");
    broker_publish(b, js, 100, 60, on_pub, o);
    cr_assert_eq(o->rc, CV_OK);
    for (int i = 0; i < 100; i++)
        job_free(js[i]);
    struct job *got[64] = { NULL };
    int nt2 = 0;
    cr_assert_eq(read_full(types, got, &nt2), 64, "one read takes every free slot");
    /* with both types busy, each keeps its share */
    struct job *t2[40];
    for (int i = 0; i < 40; i++)
        t2[i] = mk("t2", "{}");
    broker_publish(b, t2, 40, 60, on_pub, o);
    for (int i = 0; i < 40; i++)
        job_free(t2[i]);
    cr_assert_eq(read_full(types, got, &nt2), 64);
    cr_assert_geq(nt2, 32, "t2 keeps its half: %d", nt2);
    free(o);
}


static void on_worker_fields(void *arg, enum cv_rc rc, const struct worker_info *w, size_t n)
{
    struct worker_info *out = arg;
    cr_assert_eq(rc, CV_OK);
    cr_assert_eq(n, 1);
    *out = w[0];
}

CONTRACT(every_worker_field_is_decoded)
{
    struct worker_info w, got;
    memset(&w, 0, sizeof(w));
    memset(&got, 0, sizeof(got));
    strcpy(w.name, "w-fields");
    strcpy(w.host, "host-a");
    strcpy(w.types, "noop,activation");
    w.pid = 4242;
    w.concurrency = 17;
    w.started_ms = 123456789012LL;
    w.processed = 5000000000LL;
    cr_assert_eq(broker_heartbeat(b, &w, 5000), CV_OK);
    broker_workers(b, 10000, on_worker_fields, &got);
    cr_assert_str_eq(got.name, "w-fields");
    cr_assert_str_eq(got.host, "host-a");
    cr_assert_str_eq(got.types, "noop,activation");
    cr_assert_eq(got.pid, 4242);
    cr_assert_eq(got.concurrency, 17);
    cr_assert_eq(got.started_ms, 123456789012LL);
    cr_assert_eq(got.processed, 5000000000LL);
    cr_assert(got.last_seen_ms > 0 && got.last_seen_ms <= clock_wall_ms());
}


/* Issue 8: backpressure. A type at its max_queued refuses bounded jobs
 * (dup 3, the wait in ids[i]), all of a call's jobs of the type together; the
 * system's own (unbounded) jobs pass; settled jobs make room. */
CONTRACT(a_full_type_refuses_bounded_jobs_all_together)
{
    cfg.types[JT_NOOP].max_queued = 2;
    struct job *js[3];
    struct pub_out *o = calloc(1, sizeof(*o));
    for (int i = 0; i < 3; i++) {
        js[i] = mk("noop", "{}");
        js[i]->bounded = 1;
    }
    broker_publish(b, js, 3, 60, on_pub, o);
    cr_assert_eq(o->rc, CV_OK);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(o->dup[i], 3, "three do not fit in two: none goes");
        cr_assert(atoi(o->ids[i]) >= 1 && atoi(o->ids[i]) <= 300, "wait %s", o->ids[i]);
    }
    broker_publish(b, js, 2, 60, on_pub, o);
    cr_assert(o->dup[0] == 0 && o->dup[1] == 0);
    broker_publish(b, &js[2], 1, 60, on_pub, o);
    cr_assert_eq(o->dup[0], 3, "full");
    js[2]->bounded = 0;
    broker_publish(b, &js[2], 1, 60, on_pub, o);
    cr_assert_eq(o->dup[0], 0, "the system's own jobs are never refused");
    cr_assert_eq(ack_all("noop", 3), 3);
    struct job *more = mk("noop", "{}");
    more->bounded = 1;
    broker_publish(b, &more, 1, 60, on_pub, o);
    cr_assert_eq(o->dup[0], 0, "settled jobs made room");
    job_free(more);
    for (int i = 0; i < 3; i++)
        job_free(js[i]);
    free(o);
}
