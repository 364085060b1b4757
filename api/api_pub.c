/* api_pub.c - single-job publishes coalesced per loop turn.
 *
 * Every POST /v1/jobs/{type} and POST /api/v1/activation/ publishes one job.
 * Sent one by one, each costs Redis a script call and the loop a command of
 * its own; here the jobs of all requests parsed in the same loop turn go out
 * as one broker_publish call at the end of the turn (STYLE 7: flush side
 * effects once per turn). Nothing waits for a timer: the flush event is made
 * active when the first job arrives and runs after the sockets that were
 * ready in this turn. The script handles the jobs in order, so an
 * Idempotency-Key repeated inside one flush still maps to the first job.
 * All jobs of a flush succeed or fail together, as they would one by one
 * when Redis is down. */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "broker.h"
#include "mem.h"

#define PUB_MAX 256

struct pub_item {
    struct job *job;
    broker_publish_cb cb;
    void *arg;
};

struct api_pubq {
    struct api_thread *t;
    struct event *flush_ev;
    size_t n;
    struct pub_item items[PUB_MAX];
};

/* What one broker_publish call needs to answer its callers. */
struct pub_flight {
    size_t n;
    struct pub_item items[];
};

static void on_flushed(void *arg, enum cv_rc rc, const char *const *ids, const int *dup,
                       size_t n)
{
    struct pub_flight *f = arg;
    for (size_t i = 0; i < f->n; i++) {
        struct pub_item *it = &f->items[i];
        if (rc == CV_OK && n == f->n)
            it->cb(it->arg, CV_OK, &ids[i], &dup[i], 1);
        else
            it->cb(it->arg, rc != CV_OK ? rc : CV_ERR_INTERNAL, NULL, NULL, 0);
    }
    free(f);
}

static void flush(struct api_pubq *q)
{
    size_t n = q->n;
    if (n == 0)
        return;
    struct pub_flight *f = xmalloc(sizeof(*f) + n * sizeof(f->items[0]));
    struct job *jobs[PUB_MAX];
    f->n = n;
    for (size_t i = 0; i < n; i++) {
        f->items[i] = q->items[i];
        jobs[i] = q->items[i].job;
        f->items[i].job = NULL;
    }
    q->n = 0;                         /* before the call: callbacks may run inline */
    broker_publish(q->t->broker, jobs, n, q->t->cfg->idempotency_ttl_s, on_flushed, f);
    for (size_t i = 0; i < n; i++)
        job_free(jobs[i]);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush(arg);
}

int api_pub_init(struct api_thread *t)
{
    struct api_pubq *q = xcalloc(1, sizeof(*q));
    q->t = t;
    q->flush_ev = event_new(t->base, -1, 0, on_flush, q);
    t->pubq = q;
    return q->flush_ev ? 0 : -1;
}

void api_pub_free(struct api_thread *t)
{
    struct api_pubq *q = t->pubq;
    if (!q)
        return;
    /* only at teardown: the jobs never left, say so */
    for (size_t i = 0; i < q->n; i++) {
        job_free(q->items[i].job);
        q->items[i].cb(q->items[i].arg, CV_ERR_IO, NULL, NULL, 0);
    }
    if (q->flush_ev)
        event_free(q->flush_ev);
    free(q);
    t->pubq = NULL;
}

void api_publish_one(struct api_thread *t, struct job *job, broker_publish_cb cb, void *arg)
{
    struct api_pubq *q = t->pubq;
    if (t->closing) {
        job_free(job);
        cb(arg, CV_ERR_IO, NULL, NULL, 0);
        return;
    }
    q->items[q->n++] = (struct pub_item){ job, cb, arg };
    if (q->n == 1)
        event_active(q->flush_ev, EV_TIMEOUT, 0);
    if (q->n == PUB_MAX)
        flush(q);
}
