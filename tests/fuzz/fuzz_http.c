/* fuzz_http.c - the real HTTP front door, fed raw bytes (issue 5, section 7).
 *
 * One conveyor-api event loop is built as api/main.c builds it (broker, async
 * Redis and PostgreSQL links, the per-turn publish queue, evhttp with the
 * same limits via api_thread_start_http) and listens on 127.0.0.1:0. Redis
 * and PostgreSQL point at ports that a socket of ours holds bound but never
 * listens on: every connect is refused at once, so each async call fails
 * fast and the request must still be answered, with JSON.
 *
 * Each input is written as is into a new TCP connection to the loop; once the
 * server is idle the write side is shut (EOF), and the loop runs until the
 * server has closed the connection and no request is left alive. Whatever came back is then
 * checked (check_replies): every reply starts with a status line, no reply
 * carries evhttp's HTML error page, no HTTP/1.1 reply has a body without a
 * length, every error is a JSON object with error.code, and every JSON body
 * parses. A violation aborts (a finding), and
 * so does a request still alive HANG_MS after the connection closed.
 *
 * Keys: "Bearer fuzz-admin-key" (all types), "fuzz-noop-key" (noop only),
 * "fuzz-activation-key" (activation only). Small limits (body 4 KiB, batch 8)
 * keep the 413 paths within reach of short inputs. FUZZ_HTTP_SHOW=1 prints
 * what came back for each input (to read a finding). */
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api.h"
#include "auth.h"
#include "broker.h"
#include "clock.h"
#include "db.h"
#include "log.h"
#include "mem.h"

#include "fuzz_env.h"
#include "met.h"
#include "rds.h"

#define HANG_MS 5000
#define IDLE_TURNS 8

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cfg cfg;
static struct api_global g;
static struct api_thread t;
static struct sockaddr_in api_addr;
static int show;                      /* FUZZ_HTTP_SHOW=1: print what came back */

/* ---- set-up ---------------------------------------------------------------- */

/* A port nobody listens on for the life of the process: bound, never listening. */
static int dead_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CV_ASSERT(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &al) == 0);
    return ntohs(a.sin_port);         /* fd stays open on purpose */
}

static void add_key(const char *name, const char *key, const char *types)
{
    char hex[65], spec[256];
    auth_sha256_hex(key, strlen(key), hex);
    snprintf(spec, sizeof(spec), "%s:%s:%s", name, hex, types);
    CV_ASSERT(cfg.napi_keys < CFG_MAX_KEYS);
    CV_ASSERT(cfg_parse_api_key(spec, &cfg.api_keys[cfg.napi_keys]) == 0);
    cfg.napi_keys++;
}

static void config(void)
{
    char url[64], dsn[160];
    fuzz_clear_env();
    CV_ASSERT(cfg_load(&cfg, NULL) == 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", dead_port());
    snprintf(dsn, sizeof(dsn), "host=127.0.0.1 port=%d dbname=conveyor user=conveyor "
                               "connect_timeout=1", dead_port());
    CV_ASSERT(cfg_set(&cfg, "redis.url", url) == 0 && cfg_set(&cfg, "pg.dsn", dsn) == 0 &&
              cfg_set(&cfg, "http.body_max_bytes", "4096") == 0 &&
              cfg_set(&cfg, "http.batch_max", "8") == 0 &&
              cfg_set(&cfg, "log.level", "error") == 0);
    log_min_level = LOG_LVL_ERROR;
    add_key("admin", "fuzz-admin-key", "*");
    add_key("noop", "fuzz-noop-key", "noop");
    add_key("act", "fuzz-activation-key", "activation");
}

/* The registry api/main.c builds. */
static void metrics(void)
{
    g.cfg = &cfg;
    api_metrics_registry(&g, 1);
}

/* One loop as api/main.c's thread_init() makes it, listening on 127.0.0.1:0. */
static void loop(void)
{
    socklen_t al = sizeof(api_addr);
    api_addr.sin_family = AF_INET;
    api_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    t.cfg = &cfg;
    t.g = &g;
    t.stop_pipe[0] = t.stop_pipe[1] = -1;
    t.base = event_base_new();
    CV_ASSERT(t.base);
    t.broker = broker_open(&cfg, t.base);
    t.db = db_async_new(t.base, cfg.pg_dsn, 5000);
    t.rds = rds_async_new(t.base, cfg.redis_url, 2000);
    CV_ASSERT(t.broker && t.db && t.rds && api_pub_init(&t) == 0 && api_metrics_init(&t) == 0);
    t.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CV_ASSERT(t.listen_fd >= 0 &&
              bind(t.listen_fd, (struct sockaddr *)&api_addr, sizeof(api_addr)) == 0 &&
              listen(t.listen_fd, 64) == 0 &&
              getsockname(t.listen_fd, (struct sockaddr *)&api_addr, &al) == 0);
    CV_ASSERT(api_thread_start_http(&t) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    show = getenv("FUZZ_HTTP_SHOW") != NULL;
    config();
    log_init("api", LOG_LVL_ERROR);
    metrics();
    loop();
    return 0;
}

/* ---- one connection -------------------------------------------------------- */

struct client {
    int fd;
    const uint8_t *data;
    size_t size, off;
    int eof;                          /* the server closed (or reset) */
    struct sbuf in;
    struct event *rev, *wev;
};

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    (void)what;
    while (c->off < c->size) {
        ssize_t n = send(fd, c->data + c->off, c->size - c->off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0)
            break;                    /* the server closed: the rest is not wanted */
        c->off += (size_t)n;
    }
    c->off = c->size;
    event_del(c->wev);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    char buf[16384];
    (void)what;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0) {
            sbuf_add(&c->in, buf, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        c->eof = 1;                   /* 0 = closed, <0 = reset */
        event_del(c->rev);
        return;
    }
}

static void deadline_check(const struct client *c, int64_t deadline)
{
    if (clock_mono_ms() <= deadline)
        return;
    fprintf(stderr, "fuzz_http: no end after %d ms: eof=%d written=%zu/%zu inflight=%d\n",
            HANG_MS, c->eof, c->off, c->size, t.inflight);
    abort();
}

/* ---- the oracle ------------------------------------------------------------- */

static void finding(const char *what, const char *reply, size_t len)
{
    fprintf(stderr, "fuzz_http: %s\n--- reply ---\n%.*s\n--- end ---\n", what,
            (int)(len > 4096 ? 4096 : len), reply);
    abort();
}

/* The value of header name in the header block [h, e), copied into out. */
static int header(const char *h, const char *e, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = h; p < e;) {
        const char *eol = memmem(p, (size_t)(e - p), "\r\n", 2);
        if (!eol)
            eol = e;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            snprintf(out, cap, "%.*s", (int)(eol - v), v);
            return 1;
        }
        p = eol + 2;
    }
    return 0;
}

static void check_body(int status, const char *ctype, const char *b, size_t n, const char *reply,
                       size_t rlen)
{
    int json = strncasecmp(ctype, "application/json", 16) == 0;
    if (status >= 400 && !json)
        finding("an error reply that is not application/json", reply, rlen);
    if (!json || n == 0) {
        if (status >= 400)
            finding("an error reply without a body", reply, rlen);
        return;
    }
    cJSON *root = json_parse(b, n);
    if (!root)
        finding("a JSON reply whose body does not parse", reply, rlen);
    /* /ready's 503 is a probe's answer ({"status":"not_ready",...}), by design */
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "status");
    int probe = status == 503 && cJSON_IsString(st) && !strcmp(st->valuestring, "not_ready");
    if (status >= 400 && !probe) {
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
        if (!cJSON_IsObject(err) || !cJSON_IsString(code) || !code->valuestring[0])
            finding("an error reply without error.code", reply, rlen);
    }
    cJSON_Delete(root);
}

/* "HTTP/<version> NNN ": evhttp echoes the request's version, whatever digits
 * it had ("HTTP/1.11", "HTTP/-3.0"). */
static int status_line(const char *p, size_t left)
{
    if (left < 12 || memcmp(p, "HTTP/", 5) != 0)
        return 0;
    const char *sp = memchr(p, ' ', left < 32 ? left : 32);
    return sp && (size_t)(sp - p) + 4 < left && isdigit((unsigned char)sp[1]) &&
           isdigit((unsigned char)sp[2]) && isdigit((unsigned char)sp[3]);
}

/* Walk the replies in order. A reply cut short (the server reset the
 * connection with input unread) ends the walk: nothing more can be said. */
static void check_replies(const char *p, size_t len)
{
    const char *end = p + len;
    if (memmem(p, len, "<HTML>", 6) || memmem(p, len, "<html>", 6))
        finding("evhttp's HTML error page reached the client", p, len);
    while (p < end) {
        size_t left = (size_t)(end - p);
        if (!status_line(p, left))
            finding("bytes that are not a status line", p, left);
        const char *he = memmem(p, left, "\r\n\r\n", 4);
        if (!he)
            return;                   /* cut short */
        int status = atoi((const char *)memchr(p, ' ', left) + 1);
        const char *h = (const char *)memmem(p, left, "\r\n", 2) + 2, *body = he + 4;
        char ctype[128] = "", clen[32] = "";
        int has_len = header(h, he + 2, "Content-Length", clen, sizeof(clen));
        header(h, he + 2, "Content-Type", ctype, sizeof(ctype));
        size_t n = has_len ? strtoul(clen, NULL, 10) : (size_t)(end - body);
        /* a HEAD reply announces a length but carries no body */
        if (status_line(body, (size_t)(end - body)))
            n = 0;
        if (body == end)
            n = 0;
        if (n > (size_t)(end - body))
            return;                   /* cut short */
        /* HTTP/1.1 replies here are length-delimited: a body without a length
         * (libevent writes one even for HEAD and CONNECT) is read by a
         * keep-alive client or a proxy as the start of the next reply. A
         * close cannot delimit it: libevent keeps CONNECT connections open
         * even after it said Connection: close. */
        if (!has_len && n > 0 && memcmp(p, "HTTP/1.1", 8) == 0)
            finding("an HTTP/1.1 reply with a body but no Content-Length", p, left);
        if (status < 100 || status > 599)
            finding("a status out of range", p, left);
        /* no length and no body: a HEAD reply (evhttp adds a length to others) */
        if (status >= 200 && (has_len || n > 0))
            check_body(status, ctype, body, n, p, (size_t)(body + n - p));
        p = body + n;
    }
}

/* ---- the entry point --------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct client c = { .data = data, .size = size };
    sbuf_init(&c.in);
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CV_ASSERT(c.fd >= 0);
    if (connect(c.fd, (struct sockaddr *)&api_addr, sizeof(api_addr)) != 0)
        CV_ASSERT(errno == EINPROGRESS);
    c.rev = event_new(t.base, c.fd, EV_READ | EV_PERSIST, on_readable, &c);
    c.wev = event_new(t.base, c.fd, EV_WRITE | EV_PERSIST, on_writable, &c);
    CV_ASSERT(c.rev && c.wev && event_add(c.rev, NULL) == 0 && event_add(c.wev, NULL) == 0);

    /* Phase 1: write, and let the server answer what it can. The write side
     * stays open: on EOF evhttp drops requests still waiting behind one in
     * progress, and pipelined requests would never be seen. The server is
     * idle once IDLE_TURNS non-blocking turns in a row changed nothing (no
     * request alive, no byte written or read). Phase 2: EOF, then run until
     * the server has closed and no request is alive. The loop always has a
     * timer (the Redis link's tick), so a blocking turn ends within 100 ms
     * and the deadline is seen. */
    int64_t deadline = clock_mono_ms() + HANG_MS;
    size_t seen = (size_t)-1;
    for (int idle = 0; idle < IDLE_TURNS && !c.eof;) {
        size_t now = c.off + c.in.len;
        idle = (now == seen && t.inflight == 0 && c.off == c.size) ? idle + 1 : 0;
        seen = now;
        event_base_loop(t.base, t.inflight > 0 ? EVLOOP_ONCE : EVLOOP_NONBLOCK);
        deadline_check(&c, deadline);
    }
    if (!c.eof)
        shutdown(c.fd, SHUT_WR);
    while (!c.eof || t.inflight > 0) {
        event_base_loop(t.base, EVLOOP_ONCE);
        deadline_check(&c, deadline);
    }
    if (show)
        fprintf(stderr, "--- %zu bytes back ---\n%.*s\n", c.in.len, (int)c.in.len,
                c.in.p ? c.in.p : "");
    check_replies(c.in.p ? c.in.p : "", c.in.len);

    /* close with a reset: no TIME_WAIT, so ports never run out */
    struct linger lg = { 1, 0 };
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    event_free(c.rev);
    event_free(c.wev);
    close(c.fd);
    sbuf_cleanup(&c.in);
    return 0;
}
