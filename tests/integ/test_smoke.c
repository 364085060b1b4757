/* test_smoke.c - the servers run-integ.sh started answer, and the harness can start the
 * simulator and stop it cleanly. Runs before the API and workers exist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "rds.h"

/* hn_wait_until predicate: GET /v1/jobs/{id} reports the job succeeded. */
static int job_succeeded(void *arg)
{
    const char *url = arg;
    const char *const all[] = { HN_AUTH_ALL, NULL };
    struct hn_resp *r = hn_http("GET", url, all, NULL, 0, 2000);
    int done = r->status == 200 && strstr(r->body, "\"succeeded\"") != NULL;
    hn_resp_free(r);
    return done;
}

Test(smoke, postgres_answers_select_1)
{
    char *v = hn_psql_scalar("SELECT 1");
    cr_assert(v != NULL && strcmp(v, "1") == 0, "SELECT 1 gave %s", v ? v : "(null)");
    free(v);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM pg_database WHERE datname = 'conveyor'"), 1);
}

Test(smoke, redis_answers_ping)
{
    struct rds *r = rds_connect(hn_env("CONVEYOR_REDIS_URL"), 2000);
    cr_assert(r != NULL, "cannot connect to %s", hn_env("CONVEYOR_REDIS_URL"));
    struct rds_reply *rep = rds_cmdf(r, "PING");
    cr_assert(rep != NULL, "PING got no reply");
    cr_assert_eq(rds_reply_type(rep), RDS_STATUS);
    cr_assert_str_eq(rds_reply_str(rep, NULL), "PONG");
    rds_reply_free(rep);
    rds_free(r);
}

Test(smoke, sim_health_is_200)
{
    struct hn_stack st;
    struct hn_stack_opts opts = { .workers = 0, .no_api = 1 };
    hn_start_stack(&st, &opts);

    char url[128];
    snprintf(url, sizeof(url), "%s/health", st.sim_url);
    struct hn_resp *r = hn_http("GET", url, NULL, NULL, 0, 2000);
    cr_assert_eq(r->status, 200, "GET %s: status %d %s", url, r->status, r->err);
    hn_resp_free(r);

    hn_stop_stack(&st);
}

/* The whole stack comes up, the API knows both test keys, a noop job runs to the end, and
 * everything stops with exit status 0 and no sanitizer report. */
Test(smoke, full_stack_runs_a_noop_job, .timeout = 60)
{
    hn_flush_redis();
    struct hn_stack st;
    struct hn_stack_opts opts = { .workers = 1, .worker_types = "noop" };
    hn_start_stack(&st, &opts);

    char url[160];
    snprintf(url, sizeof(url), "%s/v1/jobs/noop", st.api_url);
    const char *const all[] = { HN_AUTH_ALL, NULL };
    struct hn_resp *r = hn_http("POST", url, all, "{}", 2, 5000);
    cr_assert_eq(r->status, 202, "POST %s: %d %s", url, r->status, r->body);
    cJSON *j = hn_json(r);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    cr_assert(cJSON_IsString(id), "no id in %s", r->body);
    snprintf(url, sizeof(url), "%s/v1/jobs/%s", st.api_url, id->valuestring);
    cJSON_Delete(j);
    hn_resp_free(r);

    cr_assert(hn_wait_until(job_succeeded, url, 10000, 20), "job never succeeded: GET %s", url);

    /* the scoped key may submit noop but not activation; no key at all is 401 */
    char act[160];
    snprintf(act, sizeof(act), "%s/api/v1/activation/", st.api_url);
    const char *const noop_only[] = { HN_AUTH_NOOP, NULL };
    r = hn_http("POST", act, noop_only, "{\"user_id\":1,\"offer_id\":1}", 26, 5000);
    cr_assert_eq(r->status, 403, "scoped key on activation: %d %s", r->status, r->body);
    hn_resp_free(r);
    r = hn_http("POST", act, NULL, "{\"user_id\":1,\"offer_id\":1}", 26, 5000);
    cr_assert_eq(r->status, 401, "no key: %d %s", r->status, r->body);
    hn_resp_free(r);

    hn_stop_stack(&st);
}
