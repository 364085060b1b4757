/* harness.h - helpers for the Criterion integration tests (tests/integ/test_*.c).
 *
 * tests/harness/run-integ.sh starts one redis-server and one PostgreSQL (migrated and
 * seeded) per run and exports where they are; each test starts the Conveyor processes it
 * needs with hn_spawn() or hn_start_stack() and stops them itself, so a test can SIGKILL a
 * worker or restart Redis without disturbing the others. Tests run one at a time (--jobs 1),
 * each in its own process, and begin with hn_flush_redis() and hn_reset_db().
 *
 * Environment (set by run-integ.sh; hn_env() fails the test when one is missing):
 *   CONVEYOR_TEST_DIR        temp dir for logs (<name>-<pid>.log) and pids/
 *   CONVEYOR_TEST_BIN        directory of the sanitizer binaries (build/san/bin)
 *   CONVEYOR_REDIS_URL       redis://127.0.0.1:PORT
 *   CONVEYOR_PG_DSN          postgresql://postgres@127.0.0.1:PORT/conveyor
 *   CONVEYOR_MIGRATIONS      the migrations/ directory
 *   CONVEYOR_TEST_REDIS_DIR, CONVEYOR_TEST_REDIS_PORT, CONVEYOR_TEST_LIB
 *                            for hn_redis_kill() / hn_redis_start()
 *
 * Failure model: helpers that cannot do their job (no binary, no database, bad SQL) fail
 * the test with cr_assert_fail() and a message that names the cause; they never return an
 * error code the test could forget to check. Processes started by hn_spawn() die with the
 * test process (PR_SET_PDEATHSIG) and are also recorded in $CONVEYOR_TEST_DIR/pids/ so that
 * run-integ.sh stops whatever a crashed test left behind.
 *
 * Everything here is for the test's main thread only. */
#ifndef CV_HARNESS_H
#define CV_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

/* ---- environment and ports ---------------------------------------------------------- */

/* The value of a required environment variable; fails the test when unset or empty.
 * The string belongs to the environment: do not free it. */
const char *hn_env(const char *name);

/* A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it back).
 * Servers may still lose the race for it: hn_start_stack() retries. */
int hn_free_port(void);

/* ---- processes ---------------------------------------------------------------------- */

struct hn_proc {
    pid_t pid;
    char name[64];
    char log_path[512];     /* stdout + stderr: $CONVEYOR_TEST_DIR/<name>-<pid>.log */
    char pid_path[512];     /* $CONVEYOR_TEST_DIR/pids/<name>-<pid>.pid, removed once reaped */
    int reaped;             /* 1 once the process was waited for */
    int status;             /* once reaped: exit code, or 128 + signal number */
    int killed;             /* 1 after hn_kill9(): hn_stop_stack() skips its exit status */
};

/* Start argv[0] (a bare name is looked up in $CONVEYOR_TEST_BIN, then PATH) with stdout and
 * stderr appended to its log, stdin from /dev/null, in its own process group. Its
 * environment is this process's environment with extra_env applied in order: "NAME=value"
 * sets or replaces NAME, a bare "NAME" removes it (extra_env is NULL-terminated, may be
 * NULL). Fails the test when the program cannot be executed. Never returns NULL; stop it
 * with hn_stop()/hn_kill9() and free it with hn_proc_free(). */
struct hn_proc *hn_spawn(const char *name, const char *const argv[],
                         const char *const extra_env[]);

/* Send sig (unless the process already exited), wait up to timeout_ms for it to exit, then
 * SIGKILL and wait. Returns the exit status: the exit code, or 128 + signal number. */
int hn_stop(struct hn_proc *p, int sig, int timeout_ms);

/* SIGKILL the process (and its process group) and reap it; marks it killed. */
void hn_kill9(struct hn_proc *p);

/* Wait up to timeout_ms for the process to exit by itself. Returns 1 and stores the exit
 * status (as hn_stop() returns it) in *status (may be NULL) when it exited, else 0. */
int hn_wait_exit(struct hn_proc *p, int timeout_ms, int *status);

/* 1 while the process runs (reaps it when it has exited). */
int hn_alive(struct hn_proc *p);

/* Kill the process if it still runs, then free p. NULL is fine. */
void hn_proc_free(struct hn_proc *p);

/* 1 when the process's log holds a sanitizer report ("ERROR: AddressSanitizer",
 * "runtime error:", "ERROR: LeakSanitizer"). Tests assert it is 0. */
int hn_log_has_sanitizer_report(const struct hn_proc *p);

/* 1 when the process's log contains needle (say "evt=job.retry_scheduled"). */
int hn_log_has(const struct hn_proc *p, const char *needle);
/* Poll the process's log until it contains needle: 1 when it did within timeout_ms. */
int hn_wait_log(const struct hn_proc *p, const char *needle, int timeout_ms);

/* Print the last lines of the process's log to stderr, framed with its name. */
void hn_log_tail(const struct hn_proc *p, int lines);

/* ---- commands run to completion (conveyorctl) ---------------------------------------- */

struct hn_run {
    int status;             /* exit code, or 128 + signal number */
    char *out;              /* stdout, NUL-terminated (never NULL); on a pty: all it showed */
    size_t out_len;
    char *err;              /* stderr, NUL-terminated (never NULL); "" on a pty */
};

/* Run argv (argv[0] found as hn_spawn finds it) to its end with extra_env applied as
 * hn_spawn does, in_len bytes of in on its stdin (in NULL: /dev/null), and collect its
 * stdout and stderr. Fails the test when it runs longer than timeout_ms (it is killed) or
 * its stderr holds a sanitizer report. Free with hn_run_free(). */
struct hn_run *hn_run(const char *const argv[], const char *const extra_env[], const char *in,
                      size_t in_len, int timeout_ms);
/* The same on a pseudo-terminal (stdin, stdout and stderr are the terminal; it is its
 * controlling terminal): in is typed on it (NULL: nothing), out is everything the terminal
 * showed (the program's stdout and stderr, and the echo of in). */
struct hn_run *hn_run_pty(const char *const argv[], const char *const extra_env[],
                          const char *in, int timeout_ms);
void hn_run_free(struct hn_run *r);

/* ---- HTTP (libcurl) ----------------------------------------------------------------- */

struct hn_resp {
    int status;             /* HTTP status; 0 when no response (see err) */
    char *body;             /* NUL-terminated (never NULL) */
    size_t len;             /* body bytes, without the NUL */
    char *headers;          /* raw response header lines, NUL-terminated (never NULL) */
    char err[256];          /* curl's error text when status is 0 */
};

/* One request. headers is a NULL-terminated list of "Name: value" lines (may be NULL); when
 * body is not NULL and no Content-Type is given, "Content-Type: application/json" is added
 * (pass "Content-Type:" to send none). timeout_ms <= 0 means 5000. Never returns NULL: a
 * transport failure gives status 0 and err. Free with hn_resp_free(). */
struct hn_resp *hn_http(const char *method, const char *url, const char *const headers[],
                        const char *body, size_t len, int timeout_ms);
void hn_resp_free(struct hn_resp *r);

/* The value of response header name (case-insensitive, first occurrence), malloc'd, or
 * NULL when absent. */
char *hn_resp_header(const struct hn_resp *r, const char *name);

/* The body parsed as JSON, or NULL when it is not JSON. Free with cJSON_Delete(). */
cJSON *hn_json(const struct hn_resp *r);

/* Poll GET url until it answers 200; 1 when it did within timeout_ms, else 0. */
int hn_wait_http_ok(const char *url, int timeout_ms);

/* "Authorization: Bearer ..." lines for the two test keys that hn_start_stack() installs. */
#define HN_AUTH_ALL "Authorization: Bearer test-key-all"
#define HN_AUTH_NOOP "Authorization: Bearer test-key-noop"

/* Worker settings that make retries, reads and heartbeats quick enough for a test
 * (backoff 50..400 ms, 100 ms blocking reads, a heartbeat every 200 ms): entries of a
 * worker_env array. */
#define HN_FAST_ENV                                                                         \
    "CONVEYOR_RETRY_BASE_MS=50", "CONVEYOR_RETRY_MAX_MS=400", "CONVEYOR_BLOCK_MS=100",      \
        "CONVEYOR_HEARTBEAT_MS=200"

/* The plain test keys: "test-key-all" may submit every type ("*"); "test-key-noop" only noop. */
const char *hn_test_key(void);
const char *hn_test_key_scoped(void);

/* SHA-256 of s as 64 lower-case hex digits plus NUL. */
void hn_sha256_hex(const char *s, char out[65]);

/* ---- waiting ------------------------------------------------------------------------ */

/* Call pred(arg) every poll_ms until it returns non-zero; 1 when it did within timeout_ms,
 * else 0. pred is called at least once. */
int hn_wait_until(int (*pred)(void *), void *arg, int timeout_ms, int poll_ms);

/* ---- PostgreSQL (libpq, tests only) -------------------------------------------------- */

/* The first column of the first row of sql, malloc'd; NULL when there is no row or the
 * value is SQL NULL. Fails the test on a connection or SQL error. Uses CONVEYOR_PG_DSN. */
char *hn_psql_scalar(const char *sql);

/* hn_psql_scalar() as a number; fails the test when there is no value or it is not one. */
long long hn_psql_int(const char *sql);

/* Run one or more statements (no result wanted); fails the test on error. */
void hn_psql_exec(const char *sql);

/* sql_fmt with its one %s replaced by id (a UUID the test made itself), in a static
 * buffer that the next call reuses. */
const char *hn_sql_id(const char *sql_fmt, const char *id) __attribute__((format(printf, 1, 0)));

/* Poll until transactions.status of txn is status; fails the test after timeout_ms. */
void hn_wait_txn(const char *txn, const char *status, int timeout_ms);

/* ---- activation jobs ------------------------------------------------------------------ */

struct broker;
/* Publish an activation job through b (synchronous mode) the way the API does: its id is
 * id (NULL = a new one) and its payload names transaction payload_txn (NULL = the job's
 * id), user and offer. The job's id goes to out. Fails the test unless published. */
void hn_publish_activation(struct broker *b, const char *id, const char *payload_txn,
                           long long user, long long offer, int max_attempts,
                           char out[37]);

/* PostgreSQL outage without stopping the shared server: on = 1 refuses new connections
 * to the test database and ends every open one but the harness's own (ALLOW_CONNECTIONS
 * false + pg_terminate_backend); on = 0 lets them in again. Run from the "postgres"
 * database, so it works while the test database is closed. */
void hn_pg_outage(int on);

/* ---- clean slate -------------------------------------------------------------------- */

/* FLUSHALL on CONVEYOR_REDIS_URL. */
void hn_flush_redis(void);

/* TRUNCATE transactions and user_offers, and set every account's balance back to 1000. */
void hn_reset_db(void);

/* ---- Redis outages ------------------------------------------------------------------ */

/* Send sig to the test redis-server (SIGTERM: clean shutdown, SIGKILL: crash; its AOF
 * survives either way) and wait until it is gone. */
void hn_redis_kill(int sig);

/* Start the test redis-server again on the same port and data directory; returns when it
 * answers PING. */
void hn_redis_start(void);

/* ---- the Conveyor stack ------------------------------------------------------------- */

struct hn_stack;
/* POST json to the simulator's /admin/config (fails the test unless 200). */
void hn_sim_config(struct hn_stack *st, const char *json);
/* A counter of the simulator's /admin/stats (fails the test when it has none). */
long long hn_sim_stat(struct hn_stack *st, const char *name);

#define HN_MAX_WORKERS 16

struct hn_stack_opts {
    int workers;                /* worker processes (0..HN_MAX_WORKERS) */
    const char *worker_types;   /* --types; NULL = "activation,noop" */
    int concurrency;            /* --concurrency; 0 = 4 */
    const char *const *worker_env; /* extra env for every worker (hn_spawn rules), or NULL */
    const char *const *api_env; /* extra env for conveyor-api, or NULL */
    const char *const *sim_env; /* extra env for conveyor-sim (CONVEYOR_SIM_ERROR_RATE=...) */
    int no_sim;                 /* 1: no simulator (workers still get an activation URL) */
    int no_api;                 /* 1: no API */
    int pipeline;               /* 1: the order pipeline against the sim: hn_pipeline_env()
                                 * for every process (before the *_env entries above, which
                                 * win), the API's port chosen before the sim starts so that
                                 * the sim's webhooks reach it; worker_types NULL = the order
                                 * types (HN_ORDER_TYPES) */
};

/* The job types of the order pipeline, as --types takes them. */
#define HN_ORDER_TYPES "order-fetch,carrier-post,tracking-event,tracking-push"


struct hn_stack {
    struct hn_stack_opts opts;  /* a copy; the env arrays it points to must outlive the stack */
    struct hn_proc *sim;        /* NULL when opts.no_sim */
    struct hn_proc *api;        /* NULL when opts.no_api */
    struct hn_proc *workers[HN_MAX_WORKERS];
    int nworkers;
    int sim_port, api_port;
    char sim_url[64];           /* http://127.0.0.1:PORT (no trailing slash) */
    char api_url[64];
    char **pipe_env;            /* opts.pipeline: hn_pipeline_env(sim, 0) for API and workers */
};

/* The environment that makes conveyor-api, conveyor-worker and conveyor-sim run the order
 * pipeline against the simulator, as scripts/lib.sh pipeline_env does: every NAME=value line
 * of deploy/demo.env (found next to $CONVEYOR_MIGRATIONS; demo credentials and webhook
 * secrets), then, when sim_port > 0, CONVEYOR_UPSTREAMS_<NAME>_URL =
 * http://127.0.0.1:<sim_port>/<prefix> for mirakl, tipsa, seur, correos-express, ontime and
 * meli, and, when api_port > 0, CONVEYOR_SIM_WEBHOOK_URL = http://127.0.0.1:<api_port>.
 * Returns a NULL-terminated array in hn_spawn()'s "NAME=value" form; free it with
 * hn_env_free(). Fails the test when demo.env cannot be read. */
char **hn_pipeline_env(int sim_port, int api_port);
void hn_env_free(char **env);   /* NULL-safe */

/* Start conveyor-sim (free port, ready on GET /health), conveyor-api (CONVEYOR_HTTP_PORT on
 * a free port, CONVEYOR_API_KEYS holding the two test keys, ready on GET /health) and
 * opts->workers conveyor-worker processes (CONVEYOR_ACTIVATION_URL = the sim). A server
 * that loses its port race is started again on another port. opts NULL = one worker. Fails
 * the test (printing the log) when something does not come up. */
void hn_start_stack(struct hn_stack *st, const struct hn_stack_opts *opts);

/* Start one more worker with the stack's options; returns its index in st->workers. */
int hn_stack_add_worker(struct hn_stack *st);

/* SIGTERM the workers, then the API, then the simulator (each given up to 20 s before
 * SIGKILL), free them and the pipeline environment, and fail the test unless each exited
 * with status 0 (workers killed with hn_kill9() excepted) and no log holds a sanitizer
 * report. */
void hn_stop_stack(struct hn_stack *st);

#endif
