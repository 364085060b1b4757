/* api_conn.c - a guard on every client connection.
 *
 * evhttp owns the connections; this file watches each one from the side,
 * through the hooks libevent 2.1 offers, and takes over when a connection
 * must go:
 *
 *   - Framing. The bufferevent evhttp reads from is ours (evhttp_set_bevcb),
 *     and its input buffer carries a callback that runs when bytes arrive,
 *     before evhttp's read callback sees them. Those bytes go through
 *     api_frame.c; a request it refuses never reaches evhttp: the client
 *     gets a JSON 400 or 501 and the connection is closed.
 *   - Deadlines. Header: from the first byte of a request (from the accept
 *     for the first one) to the end of its head. Body: from there to the end
 *     of the body. Both are fixed when they start, so a client that trickles
 *     bytes cannot stretch them (evhttp's own timeout restarts with every
 *     byte). Idle: a keep-alive connection waiting for its next request. No
 *     deadline runs while a request is in its handler. Header and body
 *     expiry answer 408; idle expiry just closes.
 *   - The cap. http.max_connections counts open connections over every loop
 *     of the process (one atomic); one more is answered 503 at once and
 *     closed.
 *   - Error pages. evhttp answers some requests itself with an HTML page;
 *     the output buffer's callback swaps it for JSON (see on_output).
 *
 * Taking a connection over (fail_conn): we replace evhttp's bufferevent
 * callbacks with ours, so evhttp sees nothing more of it, write our reply,
 * half-close after it has left, drain what the client still sends so that it
 * reads the reply rather than a reset, and after LINGER_MS at most call
 * evhttp_connection_free(), which frees evhttp's side and, through the
 * connection's close callback, ours. This is only done while no request of
 * the connection is in a handler: evhttp_connection_free() would free the
 * request under it.
 *
 * Lifetime. A guard is made with its bufferevent and holds a reference to
 * it, so the bufferevent stays valid even if evhttp gives up on the
 * connection before the guard learns about it. The guard learns evhttp's
 * connection object on the first turn of the loop after the accept (an
 * active timer event: evhttp sets its callbacks, whose argument is that
 * object, right after making the bufferevent) and registers the close
 * callback there; the close callback frees the guard. Guards of connections
 * evhttp never took over are freed at that first turn or at teardown. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "api.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "met.h"

/* Longest time a refused connection is kept to deliver its reply. */
#define LINGER_MS 2000
#define PEEK_VECS 16

enum deadline { DL_NONE, DL_HEADER, DL_BODY, DL_IDLE, DL_LINGER };

struct api_conn {
    struct api_thread *t;
    struct bufferevent *bev;          /* one reference is ours */
    struct evhttp_connection *evcon;  /* evhttp's, once attached */
    struct evbuffer_cb_entry *in_cb, *out_cb;
    struct event *timer;              /* deadlines; its first run attaches */
    struct req *req;                  /* the request in its handler, if any */
    struct api_frame fr;
    enum deadline dl;
    int64_t deadline_ms;              /* monotonic */
    int64_t armed_ms;                 /* when the timer fires; 0 = not armed */
    int64_t accepted_ms;
    uint64_t added;                   /* bytes the client sent so far */
    uint64_t head_at;                 /* stream offset of the current request's first byte */
    int fd;
    int started;                      /* attached, admitted or refused */
    int counted;                      /* holds one of g->nconns */
    int refused;                      /* over the cap */
    int failing;                      /* taken over: replying with an error, then closing */
    int shut;                         /* our side half-closed */
    int cutting;                      /* modifying the input buffer: ignore its callbacks */
    int pending_msgs;                 /* requests read whole, not yet in a handler */
    int doomed;                       /* a refused request waits for earlier ones' replies */
    int doom_status;
    const char *doom_why;
    struct api_conn *prev, *next;     /* t->conns */
};

static const char *const close_reasons[API_CLOSE_N] = {
    [API_CLOSE_HEADER_TIMEOUT] = "header_timeout", [API_CLOSE_BODY_TIMEOUT] = "body_timeout",
    [API_CLOSE_IDLE_TIMEOUT] = "idle_timeout",     [API_CLOSE_BAD_FRAMING] = "bad_framing",
    [API_CLOSE_OVER_CAPACITY] = "over_capacity",
};

void api_conn_metrics_init(struct api_global *g)
{
    static const char *const labels[] = { "reason" };
    int fam = met_family(g->met, "conveyor_http_connections_closed_total",
                         "Client connections the API closed on its own, by reason.", 1, labels,
                         0);
    for (int i = 0; i < API_CLOSE_N; i++) {
        const char *v[] = { close_reasons[i] };
        int s = met_series(g->met, fam, v);
        if (i == 0)
            g->m_conn_closed = s;
    }
}

static void count_close(struct api_conn *c, enum api_conn_close why)
{
    met_inc(c->t->g->met, c->t->idx, c->t->g->m_conn_closed + (int)why);
}

/* ==== socket -> guard ======================================================= */

static void map_set(struct api_thread *t, int fd, struct api_conn *c)
{
    if (fd < 0)
        return;
    if (fd >= t->conn_by_fd_cap) {
        int cap = t->conn_by_fd_cap ? t->conn_by_fd_cap : 256;
        while (cap <= fd)
            cap *= 2;
        t->conn_by_fd = xrealloc(t->conn_by_fd, (size_t)cap * sizeof(*t->conn_by_fd));
        memset(t->conn_by_fd + t->conn_by_fd_cap, 0,
               (size_t)(cap - t->conn_by_fd_cap) * sizeof(*t->conn_by_fd));
        t->conn_by_fd_cap = cap;
    }
    t->conn_by_fd[fd] = c;
}

/* ==== life and death ========================================================== */

static void conn_free(struct api_conn *c)
{
    struct api_thread *t = c->t;
    if (c->evcon)
        evhttp_connection_set_closecb(c->evcon, NULL, NULL);
    if (c->fd >= 0 && c->fd < t->conn_by_fd_cap && t->conn_by_fd[c->fd] == c)
        t->conn_by_fd[c->fd] = NULL;
    evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
    evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
    event_free(c->timer);
    if (c->counted)
        atomic_fetch_sub(&t->g->nconns, 1);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    bufferevent_decref(c->bev);
    free(c);
}

/* evhttp is freeing the connection (client gone, error, Connection: close,
 * or our close_now): the guard goes with it. */
static void on_closed(struct evhttp_connection *evcon, void *arg)
{
    struct api_conn *c = arg;
    (void)evcon;
    if (c->req) {
        /* evhttp frees the request right after this: never touch it again */
        c->req->gone = 1;
        c->req->http = NULL;
        c->req->conn = NULL;
        c->req = NULL;
    }
    conn_free(c);
}

/* evhttp's connection object, from the callbacks it set on our bufferevent.
 * 0 when evhttp already let go of it (then the guard is freed). */
static int attach(struct api_conn *c)
{
    bufferevent_event_cb ecb = NULL;
    void *arg = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, &ecb, &arg);
    if (!ecb || !arg) {
        conn_free(c);
        return 0;
    }
    c->evcon = arg;
    evhttp_connection_set_closecb(c->evcon, on_closed, c);
    c->fd = bufferevent_getfd(c->bev);
    map_set(c->t, c->fd, c);
    return 1;
}

/* Close now, without a reply. c is freed. */
static void close_now(struct api_conn *c)
{
    evhttp_connection_free(c->evcon);
}

void api_conn_abort(struct api_conn *c)
{
    if (c)
        close_now(c);
}

/* ==== deadlines ================================================================== */

static void arm(struct api_conn *c, int64_t at_ms)
{
    int64_t d = at_ms - clock_mono_ms();
    if (d < 0)
        d = 0;
    struct timeval tv = { (time_t)(d / 1000), (suseconds_t)((d % 1000) * 1000) };
    evtimer_add(c->timer, &tv);
    c->armed_ms = at_ms;
}

/* Lazy: the timer is moved only when the new deadline is earlier than the
 * time it fires; a timer that fires early finds the later deadline and
 * re-arms. So most requests touch the timer once (their first byte). */
static void set_deadline(struct api_conn *c, enum deadline dl, int64_t at_ms)
{
    c->dl = dl;
    c->deadline_ms = at_ms;
    if (dl != DL_NONE && (!c->armed_ms || at_ms < c->armed_ms))
        arm(c, at_ms);
}

static void fail_conn(struct api_conn *c, int status, const char *code, const char *why);

/* The first turn after the accept (or the first bytes, should they come
 * first): attach, then refuse over the cap or start the header deadline.
 * 0 when the connection is gone or refused. */
static int start(struct api_conn *c)
{
    const struct cfg *cfg = c->t->cfg;
    c->started = 1;
    if (!c->evcon && !attach(c))
        return 0;
    if (c->refused) {
        /* one line a second at most: a flood must not flood the log too */
        static __thread int64_t warned_ms;
        int64_t now = clock_mono_ms();
        count_close(c, API_CLOSE_OVER_CAPACITY);
        if (now - warned_ms >= 1000) {
            warned_ms = now;
            LOG_WARN("http.over_capacity", "max_connections=%d", cfg->http_max_connections);
        }
        fail_conn(c, 503, "unavailable", "too many connections; retry later");
        return 0;
    }
    set_deadline(c, DL_HEADER, c->accepted_ms + cfg->http_header_timeout_ms);
    return 1;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct api_conn *c = arg;
    const struct cfg *cfg = c->t->cfg;
    char msg[96];
    (void)fd;
    (void)what;
    /* Running it deleted the event, whatever armed it: re-arm below if a
     * deadline is still ahead. */
    c->armed_ms = 0;
    if (!c->started) {
        start(c);
        return;
    }
    if (c->dl == DL_NONE || c->req)
        return;                       /* api_conn_replied() sets the next one */
    if (clock_mono_ms() < c->deadline_ms) {
        arm(c, c->deadline_ms);
        return;
    }
    switch (c->dl) {
    case DL_HEADER:
        count_close(c, API_CLOSE_HEADER_TIMEOUT);
        snprintf(msg, sizeof(msg), "request head not received within %d ms",
                 cfg->http_header_timeout_ms);
        fail_conn(c, 408, "timeout", msg);
        break;
    case DL_BODY:
        count_close(c, API_CLOSE_BODY_TIMEOUT);
        snprintf(msg, sizeof(msg), "request body not received within %d ms",
                 cfg->http_body_timeout_ms);
        fail_conn(c, 408, "timeout", msg);
        break;
    case DL_IDLE:
        count_close(c, API_CLOSE_IDLE_TIMEOUT);
        close_now(c);
        break;
    case DL_LINGER:
    case DL_NONE:
        close_now(c);
        break;
    }
}

/* ==== taking a connection over ======================================================= */

static void on_fail_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_fail_write(struct bufferevent *bev, void *arg)
{
    struct api_conn *c = arg;
    (void)bev;
    /* the reply is out: tell the client we are done, read until it is too */
    if (!c->shut && c->fd >= 0)
        shutdown(c->fd, SHUT_WR);
    c->shut = 1;
}

static void on_fail_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    close_now(arg);                   /* EOF or error: nothing more to deliver */
}

/* Answer status with a JSON error and close (see the top of this file). */
static void fail_conn(struct api_conn *c, int status, const char *code, const char *why)
{
    CV_ASSERT(c->evcon && !c->req);
    struct api_thread *t = c->t;
    c->failing = 1;
    bufferevent_setcb(c->bev, on_fail_read, on_fail_write, on_fail_event, c);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    struct sbuf b;
    sbuf_init(&b);
    api_err_json_extra(&b, code, why, NULL);
    evbuffer_add_printf(bufferevent_get_output(c->bev),
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                        status, api_status_reason(status), b.len,
                        status == 503 ? "Retry-After: 1\r\n" : "");
    evbuffer_add(bufferevent_get_output(c->bev), b.p, b.len);
    sbuf_cleanup(&b);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    set_deadline(c, DL_LINGER, clock_mono_ms() + LINGER_MS);
    api_http_count_other(t, status);
    LOG_DEBUG("http.conn_refused", "status=%d why=\"%s\"", status, why);
}

/* ==== the bytes the client sends ====================================================== */

/* Keep only the first keep bytes of the input buffer. */
static void cut_input(struct api_conn *c, struct evbuffer *in, size_t keep)
{
    struct evbuffer *head = evbuffer_new();
    CV_ASSERT(head);
    c->cutting = 1;
    evbuffer_remove_buffer(in, head, keep);
    evbuffer_drain(in, evbuffer_get_length(in));
    evbuffer_prepend_buffer(in, head);
    c->cutting = 0;
    evbuffer_free(head);
}

static void framing_error(struct api_conn *c, struct evbuffer *in)
{
    count_close(c, API_CLOSE_BAD_FRAMING);
    LOG_INFO("http.bad_framing", "status=%d why=\"%s\"", c->fr.status, c->fr.why);
    if (!c->req && c->pending_msgs == 0) {
        fail_conn(c, c->fr.status, c->fr.status == 501 ? "unsupported" : "invalid", c->fr.why);
        return;
    }
    /* Earlier requests of this connection are still to be answered: evhttp
     * has not started on the refused one, so cut it (and whatever follows)
     * out of the buffer; api_conn_replied() refuses once they are answered. */
    c->doomed = 1;
    c->doom_status = c->fr.status;
    c->doom_why = c->fr.why;
    uint64_t buf_at = c->added - evbuffer_get_length(in);
    cut_input(c, in, c->head_at > buf_at ? (size_t)(c->head_at - buf_at) : 0);
}

/* Feed n bytes to the framing checker. -1 once the connection is refused. */
static int feed(struct api_conn *c, struct evbuffer *in, uint64_t at, const char *p, size_t n)
{
    const struct cfg *cfg = c->t->cfg;
    for (;;) {
        enum api_frame_ev ev;
        size_t k = api_frame_feed(&c->fr, p, n, &ev);
        switch (ev) {
        case API_FRAME_HEAD_START:
            c->head_at = at;
            /* the first request's deadline counts from the accept */
            if (c->dl != DL_HEADER)
                set_deadline(c, DL_HEADER, clock_mono_ms() + cfg->http_header_timeout_ms);
            break;
        case API_FRAME_HEAD_END:
            set_deadline(c, DL_BODY, clock_mono_ms() + cfg->http_body_timeout_ms);
            break;
        case API_FRAME_MSG_END:
            c->pending_msgs++;
            set_deadline(c, DL_NONE, 0);
            break;
        case API_FRAME_ERROR:
            framing_error(c, in);
            return -1;
        case API_FRAME_NONE:
            return 0;
        }
        p += k;
        n -= k;
        at += k;
        if (n == 0)
            return 0;
    }
}

/* Bytes were added to (or taken from) the input buffer. Runs inside the
 * bufferevent's read, before evhttp's read callback. */
static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    struct api_conn *c = arg;
    if (info->n_added == 0 || c->failing || c->cutting)
        return;
    if (!c->started && !start(c))
        return;
    size_t len = evbuffer_get_length(in);
    size_t start = len - info->n_added;
    uint64_t at = c->added;
    c->added += info->n_added;
    if (c->doomed) {
        cut_input(c, in, start);      /* nothing after a refused request is read */
        return;
    }
    struct evbuffer_ptr ptr;
    if (evbuffer_ptr_set(in, &ptr, start, EVBUFFER_PTR_SET) != 0)
        return;
    size_t left = info->n_added;
    while (left > 0) {
        struct evbuffer_iovec v[PEEK_VECS];
        int nv = evbuffer_peek(in, (ev_ssize_t)left, &ptr, v, PEEK_VECS);
        if (nv <= 0)
            break;
        if (nv > PEEK_VECS)
            nv = PEEK_VECS;
        size_t took = 0;
        for (int i = 0; i < nv && took < left; i++) {
            size_t n = v[i].iov_len < left - took ? v[i].iov_len : left - took;
            if (feed(c, in, at + took, v[i].iov_base, n) < 0)
                return;               /* the buffer may have changed: stop here */
            took += n;
        }
        left -= took;
        at += took;
        evbuffer_ptr_set(in, &ptr, took, EVBUFFER_PTR_ADD);
    }
}

/* ==== evhttp's own error pages ============================================= */

/* evhttp answers some requests before they reach us: a malformed request
 * line or headers (400), a body over evhttp_set_max_body_size (413, decided
 * from Content-Length before the body is read) and a few more. It writes them
 * with evhttp_send_error(), a fixed HTML page, and libevent 2.1 has no hook to
 * change that (evhttp_set_errorcb is 2.2 only). Our clients must get JSON, so
 * each connection's output buffer carries a callback that spots such a page as
 * it is added and swaps the whole response for the JSON error before a byte
 * reaches the socket. Safe because evhttp starts reading a request only after
 * the previous response was fully written: the error response is alone in the
 * buffer, and evhttp closes the connection after it (Connection: close). */
static __thread int rewriting;

static void rewrite_error_page(struct api_thread *t, struct evbuffer *buf, size_t body_at)
{
    /* evhttp echoes the request's version, any digits ("HTTP/1.11 501": found
     * by tests/fuzz/fuzz_http) */
    char head[32];
    size_t total = evbuffer_get_length(buf);
    ev_ssize_t n = evbuffer_copyout(buf, head, sizeof(head) - 1);
    if (n < 12)
        return;
    head[n] = '\0';
    const char *sp = strchr(head, ' ');
    if (memcmp(head, "HTTP/", 5) != 0 || !sp)
        return;
    struct evbuffer_ptr end = evbuffer_search(buf, "\r\n\r\n", 4, NULL);
    if (end.pos < 0 || (size_t)end.pos + 4 != body_at)
        return;                         /* not a lone response: leave it */
    int status = atoi(sp + 1);
    enum cv_rc rc;
    char msg[128];
    switch (status) {
    case 413:
        rc = CV_ERR_TOO_LARGE;
        snprintf(msg, sizeof(msg), "request body over %d bytes", t->cfg->body_max_bytes);
        break;
    case 400:
    case 417:
        rc = CV_ERR_INVALID;
        snprintf(msg, sizeof(msg), "malformed HTTP request");
        break;
    case 404:
        rc = CV_ERR_NOT_FOUND;
        snprintf(msg, sizeof(msg), "no such route");
        break;
    case 405:
    case 501:
        rc = CV_ERR_UNSUPPORTED;
        snprintf(msg, sizeof(msg), "method not supported");
        break;
    case 503:
        rc = CV_ERR_IO;
        snprintf(msg, sizeof(msg), "service unavailable");
        break;
    default:
        rc = CV_ERR_INTERNAL;
        snprintf(msg, sizeof(msg), "HTTP error");
        break;
    }
    struct sbuf b;
    sbuf_init(&b);
    api_err_json(&b, rc, msg, status == 413 ? "body" : NULL);
    rewriting = 1;
    evbuffer_drain(buf, total);
    evbuffer_add_printf(buf,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                        status, api_status_reason(status), b.len);
    evbuffer_add(buf, b.p, b.len);
    rewriting = 0;
    sbuf_cleanup(&b);
    api_http_count_other(t, status);
    LOG_DEBUG("http.request", "route=other status=%d evhttp=1", status);
}

static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    static const char page[] = "<HTML><HEAD>\n<TITLE>";
    struct api_conn *c = arg;
    char peek[sizeof(page) - 1];
    struct evbuffer_ptr p;
    if (rewriting || c->failing || info->n_added < sizeof(peek))
        return;
    size_t total = evbuffer_get_length(buf);
    if (info->n_added > total)
        return;
    size_t start = total - info->n_added;
    /* libevent 2.1's bufferevent_writecb freezes the start of the output
     * again after each write, so from a connection's second reply on, copying
     * out and draining failed and the page went out as HTML (found by
     * tests/fuzz/fuzz_http). Lift the freeze while we look (the bufferevent
     * lifts it itself to write) and put it back as it was. */
    char ch;
    int frozen = evbuffer_copyout(buf, &ch, 1) < 0;
    if (frozen)
        evbuffer_unfreeze(buf, 1);
    if (evbuffer_ptr_set(buf, &p, start, EVBUFFER_PTR_SET) == 0 &&
        evbuffer_copyout_from(buf, &p, peek, sizeof(peek)) == (ev_ssize_t)sizeof(peek) &&
        memcmp(peek, page, sizeof(peek)) == 0)
        rewrite_error_page(c->t, buf, start);
    if (frozen)
        evbuffer_freeze(buf, 1);
}

/* ==== API ===================================================================== */

struct bufferevent *api_conn_make_bev(struct event_base *base, void *arg)
{
    struct api_thread *t = arg;
    /* no BEV_OPT_CLOSE_ON_FREE: evhttp closes the socket itself, as it does
     * for the bufferevents it makes */
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    if (!bev)
        return NULL;
    struct api_conn *c = xcalloc(1, sizeof(*c));
    c->t = t;
    c->bev = bev;
    c->fd = -1;
    c->accepted_ms = clock_mono_ms();
    api_frame_init(&c->fr);
    bufferevent_incref(bev);
    c->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), on_output, c);
    c->timer = evtimer_new(base, on_timer, c);
    CV_ASSERT(c->in_cb && c->out_cb && c->timer);
    if (atomic_fetch_add(&t->g->nconns, 1) < t->cfg->http_max_connections) {
        c->counted = 1;
    } else {
        atomic_fetch_sub(&t->g->nconns, 1);
        c->refused = 1;
    }
    c->next = t->conns;
    if (t->conns)
        t->conns->prev = c;
    t->conns = c;
    /* evhttp sets its callbacks on bev right after this returns: attach then */
    event_active(c->timer, EV_TIMEOUT, 1);
    return bev;
}

struct api_conn *api_conn_of_request(struct api_thread *t, struct evhttp_request *hr,
                                     struct req *r)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(hr);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    int fd = bev ? (int)bufferevent_getfd(bev) : -1;
    struct api_conn *c = fd >= 0 && fd < t->conn_by_fd_cap ? t->conn_by_fd[fd] : NULL;
    if (!c || c->bev != bev) {
        /* Not reached: a request comes after bytes, and bytes attach. Should
         * it happen, find the guard the slow way: without one, a client that
         * leaves would leave r->http dangling. */
        for (c = t->conns; c && c->bev != bev; c = c->next)
            ;
        CV_ASSERT(c && (c->evcon || attach(c)));
        LOG_ERROR("http.conn_unmapped", "fd=%d", fd);
    }
    c->req = r;
    if (c->pending_msgs > 0)
        c->pending_msgs--;
    set_deadline(c, DL_NONE, 0);
    return c;
}

void api_conn_replied(struct api_conn *c)
{
    if (!c)
        return;
    const struct cfg *cfg = c->t->cfg;
    int64_t now = clock_mono_ms();
    c->req = NULL;
    if (c->doomed && c->pending_msgs == 0) {
        /* after the reply just queued: the refusal goes out behind it */
        fail_conn(c, c->doom_status, c->doom_status == 501 ? "unsupported" : "invalid",
                  c->doom_why);
        return;
    }
    /* a request that came in behind this one waited for us: its clock
     * starts now */
    if (api_frame_mid_head(&c->fr))
        set_deadline(c, DL_HEADER, now + cfg->http_header_timeout_ms);
    else if (api_frame_mid_body(&c->fr))
        set_deadline(c, DL_BODY, now + cfg->http_body_timeout_ms);
    else if (c->pending_msgs == 0)
        set_deadline(c, DL_IDLE, now + cfg->http_idle_timeout_ms);
}

void api_conn_free_all(struct api_thread *t)
{
    while (t->conns)
        conn_free(t->conns);
    free(t->conn_by_fd);
    t->conn_by_fd = NULL;
    t->conn_by_fd_cap = 0;
}
