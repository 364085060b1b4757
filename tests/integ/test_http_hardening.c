/* conveyor-api tried from outside the way a careless or hostile client would
 * (issue 5, "who may see and do what", and the publish whose outcome is
 * unknown): scopes on every route, idempotency per producer, one parser for
 * query options, HTTP framing checked on the raw bytes, slow and idle
 * connections, the connection cap, cheap /metrics. Real sockets, real Redis,
 * PostgreSQL and workers; no fixed sleeps. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "cfg.h"
#include "clock.h"
#include "harness.h"
#include "rds.h"

/* ==== keys ================================================================== */

/* test-all (*) and test-noop (noop) as hn_start_stack installs them, plus two
 * tenants that may both submit activations and an operator-only key. */
#define KEY_A "Authorization: Bearer tenant-a-secret"
#define KEY_B "Authorization: Bearer tenant-b-secret"
#define KEY_OPS "Authorization: Bearer ops-secret"

static char keys_env[1024];

static const char *const *api_env(const char *const *extra)
{
    static const char *env[16];
    char all[65], noop[65], a[65], b[65], ops[65];
    hn_sha256_hex(hn_test_key(), all);
    hn_sha256_hex(hn_test_key_scoped(), noop);
    hn_sha256_hex("tenant-a-secret", a);
    hn_sha256_hex("tenant-b-secret", b);
    hn_sha256_hex("ops-secret", ops);
    snprintf(keys_env, sizeof(keys_env),
             "CONVEYOR_API_KEYS=test-all:%s:*,test-noop:%s:noop,tenant-a:%s:activation|noop,"
             "tenant-b:%s:activation|noop,ops:%s:operator",
             all, noop, a, b, ops);
    int n = 0;
    env[n++] = keys_env;
    for (int i = 0; extra && extra[i] && n < 15; i++)
        env[n++] = extra[i];
    env[n] = NULL;
    return env;
}

static const char *const fast_env[] = { HN_FAST_ENV, NULL };

static void setup(void)
{
    hn_flush_redis();
    hn_reset_db();
}

static void teardown(void);

TestSuite(http_hardening, .init = setup, .fini = teardown, .timeout = 120);

/* ==== small HTTP helpers ========================================================= */

static struct hn_resp *call(struct hn_stack *st, const char *method, const char *path,
                            const char *key, const char *body, const char *extra_header)
{
    char url[1024];
    const char *h[4];
    int n = 0;
    snprintf(url, sizeof(url), "%s%s", st->api_url, path);
    if (key)
        h[n++] = key;
    if (extra_header)
        h[n++] = extra_header;
    h[n] = NULL;
    return hn_http(method, url, h, body, body ? strlen(body) : 0, 15000);
}

static int status_of(struct hn_stack *st, const char *method, const char *path, const char *key,
                     const char *body)
{
    struct hn_resp *r = call(st, method, path, key, body, NULL);
    int s = r->status;
    hn_resp_free(r);
    return s;
}

/* A string member of the JSON reply (or of its "error" object), malloc'd, or NULL. */
static char *member(const struct hn_resp *r, const char *name)
{
    cJSON *j = hn_json(r);
    cJSON *v = cJSON_GetObjectItem(j, name);
    if (!v)
        v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), name);
    char *out = NULL;
    if (cJSON_IsString(v)) {
        out = strdup(v->valuestring);
    } else if (cJSON_IsNumber(v) || cJSON_IsBool(v)) {
        out = malloc(32);
        cr_assert_not_null(out);
        if (cJSON_IsBool(v))
            snprintf(out, 32, "%s", cJSON_IsTrue(v) ? "true" : "false");
        else
            snprintf(out, 32, "%lld", (long long)v->valuedouble);
    }
    cJSON_Delete(j);
    return out;
}

static char *post_id(struct hn_stack *st, const char *path, const char *key, const char *body,
                     const char *header, int want)
{
    struct hn_resp *r = call(st, "POST", path, key, body, header);
    cr_assert_eq(r->status, want, "POST %s: %d %s", path, r->status, r->body);
    char *id = member(r, "id");
    if (!id)
        id = member(r, "transaction_id");
    cr_assert_not_null(id, "no id in %s", r->body);
    hn_resp_free(r);
    return id;
}

static char *sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sqlf(const char *fmt, ...)
{
    static char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    return sql;
}

static long long redis_int(const char *fmt, const char *arg)
{
    struct rds *c = rds_connect(hn_env("CONVEYOR_REDIS_URL"), 2000);
    cr_assert_not_null(c);
    struct rds_reply *x = rds_cmdf(c, fmt, arg);
    cr_assert_not_null(x);
    long long v = rds_reply_type(x) == RDS_INT ? rds_reply_int(x)
                  : rds_reply_str(x, NULL)     ? atoll(rds_reply_str(x, NULL))
                                               : -1;
    rds_reply_free(x);
    rds_free(c);
    return v;
}

/* ==== 1. every route checks a scope ================================================ */

Test(http_hardening, every_route_checks_its_scope)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env(NULL) };
    hn_start_stack(&st, &o);

    /* a noop key reads nobody's money and no operations data (all 200 before) */
    const char *const denied[] = { "/api/v1/accounts/1/", "/api/v1/accounts/1/transactions/",
                                   "/api/v1/activation/status/6f1c0d8e-7b8a-4c1e-9a40-"
                                   "0d0e6a2f3b11/",
                                   "/api/v1/offers/", "/api/v1/offers/1/", "/v1/queues",
                                   "/v1/workers", "/v1/dead" };
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++)
        cr_expect_eq(status_of(&st, "GET", denied[i], HN_AUTH_NOOP, NULL), 403, "noop key: %s",
                     denied[i]);

    /* an operator key sees operations, submits nothing and reads no money */
    cr_expect_eq(status_of(&st, "GET", "/v1/queues", KEY_OPS, NULL), 200);
    cr_expect_eq(status_of(&st, "GET", "/v1/workers", KEY_OPS, NULL), 200);
    cr_expect_eq(status_of(&st, "GET", "/v1/dead", KEY_OPS, NULL), 200);
    cr_expect_eq(status_of(&st, "POST", "/v1/jobs/noop", KEY_OPS, "{}"), 403);
    cr_expect_eq(status_of(&st, "GET", "/api/v1/accounts/1/", KEY_OPS, NULL), 403);

    /* "*" keeps meaning every type and operator; an activation key reads the seed routes */
    cr_expect_eq(status_of(&st, "GET", "/v1/queues", HN_AUTH_ALL, NULL), 200);
    cr_expect_eq(status_of(&st, "GET", "/api/v1/accounts/1/", KEY_A, NULL), 200);
    cr_expect_eq(status_of(&st, "GET", "/v1/queues", KEY_A, NULL), 403);

    /* a job of a type the key may not use is not found, exactly like a missing one */
    char *act = post_id(&st, "/api/v1/activation/", KEY_A, "{\"user_id\":3,\"offer_id\":1}",
                        NULL, 202);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", act);
    struct hn_resp *r = call(&st, "GET", path, HN_AUTH_NOOP, NULL, NULL);
    cr_expect_eq(r->status, 404, "before: 403 told the prober the id exists: %d %s", r->status,
                 r->body);
    char *missing = member(r, "message");
    hn_resp_free(r);
    r = call(&st, "GET", "/v1/jobs/6f1c0d8e-7b8a-4c1e-9a40-0d0e6a2f3b11", HN_AUTH_NOOP, NULL,
             NULL);
    char *absent = member(r, "message");
    cr_expect_str_eq(missing, absent, "same answer for hidden and absent jobs");
    hn_resp_free(r);
    cr_expect_eq(status_of(&st, "GET", path, KEY_A, NULL), 200);
    free(missing);
    free(absent);
    free(act);
    hn_stop_stack(&st);
}

/* ==== 2. idempotency keys are per producer ========================================= */

Test(http_hardening, idempotency_keys_belong_to_their_producer)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env(NULL) };
    hn_start_stack(&st, &o);
    const char *idem = "Idempotency-Key: order-1";
    char *a1 = post_id(&st, "/api/v1/activation/", KEY_A, "{\"user_id\":11,\"offer_id\":1}",
                       idem, 202);
    /* tenant B, same key: its own transaction, enqueued (before: A's id, nothing enqueued) */
    struct hn_resp *r =
        call(&st, "POST", "/api/v1/activation/", KEY_B, "{\"user_id\":12,\"offer_id\":2}", idem);
    cr_assert_eq(r->status, 202, "%s", r->body);
    char *b1 = member(r, "transaction_id"), *bu = member(r, "user_id"),
         *bdup = member(r, "duplicate");
    cr_expect_str_neq(a1, b1, "tenant B must not get tenant A's transaction");
    cr_expect_str_eq(bu, "12");
    cr_expect_null(bdup);
    hn_resp_free(r);
    cr_expect_eq(redis_int("EXISTS cv:job:%s", b1), 1, "B's activation is enqueued");

    /* A repeats with other ids: A's first transaction, with the FIRST request's ids */
    r = call(&st, "POST", "/api/v1/activation/", KEY_A, "{\"user_id\":99,\"offer_id\":3}", idem);
    cr_assert_eq(r->status, 202, "%s", r->body);
    char *a2 = member(r, "transaction_id"), *u = member(r, "user_id"),
         *of = member(r, "offer_id");
    cr_expect_str_eq(a2, a1);
    cr_expect_str_eq(u, "11");
    cr_expect_str_eq(of, "1");
    hn_resp_free(r);
    free(a2);
    free(u);
    free(of);

    /* the transaction hash gone (expired, or never written after an unknown outcome):
     * the ids come from the job's payload, never from the current request (before: 99/3) */
    cr_assert_eq(redis_int("DEL transaction:%s", a1), 1);
    r = call(&st, "POST", "/api/v1/activation/", KEY_A, "{\"user_id\":99,\"offer_id\":3}", idem);
    cr_assert_eq(r->status, 202, "%s", r->body);
    a2 = member(r, "transaction_id");
    u = member(r, "user_id");
    of = member(r, "offer_id");
    cr_expect_str_eq(a2, a1);
    cr_expect_str_eq(u, "11", "%s", r->body);
    cr_expect_str_eq(of, "1", "%s", r->body);
    hn_resp_free(r);
    free(a2);
    free(u);
    free(of);

    /* the same for /v1/jobs: per producer */
    char *n1 = post_id(&st, "/v1/jobs/noop", KEY_A, "{}", "Idempotency-Key: k", 202);
    char *n2 = post_id(&st, "/v1/jobs/noop", KEY_B, "{}", "Idempotency-Key: k", 202);
    char *n3 = post_id(&st, "/v1/jobs/noop", KEY_A, "{}", "Idempotency-Key: k", 202);
    cr_expect_str_neq(n1, n2);
    cr_expect_str_eq(n1, n3);
    free(n1);
    free(n2);
    free(n3);
    free(a1);
    free(b1);
    free(bu);
    hn_stop_stack(&st);
}

/* ==== 3. one parser for query options ============================================== */

Test(http_hardening, activation_query_options_use_the_jobs_parser)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env(NULL) };
    hn_start_stack(&st, &o);
    const char *body = "{\"user_id\":4,\"offer_id\":1}";
    cr_expect_eq(status_of(&st, "POST", "/api/v1/activation/?delay_ms=abc", KEY_A, body), 400,
                 "before: 202");
    cr_expect_eq(status_of(&st, "POST", "/api/v1/activation/?max_attempts=0", KEY_A, body), 400);
    /* honoured, not only parsed: a delayed activation is scheduled */
    char *id = post_id(&st, "/api/v1/activation/?delay_ms=600000&max_attempts=2", KEY_A, body,
                       NULL, 202);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    struct hn_resp *r = call(&st, "GET", path, KEY_A, NULL, NULL);
    char *state = member(r, "status"), *max = member(r, "max_attempts");
    cr_expect_str_eq(state, "scheduled", "%s", r->body);
    cr_expect_str_eq(max, "2", "%s", r->body);
    hn_resp_free(r);
    free(state);
    free(max);
    free(id);
    hn_stop_stack(&st);
}

/* ==== 7. a publish whose outcome is unknown ========================================= */

/* Conveyor-Job-Id names a job: the same producer and type get a duplicate, anybody else
 * a conflict. */
Test(http_hardening, conveyor_job_id_dedups_for_its_producer_and_conflicts_for_others)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env(NULL) };
    hn_start_stack(&st, &o);
    const char *given = "Conveyor-Job-Id: 0B8F3E2A-1C4D-4E5F-8A6B-7C8D9E0F1A2B";
    const char *lower = "0b8f3e2a-1c4d-4e5f-8a6b-7c8d9e0f1a2b";
    char *id = post_id(&st, "/api/v1/activation/", KEY_A, "{\"user_id\":5,\"offer_id\":1}",
                       given, 202);
    cr_expect_str_eq(id, lower, "the given id is the job id");
    struct hn_resp *r =
        call(&st, "POST", "/api/v1/activation/", KEY_A, "{\"user_id\":6,\"offer_id\":2}", given);
    cr_expect_eq(r->status, 202, "%s", r->body);
    char *dup = member(r, "transaction_id"), *u = member(r, "user_id");
    cr_expect_str_eq(dup, lower);
    cr_expect_str_eq(u, "5", "the first request's user, not this one's");
    cr_expect(strstr(r->body, "\"duplicate\":true") != NULL, "%s", r->body);
    hn_resp_free(r);
    cr_expect_eq(status_of(&st, "POST", "/api/v1/activation/", KEY_B,
                           "{\"user_id\":5,\"offer_id\":1}") == 202,
                 1);
    r = call(&st, "POST", "/api/v1/activation/", KEY_B, "{\"user_id\":5,\"offer_id\":1}", given);
    cr_expect_eq(r->status, 409, "another producer: %s", r->body);
    hn_resp_free(r);
    r = call(&st, "POST", "/v1/jobs/noop", KEY_A, "{}", given);
    cr_expect_eq(r->status, 409, "another type: %s", r->body);
    hn_resp_free(r);
    cr_expect_eq(redis_int("XLEN %s", "cv:q:activation"), 2, "A's job once, B's own job once");
    free(dup);
    free(u);
    free(id);
    hn_stop_stack(&st);
}

static pid_t stopped_redis;      /* SIGSTOPped by the test: SIGCONT in every exit path */
static pid_t waker;              /* a child that sends SIGCONT should the test die */

static void redis_cont(void)
{
    if (stopped_redis > 0)
        kill(stopped_redis, SIGCONT);
    stopped_redis = 0;
    if (waker > 0) {
        kill(waker, SIGKILL);
        waitpid(waker, NULL, 0);
    }
    waker = 0;
}

static void teardown(void)
{
    redis_cont();
}

static void redis_stop(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/redis.pid", hn_env("CONVEYOR_TEST_REDIS_DIR"));
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    int pid = 0;
    cr_assert_eq(fscanf(f, "%d", &pid), 1);
    fclose(f);
    /* Should this process die before it resumes Redis (a crash skips .fini), this
     * child does it: Redis must never stay stopped for the tests after this one. */
    waker = fork();
    cr_assert(waker >= 0);
    if (waker == 0) {
        struct timespec ts = { 60, 0 };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        kill(pid, SIGCONT);
        _exit(0);
    }
    stopped_redis = pid;
    cr_assert_eq(kill(pid, SIGSTOP), 0);
}

struct retry_ctx {
    struct hn_stack *st;
    char header[96];
    int status;
    char body[1024];
};

/* The retry the 504 instructs; 503 while the API reconnects to Redis. */
static int retry_lands(void *arg)
{
    struct retry_ctx *c = arg;
    struct hn_resp *r = call(c->st, "POST", "/api/v1/activation/", KEY_A,
                             "{\"user_id\":8,\"offer_id\":2}", c->header);
    c->status = r->status;
    snprintf(c->body, sizeof(c->body), "%s", r->body);
    hn_resp_free(r);
    return c->status != 503;
}

static int txn_settled(void *arg)
{
    char *s = hn_psql_scalar(sqlf("SELECT status FROM transactions WHERE transaction_id='%s'",
                                  (const char *)arg));
    int done = s && (!strcmp(s, "SUCCESS") || !strcmp(s, "FAILED"));
    free(s);
    return done;
}

Test(http_hardening, unknown_publish_outcome_names_the_id_and_the_retry_debits_once,
     .timeout = 90)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation",
                               .worker_env = fast_env, .api_env = api_env(NULL) };
    hn_start_stack(&st, &o);
    long long before = hn_psql_int("SELECT (balance*100)::bigint FROM accounts WHERE user_id=8");
    long long price = hn_psql_int("SELECT (price*100)::bigint FROM offers WHERE id=2");

    redis_stop();
    /* the EVALSHA goes into Redis's socket; Redis does not answer */
    struct hn_resp *r =
        call(&st, "POST", "/api/v1/activation/", KEY_A, "{\"user_id\":8,\"offer_id\":2}", NULL);
    char *code = member(r, "code"), *id = member(r, "id");
    char *hdr = hn_resp_header(r, "Conveyor-Job-Id");
    cr_expect_eq(r->status, 504, "before: 503 'could not enqueue; retry': %d %s", r->status,
                 r->body);
    cr_expect_str_eq(code, "outcome_unknown", "%s", r->body);
    cr_assert_not_null(id, "the reply names the id: %s", r->body);
    cr_assert_not_null(hdr);
    cr_expect_str_eq(hdr, id);
    cr_expect(strstr(r->body, "Conveyor-Job-Id") != NULL, "it says how to retry: %s", r->body);
    hn_resp_free(r);
    redis_cont();

    /* the job the first attempt sent runs when Redis wakes up */
    cr_assert(hn_wait_until(txn_settled, id, 30000, 50), "the first attempt's job ran");

    /* the client retries as instructed: a duplicate, nothing more enqueued */
    struct retry_ctx c = { &st, "", 0, "" };
    snprintf(c.header, sizeof(c.header), "Conveyor-Job-Id: %s", id);
    cr_assert(hn_wait_until(retry_lands, &c, 15000, 100), "the API is back");
    cr_expect_eq(c.status, 202, "%s", c.body);
    cr_expect(strstr(c.body, "\"duplicate\":true") != NULL, "%s", c.body);
    cr_expect(strstr(c.body, id) != NULL, "%s", c.body);

    cr_expect_eq(hn_psql_int(sqlf("SELECT count(*) FROM transactions WHERE user_id=8")), 1,
                 "one transaction row");
    cr_expect_eq(hn_psql_int("SELECT (balance*100)::bigint FROM accounts WHERE user_id=8"),
                 before - price, "one debit");
    free(code);
    free(id);
    free(hdr);
    hn_stop_stack(&st);
}

/* ==== raw sockets ==================================================================== */

static int tcp_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
                 strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = send(fd, s + off, n - off, MSG_NOSIGNAL);
        cr_assert(w > 0, "send: %s", strerror(errno));
        off += (size_t)w;
    }
}

/* Wait up to timeout_ms for bytes; append them to buf. Returns 1 on data, 0 on timeout,
 * -1 when the peer closed (EOF or reset). */
static int read_some(int fd, char *buf, size_t cap, size_t *len, int timeout_ms)
{
    struct pollfd p = { fd, POLLIN, 0 };
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    ssize_t n = recv(fd, buf + *len, cap - 1 - *len, 0);
    if (n <= 0)
        return -1;
    *len += (size_t)n;
    buf[*len] = '\0';
    return 1;
}

/* Read until the peer closes, up to timeout_ms. Returns 1 when it closed. */
static int read_to_close(int fd, char *buf, size_t cap, size_t *len, int timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = end - clock_mono_ms();
        if (left <= 0)
            return 0;
        int rc = read_some(fd, buf, cap, len, (int)left);
        if (rc < 0)
            return 1;
        if (rc == 0)
            return 0;
    }
}

/* The status of the first response in buf, 0 when there is none. */
static int status_in(const char *buf)
{
    int st = 0;
    return sscanf(buf, "HTTP/1.%*d %d", &st) == 1 ? st : 0;
}

/* The number of whole responses (head + Content-Length body) at the start of buf;
 * statuses[] gets their statuses. */
static int whole_responses(const char *buf, size_t len, int statuses[], int max)
{
    int n = 0;
    const char *p = buf;
    while (n < max) {
        const char *eoh = strstr(p, "\r\n\r\n");
        if (!eoh)
            break;
        const char *cl = strcasestr(p, "Content-Length:");
        size_t body = cl && cl < eoh ? (size_t)atol(cl + 15) : 0;
        if ((size_t)(eoh + 4 - buf) + body > len)
            break;
        statuses[n++] = status_in(p);
        p = eoh + 4 + body;
    }
    return n;
}

/* Read until n whole responses are in buf; the status of the last one, 0 on timeout. */
static int read_responses(int fd, char *buf, size_t cap, int n, int timeout_ms)
{
    size_t len = 0;
    int st[8];
    int64_t end = clock_mono_ms() + timeout_ms;
    buf[0] = '\0';
    for (;;) {
        if (whole_responses(buf, len, st, 8) >= n)
            return st[n - 1];
        int64_t left = end - clock_mono_ms();
        if (left <= 0 || read_some(fd, buf, cap, &len, (int)left) <= 0)
            return 0;
    }
}

static int read_response(int fd, char *buf, size_t cap, int timeout_ms)
{
    return read_responses(fd, buf, cap, 1, timeout_ms);
}

/* ==== 4. framing before any handler =================================================== */

struct bad_case {
    const char *name;
    const char *head;                 /* after the request line */
    const char *body;
    int status;
    const char *code;
};

#define ACT_BODY "{\"user_id\":1,\"offer_id\":1,\"note\":\"abcdefgh\"}" /* 44 bytes */

Test(http_hardening, framing_is_checked_before_any_handler)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env(NULL) };
    hn_start_stack(&st, &o);
    cr_assert_eq(strlen(ACT_BODY), 44);
    static const struct bad_case cases[] = {
        { "two Content-Length (RFC 9112 6.3)", "Content-Length: 44\r\nContent-Length: 45\r\n",
          ACT_BODY "x", 400, "invalid" },
        { "the same Content-Length twice", "Content-Length: 44\r\nContent-Length: 44\r\n",
          ACT_BODY, 400, "invalid" },
        { "Content-Length with chunked", "Content-Length: 44\r\nTransfer-Encoding: chunked\r\n",
          "2c\r\n" ACT_BODY "\r\n0\r\n\r\n", 400, "invalid" },
        { "obs-fold", "Content-Length: 44\r\nX-Note: a\r\n folded\r\n", ACT_BODY, 400,
          "invalid" },
        { "Transfer-Encoding gzip", "Transfer-Encoding: gzip\r\n", "", 501, "unsupported" },
        { "space before the colon", "Content-Length : 44\r\n", ACT_BODY, 400, "invalid" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_case *c = &cases[i];
        char req[1024], buf[8192];
        size_t len = 0;
        snprintf(req, sizeof(req),
                 "POST /api/v1/activation/ HTTP/1.1\r\nHost: x\r\n%s\r\n"
                 "Content-Type: application/json\r\n%s\r\n%s",
                 KEY_A, c->head, c->body);
        int fd = tcp_open(st.api_port);
        send_str(fd, req);
        int closed = read_to_close(fd, buf, sizeof(buf), &len, 5000);
        close(fd);
        cr_expect_eq(status_in(buf), c->status, "%s: %s", c->name, buf);
        cr_expect(strstr(buf, c->code) != NULL, "%s: JSON code %s: %s", c->name, c->code, buf);
        cr_expect(strcasestr(buf, "Connection: close") != NULL, "%s: %s", c->name, buf);
        cr_expect(closed, "%s: the connection is closed", c->name);
    }
    cr_expect_eq(redis_int("EXISTS %s", "cv:q:activation"), 0, "nothing was enqueued");
    cr_expect_eq(hn_psql_int("SELECT count(*) FROM transactions"), 0);

    /* what is well framed still works: chunked, and a pipeline */
    int fd = tcp_open(st.api_port);
    char buf[8192], req[1024];
    snprintf(req, sizeof(req),
             "POST /v1/jobs/noop HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Type: application/json\r\n"
             "Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n"
             "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
             KEY_A);
    send_str(fd, req);
    int st2[2] = { 0, 0 };
    cr_expect_eq(read_responses(fd, buf, sizeof(buf), 2, 5000), 200, "pipelined: %s", buf);
    whole_responses(buf, strlen(buf), st2, 2);
    cr_expect_eq(st2[0], 202, "chunked: %s", buf);

    /* a good request then a bad one in one write: the good one is answered, the bad one
     * refused, and it never reaches a handler */
    snprintf(req, sizeof(req),
             "POST /v1/jobs/noop HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Type: application/json\r\n"
             "Content-Length: 2\r\n\r\n{}"
             "POST /v1/jobs/noop HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Type: application/json\r\n"
             "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
             KEY_A, KEY_A);
    send_str(fd, req);
    size_t len = 0;
    buf[0] = '\0';
    cr_expect(read_to_close(fd, buf, sizeof(buf), &len, 5000), "closed after the refusal");
    close(fd);
    cr_expect_eq(status_in(buf), 202, "%s", buf);
    const char *second = strstr(buf + 1, "HTTP/1.1 ");
    cr_expect(second && status_in(second) == 400, "%s", buf);
    cr_expect_eq(redis_int("XLEN %s", "cv:q:noop"), 2, "the chunked job and the good one");
    hn_stop_stack(&st);
}

/* ==== 5. slow and idle connections, and the cap ======================================== */

/* Send s one byte every 200 ms until the server closes the connection (10 s at most), then
 * read what is left into buf. Returns 1 when it closed; *took_ms counts from the first byte. */
static int trickle(int fd, const char *s, char *buf, size_t cap, int64_t *took_ms)
{
    int64_t t0 = clock_mono_ms();
    size_t len = 0, i = 0;
    int closed = 0;
    buf[0] = '\0';
    while (!closed && s[i] && clock_mono_ms() - t0 < 10000) {
        if (send(fd, &s[i++], 1, MSG_NOSIGNAL) != 1)
            break;
        closed = read_some(fd, buf, cap, &len, 200) < 0;
    }
    if (!closed)
        closed = read_to_close(fd, buf, cap, &len, 3000);
    *took_ms = clock_mono_ms() - t0;
    return closed;
}

Test(http_hardening, a_trickled_head_is_cut_at_the_header_deadline)
{
    static const char *const env[] = { "CONVEYOR_HTTP_HEADER_TIMEOUT_MS=1000", NULL };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env(env) };
    hn_start_stack(&st, &o);
    const char *req = "GET /v1/queues HTTP/1.1\r\nHost: localhost\r\n"
                      "Authorization: Bearer ops-secret\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    int fd = tcp_open(st.api_port);
    char buf[4096];
    int64_t took;
    /* one byte every 200 ms: the whole head would take 20 s */
    int closed = trickle(fd, req, buf, sizeof(buf), &took);
    close(fd);
    cr_expect(closed, "closed by the header deadline (before: every byte restarted evhttp's "
                      "30 s timeout)");
    cr_expect(took >= 900 && took < 3000, "closed after %lld ms", (long long)took);
    cr_expect_eq(status_in(buf), 408, "%s", buf);
    cr_expect(strstr(buf, "\"timeout\"") != NULL, "%s", buf);
    hn_stop_stack(&st);
}

Test(http_hardening, a_trickled_body_is_cut_at_the_body_deadline)
{
    static const char *const env[] = { "CONVEYOR_HTTP_BODY_TIMEOUT_MS=1000", NULL };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env(env) };
    hn_start_stack(&st, &o);
    char head[512], buf[4096];
    snprintf(head, sizeof(head),
             "POST /v1/jobs/noop HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Type: application/json\r\n"
             "Content-Length: 60\r\n\r\n",
             KEY_A);
    int fd = tcp_open(st.api_port);
    send_str(fd, head);
    int64_t took;
    int closed = trickle(fd, "                                                          ", buf,
                         sizeof(buf), &took);   /* 58 of the 60 bytes, one by one */
    close(fd);
    cr_expect(closed, "closed by the body deadline");
    cr_expect(took >= 900 && took < 3000, "closed after %lld ms", (long long)took);
    cr_expect_eq(status_in(buf), 408, "%s", buf);
    cr_expect_eq(redis_int("EXISTS %s", "cv:q:noop"), 0, "nothing enqueued");
    hn_stop_stack(&st);
}

Test(http_hardening, an_idle_keepalive_connection_is_closed)
{
    static const char *const env[] = { "CONVEYOR_HTTP_IDLE_TIMEOUT_MS=1000", NULL };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env(env) };
    hn_start_stack(&st, &o);
    char buf[4096];
    int fd = tcp_open(st.api_port);
    send_str(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, buf, sizeof(buf), 5000), 200, "%s", buf);
    /* still usable right away: keep-alive works */
    send_str(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, buf, sizeof(buf), 5000), 200, "%s", buf);
    int64_t t0 = clock_mono_ms();
    size_t len = 0;
    buf[0] = '\0';
    int closed = read_to_close(fd, buf, sizeof(buf), &len, 5000);
    int64_t took = clock_mono_ms() - t0;
    close(fd);
    cr_expect(closed, "closed by the idle deadline (before: held for evhttp's 30 s)");
    cr_expect(took >= 900 && took < 3000, "closed after %lld ms", (long long)took);
    cr_expect_eq(len, 0, "closed without a reply: %s", buf);
    hn_stop_stack(&st);
}

struct health_ctx {
    int port;
    int fd;
};

/* A new keep-alive connection that gets 200 for GET /health (kept open in c->fd). */
static int conn_admitted(void *arg)
{
    struct health_ctx *c = arg;
    char buf[4096];
    int fd = tcp_open(c->port);
    send_str(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    if (read_response(fd, buf, sizeof(buf), 3000) == 200) {
        c->fd = fd;
        return 1;
    }
    close(fd);
    return 0;
}

Test(http_hardening, connections_over_the_cap_are_refused_with_503)
{
    static const char *const env[] = { "CONVEYOR_HTTP_MAX_CONNECTIONS=4", NULL };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env(env) };
    hn_start_stack(&st, &o);
    int held[4];
    for (int i = 0; i < 4; i++) {
        /* the harness's own probes may not be counted out yet: poll */
        struct health_ctx c = { st.api_port, -1 };
        cr_assert(hn_wait_until(conn_admitted, &c, 5000, 50), "connection %d admitted", i + 1);
        held[i] = c.fd;
    }
    char buf[4096];
    size_t len = 0;
    buf[0] = '\0';
    int fd = tcp_open(st.api_port);
    int closed = read_to_close(fd, buf, sizeof(buf), &len, 5000);
    close(fd);
    cr_expect_eq(status_in(buf), 503, "the fifth is refused at once: %s", buf);
    cr_expect(strstr(buf, "\"unavailable\"") != NULL, "%s", buf);
    cr_expect(strcasestr(buf, "Connection: close") != NULL, "%s", buf);
    cr_expect(closed, "and closed");

    /* one leaves: room for another */
    close(held[0]);
    struct health_ctx c = { st.api_port, -1 };
    cr_expect(hn_wait_until(conn_admitted, &c, 5000, 50), "admitted once one left");
    held[0] = c.fd;
    for (int i = 0; i < 4; i++)
        if (held[i] >= 0)
            close(held[i]);

    /* the closes above reach the server's loop a moment later: until then a new
     * connection may still be over the cap, so wait for one to be admitted */
    struct health_ctx m = { st.api_port, -1 };
    cr_assert(hn_wait_until(conn_admitted, &m, 5000, 50), "a connection once all left");
    close(m.fd);
    struct hn_resp *r = NULL;
    for (int tries = 0; tries < 50; tries++) {
        hn_resp_free(r);
        r = call(&st, "GET", "/metrics", NULL, NULL, NULL);
        if (r->status == 200)
            break;
        usleep(100 * 1000);   /* poll (bounded): the counted-out close may still be on its way */
    }
    cr_expect(strstr(r->body, "conveyor_http_connections_closed_total{reason=\"over_capacity\"}") !=
                  NULL,
              "%s", r->body);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

/* ==== 6. /metrics is cheap ============================================================== */

static long long cmd_calls(struct rds *c, const char *cmd)
{
    struct rds_reply *x = rds_cmdf(c, "INFO commandstats");
    cr_assert_not_null(x);
    const char *s = rds_reply_str(x, NULL);
    char key[64];
    snprintf(key, sizeof(key), "cmdstat_%s:calls=", cmd);
    const char *p = s ? strstr(s, key) : NULL;
    long long n = p ? atoll(p + strlen(key)) : 0;
    rds_reply_free(x);
    return n;
}

struct scrape_ctx {
    struct hn_stack *st;
    const char *want;
};

static int scrape_has(void *arg)
{
    struct scrape_ctx *c = arg;
    struct hn_resp *r = call(c->st, "GET", "/metrics", NULL, NULL, NULL);
    int ok = r->status == 200 && strstr(r->body, c->want) != NULL;
    hn_resp_free(r);
    return ok;
}

Test(http_hardening, metrics_scrapes_share_one_cached_redis_read)
{
    static const char *const env[] = { "CONVEYOR_HTTP_METRICS_CACHE_MS=60000",
                                       "CONVEYOR_HTTP_THREADS=2", NULL };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env(env) };
    hn_start_stack(&st, &o);
    struct rds *c = rds_connect(hn_env("CONVEYOR_REDIS_URL"), 2000);
    cr_assert_not_null(c);
    rds_reply_free(rds_cmdf(c, "CONFIG RESETSTAT"));
    for (int i = 0; i < 40; i++) {
        struct hn_resp *r = call(&st, "GET", "/metrics", NULL, NULL, NULL);
        cr_assert_eq(r->status, 200);
        cr_assert(strstr(r->body, "conveyor_http_requests_total") != NULL);
        hn_resp_free(r);
    }
    /* one read per loop at most (2 loops), not one per scrape (before: 40 each): the
     * counters, the queues and the workers, three scripts per read */
    long long scripts = cmd_calls(c, "evalsha") + cmd_calls(c, "eval");
    long long hgetall = cmd_calls(c, "hgetall");
    cr_expect(scripts <= 6, "counter, queue and worker scripts for 40 scrapes: %lld", scripts);
    /* per read: the two histograms, the held money, the rate waits, and each configured
     * upstream's breaker and last call (at most CFG_UPS_N upstreams) */
    cr_expect(hgetall <= 2 * (4 + 2 * CFG_UPS_N),
              "histogram, held-money and upstream reads for 40 scrapes: %lld", hgetall);
    rds_free(c);
    hn_stop_stack(&st);
}

Test(http_hardening, metrics_cache_is_refreshed_after_its_period)
{
    static const char *const env[] = { "CONVEYOR_HTTP_METRICS_CACHE_MS=300", NULL };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .api_env = api_env(env) };
    hn_start_stack(&st, &o);
    struct hn_resp *r = call(&st, "GET", "/metrics", NULL, NULL, NULL);
    cr_assert_eq(r->status, 200);
    hn_resp_free(r);
    char *id = post_id(&st, "/v1/jobs/noop", KEY_A, "{}", NULL, 202);
    struct scrape_ctx sc = { &st, "conveyor_jobs_total{type=\"noop\",outcome=\"enqueued\"} 1" };
    cr_expect(hn_wait_until(scrape_has, &sc, 5000, 50), "the cached counters catch up");
    free(id);
    hn_stop_stack(&st);
}
