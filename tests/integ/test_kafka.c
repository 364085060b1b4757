/* The Kafka transport across real processes, on librdkafka's mock cluster
 * (real protocol over TCP; run-integ.sh starts it, three brokers): the API
 * produces, workers share a consumer group per type, a SIGKILLed worker's
 * partitions move and its jobs still take effect once (balances), a cluster
 * set down and back up, a slow job past max.poll.interval.ms, per-key order
 * with 64 jobs in flight, and what the transport does for deliveries that
 * never settle and jobs recorded but never produced. The contract itself runs
 * on Kafka in test_broker.c. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brk_tc.h"
#include "harness.h"

/* Every process of a test uses the test's topic prefix on the shared cluster. */
static char env_transport[] = "CONVEYOR_BROKER_TRANSPORT=kafka";
static char env_boot[512], env_prefix[128];
static const char *kenv[16];

static void setup(void)
{
    hn_flush_redis();
    hn_reset_db();
    tc_setup("kafka");
    snprintf(env_boot, sizeof(env_boot), "CONVEYOR_KAFKA_BOOTSTRAP_SERVERS=%s",
             hn_env("CONVEYOR_TEST_KAFKA_BOOTSTRAP"));
    snprintf(env_prefix, sizeof(env_prefix), "CONVEYOR_BROKER_TOPIC_PREFIX=%s",
             cfg.broker_topic_prefix);
    const char *const e[] = {
        env_transport, env_boot, env_prefix, "CONVEYOR_KAFKA_SESSION_TIMEOUT_MS=6000",
        "CONVEYOR_KAFKA_HEARTBEAT_INTERVAL_MS=500", "CONVEYOR_BLOCK_MS=100",
        "CONVEYOR_HEARTBEAT_MS=200", "CONVEYOR_RETRY_BASE_MS=50", "CONVEYOR_RETRY_MAX_MS=400",
        "CONVEYOR_PAUSE_MAX_MS=300", "CONVEYOR_RECONCILE_INTERVAL_MS=3600000", NULL,
    };
    memcpy(kenv, e, sizeof(e));
}

static void teardown(void)
{
    /* a test that set the cluster down must not leave it so for the next */
    const char *pid = getenv("CONVEYOR_TEST_KMOCK_PID");
    if (pid)
        kill(atoi(pid), SIGUSR2);
    tc_teardown();
}

TestSuite(kafka, .init = setup, .fini = teardown, .timeout = 180);

static struct hn_resp *post(struct hn_stack *st, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", st->api_url, path);
    const char *h[] = { HN_AUTH_ALL, "Content-Type: application/json", NULL };
    return hn_http("POST", url, h, body, strlen(body), 30000);
}

/* POST a batch; the ids it answers go to ids (n of them). */
static void post_batch(struct hn_stack *st, const char *type, const char *body,
                       char (*ids)[UUID_STR_LEN], int n)
{
    char path[96];
    snprintf(path, sizeof(path), "/v1/jobs/%s/batch", type);
    struct hn_resp *rp = post(st, path, body);
    cr_assert_eq(rp->status, 202, "%d %s", rp->status, rp->body);
    cJSON *j = hn_json(rp);
    cJSON *a = cJSON_GetObjectItem(j, "ids");
    cr_assert_eq(cJSON_GetArraySize(a), n);
    for (int i = 0; i < n; i++)
        snprintf(ids[i], UUID_STR_LEN, "%s", cJSON_GetArrayItem(a, i)->valuestring);
    cJSON_Delete(j);
    hn_resp_free(rp);
}

struct all_wait {
    char (*ids)[UUID_STR_LEN];
    int n;
    enum job_state want;
};

static int all_are(void *arg)
{
    struct all_wait *w = arg;
    for (int i = 0; i < w->n; i++) {
        struct job_status s;
        enum cv_rc rc = broker_get_copy(b, w->ids[i], &s);
        int ok = rc == CV_OK && s.state == w->want;
        job_status_cleanup(&s);
        if (!ok)
            return 0;
    }
    return 1;
}

static void wait_all(char (*ids)[UUID_STR_LEN], int n, enum job_state want, int timeout_ms)
{
    struct all_wait w = { ids, n, want };
    cr_assert(hn_wait_until(all_are, &w, timeout_ms, 50), "not every job became %s",
              job_state_str(want));
}

static struct job_status status_of(const char *id)
{
    struct job_status s;
    cr_assert_eq(broker_get_copy(b, id, &s), CV_OK);
    job_status_cleanup(&s);
    return s;
}

static int succeeded_count(void *arg)
{
    struct all_wait *w = arg;
    int k = 0;
    for (int i = 0; i < w->n; i++)
        if (status_of(w->ids[i]).state == JOB_STATE_SUCCEEDED)
            k++;
    return k >= 10;
}

/* The test: the API produces, two workers share the group, one is
 * SIGKILLed with jobs in flight; its partitions move to the other, which runs
 * its unfinished jobs; every user is debited exactly once. */
Test(kafka, a_sigkilled_workers_jobs_move_with_its_partitions_and_take_effect_once)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 2, .worker_types = "activation", .concurrency = 8,
                               .worker_env = kenv, .api_env = kenv };
    hn_start_stack(&st, &o);
    hn_sim_config(&st, "{\"latency_ms\":150}");   /* jobs in flight when the kill comes */
    enum { N = 80 };
    static char ids[N][UUID_STR_LEN];
    char body[N * 40 + 8];
    size_t o2 = 0;
    body[o2++] = '[';
    for (int i = 0; i < N; i++)
        o2 += (size_t)snprintf(body + o2, sizeof(body) - o2, "%s{\"user_id\":%d,\"offer_id\":1}",
                               i ? "," : "", 11 + i);
    snprintf(body + o2, sizeof(body) - o2, "]");
    post_batch(&st, "activation", body, ids, N);
    struct all_wait w = { ids, N, JOB_STATE_SUCCEEDED };
    cr_assert(hn_wait_until(succeeded_count, &w, 60000, 50), "nothing ran");
    hn_kill9(st.workers[0]);
    wait_all(ids, N, JOB_STATE_SUCCEEDED, 90000);
    for (int i = 0; i < N; i++) {
        char sql[96];
        snprintf(sql, sizeof(sql), "SELECT (balance*100)::bigint FROM accounts WHERE user_id=%d",
                 11 + i);
        cr_assert_eq(hn_psql_int(sql), 99500, "user %d debited once", 11 + i);
    }
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM transactions WHERE status='SUCCESS' AND "
                             "user_id BETWEEN 11 AND 90"), N);
    cr_assert_eq(hn_sim_stat(&st, "activations"), N, "each offer activated once");
    cr_assert(hn_log_has(st.workers[1], "evt=kafka.assigned"));
    hn_stop_stack(&st);
}

/* The cluster goes down: publishing answers 503 with Retry-After (never 202
 * for a job that is not on Kafka); it comes back: publishing and processing
 * resume, and every job answered 202 ran. */
Test(kafka, a_cluster_down_answers_503_and_back_up_resumes)
{
    const char *pid = hn_env("CONVEYOR_TEST_KMOCK_PID");
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "noop", .worker_env = kenv,
                               .api_env = kenv };
    hn_start_stack(&st, &o);
    static char ok_ids[64][UUID_STR_LEN];
    int nok = 0;
    post_batch(&st, "noop", "[{}]", ok_ids, 1);
    nok = 1;
    cr_assert_eq(kill(atoi(pid), SIGUSR1), 0);
    int got503 = 0;
    int64_t end = clock_mono_ms() + 60000;
    while (!got503 && clock_mono_ms() < end) {
        struct hn_resp *rp = post(&st, "/v1/jobs/noop", "{}");
        if (rp->status == 503) {
            char *ra = hn_resp_header(rp, "Retry-After");
            cr_assert_not_null(ra, "503 without Retry-After");
            free(ra);
            got503 = 1;
        } else {
            cr_assert_eq(rp->status, 202, "%d %s", rp->status, rp->body);
            cJSON *j = hn_json(rp);   /* answered before the cluster noticed: must run */
            if (nok < 64)
                snprintf(ok_ids[nok++], UUID_STR_LEN, "%s",
                         cJSON_GetObjectItem(j, "id")->valuestring);
            cJSON_Delete(j);
        }
        hn_resp_free(rp);
    }
    cr_assert(got503, "the API never said 503 while the cluster was down");
    cr_assert_eq(kill(atoi(pid), SIGUSR2), 0);
    end = clock_mono_ms() + 60000;
    int back = 0;
    while (!back && clock_mono_ms() < end) {
        struct hn_resp *rp = post(&st, "/v1/jobs/noop", "{}");
        if (rp->status == 202) {
            cJSON *j = hn_json(rp);
            snprintf(ok_ids[nok++], UUID_STR_LEN, "%s", cJSON_GetObjectItem(j, "id")->valuestring);
            cJSON_Delete(j);
            back = 1;
        }
        hn_resp_free(rp);
    }
    cr_assert(back, "publishing never resumed");
    wait_all(ok_ids, nok, JOB_STATE_SUCCEEDED, 60000);
    hn_stop_stack(&st);
}

/* A job longer than max.poll.interval.ms: the consumer polls on its own
 * thread, so the member stays in the group and the job is delivered once. */
Test(kafka, a_slow_job_past_max_poll_interval_is_not_redelivered)
{
    const char *env[20];
    int k = 0;
    while (kenv[k]) {
        env[k] = kenv[k];
        k++;
    }
    env[k++] = "CONVEYOR_KAFKA_MAX_POLL_INTERVAL_MS=7000";   /* >= session.timeout.ms */
    env[k] = NULL;
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "noop", .worker_env = env,
                               .api_env = kenv };
    hn_start_stack(&st, &o);
    static char ids[2][UUID_STR_LEN];
    post_batch(&st, "noop", "[{\"sleep_ms\":11000},{}]", ids, 2);
    wait_all(ids, 2, JOB_STATE_SUCCEEDED, 60000);
    struct job_status s = status_of(ids[0]);
    cr_assert_eq(s.epoch, 1, "delivered once");
    cr_assert_eq(s.attempt, 1);
    cr_assert_geq(s.finished_ms - s.started_ms, 11000);
    cr_assert_not(hn_log_has(st.workers[0], "evt=kafka.revoked"), "the member left its group");
    hn_stop_stack(&st);
}

struct queues_wait {
    struct hn_stack *st;
    int seen;
    char last[512];
};

static int noop_lag_is_zero(void *arg)
{
    struct queues_wait *w = arg;
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/queues", w->st->api_url);
    const char *h[] = { HN_AUTH_ALL, NULL };
    struct hn_resp *rp = hn_http("GET", url, h, NULL, 0, 5000);
    snprintf(w->last, sizeof(w->last), "%d %.400s", rp->status, rp->body ? rp->body : "");
    cJSON *j = rp->status == 200 ? hn_json(rp) : NULL;
    hn_resp_free(rp);
    int ok = 0;
    const cJSON *t = cJSON_GetObjectItem(j, "transport");
    cr_assert(!j || (cJSON_IsString(t) && !strcmp(t->valuestring, "kafka")), "%s", w->last);
    const cJSON *q;
    cJSON_ArrayForEach(q, cJSON_GetObjectItem(j, "queues"))
    {
        const cJSON *name = cJSON_GetObjectItem(q, "type"), *lag = cJSON_GetObjectItem(q, "lag");
        if (cJSON_IsString(name) && !strcmp(name->valuestring, "noop") && cJSON_IsNumber(lag) &&
            lag->valuedouble == 0)
            ok = 1;
    }
    cJSON_Delete(j);
    return ok;
}

/* Per-key concurrency: 32 keys x 16 jobs, 64 in flight. Jobs of one key never
 * overlap and run in publish order; jobs of different keys do overlap, more
 * of them at once than the topic has partitions. */
Test(kafka, per_key_order_holds_with_64_in_flight)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "noop", .concurrency = 64,
                               .worker_env = kenv, .api_env = kenv };
    hn_start_stack(&st, &o);
    enum { KEYS = 32, PER = 16, N = KEYS * PER };
    static char ids[N][UUID_STR_LEN];
    static char body[N * 48];
    size_t o2 = 0;
    body[o2++] = '[';
    for (int s = 0; s < PER; s++)
        for (int k = 0; k < KEYS; k++)
            o2 += (size_t)snprintf(body + o2, sizeof(body) - o2,
                                   "%s{\"key\":\"k%d\",\"seq\":%d,\"sleep_ms\":20}",
                                   o2 > 1 ? "," : "", k, s);
    snprintf(body + o2, sizeof(body) - o2, "]");
    post_batch(&st, "noop", body, ids, N);
    wait_all(ids, N, JOB_STATE_SUCCEEDED, 120000);
    static struct job_status s[N];
    for (int i = 0; i < N; i++)
        s[i] = status_of(ids[i]);
    for (int k = 0; k < KEYS; k++)
        for (int q = 1; q < PER; q++) {
            const struct job_status *prev = &s[(q - 1) * KEYS + k], *cur = &s[q * KEYS + k];
            cr_assert_geq(cur->started_ms, prev->finished_ms,
                          "key k%d: job %d started before job %d finished", k, q, q - 1);
        }
    /* the most jobs running at one moment */
    int most = 0;
    for (int i = 0; i < N; i++) {
        int at = 0;
        for (int j = 0; j < N; j++)
            if (s[j].started_ms <= s[i].started_ms && s[j].finished_ms > s[i].started_ms)
                at++;
        if (at > most)
            most = at;
    }
    cr_assert_gt(most, 8, "only %d at once: partitions bound the parallelism", most);
    /* GET /v1/queues names the transport, and the group's lag drains to 0 once the
     * finished offsets are committed */
    struct queues_wait qw = { &st, 0, "" };
    cr_assert(hn_wait_until(noop_lag_is_zero, &qw, 20000, 200), "lag never 0: %s", qw.last);
    hn_stop_stack(&st);
}

/* Deliveries the worker never settled (its Redis failed) come back after the
 * visibility timeout with a new epoch, counted by the poison-job guard;
 * nothing holds the partition's commits. */
Test(kafka, an_unsettled_delivery_comes_back_after_the_visibility_timeout)
{
    cfg.visibility_timeout_ms = 300;
    struct job *j = mk("noop", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(j, o);
    struct job *got[2];
    cr_assert_eq(consume("c1", "noop", got, 2), 1);
    cr_assert_eq(got[0]->deliveries, 1);
    job_free(got[0]);
    cr_assert_eq(consume("c1", "noop", got, 2), 1);
    cr_assert_str_eq(got[0]->id, j->id);
    cr_assert_eq(got[0]->epoch, 2);
    cr_assert_eq(got[0]->deliveries, 2);
    struct broker_settle s = { BROKER_ACK, 0, NULL, 0, 0 };
    cr_assert_eq(broker_settle(b, got, &s, 1, 60), CV_OK);
    cr_assert_eq(s.fenced, 0);
    cr_assert_eq(unsettled(0), 0, "the offset was committed");
    job_free(got[0]);
    job_free(j);
    free(o);
}

/* A job recorded as queued but never produced (the producer died between the
 * record and the delivery report) is produced again by the sweep; the copy
 * that did get out earlier is stale and skipped: one delivery. */
Test(kafka, the_sweep_produces_what_was_recorded_but_never_produced)
{
    struct job *j = mk("noop", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(j, o);
    struct rds_reply *z = rds_cmdf(r, "ZSCORE cv:unproduced %s", j->id);
    cr_assert_eq(rds_reply_type(z), RDS_NIL, "a produced job leaves cv:unproduced");
    rds_reply_free(z);
    /* as if the report never came back, 40 s ago */
    rds_reply_free(rds_cmdf(r, "ZADD cv:unproduced %lld %s", (long long)clock_wall_ms() - 40000,
                            j->id));
    size_t moved = 0;
    cr_assert_eq(broker_promote(b, 100, &moved), CV_OK);
    cr_assert_eq(moved, 1, "the sweep produced it again");
    struct rds_reply *kq = rds_cmdf(r, "HGET cv:job:%s kq", j->id);
    cr_assert_str_eq(rds_reply_str(kq, NULL), "2");
    rds_reply_free(kq);
    struct job *got[4];
    cr_assert_eq(consume("c1", "noop", got, 4), 1);
    cr_assert_str_eq(got[0]->id, j->id);
    cr_assert_eq(got[0]->epoch, 1, "the stale copy was skipped, not started");
    struct broker_settle s = { BROKER_ACK, 0, NULL, 0, 0 };
    cr_assert_eq(broker_settle(b, got, &s, 1, 60), CV_OK);
    job_free(got[0]);
    cr_assert_eq(consume_none("c1", "noop"), 0);
    cr_assert_eq(state_of(j->id), JOB_STATE_SUCCEEDED);
    job_free(j);
    free(o);
}

/* Retries keep the key's order: the key's next job waits while the first one
 * retries, and runs after it went dead. */
Test(kafka, a_retrying_job_holds_its_key_until_it_ends)
{
    struct job *a = mk("noop", "{\"key\":\"K\",\"n\":1}"), *c = mk("noop", "{\"key\":\"K\",\"n\":2}");
    struct job *jobs[2] = { a, c };
    struct pub_out *o = calloc(1, sizeof(*o));
    broker_publish(b, jobs, 2, 60, on_pub, o);
    cr_assert_eq(o->rc, CV_OK);
    struct job *got[4];
    cr_assert_eq(consume("c1", "noop", got, 4), 1, "one key, one at a time");
    cr_assert_str_eq(got[0]->id, a->id);
    struct broker_settle s = { BROKER_RETRY, 300, "later", 0, 0 };
    cr_assert_eq(broker_settle(b, got, &s, 1, 60), CV_OK);
    job_free(got[0]);
    cr_assert_eq(consume("c1", "noop", got, 4), 1, "the retry came back, not the next job");
    cr_assert_str_eq(got[0]->id, a->id);
    s = (struct broker_settle){ BROKER_DEAD, 0, "gave up", 0, 0 };
    cr_assert_eq(broker_settle(b, got, &s, 1, 60), CV_OK);
    job_free(got[0]);
    cr_assert_eq(consume("c1", "noop", got, 4), 1);
    cr_assert_str_eq(got[0]->id, c->id, "the key's next job runs after the first ended");
    s = (struct broker_settle){ BROKER_ACK, 0, NULL, 0, 0 };
    cr_assert_eq(broker_settle(b, got, &s, 1, 60), CV_OK);
    job_free(got[0]);
    job_free(a);
    job_free(c);
    free(o);
}

/* A partition whose window fills (more than WINDOW_PAUSE messages waiting) is
 * paused and must resume once the window drains: 6000 stale messages of one
 * key (their status gone: skipped), then one live job behind them. */
Test(kafka, a_full_window_pauses_its_partition_and_resumes_it)
{
    struct job *jobs[1000];
    struct pub_out *o = calloc(1, sizeof(*o));
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 1000; i++)
            jobs[i] = mk("noop", "{\"key\":\"one-partition\"}");
        broker_publish(b, jobs, 1000, 60, on_pub, o);
        cr_assert_eq(o->rc, CV_OK);
        for (int i = 0; i < 1000; i++)
            job_free(jobs[i]);
    }
    rds_reply_free(rds_cmdf(r, "FLUSHALL"));   /* every one of them is stale now */
    struct job *live = mk("noop", "{\"key\":\"one-partition\"}");
    publish1(live, o);
    struct job *got[4];
    size_t n = 0;
    int64_t end = clock_mono_ms() + 60000;
    while (n == 0 && clock_mono_ms() < end)
        n = consume("c1", "noop", got, 4);
    cr_assert_eq(n, 1, "the job behind 6000 skipped messages never came");
    cr_assert_str_eq(got[0]->id, live->id);
    struct broker_settle s = { BROKER_ACK, 0, NULL, 0, 0 };
    cr_assert_eq(broker_settle(b, got, &s, 1, 60), CV_OK);
    job_free(got[0]);
    job_free(live);
    free(o);
}
