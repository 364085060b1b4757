/* Offer activation end to end: broker -> conveyor-worker -> PostgreSQL, Redis
 * and the simulator over real HTTP. The balances prove each effect happened
 * exactly once, whatever was killed or retried on the way. */
#include <criterion/criterion.h>
#include <signal.h>
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
    broker_close(b);
    cfg_cleanup(&cfg);
}

TestSuite(activation, .init = setup, .fini = teardown, .timeout = 120);

/* Publish an activation job the way the API does: transaction id = job id. */
static void submit(int64_t user, int64_t offer, char txn[UUID_STR_LEN])
{
    hn_publish_activation(b, NULL, NULL, user, offer, cfg.types[JT_ACTIVATION].max_attempts, txn);
}

/* one SQL text with the transaction id in it (harness.c) */
#define q hn_sql_id
#define wait_txn hn_wait_txn

struct job_wait {
    struct broker *b;
    const char *id;
    enum job_state want;
    enum job_state got;
};

static void on_status(void *arg, enum cv_rc rc, const struct job_status *st)
{
    struct job_wait *w = arg;
    w->got = rc == CV_OK ? st->state : (enum job_state)-1;
}

static int job_is(void *arg)
{
    struct job_wait *w = arg;
    broker_get(w->b, w->id, on_status, w);
    return w->got == w->want;
}

static void wait_job(const char *id, enum job_state want, int timeout_ms)
{
    struct job_wait w = { b, id, want, JOB_STATE_QUEUED };
    cr_assert(hn_wait_until(job_is, &w, timeout_ms, 20), "job %s is %s, never %s", id,
              job_state_str(w.got), job_state_str(want));
}

static char *redis_status(const char *txn)
{
    struct rds *r = rds_connect(cfg.redis_url, 2000);
    cr_assert_not_null(r);
    struct rds_reply *x = rds_cmdf(r, "HGET transaction:%s status", txn);
    const char *s = rds_reply_str(x, NULL);
    char *out = s ? strdup(s) : NULL;
    rds_reply_free(x);
    rds_free(r);
    return out;
}

/* the simulator's admin endpoints (harness.c) */
#define sim_config hn_sim_config
#define sim_stat hn_sim_stat

static void on_done(void *arg, enum cv_rc rc)
{
    *(enum cv_rc *)arg = rc;
}

static const char *const fast_retry_env[] = {
    "CONVEYOR_RETRY_BASE_MS=50", "CONVEYOR_RETRY_MAX_MS=400",
    "CONVEYOR_JOBS_TYPES_ACTIVATION_RETRY_MAX_MS=400", "CONVEYOR_VISIBILITY_TIMEOUT_MS=1500", "CONVEYOR_RECLAIM_INTERVAL_MS=200",
    "CONVEYOR_BLOCK_MS=100", "CONVEYOR_HEARTBEAT_MS=200", NULL,
};

Test(activation, submit_to_success_debits_once_and_activates_the_offer)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .no_api = 1,
                               .worker_env = fast_retry_env };
    hn_start_stack(&st, &o);
    char txn[UUID_STR_LEN];
    submit(7, 2, txn); /* Plus 10GB: 15.00 for 30 days */
    wait_txn(txn, "SUCCESS", 10000);
    wait_job(txn, JOB_STATE_SUCCEEDED, 5000);
    cr_assert_eq(hn_psql_int("SELECT (balance*100)::bigint FROM accounts WHERE user_id=7"), 98500);
    cr_assert_eq(hn_psql_int(q("SELECT (amount*100)::bigint FROM transactions WHERE transaction_id='%s'",
                               txn)), 1500);
    cr_assert_eq(hn_psql_int(q("SELECT count(*) FROM user_offers WHERE transaction_id='%s' "
                               "AND is_active AND user_id=7 AND offer_id=2",
                               txn)), 1);
    cr_assert_eq(hn_psql_int(q("SELECT round(extract(epoch FROM expiration_date - now()) "
                               "/ 86400)::bigint FROM user_offers WHERE transaction_id='%s'", txn)),
                 30);
    char *done_at = hn_psql_scalar(q("SELECT completed_at FROM transactions WHERE "
                                     "transaction_id='%s'", txn));
    cr_assert_not_null(done_at);
    free(done_at);
    char *rs = redis_status(txn);
    cr_assert_str_eq(rs, "SUCCESS", "Redis follows PostgreSQL");
    free(rs);
    cr_assert_eq(sim_stat(&st, "activations"), 1);
    hn_stop_stack(&st);
}

Test(activation, insufficient_balance_fails_without_debit)
{
    hn_psql_exec("UPDATE accounts SET balance = 4.00 WHERE user_id = 9");
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .no_api = 1,
                               .worker_env = fast_retry_env };
    hn_start_stack(&st, &o);
    char txn[UUID_STR_LEN];
    submit(9, 1, txn); /* Basic 1GB costs 5.00 */
    wait_txn(txn, "FAILED", 10000);
    wait_job(txn, JOB_STATE_FAILED, 5000);
    cr_assert_eq(hn_psql_int("SELECT (balance*100)::bigint FROM accounts WHERE user_id=9"), 400);
    char *err = hn_psql_scalar(q("SELECT error FROM transactions WHERE transaction_id='%s'", txn));
    cr_assert_str_eq(err, "insufficient balance");
    free(err);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM user_offers"), 0);
    cr_assert_eq(sim_stat(&st, "calls"), 0, "no outbound call for a rejected activation");
    char *rs = redis_status(txn);
    cr_assert_str_eq(rs, "FAILED");
    free(rs);
    hn_stop_stack(&st);
}

Test(activation, transient_failures_retry_with_backoff_then_succeed)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .no_api = 1,
                               .worker_env = fast_retry_env };
    hn_start_stack(&st, &o);
    sim_config(&st, "{\"fail_next\":2}");
    char txn[UUID_STR_LEN];
    submit(11, 1, txn);
    wait_txn(txn, "SUCCESS", 15000);
    wait_job(txn, JOB_STATE_SUCCEEDED, 5000);
    cr_assert_eq(sim_stat(&st, "errors"), 2);
    cr_assert_eq(sim_stat(&st, "activations"), 1);
    cr_assert_eq(hn_psql_int("SELECT (balance*100)::bigint FROM accounts WHERE user_id=11"), 99500,
                 "three attempts, one debit");
    cr_assert(hn_log_has(st.workers[0], "evt=job.retry_scheduled"));
    hn_stop_stack(&st);
}

Test(activation, declined_activation_refunds)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .no_api = 1,
                               .worker_env = fast_retry_env };
    hn_start_stack(&st, &o);
    sim_config(&st, "{\"decline_users\":[13]}");
    char txn[UUID_STR_LEN];
    submit(13, 3, txn);
    wait_txn(txn, "FAILED", 10000);
    wait_job(txn, JOB_STATE_FAILED, 5000);
    cr_assert_eq(hn_psql_int("SELECT (balance*100)::bigint FROM accounts WHERE user_id=13"), 100000,
                 "debited, then refunded");
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM user_offers"), 0);
    hn_stop_stack(&st);
}

Test(activation, exhausted_retries_go_dead_then_replay_succeeds)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .no_api = 1,
                               .worker_env = fast_retry_env };
    hn_start_stack(&st, &o);
    sim_config(&st, "{\"error_rate\":1}");
    char txn[UUID_STR_LEN];
    cfg.types[JT_ACTIVATION].max_attempts = 3;
    submit(15, 2, txn);
    wait_job(txn, JOB_STATE_DEAD, 15000);
    cr_assert_eq(sim_stat(&st, "errors"), 3, "activation allows 3 attempts");
    /* the outcome is unknown: the money stays held, nothing is activated */
    cr_assert_eq(hn_psql_int("SELECT (balance*100)::bigint FROM accounts WHERE user_id=15"), 98500);
    char *s = hn_psql_scalar(q("SELECT status FROM transactions WHERE transaction_id='%s'", txn));
    cr_assert_str_eq(s, "PROCESSING");
    free(s);

    sim_config(&st, "{\"error_rate\":0}");
    enum cv_rc rc = CV_ERR_INTERNAL;
    broker_dead_retry(b, txn, on_done, &rc);
    cr_assert_eq(rc, CV_OK);
    wait_txn(txn, "SUCCESS", 10000);
    wait_job(txn, JOB_STATE_SUCCEEDED, 5000);
    cr_assert_eq(hn_psql_int("SELECT (balance*100)::bigint FROM accounts WHERE user_id=15"), 98500,
                 "replay settles without a second debit");
    cr_assert_eq(sim_stat(&st, "activations"), 1);
    hn_stop_stack(&st);
}

static int sim_called(void *st)
{
    return sim_stat(st, "calls") >= 1;
}

static int txn_processing(void *arg)
{
    char *s = hn_psql_scalar(q("SELECT status FROM transactions WHERE transaction_id='%s'",
                               (const char *)arg));
    int ok = s && strcmp(s, "PROCESSING") == 0;
    free(s);
    return ok;
}

Test(activation, sigkilled_worker_is_reclaimed_and_effects_happen_once)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .no_api = 1,
                               .worker_env = fast_retry_env };
    hn_start_stack(&st, &o);
    sim_config(&st, "{\"latency_ms\":1500}");
    char txn[UUID_STR_LEN];
    submit(17, 3, txn); /* Max 100GB: 49.99 */
    /* debited and waiting on the activation system: kill it there */
    cr_assert(hn_wait_until(txn_processing, txn, 10000, 10));
    hn_kill9(st.workers[0]);
    sim_config(&st, "{\"latency_ms\":0}");
    hn_stack_add_worker(&st);
    wait_txn(txn, "SUCCESS", 15000);
    wait_job(txn, JOB_STATE_SUCCEEDED, 5000);
    cr_assert_eq(hn_psql_int("SELECT (balance*100)::bigint FROM accounts WHERE user_id=17"), 95001);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM user_offers WHERE user_id=17"), 1);
    cr_assert_eq(hn_psql_int(q("SELECT lease_epoch FROM transactions WHERE transaction_id='%s'",
                               txn)), 2, "the second delivery took the lease");
    cr_assert_eq(sim_stat(&st, "activations"), 1, "the idempotency key kept it to one");
    cr_assert(hn_log_has(st.workers[1], "evt=broker.reclaimed"));
    hn_stop_stack(&st);
}

Test(activation, slow_worker_whose_job_was_reclaimed_is_fenced)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .no_api = 1,
                               .worker_env = fast_retry_env };
    hn_start_stack(&st, &o);
    /* the first call takes longer than the visibility timeout */
    sim_config(&st, "{\"latency_ms\":4000}");
    char txn[UUID_STR_LEN];
    submit(19, 2, txn);
    cr_assert(hn_wait_until(txn_processing, txn, 10000, 10));
    /* the slow call has reached the simulator: its 4 s delay is fixed */
    cr_assert(hn_wait_until(sim_called, &st, 10000, 10));
    sim_config(&st, "{\"latency_ms\":0}");
    hn_stack_add_worker(&st); /* reclaims after 1.5 s and finishes first */
    wait_txn(txn, "SUCCESS", 15000);
    cr_assert(hn_wait_log(st.workers[0], "evt=job.fenced", 15000),
              "the slow worker must notice it was fenced");
    wait_job(txn, JOB_STATE_SUCCEEDED, 5000);
    cr_assert_eq(hn_psql_int("SELECT (balance*100)::bigint FROM accounts WHERE user_id=19"), 98500);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM user_offers WHERE user_id=19"), 1);
    cr_assert_eq(sim_stat(&st, "activations"), 1);
    hn_stop_stack(&st);
}

struct pending_wait {
    const char *txns[20];
    int n;
};

static int some_processing(void *arg)
{
    (void)arg;
    return hn_psql_int("SELECT count(*) FROM transactions WHERE status='PROCESSING'") > 0;
}

Test(activation, sigterm_drains_in_flight_jobs_and_exits_zero)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .no_api = 1,
                               .concurrency = 8, .worker_env = fast_retry_env };
    hn_start_stack(&st, &o);
    sim_config(&st, "{\"latency_ms\":700}");
    char txns[20][UUID_STR_LEN];
    for (int i = 0; i < 20; i++)
        submit(21 + i, 1, txns[i]);
    cr_assert(hn_wait_until(some_processing, NULL, 10000, 10));
    int code = hn_stop(st.workers[0], SIGTERM, 10000);
    cr_assert_eq(code, 0, "a draining worker exits 0");
    cr_assert_eq(hn_log_has_sanitizer_report(st.workers[0]), 0);
    /* whatever it had started, it finished: nothing is left half-done */
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM transactions WHERE status='PROCESSING'"), 0);
    long long done = hn_psql_int("SELECT count(*) FROM transactions WHERE status='SUCCESS'");
    cr_assert(done >= 1 && done < 20, "drained %lld", done);
    hn_proc_free(st.workers[0]);
    st.workers[0] = NULL;
    /* the rest were never started and are still queued: another worker takes them */
    sim_config(&st, "{\"latency_ms\":0}");
    hn_stack_add_worker(&st);
    for (int i = 0; i < 20; i++)
        wait_txn(txns[i], "SUCCESS", 15000);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM user_offers"), 20);
    cr_assert_eq(hn_psql_int("SELECT (sum(1000 - balance)*100)::bigint FROM accounts"), 2000 * 5);
    hn_stop_stack(&st);
}

Test(activation, stop_past_the_grace_period_abandons_the_call_for_another_worker)
{
    static const char *const env[] = {
        "CONVEYOR_GRACE_MS=300", "CONVEYOR_HTTP_TIMEOUT_MS=20000",
        "CONVEYOR_VISIBILITY_TIMEOUT_MS=1500", "CONVEYOR_RECLAIM_INTERVAL_MS=200",
        "CONVEYOR_BLOCK_MS=100", "CONVEYOR_HEARTBEAT_MS=200", NULL,
    };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .no_api = 1,
                               .worker_env = env };
    hn_start_stack(&st, &o);
    sim_config(&st, "{\"timeout_rate\":1}"); /* the activation system never answers */
    char txn[UUID_STR_LEN];
    submit(41, 1, txn);
    cr_assert(hn_wait_until(sim_called, &st, 10000, 10));
    int64_t t0 = clock_mono_ms();
    cr_assert_eq(hn_stop(st.workers[0], SIGTERM, 10000), 0);
    cr_assert(clock_mono_ms() - t0 < 5000, "the grace period bounds the stop");
    cr_assert(hn_log_has(st.workers[0], "evt=job.abandoned"));
    hn_proc_free(st.workers[0]);
    st.workers[0] = NULL;
    struct job_wait w = { b, txn, JOB_STATE_RUNNING, JOB_STATE_QUEUED };
    cr_assert(job_is(&w), "left pending, not retried: %s", job_state_str(w.got));

    sim_config(&st, "{\"timeout_rate\":0}");
    hn_stack_add_worker(&st);
    wait_txn(txn, "SUCCESS", 15000);
    wait_job(txn, JOB_STATE_SUCCEEDED, 5000);
    cr_assert_eq(hn_psql_int("SELECT (balance*100)::bigint FROM accounts WHERE user_id=41"),
                 99500);
    hn_stop_stack(&st);
}

static int all_final(void *arg)
{
    (void)arg;
    return hn_psql_int("SELECT count(*) FROM transactions WHERE status IN ('SUCCESS','FAILED')") ==
           30;
}

Test(activation, redis_killed_mid_batch_loses_nothing_and_charges_once)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .no_api = 1,
                               .concurrency = 8, .worker_env = fast_retry_env };
    hn_start_stack(&st, &o);
    sim_config(&st, "{\"latency_ms\":150}");
    char txns[30][UUID_STR_LEN];
    for (int i = 0; i < 30; i++)
        submit(50 + i, 1, txns[i]);
    cr_assert(hn_wait_until(some_processing, NULL, 10000, 5));
    hn_redis_kill(SIGKILL); /* the AOF keeps what was acknowledged */
    hn_redis_start();
    sim_config(&st, "{\"latency_ms\":0}");
    cr_assert(hn_wait_until(all_final, NULL, 30000, 50), "every activation settles");
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM transactions WHERE status='SUCCESS'"), 30);
    cr_assert_eq(hn_psql_int("SELECT (sum(1000 - balance)*100)::bigint FROM accounts"), 30 * 500,
                 "each debit happened once");
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM user_offers"), 30);
    cr_assert_eq(sim_stat(&st, "activations"), 30);
    for (int i = 0; i < 30; i++)
        wait_job(txns[i], JOB_STATE_SUCCEEDED, 15000);
    hn_stop_stack(&st);
}
