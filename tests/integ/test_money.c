/* Money that must never stay held without a way out (issue 5): replays, outages
 * of our own PostgreSQL, answers of the activation system that are not declines,
 * decided rows met again, stale deliveries, the reconciler. Everything is proved
 * with balances, rows and job states against the real servers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "cfg.h"
#include "clock.h"
#include "harness.h"
#include "rds.h"

static struct cfg cfg;
static struct broker *b;

static void setup(void)
{
    hn_flush_redis();
    hn_reset_db();
    cr_assert_eq(cfg_load(&cfg, NULL), 0);
    b = broker_open(&cfg, NULL);
    cr_assert_not_null(b);
}

static void teardown(void)
{
    hn_pg_outage(0);
    broker_close(b);
    cfg_cleanup(&cfg);
}

TestSuite(money, .init = setup, .fini = teardown, .timeout = 120);

static const char *const fast_env[] = {
    "CONVEYOR_RETRY_BASE_MS=50", "CONVEYOR_RETRY_MAX_MS=400",
    "CONVEYOR_JOBS_TYPES_ACTIVATION_RETRY_MAX_MS=400", "CONVEYOR_VISIBILITY_TIMEOUT_MS=1500",
    "CONVEYOR_RECLAIM_INTERVAL_MS=200", "CONVEYOR_BLOCK_MS=100", "CONVEYOR_HEARTBEAT_MS=200",
    "CONVEYOR_PAUSE_MAX_MS=300", "CONVEYOR_RECONCILE_INTERVAL_MS=3600000", NULL,
};

/* Publish an activation job the way the API does (transaction id = job id), or
 * with a payload naming another transaction when txn_in is not NULL. */
static void submit_as(int64_t user, int64_t offer, int max_attempts, const char *txn_in,
                      char txn[UUID_STR_LEN])
{
    hn_publish_activation(b, NULL, txn_in, user, offer, max_attempts, txn);
}

static void submit(int64_t user, int64_t offer, int max_attempts, char txn[UUID_STR_LEN])
{
    submit_as(user, offer, max_attempts, NULL, txn);
}

/* one SQL text with the transaction id in it, and the wait for a status (harness.c) */
#define q hn_sql_id
#define wait_txn hn_wait_txn

static long long balance_cents(int user)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT (balance*100)::bigint FROM accounts WHERE user_id=%d",
             user);
    return hn_psql_int(sql);
}

static char *txn_status(const char *txn)
{
    return hn_psql_scalar(q("SELECT status FROM transactions WHERE transaction_id='%s'", txn));
}

struct job_look {
    enum cv_rc rc;
    struct job_status st;
};

/* The job's status; its strings are freed at once (the tests read the rest). */
static struct job_look look(const char *id)
{
    struct job_look l;
    l.rc = broker_get_copy(b, id, &l.st);
    job_status_cleanup(&l.st);
    return l;
}

struct job_wait {
    const char *id;
    enum job_state want;
};

static int job_is(void *arg)
{
    struct job_wait *w = arg;
    struct job_look l = look(w->id);
    return l.rc == CV_OK && l.st.state == w->want;
}

static void wait_job(const char *id, enum job_state want, int timeout_ms)
{
    struct job_wait w = { id, want };
    struct job_look l;
    int ok = hn_wait_until(job_is, &w, timeout_ms, 20);
    l = look(id);
    cr_assert(ok, "job %s is %s (%s), never %s", id, job_state_str(l.st.state),
              l.st.last_error, job_state_str(want));
}

/* the simulator's admin endpoints (harness.c) */
#define sim_config hn_sim_config
#define sim_stat hn_sim_stat

static void on_done(void *arg, enum cv_rc rc)
{
    *(enum cv_rc *)arg = rc;
}

static void replay(const char *id)
{
    enum cv_rc rc = CV_ERR_INTERNAL;
    broker_dead_retry(b, id, on_done, &rc);
    cr_assert_eq(rc, CV_OK, "replay of %s: %s", id, cv_rc_str(rc));
}

static struct hn_stack_opts act_opts(const char *const *env)
{
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .no_api = 1,
                               .worker_env = env };
    return o;
}

/* Seen: activation system down -> dead with money held -> replay -> dead again ->
 * system back -> second replay -> "failed: delivered 7 times without settling",
 * the row PROCESSING and the balance debited for good. */
Test(money, a_replay_settles_held_money_after_repeated_deaths)
{
    struct hn_stack st;
    struct hn_stack_opts o = act_opts(fast_env);
    hn_start_stack(&st, &o);
    sim_config(&st, "{\"error_rate\":1}");
    char txn[UUID_STR_LEN];
    submit(21, 2, 3, txn);                      /* offer 2 costs 15.00 */
    wait_job(txn, JOB_STATE_DEAD, 20000);
    struct job_look l = look(txn);
    cr_assert_eq(l.st.held, 1, "dead with money held is marked held");
    replay(txn);
    wait_job(txn, JOB_STATE_DEAD, 20000);
    sim_config(&st, "{\"error_rate\":0}");
    replay(txn);
    wait_job(txn, JOB_STATE_SUCCEEDED, 20000);
    char *s = txn_status(txn);
    cr_assert_str_eq(s, "SUCCESS");
    free(s);
    cr_assert_eq(balance_cents(21), 98500, "debited once over three lives");
    cr_assert_eq(sim_stat(&st, "activations"), 1);
    hn_stop_stack(&st);
}

static int worker_paused(void *p)
{
    return hn_log_has(p, "evt=worker.paused");
}

struct attempts_ok {
    char (*ids)[UUID_STR_LEN];
    int n;
    int bad;
};

/* 1 while every job is still on its first attempt and none is dead. */
static int still_first_attempt(struct attempts_ok *a)
{
    for (int i = 0; i < a->n; i++) {
        struct job_look l = look(a->ids[i]);
        if (l.rc != CV_OK || l.st.attempt != 1 || l.st.state == JOB_STATE_DEAD ||
            l.st.state == JOB_STATE_FAILED)
            return 0;
    }
    return 1;
}

static int clock_passed(void *arg)
{
    return clock_mono_ms() >= *(int64_t *)arg;
}

/* Seen: pg_ctl stop, 20 activations, start again 7 s later -> 20 dead ("database
 * unavailable (reserve)"). An outage of our own store spends no attempt: the
 * worker pauses and the jobs wait. */
Test(money, a_postgres_outage_spends_no_attempts_and_pauses_the_worker)
{
    struct hn_stack st;
    struct hn_stack_opts o = act_opts(fast_env);
    hn_start_stack(&st, &o);
    char warm[UUID_STR_LEN];
    submit(22, 1, 3, warm);                     /* the worker has a connection to lose */
    wait_job(warm, JOB_STATE_SUCCEEDED, 10000);
    hn_pg_outage(1);
    char ids[20][UUID_STR_LEN];
    for (int i = 0; i < 20; i++)
        submit(30 + i, 1, 3, ids[i]);
    cr_assert(hn_wait_until(worker_paused, st.workers[0], 10000, 20), "the worker never paused");
    /* with backoff 50..400 ms, three attempts would be spent within about a second:
     * watch for three seconds that none is */
    struct attempts_ok a = { ids, 20, 0 };
    int64_t until = clock_mono_ms() + 3000;
    while (!clock_passed(&until)) {
        cr_assert(still_first_attempt(&a), "a job spent an attempt on our own outage");
        hn_wait_until(clock_passed, &until, 100, 100);
    }
    hn_pg_outage(0);
    for (int i = 0; i < 20; i++)
        wait_job(ids[i], JOB_STATE_SUCCEEDED, 20000);
    for (int i = 0; i < 20; i++) {
        char sql[96];
        snprintf(sql, sizeof(sql), "SELECT (balance*100)::bigint FROM accounts WHERE user_id=%d",
                 30 + i);
        cr_assert_eq(hn_psql_int(sql), 100000 - 500, "user %d debited once", 30 + i);
        cr_assert_eq(look(ids[i]).st.attempt, 1);
    }
    cr_assert(hn_log_has(st.workers[0], "evt=worker.resumed"));
    hn_stop_stack(&st);
}

/* Seen: under worker SIGKILLs, jobs "succeeded" while their transaction is FAILED.
 * A delivery that finds the row decided settles as the row says; so does a replay
 * of a rejected activation. */
Test(money, a_decided_row_decides_the_job_status)
{
    struct hn_stack st;
    struct hn_stack_opts o = act_opts(fast_env);
    hn_start_stack(&st, &o);
    hn_psql_exec("UPDATE accounts SET balance = 1.00 WHERE user_id = 23");
    char txn[UUID_STR_LEN];
    submit(23, 2, 3, txn);                      /* 15.00 > 1.00: rejected */
    wait_job(txn, JOB_STATE_FAILED, 10000);
    replay(txn);
    wait_job(txn, JOB_STATE_FAILED, 10000);
    struct job_look l = look(txn);
    cr_assert(strstr(l.st.last_error, "insufficient balance"), "%s", l.st.last_error);
    /* a row decided FAILED by an earlier delivery that never settled its job */
    char other[UUID_STR_LEN];
    struct job *j = job_new("activation");
    snprintf(other, sizeof(other), "%s", j->id);
    job_free(j);
    hn_psql_exec(q("INSERT INTO transactions (transaction_id, user_id, offer_id, amount, status, "
                   "lease_epoch, error) VALUES ('%s', 24, 1, 5, 'FAILED', 0, 'activation "
                   "declined: http status 422')",
                   other));
    submit_as(24, 1, 3, other, txn);            /* job id != other: rejected as invalid */
    wait_job(txn, JOB_STATE_FAILED, 10000);
    l = look(txn);
    cr_assert(strstr(l.st.last_error, "transaction_id"), "%s", l.st.last_error);
    cr_assert_eq(balance_cents(23), 100, "never debited");
    hn_stop_stack(&st);
}

/* Publish an activation job whose id (= transaction id) the test chose. */
static void publish_txn(const char *txn, int64_t user, int64_t offer, int max_attempts)
{
    char id[UUID_STR_LEN];
    hn_publish_activation(b, txn, NULL, user, offer, max_attempts, id);
}

static void new_id(char out[UUID_STR_LEN])
{
    struct job *j = job_new("activation");
    snprintf(out, UUID_STR_LEN, "%s", j->id);
    job_free(j);
}

/* The same with a job whose id is the decided transaction's. */
Test(money, a_redelivered_decided_row_fails_its_job)
{
    struct hn_stack st;
    struct hn_stack_opts o = act_opts(fast_env);
    hn_start_stack(&st, &o);
    char txn[UUID_STR_LEN];
    new_id(txn);
    hn_psql_exec(q("INSERT INTO transactions (transaction_id, user_id, offer_id, amount, status, "
                   "lease_epoch, error) VALUES ('%s', 25, 1, 5, 'FAILED', 0, 'activation "
                   "declined: http status 422')",
                   txn));
    publish_txn(txn, 25, 1, 3);
    wait_job(txn, JOB_STATE_FAILED, 10000);
    struct job_look l = look(txn);
    cr_assert(strstr(l.st.last_error, "declined"), "%s", l.st.last_error);
    cr_assert_eq(balance_cents(25), 100000);
    hn_stop_stack(&st);
}

static char *hash_field(const char *txn, const char *field)
{
    struct rds *r = rds_connect(cfg.redis_url, 2000);
    cr_assert_not_null(r);
    struct rds_reply *x = rds_cmdf(r, "HGET transaction:%s %s", txn, field);
    const char *v = rds_reply_str(x, NULL);
    char *out = v ? strdup(v) : NULL;
    rds_reply_free(x);
    rds_free(r);
    return out;
}

/* Seen: a worker stalled past the visibility timeout wrote PROCESSING over the new
 * owner's SUCCESS in transaction:<id>, with a fresh 24 h TTL. The hash checks the
 * delivery's epoch as the row does. */
Test(money, a_stale_delivery_cannot_write_the_transaction_hash)
{
    struct hn_stack st;
    struct hn_stack_opts o = act_opts(fast_env);
    hn_start_stack(&st, &o);
    sim_config(&st, "{\"decline_users\":[26]}");
    char txn[UUID_STR_LEN];
    new_id(txn);
    struct rds *r = rds_connect(cfg.redis_url, 2000);
    cr_assert_not_null(r);
    /* a newer delivery (epoch 99) already wrote what it knows */
    rds_reply_free(rds_cmdf(r, "HSET transaction:%s status SUCCESS lease_epoch 99", txn));
    rds_free(r);
    publish_txn(txn, 26, 1, 3);                 /* this delivery has epoch 1 */
    wait_txn(txn, "FAILED", 10000);
    wait_job(txn, JOB_STATE_FAILED, 10000);
    char *s = hash_field(txn, "status"), *e = hash_field(txn, "lease_epoch");
    cr_assert_str_eq(s, "SUCCESS", "the older delivery wrote nothing");
    cr_assert_str_eq(e, "99");
    free(s);
    free(e);
    hn_stop_stack(&st);
}

/* Seen: every 4xx but 408/429 was taken for a decline and refunded. 401/403 (our
 * credentials), 404 (our URL) and 409 (a duplicate in flight) say nothing about the
 * activation: the money stays held and the job retries until it knows. */
Test(money, answers_that_are_not_declines_keep_the_money_held)
{
    static const char *const codes[] = { "401", "403", "404", "409" };
    struct hn_stack st;
    struct hn_stack_opts o = act_opts(fast_env);
    hn_start_stack(&st, &o);
    for (int i = 0; i < 4; i++) {
        char cfgj[96];
        snprintf(cfgj, sizeof(cfgj), "{\"error_rate\":1,\"error_status\":%s}", codes[i]);
        sim_config(&st, cfgj);
        char txn[UUID_STR_LEN];
        submit(27 + i, 1, 3, txn);
        wait_job(txn, JOB_STATE_DEAD, 20000);
        char *s = txn_status(txn);
        cr_assert_str_eq(s, "PROCESSING", "HTTP %s is not a decline", codes[i]);
        free(s);
        cr_assert_eq(balance_cents(27 + i), 99500, "no refund on HTTP %s", codes[i]);
        cr_assert_eq(look(txn).st.held, 1);
        sim_config(&st, "{\"error_rate\":0}");
        replay(txn);
        wait_txn(txn, "SUCCESS", 10000);
        cr_assert_eq(balance_cents(27 + i), 99500);
    }
    hn_stop_stack(&st);
}

static const char *const reconcile_env[] = {
    "CONVEYOR_RETRY_BASE_MS=50", "CONVEYOR_RETRY_MAX_MS=400",
    "CONVEYOR_JOBS_TYPES_ACTIVATION_RETRY_MAX_MS=400", "CONVEYOR_VISIBILITY_TIMEOUT_MS=1500",
    "CONVEYOR_RECLAIM_INTERVAL_MS=200", "CONVEYOR_BLOCK_MS=100", "CONVEYOR_HEARTBEAT_MS=200",
    "CONVEYOR_RECONCILE_INTERVAL_MS=200", "CONVEYOR_RECONCILE_HELD_AFTER_S=1", NULL,
};

static int held_count_zero(void *arg)
{
    (void)arg;
    return hn_psql_int("SELECT count(*) FROM transactions WHERE status='PROCESSING'") == 0;
}

static int held_figure_zero(void *arg)
{
    (void)arg;
    struct rds *r = rds_connect(cfg.redis_url, 2000);
    cr_assert_not_null(r);
    struct rds_reply *x = rds_cmdf(r, "HGET cv:held:stats count");
    const char *v = rds_reply_str(x, NULL);
    int ok = v && strcmp(v, "0") == 0;
    rds_reply_free(x);
    rds_free(r);
    return ok;
}

/* A reconciler finds money held with no live job and settles it by itself: a dead
 * job is replayed, a lost job is published again. */
Test(money, the_reconciler_settles_held_money_by_itself)
{
    struct hn_stack st;
    struct hn_stack_opts o = act_opts(reconcile_env);
    o.workers = 2;
    hn_start_stack(&st, &o);
    sim_config(&st, "{\"error_rate\":1}");
    char dead[UUID_STR_LEN], lost[UUID_STR_LEN];
    submit(40, 1, 1, dead);
    submit(41, 1, 1, lost);
    wait_job(dead, JOB_STATE_DEAD, 10000);
    wait_job(lost, JOB_STATE_DEAD, 10000);
    /* the job of one is lost altogether (as a Redis crash inside its fsync window could) */
    struct rds *r = rds_connect(cfg.redis_url, 2000);
    cr_assert_not_null(r);
    rds_reply_free(rds_cmdf(r, "DEL cv:job:%s", lost));
    rds_reply_free(rds_cmdf(r, "ZREM cv:dead %s", lost));
    rds_reply_free(rds_cmdf(r, "ZREM cv:dead:activation %s", lost));
    rds_reply_free(rds_cmdf(r, "SREM cv:held %s", lost));
    sim_config(&st, "{\"error_rate\":0}");
    cr_assert(hn_wait_until(held_count_zero, NULL, 30000, 100), "money still held");
    wait_job(dead, JOB_STATE_SUCCEEDED, 10000);
    wait_job(lost, JOB_STATE_SUCCEEDED, 10000);
    cr_assert_eq(balance_cents(40), 99500);
    cr_assert_eq(balance_cents(41), 99500);
    cr_assert_eq(sim_stat(&st, "activations"), 2);
    struct rds_reply *x = rds_cmdf(r, "SCARD cv:held");
    cr_assert_eq(rds_reply_int(x), 0, "no dead job is marked held any more");
    rds_reply_free(x);
    rds_free(r);
    cr_assert(hn_wait_until(held_figure_zero, NULL, 5000, 50),
              "the held figure for /metrics never came back to 0");
    hn_stop_stack(&st);
}

static const char *const poison_env[] = {
    "CONVEYOR_VISIBILITY_TIMEOUT_MS=300", "CONVEYOR_RECLAIM_INTERVAL_MS=100",
    "CONVEYOR_BLOCK_MS=100", "CONVEYOR_HEARTBEAT_MS=200", "CONVEYOR_MAX_DELIVERIES=2",
    "CONVEYOR_RECONCILE_INTERVAL_MS=200", "CONVEYOR_RECONCILE_HELD_AFTER_S=1", NULL,
};

static int reconciler_saw_poison(void *p)
{
    return hn_log_has(p, "evt=reconcile.poison_held");
}

/* A job whose deliveries never settle (its workers die each time) is stopped by the
 * poison guard: dead, replayable, held since it moves money. The reconciler does not
 * replay it (that would kill workers again): it stays held for an operator. */
Test(money, the_poison_guard_buries_a_job_that_never_settles)
{
    char txn[UUID_STR_LEN];
    submit(42, 1, 3, txn);
    const char *types[] = { "activation" };
    struct job *got[1];
    size_t n = 0;
    cr_assert_eq(broker_consume(b, "crashing-1", types, 1, 1, 10, got, &n), CV_OK);
    cr_assert_eq(n, 1);
    job_free(got[0]);
    cr_assert_eq(broker_reclaim(b, "crashing-2", "activation", 0, 1, got, &n), CV_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(got[0]->deliveries, 2);
    job_free(got[0]);
    /* as if a delivery had debited before its worker died */
    hn_psql_exec(q("INSERT INTO transactions (transaction_id, user_id, offer_id, amount, status, "
                   "lease_epoch, updated_at) VALUES ('%s', 42, 1, 5, 'PROCESSING', 2, "
                   "now() - interval '1 hour')",
                   txn));
    struct hn_stack st;
    struct hn_stack_opts o = act_opts(poison_env);
    hn_start_stack(&st, &o);
    wait_job(txn, JOB_STATE_DEAD, 10000);
    struct job_look l = look(txn);
    cr_assert(strstr(l.st.last_error, "in a row without settling"), "%s", l.st.last_error);
    cr_assert_eq(l.st.held, 1);
    cr_assert_eq(sim_stat(&st, "calls"), 0, "the handler never ran");
    cr_assert(hn_wait_until(reconciler_saw_poison, st.workers[0], 10000, 50),
              "the reconciler never looked at the held transaction");
    l = look(txn);
    cr_assert_eq(l.st.state, JOB_STATE_DEAD, "not replayed by the reconciler");
    cr_assert_eq(l.st.held, 1, "still held: its money is PROCESSING");
    char *s = txn_status(txn);
    cr_assert_str_eq(s, "PROCESSING");
    free(s);
    hn_stop_stack(&st);
}

static struct hn_resp *api(struct hn_stack *st, const char *method, const char *path,
                           const char *auth, const char *body)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", st->api_url, path);
    const char *h[] = { auth, NULL };
    return hn_http(method, url, h, body, body ? strlen(body) : 0, 5000);
}

/* POST /api/v1/activation/ for user (offer 1) and keep the transaction id. */
static void post_activation(struct hn_stack *st, int user, char txn[UUID_STR_LEN])
{
    char body[64];
    snprintf(body, sizeof(body), "{\"user_id\":%d,\"offer_id\":1}", user);
    struct hn_resp *r = api(st, "POST", "/api/v1/activation/", HN_AUTH_ALL, body);
    cr_assert_eq(r->status, 202, "%d %s", r->status, r->body);
    cJSON *j = hn_json(r);
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "transaction_id"));
    cr_assert(id && strlen(id) == UUID_STR_LEN - 1, "%s", r->body);
    snprintf(txn, UUID_STR_LEN, "%s", id);
    cJSON_Delete(j);
    hn_resp_free(r);
}

struct scrape {
    struct hn_stack *st;
    const char *needle;
};

static int metrics_say(void *arg)
{
    struct scrape *s = arg;
    struct hn_resp *r = api(s->st, "GET", "/metrics", HN_AUTH_ALL, NULL);
    int ok = r->status == 200 && strstr(r->body, s->needle) != NULL;
    hn_resp_free(r);
    return ok;
}

/* Operators see held money (job status, /metrics) and cannot purge it; other dead
 * jobs they can purge, with the operator scope only. */
Test(money, held_jobs_are_shown_and_cannot_be_purged)
{
    static const char *const api_env[] = { "CONVEYOR_JOBS_TYPES_ACTIVATION_MAX_ATTEMPTS=1",
                                           "CONVEYOR_HTTP_METRICS_CACHE_MS=100", NULL };
    static const char *const w_env[] = {
        "CONVEYOR_RETRY_BASE_MS=50", "CONVEYOR_BLOCK_MS=100", "CONVEYOR_HEARTBEAT_MS=200",
        "CONVEYOR_RECONCILE_INTERVAL_MS=200", "CONVEYOR_RECONCILE_HELD_AFTER_S=3600", NULL,
    };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .worker_env = w_env,
                               .api_env = api_env };
    hn_start_stack(&st, &o);
    sim_config(&st, "{\"error_rate\":1,\"decline_users\":[44]}");
    char held[UUID_STR_LEN];
    post_activation(&st, 43, held);
    wait_job(held, JOB_STATE_DEAD, 10000);
    struct hn_resp *r;
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", held);
    r = api(&st, "GET", path, HN_AUTH_ALL, NULL);
    cr_assert(strstr(r->body, "\"held\":true"), "%s", r->body);
    hn_resp_free(r);
    snprintf(path, sizeof(path), "/v1/dead/%s/purge", held);
    r = api(&st, "POST", path, HN_AUTH_NOOP, NULL);
    cr_assert_eq(r->status, 403, "operator scope only: %d %s", r->status, r->body);
    hn_resp_free(r);
    r = api(&st, "POST", path, HN_AUTH_ALL, NULL);
    cr_assert_eq(r->status, 409, "%d %s", r->status, r->body);
    cr_assert(strstr(r->body, "held"), "%s", r->body);
    hn_resp_free(r);
    cr_assert_eq(look(held).st.state, JOB_STATE_DEAD, "still there");
    /* held money is a metric (the figure counts rows older than held_after_s: 0 here) */
    struct scrape sc = { &st, "conveyor_held_transactions 0.00" };
    cr_assert(hn_wait_until(metrics_say, &sc, 5000, 50), "no held-money gauge on /metrics");
    /* a declined activation is dead but settled: it can go */
    sim_config(&st, "{\"error_rate\":0}");
    char declined[UUID_STR_LEN];
    post_activation(&st, 44, declined);
    wait_job(declined, JOB_STATE_FAILED, 10000);
    snprintf(path, sizeof(path), "/v1/dead/%s/purge", declined);
    r = api(&st, "POST", path, HN_AUTH_ALL, NULL);
    cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
    hn_resp_free(r);
    cr_assert_eq(look(declined).rc, CV_ERR_NOT_FOUND);
    r = api(&st, "POST", path, HN_AUTH_ALL, NULL);
    cr_assert_eq(r->status, 404);
    hn_resp_free(r);
    cr_assert_eq(balance_cents(44), 100000, "refunded");
    struct scrape purged = { &st, "conveyor_jobs_total{type=\"activation\",outcome=\"purged\"} 1" };
    cr_assert(hn_wait_until(metrics_say, &purged, 5000, 50), "purges are counted");
    hn_stop_stack(&st);
}
