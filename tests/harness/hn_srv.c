/* hn_srv.c - see hn_srv.h. Test-only code: it fails the running test with
 * cr_assert_fail() when it cannot listen. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "hn_srv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "mem.h"

#define MAX_CONNS 256
#define REQ_MAX (256 * 1024)

struct conn {
    struct hn_srv *s;
    int fd;
    pthread_t th;
    int used;
    int done;               /* the thread has finished: join it, reuse the slot */
};

struct hn_srv {
    int lfd;
    int port;
    int stop_pipe[2];       /* readable once hn_srv_stop runs: wakes every poll */
    pthread_t accept_th;
    pthread_mutex_t mu;     /* handlers, and conns[] */
    struct conn conns[MAX_CONNS];
    hn_srv_fn fn;
    void *arg;
};

/* Wait until fd is readable, the server stops, or timeout_ms passes (-1: no
 * bound). Returns 1 readable, 0 timeout, -1 stopping. */
static int wait_readable(struct hn_srv *s, int fd, int timeout_ms)
{
    struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = s->stop_pipe[0], .events = POLLIN } };
    int n = fd >= 0 ? 2 : 1;
    struct pollfd *pp = fd >= 0 ? p : &p[1];
    for (;;) {
        int r = poll(pp, (nfds_t)n, timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        if (p[1].revents)
            return -1;
        return 1;
    }
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void reset_conn(int fd)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* Read one request into buf (keeping bytes of the next one). Returns the
 * request's total length, or 0 when the peer closed or the server stops. */
static size_t read_req(struct hn_srv *s, int fd, struct sbuf *buf, struct hn_srv_req *req)
{
    for (;;) {
        char *end = buf->len ? strstr(buf->p, "\r\n\r\n") : NULL;
        if (end) {
            size_t head = (size_t)(end - buf->p) + 4;
            long clen = 0;
            for (char *l = strchr(buf->p, '\n'); l && l < end; l = strchr(l + 1, '\n')) {
                if (!strncasecmp(l + 1, "Content-Length:", 15))
                    clen = strtol(l + 16, NULL, 10);
            }
            if (clen >= 0 && buf->len >= head + (size_t)clen) {
                memset(req, 0, sizeof(*req));
                sscanf(buf->p, "%15s %1023s", req->method, req->path);
                /* headers and body get their own NUL-terminated copies */
                buf->p[head - 2] = '\0';
                req->headers = strchr(buf->p, '\n') ? strchr(buf->p, '\n') + 1 : "";
                req->body_len = (size_t)clen;
                return head + (size_t)clen;
            }
        }
        if (buf->len > REQ_MAX || wait_readable(s, fd, -1) != 1)
            return 0;
        char tmp[4096];
        ssize_t r = recv(fd, tmp, sizeof(tmp), 0);
        if (r <= 0)
            return 0;
        sbuf_add(buf, tmp, (size_t)r);
    }
}

/* Wait until the client closes (or the server stops). */
static void hang(struct hn_srv *s, int fd)
{
    char tmp[512];
    while (wait_readable(s, fd, -1) == 1) {
        if (recv(fd, tmp, sizeof(tmp), 0) <= 0)
            return;
    }
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct hn_srv *s = c->s;
    struct sbuf in;
    sbuf_init(&in);
    for (int seq = 0;; seq++) {
        struct hn_srv_req req;
        size_t used = read_req(s, c->fd, &in, &req);
        if (!used)
            break;
        char *body = xstrndup(in.p + used - req.body_len, req.body_len);
        char *headers = xstrdup(req.headers);
        req.headers = headers;
        req.body = body;
        req.conn_seq = seq;
        struct hn_srv_reply out = { .act = HN_SRV_REPLY };
        sbuf_init(&out.raw);
        pthread_mutex_lock(&s->mu);
        s->fn(s->arg, &req, &out);
        pthread_mutex_unlock(&s->mu);
        free(body);
        free(headers);
        /* drop the request from the input buffer */
        memmove(in.p, in.p + used, in.len - used);
        in.len -= used;
        in.p[in.len] = '\0';
        int stopping = out.delay_ms > 0 && wait_readable(s, -1, out.delay_ms) < 0;
        int done = 1;
        if (!stopping) {
            switch (out.act) {
            case HN_SRV_REPLY:
                send_all(c->fd, out.raw.p, out.raw.len);
                done = 0;
                break;
            case HN_SRV_HANG:
                hang(s, c->fd);
                break;
            case HN_SRV_SEND_HANG:
                send_all(c->fd, out.raw.p, out.raw.len);
                hang(s, c->fd);
                break;
            case HN_SRV_SEND_CLOSE:
                send_all(c->fd, out.raw.p, out.raw.len);
                break;
            case HN_SRV_SEND_RESET:
                send_all(c->fd, out.raw.p, out.raw.len);
                reset_conn(c->fd);
                break;
            }
        }
        sbuf_cleanup(&out.raw);
        if (done)
            break;
    }
    sbuf_cleanup(&in);
    close(c->fd);
    pthread_mutex_lock(&s->mu);
    c->fd = -1;
    c->done = 1;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct hn_srv *s = arg;
    while (wait_readable(s, s->lfd, -1) == 1) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&s->mu);
        struct conn *c = NULL;
        for (int i = 0; i < MAX_CONNS && !c; i++) {
            if (s->conns[i].used && s->conns[i].done) {
                pthread_join(s->conns[i].th, NULL);
                s->conns[i].used = 0;
            }
            if (!s->conns[i].used)
                c = &s->conns[i];
        }
        if (c) {
            c->used = 1;
            c->done = 0;
            c->s = s;
            c->fd = fd;
            if (pthread_create(&c->th, NULL, conn_main, c) != 0) {
                c->used = 0;
                close(fd);
            }
        } else {
            close(fd); /* too many connections for a test: refuse this one */
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

struct hn_srv *hn_srv_start(hn_srv_fn fn, void *arg)
{
    struct hn_srv *s = xcalloc(1, sizeof(*s));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    s->fn = fn;
    s->arg = arg;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(s->lfd, 128) != 0 || getsockname(s->lfd, (struct sockaddr *)&a, &al) != 0 ||
        pipe2(s->stop_pipe, O_CLOEXEC) != 0)
        cr_assert_fail("hn_srv: cannot listen: %s", strerror(errno));
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->accept_th, NULL, accept_main, s) != 0)
        cr_assert_fail("hn_srv: no thread");
    return s;
}

int hn_srv_port(const struct hn_srv *s)
{
    return s->port;
}

void hn_srv_stop(struct hn_srv *s)
{
    if (!s)
        return;
    if (write(s->stop_pipe[1], "x", 1) != 1)
        cr_assert_fail("hn_srv: cannot wake threads");
    pthread_join(s->accept_th, NULL);
    for (int i = 0; i < MAX_CONNS; i++) {
        if (s->conns[i].used)
            pthread_join(s->conns[i].th, NULL);
    }
    close(s->lfd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void hn_srv_lock(struct hn_srv *s)
{
    pthread_mutex_lock(&s->mu);
}

void hn_srv_unlock(struct hn_srv *s)
{
    pthread_mutex_unlock(&s->mu);
}

void hn_srv_reply_add(struct hn_srv_reply *out, int status, const char *headers,
                      const char *body)
{
    size_t blen = body ? strlen(body) : 0;
    sbuf_addf(&out->raw, "HTTP/1.1 %d X\r\n%sContent-Length: %zu\r\n\r\n", status,
              headers ? headers : "", blen);
    if (blen)
        sbuf_add(&out->raw, body, blen);
}

const char *hn_srv_header(const struct hn_srv_req *req, const char *name, char *buf,
                          size_t len)
{
    size_t nl = strlen(name);
    for (const char *l = req->headers; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncasecmp(l, name, nl) && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r\n");
            if (vl >= len)
                vl = len - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return buf;
        }
    }
    return NULL;
}
