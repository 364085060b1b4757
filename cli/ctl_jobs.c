/* ctl_jobs.c - conveyorctl commands that talk to the broker: submit, status,
 * dead, retry, purge, queues, workers.
 *
 * The broker is opened in synchronous mode, so every callback has run by the
 * time the broker call returns; results the callbacks see are valid only
 * during the callback, so they print (or copy) what they need right there. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "clock.h"
#include "ctl.h"
#include "job.h"
#include "jobopt.h"
#include "json.h"
#include "mem.h"
#include "sbuf.h"
#include "uuid.h"

#define STDIN_MAX_BYTES (64 * 1024 * 1024)
#define DEAD_LIMIT_DEFAULT 100
#define DEAD_LIMIT_MAX 10000
#define WORKERS_ALIVE_MS 10000

/* What a callback reports back. */
struct call {
    int called;
    enum cv_rc rc;
};

static struct broker *open_broker(const struct cfg *c)
{
    struct broker *b = broker_open(c, NULL);
    if (!b)
        ctl_fail("cannot reach the broker at redis.url (the reason is logged above)");
    return b;
}

/* Exit code for a finished call; prints why it failed. */
static int call_result(const struct call *k, const char *what, const char *id)
{
    if (!k->called)
        return ctl_fail("%s: the broker did not answer", what);
    switch (k->rc) {
    case CV_OK:
        return CTL_EXIT_OK;
    case CV_ERR_NOT_FOUND:
        return ctl_fail("%s: no job %s", what, id ? id : "");
    case CV_ERR_CONFLICT:
        return ctl_fail("%s: job %s is not dead or failed", what, id ? id : "");
    default:
        return ctl_fail("%s failed: %s", what, cv_rc_str(k->rc));
    }
}

/* Replace control characters so that one record stays on one line. */
static void print_line_safe(const char *s)
{
    if (!s || !*s) {
        fputs("-", stdout);
        return;
    }
    for (; *s; s++)
        putchar((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s);
}

static char *read_stdin(size_t *len)
{
    struct sbuf b;
    char chunk[65536];
    size_t got;
    sbuf_init(&b);
    sbuf_adds(&b, "");
    while ((got = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
        sbuf_add(&b, chunk, got);
        if (b.len > STDIN_MAX_BYTES)
            break;
    }
    return sbuf_take(&b, len);
}

/* ---- submit ------------------------------------------------------------- */

struct publish_res {
    struct call k;
    char id[UUID_STR_LEN];
    int dup;
};

static void on_publish(void *arg, enum cv_rc rc, const char *const *ids, const int *dup, size_t n)
{
    struct publish_res *p = arg;
    p->k.called = 1;
    p->k.rc = rc;
    if (rc == CV_OK && n == 1 && ids[0]) {
        snprintf(p->id, sizeof(p->id), "%s", ids[0]);
        p->dup = dup ? dup[0] : 0;
    }
}

int ctl_submit(const struct cfg *c, int argc, char **argv)
{
    int ret = CTL_EXIT_USAGE;
    const char *type = NULL, *json = NULL, *v = NULL, *why = NULL, *field = NULL;
    char *stdin_buf = NULL;
    size_t json_len = 0;
    cJSON *parsed = NULL;
    struct job *j = NULL;
    struct broker *b = NULL;
    struct publish_res pr = { 0 };
    struct jobopt o;
    int64_t now = clock_wall_ms();
    /* the flags are the API's options under their command-line names */
    static const struct {
        const char *flag, *opt;
    } flags[] = {
        { "--delay-ms", "delay_ms" },
        { "--run-at", "run_at" },
        { "--max-attempts", "max_attempts" },
        { "--idempotency-key", "idempotency_key" },
        { "--job-id", "job_id" },
    };
    memset(&o, 0, sizeof(o));

    for (int i = 1; i < argc; i++) {
        int m = 0;
        for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]) && m == 0; f++) {
            m = ctl_opt(argc, argv, &i, flags[f].flag, &v);
            if (m > 0 && jobopt_set(&o, flags[f].opt, v, now, &why) != CV_OK) {
                ret = ctl_usage("submit: %s: %s", flags[f].flag, why);
                goto out;
            }
        }
        if (m < 0)
            goto out;
        if (m > 0)
            continue;
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            ret = ctl_usage("submit: unknown option '%s'", argv[i]);
            goto out;
        } else if (!type) {
            type = argv[i];
        } else if (!json) {
            json = argv[i];
        } else {
            ret = ctl_usage("submit: unexpected argument '%s'", argv[i]);
            goto out;
        }
    }
    if (!type) {
        ret = ctl_usage("submit: TYPE is required");
        goto out;
    }
    const struct jobtype *t = jobtype_find(type, strlen(type));
    if (!t) {
        ret = ctl_usage("submit: unknown type '%s' (known: %s)", type, jobtype_names());
        goto out;
    }
    if (!json)
        json = "{}";
    if (strcmp(json, "-") == 0) {
        stdin_buf = read_stdin(&json_len);
        json = stdin_buf;
    } else {
        json_len = strlen(json);
    }
    if (json_len > (size_t)c->body_max_bytes) {
        ret = ctl_usage("submit: payload is %zu bytes, over http.body_max_bytes (%d)", json_len,
                        c->body_max_bytes);
        goto out;
    }
    parsed = json_parse(json, json_len);
    if (!parsed) {
        ret = ctl_usage("submit: the payload is not valid JSON");
        goto out;
    }
    if (jobopt_make(c, t, &o, NULL, "", parsed, json, json_len, now, &j, &field, &why) !=
        CV_OK) {
        ret = ctl_usage("submit: payload%s%s: %s", field ? "." : "", field ? field : "", why);
        goto out;
    }

    ret = CTL_EXIT_FAIL;
    b = open_broker(c);
    if (!b)
        goto out;
    broker_publish(b, &j, 1, c->idempotency_ttl_s, on_publish, &pr);
    ret = call_result(&pr.k, "submit", NULL);
    if (ret != CTL_EXIT_OK)
        goto out;
    if (pr.dup)
        printf("duplicate of %s\n", pr.id);
    else
        printf("%s\n", pr.id[0] ? pr.id : j->id);
out:
    if (b)
        broker_close(b);
    job_free(j);
    cJSON_Delete(parsed);
    free(stdin_buf);
    return ret;
}

/* ---- status ------------------------------------------------------------- */

struct status_res {
    struct call k;
    struct sbuf out;
};

static void add_str_or_null(struct sbuf *b, const char *key, const char *v)
{
    sbuf_addf(b, ",\"%s\":", key);
    if (v && *v)
        sbuf_add_json_str(b, v);
    else
        sbuf_adds(b, "null");
}

static void add_time(struct sbuf *b, const char *key, int64_t ms)
{
    char buf[CLOCK_RFC3339_LEN];
    add_str_or_null(b, key, ms > 0 ? clock_rfc3339(ms, buf) : NULL);
}

/* The status as one JSON object. The payload is embedded as JSON when it
 * parses, else as a string. */
static void status_json(struct sbuf *b, const struct job_status *st)
{
    sbuf_adds(b, "{\"id\":");
    sbuf_add_json_str(b, st->id);
    add_str_or_null(b, "type", st->type);
    add_str_or_null(b, "state", job_state_str(st->state));
    sbuf_addf(b, ",\"attempt\":%d,\"max_attempts\":%d,\"epoch\":%" PRId64, st->attempt,
              st->max_attempts, st->epoch);
    if (st->held)
        sbuf_adds(b, ",\"held\":true");
    add_time(b, "created_at", st->created_ms);
    add_time(b, "updated_at", st->updated_ms);
    add_time(b, "not_before", st->not_before_ms);
    add_time(b, "started_at", st->started_ms);
    add_time(b, "finished_at", st->finished_ms);
    add_str_or_null(b, "last_error", st->last_error);
    add_str_or_null(b, "traceparent", st->traceparent);
    add_str_or_null(b, "idempotency_key", st->idem_key);
    sbuf_adds(b, ",\"payload\":");
    cJSON *p = st->payload ? json_parse(st->payload, strlen(st->payload)) : NULL;
    if (p)
        sbuf_adds(b, st->payload);
    else if (st->payload)
        sbuf_add_json_str(b, st->payload);
    else
        sbuf_adds(b, "null");
    cJSON_Delete(p);
    sbuf_adds(b, "}");
}

static void on_status(void *arg, enum cv_rc rc, const struct job_status *st)
{
    struct status_res *s = arg;
    s->k.called = 1;
    s->k.rc = rc;
    if (rc == CV_OK && st)
        status_json(&s->out, st);
}

/* Check that a command got exactly one ID argument. */
static int one_id(int argc, char **argv, const char **id)
{
    if (argc != 2)
        return ctl_usage("%s: give exactly one job ID", argv[0]);
    if (!uuid_valid(argv[1]))
        return ctl_usage("%s: '%s' is not a job id (a UUID)", argv[0], argv[1]);
    *id = argv[1];
    return CTL_EXIT_OK;
}

int ctl_status(const struct cfg *c, int argc, char **argv)
{
    const char *id = NULL;
    struct status_res s = { 0 };
    struct broker *b = NULL;
    int ret = one_id(argc, argv, &id);
    sbuf_init(&s.out);
    if (ret != CTL_EXIT_OK)
        goto out;
    ret = CTL_EXIT_FAIL;
    b = open_broker(c);
    if (!b)
        goto out;
    broker_get(b, id, on_status, &s);
    ret = call_result(&s.k, "status", id);
    if (ret == CTL_EXIT_OK)
        printf("%s\n", s.out.p ? s.out.p : "{}");
out:
    if (b)
        broker_close(b);
    sbuf_cleanup(&s.out);
    return ret;
}

/* ---- dead --------------------------------------------------------------- */

static void on_dead(void *arg, enum cv_rc rc, const struct job_status *st, size_t n)
{
    struct call *k = arg;
    k->called = 1;
    k->rc = rc;
    if (rc != CV_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        printf("%s %s %s%s %d ", st[i].id, st[i].type, job_state_str(st[i].state),
               st[i].held ? "(held)" : "", st[i].attempt);
        print_line_safe(st[i].last_error);
        putchar('\n');
    }
}

int ctl_dead(const struct cfg *c, int argc, char **argv)
{
    int ret = CTL_EXIT_USAGE;
    const char *type = NULL, *limit_s = NULL;
    int64_t limit = DEAD_LIMIT_DEFAULT;
    struct call k = { 0 };
    struct broker *b = NULL;

    for (int i = 1; i < argc; i++) {
        int m;
        if ((m = ctl_opt(argc, argv, &i, "--type", &type)) == 0 &&
            (m = ctl_opt(argc, argv, &i, "--limit", &limit_s)) == 0) {
            ret = ctl_usage("dead: unexpected argument '%s'", argv[i]);
            goto out;
        }
        if (m < 0)
            goto out;
    }
    if (type && !job_type_valid(type, strlen(type))) {
        ret = ctl_usage("dead: bad type '%s'", type);
        goto out;
    }
    if (limit_s && ctl_parse_int64(limit_s, 1, DEAD_LIMIT_MAX, &limit) != 0) {
        ret = ctl_usage("dead: --limit wants 1..%d", DEAD_LIMIT_MAX);
        goto out;
    }
    ret = CTL_EXIT_FAIL;
    b = open_broker(c);
    if (!b)
        goto out;
    broker_dead_list(b, type, (int)limit, on_dead, &k);
    ret = call_result(&k, "dead", NULL);
out:
    if (b)
        broker_close(b);
    return ret;
}

/* ---- retry -------------------------------------------------------------- */

static void on_done(void *arg, enum cv_rc rc)
{
    struct call *k = arg;
    k->called = 1;
    k->rc = rc;
}

int ctl_retry(const struct cfg *c, int argc, char **argv)
{
    const char *id = NULL;
    struct call k = { 0 };
    struct broker *b = NULL;
    int ret = one_id(argc, argv, &id);
    if (ret != CTL_EXIT_OK)
        goto out;
    ret = CTL_EXIT_FAIL;
    b = open_broker(c);
    if (!b)
        goto out;
    broker_dead_retry(b, id, on_done, &k);
    ret = call_result(&k, "retry", id);
    if (ret == CTL_EXIT_OK)
        printf("requeued %s\n", id);
out:
    if (b)
        broker_close(b);
    return ret;
}

struct purge_call {
    int called;
    enum cv_rc rc;
    enum broker_purge what;
};

static void on_purge(void *arg, enum cv_rc rc, enum broker_purge what)
{
    struct purge_call *k = arg;
    k->called = 1;
    k->rc = rc;
    k->what = what;
}

int ctl_purge(const struct cfg *c, int argc, char **argv)
{
    const char *id = NULL;
    struct purge_call k = { 0, CV_OK, BROKER_PURGE_UNKNOWN };
    struct broker *b = NULL;
    int ret = one_id(argc, argv, &id);
    if (ret != CTL_EXIT_OK)
        goto out;
    ret = CTL_EXIT_FAIL;
    b = open_broker(c);
    if (!b)
        goto out;
    broker_dead_purge(b, id, on_purge, &k);
    if (!k.called || k.rc != CV_OK)
        ret = ctl_fail("purge failed: %s", k.called ? cv_rc_str(k.rc) : "no answer");
    else if (k.what == BROKER_PURGE_UNKNOWN)
        ret = ctl_fail("purge: no job %s", id);
    else if (k.what == BROKER_PURGE_LIVE)
        ret = ctl_fail("purge: job %s is not dead or failed", id);
    else if (k.what == BROKER_PURGE_HELD)
        ret = ctl_fail("purge: job %s is held (its effects may be unsettled: money may be "
                       "debited); `conveyorctl held` lists it, the reconciler settles it",
                       id);
    else {
        printf("purged %s\n", id);
        ret = CTL_EXIT_OK;
    }
out:
    if (b)
        broker_close(b);
    return ret;
}

/* ---- queues and workers ------------------------------------------------- */

static void on_queues(void *arg, enum cv_rc rc, const struct queue_stat *q, size_t n)
{
    struct call *k = arg;
    k->called = 1;
    k->rc = rc;
    if (rc != CV_OK)
        return;
    printf("%-31s %10s %10s %10s %9s %10s %10s %14s\n", "TYPE", "DEPTH", "LAG", "PENDING",
           "CONSUMERS", "SCHEDULED", "DEAD", "OLDEST_AGE_MS");
    for (size_t i = 0; i < n; i++) {
        char lag[24] = "?";
        if (q[i].lag >= 0)
            snprintf(lag, sizeof(lag), "%lld", q[i].lag);
        printf("%-31s %10lld %10s %10lld %9lld %10lld %10lld %14" PRId64 "\n", q[i].type,
               q[i].depth, lag, q[i].pending, q[i].consumers, q[i].scheduled, q[i].dead,
               q[i].oldest_age_ms);
    }
}

static int no_args(int argc, char **argv)
{
    if (argc > 1)
        return ctl_usage("%s: unexpected argument '%s'", argv[0], argv[1]);
    return CTL_EXIT_OK;
}

int ctl_queues(const struct cfg *c, int argc, char **argv)
{
    struct call k = { 0 };
    struct broker *b = NULL;
    int ret = no_args(argc, argv);
    if (ret != CTL_EXIT_OK)
        goto out;
    ret = CTL_EXIT_FAIL;
    b = open_broker(c);
    if (!b)
        goto out;
    broker_queues(b, on_queues, &k);
    ret = call_result(&k, "queues", NULL);
out:
    if (b)
        broker_close(b);
    return ret;
}

static void on_workers(void *arg, enum cv_rc rc, const struct worker_info *w, size_t n)
{
    struct call *k = arg;
    k->called = 1;
    k->rc = rc;
    if (rc != CV_OK)
        return;
    int64_t now = clock_wall_ms();
    printf("%-32s %-20s %8s %5s %12s %10s %10s  %s\n", "NAME", "HOST", "PID", "CONC",
           "PROCESSED", "SEEN_MS", "UPTIME_S", "TYPES");
    for (size_t i = 0; i < n; i++)
        printf("%-32s %-20s %8d %5d %12lld %10" PRId64 " %10" PRId64 "  %s\n", w[i].name,
               w[i].host, w[i].pid, w[i].concurrency, w[i].processed, now - w[i].last_seen_ms,
               w[i].started_ms > 0 ? (now - w[i].started_ms) / 1000 : 0, w[i].types);
}

int ctl_workers(const struct cfg *c, int argc, char **argv)
{
    struct call k = { 0 };
    struct broker *b = NULL;
    int ret = no_args(argc, argv);
    if (ret != CTL_EXIT_OK)
        goto out;
    ret = CTL_EXIT_FAIL;
    b = open_broker(c);
    if (!b)
        goto out;
    broker_workers(b, WORKERS_ALIVE_MS, on_workers, &k);
    ret = call_result(&k, "workers", NULL);
out:
    if (b)
        broker_close(b);
    return ret;
}
