/* main.c - conveyor-api: the ingest HTTP/JSON front door.
 *
 * Validates, authenticates, enqueues and answers (202 + job id); never does
 * the work itself and never blocks a loop on Redis or PostgreSQL.
 *
 *   conveyor-api [-c FILE] [--port N] [--threads N]
 *
 * One listening socket; each of http.threads event loops (0 = one per core)
 * accepts on its own dup of it with its own evhttp and its own connections to
 * Redis and PostgreSQL (see api.h). The main thread only waits for signals.
 * SIGTERM or SIGINT: every loop stops accepting, lets the requests it holds
 * finish (at most DRAIN_MS), and the process exits 0. A second signal during
 * the drain exits at once with status 1. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "broker.h"
#include "cfg.h"
#include "clock.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "met.h"
#include "rds.h"
#include "trc.h"

#define DRAIN_MS 5000
#define DRAIN_TICK_MS 20
#define FLUSH_MS 200
#define MAX_THREADS 64
#define DB_TIMEOUT_MS 5000
#define RDS_TIMEOUT_MS 2000

static atomic_int threads_done;

static void usage(FILE *f)
{
    fprintf(f, "usage: conveyor-api [-c FILE] [--port N] [--threads N]\n"
               "  -c, --config FILE  libconfig file (else $CONVEYOR_CONFIG)\n"
               "      --port N       http.port\n"
               "      --threads N    http.threads (0 = one per core)\n");
}

/* ---- the listening socket ------------------------------------------------- */

static int listen_socket(const char *host, int port, int *bound_port)
{
    struct addrinfo hints, *res = NULL;
    char ps[16];
    int fd = -1, one = 1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(ps, sizeof(ps), "%d", port);
    int gai = getaddrinfo(host && *host ? host : NULL, ps, &hints, &res);
    if (gai != 0) {
        fprintf(stderr, "conveyor-api: http.bind %s: %s\n", host, gai_strerror(gai));
        return -1;
    }
    fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                res->ai_protocol);
    /* TCP_NODELAY on the listener is inherited by every accepted socket: a
     * reply written in two pieces must not wait for the client's delayed ACK. */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        int e = errno;
        fprintf(stderr, "conveyor-api: cannot listen on %s:%d: %s\n", host, port, strerror(e));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    *bound_port = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            *bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return fd;
}

/* ---- one loop --------------------------------------------------------------- */

/* While draining: once no request is held, keep the loop FLUSH_MS more so
 * that the last replies leave the socket buffers (evhttp writes them from the
 * loop), then stop; stop anyway at the deadline. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct api_thread *t = arg;
    int64_t now = clock_mono_ms();
    (void)fd;
    (void)what;
    if (t->inflight > 0) {
        t->flush_until_ms = 0;
        if (now >= t->drain_deadline_ms) {
            LOG_WARN("api.drain_timeout", "thread=%d inflight=%d", t->idx, t->inflight);
            event_base_loopexit(t->base, NULL);
        }
        return;
    }
    if (t->flush_until_ms == 0)
        t->flush_until_ms = now + FLUSH_MS;
    if (now >= t->flush_until_ms || now >= t->drain_deadline_ms)
        event_base_loopexit(t->base, NULL);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct api_thread *t = arg;
    char c;
    (void)what;
    if (read(fd, &c, 1) < 0 || t->stopping)
        return;
    t->stopping = 1;
    api_thread_stop_http(t);
    t->drain_deadline_ms = clock_mono_ms() + DRAIN_MS;
    struct timeval tv = { 0, DRAIN_TICK_MS * 1000 };
    event_add(t->drain_ev, &tv);
    on_drain_tick(-1, 0, t);
}

static void *thread_main(void *arg)
{
    struct api_thread *t = arg;
    event_base_dispatch(t->base);
    atomic_fetch_add(&threads_done, 1);
    return NULL;
}

static int thread_init(struct api_thread *t, const struct cfg *cfg, struct api_global *g,
                       int idx, int listen_fd)
{
    memset(t, 0, sizeof(*t));
    t->idx = idx;
    t->cfg = cfg;
    t->g = g;
    t->stop_pipe[0] = t->stop_pipe[1] = -1;
    t->listen_fd = -1;
    t->base = event_base_new();
    if (!t->base || pipe2(t->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        fprintf(stderr, "conveyor-api: cannot create event loop %d\n", idx);
        return -1;
    }
    t->broker = broker_open(cfg, t->base);
    if (!t->broker) {
        fprintf(stderr, "conveyor-api: cannot open the broker\n");
        return -1;
    }
    if (cfg->pg_dsn && *cfg->pg_dsn)
        t->db = db_async_new(t->base, cfg->pg_dsn, DB_TIMEOUT_MS);
    t->rds = rds_async_new(t->base, cfg->redis_url, RDS_TIMEOUT_MS);
    t->stop_ev = event_new(t->base, t->stop_pipe[0], EV_READ | EV_PERSIST, on_stop, t);
    t->drain_ev = event_new(t->base, -1, EV_PERSIST, on_drain_tick, t);
    if (!t->rds || !t->stop_ev || !t->drain_ev || event_add(t->stop_ev, NULL) != 0) {
        fprintf(stderr, "conveyor-api: cannot set up event loop %d\n", idx);
        return -1;
    }
    if (api_pub_init(t) != 0 || api_metrics_init(t) != 0 || api_keys_init(t) != 0 ||
        api_trace_init(t) != 0) {
        fprintf(stderr, "conveyor-api: cannot set up event loop %d\n", idx);
        return -1;
    }
    t->listen_fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
    if (t->listen_fd < 0 || api_thread_start_http(t) != 0) {
        fprintf(stderr, "conveyor-api: cannot start HTTP on loop %d\n", idx);
        return -1;
    }
    return 0;
}

/* After the loop has stopped (or was never run). Closing the links fails the
 * calls still out (drain timeout only): their callbacks see t->closing and
 * start nothing new. */
static void thread_cleanup(struct api_thread *t)
{
    t->closing = 1;
    /* each link is cleared before the next goes: a failed call's callback
     * may still look at the others (broker_ready in /metrics) */
    api_pub_free(t);
    rds_async_free(t->rds);
    t->rds = NULL;
    if (t->broker)
        broker_close(t->broker);
    t->broker = NULL;
    api_metrics_free(t);
    db_async_free(t->db);
    t->db = NULL;
    api_keys_free(t);
    api_trace_free(t);
    api_thread_free_http(t);
    if (t->stop_ev)
        event_free(t->stop_ev);
    if (t->drain_ev)
        event_free(t->drain_ev);
    if (t->base)
        event_base_free(t->base);
    for (int i = 0; i < 2; i++)
        if (t->stop_pipe[i] >= 0)
            close(t->stop_pipe[i]);
    if (t->listen_fd >= 0)
        close(t->listen_fd);
}

/* ---- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' }, { "port", required_argument, NULL, 'p' },
        { "threads", required_argument, NULL, 't' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *path = NULL, *port = NULL, *threads = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 'p': port = optarg; break;
        case 't': threads = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }

    struct cfg cfg;
    if (cfg_load(&cfg, path) != 0 || (port && cfg_set(&cfg, "http.port", port) != 0) ||
        (threads && cfg_set(&cfg, "http.threads", threads) != 0))
        return 2;
    log_init("api", log_min_level);
    cfg_log(&cfg);
    if (cfg.napi_keys == 0)
        LOG_WARN("api.no_keys", "msg=\"no api_keys configured: authenticated endpoints "
                                "answer 401 unless keys are stored in PostgreSQL "
                                "(conveyorctl keys add)\"");
    if (!cfg.pg_dsn || !*cfg.pg_dsn)
        LOG_WARN("api.no_postgres", "msg=\"pg.dsn is empty: /ready stays 503 and the "
                                    "offers, accounts and status fallback answer 503\"");

    int n = cfg.http_threads;
    if (n == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    if (n > MAX_THREADS)
        n = MAX_THREADS;

    /* Every connection is a descriptor: allow as many as the hard limit does
     * (out of descriptors, accept() fails and the listener spins). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* Signals: the loops never see them; main waits for them below. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int bound = 0;
    int lfd = listen_socket(cfg.http_bind, cfg.http_port, &bound);
    if (lfd < 0)
        return 1;

    struct api_global g;
    memset(&g, 0, sizeof(g));
    g.cfg = &cfg;
    if (api_webhook_init(&g, &cfg) != 0)
        return 2;
    api_metrics_registry(&g, n);
    /* after the signal mask: the exporter thread must not take SIGTERM either */
    if (trc_export_start(cfg.trace_otlp_url, "conveyor-api") != 0)
        LOG_WARN("trace.export_unavailable", "reason=thread");

    struct api_thread *ts = xcalloc((size_t)n, sizeof(*ts));
    int started = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        if (thread_init(&ts[i], &cfg, &g, i, lfd) != 0) {
            thread_cleanup(&ts[i]);
            rc = 1;
            break;
        }
        if (pthread_create(&ts[i].tid, NULL, thread_main, &ts[i]) != 0) {
            fprintf(stderr, "conveyor-api: cannot start thread %d\n", i);
            thread_cleanup(&ts[i]);
            rc = 1;
            break;
        }
        started++;
    }
    close(lfd);  /* each loop holds its own dup */

    if (rc == 0) {
        LOG_INFO("api.listening", "bind=%s port=%d threads=%d body_max_bytes=%d",
                 cfg.http_bind, bound, n, cfg.body_max_bytes);
        int sig = 0;
        sigwait(&sigs, &sig);
        LOG_INFO("api.stopping", "signal=%d drain_ms=%d", sig, DRAIN_MS);
    }
    for (int i = 0; i < started; i++) {
        ssize_t w = write(ts[i].stop_pipe[1], "x", 1);
        (void)w;
    }
    /* wait for the loops; a second signal cuts the drain short */
    while (atomic_load(&threads_done) < started) {
        struct timespec ts100 = { 0, 100 * 1000 * 1000 };
        if (sigtimedwait(&sigs, NULL, &ts100) > 0) {
            LOG_WARN("api.forced_exit", "loops_left=%d", started - atomic_load(&threads_done));
            _exit(1);
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(ts[i].tid, NULL);
        thread_cleanup(&ts[i]);
    }
    free(ts);
    trc_export_stop();
    met_free(g.met);
    cfg_cleanup(&cfg);
    libevent_global_shutdown();
    if (rc == 0)
        LOG_INFO("api.stopped", "status=0");
    return rc;
}
