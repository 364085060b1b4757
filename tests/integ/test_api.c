/* conveyor-api over real HTTP, with workers, Redis, PostgreSQL and the
 * simulator behind it. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "harness.h"
#include "rds.h"

static const char *const fast_env[] = { HN_FAST_ENV, NULL };

static void setup(void)
{
    hn_flush_redis();
    hn_reset_db();
}

TestSuite(api, .init = setup, .timeout = 120);

static const char *const auth_all[] = { HN_AUTH_ALL, NULL };

static struct hn_resp *req(struct hn_stack *st, const char *method, const char *path,
                           const char *body, const char *const *headers)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", st->api_url, path);
    return hn_http(method, url, headers ? headers : auth_all, body, body ? strlen(body) : 0,
                   10000);
}

/* GET path and return the string field of the JSON reply (malloc'd) or NULL. */
static char *get_field(struct hn_stack *st, const char *path, const char *field)
{
    struct hn_resp *r = req(st, "GET", path, NULL, NULL);
    char *out = NULL;
    cJSON *j = hn_json(r);
    cJSON *v = cJSON_GetObjectItem(j, field);
    if (cJSON_IsString(v))
        out = strdup(v->valuestring);
    cJSON_Delete(j);
    hn_resp_free(r);
    return out;
}

struct field_wait {
    struct hn_stack *st;
    char path[256];
    const char *field;
    const char *want;
};

static int field_is(void *arg)
{
    struct field_wait *w = arg;
    char *v = get_field(w->st, w->path, w->field);
    int ok = v && !strcmp(v, w->want);
    free(v);
    return ok;
}

static void wait_field(struct hn_stack *st, const char *path, const char *field,
                       const char *want)
{
    struct field_wait w = { st, "", field, want };
    snprintf(w.path, sizeof(w.path), "%s", path);
    cr_assert(hn_wait_until(field_is, &w, 15000, 20), "%s never had %s=%s", path, field, want);
}

static char *submit(struct hn_stack *st, const char *path, const char *body,
                    const char *const *headers, int want_status)
{
    struct hn_resp *r = req(st, "POST", path, body, headers);
    cr_assert_eq(r->status, want_status, "POST %s: %d %s", path, r->status, r->body);
    cJSON *j = hn_json(r);
    cJSON *id = cJSON_GetObjectItem(j, "id");
    if (!id)
        id = cJSON_GetObjectItem(j, "transaction_id");
    cr_assert(cJSON_IsString(id), "no id in %s", r->body);
    char *out = strdup(id->valuestring);
    cJSON_Delete(j);
    hn_resp_free(r);
    return out;
}

Test(api, noop_job_is_accepted_then_done)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "noop", .worker_env = fast_env };
    hn_start_stack(&st, &o);
    struct hn_resp *r = req(&st, "POST", "/v1/jobs/noop", "{}", NULL);
    cr_assert_eq(r->status, 202, "%s", r->body);
    cJSON *j = hn_json(r);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "type")->valuestring, "noop");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "status")->valuestring, "queued");
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", cJSON_GetObjectItem(j, "id")->valuestring);
    char *loc = hn_resp_header(r, "Location");
    cr_assert_not_null(loc);
    cr_assert_str_eq(loc, path);
    free(loc);
    cJSON_Delete(j);
    hn_resp_free(r);
    wait_field(&st, path, "status", "succeeded");
    hn_stop_stack(&st);
}

Test(api, idempotency_key_returns_the_first_job)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0 };
    hn_start_stack(&st, &o);
    const char *const h[] = { HN_AUTH_ALL, "Idempotency-Key: order-77", NULL };
    char *a = submit(&st, "/v1/jobs/noop", "{\"n\":1}", h, 202);
    char *b = submit(&st, "/v1/jobs/noop", "{\"n\":2}", h, 202);
    cr_assert_str_eq(a, b);
    struct hn_resp *r = req(&st, "GET", "/v1/queues", NULL, NULL);
    cr_assert_eq(r->status, 200);
    cJSON *j = hn_json(r);
    cJSON *q = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "queues"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(q, "type")->valuestring, "noop");
    cr_assert_eq(cJSON_GetObjectItem(q, "depth")->valuedouble, 1, "enqueued once: %s", r->body);
    cJSON_Delete(j);
    hn_resp_free(r);
    free(a);
    free(b);
    hn_stop_stack(&st);
}

Test(api, batch_is_published_whole_and_processed)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "noop", .worker_env = fast_env };
    hn_start_stack(&st, &o);
    struct hn_resp *r = req(&st, "POST", "/v1/jobs/noop/batch", "[{},{\"a\":1},{\"b\":[2]}]",
                            NULL);
    cr_assert_eq(r->status, 202, "%s", r->body);
    cJSON *j = hn_json(r);
    cJSON *ids = cJSON_GetObjectItem(j, "ids");
    cr_assert_eq(cJSON_GetArraySize(ids), 3);
    for (int i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/jobs/%s", cJSON_GetArrayItem(ids, i)->valuestring);
        wait_field(&st, path, "status", "succeeded");
    }
    cJSON_Delete(j);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

Test(api, delayed_job_is_scheduled_until_its_time)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "noop", .worker_env = fast_env };
    hn_start_stack(&st, &o);
    char *id = submit(&st, "/v1/jobs/noop?delay_ms=1500", "{}", NULL, 202);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    char *s = get_field(&st, path, "status");
    cr_assert_str_eq(s, "scheduled");
    free(s);
    wait_field(&st, path, "status", "succeeded");
    free(id);
    hn_stop_stack(&st);
}

static char *balance(struct hn_stack *st, int user)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/accounts/%d/", user);
    return get_field(st, path, "balance");
}

Test(api, activation_endpoints_follow_the_seed)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation",
                               .worker_env = fast_env };
    hn_start_stack(&st, &o);
    struct hn_resp *r = req(&st, "POST", "/api/v1/activation/", "{\"user_id\":7,\"offer_id\":2}",
                            NULL);
    cr_assert_eq(r->status, 202, "%s", r->body);
    cJSON *j = hn_json(r);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "status")->valuestring, "PENDING");
    char txn[64];
    snprintf(txn, sizeof(txn), "%s", cJSON_GetObjectItem(j, "transaction_id")->valuestring);
    cJSON_Delete(j);
    hn_resp_free(r);

    char path[128];
    snprintf(path, sizeof(path), "/api/v1/activation/status/%s/", txn);
    wait_field(&st, path, "status", "SUCCESS");
    char *b = balance(&st, 7);
    cr_assert_str_eq(b, "985.00");
    free(b);

    /* the status survives the Redis hash: PostgreSQL answers */
    hn_flush_redis();
    wait_field(&st, path, "status", "SUCCESS");

    r = req(&st, "GET", "/api/v1/accounts/7/transactions/", NULL, NULL);
    cr_assert_eq(r->status, 200);
    cr_assert(strstr(r->body, txn) != NULL, "%s", r->body);
    hn_resp_free(r);
    r = req(&st, "GET", "/api/v1/offers/", NULL, NULL);
    cr_assert_eq(r->status, 200);
    j = hn_json(r);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "offers")), 3);
    cJSON_Delete(j);
    hn_resp_free(r);
    char *name = get_field(&st, "/api/v1/offers/2/", "name");
    cr_assert_str_eq(name, "Plus 10GB");
    free(name);
    r = req(&st, "GET", "/api/v1/offers/999/", NULL, NULL);
    cr_assert_eq(r->status, 404);
    hn_resp_free(r);
    r = req(&st, "GET", "/api/v1/accounts/999999/", NULL, NULL);
    cr_assert_eq(r->status, 404);
    hn_resp_free(r);
    r = req(&st, "GET", "/api/v1/activation/status/00000000-0000-4000-8000-000000000000/", NULL,
            NULL);
    cr_assert_eq(r->status, 404);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

Test(api, dead_jobs_are_listed_and_replayed)
{
    static const char *const sim_env[] = { "CONVEYOR_SIM_ERROR_RATE=1", NULL };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation",
                               .worker_env = fast_env, .sim_env = sim_env };
    hn_start_stack(&st, &o);
    char *txn = submit(&st, "/api/v1/activation/", "{\"user_id\":8,\"offer_id\":1}", NULL, 202);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", txn);
    wait_field(&st, path, "status", "dead");
    struct hn_resp *r = req(&st, "GET", "/v1/dead?type=activation", NULL, NULL);
    cr_assert_eq(r->status, 200);
    cr_assert(strstr(r->body, txn) != NULL, "%s", r->body);
    hn_resp_free(r);

    char url[128];
    snprintf(url, sizeof(url), "%s/admin/config", st.sim_url);
    r = hn_http("POST", url, NULL, "{\"error_rate\":0}", 16, 5000);
    cr_assert_eq(r->status, 200);
    hn_resp_free(r);
    snprintf(path, sizeof(path), "/v1/dead/%s/retry", txn);
    r = req(&st, "POST", path, NULL, NULL);
    cr_assert_eq(r->status, 202, "%s", r->body);
    hn_resp_free(r);
    snprintf(path, sizeof(path), "/api/v1/activation/status/%s/", txn);
    wait_field(&st, path, "status", "SUCCESS");
    char *b = balance(&st, 8);
    cr_assert_str_eq(b, "995.00");
    free(b);
    snprintf(path, sizeof(path), "/v1/dead/%s/retry", txn);
    r = req(&st, "POST", path, NULL, NULL);
    cr_assert_eq(r->status, 409, "only a dead job can be replayed: %s", r->body);
    hn_resp_free(r);
    free(txn);
    hn_stop_stack(&st);
}

static int two_workers(void *arg)
{
    struct hn_resp *r = req(arg, "GET", "/v1/workers", NULL, NULL);
    cJSON *j = hn_json(r);
    int ok = r->status == 200 && cJSON_GetArraySize(cJSON_GetObjectItem(j, "workers")) == 2;
    cJSON_Delete(j);
    hn_resp_free(r);
    return ok;
}

Test(api, workers_queues_health_and_metrics)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 2, .worker_types = "noop", .worker_env = fast_env };
    hn_start_stack(&st, &o);
    char *id = submit(&st, "/v1/jobs/noop", "{}", NULL, 202);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    wait_field(&st, path, "status", "succeeded");
    free(id);

    /* both workers heartbeat once their loop runs (the second may still be starting) */
    cr_assert(hn_wait_until(two_workers, &st, 10000, 50), "two workers never listed");
    struct hn_resp *r;

    static const char *const none[] = { NULL };
    r = req(&st, "GET", "/health", NULL, none);
    cr_assert_eq(r->status, 200);
    hn_resp_free(r);
    r = req(&st, "GET", "/ready", NULL, none);
    cr_assert_eq(r->status, 200, "%s", r->body);
    hn_resp_free(r);
    r = req(&st, "GET", "/api/v1/health", NULL, none);
    cr_assert_eq(r->status, 200, "%s", r->body);
    hn_resp_free(r);
    r = req(&st, "GET", "/metrics", NULL, none);
    cr_assert_eq(r->status, 200);
    cr_assert(strstr(r->body, "conveyor_jobs_total{type=\"noop\",outcome=\"succeeded\"} 1") !=
                  NULL,
              "%s", r->body);
    cr_assert(strstr(r->body, "activation_requests_total") != NULL);
    hn_resp_free(r);

    /* /stats (seed 001): the counts per type and in all, and the caches' hit rates;
     * the operator's scope only */
    static const char *const noop_only[] = { HN_AUTH_NOOP, NULL };
    r = req(&st, "GET", "/stats", NULL, noop_only);
    cr_assert_eq(r->status, 403, "%d %s", r->status, r->body);
    hn_resp_free(r);
    r = req(&st, "GET", "/stats", NULL, NULL);
    cr_assert_eq(r->status, 200, "%s", r->body);
    cJSON *j = hn_json(r);
    cJSON *noop = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "jobs"), "noop");
    cr_assert_eq(cJSON_GetObjectItem(noop, "succeeded")->valuedouble, 1, "%s", r->body);
    cr_assert_eq(cJSON_GetObjectItem(noop, "enqueued")->valuedouble, 1, "%s", r->body);
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(noop, "fenced")), "%s", r->body);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "totals"), "succeeded")->valuedouble,
                 1, "%s", r->body);
    cJSON *mc = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "caches"), "metrics");
    cr_assert_geq(cJSON_GetObjectItem(mc, "misses")->valuedouble, 1, "the scrape above read: %s",
                  r->body);
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(mc, "hit_rate")), "%s", r->body);
    cJSON_Delete(j);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

struct metrics_wait {
    struct hn_stack *st;
    const char *const *want;    /* lines that must all be in one scrape, NULL-ended */
    char *body;                 /* the last scrape (malloc'd) */
};

static int metrics_have(void *arg)
{
    static const char *const none[] = { NULL };
    struct metrics_wait *w = arg;
    struct hn_resp *r = req(w->st, "GET", "/metrics", NULL, none);
    free(w->body);
    w->body = strdup(r->status == 200 ? r->body : "");
    hn_resp_free(r);
    for (const char *const *l = w->want; *l; l++)
        if (!strstr(w->body, *l))
            return 0;
    return 1;
}

/* The queue, worker and order gauges of issue 9 (deploy/prometheus/METRICS.md):
 * three jobs wait with no worker, then two workers run them; five orders in
 * two states. The scrape is cached for http.metrics_cache_ms, so each state is
 * polled for. */
Test(api, metrics_show_each_queue_and_the_live_workers)
{
    static const char *const api_env[] = { "CONVEYOR_HTTP_METRICS_CACHE_MS=100", NULL };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env };
    hn_start_stack(&st, &o);
    for (int i = 0; i < 3; i++)
        free(submit(&st, "/v1/jobs/noop", "{}", NULL, 202));
    hn_psql_exec("INSERT INTO orders (order_id, internal_state, country, weight_kg)"
                 " SELECT 'M-' || g, CASE WHEN g <= 2 THEN 'COMPLETE' ELSE 'FAILED_POST' END,"
                 " 'ES', 1.5 FROM generate_series(1, 5) g");
    static const char *const waiting[] = {
        "conveyor_orders{state=\"COMPLETE\"} 2\n", "conveyor_orders{state=\"FAILED_POST\"} 3\n",
        "conveyor_orders{state=\"PENDING_POST\"} 0\n",
        "conveyor_queue_depth{type=\"noop\"} 3\n", "conveyor_queue_running{type=\"noop\"} 0\n",
        "conveyor_dead_jobs{type=\"noop\"} 0\n", "conveyor_workers_live 0\n",
        "conveyor_queue_lag_seconds{type=\"noop\"} ", NULL,
    };
    struct metrics_wait w = { &st, waiting, NULL };
    cr_assert(hn_wait_until(metrics_have, &w, 10000, 50), "%s", w.body);
    /* the lag is the age of the oldest of the three: more than nothing */
    double lag = atof(strstr(w.body, "conveyor_queue_lag_seconds{type=\"noop\"} ") +
                      strlen("conveyor_queue_lag_seconds{type=\"noop\"} "));
    cr_expect(lag > 0 && lag < 60, "lag %f", lag);
    hn_stop_stack(&st);

    o = (struct hn_stack_opts){ .workers = 2, .worker_types = "noop", .worker_env = fast_env,
                                .api_env = api_env };
    hn_start_stack(&st, &o);
    static const char *const ran[] = {
        "conveyor_queue_depth{type=\"noop\"} 0\n", "conveyor_workers_live 2\n",
        "conveyor_jobs_total{type=\"noop\",outcome=\"succeeded\"} 3\n",
        "conveyor_queue_lag_seconds{type=\"noop\"} 0.000\n", NULL,
    };
    w.want = ran;
    cr_assert(hn_wait_until(metrics_have, &w, 15000, 50), "%s", w.body);
    free(w.body);
    hn_stop_stack(&st);
}

static int post_accepted(void *arg)
{
    int ok = 1;
    for (int i = 0; i < 4 && ok; i++) {   /* new connections land on any loop */
        struct hn_resp *r = req(arg, "POST", "/v1/jobs/noop", "{}", NULL);
        ok = r->status == 202;
        hn_resp_free(r);
    }
    return ok;
}

static int not_ready(void *arg)
{
    static const char *const none[] = { NULL };
    struct hn_resp *r = req(arg, "GET", "/ready", NULL, none);
    int down = r->status == 503;
    hn_resp_free(r);
    return down;
}

Test(api, redis_outage_gives_503_then_recovers)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "noop", .worker_env = fast_env };
    hn_start_stack(&st, &o);
    hn_redis_kill(SIGKILL);
    /* Once the API knows its link is down nothing is sent: a plain 503. (A publish
     * written to a link that dies before it answers is 504 outcome_unknown instead.) */
    int down = hn_wait_until(not_ready, &st, 5000, 20);
    struct hn_resp *r = req(&st, "POST", "/v1/jobs/noop", "{}", NULL);
    int status = r->status;
    hn_resp_free(r);
    /* each loop has its own link: one that has not noticed yet writes into a dead
     * socket, and 504 outcome_unknown is then the honest answer */
    int refused = status == 503 || status == 504;
    if (!down || !refused)
        hn_redis_start();             /* leave Redis up for the tests after this one */
    cr_assert(down, "/ready says 503 while Redis is down");
    cr_assert(refused, "status %d", status);
    hn_redis_start();
    char url[128];
    snprintf(url, sizeof(url), "%s/ready", st.api_url);
    cr_assert(hn_wait_http_ok(url, 10000), "the API reconnects to Redis");
    /* /ready answered from one loop; every loop reconnects on its own */
    cr_assert(hn_wait_until(post_accepted, &st, 10000, 50), "every loop reconnects");
    char *id = submit(&st, "/v1/jobs/noop", "{}", NULL, 202);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    wait_field(&st, path, "status", "succeeded");
    free(id);
    hn_stop_stack(&st);
}

static int redis_stalled(void *arg)
{
    (void)arg;
    struct rds *r = rds_connect(hn_env("CONVEYOR_REDIS_URL"), 200);
    if (!r)
        return 1;
    struct rds_reply *x = rds_cmdf(r, "PING");
    int stalled = x == NULL;
    rds_reply_free(x);
    rds_free(r);
    return stalled;
}

Test(api, a_stalled_redis_fails_fast_and_the_status_falls_back_to_postgres)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation",
                               .worker_env = fast_env };
    hn_start_stack(&st, &o);
    char *txn = submit(&st, "/api/v1/activation/", "{\"user_id\":5,\"offer_id\":1}", NULL, 202);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/activation/status/%s/", txn);
    wait_field(&st, path, "status", "SUCCESS");
    /* Redis stops answering, without closing, for longer than the API's timeout */
    struct rds *rc = rds_connect(hn_env("CONVEYOR_REDIS_URL"), 2000);
    cr_assert_not_null(rc);
    struct rds_reply *x = rds_cmdf(rc, "CLIENT PAUSE 5000 ALL");
    cr_assert_eq(rds_reply_type(x), RDS_STATUS, "CLIENT PAUSE: %s", rds_reply_str(x, NULL));
    rds_reply_free(x);
    cr_assert(redis_stalled(NULL));
    int64_t t0 = clock_mono_ms();
    struct hn_resp *r = req(&st, "GET", path, NULL, NULL);
    int64_t took = clock_mono_ms() - t0;
    cr_assert_eq(r->status, 200, "PostgreSQL answers while Redis is stalled: %d %s", r->status,
                 r->body);
    cr_assert(strstr(r->body, "SUCCESS") != NULL, "%s", r->body);
    cr_assert(took < 4000, "the Redis timeout cut the wait short (took %lld ms)",
              (long long)took);
    hn_resp_free(r);
    rds_free(rc);
    free(txn);
    hn_stop_stack(&st);
}

/* Issue 8: backpressure. A type whose queue holds jobs.types.<t>.max_queued
 * unsettled jobs refuses more with 429 and Retry-After (nothing enqueued; a
 * batch whole), a repeat of an accepted job is still its duplicate, and once
 * workers drain the queue it takes jobs again. */
static int accepts_noop(void *arg)
{
    struct hn_stack *st = arg;
    struct hn_resp *rp = req(st, "POST", "/v1/jobs/noop", "{}", NULL);
    int ok = rp->status == 202;
    cr_assert(ok || rp->status == 429, "%d %s", rp->status, rp->body);
    hn_resp_free(rp);
    return ok;
}

Test(api, a_full_queue_answers_429_with_retry_after_then_takes_jobs_again)
{
    const char *const api_env[] = { "CONVEYOR_JOBS_TYPES_NOOP_MAX_QUEUED=5", NULL };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .worker_types = "noop", .worker_env = fast_env,
                               .api_env = api_env };
    hn_start_stack(&st, &o);
    const char *const keyed[] = { HN_AUTH_ALL, "Idempotency-Key: bp-1", NULL };
    char *first = submit(&st, "/v1/jobs/noop", "{}", keyed, 202);
    for (int i = 0; i < 4; i++)
        free(submit(&st, "/v1/jobs/noop", "{}", NULL, 202));
    struct hn_resp *rp = req(&st, "POST", "/v1/jobs/noop", "{}", NULL);
    cr_assert_eq(rp->status, 429, "%d %s", rp->status, rp->body);
    char *ra = hn_resp_header(rp, "Retry-After");
    cr_assert_not_null(ra);
    cr_assert(atoi(ra) >= 1 && atoi(ra) <= 300, "Retry-After %s", ra);
    free(ra);
    cJSON *j = hn_json(rp);
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code")->valuestring,
                     "rate_limited");
    cJSON_Delete(j);
    hn_resp_free(rp);
    rp = req(&st, "POST", "/v1/jobs/noop/batch", "[{},{}]", NULL);
    cr_assert_eq(rp->status, 429, "a batch is refused whole: %d %s", rp->status, rp->body);
    hn_resp_free(rp);
    /* an accepted job's repeat is its duplicate, not a refusal */
    char *again = submit(&st, "/v1/jobs/noop", "{}", keyed, 202);
    cr_assert_str_eq(again, first);
    free(again);
    free(first);
    /* nothing past the bound was enqueued */
    struct hn_resp *q = req(&st, "GET", "/v1/queues", NULL, NULL);
    cr_assert(strstr(q->body, "\"type\":\"noop\",\"depth\":5,"), "%s", q->body);
    hn_resp_free(q);
    hn_stack_add_worker(&st);
    cr_assert(hn_wait_until(accepts_noop, &st, 20000, 50), "the drained queue never took a job");
    hn_stop_stack(&st);
}

/* Issue 8: Redis at maxmemory refuses the publish script before it runs: the
 * API says 503 with Retry-After (nothing enqueued), never a 202 it cannot
 * keep, and takes jobs again once there is room. */
Test(api, redis_at_maxmemory_answers_503_not_202)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .worker_types = "noop", .worker_env = fast_env };
    hn_start_stack(&st, &o);
    struct rds *rd = rds_connect(hn_env("CONVEYOR_REDIS_URL"), 5000);
    cr_assert_not_null(rd);
    rds_reply_free(rds_cmdf(rd, "CONFIG SET maxmemory 1"));
    struct hn_resp *rp = req(&st, "POST", "/v1/jobs/noop", "{}", NULL);
    int status = rp->status;
    char *ra = hn_resp_header(rp, "Retry-After");
    struct hn_resp *bp = req(&st, "POST", "/v1/jobs/noop/batch", "[{},{}]", NULL);
    int bstatus = bp->status;
    rds_reply_free(rds_cmdf(rd, "CONFIG SET maxmemory 0"));
    cr_assert_eq(status, 503, "%d %s", status, rp->body);
    cr_assert_not_null(ra, "503 without Retry-After");
    cr_assert_eq(bstatus, 503, "%d %s", bstatus, bp->body);
    free(ra);
    hn_resp_free(rp);
    hn_resp_free(bp);
    struct rds_reply *n = rds_cmdf(rd, "HGET cv:stats:noop enqueued");
    cr_assert_eq(rds_reply_type(n), RDS_NIL, "nothing was enqueued");
    rds_reply_free(n);
    rds_free(rd);
    free(submit(&st, "/v1/jobs/noop", "{}", NULL, 202));
    hn_stop_stack(&st);
}
