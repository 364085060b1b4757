/* ctl_jobs.c - conveyorctl commands that talk to the broker: submit (one job),
 * status, queues, workers. (Dead letters: ctl_dead.c; submit --file:
 * ctl_batch.c.)
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
#define WORKERS_ALIVE_MS 10000

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
    struct ctl_call k;
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
    int file = 0;
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

    /* submit --file FILE is another command (ctl_batch.c) */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--file") == 0 || strncmp(argv[i], "--file=", 7) == 0 ||
            strcmp(argv[i], "-f") == 0)
            file = 1;
    if (file)
        return ctl_submit_file(c, argc, argv);

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

    ret = ctl_broker_open(c, "submit", &b);
    if (ret != CTL_EXIT_OK)
        goto out;
    broker_publish(b, &j, 1, c->idempotency_ttl_s, on_publish, &pr);
    ret = ctl_call_result(&pr.k, "submit", NULL);
    if (ret != CTL_EXIT_OK)
        goto out;
    /* dup: see broker_publish_cb */
    if (pr.dup == 2) {
        ret = ctl_failx(CTL_EXIT_CONFLICT, "submit: job id %s is taken by another job", j->id);
    } else if (pr.dup == 3) {
        ret = ctl_failx(CTL_EXIT_CONFLICT,
                        "submit: refused: %s holds its max_queued unsettled jobs; try again in "
                        "%s s", j->type, pr.id);
    } else if (ctl_json) {
        printf("{\"id\":\"%s\",\"duplicate\":%s}\n", pr.id[0] ? pr.id : j->id,
               pr.dup ? "true" : "false");
    } else if (pr.dup) {
        printf("duplicate of %s\n", pr.id);
    } else {
        printf("%s\n", pr.id[0] ? pr.id : j->id);
    }
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
    struct ctl_call k;
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
void ctl_status_json(struct sbuf *b, const struct job_status *st)
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
        ctl_status_json(&s->out, st);
}

int ctl_status(const struct cfg *c, int argc, char **argv)
{
    const char *id = NULL;
    struct status_res s = { 0 };
    struct broker *b = NULL;
    int ret = CTL_EXIT_OK;
    sbuf_init(&s.out);
    if (argc != 2) {
        ret = ctl_usage("status: give exactly one job ID");
        goto out;
    }
    id = argv[1];
    if (!uuid_valid(id)) {
        ret = ctl_usage("status: '%s' is not a job id (a UUID)", id);
        goto out;
    }
    ret = ctl_broker_open(c, "status", &b);
    if (ret != CTL_EXIT_OK)
        goto out;
    broker_get(b, id, on_status, &s);
    ret = ctl_call_result(&s.k, "status", id);
    if (ret == CTL_EXIT_OK)
        printf("%s\n", s.out.p ? s.out.p : "{}");
out:
    if (b)
        broker_close(b);
    sbuf_cleanup(&s.out);
    return ret;
}

/* ---- queues and workers ------------------------------------------------- */

void ctl_queues_table(const struct queue_stat *q, size_t n)
{
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

void ctl_queues_json(struct sbuf *b, const struct queue_stat *q, size_t n)
{
    sbuf_add(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        sbuf_adds(b, i ? ",{\"type\":" : "{\"type\":");
        sbuf_add_json_str(b, q[i].type);
        sbuf_addf(b, ",\"depth\":%lld,\"pending\":%lld,\"consumers\":%lld,"
                     "\"scheduled\":%lld,\"dead\":%lld,\"oldest_age_ms\":%" PRId64,
                  q[i].depth, q[i].pending, q[i].consumers, q[i].scheduled, q[i].dead,
                  q[i].oldest_age_ms);
        if (q[i].lag >= 0)
            sbuf_addf(b, ",\"lag\":%lld}", q[i].lag);
        else
            sbuf_adds(b, ",\"lag\":null}");
    }
    sbuf_add(b, "]", 1);
}

struct list_res {
    struct ctl_call k;
    struct sbuf json;
};

static void on_queues(void *arg, enum cv_rc rc, const struct queue_stat *q, size_t n)
{
    struct list_res *l = arg;
    l->k.called = 1;
    l->k.rc = rc;
    if (rc != CV_OK)
        return;
    if (ctl_json)
        ctl_queues_json(&l->json, q, n);
    else
        ctl_queues_table(q, n);
}

static int no_args(int argc, char **argv)
{
    if (argc > 1)
        return ctl_usage("%s: unexpected argument '%s'", argv[0], argv[1]);
    return CTL_EXIT_OK;
}

int ctl_queues(const struct cfg *c, int argc, char **argv)
{
    struct list_res l = { 0 };
    struct broker *b = NULL;
    int ret = no_args(argc, argv);
    sbuf_init(&l.json);
    if (ret != CTL_EXIT_OK)
        goto out;
    ret = ctl_broker_open(c, "queues", &b);
    if (ret != CTL_EXIT_OK)
        goto out;
    broker_queues(b, on_queues, &l);
    ret = ctl_call_result(&l.k, "queues", NULL);
    if (ret == CTL_EXIT_OK && ctl_json)
        printf("%s\n", l.json.p);
out:
    if (b)
        broker_close(b);
    sbuf_cleanup(&l.json);
    return ret;
}

void ctl_workers_table(const struct worker_info *w, size_t n, int64_t now_ms)
{
    printf("%-32s %-20s %8s %5s %12s %5s %8s %9s  %s\n", "NAME", "HOST", "PID", "CONC",
           "PROCESSED", "BUSY", "SEEN_S", "UPTIME_S", "TYPES");
    for (size_t i = 0; i < n; i++)
        printf("%-32s %-20s %8d %5d %12lld %5s %8.1f %9" PRId64 "  %s\n", w[i].name, w[i].host,
               w[i].pid, w[i].concurrency, w[i].processed, w[i].recent > 0 ? "yes" : "no",
               (double)(now_ms - w[i].last_seen_ms) / 1000.0,
               w[i].started_ms > 0 ? (now_ms - w[i].started_ms) / 1000 : 0, w[i].types);
}

void ctl_workers_json(struct sbuf *b, const struct worker_info *w, size_t n, int64_t now_ms)
{
    sbuf_add(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        sbuf_adds(b, i ? ",{\"name\":" : "{\"name\":");
        sbuf_add_json_str(b, w[i].name);
        sbuf_adds(b, ",\"host\":");
        sbuf_add_json_str(b, w[i].host);
        sbuf_adds(b, ",\"types\":");
        sbuf_add_json_str(b, w[i].types);
        sbuf_addf(b, ",\"pid\":%d,\"concurrency\":%d,\"processed\":%lld,\"recent\":%lld,"
                     "\"seen_ms_ago\":%" PRId64 ",\"uptime_s\":%" PRId64 "}",
                  w[i].pid, w[i].concurrency, w[i].processed, w[i].recent,
                  now_ms - w[i].last_seen_ms,
                  w[i].started_ms > 0 ? (now_ms - w[i].started_ms) / 1000 : 0);
    }
    sbuf_add(b, "]", 1);
}

static void on_workers(void *arg, enum cv_rc rc, const struct worker_info *w, size_t n)
{
    struct list_res *l = arg;
    l->k.called = 1;
    l->k.rc = rc;
    if (rc != CV_OK)
        return;
    if (ctl_json)
        ctl_workers_json(&l->json, w, n, clock_wall_ms());
    else
        ctl_workers_table(w, n, clock_wall_ms());
}

int ctl_workers(const struct cfg *c, int argc, char **argv)
{
    struct list_res l = { 0 };
    struct broker *b = NULL;
    int ret = no_args(argc, argv);
    sbuf_init(&l.json);
    if (ret != CTL_EXIT_OK)
        goto out;
    ret = ctl_broker_open(c, "workers", &b);
    if (ret != CTL_EXIT_OK)
        goto out;
    broker_workers(b, WORKERS_ALIVE_MS, on_workers, &l);
    ret = ctl_call_result(&l.k, "workers", NULL);
    if (ret == CTL_EXIT_OK && ctl_json)
        printf("%s\n", l.json.p);
out:
    if (b)
        broker_close(b);
    sbuf_cleanup(&l.json);
    return ret;
}
