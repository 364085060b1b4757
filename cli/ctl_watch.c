/* ctl_watch.c - conveyorctl watch [--count N]: queues, workers and held money,
 * refreshed every second until Ctrl-C (or N frames).
 *
 * On a terminal each frame replaces the previous one (the screen is cleared);
 * in a pipe or a file the frames follow each other, each starting with a
 * "--- <time>" line, so that `watch --count 1 > file` or a log collector gets
 * plain text. --json prints one object per frame and line.
 *
 * A store that stops answering does not end the watch: its part of the frame
 * says "unavailable" and the next frame tries again (db_new reconnects; the
 * broker's synchronous link reconnects on its own). Only a broker that cannot
 * be reached at the start ends it (exit 5). PostgreSQL is optional: without
 * pg.dsn the held money line is left out. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "clock.h"
#include "ctl.h"
#include "db.h"
#include "sbuf.h"
#include "uuid.h"

#define PERIOD_MS 1000
#define WORKERS_ALIVE_MS 10000
#define HELD_SAMPLE 1000
#define DB_TIMEOUT_MS 2000

struct frame {
    struct ctl_call kq, kw;
    long long live, busy;
    struct sbuf json;         /* --json: the members so far */
};

static void on_queues(void *arg, enum cv_rc rc, const struct queue_stat *q, size_t n)
{
    struct frame *f = arg;
    f->kq.called = 1;
    f->kq.rc = rc;
    if (rc != CV_OK)
        return;
    if (ctl_json) {
        sbuf_adds(&f->json, ",\"queues\":");
        ctl_queues_json(&f->json, q, n);
        return;
    }
    ctl_queues_table(q, n);
}

static void on_workers(void *arg, enum cv_rc rc, const struct worker_info *w, size_t n)
{
    struct frame *f = arg;
    int64_t now = clock_wall_ms();
    f->kw.called = 1;
    f->kw.rc = rc;
    if (rc != CV_OK)
        return;
    f->live = (long long)n;
    for (size_t i = 0; i < n; i++)
        f->busy += w[i].recent > 0;
    if (ctl_json) {
        sbuf_adds(&f->json, ",\"workers\":");
        ctl_workers_json(&f->json, w, n, now);
        return;
    }
    printf("\nWORKERS  live %lld, busy %lld\n", f->live, f->busy);
    ctl_workers_table(w, n, now);
}

/* One frame on stdout. */
static void frame(struct broker *b, struct db *d, int tty, int count)
{
    struct frame f;
    char at[CLOCK_RFC3339_LEN];
    memset(&f, 0, sizeof(f));
    sbuf_init(&f.json);
    clock_rfc3339(clock_wall_ms(), at);
    if (ctl_json) {
        sbuf_adds(&f.json, "{\"at\":");
        sbuf_add_json_str(&f.json, at);
    } else {
        if (tty)
            fputs("\033[H\033[2J", stdout);     /* home, clear screen */
        printf("--- %s  conveyorctl watch (every 1 s%s)\n\nQUEUES\n", at,
               count ? "" : "; Ctrl-C to stop");
    }
    broker_queues(b, on_queues, &f);
    if (!f.kq.called || f.kq.rc != CV_OK) {
        if (ctl_json)
            sbuf_adds(&f.json, ",\"queues\":null");
        else
            printf("unavailable (%s)\n", f.kq.called ? cv_rc_str(f.kq.rc) : "no answer");
    }
    broker_workers(b, WORKERS_ALIVE_MS, on_workers, &f);
    if (!f.kw.called || f.kw.rc != CV_OK) {
        if (ctl_json)
            sbuf_adds(&f.json, ",\"workers\":null");
        else
            printf("\nWORKERS  unavailable\n");
    }

    /* held money: PostgreSQL's transactions, and the dead jobs marked held */
    static char ids[HELD_SAMPLE][UUID_STR_LEN];
    size_t nheld = 0;
    enum cv_rc hrc = broker_held_ids(b, HELD_SAMPLE, ids, &nheld);
    struct ctl_held_sum s;
    enum cv_rc drc = d ? ctl_held_summary(d, &s) : CV_ERR_NOT_FOUND;
    if (ctl_json) {
        sbuf_adds(&f.json, ",\"held\":{\"dead_jobs\":");
        if (hrc == CV_OK)
            sbuf_addf(&f.json, "%zu", nheld);
        else
            sbuf_adds(&f.json, "null");
        if (drc == CV_OK) {
            sbuf_addf(&f.json, ",\"transactions\":%lld,\"amount\":", s.transactions);
            sbuf_add_json_str(&f.json, s.amount);
            sbuf_addf(&f.json, ",\"oldest_s\":%lld}", s.oldest_s);
        } else {
            sbuf_adds(&f.json, ",\"transactions\":null,\"amount\":null,\"oldest_s\":null}");
        }
        sbuf_add(&f.json, "}", 1);
        puts(f.json.p);
    } else {
        printf("\nHELD  ");
        if (drc == CV_OK)
            printf("transactions %lld, amount %s, oldest %lld s; ", s.transactions, s.amount,
                   s.oldest_s);
        else if (d)
            printf("transactions unavailable; ");
        if (hrc == CV_OK)
            printf("dead jobs held %zu%s\n", nheld, nheld == HELD_SAMPLE ? "+" : "");
        else
            printf("dead jobs held unavailable\n");
        if (!tty)
            putchar('\n');
    }
    fflush(stdout);
    sbuf_cleanup(&f.json);
}

int ctl_watch(const struct cfg *c, int argc, char **argv)
{
    int ret = CTL_EXIT_USAGE;
    const char *count_s = NULL;
    int64_t count = 0;
    struct broker *b = NULL;
    struct db *d = NULL;
    for (int i = 1; i < argc; i++) {
        int m = ctl_opt(argc, argv, &i, "--count", &count_s);
        if (m < 0)
            goto out;
        if (m == 0) {
            ret = ctl_usage("watch: unexpected argument '%s'", argv[i]);
            goto out;
        }
    }
    if (count_s && ctl_parse_int64(count_s, 1, 1000000000, &count) != 0) {
        ret = ctl_usage("watch: --count wants a number of frames, 1 or more");
        goto out;
    }
    ret = ctl_broker_open(c, "watch", &b);
    if (ret != CTL_EXIT_OK)
        goto out;
    if (c->pg_dsn && *c->pg_dsn)
        d = db_new(c->pg_dsn, DB_TIMEOUT_MS, DB_TIMEOUT_MS);
    int tty = ctl_isatty(STDOUT_FILENO) && !ctl_json;
    ctl_catch_interrupt();
    for (int64_t n = 0; !ctl_interrupted() && (count == 0 || n < count); n++) {
        if (n > 0)
            ctl_sleep_ms(PERIOD_MS);
        if (ctl_interrupted())
            break;
        frame(b, d, tty, count != 0);
    }
    ret = CTL_EXIT_OK;
out:
    db_free(d);
    if (b)
        broker_close(b);
    return ret;
}
