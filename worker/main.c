/* conveyor-worker: consumes jobs of the given types and runs their handlers.
 *
 *   conveyor-worker [-c FILE] [--types activation,noop] [--concurrency N] [--name NAME]
 *
 * Each type may be listed once, and N must be at least the number of types;
 * otherwise the worker says why and exits 2.
 *
 * SIGTERM/SIGINT: stop fetching, finish the batch in hand, exit 0. What is
 * left pending is reclaimed by the other workers after the visibility timeout. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "cfg.h"
#include "clock.h"
#include "db.h"
#include "httpc.h"
#include "log.h"
#include "mem.h"
#include "rds.h"
#include "trc.h"
#include "uuid.h"
#include "wrk_loop.h"

#define MAX_TYPES 16

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: conveyor-worker [-c FILE] [--types T1,T2] [--concurrency N] "
               "[--name NAME]\n");
}

static int type_listed(const struct wrk *w, const char *t)
{
    for (size_t i = 0; i < w->ntypes; i++)
        if (strcmp(w->types[i], t) == 0)
            return 1;
    return 0;
}

/* Wait for a service at start-up instead of dying: orchestrators start
 * workers and Redis in any order. Gives up when asked to stop. */
static struct broker *open_broker(const struct cfg *cfg)
{
    for (int ms = 100;; ms = ms < 2000 ? ms * 2 : 2000) {
        struct broker *b = broker_open(cfg, NULL);
        if (b || stop_flag)
            return b;
        LOG_WARN("worker.broker_unavailable", "retry_ms=%d", ms);
        usleep((useconds_t)ms * 1000);
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "types", required_argument, NULL, 't' },
        { "concurrency", required_argument, NULL, 'n' },
        { "name", required_argument, NULL, 'N' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *cfg_path = NULL, *types = NULL, *conc = NULL, *name = NULL;
    int ch, code = 1;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': cfg_path = optarg; break;
        case 't': types = optarg; break;
        case 'n': conc = optarg; break;
        case 'N': name = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    struct cfg cfg;
    struct wrk w;
    memset(&w, 0, sizeof(w));
    log_init("worker", LOG_LVL_INFO);
    if (cfg_load(&cfg, cfg_path) || (types && cfg_set(&cfg, "worker.types", types)) ||
        (conc && cfg_set(&cfg, "worker.concurrency", conc)))
        return 2;

    int needs_db = 0;
    char *list = xstrdup(cfg.worker_types), *save = NULL;
    w.types = xcalloc(MAX_TYPES, sizeof(*w.types));
    for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        const struct wrk_handler *h = wrk_handler_find(t);
        if (!h) {
            fprintf(stderr, "conveyor: worker.types: unknown job type '%s' (known: %s)\n", t,
                    wrk_handler_names());
            code = 2;
            goto out;
        }
        if (type_listed(&w, t)) {
            fprintf(stderr, "conveyor: worker.types: job type '%s' is listed twice\n", t);
            code = 2;
            goto out;
        }
        if (w.ntypes >= MAX_TYPES) {
            fprintf(stderr, "conveyor: worker.types: more than %d job types\n", MAX_TYPES);
            code = 2;
            goto out;
        }
        needs_db |= (h->jt->flags & JT_NEEDS_PG) != 0;
        w.types[w.ntypes++] = xstrdup(t);
    }
    if (w.ntypes == 0) {
        fprintf(stderr, "conveyor: worker.types: no job types given\n");
        code = 2;
        goto out;
    }
    /* Every type gets at least one slot of the batch (issue 5: with fewer
     * slots than types the consume overflowed the batch). Refused rather than
     * raised: the operator chose the figure, perhaps to bound the load. */
    if ((size_t)cfg.concurrency < w.ntypes) {
        fprintf(stderr, "conveyor: worker.concurrency (%d) is below the number of worker.types "
                        "(%zu): each type needs at least one slot\n", cfg.concurrency, w.ntypes);
        code = 2;
        goto out;
    }
    if (needs_db && cfg_require(&cfg, "pg.dsn")) {
        code = 2;
        goto out;
    }
    cfg_log(&cfg);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char host[64] = "host", rnd[UUID_STR_LEN];
    gethostname(host, sizeof(host) - 1);
    uuid_v4(rnd);
    if (name)
        snprintf(w.name, sizeof(w.name), "%s", name);
    else
        snprintf(w.name, sizeof(w.name), "%.60s-%d-%.8s", host, (int)getpid(), rnd);
    w.cfg = &cfg;
    w.ctx.cfg = &cfg;
    w.batch = (size_t)cfg.concurrency;
    w.started_ms = clock_wall_ms();
    w.broker = open_broker(&cfg);
    if (!w.broker) {
        code = stop_flag ? 0 : 1;
        goto out;
    }
    w.ctx.rds = rds_connect(cfg.redis_url, 5000);
    if (!w.ctx.rds) {
        fprintf(stderr, "conveyor: cannot reach Redis at redis.url\n");
        goto out;
    }
    if (needs_db) {
        /* Bounded waits: a silent server fails a statement after
         * pg.statement_timeout_ms (the jobs wait, no attempt spent), and once
         * stopping is past its grace period a blocked wait gives up at once, as
         * outbound HTTP calls do. PostgreSQL down at start is an outage like any
         * other: the worker starts and pauses until it answers. */
        w.ctx.db = db_new(cfg.pg_dsn, cfg.pg_connect_timeout_ms, cfg.pg_statement_timeout_ms);
        db_set_abort(w.ctx.db, wrk_past_grace, &w);
    }
    w.ctx.http = httpc_new(cfg.concurrency);
    httpc_set_abort(w.ctx.http, wrk_past_grace, &w);
    w.ctx.out = wrk_out_new(&w.ctx);
    if (trc_export_start(cfg.trace_otlp_url, "conveyor-worker") != 0)
        LOG_WARN("trace.export_unavailable", "reason=thread");
    code = wrk_run(&w, &stop_flag);
out:
    trc_export_stop();
    wrk_out_free(w.ctx.out);
    broker_close(w.broker);
    rds_free(w.ctx.rds);
    db_free(w.ctx.db);
    httpc_free(w.ctx.http);
    for (size_t i = 0; i < w.ntypes; i++)
        free(w.types[i]);
    free(w.types);
    free(list);
    cfg_cleanup(&cfg);
    LOG_INFO("worker.exit", "code=%d", code);
    return code;
}
