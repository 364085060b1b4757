/* test_ctl.c - conveyorctl as an operator runs it: the sanitizer binary as a process
 * (hn_run: its stdout, stderr and exit code; hn_run_pty: on a pseudo-terminal, for the
 * progress bar and the purge question), against the harness's real Redis and PostgreSQL,
 * and a real conveyor-api for API keys. Outcomes are read where they are recorded (Redis
 * through the broker, PostgreSQL, the API's answers), not only from what conveyorctl says.
 *
 * Dead letters are made the way a worker makes them: consumed and settled through
 * broker.h in this process (BROKER_FAIL; an activation BROKER_DEAD with held money). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "broker.h"
#include "cfg.h"
#include "clock.h"
#include "harness.h"
#include "job.h"
#include "uuid.h"

#define RUN_MS 30000
/* conveyor-api reads api_keys every 2 s (AKEY_REFRESH_MS): a change shows within this */
#define KEYS_WAIT_MS 10000

static struct cfg cfg;
static struct broker *b;

static void setup(void)
{
    hn_flush_redis();
    hn_reset_db();
    hn_psql_exec("TRUNCATE api_keys, orders, operations, comm_log RESTART IDENTITY");
    cr_assert_eq(cfg_load(&cfg, NULL), 0);
    b = broker_open(&cfg, NULL);
    cr_assert_not_null(b);
}

static void teardown(void)
{
    if (b)
        broker_close(b);
    b = NULL;
    cfg_cleanup(&cfg);
}

TestSuite(ctl, .init = setup, .fini = teardown, .timeout = 120);

/* conveyorctl ARGS... with no stdin. */
#define CTL(...) hn_run((const char *const[]){ "conveyorctl", __VA_ARGS__, NULL }, NULL, NULL, 0, \
                        RUN_MS)
/* conveyorctl ARGS... with text on stdin. */
#define CTL_IN(in, ...)                                                                       \
    hn_run((const char *const[]){ "conveyorctl", __VA_ARGS__, NULL }, NULL, in, strlen(in),     \
           RUN_MS)
/* conveyorctl ARGS... on a terminal, with keys typed. */
#define CTL_PTY(in, ...)                                                                      \
    hn_run_pty((const char *const[]){ "conveyorctl", __VA_ARGS__, NULL }, NULL, in, RUN_MS)

static void expect_exit(struct hn_run *r, int status, const char *what)
{
    cr_assert_eq(r->status, status, "%s: exit %d, want %d\nstdout: %s\nstderr: %s", what,
                 r->status, status, r->out, r->err);
}

/* The output as JSON (fails the test when it is not). */
static cJSON *json_of(struct hn_run *r)
{
    cJSON *j = cJSON_Parse(r->out);
    cr_assert_not_null(j, "not JSON: %s", r->out);
    return j;
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static long long num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    cr_assert(cJSON_IsNumber(v), "no number %s", name);
    return (long long)v->valuedouble;
}

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- dead letters, made as a worker makes them ------------------------------------- */

struct pub {
    enum cv_rc rc;
    char id[UUID_STR_LEN];
};

static void on_pub(void *arg, enum cv_rc rc, const char *const *ids, const int *dup, size_t n)
{
    struct pub *p = arg;
    (void)dup;
    p->rc = rc;
    if (rc == CV_OK && n == 1)
        snprintf(p->id, sizeof(p->id), "%s", ids[0]);
}

/* Publish one job of type, consume it and settle it with outcome (held for BROKER_DEAD when
 * held is set). Its id goes to id. */
static void make_dead(const char *type, enum broker_outcome outcome, int held, const char *error,
                      char id[UUID_STR_LEN])
{
    if (strcmp(type, "activation") == 0) {
        hn_publish_activation(b, NULL, NULL, 1, 1, 1, id);
    } else {
        struct job *j = job_new(type);
        struct pub p = { CV_ERR_INTERNAL, "" };
        job_set_payload(j, "{}", 2);
        j->max_attempts = 1;
        j->created_ms = clock_wall_ms();
        job_traceparent_new(j->traceparent);
        broker_publish(b, &j, 1, 60, on_pub, &p);
        cr_assert_eq(p.rc, CV_OK);
        snprintf(id, UUID_STR_LEN, "%s", j->id);
        job_free(j);
    }
    const char *types[] = { type };
    struct job *got[1];
    size_t n = 0;
    int64_t end = clock_mono_ms() + 5000;
    while (n == 0 && clock_mono_ms() < end)
        cr_assert_eq(broker_consume(b, "ctl-test", types, 1, 1, 100, got, &n), CV_OK);
    cr_assert_eq(n, 1, "the job came back");
    cr_assert_str_eq(got[0]->id, id);
    struct broker_settle s = { outcome, 0, error, held, 0 };
    cr_assert_eq(broker_settle(b, got, &s, 1, 60), CV_OK);
    job_free(got[0]);
}

static enum job_state state_of(const char *id)
{
    struct job_status st;
    cr_assert_eq(broker_get_copy(b, id, &st), CV_OK, "no job %s", id);
    enum job_state s = st.state;
    job_status_cleanup(&st);
    return s;
}

static int exists(const char *id)
{
    struct job_status st;
    enum cv_rc rc = broker_get_copy(b, id, &st);
    if (rc == CV_OK)
        job_status_cleanup(&st);
    return rc == CV_OK;
}

/* ---- usage and exit codes ------------------------------------------------------------ */

Test(ctl, help_lists_every_command_and_the_exit_codes)
{
    struct hn_run *r = CTL("--help");
    expect_exit(r, 0, "--help");
    static const char *const words[] = { "queues", "watch", "dead retry --all", "dead purge",
                                         "submit --file", "orders", "order ID", "ops tail",
                                         "held", "migrate status", "keys add", "keys revoke",
                                         "keys list", "completion bash", "--json",
                                         "3  not found", "4  refused by state",
                                         "5  Redis or PostgreSQL cannot be reached" };
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        cr_assert(strstr(r->out, words[i]), "--help lacks '%s'", words[i]);
    hn_run_free(r);
}

Test(ctl, exit_codes_say_what_went_wrong)
{
    char id[UUID_STR_LEN];
    uuid_v4(id);
    struct hn_run *r = CTL("frobnicate");
    expect_exit(r, 2, "unknown command");
    hn_run_free(r);
    r = CTL("dead", "show", "not-a-uuid");
    expect_exit(r, 2, "bad id");
    hn_run_free(r);
    r = CTL("dead", "list", "--since", "90");
    expect_exit(r, 2, "a bare number is no duration");
    cr_assert(strstr(r->err, "--since wants a duration"), "%s", r->err);
    hn_run_free(r);
    r = CTL("status", id);
    expect_exit(r, 3, "unknown job");
    hn_run_free(r);
    r = CTL("dead", "retry", id);
    expect_exit(r, 3, "retry of an unknown job");
    hn_run_free(r);
    r = CTL("order", "no-such-order");
    expect_exit(r, 3, "unknown order");
    hn_run_free(r);
    /* nobody listens on port 1 */
    r = CTL("--redis", "redis://127.0.0.1:1", "queues");
    expect_exit(r, 5, "Redis down");
    hn_run_free(r);
    r = CTL("--dsn", "postgresql://postgres@127.0.0.1:1/conveyor", "orders");
    expect_exit(r, 5, "PostgreSQL down");
    hn_run_free(r);
}

/* ---- queues and submit --------------------------------------------------------------- */

/* The queue stat of type in `queues --json`, or NULL. */
static const cJSON *queue_of(const cJSON *arr, const char *type)
{
    const cJSON *q;
    cJSON_ArrayForEach(q, arr)
    {
        const char *t = str(q, "type");
        if (t && strcmp(t, type) == 0)
            return q;
    }
    return NULL;
}

static long long depth_of(const char *type)
{
    struct hn_run *r = CTL("queues", "--json");
    expect_exit(r, 0, "queues --json");
    cJSON *j = json_of(r);
    cr_assert(cJSON_IsArray(j));
    const cJSON *q = queue_of(j, type);
    long long d = q ? num(q, "depth") : 0;
    cJSON_Delete(j);
    hn_run_free(r);
    return d;
}

Test(ctl, submit_one_then_queues_table_and_json)
{
    struct hn_run *r = CTL("submit", "noop", "{\"x\":1}", "--idempotency-key", "k1");
    expect_exit(r, 0, "submit");
    cr_assert(uuid_valid(strtok(r->out, "\n")), "an id: %s", r->out);
    hn_run_free(r);
    r = CTL("submit", "noop", "{\"x\":1}", "--idempotency-key", "k1", "--json");
    expect_exit(r, 0, "submit again");
    cJSON *j = json_of(r);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "duplicate")));
    cJSON_Delete(j);
    hn_run_free(r);
    cr_assert_eq(depth_of("noop"), 1, "one job for two submits with one key");

    r = CTL("queues");
    expect_exit(r, 0, "queues");
    cr_assert(strstr(r->out, "TYPE") && strstr(r->out, "OLDEST_AGE_MS"), "%s", r->out);
    cr_assert(strstr(r->out, "noop"), "%s", r->out);
    hn_run_free(r);
}

Test(ctl, submit_file_batches_refuses_bad_lines_and_summarises)
{
    /* 2500 noop lines (three chunks of at most 1000), two activations, 3 bad lines, and
     * two lines that repeat an idempotency key */
    size_t cap = 400000, o = 0;
    char *file = malloc(cap);
    int line = 0;
    for (int i = 0; i < 2500; i++) {
        line++;
        o += (size_t)snprintf(file + o, cap - o, "{\"type\":\"noop\",\"payload\":{\"i\":%d}}\n",
                              i);
        if (i == 10) {
            line++;   /* line 12 */
            o += (size_t)snprintf(file + o, cap - o, "{\"type\":\"noop\"\n");
        }
        if (i == 20) {
            line += 2;
            o += (size_t)snprintf(file + o, cap - o,
                                  "\n{\"type\":\"nope\",\"payload\":{}}\n");   /* 24 */
        }
    }
    o += (size_t)snprintf(file + o, cap - o,
                          "{\"type\":\"activation\",\"payload\":{\"user_id\":3,\"offer_id\":1},"
                          "\"idempotency_key\":\"act-1\"}\n"
                          "{\"type\":\"activation\",\"payload\":{\"user_id\":3,\"offer_id\":1},"
                          "\"idempotency_key\":\"act-1\"}\n"
                          "{\"type\":\"activation\",\"payload\":{\"user_id\":3},"
                          "\"delay_ms\":5}\n");
    line += 3;
    char path[] = "/tmp/cv-ctl-jobsXXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, file, o), (ssize_t)o);
    close(fd);

    struct hn_run *r = CTL("submit", "--file", path, "--json");
    expect_exit(r, 1, "a file with bad lines");
    cJSON *j = json_of(r);
    cr_assert_eq(num(j, "lines"), line);
    cr_assert_eq(num(j, "accepted"), 2500 + 1);
    cr_assert_eq(num(j, "duplicates"), 1);
    const cJSON *refused = cJSON_GetObjectItemCaseSensitive(j, "refused");
    cr_assert_eq(cJSON_GetArraySize(refused), 3, "%s", r->out);
    cr_assert_eq(num(cJSON_GetArrayItem(refused, 0), "line"), 12);
    cr_assert(strstr(str(cJSON_GetArrayItem(refused, 0), "reason"), "not valid JSON"));
    cr_assert_eq(num(cJSON_GetArrayItem(refused, 1), "line"), 24);
    cr_assert(strstr(str(cJSON_GetArrayItem(refused, 1), "reason"), "unknown type"));
    cr_assert_eq(num(cJSON_GetArrayItem(refused, 2), "line"), line);
    cr_assert(strstr(str(cJSON_GetArrayItem(refused, 2), "reason"), "payload.offer_id"));
    cr_assert(strstr(r->err, "line 12: not valid JSON"), "stderr names the line: %s", r->err);
    cJSON_Delete(j);
    hn_run_free(r);
    /* what was accepted is on the queues */
    cr_assert_eq(depth_of("noop"), 2500);
    cr_assert_eq(depth_of("activation"), 1);

    /* a clean file from stdin: exit 0, the summary for people */
    r = CTL_IN("{\"type\":\"noop\"}\n{\"type\":\"noop\",\"idempotency_key\":\"z\"}\n", "submit",
               "--file", "-", "--batch", "1");
    expect_exit(r, 0, "a clean file");
    cr_assert(strstr(r->out, "lines 2: accepted 2, duplicates 0, refused 0"), "%s", r->out);
    hn_run_free(r);
    cr_assert_eq(depth_of("noop"), 2502);

    /* on a terminal: a bar over the file's lines, then the summary */
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 300; i++)
        fprintf(f, "{\"type\":\"noop\",\"payload\":{\"n\":%d}}\n", i);
    fclose(f);
    r = CTL_PTY(NULL, "submit", "--file", path);
    expect_exit(r, 0, "a file on a terminal");
    cr_assert(strstr(r->out, "submit [") && strstr(r->out, "100% 300/300"), "%s", r->out);
    cr_assert(strstr(r->out, "accepted 300"), "%s", r->out);
    hn_run_free(r);
    cr_assert_eq(depth_of("noop"), 2802);
    unlink(path);
    free(file);
}

/* ---- dead letters ---------------------------------------------------------------------- */

Test(ctl, dead_list_show_retry_purge_and_the_old_forms)
{
    char a[UUID_STR_LEN], c[UUID_STR_LEN], held[UUID_STR_LEN], live[UUID_STR_LEN];
    make_dead("noop", BROKER_FAIL, 0, "boom a", a);
    make_dead("noop", BROKER_FAIL, 0, "boom\nc", c);
    make_dead("activation", BROKER_DEAD, 1, "unknown outcome", held);

    /* the old form: id type state attempt last_error, newest first */
    struct hn_run *r = CTL("dead", "--type", "noop");
    expect_exit(r, 0, "dead --type noop");
    cr_assert_eq(lines(r->out), 2, "%s", r->out);
    char expect[128];
    snprintf(expect, sizeof(expect), "%s noop failed 1 boom c", c);   /* one line */
    cr_assert(strncmp(r->out, expect, strlen(expect)) == 0, "%s", r->out);
    hn_run_free(r);

    r = CTL("dead", "list", "--json", "--since", "1h");
    expect_exit(r, 0, "dead list --json");
    cr_assert_eq(lines(r->out), 3);
    cr_assert(strstr(r->out, "\"held\":true"), "%s", r->out);
    hn_run_free(r);
    r = CTL("dead", "list", "--since", "2099-01-01T00:00:00Z");
    expect_exit(r, 0, "nothing that recent");
    cr_assert_eq(lines(r->out), 0, "%s", r->out);
    hn_run_free(r);

    r = CTL("dead", "show", a);
    expect_exit(r, 0, "dead show");
    cr_assert(strstr(r->out, "failed") && strstr(r->out, "boom a"), "%s", r->out);
    hn_run_free(r);
    r = CTL("dead", "show", held, "--json");
    cJSON *j = json_of(r);
    cr_assert_str_eq(str(j, "id"), held);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "held")));
    cJSON_Delete(j);
    hn_run_free(r);

    /* held money: never purged, and the exit code says so */
    r = CTL("purge", held);
    expect_exit(r, 4, "purge of a held job");
    cr_assert(strstr(r->err, "held"), "%s", r->err);
    hn_run_free(r);
    cr_assert(exists(held));

    /* the old retry form, then a retry of a job that is no longer dead */
    r = CTL("retry", a);
    expect_exit(r, 0, "retry");
    snprintf(expect, sizeof(expect), "requeued %s", a);
    cr_assert(strstr(r->out, expect), "%s", r->out);
    hn_run_free(r);
    cr_assert_eq(state_of(a), JOB_STATE_QUEUED);
    r = CTL("dead", "retry", a);
    expect_exit(r, 4, "retry of a queued job");
    hn_run_free(r);

    /* several at once: one fine, one unknown -> the unknown's code */
    uuid_v4(live);
    r = CTL("dead", "purge", c, live, "--json");   /* no terminal: no question */
    expect_exit(r, 3, "purge of a dead and an unknown job");
    j = json_of(r);
    cr_assert_eq(num(j, "purged"), 1);
    cr_assert_eq(num(j, "failed"), 1);
    cJSON_Delete(j);
    hn_run_free(r);
    cr_assert(!exists(c), "purged for good");
}

Test(ctl, bulk_retry_with_filters_and_a_progress_bar_on_a_terminal)
{
    char id[UUID_STR_LEN], act[UUID_STR_LEN];
    for (int i = 0; i < 30; i++)
        make_dead("noop", BROKER_FAIL, 0, "boom", id);
    make_dead("activation", BROKER_FAIL, 0, "declined", act);

    /* --since in the future selects nothing */
    struct hn_run *r = CTL("dead", "retry", "--all", "--since", "2099-01-01T00:00:00Z", "--json");
    expect_exit(r, 0, "nothing to replay");
    cJSON *j = json_of(r);
    cr_assert_eq(num(j, "requeued"), 0);
    cJSON_Delete(j);
    hn_run_free(r);

    /* a --limit of 5 of one type, in a pipe: the summary only */
    r = CTL("dead", "retry", "--all", "--type", "noop", "--limit", "5");
    expect_exit(r, 0, "five");
    cr_assert(strstr(r->out, "requeued 5, failed 0"), "%s", r->out);
    cr_assert(!strstr(r->err, "["), "no bar in a pipe: %s", r->err);
    hn_run_free(r);
    cr_assert_eq(depth_of("noop"), 5);

    /* the rest of that type on a terminal: the bar, then the summary */
    r = CTL_PTY(NULL, "dead", "retry", "--all", "--type", "noop");
    expect_exit(r, 0, "the rest");
    cr_assert(strstr(r->out, "requeue [") && strstr(r->out, "100% 25/25"), "bar: %s", r->out);
    cr_assert(strstr(r->out, "requeued 25, failed 0"), "%s", r->out);
    hn_run_free(r);
    cr_assert_eq(depth_of("noop"), 30);
    cr_assert_eq(state_of(act), JOB_STATE_FAILED, "another type was left alone");
}

Test(ctl, purge_asks_on_a_terminal_unless_yes)
{
    char id[UUID_STR_LEN];
    make_dead("noop", BROKER_FAIL, 0, "boom", id);
    struct hn_run *r = CTL_PTY("n\n", "dead", "purge", id);
    expect_exit(r, 1, "answered no");
    cr_assert(strstr(r->out, "[y/N]"), "%s", r->out);
    cr_assert(strstr(r->out, "nothing purged"), "%s", r->out);
    hn_run_free(r);
    cr_assert(exists(id), "still there");
    r = CTL_PTY("y\n", "dead", "purge", id);
    expect_exit(r, 0, "answered yes");
    hn_run_free(r);
    cr_assert(!exists(id));
    make_dead("noop", BROKER_FAIL, 0, "boom", id);
    r = CTL_PTY(NULL, "purge", id, "--yes");
    expect_exit(r, 0, "--yes");
    cr_assert(!strstr(r->out, "[y/N]"), "%s", r->out);
    hn_run_free(r);
    cr_assert(!exists(id));
}

/* ---- watch ----------------------------------------------------------------------------- */

static int worker_live(void *arg)
{
    (void)arg;
    struct hn_run *r = CTL("workers", "--json");
    cJSON *j = cJSON_Parse(r->out);
    int n = cJSON_GetArraySize(j);
    cJSON_Delete(j);
    hn_run_free(r);
    return n >= 1;
}

static int alive_pred(void *arg)
{
    return hn_alive(arg);
}

Test(ctl, watch_prints_frames_with_queues_workers_and_held_money)
{
    char id[UUID_STR_LEN];
    make_dead("activation", BROKER_DEAD, 1, "unknown outcome", id);
    hn_psql_exec("INSERT INTO transactions (transaction_id, user_id, offer_id, amount, status)"
                 " VALUES (gen_random_uuid(), 1, 1, 12.50, 'PROCESSING')");
    const char *const argv[] = { "conveyor-worker", "--types", "noop", NULL };
    struct hn_proc *w = hn_spawn("worker", argv, NULL);
    cr_assert(hn_wait_until(worker_live, NULL, 15000, 100), "the worker's heartbeat");

    struct hn_run *r = CTL("watch", "--count", "2");
    expect_exit(r, 0, "watch --count 2");
    int frames = 0;
    for (const char *p = r->out; (p = strstr(p, "--- ")); p++)
        frames++;
    cr_assert_eq(frames, 2, "%s", r->out);
    cr_assert(strstr(r->out, "QUEUES") && strstr(r->out, "WORKERS  live 1"), "%s", r->out);
    cr_assert(strstr(r->out, "HELD  transactions 1, amount 12.50"), "%s", r->out);
    cr_assert(strstr(r->out, "dead jobs held 1"), "%s", r->out);
    cr_assert(!strstr(r->out, "\033["), "no escapes in a pipe");
    hn_run_free(r);

    r = CTL("watch", "--count", "1", "--json");
    expect_exit(r, 0, "watch --json");
    cJSON *j = json_of(r);
    cr_assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "queues")));
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "workers")), 1);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "held");
    cr_assert_eq(num(h, "transactions"), 1);
    cr_assert_eq(num(h, "dead_jobs"), 1);
    cJSON_Delete(j);
    hn_run_free(r);

    /* without --count it runs until Ctrl-C, and then ends well */
    const char *const wargv[] = { "conveyorctl", "watch", NULL };
    struct hn_proc *wp = hn_spawn("ctl-watch", wargv, NULL);
    cr_assert(hn_wait_log(wp, "HELD  ", 10000), "a first frame");
    cr_assert(hn_alive(wp), "still watching");
    cr_assert_eq(hn_stop(wp, SIGINT, 5000), 0, "Ctrl-C ends it with 0");
    cr_assert(!hn_log_has_sanitizer_report(wp));
    hn_proc_free(wp);

    /* on a terminal each frame clears the screen */
    r = CTL_PTY(NULL, "watch", "--count", "1");
    expect_exit(r, 0, "watch on a terminal");
    cr_assert(strstr(r->out, "\033[H\033[2J"), "%s", r->out);
    hn_run_free(r);
    cr_assert_eq(hn_stop(w, SIGTERM, 20000), 0);
    cr_assert(!hn_log_has_sanitizer_report(w));
    hn_proc_free(w);
}

/* ---- orders, held, migrations ----------------------------------------------------------- */

Test(ctl, orders_counts_lists_and_one_orders_history)
{
    hn_psql_exec("INSERT INTO orders (order_id, internal_state, carrier_code) VALUES"
                 " ('o-1', 'PENDING_POST', NULL), ('o-2', 'TRACKED', 'seur'),"
                 " ('o-3', 'TRACKED', 'seur');"
                 "INSERT INTO operations (scope, action, order_id, status, message, from_state,"
                 " to_state) VALUES ('carrier', 'create_shipment', 'o-2', 'OK', 'created',"
                 " 'PENDING_POST', 'POSTED');"
                 "INSERT INTO comm_log (upstream, method, url, status, duration_ms, order_id)"
                 " VALUES ('seur', 'POST', 'http://sim/seur/shipments', 201, 12.5, 'o-2')");
    struct hn_run *r = CTL("orders", "--json");
    expect_exit(r, 0, "orders --json");
    cJSON *j = json_of(r);
    cr_assert_eq(num(j, "PENDING_POST"), 1);
    cr_assert_eq(num(j, "TRACKED"), 2);
    cr_assert_eq(num(j, "COMPLETE"), 0, "every state, zeros too");
    cJSON_Delete(j);
    hn_run_free(r);
    r = CTL("orders");
    cr_assert(strstr(r->out, "total"), "%s", r->out);
    hn_run_free(r);

    r = CTL("orders", "--state", "TRACKED", "--json");
    expect_exit(r, 0, "orders --state");
    cr_assert_eq(lines(r->out), 2, "%s", r->out);
    cr_assert(strstr(r->out, "\"o-2\"") && strstr(r->out, "\"o-3\"") && !strstr(r->out, "o-1"));
    hn_run_free(r);

    r = CTL("order", "o-2", "--json");
    expect_exit(r, 0, "order --json");
    j = json_of(r);
    cr_assert_str_eq(str(cJSON_GetObjectItemCaseSensitive(j, "order"), "internal_state"),
                     "TRACKED");
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(j, "operations");
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(j, "calls");
    cr_assert_eq(cJSON_GetArraySize(ops), 1);
    cr_assert_str_eq(str(cJSON_GetArrayItem(ops, 0), "action"), "create_shipment");
    cr_assert_eq(cJSON_GetArraySize(calls), 1);
    cr_assert_str_eq(str(cJSON_GetArrayItem(calls, 0), "upstream"), "seur");
    cJSON_Delete(j);
    hn_run_free(r);
    r = CTL("order", "o-2");
    cr_assert(strstr(r->out, "OPERATIONS (1") && strstr(r->out, "OUTBOUND CALLS (1"), "%s",
              r->out);
    cr_assert(strstr(r->out, "http://sim/seur/shipments"), "%s", r->out);
    hn_run_free(r);

    r = CTL("ops", "tail", "--order", "o-2", "--json");
    expect_exit(r, 0, "ops tail");
    cr_assert_eq(lines(r->out), 1);
    j = json_of(r);
    cr_assert_str_eq(str(j, "to_state"), "POSTED");
    cJSON_Delete(j);
    hn_run_free(r);

    /* --follow prints what is written after it started, until Ctrl-C */
    const char *const argv[] = { "conveyorctl", "ops", "tail", "--follow", "--json", NULL };
    struct hn_proc *p = hn_spawn("ctl-ops", argv, NULL);
    cr_assert(hn_wait_until(alive_pred, p, 2000, 50), "it runs");
    hn_psql_exec("INSERT INTO operations (scope, action, order_id, status) VALUES"
                 " ('operator', 'note', 'o-9', 'OK')");
    cr_assert(hn_wait_log(p, "\"order_id\":\"o-9\"", 10000), "the new row is printed");
    cr_assert_eq(hn_stop(p, SIGINT, 5000), 0, "Ctrl-C ends it with 0");
    cr_assert(!hn_log_has_sanitizer_report(p));
    hn_proc_free(p);
}

Test(ctl, held_json_and_migrate_status)
{
    hn_psql_exec("INSERT INTO transactions (transaction_id, user_id, offer_id, amount, status)"
                 " VALUES ('00000000-0000-4000-8000-000000000001', 2, 1, 5.00, 'PROCESSING')");
    struct hn_run *r = CTL("held", "--json");
    expect_exit(r, 0, "held --json");
    cJSON *j = json_of(r);
    cr_assert_str_eq(str(j, "transaction_id"), "00000000-0000-4000-8000-000000000001");
    cr_assert_str_eq(str(j, "job"), "missing");
    cJSON_Delete(j);
    hn_run_free(r);

    r = CTL("migrate", "status", "--json");
    expect_exit(r, 0, "migrate status");
    j = json_of(r);
    cr_assert_eq(num(j, "pending"), 0, "run-integ.sh migrated: %s", r->out);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "migrations");
    cr_assert_geq(cJSON_GetArraySize(m), 8);
    int saw_keys = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, m)
    {
        cr_assert_str_eq(str(e, "state"), "applied");
        cr_assert_not_null(str(e, "applied_at"));
        saw_keys |= strcmp(str(e, "version"), "0008_api_keys") == 0;
    }
    cr_assert(saw_keys);
    cJSON_Delete(j);
    hn_run_free(r);
    /* up and the old form: nothing to do */
    r = CTL("migrate", "up");
    expect_exit(r, 0, "migrate up");
    cr_assert(strstr(r->out, "up to date"), "%s", r->out);
    hn_run_free(r);
    r = CTL("migrate");
    expect_exit(r, 0, "migrate");
    cr_assert(strstr(r->out, "up to date"), "%s", r->out);
    hn_run_free(r);
}

/* ---- API keys ---------------------------------------------------------------------------- */

struct key_probe {
    const char *url, *secret;
    int want;
};

static int answers(void *arg)
{
    struct key_probe *p = arg;
    char auth[160];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", p->secret);
    const char *const h[] = { auth, NULL };
    struct hn_resp *resp = hn_http("GET", p->url, h, NULL, 0, 5000);
    int ok = resp->status == p->want;
    hn_resp_free(resp);
    return ok;
}

/* A dashboard login with a stored key: its session's Cookie header into cookie. */
struct ui_login {
    const char *api_url, *secret;
    char cookie[96];
};

static int logs_in(void *arg)
{
    struct ui_login *l = arg;
    char url[160], body[200];
    snprintf(url, sizeof(url), "%s/ui/login", l->api_url);
    snprintf(body, sizeof(body), "{\"key\":\"%s\"}", l->secret);
    const char *const h[] = { "Content-Type: application/json", NULL };
    struct hn_resp *resp = hn_http("POST", url, h, body, strlen(body), 5000);
    char *sc = resp->status == 200 ? hn_resp_header(resp, "Set-Cookie") : NULL;
    if (sc)
        snprintf(l->cookie, sizeof(l->cookie), "Cookie: %.*s", (int)strcspn(sc, ";"), sc);
    free(sc);
    hn_resp_free(resp);
    return l->cookie[0] != '\0';
}

struct sess_probe {
    const char *url, *cookie;
    int want;
};

static int session_answers(void *arg)
{
    struct sess_probe *p = arg;
    const char *const h[] = { p->cookie, NULL };
    struct hn_resp *resp = hn_http("GET", p->url, h, NULL, 0, 5000);
    int ok = resp->status == p->want;
    hn_resp_free(resp);
    return ok;
}

static int last_used_set(void *arg)
{
    (void)arg;
    char *v = hn_psql_scalar("SELECT last_used_at FROM api_keys WHERE name = 'ops-night'");
    int set = v != NULL;
    free(v);
    return set;
}

Test(ctl, keys_add_work_without_restart_and_revoke_cuts_them_off)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .no_sim = 1 };
    hn_start_stack(&st, &o);
    char url[128];
    snprintf(url, sizeof(url), "%s/v1/queues", st.api_url);

    struct hn_run *r = CTL("keys", "add", "ops-night", "--scopes", "operator", "--json");
    expect_exit(r, 0, "keys add");
    cJSON *j = json_of(r);
    char secret[128], sha[65];
    snprintf(secret, sizeof(secret), "%s", str(j, "secret"));
    hn_sha256_hex(secret, sha);
    cr_assert_str_eq(str(j, "sha256"), sha);
    char entry[160];
    snprintf(entry, sizeof(entry), "ops-night:%s:operator", sha);
    cr_assert_str_eq(str(j, "env_entry"), entry);
    cJSON_Delete(j);
    hn_run_free(r);
    /* only the hash is stored */
    char *stored = hn_psql_scalar("SELECT sha256 FROM api_keys WHERE name = 'ops-night'");
    cr_assert_str_eq(stored, sha);
    free(stored);
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM api_keys WHERE sha256 = '%s'", secret);
    cr_assert_eq(hn_psql_int(sql), 0);

    /* the running API takes it, no restart */
    struct key_probe ok = { url, secret, 200 };
    cr_assert(hn_wait_until(answers, &ok, KEYS_WAIT_MS, 100), "the new key works");
    cr_assert(hn_wait_until(last_used_set, NULL, KEYS_WAIT_MS, 200), "last_used_at is written");
    /* it opens a dashboard session too */
    struct ui_login login = { st.api_url, secret, "" };
    cr_assert(hn_wait_until(logs_in, &login, KEYS_WAIT_MS, 100), "a stored key logs in at /ui");
    struct sess_probe in = { url, login.cookie, 200 };
    cr_assert(hn_wait_until(session_answers, &in, KEYS_WAIT_MS, 100), "its session reads");

    /* a key's scopes hold: noop only may not read the queues */
    r = CTL("keys", "add", "noop-feed", "--scopes", "noop", "--json");
    expect_exit(r, 0, "keys add noop");
    j = json_of(r);
    struct key_probe forbidden = { url, str(j, "secret"), 403 };
    cr_assert(hn_wait_until(answers, &forbidden, KEYS_WAIT_MS, 100), "403 for a noop key");
    cJSON_Delete(j);
    hn_run_free(r);

    /* names are unique; bad scopes are usage errors */
    r = CTL("keys", "add", "ops-night", "--scopes", "operator");
    expect_exit(r, 4, "a taken name");
    hn_run_free(r);
    r = CTL("keys", "add", "x", "--scopes", "operater");
    expect_exit(r, 2, "an unknown scope");
    hn_run_free(r);

    /* list: names, scopes, never a whole hash */
    r = CTL("keys", "list", "--json");
    expect_exit(r, 0, "keys list");
    cr_assert(!strstr(r->out, sha), "a whole hash in: %s", r->out);
    cr_assert(!strstr(r->out, secret));
    char prefix[9];
    snprintf(prefix, sizeof(prefix), "%.8s", sha);
    cr_assert(strstr(r->out, prefix), "%s", r->out);
    cr_assert(strstr(r->out, "\"name\":\"ops-night\",\"source\":\"stored\",\"state\":\"active\""),
              "%s", r->out);
    hn_run_free(r);

    /* revoke: refused within the refresh period */
    r = CTL("keys", "revoke", "ops-night");
    expect_exit(r, 0, "keys revoke");
    hn_run_free(r);
    struct key_probe gone = { url, secret, 401 };
    cr_assert(hn_wait_until(answers, &gone, KEYS_WAIT_MS, 100), "the revoked key is refused");
    struct sess_probe out = { url, login.cookie, 401 };
    cr_assert(hn_wait_until(session_answers, &out, KEYS_WAIT_MS, 100),
              "the revoked key's dashboard session ended");
    r = CTL("keys", "revoke", "ops-night");
    expect_exit(r, 0, "again");
    cr_assert(strstr(r->out, "revoked already"), "%s", r->out);
    hn_run_free(r);
    r = CTL("keys", "revoke", "nobody");
    expect_exit(r, 3, "an unknown name");
    hn_run_free(r);

    /* a configured key (the harness's test-all, in the API's CONVEYOR_API_KEYS) is cut off
     * by name too, with --force since this conveyorctl does not have that configuration */
    struct key_probe cfg_ok = { url, hn_test_key(), 200 };
    cr_assert(answers(&cfg_ok), "the configured key works first");
    r = CTL("keys", "revoke", "test-all", "--force");
    expect_exit(r, 0, "revoke a configured key");
    hn_run_free(r);
    struct key_probe cfg_gone = { url, hn_test_key(), 401 };
    cr_assert(hn_wait_until(answers, &cfg_gone, KEYS_WAIT_MS, 100), "the configured key too");
    hn_psql_exec("TRUNCATE api_keys");
    cr_assert(hn_wait_until(answers, &cfg_ok, KEYS_WAIT_MS, 100), "and back once unrevoked");
    hn_stop_stack(&st);
}

/* ---- completion ---------------------------------------------------------------------------- */

Test(ctl, completion_script_is_valid_bash_and_the_shipped_one)
{
    struct hn_run *r = CTL("completion", "bash");
    expect_exit(r, 0, "completion bash");
    cr_assert(strstr(r->out, "complete -F _conveyorctl conveyorctl"));
    cr_assert(strstr(r->out, "carrier-post"), "job types come from the table");
    char path[600];
    snprintf(path, sizeof(path), "%s/../deploy/conveyorctl.bash", hn_env("CONVEYOR_MIGRATIONS"));
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s is shipped", path);
    char *shipped = calloc(1, 65536);
    size_t n = fread(shipped, 1, 65535, f);
    fclose(f);
    cr_assert_eq(n, r->out_len, "deploy/conveyorctl.bash differs: run `conveyorctl completion "
                                "bash > deploy/conveyorctl.bash`");
    cr_assert_eq(memcmp(shipped, r->out, n), 0, "deploy/conveyorctl.bash differs");
    free(shipped);
    hn_run_free(r);
    struct hn_run *sh = hn_run((const char *const[]){ "bash", "-n", path, NULL }, NULL, NULL, 0,
                               RUN_MS);
    expect_exit(sh, 0, "bash -n");
    hn_run_free(sh);
}
