/* rstream.c - the broker on Redis Streams. See broker.h for the contract and
 * rstream_lua.h for the keys and the scripts that keep every change atomic.
 *
 * Every call with a callback is written once, in callback style: in sync mode
 * the Redis round trip happens inline and the callback runs before return; in
 * async mode the same code runs from the libevent loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker_int.h"
#include "clock.h"
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
    struct rds_script publish, start, settle, promote, dead_retry, dead_list, queues, workers,
        counters, worker_gone, dead_purge, dead_expire, dead_unhold, gc_consumers, lease;
};

#define RS(b) ((struct rstream *)(b))

/* ---- the one place that talks to Redis --------------------------------- */

typedef void (*reply_fn)(const struct rds_reply *r, void *arg);

struct tramp {
    reply_fn fn;
    void *arg;
};

static void eval(struct rstream *s, struct rds_script *sc, int argc, const char **argv,
                 const size_t *lens, reply_fn fn, void *arg)
{
    if (s->sync) {
        struct rds_reply *r = rds_eval(s->sync, sc, 0, argc, argv, lens);
        fn(r, arg);
        rds_reply_free(r);
    } else {
        rds_async_eval(s->as, sc, fn, arg, 0, argc, argv, lens);
    }
}

static void cmd(struct rstream *s, int argc, const char **argv, reply_fn fn, void *arg)
{
    if (s->sync) {
        struct rds_reply *r = rds_cmd(s->sync, argc, argv, NULL);
        fn(r, arg);
        rds_reply_free(r);
    } else {
        rds_async_cmd(s->as, fn, arg, argc, argv, NULL);
    }
}

/* Map a reply to an rc: NULL (link down, timeout) and errors are CV_ERR_IO. */
static enum cv_rc reply_rc(const struct rds_reply *r, const char *what)
{
    if (!r)
        return CV_ERR_IO;
    if (rds_reply_type(r) == RDS_ERR) {
        LOG_ERROR("broker.redis_error", "op=%s err=\"%.200s\"", what, rds_reply_str(r, NULL));
        return CV_ERR_IO;
    }
    return CV_OK;
}

static void num(char *buf, size_t n, long long v)
{
    snprintf(buf, n, "%lld", v);
}

/* ---- status hashes --------------------------------------------------------- */

void job_status_cleanup(struct job_status *st)
{
    FREE_NULL(st->payload);
    FREE_NULL(st->idem_key);
}

static void copy_field(char *dst, size_t cap, const char *v)
{
    snprintf(dst, cap, "%s", v);
}

/* Fill st from a flat HGETALL array. Returns 0 when it holds a job. */
static int status_from_hash(const struct rds_reply *h, struct job_status *st)
{
    memset(st, 0, sizeof(*st));
    size_t n = rds_reply_len(h);
    for (size_t i = 0; i + 1 < n; i += 2) {
        const char *k = rds_reply_at_str(h, i);
        size_t vlen = 0;
        const char *v = rds_reply_str(rds_reply_at(h, i + 1), &vlen);
        if (!k || !v)
            continue;
        if (!strcmp(k, "id"))
            copy_field(st->id, sizeof(st->id), v);
        else if (!strcmp(k, "type"))
            copy_field(st->type, sizeof(st->type), v);
        else if (!strcmp(k, "state")) {
            int x = job_state_parse(v);
            st->state = x < 0 ? JOB_STATE_QUEUED : (enum job_state)x;
        } else if (!strcmp(k, "attempt"))
            st->attempt = atoi(v);
        else if (!strcmp(k, "max_attempts"))
            st->max_attempts = atoi(v);
        else if (!strcmp(k, "created_ms"))
            st->created_ms = atoll(v);
        else if (!strcmp(k, "updated_ms"))
            st->updated_ms = atoll(v);
        else if (!strcmp(k, "not_before_ms"))
            st->not_before_ms = atoll(v);
        else if (!strcmp(k, "started_ms"))
            st->started_ms = atoll(v);
        else if (!strcmp(k, "finished_ms"))
            st->finished_ms = atoll(v);
        else if (!strcmp(k, "epoch"))
            st->epoch = atoll(v);
        else if (!strcmp(k, "last_error"))
            copy_field(st->last_error, sizeof(st->last_error), v);
        else if (!strcmp(k, "tp"))
            copy_field(st->traceparent, sizeof(st->traceparent), v);
        else if (!strcmp(k, "payload"))
            st->payload = xstrndup(v, vlen);
        else if (!strcmp(k, "idem") && *v)
            st->idem_key = xstrdup(v);
        else if (!strcmp(k, "held"))
            st->held = atoi(v);
    }
    if (!st->updated_ms) /* not written at publish: the job is as old as it was made */
        st->updated_ms = st->created_ms;
    return st->id[0] ? 0 : -1;
}

/* ---- publish -------------------------------------------------------------- */

struct pub_ctx {
    broker_publish_cb cb;
    void *arg;
    size_t n;
};

static void publish_done(const struct rds_reply *r, void *arg)
{
    struct pub_ctx *c = arg;
    enum cv_rc rc = reply_rc(r, "publish");
    if (rc == CV_OK && rds_reply_len(r) != c->n * 2) {
        LOG_ERROR("broker.bad_reply", "op=publish");
        rc = CV_ERR_IO;
    }
    if (rc != CV_OK) {
        c->cb(c->arg, rc, NULL, NULL, 0);
        free(c);
        return;
    }
    const char **ids = xmalloc(sizeof(*ids) * c->n);
    int *dup = xmalloc(sizeof(*dup) * c->n);
    for (size_t i = 0; i < c->n; i++) {
        ids[i] = rds_reply_at_str(r, 2 * i);
        dup[i] = (int)rds_reply_at_int(r, 2 * i + 1, 0);   /* 0, 1 or 2: see the script */
    }
    c->cb(c->arg, CV_OK, ids, dup, c->n);
    free(ids);
    free(dup);
    free(c);
}

static void rs_publish(struct broker *b, struct job *const *jobs, size_t n, int idem_ttl_s,
                       broker_publish_cb cb, void *arg)
{
    struct rstream *s = RS(b);
    size_t argc = 3 + n * 9;
    const char **argv = xmalloc(sizeof(*argv) * argc);
    size_t *lens = xmalloc(sizeof(*lens) * argc);
    char (*nums)[24] = xmalloc(sizeof(*nums) * (3 + n * 3));
    int64_t now = clock_wall_ms();
    num(nums[0], 24, now);
    num(nums[1], 24, idem_ttl_s);
    num(nums[2], 24, (long long)n);
    for (int i = 0; i < 3; i++) {
        argv[i] = nums[i];
        lens[i] = strlen(nums[i]);
    }
    for (size_t i = 0; i < n; i++) {
        const struct job *j = jobs[i];
        size_t b0 = 3 + i * 9;
        char *nm = nums[3 + i * 3];
        num(nm, 24, j->max_attempts);
        num(nums[4 + i * 3], 24, j->created_ms ? j->created_ms : now);
        num(nums[5 + i * 3], 24, j->not_before_ms);
        argv[b0] = j->id;
        argv[b0 + 1] = j->type;
        argv[b0 + 2] = j->payload ? j->payload : "{}";
        argv[b0 + 3] = nm;
        argv[b0 + 4] = nums[4 + i * 3];
        argv[b0 + 5] = nums[5 + i * 3];
        argv[b0 + 6] = j->idem_key ? j->idem_key : "";
        argv[b0 + 7] = j->traceparent;
        argv[b0 + 8] = j->producer;
        for (size_t k = 0; k < 9; k++)
            lens[b0 + k] = strlen(argv[b0 + k]);
        if (j->payload)
            lens[b0 + 2] = j->payload_len;
    }
    struct pub_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    c->n = n;
    eval(s, &s->publish, (int)argc, argv, lens, publish_done, c);
    free(argv);
    free(lens);
    free(nums);
}

/* ---- get ---------------------------------------------------------------------- */

struct get_ctx {
    broker_status_cb cb;
    void *arg;
};

static void get_done(const struct rds_reply *r, void *arg)
{
    struct get_ctx *c = arg;
    enum cv_rc rc = reply_rc(r, "get");
    struct job_status st;
    memset(&st, 0, sizeof(st));
    if (rc == CV_OK && status_from_hash(r, &st))
        rc = CV_ERR_NOT_FOUND;
    c->cb(c->arg, rc, rc == CV_OK ? &st : NULL);
    job_status_cleanup(&st);
    free(c);
}

static void rs_get(struct broker *b, const char *id, broker_status_cb cb, void *arg)
{
    char key[96];
    snprintf(key, sizeof(key), "cv:job:%.60s", id);
    const char *argv[] = { "HGETALL", key };
    struct get_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    cmd(RS(b), 2, argv, get_done, c);
}

/* ---- dead letters ------------------------------------------------------------ */

struct list_ctx {
    broker_list_cb cb;
    void *arg;
};

static void dead_list_done(const struct rds_reply *r, void *arg)
{
    struct list_ctx *c = arg;
    enum cv_rc rc = reply_rc(r, "dead_list");
    size_t n = rc == CV_OK ? rds_reply_len(r) : 0, k = 0;
    struct job_status *st = xcalloc(n ? n : 1, sizeof(*st));
    for (size_t i = 0; i < n; i++)
        if (status_from_hash(rds_reply_at(r, i), &st[k]) == 0)
            k++;
        else
            job_status_cleanup(&st[k]);
    c->cb(c->arg, rc, st, k);
    for (size_t i = 0; i < k; i++)
        job_status_cleanup(&st[i]);
    free(st);
    free(c);
}

static void rs_dead_list(struct broker *b, const char *type, int limit, broker_list_cb cb,
                         void *arg)
{
    struct rstream *s = RS(b);
    char lim[16];
    num(lim, sizeof(lim), limit > 0 ? limit : 100);
    const char *argv[] = { type ? type : "", lim };
    struct list_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    eval(s, &s->dead_list, 2, argv, NULL, dead_list_done, c);
}

struct done_ctx {
    broker_done_cb cb;
    void *arg;
};

static void dead_retry_done(const struct rds_reply *r, void *arg)
{
    struct done_ctx *c = arg;
    enum cv_rc rc = reply_rc(r, "dead_retry");
    const char *s = rc == CV_OK ? rds_reply_str(r, NULL) : NULL;
    if (rc == CV_OK)
        rc = !s ? CV_ERR_IO
             : !strcmp(s, "ok") ? CV_OK
             : !strcmp(s, "not_found") ? CV_ERR_NOT_FOUND
                                       : CV_ERR_CONFLICT;
    c->cb(c->arg, rc);
    free(c);
}

static void rs_dead_retry(struct broker *b, const char *id, broker_done_cb cb, void *arg)
{
    struct rstream *s = RS(b);
    char now[24];
    num(now, sizeof(now), clock_wall_ms());
    const char *argv[] = { id, now };
    struct done_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    eval(s, &s->dead_retry, 2, argv, NULL, dead_retry_done, c);
}

struct purge_ctx {
    broker_purge_cb cb;
    void *arg;
};

static void dead_purge_done(const struct rds_reply *r, void *arg)
{
    struct purge_ctx *c = arg;
    enum cv_rc rc = reply_rc(r, "dead_purge");
    const char *s = rc == CV_OK ? rds_reply_str(r, NULL) : NULL;
    enum broker_purge what = BROKER_PURGE_UNKNOWN;
    if (rc == CV_OK) {
        if (!s)
            rc = CV_ERR_IO;
        else if (!strcmp(s, "ok"))
            what = BROKER_PURGED;
        else if (!strcmp(s, "live"))
            what = BROKER_PURGE_LIVE;
        else if (!strcmp(s, "held"))
            what = BROKER_PURGE_HELD;
    }
    c->cb(c->arg, rc, what);
    free(c);
}

static void rs_dead_purge(struct broker *b, const char *id, broker_purge_cb cb, void *arg)
{
    struct rstream *s = RS(b);
    const char *argv[] = { id };
    struct purge_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    eval(s, &s->dead_purge, 1, argv, NULL, dead_purge_done, c);
}

/* ---- queues, workers, counters ------------------------------------------------ */

struct queues_ctx {
    broker_queues_cb cb;
    void *arg;
};

static void queues_done(const struct rds_reply *r, void *arg)
{
    struct queues_ctx *c = arg;
    enum cv_rc rc = reply_rc(r, "queues");
    size_t n = rc == CV_OK ? rds_reply_len(r) : 0;
    struct queue_stat *q = xcalloc(n ? n : 1, sizeof(*q));
    int64_t now = clock_wall_ms();
    for (size_t i = 0; i < n; i++) {
        const struct rds_reply *e = rds_reply_at(r, i);
        const char *t = rds_reply_at_str(e, 0);
        copy_field(q[i].type, sizeof(q[i].type), t ? t : "");
        q[i].depth = rds_reply_at_int(e, 1, 0);
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
    eval(s, &s->queues, 0, NULL, NULL, queues_done, c);
}

struct workers_ctx {
    broker_workers_cb cb;
    void *arg;
};

static void workers_done(const struct rds_reply *r, void *arg)
{
    struct workers_ctx *c = arg;
    enum cv_rc rc = reply_rc(r, "workers");
    size_t n = rc == CV_OK ? rds_reply_len(r) : 0;
    struct worker_info *w = xcalloc(n ? n : 1, sizeof(*w));
    for (size_t i = 0; i < n; i++) {
        const struct rds_reply *h = rds_reply_at(r, i);
        for (size_t k = 0; k + 1 < rds_reply_len(h); k += 2) {
            const char *f = rds_reply_at_str(h, k), *v = rds_reply_at_str(h, k + 1);
            if (!f || !v)
                continue;
            if (!strcmp(f, "name"))
                copy_field(w[i].name, sizeof(w[i].name), v);
            else if (!strcmp(f, "host"))
                copy_field(w[i].host, sizeof(w[i].host), v);
            else if (!strcmp(f, "types"))
                copy_field(w[i].types, sizeof(w[i].types), v);
            else if (!strcmp(f, "pid"))
                w[i].pid = atoi(v);
            else if (!strcmp(f, "concurrency"))
                w[i].concurrency = atoi(v);
            else if (!strcmp(f, "started_ms"))
                w[i].started_ms = atoll(v);
            else if (!strcmp(f, "last_seen_ms"))
                w[i].last_seen_ms = atoll(v);
            else if (!strcmp(f, "processed"))
                w[i].processed = atoll(v);
        }
    }
    c->cb(c->arg, rc, w, n);
    free(w);
    free(c);
}

static void rs_workers(struct broker *b, int64_t alive_ms, broker_workers_cb cb, void *arg)
{
    struct rstream *s = RS(b);
    char now[24], alive[24];
    num(now, sizeof(now), clock_wall_ms());
    num(alive, sizeof(alive), alive_ms);
    const char *argv[] = { now, alive };
    struct workers_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    eval(s, &s->workers, 2, argv, NULL, workers_done, c);
}

struct counters_ctx {
    broker_counters_cb cb;
    void *arg;
};

static void counters_done(const struct rds_reply *r, void *arg)
{
    struct counters_ctx *c = arg;
    enum cv_rc rc = reply_rc(r, "counters");
    size_t n = rc == CV_OK ? rds_reply_len(r) : 0;
    struct type_counters *tc = xcalloc(n ? n : 1, sizeof(*tc));
    for (size_t i = 0; i < n; i++) {
        const struct rds_reply *e = rds_reply_at(r, i);
        const char *t = rds_reply_at_str(e, 0);
        copy_field(tc[i].type, sizeof(tc[i].type), t ? t : "");
        const struct rds_reply *h = rds_reply_at(e, 1);
        for (size_t k = 0; k + 1 < rds_reply_len(h); k += 2) {
            const char *f = rds_reply_at_str(h, k);
            long long v = rds_reply_at_int(h, k + 1, 0);
            for (int x = 0; f && x < BROKER_NCOUNTERS; x++)
                if (!strcmp(f, broker_counter_names[x]))
                    tc[i].n[x] = v;
        }
    }
    c->cb(c->arg, rc, tc, n);
    free(tc);
    free(c);
}

static void rs_counters(struct broker *b, broker_counters_cb cb, void *arg)
{
    struct rstream *s = RS(b);
    struct counters_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    eval(s, &s->counters, 0, NULL, NULL, counters_done, c);
}

/* ---- worker side (sync only) ------------------------------------------------- */

/* Run the start script for deliveries (msgid, id) of one type and append the
 * jobs it hands out to out[*n]. */
static enum cv_rc start_deliveries(struct rstream *s, const char *consumer, const char *type,
                                   const char **pairs, size_t npairs, struct job **out, size_t *n)
{
    if (npairs == 0)
        return CV_OK;
    size_t argc = 4 + npairs * 2;
    const char **argv = xmalloc(sizeof(*argv) * argc);
    char now[24], cnt[24];
    num(now, sizeof(now), clock_wall_ms());
    num(cnt, sizeof(cnt), (long long)npairs);
    argv[0] = now;
    argv[1] = consumer;
    argv[2] = type;
    argv[3] = cnt;
    memcpy(argv + 4, pairs, sizeof(*argv) * npairs * 2);
    struct rds_reply *r = rds_eval(s->sync, &s->start, 0, (int)argc, argv, NULL);
    free(argv);
    enum cv_rc rc = reply_rc(r, "start");
    for (size_t i = 0; rc == CV_OK && i < rds_reply_len(r); i++) {
        const struct rds_reply *e = rds_reply_at(r, i);
        if (rds_reply_len(e) < 7)
            continue; /* skipped: the job already ended */
        struct job *j = job_new(type);
        copy_field(j->msg_id, sizeof(j->msg_id), rds_reply_at_str(e, 0));
        copy_field(j->id, sizeof(j->id), rds_reply_at_str(e, 1));
        j->attempt = (int)rds_reply_at_int(e, 2, 1);
        j->max_attempts = (int)rds_reply_at_int(e, 3, 1);
        size_t plen = 0;
        const char *p = rds_reply_str(rds_reply_at(e, 4), &plen);
        job_set_payload(j, p ? p : "{}", p ? plen : 2);
        const char *tp = rds_reply_at_str(e, 5);
        copy_field(j->traceparent, sizeof(j->traceparent), tp ? tp : "");
        j->epoch = rds_reply_at_int(e, 6, 0);
        j->deliveries = rds_reply_at_int(e, 7, j->epoch);
        out[(*n)++] = j;
    }
    rds_reply_free(r);
    return rc;
}

static void ensure_group(struct rstream *s, const char *type)
{
    char stream[64];
    snprintf(stream, sizeof(stream), "cv:q:%s", type);
    struct rds_reply *r = rds_cmdf(s->sync, "XGROUP CREATE %s " GROUP " 0 MKSTREAM", stream);
    rds_reply_free(r);
    r = rds_cmdf(s->sync, "SADD cv:types %s", type);
    rds_reply_free(r);
}

/* Collect (msgid, id) pairs of one stream's entries array and start them. */
static enum cv_rc start_entries(struct rstream *s, const char *consumer, const char *type,
                                const struct rds_reply *entries, struct job **out, size_t *n,
                                size_t max)
{
    size_t ne = rds_reply_len(entries);
    if (ne > max - *n)
        ne = max - *n; /* never: COUNT bounds it */
    const char **pairs = xmalloc(sizeof(*pairs) * (ne * 2 + 1));
    size_t np = 0;
    for (size_t i = 0; i < ne; i++) {
        const struct rds_reply *e = rds_reply_at(entries, i);
        const char *msgid = rds_reply_at_str(e, 0);
        const struct rds_reply *fields = rds_reply_at(e, 1);
        const char *id = NULL;
        for (size_t k = 0; k + 1 < rds_reply_len(fields); k += 2)
            if (!strcmp(rds_reply_at_str(fields, k) ? rds_reply_at_str(fields, k) : "", "id"))
                id = rds_reply_at_str(fields, k + 1);
        if (!msgid || !id)
            continue;
        pairs[2 * np] = msgid;
        pairs[2 * np + 1] = id;
        np++;
    }
    enum cv_rc rc = start_deliveries(s, consumer, type, pairs, np, out, n);
    free(pairs);
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
    enum cv_rc rc = reply_rc(r, "consume");
    if (rc == CV_OK && rds_reply_type(r) == RDS_ARR) {
        for (size_t i = 0; i < rds_reply_len(r) && rc == CV_OK; i++) {
            const struct rds_reply *sr = rds_reply_at(r, i);
            const char *sname = rds_reply_at_str(sr, 0);
            if (!sname || strncmp(sname, "cv:q:", 5) != 0)
                continue;
            for (size_t t = 0; t < k; t++)
                if (strcmp(sname, streams[t]) == 0)
                    full[t] = rds_reply_len(rds_reply_at(sr, 1)) >= count;
            rc = start_entries(s, consumer, sname + 5, rds_reply_at(sr, 1), out, n, max);
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
    *n = 0;
    if (ntypes == 0 || max == 0)
        return CV_OK;
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
    const char *argv[] = { "XAUTOCLAIM", stream, GROUP, consumer, idle, "0-0", "COUNT", count };
    struct rds_reply *r = rds_cmd(s->sync, 8, argv, NULL);
    if (r && rds_reply_type(r) == RDS_ERR && strstr(rds_reply_str(r, NULL), "NOGROUP")) {
        rds_reply_free(r);
        ensure_group(s, type);
        return CV_OK;
    }
    enum cv_rc rc = reply_rc(r, "reclaim");
    /* Redis 7: [next cursor, entries, deleted ids] */
    if (rc == CV_OK && rds_reply_len(r) >= 2 && rds_reply_len(rds_reply_at(r, 1)) > 0) {
        LOG_INFO("broker.reclaimed", "type=%s count=%zu", type,
                 rds_reply_len(rds_reply_at(r, 1)));
        rc = start_entries(s, consumer, type, rds_reply_at(r, 1), out, n, max);
    }
    rds_reply_free(r);
    return rc;
}

static const char *outcome_str(enum broker_outcome o)
{
    switch (o) {
    case BROKER_ACK: return "ack";
    case BROKER_RETRY: return "retry";
    case BROKER_FAIL: return "fail";
    case BROKER_DEAD: return "dead";
    case BROKER_DEFER: return "defer";
    }
    return "dead";
}

static enum cv_rc rs_settle(struct broker *b, struct job *const *jobs, struct broker_settle *st,
                            size_t n, int status_ttl_s)
{
    struct rstream *s = RS(b);
    if (n == 0)
        return CV_OK;
    size_t argc = 3 + n * 8;
    const char **argv = xmalloc(sizeof(*argv) * argc);
    char (*nums)[24] = xmalloc(sizeof(*nums) * (3 + n * 2));
    num(nums[0], 24, clock_wall_ms());
    num(nums[1], 24, status_ttl_s);
    num(nums[2], 24, (long long)n);
    for (int i = 0; i < 3; i++)
        argv[i] = nums[i];
    for (size_t i = 0; i < n; i++) {
        size_t b0 = 3 + i * 8;
        num(nums[3 + 2 * i], 24, jobs[i]->epoch);
        num(nums[4 + 2 * i], 24, st[i].delay_ms);
        argv[b0] = jobs[i]->id;
        argv[b0 + 1] = jobs[i]->type;
        argv[b0 + 2] = jobs[i]->msg_id;
        argv[b0 + 3] = nums[3 + 2 * i];
        argv[b0 + 4] = outcome_str(st[i].outcome);
        argv[b0 + 5] = nums[4 + 2 * i];
        argv[b0 + 6] = st[i].error ? st[i].error : "";
        argv[b0 + 7] = st[i].held ? "1" : "0";
        st[i].fenced = 0;
    }
    struct rds_reply *r = rds_eval(s->sync, &s->settle, 0, (int)argc, argv, NULL);
    free(argv);
    free(nums);
    enum cv_rc rc = reply_rc(r, "settle");
    if (rc == CV_OK && rds_reply_len(r) != n)
        rc = CV_ERR_IO;
    for (size_t i = 0; rc == CV_OK && i < n; i++) {
        const char *v = rds_reply_at_str(r, i);
        st[i].fenced = v && !strcmp(v, "fenced");
    }
    rds_reply_free(r);
    return rc;
}

static enum cv_rc rs_promote(struct broker *b, size_t max, size_t *moved)
{
    struct rstream *s = RS(b);
    char now[24], mx[24];
    num(now, sizeof(now), clock_wall_ms());
    num(mx, sizeof(mx), (long long)max);
    const char *argv[] = { now, mx };
    struct rds_reply *r = rds_eval(s->sync, &s->promote, 0, 2, argv, NULL);
    enum cv_rc rc = reply_rc(r, "promote");
    if (moved)
        *moved = rc == CV_OK ? (size_t)rds_reply_int(r) : 0;
    rds_reply_free(r);
    return rc;
}

/* Run a sync script that answers one integer. */
static enum cv_rc eval_int(struct rstream *s, struct rds_script *sc, int argc, const char **argv,
                           const char *what, long long *out)
{
    struct rds_reply *r = rds_eval(s->sync, sc, 0, argc, argv, NULL);
    enum cv_rc rc = reply_rc(r, what);
    if (out)
        *out = rc == CV_OK ? rds_reply_int(r) : 0;
    rds_reply_free(r);
    return rc;
}

static enum cv_rc rs_dead_expire(struct broker *b, const char *type, int64_t retention_ms,
                                 size_t max, size_t *removed)
{
    struct rstream *s = RS(b);
    char cutoff[32], mx[24];
    /* scores are ms * 1000 + a sequence: everything below cutoff ended before then */
    num(cutoff, sizeof(cutoff), (clock_wall_ms() - retention_ms) * 1000);
    num(mx, sizeof(mx), (long long)max);
    const char *argv[] = { type, cutoff, mx };
    long long v = 0;
    enum cv_rc rc = eval_int(s, &s->dead_expire, 3, argv, "dead_expire", &v);
    if (removed)
        *removed = (size_t)v;
    return rc;
}

static enum cv_rc rs_held_ids(struct broker *b, size_t max, char (*ids)[UUID_STR_LEN],
                              size_t *n)
{
    struct rstream *s = RS(b);
    *n = 0;
    char cnt[24];
    num(cnt, sizeof(cnt), (long long)max);
    const char *argv[] = { "SRANDMEMBER", "cv:held", cnt };
    struct rds_reply *r = rds_cmd(s->sync, 3, argv, NULL);
    enum cv_rc rc = reply_rc(r, "held_ids");
    for (size_t i = 0; rc == CV_OK && i < rds_reply_len(r) && *n < max; i++) {
        const char *id = rds_reply_at_str(r, i);
        if (id && strlen(id) < UUID_STR_LEN)
            copy_field(ids[(*n)++], UUID_STR_LEN, id);
    }
    rds_reply_free(r);
    return rc;
}

static enum cv_rc rs_dead_unhold(struct broker *b, const char *id)
{
    struct rstream *s = RS(b);
    const char *argv[] = { id };
    return eval_int(s, &s->dead_unhold, 1, argv, "dead_unhold", NULL);
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
    enum cv_rc rc = eval_int(s, &s->gc_consumers, 3, argv, "gc_consumers", &v);
    if (removed)
        *removed = (size_t)v;
    return rc;
}

static int rs_lease(struct broker *b, const char *name, const char *owner, int64_t ttl_ms)
{
    struct rstream *s = RS(b);
    char ttl[24];
    num(ttl, sizeof(ttl), ttl_ms);
    const char *argv[] = { name, owner, ttl };
    long long v = 0;
    if (eval_int(s, &s->lease, 3, argv, "lease", &v) != CV_OK)
        return -1;
    return v == 1;
}

static enum cv_rc rs_heartbeat(struct broker *b, const struct worker_info *w, int ttl_ms)
{
    struct rstream *s = RS(b);
    char key[160], now[24], pid[16], conc[16], started[24], processed[24], ttl[16];
    snprintf(key, sizeof(key), "cv:worker:%s", w->name);
    int64_t t = clock_wall_ms();
    num(now, sizeof(now), t);
    num(pid, sizeof(pid), w->pid);
    num(conc, sizeof(conc), w->concurrency);
    num(started, sizeof(started), w->started_ms);
    num(processed, sizeof(processed), w->processed);
    num(ttl, sizeof(ttl), ttl_ms);
    const char *hset[] = { "HSET", key, "name", w->name, "host", w->host, "types", w->types,
                           "pid", pid, "concurrency", conc, "started_ms", started,
                           "last_seen_ms", now, "processed", processed };
    const char *expire[] = { "PEXPIRE", key, ttl };
    const char *zadd[] = { "ZADD", "cv:workers", now, w->name };
    enum cv_rc rc = CV_OK;
    if (rds_append(s->sync, 18, hset, NULL) || rds_append(s->sync, 3, expire, NULL) ||
        rds_append(s->sync, 4, zadd, NULL))
        return CV_ERR_IO;
    for (int i = 0; i < 3; i++) {
        struct rds_reply *r = rds_read(s->sync);
        if (reply_rc(r, "heartbeat") != CV_OK)
            rc = CV_ERR_IO;
        rds_reply_free(r);
    }
    return rc;
}

static enum cv_rc rs_worker_gone(struct broker *b, const char *name)
{
    struct rstream *s = RS(b);
    const char *argv[] = { name };
    struct rds_reply *r = rds_eval(s->sync, &s->worker_gone, 0, 1, argv, NULL);
    enum cv_rc rc = reply_rc(r, "worker_gone");
    rds_reply_free(r);
    return rc;
}

/* ---- open/close ------------------------------------------------------------ */

static void rs_close(struct broker *b)
{
    struct rstream *s = RS(b);
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
    .get = rs_get,
    .dead_list = rs_dead_list,
    .dead_retry = rs_dead_retry,
    .dead_purge = rs_dead_purge,
    .queues = rs_queues,
    .workers = rs_workers,
    .counters = rs_counters,
    .consume = rs_consume,
    .reclaim = rs_reclaim,
    .settle = rs_settle,
    .promote = rs_promote,
    .dead_expire = rs_dead_expire,
    .held_ids = rs_held_ids,
    .dead_unhold = rs_dead_unhold,
    .gc_consumers = rs_gc_consumers,
    .lease = rs_lease,
    .heartbeat = rs_heartbeat,
    .worker_gone = rs_worker_gone,
};

struct broker *rstream_open(const struct cfg *cfg, struct event_base *base)
{
    struct rstream *s = xcalloc(1, sizeof(*s));
    s->base.ops = &rstream_ops;
    s->publish = (struct rds_script){ "publish", RSTREAM_LUA_PUBLISH, "" };
    s->start = (struct rds_script){ "start", RSTREAM_LUA_START, "" };
    s->settle = (struct rds_script){ "settle", RSTREAM_LUA_SETTLE, "" };
    s->promote = (struct rds_script){ "promote", RSTREAM_LUA_PROMOTE, "" };
    s->dead_retry = (struct rds_script){ "dead_retry", RSTREAM_LUA_DEAD_RETRY, "" };
    s->dead_list = (struct rds_script){ "dead_list", RSTREAM_LUA_DEAD_LIST, "" };
    s->queues = (struct rds_script){ "queues", RSTREAM_LUA_QUEUES, "" };
    s->workers = (struct rds_script){ "workers", RSTREAM_LUA_WORKERS, "" };
    s->counters = (struct rds_script){ "counters", RSTREAM_LUA_COUNTERS, "" };
    s->worker_gone = (struct rds_script){ "worker_gone", RSTREAM_LUA_WORKER_GONE, "" };
    s->dead_purge = (struct rds_script){ "dead_purge", RSTREAM_LUA_DEAD_PURGE, "" };
    s->dead_expire = (struct rds_script){ "dead_expire", RSTREAM_LUA_DEAD_EXPIRE, "" };
    s->dead_unhold = (struct rds_script){ "dead_unhold", RSTREAM_LUA_DEAD_UNHOLD, "" };
    s->gc_consumers = (struct rds_script){ "gc_consumers", RSTREAM_LUA_GC_CONSUMERS, "" };
    s->lease = (struct rds_script){ "lease", RSTREAM_LUA_LEASE, "" };
    if (base) {
        s->as = rds_async_new(base, cfg->redis_url, 5000);
        if (!s->as)
            goto fail;
        return &s->base;
    }
    /* a blocking XREADGROUP must not hit the socket timeout */
    s->sync = rds_connect(cfg->redis_url, cfg->block_ms + 5000);
    if (!s->sync)
        goto fail;
    struct rds_script *all[] = { &s->publish, &s->start, &s->settle, &s->promote,
                                 &s->dead_retry, &s->dead_list, &s->queues, &s->workers,
                                 &s->counters, &s->worker_gone, &s->dead_purge,
                                 &s->dead_expire, &s->dead_unhold, &s->gc_consumers,
                                 &s->lease };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (rds_script_load(s->sync, all[i]))
            goto fail;
    return &s->base;
fail:
    rds_free(s->sync);
    free(s);
    return NULL;
}
