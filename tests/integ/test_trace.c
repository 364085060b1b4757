/* test_trace.c - tracing (issue 9, seed 001): ENTER/EXIT events per module, switched at run
 * time through PUT/DELETE /v1/trace, with the job's W3C trace id, and the spans exported
 * over OTLP/HTTP to a collector (a second conveyor-sim, its /otlp/v1/traces). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void setup(void)
{
    hn_flush_redis();
}

TestSuite(trace, .init = setup, .timeout = 120);

#define TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PARENT_ID "00f067aa0ba902b7"
#define TRACEPARENT "traceparent: 00-" TRACE_ID "-" PARENT_ID "-01"

static struct hn_stack col, st;

static struct hn_resp *api(const char *method, const char *path, const char *auth,
                           const char *body, const char *extra)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", st.api_url, path);
    const char *const h[] = { auth, extra, NULL };
    return hn_http(method, url, h, body, body ? strlen(body) : 0, 5000);
}

/* PUT /v1/trace with the all-scopes key: the reply's "modules". */
static void switch_to(const char *body, const char *want)
{
    struct hn_resp *r = api("PUT", "/v1/trace", HN_AUTH_ALL, body, NULL);
    cr_assert_eq(r->status, 200, "PUT /v1/trace %s: %d %s", body, r->status, r->body);
    cJSON *j = hn_json(r);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "modules")->valuestring, want, "%s", r->body);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "source")->valuestring, "redis");
    cJSON_Delete(j);
    hn_resp_free(r);
}

/* Submit a noop job (with our traceparent when traced is set); its id into id. */
static void submit(int traced, char id[64])
{
    struct hn_resp *r =
        api("POST", "/v1/jobs/noop", HN_AUTH_ALL, "{\"n\":1}", traced ? TRACEPARENT : NULL);
    cr_assert_eq(r->status, 202, "%d %s", r->status, r->body);
    cJSON *j = hn_json(r);
    snprintf(id, 64, "%s", cJSON_GetObjectItem(j, "id")->valuestring);
    cJSON_Delete(j);
    hn_resp_free(r);
}

struct job_wait {
    const char *id;
};

static int succeeded(void *arg)
{
    struct job_wait *w = arg;
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", w->id);
    struct hn_resp *r = api("GET", path, HN_AUTH_ALL, NULL, NULL);
    int ok = r->status == 200 && strstr(r->body, "\"status\":\"succeeded\"") != NULL;
    hn_resp_free(r);
    return ok;
}

/* The collector's spans of our trace: 1 when it holds one from service with module mod. */
struct span_wait {
    const char *service, *module, *job_id;
};

static int collector_has(void *arg)
{
    struct span_wait *w = arg;
    char url[128];
    snprintf(url, sizeof(url), "%s/admin/otlp/spans", col.sim_url);
    struct hn_resp *r = hn_http("GET", url, NULL, NULL, 0, 5000);
    cJSON *j = hn_json(r);
    int found = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(j, "spans"))
    {
        const char *tid = cJSON_GetObjectItem(s, "trace_id")->valuestring;
        const char *svc = cJSON_GetObjectItem(s, "service")->valuestring;
        const char *mod = cJSON_GetObjectItem(s, "module")->valuestring;
        const char *job = cJSON_GetObjectItem(s, "job_id")->valuestring;
        if (strcmp(tid, TRACE_ID) == 0 && strcmp(svc, w->service) == 0 &&
            strcmp(mod, w->module) == 0 && (!w->job_id || strcmp(job, w->job_id) == 0))
            found = 1;
    }
    cr_assert_eq(cJSON_GetObjectItem(j, "rejected")->valueint, 0, "malformed spans: %s",
                 r->body);
    cJSON_Delete(j);
    hn_resp_free(r);
    return found;
}

Test(trace, switched_per_module_at_run_time_logged_and_exported_over_otlp)
{
    /* the collector: a simulator alone */
    struct hn_stack_opts co = { .workers = 0, .no_api = 1 };
    hn_start_stack(&col, &co);
    static char otlp[160];
    snprintf(otlp, sizeof(otlp), "CONVEYOR_TRACE_OTLP_URL=%s/otlp/v1/traces", col.sim_url);
    const char *const wenv[] = { HN_FAST_ENV, otlp, NULL };
    const char *const aenv[] = { otlp, NULL };
    struct hn_stack_opts so = {
        .workers = 1, .worker_types = "noop", .no_sim = 1, .worker_env = wenv, .api_env = aenv
    };
    hn_start_stack(&st, &so);
    const struct hn_proc *wk = st.workers[0];

    /* off by default: a job leaves no ENTER line */
    char quiet[64];
    submit(1, quiet);
    struct job_wait jw = { quiet };
    cr_assert(hn_wait_until(succeeded, &jw, 10000, 50));
    cr_assert(!hn_log_has(wk, "evt=ENTER"), "traced while off");
    struct hn_resp *r = api("GET", "/v1/trace", HN_AUTH_ALL, NULL, NULL);
    cr_assert_eq(r->status, 200);
    cr_assert(strstr(r->body, "\"modules\":\"off\""), "%s", r->body);
    cr_assert(strstr(r->body, "\"otlp_export\":\"on\""), "%s", r->body);
    hn_resp_free(r);

    /* the switch is the operator's: a noop key may not touch it; bad names are 400 */
    r = api("PUT", "/v1/trace", HN_AUTH_NOOP, "{\"modules\":\"all\"}", NULL);
    cr_assert_eq(r->status, 403, "%d %s", r->status, r->body);
    hn_resp_free(r);
    r = api("PUT", "/v1/trace", HN_AUTH_ALL, "{\"modules\":\"worker,nosuch\"}", NULL);
    cr_assert_eq(r->status, 400, "%d %s", r->status, r->body);
    cr_assert(strstr(r->body, "\"field\":\"modules\""), "%s", r->body);
    hn_resp_free(r);

    /* on for api and worker (a list works too): the job's steps in its trace */
    switch_to("{\"modules\":[\"worker\",\"api\"]}", "api,worker");
    cr_assert(hn_wait_log(wk, "evt=trace.switched from=off to=api,worker", 10000),
              "the worker did not follow the switch");
    char id[64];
    submit(1, id);
    jw.id = id;
    cr_assert(hn_wait_until(succeeded, &jw, 10000, 50));
    char enter[256], exit_[256], api_enter[256];
    snprintf(enter, sizeof(enter),
             "evt=ENTER module=worker function=\"handler noop\" job_id=%s trace_id=" TRACE_ID, id);
    snprintf(exit_, sizeof(exit_),
             "evt=EXIT module=worker function=\"handler noop\" duration_us=");
    snprintf(api_enter, sizeof(api_enter),
             "evt=ENTER module=api function=\"POST /v1/jobs/{type}\" job_id=- trace_id=" TRACE_ID);
    cr_assert(hn_wait_log(wk, enter, 10000), "no ENTER of job %s", id);
    cr_assert(hn_wait_log(wk, exit_, 10000), "no EXIT with duration_us");
    cr_assert(hn_wait_log(st.api, api_enter, 10000), "no ENTER of the API request");
    cr_assert(!hn_log_has(wk, "evt=ENTER module=broker"), "broker traced but not switched on");

    /* and at the collector, from both processes, well formed */
    struct span_wait sw = { "conveyor-worker", "worker", id }, sa = { "conveyor-api", "api", NULL };
    cr_assert(hn_wait_until(collector_has, &sw, 10000, 100), "the worker's span not exported");
    cr_assert(hn_wait_until(collector_has, &sa, 10000, 100), "the API's span not exported");

    /* DELETE: back to the configuration (off) everywhere */
    r = api("DELETE", "/v1/trace", HN_AUTH_ALL, NULL, NULL);
    cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
    cr_assert(strstr(r->body, "\"modules\":\"off\""), "%s", r->body);
    hn_resp_free(r);
    cr_assert(hn_wait_log(wk, "evt=trace.switched from=api,worker to=off", 10000),
              "the worker did not switch off");
    char later[64];
    submit(1, later);
    jw.id = later;
    cr_assert(hn_wait_until(succeeded, &jw, 10000, 50));
    char later_enter[160];
    snprintf(later_enter, sizeof(later_enter), "job_id=%s trace_id", later);
    cr_assert(!hn_log_has(wk, later_enter), "traced after DELETE");

    hn_stop_stack(&st);
    hn_stop_stack(&col);
}

/* conveyorctl trace: the same switch from the command line, followed by a running worker */
#define CTL(...)                                                                           \
    hn_run((const char *const[]){ "conveyorctl", __VA_ARGS__, NULL }, NULL, NULL, 0, 10000)

Test(trace, conveyorctl_sets_shows_and_resets_the_switch)
{
    const char *const wenv[] = { HN_FAST_ENV, NULL };
    struct hn_stack_opts so = { .workers = 1, .worker_types = "noop", .no_sim = 1,
                                .worker_env = wenv };
    hn_start_stack(&st, &so);
    const struct hn_proc *wk = st.workers[0];

    struct hn_run *r = CTL("trace", "set", "ups,db");
    cr_assert_eq(r->status, 0, "trace set: %d %s %s", r->status, r->out, r->err);
    cr_assert(strstr(r->out, "traced: ups,db (set at run time)"), "%s", r->out);
    hn_run_free(r);
    cr_assert(hn_wait_log(wk, "evt=trace.switched from=off to=ups,db", 10000),
              "the worker did not follow the switch");

    r = CTL("trace", "--json");
    cr_assert_eq(r->status, 0, "%s", r->err);
    cr_assert(strstr(r->out, "{\"modules\":\"ups,db\",\"configured\":\"off\","
                             "\"source\":\"redis\"}"),
              "%s", r->out);
    hn_run_free(r);

    r = CTL("trace", "set", "ups,nosuch");
    cr_assert_eq(r->status, 2, "an unknown module is a usage error: %d", r->status);
    hn_run_free(r);

    r = CTL("trace", "reset");
    cr_assert_eq(r->status, 0, "%s", r->err);
    cr_assert(strstr(r->out, "traced: off (as configured)"), "%s", r->out);
    hn_run_free(r);
    cr_assert(hn_wait_log(wk, "evt=trace.switched from=ups,db to=off", 10000),
              "the worker did not switch back");
    hn_stop_stack(&st);
}
