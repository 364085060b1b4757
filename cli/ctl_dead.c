/* ctl_dead.c - conveyorctl dead: the dead-letter set.
 *
 *   dead [list] [--type T] [--since S] [--limit N]   newest first
 *   dead show ID                                     one job's status
 *   dead retry ID... | --all [--type T] [--since S] [--limit N]
 *   dead purge ID... [--yes]
 *   retry ID..., purge ID...                         the old forms (runbooks use them)
 *
 * Exit codes: one job: 3 unknown, 4 not dead (retry, purge) or held (purge),
 * 5 broker down. Several: 0 when every one went through, else the code all
 * failures share, else 1.
 *
 * Bulk replay (--all) first walks the set with broker_dead_page and keeps the
 * ids (a snapshot: a job that dies again while we replay is not replayed
 * twice), then replays them one by one with a progress bar on a terminal.
 * Ctrl-C stops between two jobs and still prints the summary. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "clock.h"
#include "ctl.h"
#include "job.h"
#include "mem.h"
#include "sbuf.h"
#include "uuid.h"

#define LIMIT_DEFAULT 100
#define LIMIT_MAX 10000
#define PAGE 1000
#define ALL_MAX 10000000

/* The filters of list and retry --all. */
struct filter {
    const char *type;
    int64_t since_ms;        /* 0 = none */
    int64_t limit;
    int all;
    int yes;
};

/* Parse the options shared by the subcommands into f; positional arguments
 * (ids) are left in ids[0..*nids). Returns CTL_EXIT_OK or the usage code. */
static int parse(int argc, char **argv, int first, const char *what, struct filter *f,
                 char **ids, int *nids)
{
    const char *v = NULL, *limit = NULL;
    *nids = 0;
    for (int i = first; i < argc; i++) {
        int m;
        if ((m = ctl_opt(argc, argv, &i, "--type", &v)) != 0) {
            if (m < 0)
                return CTL_EXIT_USAGE;
            if (!job_type_valid(v, strlen(v)))
                return ctl_usage("%s: bad type '%s'", what, v);
            f->type = v;
        } else if ((m = ctl_opt(argc, argv, &i, "--since", &v)) != 0) {
            if (m < 0)
                return CTL_EXIT_USAGE;
            if (ctl_parse_since(v, clock_wall_ms(), &f->since_ms) != 0)
                return ctl_usage("%s: --since wants a duration (90s, 15m, 2h, 7d, 1h30m) "
                                 "or an RFC 3339 time, not '%s'", what, v);
        } else if ((m = ctl_opt(argc, argv, &i, "--limit", &limit)) != 0) {
            if (m < 0)
                return CTL_EXIT_USAGE;
        } else if (ctl_flag(argv, i, "--all")) {
            f->all = 1;
        } else if (ctl_flag(argv, i, "--yes") || ctl_flag(argv, i, "-y")) {
            f->yes = 1;
        } else if (argv[i][0] == '-') {
            return ctl_usage("%s: unknown option '%s'", what, argv[i]);
        } else if (!uuid_valid(argv[i])) {
            return ctl_usage("%s: '%s' is not a job id (a UUID)", what, argv[i]);
        } else {
            ids[(*nids)++] = argv[i];
        }
    }
    int64_t max = f->all ? ALL_MAX : LIMIT_MAX;
    if (limit && ctl_parse_int64(limit, 1, max, &f->limit) != 0)
        return ctl_usage("%s: --limit wants 1..%" PRId64, what, max);
    return CTL_EXIT_OK;
}

/* ---- list ------------------------------------------------------------------- */

struct page_res {
    struct ctl_call k;
    char next[BROKER_CURSOR_LEN];
    /* list: print; --all: collect ids */
    char (*ids)[UUID_STR_LEN];
    size_t nids, cap;
    int collect;
};

static void print_dead(const struct job_status *st)
{
    if (ctl_json) {
        struct sbuf b;
        sbuf_init(&b);
        ctl_status_json(&b, st);
        puts(b.p);
        sbuf_cleanup(&b);
        return;
    }
    /* id type state[(held)] attempt last_error: the runbooks' columns */
    printf("%s %s %s%s %d ", st->id, st->type, job_state_str(st->state),
           st->held ? "(held)" : "", st->attempt);
    ctl_put_safe(st->last_error);
    putchar('\n');
}

static void on_page(void *arg, enum cv_rc rc, const struct job_status *st, size_t n,
                    const char *next)
{
    struct page_res *p = arg;
    p->k.called = 1;
    p->k.rc = rc;
    snprintf(p->next, sizeof(p->next), "%s", rc == CV_OK ? next : "");
    for (size_t i = 0; rc == CV_OK && i < n; i++) {
        if (!p->collect) {
            print_dead(&st[i]);
            continue;
        }
        if (p->nids == p->cap) {
            p->cap = p->cap ? p->cap * 2 : PAGE;
            p->ids = xrealloc(p->ids, p->cap * sizeof(*p->ids));
        }
        memcpy(p->ids[p->nids++], st[i].id, UUID_STR_LEN);
    }
}

static int dead_list(struct broker *b, const struct filter *f)
{
    struct page_res p = { 0 };
    broker_dead_page(b, f->type, f->since_ms, "", (int)(f->limit ? f->limit : LIMIT_DEFAULT),
                     on_page, &p);
    return ctl_call_result(&p.k, "dead", NULL);
}

/* ---- show ------------------------------------------------------------------- */

struct show_res {
    struct ctl_call k;
    struct sbuf out;
};

static void on_show(void *arg, enum cv_rc rc, const struct job_status *st)
{
    struct show_res *s = arg;
    char t[CLOCK_RFC3339_LEN];
    s->k.called = 1;
    s->k.rc = rc;
    if (rc != CV_OK || !st)
        return;
    if (ctl_json) {
        ctl_status_json(&s->out, st);
        sbuf_add(&s->out, "\n", 1);
        return;
    }
    sbuf_addf(&s->out, "id            %s\ntype          %s\nstate         %s%s\n", st->id,
              st->type, job_state_str(st->state), st->held ? " (held: effects may be unsettled)"
                                                           : "");
    sbuf_addf(&s->out, "attempt       %d of %d\n", st->attempt, st->max_attempts);
    sbuf_addf(&s->out, "created       %s\n", st->created_ms ? clock_rfc3339(st->created_ms, t)
                                                            : "-");
    sbuf_addf(&s->out, "finished      %s\n", st->finished_ms ? clock_rfc3339(st->finished_ms, t)
                                                             : "-");
    sbuf_addf(&s->out, "last_error    %s\n", st->last_error[0] ? st->last_error : "-");
    sbuf_addf(&s->out, "idempotency   %s\n", st->idem_key ? st->idem_key : "-");
    sbuf_addf(&s->out, "traceparent   %s\n", st->traceparent[0] ? st->traceparent : "-");
    sbuf_addf(&s->out, "payload       %s\n", st->payload ? st->payload : "-");
}

static int dead_show(struct broker *b, const char *id)
{
    struct show_res s = { 0 };
    sbuf_init(&s.out);
    broker_get(b, id, on_show, &s);
    int ret = ctl_call_result(&s.k, "dead show", id);
    if (ret == CTL_EXIT_OK)
        fputs(s.out.p ? s.out.p : "", stdout);
    sbuf_cleanup(&s.out);
    return ret;
}

/* ---- retry and purge, one job --------------------------------------------- */

/* The outcome of one job: an exit code and, when it failed, why. */
struct one {
    int code;
    const char *why;
};

static void on_done(void *arg, enum cv_rc rc)
{
    struct ctl_call *k = arg;
    k->called = 1;
    k->rc = rc;
}

static struct one retry_one(struct broker *b, const char *id)
{
    struct ctl_call k = { 0 };
    broker_dead_retry(b, id, on_done, &k);
    if (!k.called)
        return (struct one){ CTL_EXIT_UNAVAILABLE, "the broker did not answer" };
    switch (k.rc) {
    case CV_OK: return (struct one){ CTL_EXIT_OK, NULL };
    case CV_ERR_NOT_FOUND: return (struct one){ CTL_EXIT_NOT_FOUND, "no such job" };
    case CV_ERR_CONFLICT: return (struct one){ CTL_EXIT_CONFLICT, "not dead or failed" };
    default: return (struct one){ ctl_exit_of(k.rc), cv_rc_str(k.rc) };
    }
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

static struct one purge_one(struct broker *b, const char *id)
{
    struct purge_call k = { 0, CV_OK, BROKER_PURGE_UNKNOWN };
    broker_dead_purge(b, id, on_purge, &k);
    if (!k.called)
        return (struct one){ CTL_EXIT_UNAVAILABLE, "the broker did not answer" };
    if (k.rc != CV_OK)
        return (struct one){ ctl_exit_of(k.rc), cv_rc_str(k.rc) };
    switch (k.what) {
    case BROKER_PURGED: return (struct one){ CTL_EXIT_OK, NULL };
    case BROKER_PURGE_UNKNOWN: return (struct one){ CTL_EXIT_NOT_FOUND, "no such job" };
    case BROKER_PURGE_LIVE: return (struct one){ CTL_EXIT_CONFLICT, "not dead or failed" };
    case BROKER_PURGE_HELD:
        return (struct one){ CTL_EXIT_CONFLICT,
                             "held: its effects may be unsettled (money may be debited); "
                             "`conveyorctl held` lists it, the reconciler settles it" };
    }
    return (struct one){ CTL_EXIT_FAIL, "unknown answer" };
}

/* ---- several jobs ------------------------------------------------------------- */

struct tally {
    long long ok, failed;
    int code;                /* the code every failure shared so far, -1 when mixed */
    struct sbuf errors;      /* --json: the failures, a JSON array's members */
};

static void tally_add(struct tally *t, const char *verb, const char *id, struct one r,
                      int quiet)
{
    if (r.code == CTL_EXIT_OK) {
        t->ok++;
        if (!ctl_json && !quiet)
            printf("%s %s\n", verb, id);
        return;
    }
    t->failed++;
    t->code = t->failed == 1 ? r.code : t->code == r.code ? t->code : -1;
    if (ctl_json) {
        sbuf_adds(&t->errors, t->failed > 1 ? ",{\"id\":" : "{\"id\":");
        sbuf_add_json_str(&t->errors, id);
        sbuf_addf(&t->errors, ",\"exit\":%d,\"error\":", r.code);
        sbuf_add_json_str(&t->errors, r.why);
        sbuf_add(&t->errors, "}", 1);
    }
    fprintf(stderr, "conveyorctl: %s %s: %s\n", verb, id, r.why);
}

/* Print the summary; the exit code. */
static int tally_end(struct tally *t, const char *verb, int summary, int interrupted)
{
    if (ctl_json)
        printf("{\"%s\":%lld,\"failed\":%lld,\"interrupted\":%s,\"errors\":[%s]}\n", verb, t->ok,
               t->failed, interrupted ? "true" : "false", t->errors.p ? t->errors.p : "");
    else if (summary)
        printf("%s %lld, failed %lld%s\n", verb, t->ok, t->failed,
               interrupted ? " (interrupted)" : "");
    sbuf_cleanup(&t->errors);
    if (interrupted)
        return CTL_EXIT_FAIL;
    if (t->failed == 0)
        return CTL_EXIT_OK;
    return t->code > 0 ? t->code : CTL_EXIT_FAIL;
}

static int dead_retry_ids(struct broker *b, char **ids, int n)
{
    struct tally t = { 0 };
    sbuf_init(&t.errors);
    for (int i = 0; i < n; i++)
        tally_add(&t, "requeued", ids[i], retry_one(b, ids[i]), 0);
    return tally_end(&t, "requeued", n > 1, 0);
}

static int dead_retry_all(struct broker *b, const struct filter *f)
{
    struct page_res p = { 0 };
    struct tally t = { 0 };
    struct ctl_progress bar;
    int ret;
    p.collect = 1;
    sbuf_init(&t.errors);
    /* the snapshot: every id the filters select, newest first */
    do {
        int64_t want = f->limit ? f->limit - (int64_t)p.nids : PAGE;
        broker_dead_page(b, f->type, f->since_ms, p.next, (int)(want < PAGE ? want : PAGE),
                         on_page, &p);
        ret = ctl_call_result(&p.k, "dead retry --all", NULL);
        if (ret != CTL_EXIT_OK)
            goto out;
    } while (p.next[0] && (!f->limit || (int64_t)p.nids < f->limit) && !ctl_interrupted());
    ctl_progress_start(&bar, "requeue", (long long)p.nids);
    size_t i = 0;
    for (; i < p.nids && !ctl_interrupted(); i++) {
        tally_add(&t, "requeued", p.ids[i], retry_one(b, p.ids[i]), 1);
        ctl_progress_set(&bar, (long long)i + 1);
    }
    ctl_progress_end(&bar);
    ret = tally_end(&t, "requeued", 1, i < p.nids);
out:
    free(p.ids);
    sbuf_cleanup(&t.errors);
    return ret;
}

static int dead_purge_ids(struct broker *b, char **ids, int n, int yes)
{
    struct tally t = { 0 };
    sbuf_init(&t.errors);
    /* a question only for a person at a terminal; scripts pass no terminal */
    if (!yes && ctl_isatty(STDIN_FILENO) &&
        !ctl_confirm("purge %d dead job%s for good (%s%s)?", n, n > 1 ? "s" : "", ids[0],
                     n > 1 ? ", ..." : "")) {
        sbuf_cleanup(&t.errors);
        return ctl_fail("purge: nothing purged");
    }
    for (int i = 0; i < n; i++)
        tally_add(&t, "purged", ids[i], purge_one(b, ids[i]), 0);
    return tally_end(&t, "purged", n > 1, 0);
}

/* ---- commands -------------------------------------------------------------------- */

/* Run subcommand sub with the options from argv[first..). */
static int run(const struct cfg *c, const char *sub, int argc, char **argv, int first)
{
    struct filter f = { 0 };
    char **ids = xcalloc((size_t)argc + 1, sizeof(*ids));
    struct broker *b = NULL;
    int n = 0, ret;
    char what[32];
    snprintf(what, sizeof(what), "dead %s", sub);
    ret = parse(argc, argv, first, what, &f, ids, &n);
    if (ret != CTL_EXIT_OK)
        goto out;
    int is_list = strcmp(sub, "list") == 0, is_retry = strcmp(sub, "retry") == 0;
    ret = CTL_EXIT_USAGE;
    if (is_list && n > 0)
        ctl_usage("dead list: unexpected argument '%s' (dead show ID?)", ids[0]);
    else if (!is_list && !(is_retry && f.all) && (f.type || f.since_ms))
        ctl_usage("%s: --type and --since go with list%s", what, is_retry ? " and --all" : "");
    else if (f.all && !is_retry)
        ctl_usage("%s: --all goes with retry only (purge one by one)", what);
    else if (f.all && n > 0)
        ctl_usage("%s: give ids or --all, not both", what);
    else if (!is_list && !f.all && n == 0)
        ctl_usage("%s: give the job ID(s)", what);
    else if (strcmp(sub, "show") == 0 && n != 1)
        ctl_usage("dead show: give exactly one job ID");
    else if (f.limit && !is_list && !f.all)
        ctl_usage("%s: --limit goes with list and retry --all", what);
    else
        ret = CTL_EXIT_OK;
    if (ret != CTL_EXIT_OK)
        goto out;
    ret = ctl_broker_open(c, what, &b);
    if (ret != CTL_EXIT_OK)
        goto out;
    if (is_list)
        ret = dead_list(b, &f);
    else if (strcmp(sub, "show") == 0)
        ret = dead_show(b, ids[0]);
    else if (is_retry && f.all)
        ret = dead_retry_all(b, &f);
    else if (is_retry)
        ret = dead_retry_ids(b, ids, n);
    else
        ret = dead_purge_ids(b, ids, n, f.yes);
out:
    if (b)
        broker_close(b);
    free(ids);
    return ret;
}

int ctl_dead(const struct cfg *c, int argc, char **argv)
{
    static const char *const subs[] = { "list", "show", "retry", "purge" };
    if (argc >= 2 && argv[1][0] != '-') {
        for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
            if (strcmp(argv[1], subs[i]) == 0) {
                if (strcmp(subs[i], "retry") == 0)
                    ctl_catch_interrupt();
                return run(c, subs[i], argc, argv, 2);
            }
        return ctl_usage("dead: unknown subcommand '%s' (list, show, retry, purge)", argv[1]);
    }
    return run(c, "list", argc, argv, 1);   /* `dead [--type T] [--limit N]`: the old form */
}

int ctl_retry(const struct cfg *c, int argc, char **argv)
{
    ctl_catch_interrupt();
    return run(c, "retry", argc, argv, 1);
}

int ctl_purge(const struct cfg *c, int argc, char **argv)
{
    return run(c, "purge", argc, argv, 1);
}
