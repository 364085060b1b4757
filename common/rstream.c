/* rstream.c - the Redis Streams transport: a stream and a consumer group per
 * type, XREADGROUP/XAUTOCLAIM, publishes into the streams. See broker.h for the
 * contract, rstream_lua.h for the scripts that keep every change atomic, and
 * jstore.h for the job-status store (status, dead letters, workers, counters)
 * it shares with other transports, over this transport's own Redis link.
 *
 * Every call with a callback is written once, in callback style: in sync mode
 * the Redis round trip happens inline and the callback runs before return; in
 * async mode the same code runs from the libevent loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker_int.h"
#include "cfg.h"
#include "clock.h"
#include "jobtype.h"
#include "jstore.h"
#include "log.h"
#include "mem.h"
#include "rds.h"
#include "rstream_lua.h"

#define GROUP "cv"

struct rstream {
    struct broker base;
    struct rds *sync;           /* sync mode */
    size_t rr;                  /* consume: the type read first (round robin) */
    struct rds_async *as;       /* async mode */
    struct jstore *js;          /* the status store, on the same link */
    struct rds_script promote, queues, worker_gone, gc_consumers, reclaim;
    const struct cfg *cfg;      /* borrowed: the status TTL and the types' retain */
};

#define RS(b) ((struct rstream *)(b))

static void num(char *buf, size_t n, long long v)
{
    snprintf(buf, n, "%lld", v);
}

static void copy_field(char *dst, size_t cap, const char *v)
{
    snprintf(dst, cap, "%s", v);
}

/* ---- publish: the status and the stream entry in one script (jstore.c) ---------- */

static void rs_publish(struct broker *b, struct job *const *jobs, size_t n, int idem_ttl_s,
                       broker_publish_cb cb, void *arg)
{
    jstore_publish(RS(b)->js, JSTORE_STREAMS, jobs, NULL, n, idem_ttl_s, clock_wall_ms(), cb,
                   arg);
}

/* ---- dead letters: replay puts a job back on its stream ------------------------- */

struct done_ctx {
    broker_done_cb cb;
    void *arg;
};

static void dead_retry_done(void *arg, enum cv_rc rc, const char *type, const char *key,
                            long long kq)
{
    (void)type;
    (void)key;
    (void)kq;
    struct done_ctx *c = arg;
    c->cb(c->arg, rc);
    free(c);
}

static void rs_dead_retry(struct broker *b, const char *id, broker_done_cb cb, void *arg)
{
    struct done_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    jstore_dead_retry(RS(b)->js, JSTORE_STREAMS, id, dead_retry_done, c);
}

/* ---- queues ----------------------------------------------------------------------- */

struct queues_ctx {
    broker_queues_cb cb;
    void *arg;
};

static void queues_done(const struct rds_reply *r, void *arg)
{
    struct queues_ctx *c = arg;
    enum cv_rc rc = rds_reply_rc(r, "queues");
    size_t n = rc == CV_OK ? rds_reply_len(r) : 0;
    struct queue_stat *q = xcalloc(n ? n : 1, sizeof(*q));
    int64_t now = clock_wall_ms();
    for (size_t i = 0; i < n; i++) {
        const struct rds_reply *e = rds_reply_at(r, i);
        const char *t = rds_reply_at_str(e, 0);
        copy_field(q[i].type, sizeof(q[i].type), t ? t : "");
        q[i].depth = rds_reply_at_int(e, 1, 0);
        q[i].lag = q[i].depth;
        q[i].pending = rds_reply_at_int(e, 2, 0);
        q[i].consumers = rds_reply_at_int(e, 3, 0);
        q[i].scheduled = rds_reply_at_int(e, 4, 0);
        q[i].dead = rds_reply_at_int(e, 5, 0);
        long long oldest = rds_reply_at_int(e, 6, 0);
        q[i].oldest_age_ms = oldest > 0 && now > oldest ? now - oldest : 0;
    }
    c->cb(c->arg, rc, q, n);
    free(q);
    free(c);
}

static void rs_queues(struct broker *b, broker_queues_cb cb, void *arg)
{
    struct rstream *s = RS(b);
    struct queues_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    rds_either_eval(s->sync, s->as, &s->queues, queues_done, c, 0, NULL, NULL);
}

/* ---- worker side (sync only) ------------------------------------------------- */

static void ensure_group(struct rstream *s, const char *type)
{
    char stream[64];
    snprintf(stream, sizeof(stream), "cv:q:%s", type);
    struct rds_reply *r = rds_cmdf(s->sync, "XGROUP CREATE %s " GROUP " 0 MKSTREAM", stream);
    rds_reply_free(r);
    r = rds_cmdf(s->sync, "SADD cv:types %s", type);
    rds_reply_free(r);
}

/* Start one stream's entries (an XREADGROUP or XAUTOCLAIM entries array) into
 * out (at most max in all). counts: each entry's delivery count (XAUTOCLAIM;
 * NULL = 1, a first read). A lean entry carries its envelope and starts here
 * with no Redis write at all (jstore_entry_job); an entry published before the
 * lean path carries only the job id and starts through the start script. */
static enum cv_rc start_entries(struct rstream *s, const char *consumer, const char *type,
                                const struct rds_reply *entries, const struct rds_reply *counts,
                                struct job **out, size_t *n, size_t max)
{
    size_t ne = rds_reply_len(entries);
    if (ne > max - *n)
        ne = max - *n; /* never: COUNT bounds it */
    struct jstore_delivery *d = NULL;
    size_t nd = 0;
    for (size_t i = 0; i < ne; i++) {
        const struct rds_reply *e = rds_reply_at(entries, i);
        const char *msgid = rds_reply_at_str(e, 0);
        const struct rds_reply *fields = rds_reply_at(e, 1);
        if (!msgid)
            continue;
        struct job *j = jstore_entry_job(type, msgid, fields,
                                         counts ? rds_reply_at_int(counts, i, 1) : 1);
        if (j) {
            out[(*n)++] = j;
            continue;
        }
        const char *id = NULL;
        for (size_t k = 0; k + 1 < rds_reply_len(fields); k += 2)
            if (!strcmp(rds_reply_at_str(fields, k) ? rds_reply_at_str(fields, k) : "", "id"))
                id = rds_reply_at_str(fields, k + 1);
        if (!id)
            continue;
        if (!d)
            d = xcalloc(ne, sizeof(*d));
        d[nd].msg_id = msgid;
        d[nd].id = id;
        nd++;
    }
    enum cv_rc rc = nd ? jstore_start(s->js, JSTORE_STREAMS, consumer, type, d, nd, out, n)
                       : CV_OK;
    free(d);
    return rc;
}

/* One XREADGROUP over the streams of types[0..k), COUNT count each (BLOCK
 * block_ms when > 0); the entries are started into out (at most max in all).
 * full[i] is set when type i's stream gave all count entries (it may hold
 * more). */
static enum cv_rc read_group(struct rstream *s, const char *consumer, const char *const *types,
                             size_t k, size_t count, int block_ms, struct job **out, size_t *n,
                             size_t max, char *full)
{
    size_t argc = 9 + k * 2;
    const char **argv = xmalloc(sizeof(*argv) * argc);
    char (*streams)[48] = xmalloc(sizeof(*streams) * k);
    char cnt[24], block[24];
    num(cnt, sizeof(cnt), (long long)count);
    num(block, sizeof(block), block_ms);
    size_t a = 0;
    argv[a++] = "XREADGROUP";
    argv[a++] = "GROUP";
    argv[a++] = GROUP;
    argv[a++] = consumer;
    argv[a++] = "COUNT";
    argv[a++] = cnt;
    if (block_ms > 0) {
        argv[a++] = "BLOCK";
        argv[a++] = block;
    }
    argv[a++] = "STREAMS";
    for (size_t i = 0; i < k; i++) {
        snprintf(streams[i], sizeof(streams[i]), "cv:q:%s", types[i]);
        argv[a++] = streams[i];
        full[i] = 0;
    }
    for (size_t i = 0; i < k; i++)
        argv[a++] = ">";
    struct rds_reply *r = rds_cmd(s->sync, (int)a, argv, NULL);
    if (r && rds_reply_type(r) == RDS_ERR && strstr(rds_reply_str(r, NULL), "NOGROUP")) {
        rds_reply_free(r);
        for (size_t i = 0; i < k; i++)
            ensure_group(s, types[i]);
        r = rds_cmd(s->sync, (int)a, argv, NULL);
    }
    enum cv_rc rc = rds_reply_rc(r, "consume");
    if (rc == CV_OK && rds_reply_type(r) == RDS_ARR) {
        for (size_t i = 0; i < rds_reply_len(r) && rc == CV_OK; i++) {
            const struct rds_reply *sr = rds_reply_at(r, i);
            const char *sname = rds_reply_at_str(sr, 0);
            if (!sname || strncmp(sname, "cv:q:", 5) != 0)
                continue;
            for (size_t t = 0; t < k; t++)
                if (strcmp(sname, streams[t]) == 0)
                    full[t] = rds_reply_len(rds_reply_at(sr, 1)) >= count;
            rc = start_entries(s, consumer, sname + 5, rds_reply_at(sr, 1), NULL, out, n, max);
        }
    }
    rds_reply_free(r);
    free(argv);
    free(streams);
    return rc;
}

static enum cv_rc rs_consume(struct broker *b, const char *consumer, const char *const *types,
                             size_t ntypes, size_t max, int block_ms, struct job **out,
                             size_t *n)
{
    struct rstream *s = RS(b);
    /* Read at most max entries in all: per stream max / (streams read). With
     * fewer slots than types, read max of the types per call, starting one
     * further each call so that every type gets its turn. */
    size_t nread = ntypes < max ? ntypes : max;
    size_t per = max / nread;
    size_t first = s->rr++ % ntypes;
    const char **order = xmalloc(sizeof(*order) * nread);
    char *full = xcalloc(nread, 1);
    for (size_t i = 0; i < nread; i++)
        order[i] = types[(first + i) % ntypes];
    enum cv_rc rc = read_group(s, consumer, order, nread, per, block_ms, out, n, per * nread,
                               full);
    /* Slots the first read left (types with nothing waiting) go to the types
     * that filled their share, in a second read that does not block: a
     * worker of five types with one busy queue works 64 of it at a time, not
     * 12. Both reads together never exceed max. */
    size_t nfull = 0;
    for (size_t i = 0; i < nread; i++)
        if (full[i])
            order[nfull++] = order[i];
    if (rc == CV_OK && nfull > 0 && *n < max && (max - *n) / nfull > 0)
        rc = read_group(s, consumer, order, nfull, (max - *n) / nfull, 0, out, n, max, full);
    free(order);
    free(full);
    return rc;
}

static enum cv_rc rs_reclaim(struct broker *b, const char *consumer, const char *type,
                             int64_t min_idle_ms, size_t max, struct job **out, size_t *n)
{
    struct rstream *s = RS(b);
    *n = 0;
    char stream[48], idle[24], count[24];
    snprintf(stream, sizeof(stream), "cv:q:%s", type);
    num(idle, sizeof(idle), min_idle_ms);
    num(count, sizeof(count), (long long)max);
    const char *argv[] = { stream, consumer, idle, count };
    struct rds_reply *r = rds_eval(s->sync, &s->reclaim, 0, 4, argv, NULL);
    enum cv_rc rc = rds_reply_rc(r, "reclaim");
    const char *what = rc == CV_OK ? rds_reply_at_str(r, 0) : NULL;
    if (what && !strcmp(what, "nogroup")) {
        rds_reply_free(r);
        ensure_group(s, type);
        return CV_OK;
    }
    /* {entries, delivery counts} */
    if (rc == CV_OK && rds_reply_len(r) == 2 && rds_reply_len(rds_reply_at(r, 0)) > 0) {
        LOG_INFO("broker.reclaimed", "type=%s count=%zu", type,
                 rds_reply_len(rds_reply_at(r, 0)));
        rc = start_entries(s, consumer, type, rds_reply_at(r, 0), rds_reply_at(r, 1), out, n,
                           max);
    }
    rds_reply_free(r);
    return rc;
}

static enum cv_rc rs_settle(struct broker *b, struct job *const *jobs, struct broker_settle *st,
                            size_t n, int status_ttl_s)
{
    return jstore_settle(RS(b)->js, JSTORE_STREAMS, jobs, st, n, status_ttl_s);
}

static enum cv_rc rs_promote(struct broker *b, size_t max, size_t *moved)
{
    struct rstream *s = RS(b);
    /* the types whose retain differs from jobs.retain, with theirs */
    const char *argv[5 + 2 * JT_N];
    char nums[5 + JT_N][24];
    num(nums[0], 24, clock_wall_ms());
    num(nums[1], 24, (long long)max);
    num(nums[2], 24, s->cfg->status_ttl_s);
    num(nums[3], 24, s->cfg->retain);
    int argc = 5, ncaps = 0;
    for (int i = 0; i < JT_N; i++) {
        const char *name = jobtype_at(i)->name;
        int keep = cfg_type(s->cfg, name)->retain;
        if (keep == s->cfg->retain)
            continue;
        num(nums[5 + ncaps], 24, keep);
        argv[argc++] = name;
        argv[argc++] = nums[5 + ncaps++];
    }
    num(nums[4], 24, ncaps);
    for (int i = 0; i < 5; i++)
        argv[i] = nums[i];
    struct rds_reply *r = rds_eval(s->sync, &s->promote, 0, argc, argv, NULL);
    enum cv_rc rc = rds_reply_rc(r, "promote");
    if (moved)
        *moved = rc == CV_OK ? (size_t)rds_reply_int(r) : 0;
    rds_reply_free(r);
    return rc;
}

static enum cv_rc rs_gc_consumers(struct broker *b, int64_t idle_ms, int64_t alive_ms,
                                  size_t *removed)
{
    struct rstream *s = RS(b);
    char now[24], idle[24], alive[24];
    num(now, sizeof(now), clock_wall_ms());
    num(idle, sizeof(idle), idle_ms);
    num(alive, sizeof(alive), alive_ms);
    const char *argv[] = { now, idle, alive };
    long long v = 0;
    enum cv_rc rc = rds_eval_int(s->sync, &s->gc_consumers, 3, argv, "gc_consumers", &v);
    if (removed)
        *removed = (size_t)v;
    return rc;
}

static enum cv_rc rs_worker_gone(struct broker *b, const char *name)
{
    struct rstream *s = RS(b);
    const char *argv[] = { name };
    struct rds_reply *r = rds_eval(s->sync, &s->worker_gone, 0, 1, argv, NULL);
    enum cv_rc rc = rds_reply_rc(r, "worker_gone");
    rds_reply_free(r);
    return rc;
}

/* ---- open/close ------------------------------------------------------------ */

static void rs_close(struct broker *b)
{
    struct rstream *s = RS(b);
    jstore_free(s->js);         /* before the link it borrows */
    rds_free(s->sync);
    rds_async_free(s->as);
    free(s);
}

static int rs_ready(struct broker *b)
{
    struct rstream *s = RS(b);
    if (s->as)
        return rds_async_connected(s->as);
    struct rds_reply *r = rds_cmdf(s->sync, "PING");
    int ok = r && rds_reply_type(r) == RDS_STATUS;
    rds_reply_free(r);
    return ok;
}

static const struct broker_ops rstream_ops = {
    .name = "redis",
    .close = rs_close,
    .ready = rs_ready,
    .publish = rs_publish,
    .dead_retry = rs_dead_retry,
    .queues = rs_queues,
    .consume = rs_consume,
    .reclaim = rs_reclaim,
    .settle = rs_settle,
    .promote = rs_promote,
    .gc_consumers = rs_gc_consumers,
    .worker_gone = rs_worker_gone,
};

struct broker *rstream_open(const struct cfg *cfg, struct event_base *base)
{
    struct rstream *s = xcalloc(1, sizeof(*s));
    s->base.ops = &rstream_ops;
    s->cfg = cfg;
    s->promote = (struct rds_script){ "promote", RSTREAM_LUA_PROMOTE, "" };
    s->queues = (struct rds_script){ "queues", RSTREAM_LUA_QUEUES, "" };
    s->worker_gone = (struct rds_script){ "worker_gone", RSTREAM_LUA_WORKER_GONE, "" };
    s->gc_consumers = (struct rds_script){ "gc_consumers", RSTREAM_LUA_GC_CONSUMERS, "" };
    s->reclaim = (struct rds_script){ "reclaim", RSTREAM_LUA_RECLAIM, "" };
    if (base) {
        s->as = rds_async_new(base, cfg->redis_url, 5000);
        if (!s->as)
            goto fail;
        s->js = jstore_new(NULL, s->as, cfg);
        s->base.js = s->js;
        return &s->base;
    }
    /* a blocking XREADGROUP must not hit the socket timeout */
    s->sync = rds_connect(cfg->redis_url, cfg->block_ms + 5000);
    if (!s->sync)
        goto fail;
    struct rds_script *all[] = { &s->promote, &s->queues, &s->worker_gone, &s->gc_consumers,
                                 &s->reclaim };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (rds_script_load(s->sync, all[i]))
            goto fail;
    s->js = jstore_new(s->sync, NULL, cfg);
    if (!s->js)
        goto fail;
    s->base.js = s->js;
    return &s->base;
fail:
    rds_free(s->sync);
    free(s);
    return NULL;
}
