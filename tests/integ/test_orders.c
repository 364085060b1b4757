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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "harness.h"
#include "uuid.h"

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
/* ACCEPTED, then IN_TRANSIT and DELIVERED 100 ms apart. */
static const char *const sim_env_all_events[] = { "CONVEYOR_SIM_WEBHOOK_DELAY_MS=50",
                                                  "CONVEYOR_SIM_TRANSIT_DELAY_MS=100",
                                                  "CONVEYOR_SIM_DELIVER_DELAY_MS=100", NULL };

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

static void assert_carrier_status(const char *id, const char *want)
{
    char *cs = hn_psql_scalar(q("SELECT carrier_status FROM orders WHERE order_id = '%s'", id));
    cr_assert(cs && strcmp(cs, want) == 0, "order %s: carrier_status %s, expected %s", id,
              cs ? cs : "(null)", want);
    free(cs);
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

/* Carrier events after the order is COMPLETE: IN_TRANSIT and DELIVERED follow ACCEPTED. */
struct status_wait {
    const char *id, *status;
};

static int carrier_status_is(void *arg)
{
    struct status_wait *w = arg;
    char *cs = hn_psql_scalar(q("SELECT carrier_status FROM orders WHERE order_id = '%s'", w->id));
    int ok = cs && strcmp(cs, w->status) == 0;
    free(cs);
    return ok;
}

/* The OR24 calls the sim's Mirakl counted for order id. */
static long long sim_json_or24(const char *id)
{
    cJSON *stats = sim_json("GET", "/admin/mirakl/stats", NULL);
    const cJSON *o = cJSON_GetObjectItem(cJSON_GetObjectItem(stats, "orders"), id);
    const cJSON *n = cJSON_GetObjectItem(o, "or24");
    long long v = cJSON_IsNumber(n) ? (long long)n->valuedouble : -1;
    cJSON_Delete(stats);
    return v;
}

/* /metrics' fetch-to-complete histogram: 1 when its _count is want->n (its _sum into
 * want->sum). */
struct f2c_want {
    int n;
    double sum;
};

static int f2c_count_is(void *arg)
{
    struct f2c_want *w = arg;
    static const char cnt[] = "\nconveyor_order_fetch_to_complete_seconds_count ";
    static const char sum[] = "\nconveyor_order_fetch_to_complete_seconds_sum ";
    struct hn_resp *r = api("GET", "/metrics", NULL);
    const char *c = r->status == 200 ? strstr(r->body, cnt) : NULL;
    const char *s = r->status == 200 ? strstr(r->body, sum) : NULL;
    int ok = c && s && atoll(c + strlen(cnt)) == w->n;
    if (ok)
        w->sum = atof(s + strlen(sum));
    hn_resp_free(r);
    return ok;
}

Test(orders, whole_loop_fetch_to_complete)
{
    struct opts so = { .workers = 1, .sim_env = sim_env_all_events };
    start(&so);
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

    /* seed 004's latency: each completion in the fetch-to-complete histogram, its sum
     * within what PostgreSQL saw (created_at to the COMPLETE move, a second's slack) */
    struct f2c_want fw = { o.n, -1 };
    cr_assert(hn_wait_until(f2c_count_is, &fw, 10000, 100),
              "conveyor_order_fetch_to_complete_seconds_count is not %d", o.n);
    char *pg_sum = hn_psql_scalar("SELECT sum(extract(epoch FROM state_changed_at - created_at)) "
                                  "FROM orders WHERE internal_state = 'COMPLETE'");
    cr_assert(fw.sum >= 0 && fabs(fw.sum - atof(pg_sum)) <= o.n * 1.0,
              "histogram sum %.3f s, PostgreSQL's %s s", fw.sum, pg_sum);
    free(pg_sum);

    /* seed 004's actions, in order, for one order: fetch, create, tracking
     * (carrier.webhook_received, 0006), push. */
    const char *one = o.id[3];
    static const char *const want[][3] = {
        /* scope, action, to_state ("" = not a move) */
        { "mirakl", "fetch_order", "" },
        { "carrier", "create_shipment", "POSTED" },
        { "carrier", "await_tracking", "AWAITING_TRACKING" },
        { "carrier", "webhook_received", "TRACKED" },
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

    /* the later events only update the carrier status of the completed orders */
    for (int i = 0; i < o.n; i++) {
        struct status_wait sw = { o.id[i], "DELIVERED" };
        cr_assert(hn_wait_until(carrier_status_is, &sw, WAIT_MS, 25), "%s never DELIVERED",
                  o.id[i]);
    }
    cr_assert_eq(sql_count("SELECT count(*) FROM orders WHERE internal_state = 'COMPLETE'"),
                 o.n);
    cr_assert_eq(sql_count("SELECT count(*) FROM operations WHERE action = 'webhook_received' "
                           "AND status = 'OK'"),
                 3 * o.n, "ACCEPTED, IN_TRANSIT, DELIVERED each applied once");
    cr_assert_eq(sql_count("SELECT count(*) FROM operations WHERE to_state = 'TRACKED'"), o.n);

    /* every job that moved or tracked an order succeeded */
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
    /* the fetch, and per order a post, three events and a push */
    cr_assert_eq(njobs, 1 + 5 * o.n, "%d jobs", njobs);
    hn_stop_stack(&st);
}

/* =========================================================================================
 * 2-4. carrier failures while posting
 * ========================================================================================= */

/* One order all the way, so that the worker holds a SEUR token before a fault is armed
 * (a fault on the token call would test the token path instead). */
static void warm_up(void)
{
    char warm[32];
    make_order("", warm);
    fetch(LONG_AGO, NULL);
    wait_state(warm, "COMPLETE", WAIT_MS);
}

/* Rows of comm_log for order whose status is status (comm_log is written in batches:
 * poll until it has at least want, then return the count). */
struct log_wait {
    char sql[300];
    long long want;
};

static int log_has(void *arg)
{
    struct log_wait *w = arg;
    return sql_count(w->sql) >= w->want;
}

static long long comm_rows(const char *order, const char *where, long long want)
{
    struct log_wait w;
    snprintf(w.sql, sizeof(w.sql),
             "SELECT count(*) FROM comm_log WHERE order_id = '%s' AND %s", order, where);
    w.want = want;
    hn_wait_until(log_has, &w, 10000, 50);
    return sql_count(w.sql);
}

static long long ops_count(const char *order, const char *where)
{
    char sql[400];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM operations WHERE order_id = '%s' AND %s",
             order, where);
    return sql_count(sql);
}

Test(orders, carrier_5xx_then_success_posts_once)
{
    start(NULL);
    warm_up();
    double errors0 = sim_stat("seur", "errors");
    sim_admin("/admin/seur/faults", "{\"fail_next\":1}");
    char id[32], key[64], job[UUID_STR_LEN], s[32];
    make_order("", id);
    fetch(LONG_AGO, NULL);
    wait_state(id, "COMPLETE", WAIT_MS);

    cr_assert_eq(sim_stat("seur", "errors"), errors0 + 1, "the 503 was answered once");
    cr_assert_eq(ref_stat("seur", id, "creates"), 1, "one shipment");
    cr_assert_eq(ops_count(id, "action = 'create_shipment' AND to_state = 'POSTED'"), 1);
    /* the follow-up job of the fetch spent its first attempt on the 503 */
    snprintf(key, sizeof(key), "%s:post:0", id);
    derived_id("carrier-post", key, job);
    char *mover = op_job(id, "create_shipment");
    cr_assert_str_eq(mover, job, "the fetch's follow-up posted it");
    free(mover);
    int attempt;
    wait_job(job, "succeeded", 10000);
    job_status(job, s, &attempt, NULL, 0);
    cr_assert_eq(attempt, 2, "attempt %d", attempt);
    cr_assert_eq(comm_rows(id, "upstream = 'seur' AND status = 503", 1), 1);
    /* attempt 2 looked first (the outcome of attempt 1 was a 503, but a retry never
     * creates blindly), found nothing, created */
    cr_assert_eq(comm_rows(id, "upstream = 'seur' AND method = 'GET' AND status = 404", 1), 1);
    hn_stop_stack(&st);
}

Test(orders, carrier_validation_error_fails_post_without_retry)
{
    start(NULL);
    sim_admin("/admin/seur/faults", "{\"fail_keys\":[\"99999\"]}");
    char id[32], key[64], job[UUID_STR_LEN], s[32], err[256];
    make_order(",\"zip_code\":\"99999\"", id);
    fetch(LONG_AGO, NULL);
    wait_state(id, "FAILED_POST", WAIT_MS);

    char *le = hn_psql_scalar(q("SELECT last_error FROM orders WHERE order_id = '%s'", id));
    cr_assert(le && strstr(le, "postal code: not served by the carrier"),
              "last_error has the carrier's message: %s", le ? le : "(null)");
    free(le);
    cr_assert_eq(ops_count(id, "action = 'create_shipment' AND status = 'ERROR' AND "
                               "to_state = 'FAILED_POST' AND message LIKE '%not served%'"),
                 1);
    snprintf(key, sizeof(key), "%s:post:0", id);
    derived_id("carrier-post", key, job);
    wait_job(job, "failed", 10000);
    int attempt;
    job_status(job, s, &attempt, err, sizeof(err));
    cr_assert_eq(attempt, 1, "no retry: attempt %d", attempt);
    cr_assert(strstr(err, "not served"), "the job's error: %s", err);
    cr_assert_eq(sim_stat("seur", "validation_errors"), 1);
    cr_assert_eq(sim_stat("seur", "shipments_created"), 0);
    cr_assert_eq(comm_rows(id, "upstream = 'seur' AND status = 400", 1), 1, "one create call");
    cr_assert_eq(comm_rows(id, "upstream = 'seur'", 1), 1, "and nothing else for it");

    /* the operator fixes it at the carrier and posts again with a new job: the retry edge
     * FAILED_POST -> PENDING_POST, then the post */
    sim_admin("/admin/seur/faults", "{\"fail_keys\":[]}");
    char body[128];
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\"}", id);
    cJSON *j = api_json("POST", "/v1/jobs/carrier-post", body, 202);
    cJSON_Delete(j);
    wait_state(id, "COMPLETE", WAIT_MS);
    cr_assert_eq(ops_count(id, "from_state = 'FAILED_POST' AND to_state = 'PENDING_POST'"), 1);
    cr_assert_eq(ref_stat("seur", id, "creates"), 1);
    cr_assert_eq(sql_count(q("SELECT attempts FROM orders WHERE order_id = '%s'", id)), 1,
                 "attempts counts the one failure");
    hn_stop_stack(&st);
}

Test(orders, create_timed_out_after_apply_is_looked_up_not_resent)
{
    static const char *const wenv[] = { WORKER_ENV_BASE, "CONVEYOR_UPSTREAMS_SEUR_TIMEOUT_MS=700",
                                        NULL };
    struct opts o = { .workers = 1, .worker_env = wenv };
    start(&o);
    sim_admin("/admin/seur/faults", "{\"apply_then_timeout_next\":1}");
    char id[32], key[64], job[UUID_STR_LEN], s[32];
    make_order("", id);
    fetch(LONG_AGO, NULL);
    wait_state(id, "COMPLETE", WAIT_MS);

    cr_assert_eq(sim_stat("seur", "applied_then_timeout"), 1, "the create was held");
    cr_assert_eq(ref_stat("seur", id, "creates"), 1, "one shipment, not two");
    cr_assert_eq(ops_count(id, "action = 'create_shipment' AND to_state = 'POSTED' AND "
                               "meta->>'looked_up' = 'true'"),
                 1, "posted from the lookup");
    char *code = hn_psql_scalar(q("SELECT expedition_id FROM orders WHERE order_id = '%s'", id));
    cJSON *stats = sim_json("GET", "/admin/seur/stats", NULL);
    const cJSON *ref = cJSON_GetObjectItem(cJSON_GetObjectItem(stats, "references"), id);
    cr_assert(code && cJSON_IsString(cJSON_GetObjectItem(ref, "code")) &&
                  strcmp(code, cJSON_GetObjectItem(ref, "code")->valuestring) == 0,
              "the order has the held shipment's code: %s", code ? code : "(null)");
    cJSON_Delete(stats);
    free(code);
    snprintf(key, sizeof(key), "%s:post:0", id);
    derived_id("carrier-post", key, job);
    wait_job(job, "succeeded", 10000);
    int attempt;
    job_status(job, s, &attempt, NULL, 0);
    cr_assert_eq(attempt, 2, "attempt %d", attempt);
    hn_stop_stack(&st);
}

/* A create whose outcome is unknown on the last attempt leaves the order FAILED_POST while
 * the carrier may hold the shipment; the operator's replay (a fresh life of the job) must
 * look it up before creating, as a redelivery does (found by the chaos kit's replays). */
Test(orders, replay_after_an_unknown_create_outcome_looks_up_not_resent)
{
    static const char *const wenv[] = { WORKER_ENV_BASE, "CONVEYOR_UPSTREAMS_SEUR_TIMEOUT_MS=700",
                                        "CONVEYOR_JOBS_TYPES_CARRIER_POST_MAX_ATTEMPTS=1", NULL };
    struct opts o = { .workers = 1, .worker_env = wenv };
    start(&o);
    sim_admin("/admin/seur/faults", "{\"apply_then_timeout_next\":1}");
    char id[32], key[64], job[UUID_STR_LEN], path[128];
    make_order("", id);
    fetch(LONG_AGO, NULL);
    wait_state(id, "FAILED_POST", WAIT_MS);
    snprintf(key, sizeof(key), "%s:post:0", id);
    derived_id("carrier-post", key, job);
    wait_job(job, "dead", 10000);
    cr_assert_eq(ref_stat("seur", id, "creates"), 1, "the held create was applied");

    snprintf(path, sizeof(path), "/v1/dead/%s/retry", job);
    cJSON_Delete(api_json("POST", path, NULL, 202));
    wait_state(id, "COMPLETE", WAIT_MS);
    cr_assert_eq(ref_stat("seur", id, "creates"), 1, "one shipment, not two");
    cr_assert_eq(ops_count(id, "from_state = 'FAILED_POST' AND to_state = 'PENDING_POST'"), 1);
    cr_assert_eq(ops_count(id, "action = 'create_shipment' AND to_state = 'POSTED' AND "
                               "meta->>'looked_up' = 'true'"),
                 1, "posted from the lookup");
    hn_stop_stack(&st);
}

/* A push delivery that crashed between MIRAKL_OK and COMPLETE (two transactions) leaves the
 * order MIRAKL_OK; the next delivery must complete it without a second OR24: it looks the
 * order up (OR11 by id), finds it shipped and moves on (found by the chaos kit). The crash
 * is staged by moving a COMPLETE order back in the table. */
Test(orders, push_finding_mirakl_ok_looks_up_and_completes_without_a_second_or24)
{
    start(NULL);
    char id[32], body[128];
    make_order("", id);
    fetch(LONG_AGO, NULL);
    wait_state(id, "COMPLETE", WAIT_MS);
    long long or24 = sim_json_or24(id);
    hn_psql_exec(q("UPDATE orders SET internal_state = 'MIRAKL_OK' WHERE order_id = '%s'", id));
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\"}", id);
    cJSON_Delete(api_json("POST", "/v1/jobs/tracking-push", body, 202));
    wait_state(id, "COMPLETE", WAIT_MS);
    cr_assert_eq(sim_json_or24(id), or24, "no second OR24");
    cr_assert_eq(ops_count(id, "from_state = 'MIRAKL_OK' AND to_state = 'COMPLETE'"), 2);
    hn_stop_stack(&st);
}

/* =========================================================================================
 * 5. Mirakl throttles OR23
 * ========================================================================================= */

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A stack with no tracking-push worker and one order in TRACKED, its push job
 * waiting: the test then sets the stage and adds the push worker. */
static void start_tracked_without_push(char id[32])
{
    struct opts o = { .workers = 1, .types = "order-fetch,carrier-post,tracking-event" };
    start(&o);
    make_order("", id);
    fetch(LONG_AGO, NULL);
    wait_state(id, "TRACKED", WAIT_MS);
}

Test(orders, mirakl_429_on_or23_waits_retry_after_then_completes)
{
    /* no push worker until the order is TRACKED: the throttle then meets OR23 */
    char id[32];
    start_tracked_without_push(id);
    cr_assert_eq(sim_stat("mirakl", "throttled"), 0);
    sim_admin("/admin/mirakl/faults", "{\"throttle_next\":2,\"retry_after_s\":1}");
    long long t0 = mono_ms();
    add_worker("tracking-push");
    wait_state(id, "COMPLETE", WAIT_MS);
    long long took = mono_ms() - t0;

    cr_assert_eq(sim_stat("mirakl", "throttled"), 2, "two 429 answers");
    cr_assert_eq(mk_stat(id, "or23"), 1);
    cr_assert_eq(mk_stat(id, "or24"), 1);
    /* two Retry-After: 1 honoured (the backoff alone is 50..400 ms) */
    cr_assert(took >= 1900, "completed %lld ms after the throttle: Retry-After ignored", took);
    cr_assert_eq(ops_count(id, "to_state LIKE 'FAILED%'"), 0, "a 429 is not a failure");
    hn_stop_stack(&st);
}

/* A worker stalled past its delivery's lease (SIGSTOP, swap) must send nothing late:
 * another worker may own the job by then and have shipped the order (found by the chaos
 * kit: a worker stopped for 8 s between its OR11 lookup and its OR24 sent that OR24 after
 * the new owner had shipped; Mirakl refused it, but it was a second OR24). Mirakl answering
 * slower than the lease stands in for the stall: each delivery's OR24 would leave after its
 * lease, so none leaves while Mirakl is slow, and exactly one once it is fast again. */
Test(orders, no_or24_goes_out_past_the_deliverys_lease)
{
    static const char *const env[] = { WORKER_ENV_BASE, "CONVEYOR_VISIBILITY_TIMEOUT_MS=1000",
                                       NULL };
    char id[32];
    start_tracked_without_push(id);
    sim_admin("/admin/mirakl/faults", "{\"latency_ms\":900}"); /* send-by: 800 ms */
    const char *const *keep = st.opts.worker_env;
    st.opts.worker_env = env;
    add_worker("tracking-push");
    st.opts.worker_env = keep;
    /* two deliveries that found OR23 done and looked the order up (OR11 by id) */
    long long lookups = comm_rows(id, "url LIKE '%order_ids=%'", 2);
    cr_assert_geq(lookups, 2, "%lld OR11 lookups: the push never resumed", lookups);
    cr_assert_eq(mk_stat(id, "or24"), 0, "an OR24 went out past its delivery's lease");
    cr_assert_eq(comm_rows(id, "url LIKE '%/ship'", 0), 0);
    sim_admin("/admin/mirakl/faults", "{\"latency_ms\":0}");
    wait_state(id, "COMPLETE", WAIT_MS);
    cr_assert_eq(mk_stat(id, "or24"), 1, "exactly one OR24 once Mirakl is fast");
    hn_stop_stack(&st);
}

/* =========================================================================================
 * 6. expired SEUR tokens, two workers
 * ========================================================================================= */

Test(orders, expired_token_is_refreshed_once_across_two_workers)
{
    struct opts o = { .workers = 2 };
    start(&o);
    struct ids a, b;
    generate(6, 11, &a);
    fetch(LONG_AGO, NULL);
    wait_all(&a, "COMPLETE", WAIT_MS);
    double t1 = sim_stat("seur", "tokens_issued");
    cr_assert_eq(t1, 1, "two workers share one token (single flight): %g issued", t1);

    sim_admin("/admin/seur/faults", "{\"expire_tokens_now\":true}");
    generate(8, 12, &b);
    fetch(LONG_AGO, NULL);
    wait_all(&b, "COMPLETE", WAIT_MS);
    cr_assert_eq(sim_stat("seur", "tokens_issued"), t1 + 1, "refreshed once: %g",
                 sim_stat("seur", "tokens_issued"));
    cr_assert(sim_stat("seur", "unauthorized") >= 1, "the old token was refused");
    for (int i = 0; i < b.n; i++)
        cr_assert_eq(ref_stat("seur", b.id[i], "creates"), 1, "%s", b.id[i]);
    hn_stop_stack(&st);
}

/* =========================================================================================
 * 7. circuit breaker
 * ========================================================================================= */

struct deferred_wait {
    const char *job;
};

static int is_deferred(void *arg)
{
    struct deferred_wait *w = arg;
    char s[32];
    int a;
    job_status(w->job, s, &a, NULL, 0);
    return strcmp(s, "retrying") == 0 || strcmp(s, "scheduled") == 0;
}

struct stat_wait {
    const char *system, *key;
    double at_least;
};

static int stat_reached(void *arg)
{
    struct stat_wait *w = arg;
    return sim_stat(w->system, w->key) >= w->at_least;
}

/* 1 when /metrics shows SEUR's circuit not closed (1 half-open, 2 open) and
 * /api/v1/health agrees. */
static int seur_circuit_shown(void *arg)
{
    (void)arg;
    static const char line[] = "conveyor_upstream_breaker_state{upstream=\"seur\"} ";
    struct hn_resp *r = api("GET", "/metrics", NULL);
    const char *at = r->status == 200 ? strstr(r->body, line) : NULL;
    int v = at ? atoi(at + strlen(line)) : 0;
    hn_resp_free(r);
    if (v < 1)
        return 0;
    r = api("GET", "/api/v1/health", NULL);
    const char *seur = strstr(r->body, "\"seur\":{");
    const char *end = seur ? strchr(seur, '}') : NULL;
    const char *c = seur ? strstr(seur, "\"circuit\":\"") : NULL;
    int ok = c && c < end && strncmp(c + 11, "closed", 6) != 0;
    hn_resp_free(r);
    return ok;
}

/* 1 when /metrics counts at least one SEUR call in the duration histogram, with
 * its +Inf bucket equal to its count. */
static int seur_calls_timed(void *arg)
{
    (void)arg;
    static const char cnt[] = "conveyor_upstream_request_duration_seconds_count{upstream=\"seur\"} ";
    static const char inf[] =
        "conveyor_upstream_request_duration_seconds_bucket{upstream=\"seur\",le=\"+Inf\"} ";
    struct hn_resp *r = api("GET", "/metrics", NULL);
    const char *c = r->status == 200 ? strstr(r->body, cnt) : NULL;
    const char *i = r->status == 200 ? strstr(r->body, inf) : NULL;
    int ok = c && i && atoll(c + strlen(cnt)) >= 1 &&
             atoll(c + strlen(cnt)) == atoll(i + strlen(inf));
    hn_resp_free(r);
    return ok;
}

Test(orders, open_circuit_defers_without_spending_attempts_then_recovers)
{
    static const char *const wenv[] = { WORKER_ENV_BASE,
                                        "CONVEYOR_UPSTREAMS_SEUR_BREAKER_FAILURES=2",
                                        "CONVEYOR_UPSTREAMS_SEUR_BREAKER_OPEN_MS=5000", NULL };
    static const char *const aenv[] = { "CONVEYOR_HTTP_METRICS_CACHE_MS=100", NULL };
    struct opts o = { .workers = 1, .worker_env = wenv, .api_env = aenv };
    start(&o);
    warm_up();
    double errors0 = sim_stat("seur", "errors");

    /* one order's two failed attempts open the circuit */
    sim_admin("/admin/seur/faults", "{\"error_rate\":1}");
    char x[32];
    make_order("", x);
    fetch(LONG_AGO, NULL);
    struct stat_wait sw = { "seur", "errors", errors0 + 2 };
    cr_assert(hn_wait_until(stat_reached, &sw, 20000, 20), "SEUR never failed twice");
    /* operators see it: the breaker gauge on /metrics and the circuit on /api/v1/health */
    cr_assert(hn_wait_until(seur_circuit_shown, NULL, 10000, 50),
              "the open circuit is on neither /metrics nor /api/v1/health");

    /* orders posted while it is open wait, without calling SEUR or spending attempts */
    struct ids y;
    char jobs[3][UUID_STR_LEN];
    generate(3, 21, &y);
    fetch(LONG_AGO, NULL);
    double calls = sim_stat("seur", "calls");
    for (int i = 0; i < y.n; i++) {
        char key[64], s[32];
        int a;
        snprintf(key, sizeof(key), "%s:post:0", y.id[i]);
        derived_id("carrier-post", key, jobs[i]);
        struct deferred_wait dw = { jobs[i] };
        cr_assert(hn_wait_until(is_deferred, &dw, 4000, 20), "job of %s not deferred",
                  y.id[i]);
        job_status(jobs[i], s, &a, NULL, 0);
        cr_assert_eq(a, 1, "deferred job %s spent an attempt: %d", jobs[i], a);
        cr_assert_eq(ref_stat("seur", y.id[i], "creates"), -1, "%s reached SEUR", y.id[i]);
    }
    cr_assert(sim_stat("seur", "calls") <= calls + 1, "calls went through an open circuit");

    /* SEUR heals; once breaker_open_ms passes, a probe closes the circuit */
    sim_admin("/admin/seur/faults", "{\"error_rate\":0}");
    wait_all(&y, "COMPLETE", WAIT_MS);
    wait_state(x, "COMPLETE", WAIT_MS);
    for (int i = 0; i < y.n; i++) {
        char s[32];
        int a;
        wait_job(jobs[i], "succeeded", 10000);
        job_status(jobs[i], s, &a, NULL, 0);
        cr_assert_eq(a, 1, "%s succeeded on attempt %d: the wait spent attempts", y.id[i], a);
        cr_assert_eq(ref_stat("seur", y.id[i], "creates"), 1);
    }
    cr_assert(hn_wait_until(seur_calls_timed, NULL, 10000, 50),
              "SEUR's calls are not in conveyor_upstream_request_duration_seconds");
    hn_stop_stack(&st);
}

/* =========================================================================================
 * 8. webhooks against the API
 * ========================================================================================= */

static const char *const sim_env_no_hooks[] = { SIM_ENV_NO_HOOKS, NULL };

/* An order of the sim fetched and posted (it waits in AWAITING_TRACKING: the sim sends no
 * webhooks in these tests). */
static void posted_order(char id[32])
{
    make_order("", id);
    fetch(LONG_AGO, NULL);
    wait_state(id, "AWAITING_TRACKING", WAIT_MS);
}

static void expect_hook_status(struct hn_resp *r, int want, const char *what)
{
    cr_assert_eq(r->status, want, "%s: %d %s", what, r->status, r->body);
    hn_resp_free(r);
}

Test(orders, webhook_signature_stale_schema_and_duplicates)
{
    struct opts o = { .workers = 1, .sim_env = sim_env_no_hooks };
    start(&o);
    char id[32], now[40], job1[40], job2[40];
    posted_order(id);
    rfc3339_now(now, 0);

    expect_hook_status(send_hook("msg_bad", id, "ACCEPTED", 1, now,
                                 "whsec_d3JvbmcgZGVtbyBrZXkgd3Jvbmcga2V5IQ==", 0),
                       401, "signed with another secret");
    expect_hook_status(send_hook("msg_stale", id, "ACCEPTED", 1, now, NULL,
                                 (long long)time(NULL) - 600),
                       401, "a timestamp 10 minutes old");
    expect_hook_status(send_hook("msg_schema", id, "ACCEPTED", 1, "yesterday", NULL, 0), 400,
                       "event_at is not a time");
    expect_hook_status(send_hook("msg_schema2", id, "", 1, now, NULL, 0), 400, "no status");

    /* the same webhook-id twice: one job, acknowledged twice */
    cr_assert_eq(hook_ok("msg_dup", id, "ACCEPTED", 1, now, job1), 0, "first: not a duplicate");
    cr_assert_eq(hook_ok("msg_dup", id, "ACCEPTED", 1, now, job2), 1, "second: duplicate");
    cr_assert_str_eq(job1, job2);
    wait_state(id, "COMPLETE", WAIT_MS);
    wait_job(job1, "succeeded", 10000);
    cr_assert_eq(ops_count(id, "action = 'webhook_received'"), 1, "one tracking row");
    cr_assert_eq(ops_count(id, "to_state = 'TRACKED'"), 1, "one transition to TRACKED");
    cr_assert_eq(mk_stat(id, "or23"), 1);
    assert_carrier_status(id, "ACCEPTED");
    hn_stop_stack(&st);
}

Test(orders, webhook_from_an_address_not_allowed_is_403)
{
    static const char *const aenv[] = { "CONVEYOR_UPSTREAMS_SEUR_WEBHOOK_CIDRS=10.0.0.0/8",
                                        NULL };
    struct opts o = { .workers = 0, .sim_env = sim_env_no_hooks, .api_env = aenv };
    start(&o);
    char now[40], body[8];
    rfc3339_now(now, 0);
    expect_hook_status(send_hook("msg_ip", "MK-X", "ACCEPTED", 1, now, NULL, 0), 403,
                       "127.0.0.1 is not in 10.0.0.0/8");
    /* X-Forwarded-For is believed only from trusted proxies (none here) */
    char url[256];
    snprintf(url, sizeof(url), "%s/api/v1/carriers/seur/webhook", st.api_url);
    snprintf(body, sizeof(body), "{}");
    const char *const h[] = { "X-Forwarded-For: 10.1.2.3", NULL };
    struct hn_resp *r = hn_http("POST", url, h, body, strlen(body), 5000);
    expect_hook_status(r, 403, "a forged X-Forwarded-For");
    hn_stop_stack(&st);
}

Test(orders, webhook_budget_per_carrier_and_hour_is_429)
{
    static const char *const aenv[] = { "CONVEYOR_UPSTREAMS_SEUR_WEBHOOK_RATE_PER_HOUR=2",
                                        NULL };
    struct opts o = { .workers = 0, .sim_env = sim_env_no_hooks, .api_env = aenv };
    start(&o);
    char now[40];
    rfc3339_now(now, 0);
    cr_assert_eq(hook_ok("msg_r1", "MK-R", "ACCEPTED", 1, now, NULL), 0);
    cr_assert_eq(hook_ok("msg_r2", "MK-R", "IN_TRANSIT", 2, now, NULL), 0);
    struct hn_resp *r = send_hook("msg_r3", "MK-R", "DELIVERED", 3, now, NULL, 0);
    cr_assert_eq(r->status, 429, "third in the hour: %d %s", r->status, r->body);
    char *ra = hn_resp_header(r, "Retry-After");
    cr_assert(ra && atoi(ra) >= 1 && atoi(ra) <= 3600, "Retry-After: %s", ra ? ra : "(none)");
    free(ra);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

/* =========================================================================================
 * 9-10. tracking events: early, and out of order
 * ========================================================================================= */

Test(orders, webhook_before_posted_is_kept_then_applied)
{
    /* only a fetch worker: the order stays PENDING_POST */
    struct opts o = { .workers = 1, .types = "order-fetch", .sim_env = sim_env_no_hooks };
    start(&o);
    char id[32], now[40], job[40], fjob[40];
    make_order("", id);
    fetch(LONG_AGO, fjob);
    wait_job(fjob, "succeeded", WAIT_MS);
    wait_state(id, "PENDING_POST", 1000);

    rfc3339_now(now, 0);
    cr_assert_eq(hook_ok("msg_early", id, "ACCEPTED", 1, now, job), 0);
    add_worker("tracking-event");
    wait_job(job, "succeeded", WAIT_MS);
    wait_state(id, "PENDING_POST", 1000);
    cr_assert_eq(sql_count(q("SELECT count(*) FROM tracking_pending WHERE order_id = '%s'", id)),
                 1, "the event is kept");
    cr_assert_eq(ops_count(id, "action = 'webhook_received' AND status = 'PENDING'"), 1);

    /* posting moves it to AWAITING_TRACKING, where the kept event applies: no sim webhook
     * exists here, so TRACKED can only come from it */
    add_worker("carrier-post,tracking-push");
    wait_state(id, "COMPLETE", WAIT_MS);
    cr_assert_eq(sql_count(q("SELECT count(*) FROM tracking_pending WHERE order_id = '%s'", id)),
                 0);
    cr_assert_eq(ops_count(id, "to_state = 'TRACKED'"), 1);
    cr_assert_eq(ref_stat("seur", id, "creates"), 1);
    assert_carrier_status(id, "ACCEPTED");
    hn_stop_stack(&st);
}

Test(orders, delivered_then_in_transit_never_moves_back)
{
    struct opts o = { .workers = 1, .sim_env = sim_env_no_hooks };
    start(&o);
    char id[32], later[40], earlier[40], j1[40], j2[40];
    posted_order(id);
    rfc3339_now(later, 0);
    rfc3339_now(earlier, -60);
    cr_assert_eq(hook_ok("msg_dlv", id, "DELIVERED", 3, later, j1), 0);
    wait_job(j1, "succeeded", WAIT_MS);
    cr_assert_eq(hook_ok("msg_trn", id, "IN_TRANSIT", 2, earlier, j2), 0);
    wait_job(j2, "succeeded", WAIT_MS);
    wait_state(id, "COMPLETE", WAIT_MS);

    assert_carrier_status(id, "DELIVERED");
    cr_assert_eq(ops_count(id, "action = 'webhook_received' AND status = 'STALE' AND "
                               "meta->>'carrier_status' = 'IN_TRANSIT'"),
                 1, "the late event is history only");
    cr_assert_eq(ops_count(id, "to_state = 'TRACKED'"), 1);
    hn_stop_stack(&st);
}

/* The sim's own webhook faults in the live pipeline: every shipment's events sent newest
 * first, and every message twice with its webhook-id. */
Test(orders, reversed_and_duplicated_carrier_webhooks_apply_in_event_order_once)
{
    struct opts o = { .workers = 1, .sim_env = sim_env_all_events };
    start(&o);
    sim_admin("/admin/seur/faults", "{\"webhook_reverse_rate\":1,\"webhook_duplicate_rate\":1}");
    struct ids a;
    generate(4, 61, &a);
    fetch(LONG_AGO, NULL);
    wait_all(&a, "COMPLETE", WAIT_MS);
    struct stat_wait sw = { "seur", "webhooks.delivered", 2 * 3 * a.n };
    cr_assert(hn_wait_until(stat_reached, &sw, WAIT_MS, 25), "the sim delivered %g webhooks",
              sim_stat("seur", "webhooks.delivered"));
    cr_assert_eq(sim_stat("seur", "webhooks.reversed"), a.n);
    for (int i = 0; i < a.n; i++) {
        struct status_wait cw = { a.id[i], "DELIVERED" };
        cr_assert(hn_wait_until(carrier_status_is, &cw, WAIT_MS, 25), "%s: carrier_status",
                  a.id[i]);
        cr_assert_eq(ops_count(a.id[i], "to_state = 'TRACKED'"), 1, "%s", a.id[i]);
        cr_assert_eq(mk_stat(a.id[i], "or23"), 1, "%s", a.id[i]);
    }
    /* each message made one job: three tracking rows per order, whatever their fate */
    struct log_wait lw = { "SELECT count(*) FROM operations WHERE action = 'webhook_received'",
                           3 * a.n };
    cr_assert(hn_wait_until(log_has, &lw, WAIT_MS, 25), "tracking rows");
    cr_assert_eq(sql_count(lw.sql), 3 * a.n, "a duplicate webhook made a second row");
    hn_stop_stack(&st);
}

/* =========================================================================================
 * 11. re-fetch
 * ========================================================================================= */

Test(orders, refetch_moves_nothing_back_and_makes_no_second_post)
{
    /* SHIPPED too: the last re-fetch sees the completed orders again */
    static const char *const wenv[] = { WORKER_ENV_BASE,
                                        "CONVEYOR_ORDERS_FETCH_STATES=SHIPPING,SHIPPED", NULL };
    struct opts o = { .workers = 1, .types = "order-fetch", .worker_env = wenv };
    start(&o);
    struct ids a;
    char f1[40], f2[40];
    generate(5, 31, &a);
    fetch(NULL, f1);
    wait_job(f1, "succeeded", WAIT_MS);
    fetch(LONG_AGO, f2);
    wait_job(f2, "succeeded", WAIT_MS);
    cr_assert_str_neq(f1, f2);
    /* the two fetches made the same carrier-post jobs: the sweep finds them all there */
    cJSON *j = api_json("POST", "/api/v1/orchestrator/post-to-carrier", NULL, 202);
    cr_assert_eq(cJSON_GetObjectItem(j, "orders")->valueint, a.n);
    cr_assert_eq(cJSON_GetObjectItem(j, "enqueued")->valueint, 0, "a second post job");
    cr_assert_eq(cJSON_GetObjectItem(j, "duplicates")->valueint, a.n);
    cJSON_Delete(j);
    cr_assert_eq(sql_count("SELECT count(*) FROM operations WHERE action = 'fetch_order'"), a.n,
                 "an unchanged order is not logged again");

    add_worker(HN_ORDER_TYPES);
    wait_all(&a, "COMPLETE", WAIT_MS);
    long long moves = sql_count("SELECT count(*) FROM operations WHERE to_state IS NOT NULL");
    fetch(LONG_AGO, f1);
    wait_job(f1, "succeeded", WAIT_MS);
    cr_assert_eq(sql_count("SELECT count(*) FROM orders WHERE mirakl_state = 'SHIPPED'"), a.n,
                 "the re-fetch read the shipped orders");
    cr_assert_eq(sql_count("SELECT count(*) FROM orders WHERE internal_state = 'COMPLETE'"),
                 a.n, "no state moved back");
    cr_assert_eq(sql_count("SELECT count(*) FROM operations WHERE to_state IS NOT NULL"), moves);
    for (int i = 0; i < a.n; i++) {
        cr_assert_eq(ref_stat("seur", a.id[i], "creates"), 1);
        cr_assert_eq(mk_stat(a.id[i], "or23"), 1);
    }
    hn_stop_stack(&st);
}

/* =========================================================================================
 * 12-13. races and crashes
 * ========================================================================================= */

static void post_job(const char *order, char out[40])
{
    char body[128];
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"carrier\":\"seur\"}", order);
    cJSON *j = api_json("POST", "/v1/jobs/carrier-post", body, 202);
    const cJSON *id = cJSON_GetObjectItem(j, "id");
    cr_assert(cJSON_IsString(id));
    snprintf(out, 40, "%s", id->valuestring);
    cJSON_Delete(j);
}

Test(orders, two_workers_racing_on_one_order_make_one_shipment)
{
    struct opts o = { .workers = 1, .types = "order-fetch" };
    start(&o);
    sim_admin("/admin/seur/faults", "{\"latency_ms\":300}");
    char id[32], f[40], j1[40], j2[40], key[64], j0[UUID_STR_LEN];
    make_order("", id);
    fetch(LONG_AGO, f);
    wait_job(f, "succeeded", WAIT_MS);
    post_job(id, j1);
    post_job(id, j2);
    cr_assert_str_neq(j1, j2);
    add_worker("carrier-post,tracking-event,tracking-push");
    add_worker("carrier-post,tracking-event,tracking-push");
    wait_state(id, "COMPLETE", WAIT_MS);

    /* the fetch's own follow-up raced too: three jobs, one shipment */
    snprintf(key, sizeof(key), "%s:post:0", id);
    derived_id("carrier-post", key, j0);
    wait_job(j0, "succeeded", WAIT_MS);
    wait_job(j1, "succeeded", WAIT_MS);
    wait_job(j2, "succeeded", WAIT_MS);
    cr_assert_eq(ref_stat("seur", id, "creates"), 1, "one shipment");
    cr_assert_eq(sim_stat("seur", "shipments_created"), 1);
    cr_assert_eq(ops_count(id, "action = 'create_shipment' AND to_state = 'POSTED'"), 1);
    cr_assert_eq(mk_stat(id, "or23"), 1);
    hn_stop_stack(&st);
}

Test(orders, worker_killed_mid_post_still_one_shipment_per_order)
{
    static const char *const wenv[] = { WORKER_ENV_BASE, "CONVEYOR_VISIBILITY_TIMEOUT_MS=2000",
                                        NULL };
    struct opts o = { .workers = 1, .worker_env = wenv };
    start(&o);
    sim_admin("/admin/seur/faults", "{\"latency_ms\":300}");
    struct ids a;
    generate(10, 41, &a);
    fetch(LONG_AGO, NULL);
    /* the token call and at least two creates have reached SEUR: kill while they wait */
    struct stat_wait sw = { "seur", "calls", 3 };
    cr_assert(hn_wait_until(stat_reached, &sw, 20000, 5), "no SEUR calls");
    hn_kill9(st.workers[0]);
    long long pending = sql_count("SELECT count(*) FROM orders WHERE internal_state = "
                                  "'PENDING_POST'");
    cr_assert(pending > 0, "every order was posted before the kill: not mid-post");

    add_worker(NULL);
    wait_all(&a, "COMPLETE", WAIT_MS);
    cr_assert_eq(sim_stat("seur", "shipments_created"), a.n);
    for (int i = 0; i < a.n; i++) {
        cr_assert_eq(ref_stat("seur", a.id[i], "creates"), 1, "%s: two shipments", a.id[i]);
        cr_assert_eq(ops_count(a.id[i], "action = 'create_shipment' AND to_state = 'POSTED'"),
                     1);
        cr_assert_eq(mk_stat(a.id[i], "or24"), 1);
    }
    hn_stop_stack(&st);
}

/* =========================================================================================
 * 14. CSV export
 * ========================================================================================= */

/* An RFC 4180 parser: rows of fields, CRLF (or LF) line ends, quoted fields with "" for a
 * quote and line breaks inside. Fields are malloc'd; rows end with a NULL field. */
#define CSV_MAX_ROWS 3000
#define CSV_MAX_COLS 32

struct csv {
    int nrows;
    int ncols[CSV_MAX_ROWS];
    char *f[CSV_MAX_ROWS][CSV_MAX_COLS];
};

static void csv_parse(const char *s, size_t len, struct csv *c)
{
    memset(c, 0, sizeof(*c));
    size_t i = 0;
    while (i < len) {
        cr_assert(c->nrows < CSV_MAX_ROWS, "too many CSV rows");
        int row = c->nrows++;
        for (;;) {
            char *buf = calloc(1, len + 1);
            size_t o = 0;
            if (i < len && s[i] == '"') {
                i++;
                for (;;) {
                    cr_assert(i < len, "an unterminated quoted field");
                    if (s[i] == '"') {
                        if (i + 1 < len && s[i + 1] == '"') {
                            buf[o++] = '"';
                            i += 2;
                            continue;
                        }
                        i++;
                        break;
                    }
                    buf[o++] = s[i++];
                }
                cr_assert(i >= len || s[i] == ',' || s[i] == '\r' || s[i] == '\n',
                          "text after a closing quote at %zu", i);
            } else {
                while (i < len && s[i] != ',' && s[i] != '\r' && s[i] != '\n') {
                    cr_assert(s[i] != '"', "a quote inside an unquoted field at %zu", i);
                    buf[o++] = s[i++];
                }
            }
            cr_assert(c->ncols[row] < CSV_MAX_COLS);
            c->f[row][c->ncols[row]++] = realloc(buf, o + 1);   /* keep only what it holds */
            if (i < len && s[i] == ',') {
                i++;
                continue;
            }
            if (i < len && s[i] == '\r')
                i++;
            cr_assert(i >= len || s[i] == '\n', "a bare CR at %zu", i);
            i++;
            break;
        }
    }
}

static void csv_free(struct csv *c)
{
    for (int r = 0; r < c->nrows; r++)
        for (int k = 0; k < c->ncols[r]; k++)
            free(c->f[r][k]);
}

/* The JSON value as the CSV writes PostgreSQL's text: null -> "", booleans t/f. */
static void json_as_text(const cJSON *v, char *out, size_t cap)
{
    if (!v || cJSON_IsNull(v))
        snprintf(out, cap, "%s", "");
    else if (cJSON_IsBool(v))
        snprintf(out, cap, "%s", cJSON_IsTrue(v) ? "t" : "f");
    else if (cJSON_IsString(v))
        snprintf(out, cap, "%s", v->valuestring);
    else
        snprintf(out, cap, "%.17g", v->valuedouble);
}

static int same_value(const char *csv, const char *json, const cJSON *v)
{
    if (cJSON_IsNumber(v))
        return csv[0] && strtod(csv, NULL) == v->valuedouble;
    if (cJSON_IsBool(v))
        return strcmp(csv, json) == 0 || strcmp(csv, cJSON_IsTrue(v) ? "true" : "false") == 0;
    return strcmp(csv, json) == 0;
}

Test(orders, csv_export_parses_back_to_the_orders_view)
{
    start(NULL);
    sim_admin("/admin/seur/faults", "{\"fail_keys\":[\"99999\"]}");
    struct ids a;
    char bad[32];
    generate(4, 51, &a);
    make_order(",\"zip_code\":\"99999\"", bad);
    fetch(LONG_AGO, NULL);
    wait_all(&a, "COMPLETE", WAIT_MS);
    wait_state(bad, "FAILED_POST", WAIT_MS);
    /* a value with every character RFC 4180 must quote */
    hn_psql_exec(q("UPDATE orders SET last_error = 'said \"no\", then' || chr(13) || chr(10) || "
                   "'a second line' WHERE order_id = '%s'", bad));

    struct hn_resp *r = api("GET", "/api/v1/logs/exports/orders-view.csv", NULL);
    cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
    char *ct = hn_resp_header(r, "Content-Type");
    cr_assert(ct && strncmp(ct, "text/csv", 8) == 0, "Content-Type %s", ct ? ct : "(none)");
    free(ct);
    struct csv *cp = calloc(1, sizeof(*cp));   /* large: on the heap */
#define c (*cp)
    csv_parse(r->body, r->len, &c);
    hn_resp_free(r);
    cJSON *view = api_json("GET", "/api/v1/logs/orders-view?limit=1000", NULL, 200);
    cJSON *orders = cJSON_GetObjectItem(view, "orders");

    cr_assert_eq(c.nrows - 1, cJSON_GetArraySize(orders), "CSV rows %d, view rows %d",
                 c.nrows - 1, cJSON_GetArraySize(orders));
    cr_assert_eq(c.nrows - 1, a.n + 1);
    int idcol = -1, quoted_seen = 0;
    for (int k = 0; k < c.ncols[0]; k++)
        if (strcmp(c.f[0][k], "order_id") == 0)
            idcol = k;
    cr_assert(idcol >= 0, "no order_id column");
    for (int row = 1; row < c.nrows; row++) {
        cr_assert_eq(c.ncols[row], c.ncols[0], "row %d has %d fields", row, c.ncols[row]);
        const cJSON *match = NULL, *it;
        cJSON_ArrayForEach(it, orders)
        {
            if (strcmp(cJSON_GetObjectItem(it, "order_id")->valuestring, c.f[row][idcol]) == 0)
                match = it;
        }
        cr_assert_not_null(match, "CSV order %s is not in the view", c.f[row][idcol]);
        for (int k = 0; k < c.ncols[0]; k++) {
            const cJSON *v = cJSON_GetObjectItem(match, c.f[0][k]);
            cr_assert(v != NULL, "the view has no column %s", c.f[0][k]);
            char text[1024];
            json_as_text(v, text, sizeof(text));
            cr_assert(same_value(c.f[row][k], text, v), "%s.%s: CSV '%s', view '%s'",
                      c.f[row][idcol], c.f[0][k], c.f[row][k], text);
        }
        for (int k = 0; k < c.ncols[row]; k++)
            quoted_seen |= strstr(c.f[row][k], "\"no\", then\r\na second") != NULL;
    }
    cr_assert(quoted_seen, "the quoted value did not come back whole");
    cJSON_Delete(view);
    csv_free(&c);
#undef c
    free(cp);
    hn_stop_stack(&st);
}

/* The export streams page after page (1000 rows a query): 2,500 orders come
 * back whole, each once, in one chunked reply, and the state filter holds. */
Test(orders, csv_export_streams_every_page)
{
    start(NULL);
    hn_psql_exec("INSERT INTO orders (order_id, internal_state, country, weight_kg)"
                 " SELECT 'BULK-' || lpad(g::text, 5, '0'),"
                 "        CASE WHEN g % 5 = 0 THEN 'COMPLETE' ELSE 'PENDING_POST' END, 'ES', 1.5"
                 "   FROM generate_series(1, 2500) g");
    struct hn_resp *r = api("GET", "/api/v1/logs/exports/orders-view.csv", NULL);
    cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
    char *te = hn_resp_header(r, "Transfer-Encoding");
    cr_assert(te && strcasecmp(te, "chunked") == 0, "Transfer-Encoding %s", te ? te : "(none)");
    free(te);
    struct csv *cp = calloc(1, sizeof(*cp));   /* large: on the heap */
#define c (*cp)
    csv_parse(r->body, r->len, &c);
    hn_resp_free(r);
    cr_assert_eq(c.nrows - 1, 2500, "rows %d", c.nrows - 1);
    int seen_first = 0, seen_last = 0;
    for (int row = 1; row < c.nrows; row++) {
        cr_assert_eq(c.ncols[row], c.ncols[0], "row %d has %d fields", row, c.ncols[row]);
        seen_first += strcmp(c.f[row][0], "BULK-00001") == 0;
        seen_last += strcmp(c.f[row][0], "BULK-02500") == 0;
    }
    cr_assert_eq(seen_first, 1);
    cr_assert_eq(seen_last, 1);
    csv_free(&c);
    r = api("GET", "/api/v1/logs/exports/orders-view.csv?state=COMPLETE", NULL);
    cr_assert_eq(r->status, 200);
    csv_parse(r->body, r->len, &c);
    hn_resp_free(r);
    cr_assert_eq(c.nrows - 1, 500, "COMPLETE rows %d", c.nrows - 1);
    csv_free(&c);
#undef c
    free(cp);
    hn_stop_stack(&st);
}

/* OR23's success is remembered on the order (mirakl_tracking_updated, the state
 * stays TRACKED) before OR24 is called: a push that stopped between them
 * (Mirakl's budget spent, a crash) goes on with OR24 alone, so a tight budget is
 * never spent on OR23 again and again. */
Test(orders, a_push_that_stopped_after_or23_goes_on_with_or24_alone)
{
    char id[32];
    start_tracked_without_push(id);
    /* what an earlier push did before it stopped: OR23 at Mirakl, MIRAKL_OK here */
    char url[256];
    snprintf(url, sizeof(url), "%s/mirakl/api/orders/%s/tracking", st.sim_url, id);
    const char *const hdr[] = { "Authorization: mirakl-demo-shop-key-0001", NULL };
    const char *body = "{\"carrier_code\":\"seur\",\"carrier_name\":\"SEUR\","
                       "\"carrier_url\":\"\",\"tracking_number\":\"T1\"}";
    struct hn_resp *r = hn_http("PUT", url, hdr, body, strlen(body), 5000);
    cr_assert_eq(r->status, 204, "%d %s", r->status, r->body);
    hn_resp_free(r);
    hn_psql_exec(q("SELECT cv_order_mark_tracking_pushed('%s', NULL, NULL, NULL)", id));
    cr_assert_eq(mk_stat(id, "or23"), 1);
    add_worker("tracking-push");   /* takes the follow-up the TRACKED event enqueued */
    wait_state(id, "COMPLETE", WAIT_MS);
    cr_assert_eq(mk_stat(id, "or23"), 1, "no second OR23");
    cr_assert_eq(mk_stat(id, "or24"), 1);
    cr_assert_eq(ops_count(id, "action = 'ship' AND to_state = 'COMPLETE'"), 1);
    cr_assert_eq(ops_count(id, "from_state = 'TRACKED' AND to_state = 'MIRAKL_OK'"), 1);
    hn_stop_stack(&st);
}

/* A push that runs out of attempts while it cannot even look the order up ends
 * FAILED_PUSH with its job, never TRACKED under a dead job (found by the chaos
 * kit); no OR24 was sent blindly. */
Test(orders, a_push_that_cannot_look_up_ends_failed_push_on_its_last_attempt)
{
    char id[32];
    start_tracked_without_push(id);
    hn_psql_exec(q("SELECT cv_order_mark_tracking_pushed('%s', NULL, NULL, NULL)", id));
    sim_admin("/admin/mirakl/faults", "{\"error_rate\":1,\"error_status\":503}");
    add_worker("tracking-push");
    wait_state(id, "FAILED_PUSH", WAIT_MS);
    cr_assert_eq(mk_stat(id, "or24"), 0, "no OR24 sent blindly");
    cr_assert_eq(ops_count(id, "to_state = 'FAILED_PUSH' AND message LIKE '%OR11%'"), 1);
    hn_stop_stack(&st);
}
