#include "sim_pending.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "sim_http.h"

/* One request answered later (delayed) or never (held). Owns nothing but
 * itself: evhttp owns req, and we only decide when it is answered or its
 * connection closed. The timer lives in ev_store (event_assign). */
struct sim_pending {
    struct sim_pending *prev, *next;
    struct sim_pending_set *set;
    struct evhttp_request *req;
    int64_t start_us;
    int status;
    int held;
    max_align_t ev_store[];
};

/* ---- low level --------------------------------------------------------- */

static struct event *ev_of(struct sim_pending *p)
{
    return (struct event *)(void *)p->ev_store;
}

static struct sim_pending **list_of(struct sim_pending_set *ps, int held)
{
    return held ? &ps->held : &ps->delayed;
}

/* Append p at the tail (head->prev is the tail: a circular doubly-linked list). */
static void link_tail(struct sim_pending_set *ps, struct sim_pending *p)
{
    struct sim_pending **head = list_of(ps, p->held);
    if (!*head) {
        p->prev = p->next = p;
        *head = p;
    } else {
        p->next = *head;
        p->prev = (*head)->prev;
        (*head)->prev->next = p;
        (*head)->prev = p;
    }
    if (p->held)
        ps->nheld++;
    else
        ps->ndelayed++;
}

static void unlink_p(struct sim_pending_set *ps, struct sim_pending *p)
{
    struct sim_pending **head = list_of(ps, p->held);
    if (ps->cursor == p)
        ps->cursor = p->next != p ? p->next : NULL;
    if (p->next == p) {
        *head = NULL;
    } else {
        p->prev->next = p->next;
        p->next->prev = p->prev;
        if (*head == p)
            *head = p->next;
    }
    p->prev = p->next = NULL;
    if (p->held)
        ps->nheld--;
    else
        ps->ndelayed--;
}

/* Close p's connection without an answer (evhttp frees req with it), or free
 * req alone when evhttp already detached it from a dead connection. */
static void drop(struct sim_pending *p, const char *why)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(p->req);
    LOG_DEBUG("sim.request", "method=%s status=0 outcome=dropped reason=%s dur_us=%lld",
              sim_method_str(evhttp_request_get_command(p->req)), why,
              (long long)(clock_mono_us() - p->start_us));
    if (evcon)
        evhttp_connection_free(evcon);
    else
        evhttp_request_free(p->req);
    p->req = NULL;
}

static void destroy(struct sim_pending *p)
{
    event_del(ev_of(p));
    unlink_p(p->set, p);
    free(p);
}

/* 1 when the client of a held request has closed its side or the socket failed. */
static int client_gone(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon)
        return 1;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0)
        return 1;
    char ch;
    ssize_t n = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return 1;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

/* ---- timers ----------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sim_pending *p = arg;
    (void)fd;
    (void)what;
    if (p->held)
        drop(p, "hold_expired");
    else
        sim_send(p->req, p->status, p->start_us);
    destroy(p);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct sim_pending_set *ps = arg;
    (void)fd;
    (void)what;
    size_t n = ps->nheld < SIM_SWEEP_MAX ? ps->nheld : SIM_SWEEP_MAX;
    if (!ps->cursor)
        ps->cursor = ps->held;
    for (size_t i = 0; i < n && ps->cursor; i++) {
        struct sim_pending *p = ps->cursor;
        ps->cursor = p->next;
        if (client_gone(p->req)) {
            drop(p, "client_gone");
            destroy(p);                  /* moves the cursor on if it pointed at p */
        }
    }
}

static struct sim_pending *pending_new(struct sim_pending_set *ps, struct evhttp_request *req,
                                       int held, int status, int64_t start_us)
{
    struct sim_pending *p = xcalloc(1, sizeof(*p) + event_get_struct_event_size());
    p->set = ps;
    p->req = req;
    p->held = held;
    p->status = status;
    p->start_us = start_us;
    int r = event_assign(ev_of(p), ps->base, -1, 0, on_timer, p);
    CV_ASSERT(r == 0);
    link_tail(ps, p);
    return p;
}

/* ---- API ------------------------------------------------------------------ */

void sim_pending_init(struct sim_pending_set *ps, struct event_base *base)
{
    struct timeval hold = { SIM_HOLD_MAX_MS / 1000, (SIM_HOLD_MAX_MS % 1000) * 1000 };
    struct timeval sweep = { SIM_SWEEP_INTERVAL_MS / 1000, (SIM_SWEEP_INTERVAL_MS % 1000) * 1000 };
    *ps = (struct sim_pending_set){ .base = base };
    ps->hold_tv = event_base_init_common_timeout(base, &hold);
    CV_ASSERT(ps->hold_tv);
    ps->sweep = event_new(base, -1, EV_PERSIST, on_sweep, ps);
    CV_ASSERT(ps->sweep);
    int r = event_add(ps->sweep, &sweep);
    CV_ASSERT(r == 0);
}

void sim_pending_cleanup(struct sim_pending_set *ps)
{
    while (ps->delayed) {
        struct sim_pending *p = ps->delayed;
        drop(p, "shutdown");
        destroy(p);
    }
    while (ps->held) {
        struct sim_pending *p = ps->held;
        drop(p, "shutdown");
        destroy(p);
    }
    if (ps->sweep)
        event_free(ps->sweep);
    ps->sweep = NULL;
}

void sim_pending_answer(struct sim_pending_set *ps, struct evhttp_request *req, int status,
                        int delay_ms, int64_t start_us)
{
    if (delay_ms <= 0) {
        sim_send(req, status, start_us);
        return;
    }
    struct sim_pending *p = pending_new(ps, req, 0, status, start_us);
    struct timeval tv = { delay_ms / 1000, (delay_ms % 1000) * 1000 };
    int r = event_add(ev_of(p), &tv);
    CV_ASSERT(r == 0);
}

void sim_pending_hold(struct sim_pending_set *ps, struct evhttp_request *req, int64_t start_us)
{
    struct sim_pending *p = pending_new(ps, req, 1, 0, start_us);
    int r = event_add(ev_of(p), ps->hold_tv);
    CV_ASSERT(r == 0);
}
