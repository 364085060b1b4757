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
 * when Redis is down.
 *
 * How a failure is told. A publish that fails before broker_publish returns
 * never left the process (the Redis link was down): 503, nothing enqueued, a
 * plain retry is safe. A publish that fails later was written to Redis and
 * got no answer (a timeout drops the link): the script may have run, or may
 * still run when Redis wakes up. That outcome is unknown, and the reply says
 * so with the job's id (504 outcome_unknown, Conveyor-Job-Id header). A retry
 * that sends the id back in Conveyor-Job-Id publishes under the same id, and
 * the publish script treats an existing job with that id (same type and
 * producer) as a duplicate: at most one job, whatever the first attempt did.
 * On Kafka a publish recorded in Redis whose delivery the cluster did not
 * confirm in time (CV_ERR_UNAVAILABLE, later) is 503 with the id: the job is
 * kept and produced by the transport's sweep once the cluster is back. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "broker.h"
#include "jobtype.h"
#include "mem.h"

#define PUB_MAX 256

struct pub_item {
    struct job *job;
    api_pub_cb cb;
    void *arg;
    char id[UUID_STR_LEN];            /* the job's id: the job is freed once sent */
};

struct api_pubq {
    struct api_thread *t;
    struct event *flush_ev;
    size_t n;
    struct pub_item items[PUB_MAX];
};

/* 429: the type's queue holds its max_queued unsettled jobs (backpressure);
 * wait_s is the broker's estimate from the type's drain rate. */
void api_reply_full(struct req *r, const char *wait_s)
{
    char msg[200];
    const struct jobtype *jt = jobtype_at(r->type_idx);   /* webhooks: r->type is the source */
    const char *type = jt ? jt->name : r->type;
    api_add_header(r, "Retry-After", wait_s && *wait_s ? wait_s : "1");
    snprintf(msg, sizeof(msg),
             "the %s queue is full (jobs.types.%s.max_queued): nothing was enqueued; retry "
             "after %s s",
             type, type, wait_s && *wait_s ? wait_s : "1");
    api_reply_err(r, CV_ERR_RATE, msg, NULL);
}

/* What one broker_publish call needs to answer its callers. */
struct pub_flight {
    size_t n;
    struct pub_item items[];
};

/* The flight inside broker_publish on this thread, NULL otherwise: a callback
 * for it then means the publish never left (see the top of this file). A
 * thread-local rather than a field of the queue, because the queue may be
 * gone at teardown when the last callbacks run. */
static __thread const struct pub_flight *calling;

static void on_flushed(void *arg, enum cv_rc rc, const char *const *ids, const int *dup,
                       size_t n)
{
    struct pub_flight *f = arg;
    /* CV_ERR_BUSY: Redis is full (maxmemory) and refused the publish whole */
    enum api_pub_outcome failed = calling == f || rc == CV_ERR_BUSY ? API_PUB_UNSENT
                                  : rc == CV_ERR_UNAVAILABLE ? API_PUB_RECORDED
                                                             : API_PUB_UNKNOWN;
    for (size_t i = 0; i < f->n; i++) {
        struct pub_item *it = &f->items[i];
        if (rc == CV_OK && n == f->n)
            it->cb(it->arg, dup[i] == 0   ? API_PUB_NEW
                            : dup[i] == 1 ? API_PUB_DUP
                            : dup[i] == 3 ? API_PUB_FULL
                                          : API_PUB_CONFLICT,
                   ids[i]);
        else
            it->cb(it->arg, failed, it->id);
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
    calling = f;
    broker_publish(q->t->broker, jobs, n, q->t->cfg->idempotency_ttl_s, on_flushed, f);
    calling = NULL;
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
        q->items[i].cb(q->items[i].arg, API_PUB_UNSENT, q->items[i].id);
    }
    if (q->flush_ev)
        event_free(q->flush_ev);
    free(q);
    t->pubq = NULL;
}

void api_publish_one(struct api_thread *t, struct job *job, api_pub_cb cb, void *arg)
{
    struct api_pubq *q = t->pubq;
    if (t->closing) {
        char id[UUID_STR_LEN];
        memcpy(id, job->id, sizeof(id));
        job_free(job);
        cb(arg, API_PUB_UNSENT, id);
        return;
    }
    struct pub_item *it = &q->items[q->n++];
    *it = (struct pub_item){ job, cb, arg, "" };
    memcpy(it->id, job->id, sizeof(it->id));
    if (q->n == 1)
        event_active(q->flush_ev, EV_TIMEOUT, 0);
    if (q->n == PUB_MAX)
        flush(q);
}

void api_reply_pub_failure(struct req *r, enum api_pub_outcome o, const char *what,
                           const char *id)
{
    char msg[400];
    if (o == API_PUB_FULL) {
        api_reply_full(r, id);
        return;
    }
    if (o == API_PUB_CONFLICT) {
        snprintf(msg, sizeof(msg),
                 API_JOB_ID_HEADER " %s is the id of another job (another type or producer)",
                 r->id);
        api_reply_err(r, CV_ERR_CONFLICT, msg, API_JOB_ID_HEADER);
        return;
    }
    if (o == API_PUB_RECORDED) {
        snprintf(msg, sizeof(msg),
                 "the broker did not confirm the %s in time: it is recorded and runs once the "
                 "broker is back. Retry with the header " API_JOB_ID_HEADER
                 ": %s; the retry never enqueues it twice",
                 what, r->id);
        api_add_header(r, API_JOB_ID_HEADER, r->id);
        api_reply_err(r, CV_ERR_UNAVAILABLE, msg, NULL);
        return;
    }
    if (o != API_PUB_UNKNOWN) {
        snprintf(msg, sizeof(msg),
                 "the broker is unavailable or full: the %s was not enqueued; retry", what);
        api_reply_err(r, CV_ERR_IO, msg, NULL);
        return;
    }
    struct sbuf b, extra;
    sbuf_init(&b);
    sbuf_init(&extra);
    snprintf(msg, sizeof(msg),
             "Redis did not answer in time: the %s may or may not have been enqueued. Retry "
             "with the header " API_JOB_ID_HEADER ": %s; the retry enqueues it only if this "
             "attempt did not",
             what, r->id);
    sbuf_adds(&extra, "\"id\":");
    sbuf_add_json_str(&extra, r->id);
    api_err_json_extra(&b, API_CODE_OUTCOME_UNKNOWN, msg, extra.p);
    api_add_header(r, API_JOB_ID_HEADER, r->id);
    api_reply_json(r, API_STATUS_OUTCOME_UNKNOWN, &b);
    sbuf_cleanup(&b);
    sbuf_cleanup(&extra);
}
