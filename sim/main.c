/* conveyor-sim - stands in for the outside systems Conveyor calls.
 *
 *   conveyor-sim [-c FILE] [--port N] [--bind ADDR] [--latency-ms N]
 *                [--error-rate F] [--error-status N] [--timeout-rate F]
 *                [--port-file PATH] [--log-level LVL]
 *
 * Flags override the config (defaults < file < CONVEYOR_* env < flags).
 * --port 0 binds an ephemeral port; the bound port is always logged as
 * evt=sim.listening port=N, and written to --port-file (tmp file + rename)
 * for test harnesses. SIGTERM or SIGINT stops the loop; exit 0.
 * See sim.h for the shape of the program. */
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "mem.h"
#include "sim.h"
#include "sim_activation.h"
#include "sim_admin.h"
#include "sim_cex.h"
#include "sim_meli.h"
#include "sim_otlp.h"
#include "sim_mirakl.h"
#include "sim_ontime.h"
#include "sim_seur.h"
#include "sim_tipsa.h"
#include "sim_webhook.h"

#define LISTEN_BACKLOG 1024
#define MAX_FLAGS 32

/* Flags that map onto a config key, applied in order after cfg_load(). */
static const struct {
    const char *name;
    const char *key;
} keyed[] = {
    { "port", "sim.port" },
    { "bind", "http.bind" },
    { "latency-ms", "sim.latency_ms" },
    { "error-rate", "sim.error_rate" },
    { "error-status", "sim.error_status" },
    { "timeout-rate", "sim.timeout_rate" },
    { "log-level", "log.level" },
};
#define NKEYED (sizeof(keyed) / sizeof(keyed[0]))
enum { OPT_KEYED = 256, OPT_PORT_FILE = OPT_KEYED + 64 };

struct opts {
    const char *cfg_path;
    const char *port_file;
    int ephemeral;                       /* --port 0 */
    int nflags;
    const char *keys[MAX_FLAGS];
    const char *vals[MAX_FLAGS];
};

static void usage(FILE *f)
{
    fprintf(f, "usage: conveyor-sim [-c FILE] [--port N] [--bind ADDR] [--latency-ms N]\n"
               "                    [--error-rate F] [--error-status N] [--timeout-rate F]\n"
               "                    [--port-file PATH] [--log-level debug|info|warn|error]\n");
}

/* Returns 0, 1 for --help, or -1 after printing why. */
static int parse_args(int argc, char **argv, struct opts *o)
{
    struct option longopts[NKEYED + 4];
    size_t n = 0;
    for (size_t i = 0; i < NKEYED; i++)
        longopts[n++] = (struct option){ keyed[i].name, required_argument, NULL,
                                         OPT_KEYED + (int)i };
    longopts[n++] = (struct option){ "config", required_argument, NULL, 'c' };
    longopts[n++] = (struct option){ "port-file", required_argument, NULL, OPT_PORT_FILE };
    longopts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
    longopts[n] = (struct option){ NULL, 0, NULL, 0 };

    memset(o, 0, sizeof(*o));
    for (;;) {
        int ch = getopt_long(argc, argv, "c:h", longopts, NULL);
        if (ch == -1)
            break;
        if (ch == 'c') {
            o->cfg_path = optarg;
        } else if (ch == OPT_PORT_FILE) {
            o->port_file = optarg;
        } else if (ch == 'h') {
            usage(stdout);
            return 1;
        } else if (ch >= OPT_KEYED && ch < OPT_KEYED + (int)NKEYED && o->nflags < MAX_FLAGS) {
            o->keys[o->nflags] = keyed[ch - OPT_KEYED].key;
            o->vals[o->nflags++] = optarg;
        } else {
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "conveyor-sim: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Flags through cfg_set(), except --port 0: sim.port is 1..65535 in the
 * config table, and 0 (ephemeral, for tests) exists only as a flag. */
static int apply_flags(struct cfg *c, struct opts *o)
{
    for (int i = 0; i < o->nflags; i++) {
        if (strcmp(o->keys[i], "sim.port") == 0 && strcmp(o->vals[i], "0") == 0) {
            o->ephemeral = 1;
            continue;
        }
        if (strcmp(o->keys[i], "sim.port") == 0)
            o->ephemeral = 0;
        if (cfg_set(c, o->keys[i], o->vals[i]))
            return -1;
    }
    int lvl = log_level_parse(c->log_level);
    if (lvl < 0) {
        fprintf(stderr, "conveyor-sim: log.level: must be debug, info, warn or error\n");
        return -1;
    }
    log_init("sim", (enum log_level)lvl);
    return 0;
}

static int write_port_file(const char *path, int port)
{
    int rc = -1, fd = -1, err = 0;
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    char line[16];
    int n = snprintf(line, sizeof(line), "%d\n", port);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n) {
        err = errno;
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        err = errno;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        err = errno;
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc != 0) {
        char pbuf[LOG_STR_MAX];
        unlink(tmp);
        LOG_ERROR("sim.port_file_failed", "path=%s err=\"%s\"", log_str(pbuf, path),
                  strerror(err));
    }
    free(tmp);
    return rc;
}

/* Listen on bind:port with a deep backlog (benchmarks open many connections
 * at once) and hand the socket to evhttp. Returns the bound port or -1. */
static int listen_http(struct sim *s, const char *bind, int port)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    struct evconnlistener *lis = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char portstr[16], bbuf[LOG_STR_MAX];
    int rc = -1;

    snprintf(portstr, sizeof(portstr), "%d", port);
    int gai = getaddrinfo(bind, portstr, &hints, &ai);
    if (gai != 0) {
        LOG_ERROR("sim.bind_failed", "bind=%s port=%d err=\"%s\"", log_str(bbuf, bind), port,
                  gai_strerror(gai));
        goto out;
    }
    lis = evconnlistener_new_bind(s->base, NULL, NULL,
                                  LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE |
                                      LEV_OPT_CLOSE_ON_EXEC,
                                  LISTEN_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
    if (!lis) {
        LOG_ERROR("sim.bind_failed", "bind=%s port=%d err=\"%s\"", log_str(bbuf, bind), port,
                  strerror(errno));
        goto out;
    }
    if (getsockname(evconnlistener_get_fd(lis), (struct sockaddr *)&ss, &sslen) != 0) {
        LOG_ERROR("sim.bind_failed", "bind=%s err=\"%s\"", log_str(bbuf, bind), strerror(errno));
        goto out;
    }
    /* inherited by accepted sockets: replies never wait on a delayed ACK */
    int one = 1;
    setsockopt(evconnlistener_get_fd(lis), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!evhttp_bind_listener(s->http, lis))
        goto out;
    lis = NULL;                          /* evhttp owns it now */
    if (ss.ss_family == AF_INET6)
        rc = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        rc = ntohs(((struct sockaddr_in *)&ss)->sin_port);
out:
    if (lis)
        evconnlistener_free(lis);
    if (ai)
        freeaddrinfo(ai);
    return rc;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct sim *s = arg;
    (void)what;
    LOG_INFO("sim.stopping", "signal=%d", (int)sig);
    event_base_loopbreak(s->base);
}

static void on_event_log(int severity, const char *msg)
{
    char mbuf[LOG_STR_MAX];
    if (severity >= EVENT_LOG_WARN)
        LOG_WARN("sim.libevent", "msg=%s", log_str(mbuf, msg));
    else
        LOG_DEBUG("sim.libevent", "msg=%s", log_str(mbuf, msg));
}

/* Precise timers (timerfd) so that latency_ms means milliseconds: without
 * them epoll rounds every wait up to the next millisecond. */
static struct event_base *new_base(void)
{
    struct event_config *ec = event_config_new();
    CV_ASSERT(ec);
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    struct event_base *base = event_base_new_with_config(ec);
    event_config_free(ec);
    CV_ASSERT(base);
    return base;
}

static void http_setup(struct sim *s)
{
    s->http = evhttp_new(s->base);
    CV_ASSERT(s->http);
    evhttp_set_max_body_size(s->http, SIM_HTTP_MAX_BODY_BYTES);
    evhttp_set_max_headers_size(s->http, SIM_HTTP_MAX_HEADERS_BYTES);
    evhttp_set_timeout(s->http, SIM_HTTP_IDLE_TIMEOUT_S);
    /* every method reaches the router, which answers 405 as JSON */
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(s->http, sim_http_dispatch, s);
}

int main(int argc, char **argv)
{
    struct opts o;
    struct cfg cfg;
    struct sim s;
    struct event *sigterm = NULL, *sigint = NULL;
    int rc = 2, cfg_loaded = 0, pending_ready = 0;

    memset(&s, 0, sizeof(s));
    memset(&cfg, 0, sizeof(cfg));
    int pa = parse_args(argc, argv, &o);
    if (pa != 0) {
        rc = pa > 0 ? 0 : 2;
        goto out;
    }
    cfg_loaded = 1;                      /* cleanup also frees a half-loaded config */
    if (cfg_load(&cfg, o.cfg_path) != 0)
        goto out;
    if (apply_flags(&cfg, &o) != 0)
        goto out;
    cfg_log(&cfg);

    rc = 1;
    signal(SIGPIPE, SIG_IGN);            /* a client gone mid-write is an error, not a kill */
    event_set_log_callback(on_event_log);
    s.cfg = &cfg;
    s.base = new_base();
    sim_rng_seed(&s.rng, 0);
    s.faults_start = (struct sim_faults){
        .latency_ms = cfg.sim_latency_ms,
        .error_rate = cfg.sim_error_rate,
        .error_status = cfg.sim_error_status,
        .timeout_rate = cfg.sim_timeout_rate,
        .fail_next = 0,
    };
    s.faults = s.faults_start;
    s.act = sim_activation_new();
    sim_pending_init(&s.pending, s.base);
    pending_ready = 1;
    s.wh = sim_webhook_new(s.base, &s.rng, cfg.sim_webhook_url, cfg.sim_webhook_secret);
    if (!s.wh) {
        rc = 2;
        goto out;
    }
    sim_http_register(&s);
    sim_activation_register(&s);
    sim_admin_register(&s);              /* before the systems' /admin/<name>/ prefix route */
    sim_otlp_register(&s);               /* so is /admin/otlp/ */
    sim_mirakl_register(&s);
    sim_seur_register(&s);
    sim_ontime_register(&s);
    sim_tipsa_register(&s);
    sim_cex_register(&s);
    sim_meli_register(&s);
    http_setup(&s);

    int port = listen_http(&s, cfg.http_bind, o.ephemeral ? 0 : cfg.sim_port);
    if (port < 0)
        goto out;
    if (o.port_file && write_port_file(o.port_file, port) != 0)
        goto out;
    sigterm = evsignal_new(s.base, SIGTERM, on_signal, &s);
    sigint = evsignal_new(s.base, SIGINT, on_signal, &s);
    CV_ASSERT(sigterm && sigint);
    int sr = evsignal_add(sigterm, NULL) | evsignal_add(sigint, NULL);
    CV_ASSERT(sr == 0);
    /* always printed, whatever log.level says: harnesses wait for it */
    log_emit(LOG_LVL_INFO, NULL, "sim.listening", "port=%d bind=%s", port, cfg.http_bind);

    event_base_dispatch(s.base);

    const struct sim_act_stats *st = sim_activation_stats(s.act);
    LOG_INFO("sim.stopped", "calls=%lld activations=%lld errors=%lld timeouts=%lld "
                            "declines=%lld duplicates=%lld held=%zu delayed=%zu",
             (long long)st->calls, (long long)st->activations, (long long)st->errors,
             (long long)st->timeouts, (long long)st->declines, (long long)st->duplicates,
             s.pending.nheld, s.pending.ndelayed);
    rc = 0;
out:
    if (pending_ready)
        sim_pending_cleanup(&s.pending);     /* before evhttp_free: it frees their requests */
    if (s.http)
        evhttp_free(s.http);
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    sim_activation_free(s.act);
    sim_otlp_free();
    sim_webhook_free(s.wh);              /* before the systems: messages point at nothing there */
    for (int i = 0; i < SIM_SYS_N; i++)
        if (s.sys[i])
            s.sys[i]->free(s.sys[i]);
    if (s.base)
        event_base_free(s.base);
    if (cfg_loaded)
        cfg_cleanup(&cfg);
    libevent_global_shutdown();
    return rc;
}
