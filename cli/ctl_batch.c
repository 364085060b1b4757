/* ctl_batch.c - conveyorctl submit --file FILE|- [--batch N]: many jobs from a
 * jobs file, one JSON object per line (ctl_ndjson_job says what a line holds).
 *
 * Jobs go straight to the broker with broker_publish, as `submit` does (no API
 * key needed; the operator holds the broker's credentials): batched per type
 * in chunks of up to N (default and most 1000, the API's batch limit), each
 * chunk one atomic publish. Lines are checked one by one, exactly as the API
 * checks a job; a bad line is refused alone (with its number and why) and the
 * others go on. Jobs without an idempotency_key are new jobs every time: a
 * file submitted twice makes every job twice unless its lines carry keys.
 *
 * Output: a summary (accepted, duplicates, refused with line numbers and
 * reasons) on stdout, each refused line on stderr as it happens, a progress
 * bar on a terminal. Exit 0 when every line was accepted or a duplicate, 1
 * when any was refused, 5 when the broker cannot be reached at all. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker.h"
#include "clock.h"
#include "ctl.h"
#include "job.h"
#include "jobtype.h"
#include "mem.h"
#include "sbuf.h"

#define CHUNK_MAX 1000
/* A line holds a payload (at most http.body_max_bytes) and a few members. */
#define LINE_SLACK 4096

struct chunk {
    struct job *jobs[CHUNK_MAX];
    long long line[CHUNK_MAX];
    size_t n;
};

struct run {
    const struct cfg *c;
    struct broker *b;
    struct chunk chunks[JT_N];   /* one per job type */
    size_t chunk_max;
    long long accepted, duplicates, refused, lines;
    struct sbuf refusals;        /* JSON array members */
};

static void refuse(struct run *r, long long line, const char *why)
{
    r->refused++;
    fprintf(stderr, "conveyorctl: line %lld: %s\n", line, why);
    sbuf_addf(&r->refusals, "%s{\"line\":%lld,\"reason\":", r->refused > 1 ? "," : "", line);
    sbuf_add_json_str(&r->refusals, why);
    sbuf_add(&r->refusals, "}", 1);
}

struct flush_res {
    struct run *r;
    struct chunk *ch;
    int called;
};

static void on_published(void *arg, enum cv_rc rc, const char *const *ids, const int *dup,
                         size_t n)
{
    struct flush_res *f = arg;
    struct run *r = f->r;
    char why[128];
    f->called = 1;
    for (size_t i = 0; i < f->ch->n; i++) {
        if (rc != CV_OK || i >= n) {
            snprintf(why, sizeof(why), "not published: %s (its whole chunk of %zu failed)",
                     cv_rc_str(rc), f->ch->n);
            refuse(r, f->ch->line[i], why);
        } else if (dup[i] == 0) {
            r->accepted++;
        } else if (dup[i] == 1) {
            r->duplicates++;
        } else if (dup[i] == 2) {
            refuse(r, f->ch->line[i], "its job id belongs to another job");
        } else {
            /* dup 3: backpressure; ids[i] is the seconds to wait */
            snprintf(why, sizeof(why), "refused: %s holds its max_queued jobs, retry in %s s",
                     f->ch->jobs[i]->type, ids[i] ? ids[i] : "?");
            refuse(r, f->ch->line[i], why);
        }
    }
}

static void flush(struct run *r, struct chunk *ch)
{
    struct flush_res f = { r, ch, 0 };
    if (ch->n == 0)
        return;
    broker_publish(r->b, ch->jobs, ch->n, r->c->idempotency_ttl_s, on_published, &f);
    if (!f.called)
        on_published(&f, CV_ERR_UNAVAILABLE, NULL, NULL, 0);
    for (size_t i = 0; i < ch->n; i++)
        job_free(ch->jobs[i]);
    ch->n = 0;
}

/* Lines in a regular file, for the progress bar; 0 when unknown (a pipe). */
static long long count_lines(const char *path)
{
    struct stat st;
    long long n = 0;
    if (strcmp(path, "-") == 0 || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[65536];
    size_t got, last = '\n';
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0) {
        for (size_t i = 0; i < got; i++)
            n += buf[i] == '\n';
        last = (unsigned char)buf[got - 1];
    }
    fclose(f);
    return n + (last != '\n');
}

int ctl_submit_file(const struct cfg *c, int argc, char **argv)
{
    int ret = CTL_EXIT_USAGE;
    const char *path = NULL, *batch = NULL;
    int64_t chunk = CHUNK_MAX;
    FILE *in = NULL;
    char *line = NULL;
    size_t cap = 0;
    struct run *r = xcalloc(1, sizeof(*r));
    struct ctl_progress bar = { 0 };
    sbuf_init(&r->refusals);
    for (int i = 1; i < argc; i++) {
        int m;
        if ((m = ctl_opt(argc, argv, &i, "--file", &path)) != 0 ||
            (m = ctl_opt(argc, argv, &i, "-f", &path)) != 0 ||
            (m = ctl_opt(argc, argv, &i, "--batch", &batch)) != 0) {
            if (m < 0)
                goto out;
        } else {
            ret = ctl_usage("submit --file: unexpected argument '%s' (the type and options "
                            "of each job are in its line)", argv[i]);
            goto out;
        }
    }
    if (!path) {
        ret = ctl_usage("submit --file: give a FILE (or - for stdin)");
        goto out;
    }
    if (batch && ctl_parse_int64(batch, 1, CHUNK_MAX, &chunk) != 0) {
        ret = ctl_usage("submit --file: --batch wants 1..%d", CHUNK_MAX);
        goto out;
    }
    in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) {
        ret = ctl_usage("submit --file: cannot open %s", path);
        goto out;
    }
    ret = ctl_broker_open(c, "submit --file", &r->b);
    if (ret != CTL_EXIT_OK)
        goto out;
    r->c = c;
    r->chunk_max = (size_t)chunk;
    ctl_catch_interrupt();
    ctl_progress_start(&bar, "submit", count_lines(path));
    size_t line_max = (size_t)c->body_max_bytes + LINE_SLACK;
    ssize_t len;
    while (!ctl_interrupted() && (len = getline(&line, &cap, in)) >= 0) {
        char why[512];
        struct job *j = NULL;
        r->lines++;
        int got = (size_t)len > line_max
                      ? (snprintf(why, sizeof(why), "line longer than %zu bytes", line_max), -1)
                      : ctl_ndjson_job(c, line, (size_t)len, clock_wall_ms(), &j, why,
                                       sizeof(why));
        if (got < 0)
            refuse(r, r->lines, why);
        if (got > 0) {
            struct chunk *ch = &r->chunks[jobtype_index(j->type)];
            ch->jobs[ch->n] = j;
            ch->line[ch->n++] = r->lines;
            if (ch->n == r->chunk_max)
                flush(r, ch);
        }
        ctl_progress_set(&bar, r->lines);
    }
    int interrupted = ctl_interrupted();
    if (!interrupted && ferror(in))
        refuse(r, r->lines + 1, "read error: the rest of the input was not read");
    /* what the lines so far made is published even after Ctrl-C: each job was
     * accepted by its line's check, and stopping half-way must not lose it */
    for (int t = 0; t < JT_N; t++)
        flush(r, &r->chunks[t]);
    ctl_progress_end(&bar);
    if (ctl_json)
        printf("{\"lines\":%lld,\"accepted\":%lld,\"duplicates\":%lld,\"refused\":[%s],"
               "\"interrupted\":%s}\n",
               r->lines, r->accepted, r->duplicates, r->refusals.p ? r->refusals.p : "",
               interrupted ? "true" : "false");
    else
        printf("lines %lld: accepted %lld, duplicates %lld, refused %lld%s\n", r->lines,
               r->accepted, r->duplicates, r->refused, interrupted ? " (interrupted)" : "");
    ret = r->refused || interrupted ? CTL_EXIT_FAIL : CTL_EXIT_OK;
out:
    if (in && in != stdin)
        fclose(in);
    for (int t = 0; t < JT_N; t++)
        for (size_t i = 0; i < r->chunks[t].n; i++)
            job_free(r->chunks[t].jobs[i]);
    if (r->b)
        broker_close(r->b);
    sbuf_cleanup(&r->refusals);
    free(line);
    free(r);
    return ret;
}
