/* test_orders.c - the order pipeline end to end (issue 6, "Tests"): real conveyor-api,
 * conveyor-worker(s) and conveyor-sim processes, the harness's real Redis and PostgreSQL,
 * real HTTP. The sim stands in for Mirakl and SEUR (the only carrier rule enabled here:
 * other carriers are another helper's work) and sends SEUR's signed webhooks to the API.
 *
 * Every test starts its own stack (hn_start_stack with .pipeline = 1, so deploy/demo.env's
 * credentials and secrets and every upstream URL on the sim's port) and stops it, which
 * also checks exit statuses and sanitizer reports. Outcomes are read where they are
 * recorded, never from log lines: orders/operations/tracking_pending/comm_log in
 * PostgreSQL, the job status API, and the sim's per-system stats (which count every
 * shipment per reference and every OR23/OR24 per order: the proof of "one effect").
 * Everything asynchronous is polled with a deadline. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "harness.h"
#include "uuid.h"
#pragma GCC diagnostic ignored "-Wunused-function" /* TEMP */

#define DEMO_SECRET "whsec_Y29udmV5b3Itc2ltLWRlbW8td2ViaG9vay1rZXk="
#define LONG_AGO "2000-01-01T00:00:00Z"
#define WAIT_MS 60000

static struct hn_stack st;

static void suite_init(void)
{
    hn_flush_redis();
    hn_psql_exec("TRUNCATE orders, operations, tracking_pending, comm_log, webhook_seen "
                 "RESTART IDENTITY;"
                 "UPDATE carrier_rules SET enabled = (carrier = 'seur')");
}

static void suite_fini(void)
{
    hn_psql_exec("UPDATE carrier_rules SET enabled = true");
}

TestSuite(orders, .init = suite_init, .fini = suite_fini, .timeout = 240);

/* ---- the stack ------------------------------------------------------------------------- */

/* Small backoffs, no Mirakl budget, fast promotion of delayed jobs; a test's own entries
 * (extra) come after these and win. */
#define WORKER_ENV_BASE                                                                    \
    "CONVEYOR_JOBS_TYPES_CARRIER_POST_RETRY_BASE_MS=50",                                   \
        "CONVEYOR_JOBS_TYPES_CARRIER_POST_RETRY_MAX_MS=400",                               \
        "CONVEYOR_JOBS_TYPES_TRACKING_PUSH_RETRY_BASE_MS=50",                              \
        "CONVEYOR_JOBS_TYPES_TRACKING_PUSH_RETRY_MAX_MS=400",                              \
        "CONVEYOR_JOBS_TYPES_ORDER_FETCH_RETRY_BASE_MS=50",                                \
        "CONVEYOR_JOBS_TYPES_ORDER_FETCH_RETRY_MAX_MS=400",                                \
        "CONVEYOR_JOBS_TYPES_TRACKING_EVENT_RETRY_BASE_MS=50",                             \
        "CONVEYOR_JOBS_TYPES_TRACKING_EVENT_RETRY_MAX_MS=400",                             \
        "CONVEYOR_UPSTREAMS_MIRAKL_RATE_PER_MIN=100000", "CONVEYOR_RECLAIM_INTERVAL_MS=100", \
        "CONVEYOR_BLOCK_MS=200"

/* The sim's webhooks: ACCEPTED 50 ms after a create, no later events (so a test knows
 * exactly which events exist). */
#define SIM_ENV_BASE                                                                       \
    "CONVEYOR_SIM_WEBHOOK_DELAY_MS=50", "CONVEYOR_SIM_TRANSIT_DELAY_MS=0",                 \
        "CONVEYOR_SIM_DELIVER_DELAY_MS=0"

/* No webhooks from the sim at all: the test sends the carrier's events itself. */
#define SIM_ENV_NO_HOOKS SIM_ENV_BASE, "CONVEYOR_SIM_WEBHOOK_URL="

static const char *const worker_env_default[] = { WORKER_ENV_BASE, NULL };
static const char *const sim_env_default[] = { SIM_ENV_BASE, NULL };

struct opts {
    int workers;                       /* default 1 */
    const char *types;                 /* NULL: every order type */
    int concurrency;                   /* 0: 16 */
    const char *const *worker_env;     /* NULL: worker_env_default */
    const char *const *sim_env;        /* NULL: sim_env_default */
    const char *const *api_env;
};

static void start(const struct opts *o)
{
    struct hn_stack_opts so = {
        .workers = o && o->workers >= 0 ? o->workers : 1,
        .worker_types = o ? o->types : NULL,
        .concurrency = o && o->concurrency ? o->concurrency : 16,
        .worker_env = o && o->worker_env ? o->worker_env : worker_env_default,
        .sim_env = o && o->sim_env ? o->sim_env : sim_env_default,
        .api_env = o ? o->api_env : NULL,
        .pipeline = 1,
    };
    hn_start_stack(&st, &so);
}

/* Start one more worker taking types (its name in the logs is workerN). */
static void add_worker(const char *types)
{
    const char *keep = st.opts.worker_types;
    st.opts.worker_types = types;
    hn_stack_add_worker(&st);
    st.opts.worker_types = keep;
}

/* ---- HTTP -------------------------------------------------------------------------------- */

static struct hn_resp *api(const char *method, const char *path, const char *body)
{
    char url[512];
    const char *const h[] = { HN_AUTH_ALL, NULL };
    snprintf(url, sizeof(url), "%s%s", st.api_url, path);
    return hn_http(method, url, h, body, body ? strlen(body) : 0, 10000);
}

/* api() that must answer want; the body as JSON (free it). */
static cJSON *api_json(const char *method, const char *path, const char *body, int want)
{
    struct hn_resp *r = api(method, path, body);
    cr_assert_eq(r->status, want, "%s %s: %d %s", method, path, r->status, r->body);
    cJSON *j = hn_json(r);
    cr_assert_not_null(j, "%s %s: not JSON: %s", method, path, r->body);
    hn_resp_free(r);
    return j;
}

static cJSON *sim_json(const char *method, const char *path, const char *body)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", st.sim_url, path);
    struct hn_resp *r = hn_http(method, url, NULL, body, body ? strlen(body) : 0, 10000);
    cr_assert_eq(r->status, 200, "sim %s %s: %d %s", method, path, r->status, r->body);
    cJSON *j = hn_json(r);
    cr_assert_not_null(j);
    hn_resp_free(r);
    return j;
}

static void sim_admin(const char *path, const char *body)
{
    cJSON_Delete(sim_json("POST", path, body));
}

/* A number at a dotted path ("references.MK-1.creates") of /admin/<system>/stats; -1 when
 * there is none (a reference never created). Keys may contain '-' but not '.'. */
static double sim_stat(const char *system, const char *dotted)
{
    char path[96], key[256];
    snprintf(path, sizeof(path), "/admin/%s/stats", system);
    cJSON *j = sim_json("GET", path, NULL);
    const cJSON *it = j;
    snprintf(key, sizeof(key), "%s", dotted);
    for (char *save = NULL, *part = strtok_r(key, ".", &save); part && it;
         part = strtok_r(NULL, ".", &save))
        it = cJSON_GetObjectItemCaseSensitive(it, part);
    double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
    cJSON_Delete(j);
    return v;
}

static double ref_stat(const char *system, const char *ref, const char *what)
{
    char k[160];
    snprintf(k, sizeof(k), "references.%s.%s", ref, what);
    return sim_stat(system, k);
}

static double mk_stat(const char *order, const char *what)
{
    char k[160];
    snprintf(k, sizeof(k), "orders.%s.%s", order, what);
    return sim_stat("mirakl", k);
}

/* ---- orders in the sim and in our store --------------------------------------------------- */

#define MAX_ORDERS 32

struct ids {
    int n;
    char id[MAX_ORDERS][32];
};

/* Let the sim's Mirakl generate n orders (seed picks them); their ids into out. */
static void generate(int n, int seed, struct ids *out)
{
    char body[96];
    cr_assert(n <= MAX_ORDERS);
    snprintf(body, sizeof(body), "{\"generate\":%d,\"seed\":%d}", n, seed);
    cJSON *j = sim_json("POST", "/admin/mirakl/orders", body);
    const cJSON *c = cJSON_GetObjectItem(j, "created"), *it;
    out->n = 0;
    cJSON_ArrayForEach(it, c)
    {
        cr_assert(cJSON_IsString(it));
        snprintf(out->id[out->n++], sizeof(out->id[0]), "%s", it->valuestring);
    }
    cr_assert_eq(out->n, n, "the sim made %d orders of %d", out->n, n);
    cJSON_Delete(j);
}

/* One explicit order in the sim; its id into out. extra is more JSON fields (",..." or ""). */
static void make_order(const char *extra, char out[32])
{
    char body[256];
    snprintf(body, sizeof(body), "{\"orders\":[{\"weight\":7.5%s}]}", extra);
    cJSON *j = sim_json("POST", "/admin/mirakl/orders", body);
    const cJSON *id = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "created"), 0);
    cr_assert(cJSON_IsString(id));
    snprintf(out, 32, "%s", id->valuestring);
    cJSON_Delete(j);
}

/* POST /api/v1/orchestrator/fetch-orders (since NULL: from the high-water mark); the job id
 * into job (may be NULL). */
static void fetch(const char *since, char job[40])
{
    char body[96] = "";
    if (since)
        snprintf(body, sizeof(body), "{\"since\":\"%s\"}", since);
    cJSON *j = api_json("POST", "/api/v1/orchestrator/fetch-orders", since ? body : NULL, 202);
    const cJSON *id = cJSON_GetObjectItem(j, "job_id");
    cr_assert(cJSON_IsString(id));
    if (job)
        snprintf(job, 40, "%s", id->valuestring);
    cJSON_Delete(j);
}

#pragma GCC diagnostic ignored "-Wunused-function" /* TEMP */
#define q hn_sql_id

static char *state_of(const char *id)
{
    return hn_psql_scalar(q("SELECT internal_state FROM orders WHERE order_id = '%s'", id));
}

struct state_wait {
    const char *id;
    const char *state;
};

static int order_is(void *arg)
{
    struct state_wait *w = arg;
    char *s = state_of(w->id);
    int ok = s && strcmp(s, w->state) == 0;
    free(s);
    return ok;
}

static void wait_state(const char *id, const char *state, int timeout_ms)
{
    struct state_wait w = { id, state };
    if (!hn_wait_until(order_is, &w, timeout_ms, 25)) {
        char *s = state_of(id);
        char *err = hn_psql_scalar(q("SELECT last_error FROM orders WHERE order_id = '%s'", id));
        char msg[600];
        snprintf(msg, sizeof(msg), "order %s is %s (last_error %s), expected %s", id,
                 s ? s : "(none)", err ? err : "-", state);
        free(s);
        free(err);
        cr_assert_fail("%s", msg);
    }
}

static void wait_all(const struct ids *ids, const char *state, int timeout_ms)
{
    for (int i = 0; i < ids->n; i++)
        wait_state(ids->id[i], state, timeout_ms);
}

static long long sql_count(const char *sql)
{
    return hn_psql_int(sql);
}

/* ---- jobs ------------------------------------------------------------------------------- */

/* The id of a derived job (common/jobopt.c: UUIDv8 of the SHA-256 of
 * "conveyor-derived|<type>|<key>"), as the workers' follow-ups and the sweeps make it. */
static void derived_id(const char *type, const char *key, char out[UUID_STR_LEN])
{
    unsigned char h[32];
    char name[256];
    snprintf(name, sizeof(name), "conveyor-derived|%s|%s", type, key);
    auth_sha256(name, strlen(name), h);
    uuid_v8(h, out);
}

/* GET /v1/jobs/{id}: its status and attempt (status "" when unknown). */
static void job_status(const char *id, char status[32], int *attempt, char *err, size_t errcap)
{
    char path[96];
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    struct hn_resp *r = api("GET", path, NULL);
    status[0] = '\0';
    if (attempt)
        *attempt = -1;
    if (err && errcap)
        err[0] = '\0';
    if (r->status == 200) {
        cJSON *j = hn_json(r);
        const cJSON *s = cJSON_GetObjectItem(j, "status");
        const cJSON *a = cJSON_GetObjectItem(j, "attempt");
        const cJSON *e = cJSON_GetObjectItem(j, "last_error");
        if (cJSON_IsString(s))
            snprintf(status, 32, "%s", s->valuestring);
        if (attempt && cJSON_IsNumber(a))
            *attempt = a->valueint;
        if (err && errcap && cJSON_IsString(e))
            snprintf(err, errcap, "%s", e->valuestring);
        cJSON_Delete(j);
    }
    hn_resp_free(r);
}

struct job_wait {
    const char *id;
    const char *status;
};

static int job_is(void *arg)
{
    struct job_wait *w = arg;
    char s[32];
    job_status(w->id, s, NULL, NULL, 0);
    return strcmp(s, w->status) == 0;
}

static void wait_job(const char *id, const char *status, int timeout_ms)
{
    struct job_wait w = { id, status };
    if (!hn_wait_until(job_is, &w, timeout_ms, 25)) {
        char s[32], e[256];
        int a;
        job_status(id, s, &a, e, sizeof(e));
        cr_assert_fail("job %s is '%s' (attempt %d, last_error %s), expected %s", id, s, a, e,
                       status);
    }
}

/* The job that made the order's first operations row with this action. malloc'd. */
static char *op_job(const char *order, const char *action)
{
    char sql[300];
    snprintf(sql, sizeof(sql),
             "SELECT job_id FROM operations WHERE order_id = '%s' AND action = '%s' "
             "ORDER BY id LIMIT 1",
             order, action);
    char *j = hn_psql_scalar(sql);
    cr_assert_not_null(j, "order %s has no '%s' operation with a job", order, action);
    return j;
}

/* ---- webhooks --------------------------------------------------------------------------- */

static void rfc3339_now(char out[40], int plus_s)
{
    time_t t = time(NULL) + plus_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 40, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

/* POST a SEUR tracking webhook for order (reference) to the API, signed with secret (NULL:
 * the demo secret) at timestamp ts (0: now). Returns the response (free it). */
static struct hn_resp *send_hook(const char *wid, const char *order, const char *status,
                                 int seq, const char *event_at, const char *secret, long long ts)
{
    char body[1024], sig[128], tsbuf[24], h1[128], h2[64], h3[200], url[256];
    snprintf(body, sizeof(body),
             "{\"type\":\"shipment.tracking\",\"timestamp\":\"%s\",\"data\":{\"carrier\":"
             "\"seur\",\"reference\":\"%s\",\"status\":\"%s\",\"event_at\":\"%s\",\"seq\":%d,"
             "\"description\":\"test event\"}}",
             event_at, order, status, event_at, seq);
    snprintf(tsbuf, sizeof(tsbuf), "%lld", ts ? ts : (long long)time(NULL));
    cr_assert_eq(auth_webhook_sign(secret ? secret : DEMO_SECRET, wid, tsbuf, body,
                                   strlen(body), sig, sizeof(sig)),
                 0);
    snprintf(h1, sizeof(h1), "webhook-id: %s", wid);
    snprintf(h2, sizeof(h2), "webhook-timestamp: %s", tsbuf);
    snprintf(h3, sizeof(h3), "webhook-signature: %s", sig);
    const char *const h[] = { h1, h2, h3, NULL };
    snprintf(url, sizeof(url), "%s/api/v1/carriers/seur/webhook", st.api_url);
    return hn_http("POST", url, h, body, strlen(body), 10000);
}

/* send_hook() that must answer 200; the job id into job, duplicate flag returned. */
static int hook_ok(const char *wid, const char *order, const char *status, int seq,
                   const char *event_at, char job[40])
{
    struct hn_resp *r = send_hook(wid, order, status, seq, event_at, NULL, 0);
    cr_assert_eq(r->status, 200, "webhook %s: %d %s", wid, r->status, r->body);
    cJSON *j = hn_json(r);
    const cJSON *id = cJSON_GetObjectItem(j, "job_id");
    const cJSON *dup = cJSON_GetObjectItem(j, "duplicate");
    cr_assert(cJSON_IsString(id) && cJSON_IsBool(dup), "webhook answer: %s", r->body);
    if (job)
        snprintf(job, 40, "%s", id->valuestring);
    int d = cJSON_IsTrue(dup);
    cJSON_Delete(j);
    hn_resp_free(r);
    return d;
}

/* =========================================================================================
 * 1. the whole loop
 * ========================================================================================= */

Test(orders, whole_loop_fetch_to_complete)
{
    start(NULL);
    struct ids o;
    generate(12, 7, &o);
    char fjob[40];
    fetch(NULL, fjob);
    wait_all(&o, "COMPLETE", WAIT_MS);
    wait_job(fjob, "succeeded", 10000);

    /* the outside world saw each effect once */
    cr_assert_eq(sim_stat("seur", "shipments_created"), o.n);
    for (int i = 0; i < o.n; i++) {
        cr_assert_eq(ref_stat("seur", o.id[i], "creates"), 1, "%s: SEUR creates", o.id[i]);
        cr_assert_eq(mk_stat(o.id[i], "or23"), 1, "%s: OR23", o.id[i]);
        cr_assert_eq(mk_stat(o.id[i], "or24"), 1, "%s: OR24", o.id[i]);
    }
    cr_assert_eq(sim_stat("mirakl", "orders_by_state.SHIPPED"), o.n);
    cr_assert_eq(sql_count("SELECT count(*) FROM orders WHERE carrier_code = 'seur' AND "
                           "tracking_number IS NOT NULL AND expedition_id IS NOT NULL AND "
                           "mirakl_tracking_updated"),
                 o.n);

    /* seed 004's actions, in order, for one order: fetch, create, tracking, push. Seed 004
     * names step 4's row carrier.webhook_received; 0002_orders.sql's cv_order_track writes
     * carrier.tracking_event for every event source (webhook or change feed), with the
     * status in message. */
    const char *one = o.id[3];
    static const char *const want[][3] = {
        /* scope, action, to_state ("" = not a move) */
        { "mirakl", "fetch_order", "" },
        { "carrier", "create_shipment", "POSTED" },
        { "carrier", "await_tracking", "AWAITING_TRACKING" },
        { "carrier", "tracking_event", "TRACKED" },
        { "mirakl", "update_tracking", "MIRAKL_OK" },
        { "mirakl", "ship", "COMPLETE" },
    };
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/logs/operations?order_id=%s&limit=100", one);
    cJSON *ops = api_json("GET", path, NULL, 200);
    cJSON *arr = cJSON_GetObjectItem(ops, "operations");
    int n = cJSON_GetArraySize(arr), k = 0;
    /* newest first: walk from the end */
    for (int i = n - 1; i >= 0 && k < (int)(sizeof(want) / sizeof(want[0])); i--) {
        const cJSON *op = cJSON_GetArrayItem(arr, i);
        const char *scope = cJSON_GetObjectItem(op, "scope")->valuestring;
        const char *action = cJSON_GetObjectItem(op, "action")->valuestring;
        const cJSON *to = cJSON_GetObjectItem(op, "to_state");
        if (strcmp(scope, want[k][0]) == 0 && strcmp(action, want[k][1]) == 0 &&
            (want[k][2][0] ? cJSON_IsString(to) && strcmp(to->valuestring, want[k][2]) == 0
                           : 1))
            k++;
    }
    if (k != (int)(sizeof(want) / sizeof(want[0]))) {
        char *text = cJSON_Print(arr);
        fprintf(stderr, "operations of %s:\n%s\n", one, text);
        free(text);
    }
    cr_assert_eq(k, (int)(sizeof(want) / sizeof(want[0])),
                 "operations of %s: only %d of the seed's steps in order", one, k);
    cJSON_Delete(ops);

    /* one order: its row, its history and its outbound calls */
    snprintf(path, sizeof(path), "/api/v1/orders/%s", one);
    cJSON *g = api_json("GET", path, NULL, 200);
    const cJSON *ord = cJSON_GetObjectItem(g, "order");
    cr_assert_str_eq(cJSON_GetObjectItem(ord, "internal_state")->valuestring, "COMPLETE");
    cr_assert_str_eq(cJSON_GetObjectItem(ord, "carrier_code")->valuestring, "seur");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(ord, "mirakl_tracking_updated")));
    cr_assert(cJSON_GetArraySize(cJSON_GetObjectItem(g, "operations")) >= 6);
    int seur_post = 0, or23 = 0, or24 = 0;
    const cJSON *call;
    cJSON_ArrayForEach(call, cJSON_GetObjectItem(g, "calls"))
    {
        const char *up = cJSON_GetObjectItem(call, "upstream")->valuestring;
        const char *m = cJSON_GetObjectItem(call, "method")->valuestring;
        const char *u = cJSON_GetObjectItem(call, "url")->valuestring;
        cr_assert_null(strstr(u, "mirakl-demo-shop-key"), "a secret in a logged URL: %s", u);
        seur_post += strcmp(up, "seur") == 0 && strcmp(m, "POST") == 0;
        or23 += strcmp(up, "mirakl") == 0 && strstr(u, "/tracking") != NULL;
        or24 += strcmp(up, "mirakl") == 0 && strstr(u, "/ship") != NULL;
    }
    cr_assert(seur_post == 1 && or23 == 1 && or24 == 1, "calls of %s: seur POST %d, OR23 %d, "
              "OR24 %d", one, seur_post, or23, or24);
    cJSON_Delete(g);

    /* every job that moved an order succeeded */
    char *jobs = hn_psql_scalar("SELECT string_agg(DISTINCT job_id::text, ',') FROM operations "
                                "WHERE job_id IS NOT NULL");
    cr_assert_not_null(jobs);
    int njobs = 0;
    for (char *save = NULL, *id = strtok_r(jobs, ",", &save); id;
         id = strtok_r(NULL, ",", &save), njobs++) {
        char s[32];
        int a;
        job_status(id, s, &a, NULL, 0);
        cr_assert_str_eq(s, "succeeded", "job %s is %s", id, s);
    }
    free(jobs);
    /* the fetch, and per order a post, an event and a push */
    cr_assert_eq(njobs, 1 + 3 * o.n, "%d jobs", njobs);
    hn_stop_stack(&st);
}
