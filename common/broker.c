/* broker.c - the table of transports, and dispatch to the one configured; the
 * calls that touch the job-status store only go to it directly (jstore.h). */
#include "broker_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

/* Every transport this build has; broker.transport picks one by name. A new
 * transport is one row here and one file that fills struct broker_ops. */
struct transport {
    const char *name;
    struct broker *(*open)(const struct cfg *cfg, struct event_base *base);
    unsigned caps;          /* enum broker_cap bits */
};

static const struct transport transports[] = {
    { "redis", rstream_open,
      BROKER_CAP_RECLAIM_IDLE | BROKER_CAP_ATOMIC_BATCH | BROKER_CAP_DELAYED_SET |
          BROKER_CAP_CONSUMER_GC },
    /* the group rebalance redelivers a dead member's jobs; a batch is recorded,
     * then produced (kstream.c says what that guarantees) */
    { "kafka", kstream_open, BROKER_CAP_DELAYED_SET },
};
#define NTRANSPORTS (sizeof(transports) / sizeof(transports[0]))

static const struct transport *transport_find(const char *name)
{
    for (size_t i = 0; name && i < NTRANSPORTS; i++)
        if (strcmp(transports[i].name, name) == 0)
            return &transports[i];
    return NULL;
}

int broker_transport_known(const char *name)
{
    return transport_find(name) != NULL;
}

void broker_transport_names(char *out, size_t cap)
{
    size_t o = 0;
    if (cap)
        out[0] = '\0';
    for (size_t i = 0; i < NTRANSPORTS && o < cap; i++) {
        int n = snprintf(out + o, cap - o, "%s%s", i ? ", " : "", transports[i].name);
        if (n < 0)
            break;
        o += (size_t)n;
    }
}

const char *const broker_counter_names[BROKER_NCOUNTERS] = {
    [BROKER_C_ENQUEUED] = "enqueued", [BROKER_C_SUCCEEDED] = "succeeded",
    [BROKER_C_FAILED] = "failed",     [BROKER_C_RETRIED] = "retried",
    [BROKER_C_DEAD] = "dead",         [BROKER_C_DEFERRED] = "deferred",
    [BROKER_C_REPLAYED] = "replayed", [BROKER_C_PURGED] = "purged",
    [BROKER_C_EXPIRED] = "expired",
    [BROKER_C_RETIRED] = "retired",
};

const char *const broker_event_names[BROKER_NEVENTS] = {
    [BROKER_E_RECLAIMED] = "reclaimed",
    [BROKER_E_FENCED] = "fenced",
};
const char *const broker_event_metrics[BROKER_NEVENTS] = {
    [BROKER_E_RECLAIMED] = "conveyor_reclaims_total",
    [BROKER_E_FENCED] = "conveyor_fenced_writes_total",
};

struct broker *broker_open(const struct cfg *cfg, struct event_base *base)
{
    const struct transport *t = transport_find(cfg->broker_transport);
    if (!t) {
        char known[256];
        broker_transport_names(known, sizeof(known));
        LOG_ERROR("broker.unknown_transport", "transport=%s known=\"%s\"",
                  cfg->broker_transport ? cfg->broker_transport : "", known);
        return NULL;
    }
    struct broker *b = t->open(cfg, base);
    if (b) {
        b->transport = t->name;
        b->caps = t->caps;
    }
    return b;
}

unsigned broker_caps(const struct broker *b)
{
    return b->caps;
}

const char *broker_transport(const struct broker *b)
{
    return b->transport;
}

void broker_close(struct broker *b)
{
    if (b)
        b->ops->close(b);
}

int broker_ready(struct broker *b)
{
    return b->ops->ready(b);
}

void broker_publish(struct broker *b, struct job *const *jobs, size_t n, int idem_ttl_s,
                    broker_publish_cb cb, void *arg)
{
    b->ops->publish(b, jobs, n, idem_ttl_s, cb, arg);
}

void broker_get(struct broker *b, const char *id, broker_status_cb cb, void *arg)
{
    jstore_get(b->js, id, cb, arg);
}

void broker_dead_list(struct broker *b, const char *type, int limit, broker_list_cb cb,
                      void *arg)
{
    jstore_dead_list(b->js, type, limit, cb, arg);
}

void broker_dead_page(struct broker *b, const char *type, int64_t since_ms, const char *cursor,
                      int limit, broker_page_cb cb, void *arg)
{
    jstore_dead_page(b->js, type, since_ms, cursor, limit, cb, arg);
}

void job_status_cleanup(struct job_status *st)
{
    FREE_NULL(st->payload);
    FREE_NULL(st->idem_key);
}

struct get_copy {
    enum cv_rc rc;
    struct job_status *out;
};

static void on_get_copy(void *arg, enum cv_rc rc, const struct job_status *st)
{
    struct get_copy *g = arg;
    g->rc = rc;
    if (rc != CV_OK || !st)
        return;
    *g->out = *st;
    g->out->payload = st->payload ? xstrdup(st->payload) : NULL;
    g->out->idem_key = st->idem_key ? xstrdup(st->idem_key) : NULL;
}

enum cv_rc broker_get_copy(struct broker *b, const char *id, struct job_status *out)
{
    struct get_copy g = { CV_ERR_INTERNAL, out };   /* stays so if no callback ran */
    memset(out, 0, sizeof(*out));
    broker_get(b, id, on_get_copy, &g);
    return g.rc;
}

void broker_dead_retry(struct broker *b, const char *id, broker_done_cb cb, void *arg)
{
    b->ops->dead_retry(b, id, cb, arg);
}

void broker_queues(struct broker *b, broker_queues_cb cb, void *arg)
{
    b->ops->queues(b, cb, arg);
}

void broker_workers(struct broker *b, int64_t alive_ms, broker_workers_cb cb, void *arg)
{
    jstore_workers(b->js, alive_ms, cb, arg);
}

void broker_counters(struct broker *b, broker_counters_cb cb, void *arg)
{
    jstore_counters(b->js, cb, arg);
}

enum cv_rc broker_consume(struct broker *b, const char *consumer, const char *const *types,
                          size_t ntypes, size_t max, int block_ms, struct job **out, size_t *n)
{
    *n = 0;
    if (ntypes == 0 || max == 0)
        return CV_OK;   /* a transport's consume may assume both */
    return b->ops->consume(b, consumer, types, ntypes, max, block_ms, out, n);
}

enum cv_rc broker_reclaim(struct broker *b, const char *consumer, const char *type,
                          int64_t min_idle_ms, size_t max, struct job **out, size_t *n)
{
    *n = 0;
    if (!(b->caps & BROKER_CAP_RECLAIM_IDLE))
        return CV_OK;
    return b->ops->reclaim(b, consumer, type, min_idle_ms, max, out, n);
}

enum cv_rc broker_settle(struct broker *b, struct job *const *jobs, struct broker_settle *s,
                         size_t n, int status_ttl_s)
{
    return b->ops->settle(b, jobs, s, n, status_ttl_s);
}

enum cv_rc broker_promote(struct broker *b, size_t max, size_t *moved)
{
    if (moved)
        *moved = 0;
    if (!(b->caps & BROKER_CAP_DELAYED_SET))
        return CV_OK;
    return b->ops->promote(b, max, moved);
}

enum cv_rc broker_heartbeat(struct broker *b, const struct worker_info *w, int ttl_ms)
{
    return jstore_heartbeat(b->js, w, ttl_ms);
}

enum cv_rc broker_worker_gone(struct broker *b, const char *name)
{
    return b->ops->worker_gone(b, name);
}

void broker_dead_purge(struct broker *b, const char *id, broker_purge_cb cb, void *arg)
{
    jstore_dead_purge(b->js, id, cb, arg);
}

enum cv_rc broker_dead_expire(struct broker *b, const char *type, int64_t retention_ms,
                              size_t max, size_t *removed)
{
    return jstore_dead_expire(b->js, type, retention_ms, max, removed);
}

enum cv_rc broker_held_ids(struct broker *b, size_t max, char (*ids)[UUID_STR_LEN], size_t *n)
{
    return jstore_held_ids(b->js, max, ids, n);
}

enum cv_rc broker_dead_unhold(struct broker *b, const char *id)
{
    return jstore_dead_unhold(b->js, id);
}

enum cv_rc broker_gc_consumers(struct broker *b, int64_t idle_ms, int64_t alive_ms,
                               size_t *removed)
{
    if (removed)
        *removed = 0;
    if (!(b->caps & BROKER_CAP_CONSUMER_GC))
        return CV_OK;
    return b->ops->gc_consumers(b, idle_ms, alive_ms, removed);
}

int broker_lease(struct broker *b, const char *name, const char *owner, int64_t ttl_ms)
{
    return jstore_lease(b->js, name, owner, ttl_ms);
}
