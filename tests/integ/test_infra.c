/* test_infra.c - the infrastructure links fail in bounded time and recover (issue 5):
 *
 *   db_timeout   a PostgreSQL that accepts TCP and never answers (a listening socket
 *                nobody accepts on, or a proxy in front of the test server that goes
 *                silent) bounds db_connect/db_exec; a stopping worker gives up a blocked
 *                statement after its grace period instead of hanging.
 *   noscript     after SCRIPT FLUSH the API's async EVALSHAs fall back to EVAL.
 *   worker_args  conveyor-worker refuses duplicate types and fewer slots than types.
 *
 * The shared test PostgreSQL is never stopped or paused: silence comes from the proxy. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "db.h"
#include "harness.h"
#include "rds.h"

/* ---- a TCP proxy to the test PostgreSQL that can go silent ------------------------- */

#define PROXY_MAX_PAIRS 32

struct proxy {
    int lfd;
    int port;                   /* where the proxy listens */
    int upstream_port;          /* the test PostgreSQL */
    atomic_int silent;          /* 1: accept, but neither read nor forward anything */
    atomic_int stop;
    pthread_t th;
    int cfd[PROXY_MAX_PAIRS];   /* client side, -1 when free */
    int ufd[PROXY_MAX_PAIRS];   /* upstream side, -1 for a client accepted while silent */
};

/* A socket listening on 127.0.0.1 on a port the kernel picked; *port gets it. The
 * kernel completes handshakes on its own (backlog), so a connect succeeds even though
 * nobody ever calls accept(). */
static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind: %s", strerror(errno));
    cr_assert(listen(fd, 64) == 0);
    socklen_t len = sizeof(a);
    cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static int connect_local(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void pair_close(struct proxy *p, int i)
{
    if (p->cfd[i] >= 0)
        close(p->cfd[i]);
    if (p->ufd[i] >= 0)
        close(p->ufd[i]);
    p->cfd[i] = p->ufd[i] = -1;
}

/* Copy what is readable on from to to; 0 when the pair is finished. */
static int pump(int from, int to)
{
    char buf[16384];
    ssize_t n = read(from, buf, sizeof(buf));
    if (n <= 0)
        return 0;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0)
            return 0;
        off += w;
    }
    return 1;
}

static void *proxy_main(void *arg)
{
    struct proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pfd[1 + 2 * PROXY_MAX_PAIRS];
        int who[1 + 2 * PROXY_MAX_PAIRS];
        int n = 0;
        pfd[n] = (struct pollfd){ .fd = p->lfd, .events = POLLIN };
        who[n++] = -1;
        int silent = atomic_load(&p->silent);
        for (int i = 0; i < PROXY_MAX_PAIRS && !silent; i++) {
            if (p->cfd[i] < 0 || p->ufd[i] < 0)
                continue;
            pfd[n] = (struct pollfd){ .fd = p->cfd[i], .events = POLLIN };
            who[n++] = i;
            pfd[n] = (struct pollfd){ .fd = p->ufd[i], .events = POLLIN };
            who[n++] = i;
        }
        if (poll(pfd, (nfds_t)n, 20) <= 0)
            continue;
        if (atomic_load(&p->silent) != silent)
            continue;   /* went silent while polling: forward nothing more */
        for (int k = 1; k < n; k++) {
            int i = who[k];
            if (!pfd[k].revents || p->cfd[i] < 0)
                continue;
            int from = pfd[k].fd, to = from == p->cfd[i] ? p->ufd[i] : p->cfd[i];
            if (!pump(from, to))
                pair_close(p, i);
        }
        if (pfd[0].revents & POLLIN) {
            int c = accept(p->lfd, NULL, NULL);
            int slot = -1;
            for (int i = 0; i < PROXY_MAX_PAIRS && slot < 0; i++)
                if (p->cfd[i] < 0)
                    slot = i;
            if (c < 0 || slot < 0) {
                if (c >= 0)
                    close(c);
                continue;
            }
            p->cfd[slot] = c;
            p->ufd[slot] = silent ? -1 : connect_local(p->upstream_port);
        }
    }
    for (int i = 0; i < PROXY_MAX_PAIRS; i++)
        pair_close(p, i);
    close(p->lfd);
    return NULL;
}

/* The port of CONVEYOR_PG_DSN (postgresql://user@127.0.0.1:PORT/db). */
static int pg_port(void)
{
    const char *dsn = hn_env("CONVEYOR_PG_DSN");
    const char *at = strstr(dsn, "127.0.0.1:");
    cr_assert(at, "CONVEYOR_PG_DSN is not on 127.0.0.1: %s", dsn);
    return atoi(at + strlen("127.0.0.1:"));
}

static void dsn_for_port(char *out, size_t cap, int port)
{
    snprintf(out, cap, "postgresql://postgres@127.0.0.1:%d/conveyor", port);
}

static void proxy_start(struct proxy *p)
{
    memset(p, 0, sizeof(*p));
    for (int i = 0; i < PROXY_MAX_PAIRS; i++)
        p->cfd[i] = p->ufd[i] = -1;
    p->upstream_port = pg_port();
    p->lfd = listen_any(&p->port);
    cr_assert(pthread_create(&p->th, NULL, proxy_main, p) == 0);
}

static void proxy_stop(struct proxy *p)
{
    atomic_store(&p->stop, 1);
    pthread_join(p->th, NULL);
}

/* Start p and connect through it (2 s to connect, stmt_timeout_ms per statement). */
static struct db *db_via_proxy(struct proxy *p, int stmt_timeout_ms)
{
    proxy_start(p);
    char dsn[128];
    dsn_for_port(dsn, sizeof(dsn), p->port);
    struct db *d = db_connect_timeout(dsn, 2000, stmt_timeout_ms);
    cr_assert_not_null(d, "cannot connect through the proxy");
    return d;
}

/* ---- jobs through the API ------------------------------------------------------------ */

/* POST body to path on the stack's API, expect 202 and put the job's GET url in out.
 * id_field names the id in the reply ("id" for /v1/jobs, "transaction_id" for an
 * activation, which is also its job id). */
static void post_job(const struct hn_stack *st, const char *path, const char *body,
                     const char *id_field, char *out, size_t cap)
{
    char url[160];
    snprintf(url, sizeof(url), "%s%s", st->api_url, path);
    const char *const all[] = { HN_AUTH_ALL, NULL };
    struct hn_resp *r = hn_http("POST", url, all, body, strlen(body), 5000);
    cr_assert_eq(r->status, 202, "POST %s: %d %s", url, r->status, r->body);
    cJSON *j = hn_json(r);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, id_field);
    cr_assert(cJSON_IsString(id), "no %s in %s", id_field, r->body);
    snprintf(out, cap, "%s/v1/jobs/%s", st->api_url, id->valuestring);
    cJSON_Delete(j);
    hn_resp_free(r);
}

static void post_noop(const struct hn_stack *st, char *out, size_t cap)
{
    post_job(st, "/v1/jobs/noop", "{}", "id", out, cap);
}

static void post_activation(const struct hn_stack *st, char *out, size_t cap)
{
    post_job(st, "/api/v1/activation/", "{\"user_id\":7,\"offer_id\":2}", "transaction_id",
             out, cap);
}

/* 1 when GET url (a job) answers 200 with "status":"<want>". */
static int job_is(const char *url, const char *want)
{
    char needle[48];
    snprintf(needle, sizeof(needle), "\"status\":\"%s\"", want);
    const char *const all[] = { HN_AUTH_ALL, NULL };
    struct hn_resp *r = hn_http("GET", url, all, NULL, 0, 2000);
    int yes = r->status == 200 && strstr(r->body, needle) != NULL;
    hn_resp_free(r);
    return yes;
}

static int job_running(void *url)
{
    return job_is(url, "running");
}

static int job_succeeded(void *url)
{
    return job_is(url, "succeeded");
}

/* ---- db_timeout ---------------------------------------------------------------------- */

TestSuite(db_timeout, .timeout = 60);

/* Before the fix db_connect had no bound: against a server that never answers the
 * startup packet it waited for good (this test then hits its Criterion timeout). */
Test(db_timeout, connect_to_a_silent_server_gives_up_within_the_default)
{
    int port, lfd = listen_any(&port);
    char dsn[128];
    dsn_for_port(dsn, sizeof(dsn), port);
    int64_t t0 = clock_mono_ms();
    struct db *d = db_connect(dsn);
    int64_t took = clock_mono_ms() - t0;
    cr_assert_null(d, "connected to a server that never answers");
    cr_assert(took >= DB_CONNECT_TIMEOUT_MS - 100 && took < DB_CONNECT_TIMEOUT_MS + 2000,
              "gave up after %lld ms, want about %d", (long long)took, DB_CONNECT_TIMEOUT_MS);
    close(lfd);
}

Test(db_timeout, connect_timeout_is_a_parameter)
{
    int port, lfd = listen_any(&port);
    char dsn[128];
    dsn_for_port(dsn, sizeof(dsn), port);
    int64_t t0 = clock_mono_ms();
    struct db *d = db_connect_timeout(dsn, 300, 1000);
    int64_t took = clock_mono_ms() - t0;
    cr_assert_null(d);
    cr_assert(took >= 250 && took < 1500, "gave up after %lld ms, want about 300",
              (long long)took);
    close(lfd);
}

/* A link that goes silent mid-session: the statement fails with CV_ERR_IO at its
 * deadline, and once the server answers again the next statement reconnects. */
Test(db_timeout, statement_on_a_silent_link_fails_at_its_deadline_then_reconnects)
{
    struct proxy p;
    struct db *d = db_via_proxy(&p, 700);
    cr_assert_eq(db_run(d, "SELECT 1", 0, NULL), CV_OK);

    atomic_store(&p.silent, 1);
    enum cv_rc rc;
    int64_t t0 = clock_mono_ms();
    struct db_res *r = db_exec(d, "SELECT 1", 0, NULL, &rc);
    int64_t took = clock_mono_ms() - t0;
    cr_assert_null(r);
    cr_assert_eq(rc, CV_ERR_IO, "rc %s", cv_rc_str(rc));
    cr_assert(took >= 650 && took < 2000, "gave up after %lld ms, want about 700",
              (long long)took);
    cr_assert(strstr(db_last_error(d), "timed out") != NULL, "last error: %s",
              db_last_error(d));

    atomic_store(&p.silent, 0);
    r = db_exec(d, "SELECT 41 + 1", 0, NULL, &rc);
    cr_assert_eq(rc, CV_OK, "after the link came back: %s", db_last_error(d));
    cr_assert_str_eq(db_res_get(r, 0, 0), "42");
    db_res_free(r);
    db_free(d);
    proxy_stop(&p);
}

/* The same deadline holds for a server that is alive but slow. */
Test(db_timeout, slow_statement_fails_at_its_deadline)
{
    struct db *d = db_connect_timeout(hn_env("CONVEYOR_PG_DSN"), 2000, 300);
    cr_assert_not_null(d);
    int64_t t0 = clock_mono_ms();
    cr_assert_eq(db_run(d, "SELECT pg_sleep(2)", 0, NULL), CV_ERR_IO);
    int64_t took = clock_mono_ms() - t0;
    cr_assert(took >= 250 && took < 1500, "gave up after %lld ms, want about 300",
              (long long)took);
    cr_assert_eq(db_run(d, "SELECT 1", 0, NULL), CV_OK, "no reconnect: %s", db_last_error(d));
    db_free(d);
}

static int64_t abort_at_ms;
static int abort_asks;

static int abort_after(void *arg)
{
    (void)arg;
    abort_asks++;
    return clock_mono_ms() >= abort_at_ms;
}

/* should_abort ends a blocked wait long before the deadline, and it is not asked at all
 * while the server answers. */
Test(db_timeout, abort_ends_a_blocked_statement_early)
{
    struct proxy p;
    struct db *d = db_via_proxy(&p, 20000);
    abort_at_ms = 0;            /* "stop now", but only a silent wait should care */
    db_set_abort(d, abort_after, NULL);
    cr_assert_eq(db_run(d, "SELECT 1", 0, NULL), CV_OK);
    cr_assert_eq(abort_asks, 0, "asked %d times while the server answered", abort_asks);

    atomic_store(&p.silent, 1);
    abort_at_ms = clock_mono_ms() + 300;
    int64_t t0 = clock_mono_ms();
    cr_assert_eq(db_run(d, "SELECT 1", 0, NULL), CV_ERR_IO);
    int64_t took = clock_mono_ms() - t0;
    cr_assert(took >= 250 && took < 1500, "gave up after %lld ms, want about 300",
              (long long)took);
    cr_assert(strstr(db_last_error(d), "stopping") != NULL, "last error: %s",
              db_last_error(d));
    db_free(d);
    proxy_stop(&p);
}

static int worker_started(void *arg)
{
    return hn_log_has(arg, "evt=worker.started");
}

/* A worker whose PostgreSQL goes silent in the middle of an activation stops on SIGTERM
 * within its grace period (1 s here), leaving the job pending for another worker. Before
 * the fix it ignored SIGTERM for good and had to be SIGKILLed. */
Test(db_timeout, worker_stops_while_postgres_is_silent)
{
    hn_flush_redis();
    hn_reset_db();
    struct proxy p;
    proxy_start(&p);
    char dsn[128], dsn_env[160];
    dsn_for_port(dsn, sizeof(dsn), p.port);
    snprintf(dsn_env, sizeof(dsn_env), "CONVEYOR_PG_DSN=%s", dsn);
    const char *const wenv[] = { dsn_env, "CONVEYOR_GRACE_MS=1000", NULL };
    struct hn_stack st;
    struct hn_stack_opts opts = { .workers = 1, .worker_types = "activation",
                                  .worker_env = wenv };
    hn_start_stack(&st, &opts);
    cr_assert(hn_wait_until(worker_started, st.workers[0], 15000, 20),
              "the worker never started");

    atomic_store(&p.silent, 1);
    char url[160];
    post_activation(&st, url, sizeof(url));
    cr_assert(hn_wait_until(job_running, url, 10000, 20), "the worker never took the job");

    int64_t t0 = clock_mono_ms();
    int status = hn_stop(st.workers[0], SIGTERM, 8000);
    int64_t took = clock_mono_ms() - t0;
    if (status != 0)
        hn_log_tail(st.workers[0], 40);
    cr_assert_eq(status, 0, "worker exit status %d after %lld ms", status, (long long)took);
    cr_assert_lt(took, 6000, "the worker took %lld ms to stop", (long long)took);
    cr_assert(hn_log_has(st.workers[0], "evt=db.aborted"), "no db.aborted line");
    cr_assert(!hn_log_has_sanitizer_report(st.workers[0]));
    hn_stop_stack(&st);
    proxy_stop(&p);
}

/* ---- noscript -------------------------------------------------------------------------- */

TestSuite(noscript, .timeout = 90);

static void script_flush(void)
{
    struct rds *r = rds_connect(hn_env("CONVEYOR_REDIS_URL"), 2000);
    cr_assert_not_null(r);
    struct rds_reply *x = rds_cmdf(r, "SCRIPT FLUSH");
    cr_assert(x && rds_reply_type(x) == RDS_STATUS, "SCRIPT FLUSH failed");
    rds_reply_free(x);
    rds_free(r);
}

static void get_ok(const struct hn_stack *st, const char *path)
{
    char url[160];
    snprintf(url, sizeof(url), "%s%s", st->api_url, path);
    const char *const all[] = { HN_AUTH_ALL, NULL };
    struct hn_resp *r = hn_http("GET", url, all, NULL, 0, 5000);
    cr_assert_eq(r->status, 200, "GET %s: %d %s", url, r->status, r->body);
    hn_resp_free(r);
}

/* Before the fix every async EVALSHA after SCRIPT FLUSH answered 503 until the API was
 * restarted. Twice: the cache is emptied again once it was refilled. */
Test(noscript, api_recovers_after_script_flush)
{
    hn_flush_redis();
    struct hn_stack st;
    struct hn_stack_opts opts = { .workers = 1, .worker_types = "noop" };
    hn_start_stack(&st, &opts);
    char job[160];
    post_noop(&st, job, sizeof(job));
    cr_assert(hn_wait_until(job_succeeded, job, 10000, 20), "first job never succeeded");
    get_ok(&st, "/v1/queues");

    for (int round = 0; round < 2; round++) {
        script_flush();
        post_noop(&st, job, sizeof(job));
        get_ok(&st, "/v1/queues");
        get_ok(&st, "/v1/dead");
        cr_assert(hn_wait_until(job_succeeded, job, 10000, 20),
                  "job posted after SCRIPT FLUSH never succeeded (round %d)", round);
    }
    cr_assert(hn_log_has(st.api, "evt=redis.noscript"), "the API never fell back to EVAL");
    hn_stop_stack(&st);
}

/* ---- worker_args ------------------------------------------------------------------------ */

TestSuite(worker_args, .timeout = 60);

/* Spawn conveyor-worker with argv and expect it to exit 2 at once, saying why. Before
 * the fix it started and ran (and with fewer slots than types, overflowed its batch). */
static void expect_refused(const char *const argv[], const char *why)
{
    struct hn_proc *p = hn_spawn("worker", argv, NULL);
    int status = -1;
    int exited = hn_wait_exit(p, 10000, &status);
    if (!exited || status != 2)
        hn_log_tail(p, 20);
    cr_assert(exited, "the worker did not refuse to start");
    cr_assert_eq(status, 2, "exit status %d", status);
    cr_assert(hn_log_has(p, why), "no \"%s\" in its log", why);
    cr_assert(!hn_log_has_sanitizer_report(p));
    hn_proc_free(p);
}

Test(worker_args, duplicate_types_are_refused)
{
    const char *const argv[] = { "conveyor-worker", "--types", "noop,noop", NULL };
    expect_refused(argv, "job type 'noop' is listed twice");
}

Test(worker_args, concurrency_below_the_number_of_types_is_refused)
{
    const char *const argv[] = { "conveyor-worker", "--types", "activation,noop",
                                 "--concurrency", "1", NULL };
    expect_refused(argv, "worker.concurrency (1) is below the number of worker.types (2)");
}

/* The smallest accepted figure, one slot per type, runs jobs of both types cleanly. */
Test(worker_args, one_slot_per_type_runs_both_types)
{
    hn_flush_redis();
    hn_reset_db();
    struct hn_stack st;
    struct hn_stack_opts opts = { .workers = 1, .worker_types = "activation,noop",
                                  .concurrency = 2 };
    hn_start_stack(&st, &opts);
    char jobs[6][160];
    for (int i = 0; i < 5; i++)
        post_noop(&st, jobs[i], sizeof(jobs[i]));
    post_activation(&st, jobs[5], sizeof(jobs[5]));
    for (int i = 0; i < 6; i++)
        cr_assert(hn_wait_until(job_succeeded, jobs[i], 15000, 20), "job %s never succeeded",
                  jobs[i]);
    hn_stop_stack(&st);
}
