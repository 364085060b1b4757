/* kstream.c - the Kafka transport: the job contract of broker.h on Kafka
 * topics (through kfk.h), with the job status kept in Redis (jstore.h) like
 * on Redis Streams, so GET /v1/jobs/{id}, Idempotency-Key, dead letters and
 * conveyorctl behave the same.
 *
 * Topics and groups. A topic per job type, <prefix>.<type>, read by one
 * consumer group per type of the same name. A message's key is the job's
 * ordering key (jobtype_key: the order id for order jobs, else the job id), so
 * one order's jobs share a partition and keep their order. Its value is
 * "<job id> <kq>": the status hash holds the rest.
 *
 * Publishing (what a batch guarantees). Kafka and Redis cannot change in one
 * atomic step, so a publish is two:
 *   1. record: one Redis script writes every job's status, idempotency key and
 *      an entry in cv:unproduced, all or none (jstore_publish, mode 'k');
 *   2. produce: each new queued job is produced; the caller is answered only
 *      once every delivery report is in: CV_OK when all were written (acks=all,
 *      idempotent producer), CV_ERR_UNAVAILABLE otherwise (the API's 503 with
 *      Retry-After, after at most message.timeout.ms).
 * A job answered CV_OK is on Kafka. A job recorded but never produced (the
 * process died between 1 and 2, or the cluster was down) is produced again by
 * the sweep (KSTREAM_LUA_DUE) once it has sat in cv:unproduced past
 * SWEEP_GRACE_MS; so a publish answered 503 may still run, and a retry with
 * the same job id or Idempotency-Key makes it one job. Each produce bumps the
 * job's kq; the start script skips a message whose kq is older, so a job
 * produced twice (the report lost, the sweep produced it again) runs once.
 *
 * Consuming. Each consumer (kfk.h) polls on its own thread and hands messages
 * here; they wait in a per-partition window (struct kpart) in offset order.
 * broker_consume picks from the windows under one rule, the per-key model of
 * Confluent's parallel-consumer: a message may start when no earlier
 * unfinished message of its partition has the same key. So within a
 * partition, different keys run concurrently (up to the worker's
 * concurrency), and one key runs in order.
 *
 * Offsets. A message is finished when its job settled for good (succeeded,
 * failed, dead), was skipped, or its delivery was fenced (a newer one owns the
 * job). The offset stored for commit is the lowest unfinished one of the
 * window: commits never pass a job whose effects are not committed
 * (enable.auto.offset.store=false). When partitions are revoked, the revoke
 * waits up to REVOKE_WAIT_MS for the jobs in flight from them, then commits
 * what is finished; the new owner reads on from there and the start script
 * skips whatever had already ended.
 *
 * Retries keep the key's order. A retry (or a deferral) waits in the window,
 * holding its key, until its due time, then starts again with the next
 * attempt; the status says retrying with not_before_ms. Not in the Redis
 * delayed set: a retry promoted to the end of the topic would let the key's
 * later jobs overtake it. If the worker dies meanwhile, the message was not
 * committed: its new owner reads it again and the start script makes it wait
 * out the same due time. Past max_attempts the job goes dead (dead-letter set,
 * replayable), which finishes the message and releases the key. The cost:
 * while a retry waits, its partition's commits wait behind it (bounded by the
 * backoff); the window's other keys go on.
 *
 * Deliveries that never settle (the worker's Redis failed, the handler saw
 * it fenced, the worker gave it up while stopping) go back to waiting once
 * they are out longer than worker.visibility_timeout_ms, as Redis Streams
 * reclaims them, and start again with a new epoch, counted by the poison-job
 * guard. A worker that dies takes its window with it: the rebalance hands the
 * partitions, from the last commit, to another. Nothing holds a partition's
 * commits forever.
 *
 * Scheduled jobs still wait in the Redis delayed set (BROKER_CAP_DELAYED_SET);
 * broker_promote produces them when due, together with the sweep. */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "broker_int.h"
#include "clock.h"
#include "jobtype.h"
#include "jstore.h"
#include "json.h"
#include "kfk.h"
#include "kstream_lua.h"
#include "log.h"
#include "mem.h"
#include "rds.h"

#define SWEEP_GRACE_MS 30000     /* > message.timeout.ms: a report still due is not swept */
#define REVOKE_WAIT_MS 5000      /* how long a revoke waits for jobs in flight */
#define WINDOW_PAUSE 4096        /* a partition's window this long pauses its fetching */
#define WINDOW_RESUME 1024       /* ... until it is back under this */
#define PUB_WAIT_MS 60000        /* sync publish: a report is always due before this */
#define LAG_TIMEOUT_MS 3000
#define WORKER_ALIVE_MS 15000

/* ---- the window of one partition ------------------------------------------------ */

enum kmsg_st { KM_WAIT, KM_OUT, KM_DONE };

struct kmsg {
    int64_t offset;
    uint64_t keyh;             /* hash of the key: equal keys, equal hashes */
    int64_t due_ms;            /* wall ms; a retry waits until then */
    int64_t out_ms;            /* mono ms it was handed out (KM_OUT) */
    long long kq;
    unsigned char st;          /* enum kmsg_st */
    char id[UUID_STR_LEN];
};

struct kpart {
    int assigned;
    unsigned gen;              /* bumped at each assignment: deliveries carry it */
    struct kmsg *v;            /* v[head .. head+len), offsets ascending */
    size_t head, len, cap;
    int out;                   /* deliveries out */
    int paused;
    int64_t next_commit;       /* -1 until a message finished since the assignment */
};

/* One consumed type: its consumer and its partitions' windows. */
struct ktype {
    struct kstream *ks;
    char type[JOB_TYPE_MAX];
    struct kfk_consumer *c;
    struct kpart *p;           /* by partition id */
    int np;
};

/* ---- one publish, replay or promote in flight ------------------------------------ */

struct kitem {                 /* a job to produce */
    char id[UUID_STR_LEN];
    char type[JOB_TYPE_MAX];
    char *key;
    long long kq;
};

enum kpub_kind { KP_PUBLISH, KP_REPLAY, KP_PROMOTE };

struct kpub {
    struct kstream *ks;
    enum kpub_kind kind;
    broker_publish_cb pcb;     /* KP_PUBLISH */
    broker_done_cb dcb;        /* KP_REPLAY */
    void *arg;
    enum cv_rc rc;
    /* the caller's jobs, copied (they may be freed once broker_publish returns) */
    size_t n;
    struct kitem *jobs;
    int64_t *not_before;
    int64_t now;
    /* the answer */
    char (*ids)[UUID_STR_LEN];
    int *dup;
    /* what is produced */
    struct kitem *items;
    size_t nitems;
    atomic_size_t outstanding;
    atomic_int failed;
    int done;                  /* sync: under ks->cmu */
    struct kpub *next;         /* async: the completion list */
};

struct kstream {
    struct broker base;
    const struct cfg *cfg;
    struct rds *sync;
    struct rds_async *as;
    struct jstore *js;
    struct kfk_producer *prod;
    struct rds_script due, produced, queues;
    /* completions from the producer's thread */
    pthread_mutex_t cmu;
    pthread_cond_t ccv;
    struct kpub *done_head;    /* async */
    int efd;                   /* async: eventfd the producer's thread writes */
    struct event *ev;
    size_t inflight;           /* kpubs not yet finished, under cmu */
    /* consumers (sync mode) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ktype *types;
    size_t ntypes;
    size_t rr;
    int closing;
    uint64_t *seen;            /* consume's scratch set of keys */
    size_t seen_cap;
};

#define KS(b) ((struct kstream *)(b))

static void num(char *buf, size_t n, long long v)
{
    snprintf(buf, n, "%lld", v);
}

static const char *prefix_of(const struct cfg *cfg)
{
    return cfg->broker_topic_prefix && *cfg->broker_topic_prefix ? cfg->broker_topic_prefix
                                                                 : "conveyor";
}

static void topic_of(const struct kstream *ks, const char *type, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%s", prefix_of(ks->cfg), type);
}

/* Wait on cv (mu held) for up to ms, or until signalled. */
static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

static uint64_t key_hash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return h | 1;                          /* 0 marks an empty slot of the set */
}

/* ---- producing ---------------------------------------------------------------- */

static void kpub_free(struct kpub *kp)
{
    for (size_t i = 0; i < kp->n; i++)
        free(kp->jobs[i].key);
    free(kp->jobs);
    free(kp->not_before);
    for (size_t i = 0; i < kp->nitems; i++)
        free(kp->items[i].key);
    free(kp->items);
    free(kp->ids);
    free(kp->dup);
    free(kp);
}

static void no_reply(const struct rds_reply *r, void *arg)
{
    (void)arg;
    (void)rds_reply_rc(r, "produced");
}

/* Tell Redis that these copies are written (KSTREAM_LUA_PRODUCED). Not
 * waited for: if it is lost the sweep produces the job again, and the older
 * copy is skipped as stale. */
static void mark_produced(struct kstream *ks, const struct kitem *it, size_t n)
{
    if (n == 0)
        return;
    size_t argc = 1 + n * 2;
    const char **argv = xmalloc(sizeof(*argv) * argc);
    char (*nums)[24] = xmalloc(sizeof(*nums) * (n + 1));
    num(nums[n], 24, (long long)n);
    argv[0] = nums[n];
    for (size_t i = 0; i < n; i++) {
        num(nums[i], 24, it[i].kq);
        argv[1 + 2 * i] = it[i].id;
        argv[2 + 2 * i] = nums[i];
    }
    rds_either_eval(ks->sync, ks->as, &ks->produced, no_reply, NULL, (int)argc, argv, NULL);
    free(argv);
    free(nums);
}

/* On the caller's thread (the loop in async mode): every report is in. */
static void kpub_finish(struct kpub *kp)
{
    struct kstream *ks = kp->ks;
    int ok = !atomic_load(&kp->failed);
    if (ok && !ks->closing)
        mark_produced(ks, kp->items, kp->nitems);
    enum cv_rc rc = kp->rc != CV_OK ? kp->rc : ok ? CV_OK : CV_ERR_UNAVAILABLE;
    if (kp->kind == KP_PUBLISH) {
        const char **ids = rc == CV_OK ? xcalloc(kp->n + 1, sizeof(*ids)) : NULL;
        for (size_t i = 0; ids && i < kp->n; i++)
            ids[i] = kp->ids[i];
        kp->pcb(kp->arg, rc, rc == CV_OK ? ids : NULL, rc == CV_OK ? kp->dup : NULL,
                rc == CV_OK ? kp->n : 0);
        free(ids);
    } else if (kp->kind == KP_REPLAY) {
        /* recorded in Redis: the sweep produces it if this produce failed */
        kp->dcb(kp->arg, kp->rc);
    }
    pthread_mutex_lock(&ks->cmu);
    ks->inflight--;
    pthread_cond_broadcast(&ks->ccv);
    pthread_mutex_unlock(&ks->cmu);
    kpub_free(kp);
}

/* On the producer's thread, or the caller's: hand the finished kpub to its owner. */
static void kpub_complete(struct kpub *kp)
{
    struct kstream *ks = kp->ks;
    pthread_mutex_lock(&ks->cmu);
    if (ks->as) {
        kp->next = ks->done_head;
        ks->done_head = kp;
        uint64_t one = 1;
        ssize_t w = write(ks->efd, &one, sizeof(one));
        (void)w;                   /* a full counter still wakes the loop */
    } else {
        kp->done = 1;
        pthread_cond_broadcast(&ks->ccv);
    }
    pthread_mutex_unlock(&ks->cmu);
}

static void on_report(void *opaque, int ok)
{
    struct kpub *kp = opaque;
    if (!ok)
        atomic_store(&kp->failed, 1);
    if (atomic_fetch_sub(&kp->outstanding, 1) == 1)
        kpub_complete(kp);
}

/* Produce kp->items; the kpub completes once every report is in. In sync mode
 * this waits for that and finishes it here. */
static void kpub_produce(struct kpub *kp)
{
    struct kstream *ks = kp->ks;
    pthread_mutex_lock(&ks->cmu);
    ks->inflight++;
    pthread_mutex_unlock(&ks->cmu);
    if (kp->nitems == 0) {
        /* nothing to produce (the record failed, or every job was a duplicate or
         * scheduled): answer now, on this thread. A record refused at once (the
         * Redis link down) is then answered before broker_publish returns, which
         * tells the API that nothing was enqueued (503), as on Redis Streams. */
        kpub_finish(kp);
        return;
    }
    /* one guard count, so that no report can complete the kpub mid-loop */
    atomic_store(&kp->outstanding, kp->nitems + 1);
    char topic[160], val[UUID_STR_LEN + 24];
    for (size_t i = 0; i < kp->nitems; i++) {
        const struct kitem *it = &kp->items[i];
        topic_of(ks, it->type, topic, sizeof(topic));
        const char *key = it->key && *it->key ? it->key : it->id;
        int vl = snprintf(val, sizeof(val), "%s %lld", it->id, it->kq);
        if (kfk_produce(ks->prod, topic, key, strlen(key), val, (size_t)vl, on_report, kp)) {
            atomic_store(&kp->failed, 1);
            atomic_fetch_sub(&kp->outstanding, 1);
        }
    }
    if (atomic_fetch_sub(&kp->outstanding, 1) == 1)
        kpub_complete(kp);
    if (ks->as)
        return;
    int64_t until = clock_mono_ms() + PUB_WAIT_MS;
    pthread_mutex_lock(&ks->cmu);
    while (!kp->done && clock_mono_ms() < until) {
        cond_wait_ms(&ks->ccv, &ks->cmu, 100);
    }
    int done = kp->done;
    pthread_mutex_unlock(&ks->cmu);
    if (done)
        kpub_finish(kp);
    else
        LOG_ERROR("kafka.report_overdue", "count=%zu", kp->nitems); /* kp stays with librdkafka */
}

/* The loop: finished kpubs from the producer's thread. */
/* Finish every kpub the producer's thread handed over (async mode). */
static void finish_completed(struct kstream *ks)
{
    pthread_mutex_lock(&ks->cmu);
    struct kpub *kp = ks->done_head;
    ks->done_head = NULL;
    pthread_mutex_unlock(&ks->cmu);
    while (kp) {
        struct kpub *next = kp->next;
        kpub_finish(kp);
        kp = next;
    }
}

static void on_completions(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    finish_completed(arg);
}

static void item_set(struct kitem *it, const char *id, const char *type, const char *key,
                     long long kq)
{
    snprintf(it->id, sizeof(it->id), "%s", id ? id : "");
    snprintf(it->type, sizeof(it->type), "%s", type ? type : "");
    it->key = key && *key ? xstrdup(key) : NULL;
    it->kq = kq;
}

/* ---- publish -------------------------------------------------------------------- */

static void on_recorded(void *arg, enum cv_rc rc, const char *const *ids, const int *dup,
                        size_t n)
{
    struct kpub *kp = arg;
    kp->rc = rc;
    if (rc == CV_OK) {
        kp->ids = xcalloc(n + 1, sizeof(*kp->ids));
        kp->dup = xcalloc(n + 1, sizeof(*kp->dup));
        kp->items = xcalloc(n + 1, sizeof(*kp->items));
        for (size_t i = 0; i < n; i++) {
            snprintf(kp->ids[i], sizeof(kp->ids[i]), "%s", ids[i] ? ids[i] : "");
            kp->dup[i] = dup[i];
            /* a new job that is not scheduled: produce it (kq 1, the script's) */
            if (dup[i] == 0 && kp->not_before[i] <= kp->now) {
                struct kitem *it = &kp->items[kp->nitems++];
                *it = kp->jobs[i];
                kp->jobs[i].key = NULL;    /* moved */
                it->kq = 1;
            }
        }
    }
    kpub_produce(kp);
}

static void ks_publish(struct broker *b, struct job *const *jobs, size_t n, int idem_ttl_s,
                       broker_publish_cb cb, void *arg)
{
    struct kstream *ks = KS(b);
    if (!kfk_producer_up(ks->prod)) {
        /* every broker is down: refuse before recording anything */
        cb(arg, CV_ERR_UNAVAILABLE, NULL, NULL, 0);
        return;
    }
    struct kpub *kp = xcalloc(1, sizeof(*kp));
    kp->ks = ks;
    kp->kind = KP_PUBLISH;
    kp->pcb = cb;
    kp->arg = arg;
    kp->n = n;
    kp->now = clock_wall_ms();
    kp->jobs = xcalloc(n + 1, sizeof(*kp->jobs));
    kp->not_before = xcalloc(n + 1, sizeof(*kp->not_before));
    const char **keys = xcalloc(n + 1, sizeof(*keys));
    for (size_t i = 0; i < n; i++) {
        const struct job *j = jobs[i];
        char key[256];
        const struct jobtype *t = jobtype_find(j->type, strlen(j->type));
        cJSON *p = t && t->key_field && j->payload
                       ? cJSON_ParseWithLength(j->payload, j->payload_len)
                       : NULL;
        if (!t || jobtype_key(t, p, j->id, key, sizeof(key)) != 0)
            snprintf(key, sizeof(key), "%s", j->id);
        cJSON_Delete(p);
        item_set(&kp->jobs[i], j->id, j->type, key, 0);
        keys[i] = kp->jobs[i].key;
        kp->not_before[i] = j->not_before_ms;
    }
    jstore_publish(ks->js, JSTORE_EXTERNAL, jobs, keys, n, idem_ttl_s, kp->now, on_recorded, kp);
    free(keys);
}

/* ---- replay ---------------------------------------------------------------------- */

static void on_replayed(void *arg, enum cv_rc rc, const char *type, const char *key,
                        long long kq)
{
    struct kpub *kp = arg;
    kp->rc = rc;
    if (rc == CV_OK) {
        kp->items = xcalloc(1, sizeof(*kp->items));
        item_set(&kp->items[0], kp->jobs[0].id, type, key, kq);
        kp->nitems = 1;
    }
    kpub_produce(kp);
}

static void ks_dead_retry(struct broker *b, const char *id, broker_done_cb cb, void *arg)
{
    struct kstream *ks = KS(b);
    struct kpub *kp = xcalloc(1, sizeof(*kp));
    kp->ks = ks;
    kp->kind = KP_REPLAY;
    kp->dcb = cb;
    kp->arg = arg;
    kp->n = 1;
    kp->jobs = xcalloc(1, sizeof(*kp->jobs));
    item_set(&kp->jobs[0], id, NULL, NULL, 0);
    jstore_dead_retry(ks->js, JSTORE_EXTERNAL, id, on_replayed, kp);
}

/* ---- promote: due scheduled jobs and the sweep (sync) -------------------------------- */

static enum cv_rc ks_promote(struct broker *b, size_t max, size_t *moved)
{
    struct kstream *ks = KS(b);
    char now[24], mx[24], grace[24];
    num(now, sizeof(now), clock_wall_ms());
    num(mx, sizeof(mx), (long long)max);
    num(grace, sizeof(grace), SWEEP_GRACE_MS);
    const char *argv[] = { now, mx, grace };
    struct rds_reply *r = rds_eval(ks->sync, &ks->due, 0, 3, argv, NULL);
    enum cv_rc rc = rds_reply_rc(r, "due");
    size_t n = rc == CV_OK ? rds_reply_len(r) / 4 : 0;
    if (moved)
        *moved = n;
    if (n > 0) {
        struct kpub *kp = xcalloc(1, sizeof(*kp));
        kp->ks = ks;
        kp->kind = KP_PROMOTE;
        kp->items = xcalloc(n, sizeof(*kp->items));
        for (size_t i = 0; i < n; i++)
            item_set(&kp->items[i], rds_reply_at_str(r, 4 * i), rds_reply_at_str(r, 4 * i + 1),
                     rds_reply_at_str(r, 4 * i + 2), rds_reply_at_int(r, 4 * i + 3, 0));
        kp->nitems = n;
        /* a produce that fails stays in cv:unproduced: the sweep tries again */
        kpub_produce(kp);
    }
    rds_reply_free(r);
    return rc;
}

/* ---- the consumer side: windows ------------------------------------------------- */

static struct kpart *part_at(struct ktype *kt, int32_t id)
{
    if (id < 0)
        return NULL;
    if (id >= kt->np) {
        int np = id + 1;
        kt->p = xrealloc(kt->p, sizeof(*kt->p) * (size_t)np);
        memset(kt->p + kt->np, 0, sizeof(*kt->p) * (size_t)(np - kt->np));
        kt->np = np;
    }
    return &kt->p[id];
}

static void part_reset(struct kpart *p)
{
    p->head = p->len = 0;
    p->out = 0;
    p->paused = 0;
    p->next_commit = -1;
}

static struct kmsg *part_push(struct kpart *p)
{
    if (p->head + p->len == p->cap) {
        if (p->head > 0) {
            memmove(p->v, p->v + p->head, sizeof(*p->v) * p->len);
            p->head = 0;
        } else {
            p->cap = p->cap ? p->cap * 2 : 64;
            p->v = xrealloc(p->v, sizeof(*p->v) * p->cap);
        }
    }
    return &p->v[p->head + p->len++];
}

static struct kmsg *part_find(struct kpart *p, int64_t offset)
{
    size_t lo = 0, hi = p->len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int64_t o = p->v[p->head + mid].offset;
        if (o == offset)
            return &p->v[p->head + mid];
        if (o < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Drop the finished front of the window and store the commit point. Under
 * ks->mu. A paused partition is resumed by resume_fetching, outside the lock. */
static void part_advance(struct ktype *kt, int32_t id, struct kpart *p)
{
    int64_t next = -1;
    while (p->len > 0 && p->v[p->head].st == KM_DONE) {
        next = p->v[p->head].offset + 1;
        p->head++;
        p->len--;
    }
    if (next >= 0) {
        p->next_commit = next;
        kfk_consumer_store(kt->c, id, next);
    }
}

/* The consumer's thread: a message. */
static void on_message(void *arg, int32_t partition, int64_t offset, const char *key,
                       size_t klen, const char *val, size_t vlen)
{
    struct ktype *kt = arg;
    struct kstream *ks = kt->ks;
    char v[UUID_STR_LEN + 32];
    size_t n = vlen < sizeof(v) - 1 ? vlen : sizeof(v) - 1;
    memcpy(v, val ? val : "", n);
    v[n] = '\0';
    char id[UUID_STR_LEN] = "";
    long long kq = 0;
    int ok = sscanf(v, "%36s %lld", id, &kq) == 2 && kq > 0;
    int pause = 0;
    pthread_mutex_lock(&ks->mu);
    struct kpart *p = part_at(kt, partition);
    if (p->assigned) {
        struct kmsg *m = part_push(p);
        memset(m, 0, sizeof(*m));
        m->offset = offset;
        m->keyh = key_hash(key ? key : id, key ? klen : strlen(id));
        m->kq = kq;
        snprintf(m->id, sizeof(m->id), "%s", id);
        /* not ours: finished at once, so that it never holds the commits back */
        m->st = ok ? KM_WAIT : KM_DONE;
        if (!ok)
            LOG_WARN("kafka.bad_message", "type=%s partition=%d offset=%lld", kt->type,
                     (int)partition, (long long)offset);
        if (p->len >= WINDOW_PAUSE && !p->paused)
            pause = p->paused = 1;
        pthread_cond_broadcast(&ks->cv);
    }
    pthread_mutex_unlock(&ks->mu);
    if (pause)
        kfk_consumer_pause(kt->c, partition, 1);
}

static void on_assigned(void *arg, const int32_t *parts, size_t n)
{
    struct ktype *kt = arg;
    pthread_mutex_lock(&kt->ks->mu);
    for (size_t i = 0; i < n; i++) {
        struct kpart *p = part_at(kt, parts[i]);
        part_reset(p);
        p->assigned = 1;
        p->gen++;
    }
    pthread_mutex_unlock(&kt->ks->mu);
}

static int out_of(struct ktype *kt, const int32_t *parts, size_t n)
{
    int out = 0;
    for (size_t i = 0; i < n; i++)
        if (parts[i] < kt->np)
            out += kt->p[parts[i]].out;
    return out;
}

static void on_revoked(void *arg, const int32_t *parts, size_t n, int64_t *commit)
{
    struct ktype *kt = arg;
    struct kstream *ks = kt->ks;
    int64_t until = clock_mono_ms() + REVOKE_WAIT_MS;
    pthread_mutex_lock(&ks->mu);
    /* give the jobs in flight from these partitions a moment to settle, so that
     * the next owner does not run them again (it would be fenced, but later) */
    while (!ks->closing && out_of(kt, parts, n) > 0 && clock_mono_ms() < until) {
        cond_wait_ms(&ks->cv, &ks->mu, 50);
    }
    for (size_t i = 0; i < n; i++) {
        struct kpart *p = part_at(kt, parts[i]);
        if (p->assigned)
            part_advance(kt, parts[i], p);
        commit[i] = p->assigned ? p->next_commit : -1;
        part_reset(p);
        p->assigned = 0;
        p->gen++;
    }
    pthread_mutex_unlock(&ks->mu);
}

static struct ktype *type_find(struct kstream *ks, const char *type)
{
    for (size_t i = 0; i < ks->ntypes; i++)
        if (!strcmp(ks->types[i].type, type))
            return &ks->types[i];
    return NULL;
}

/* The consumers of the worker's types, made on the first consume. */
static enum cv_rc ensure_consumers(struct kstream *ks, const char *const *types, size_t n)
{
    if (ks->types)
        return CV_OK;
    ks->types = xcalloc(n + 1, sizeof(*ks->types));
    for (size_t i = 0; i < n; i++) {
        struct ktype *kt = &ks->types[i];
        kt->ks = ks;
        snprintf(kt->type, sizeof(kt->type), "%s", types[i]);
    }
    ks->ntypes = n;
    for (size_t i = 0; i < n; i++) {
        struct ktype *kt = &ks->types[i];
        char topic[160];
        topic_of(ks, kt->type, topic, sizeof(topic));
        struct kfk_consumer_ops ops = { kt, on_message, on_assigned, on_revoked };
        kt->c = kfk_consumer_new(ks->cfg, topic, topic, &ops);
        if (!kt->c)
            return CV_ERR_UNAVAILABLE;
    }
    return CV_OK;
}

/* ---- consume ---------------------------------------------------------------------- */

static int seen_add(struct kstream *ks, uint64_t h)
{
    size_t mask = ks->seen_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        if (ks->seen[i] == h)
            return 0;
        if (ks->seen[i] == 0) {
            ks->seen[i] = h;
            return 1;
        }
    }
}

/* A picked delivery: where it is, to start it and find it again. */
struct pick {
    struct ktype *kt;
    int32_t part;
    int64_t offset;
    long long kq;
    char id[UUID_STR_LEN];
    unsigned gen;
    char msg_id[48];
};

/* Pick up to max startable messages of partition p: the first unfinished
 * message of each key, when it is due. Under ks->mu. Returns how many; *next_due
 * lowers to the earliest due time of a key head that is not due yet. */
static size_t pick_part(struct kstream *ks, struct ktype *kt, int32_t id, struct kpart *p,
                        int64_t now, struct pick *out, size_t max, int64_t *next_due)
{
    size_t want = p->len * 2 + 16, cap = 16;
    while (cap < want)
        cap *= 2;
    if (cap > ks->seen_cap) {
        free(ks->seen);
        ks->seen = xcalloc(cap, sizeof(*ks->seen));
        ks->seen_cap = cap;
    } else {
        memset(ks->seen, 0, sizeof(*ks->seen) * ks->seen_cap);
    }
    size_t k = 0;
    for (size_t i = 0; i < p->len && k < max; i++) {
        struct kmsg *m = &p->v[p->head + i];
        if (m->st == KM_DONE || !seen_add(ks, m->keyh))
            continue;          /* finished, or an earlier message holds the key */
        if (m->st != KM_WAIT)
            continue;
        if (m->due_ms > now) {
            if (m->due_ms < *next_due)
                *next_due = m->due_ms;
            continue;
        }
        m->st = KM_OUT;
        m->out_ms = clock_mono_ms();
        p->out++;
        struct pick *pk = &out[k++];
        pk->kt = kt;
        pk->part = id;
        pk->offset = m->offset;
        pk->kq = m->kq;
        memcpy(pk->id, m->id, sizeof(pk->id));
        pk->gen = p->gen;
        snprintf(pk->msg_id, sizeof(pk->msg_id), "%d:%lld:%u", (int)id, (long long)m->offset,
                 p->gen);
    }
    return k;
}

/* Deliveries out longer than the visibility timeout were never settled (the
 * worker's Redis failed, or it gave them up): back to waiting, to start again
 * with a new epoch, as Redis Streams reclaims them. *next_due lowers to the
 * earliest time one of the others expires. Under ks->mu. */
static void reclaim_abandoned(struct kstream *ks, int64_t *next_due)
{
    size_t n = 0;
    int64_t now = clock_mono_ms(), vis = ks->cfg->visibility_timeout_ms;
    for (size_t t = 0; t < ks->ntypes; t++) {
        struct ktype *kt = &ks->types[t];
        for (int i = 0; i < kt->np; i++) {
            struct kpart *p = &kt->p[i];
            for (size_t j = 0; p->out > 0 && j < p->len; j++) {
                struct kmsg *m = &p->v[p->head + j];
                if (m->st != KM_OUT)
                    continue;
                if (now - m->out_ms < vis) {
                    int64_t at = clock_wall_ms() + (m->out_ms + vis - now);
                    if (at < *next_due)
                        *next_due = at;
                    continue;
                }
                m->st = KM_WAIT;
                m->due_ms = 0;
                p->out--;
                n++;
            }
        }
    }
    if (n)
        LOG_INFO("kafka.redeliver_unsettled", "count=%zu", n);
}

/* Pick up to max over the types, each its share first (max / ntypes, the
 * first type turning each call), then the slots a type left go to the
 * others: a busy type is not held to its share by idle ones. Under ks->mu. */
static size_t pick_all(struct kstream *ks, const char *const *types, size_t ntypes, size_t max,
                       struct pick *out, int64_t *next_due)
{
    size_t k = 0;
    int64_t now = clock_wall_ms();
    size_t first = ks->rr++;
    size_t share = max / ntypes ? max / ntypes : 1;
    for (int pass = 0; pass < 2 && k < max; pass++)
        for (size_t t = 0; t < ntypes && k < max; t++) {
            struct ktype *kt = type_find(ks, types[(first + t) % ntypes]);
            size_t room = pass == 0 && share < max - k ? share : max - k, got = 0;
            for (int i = 0; kt && i < kt->np && got < room; i++)
                if (kt->p[i].assigned)
                    got += pick_part(ks, kt, i, &kt->p[i], now, out + k + got, room - got,
                                     next_due);
            k += got;
        }
    return k;
}

/* Fetching a partition paused while its window was full goes on once the
 * window is back under WINDOW_RESUME (checked after every consume and settle;
 * librdkafka is told outside ks->mu). */
static void resume_fetching(struct kstream *ks)
{
    for (size_t t = 0; t < ks->ntypes; t++) {
        struct ktype *kt = &ks->types[t];
        for (int i = 0; i < kt->np; i++) {
            pthread_mutex_lock(&ks->mu);
            int go = kt->p[i].paused && kt->p[i].assigned && kt->p[i].len < WINDOW_RESUME;
            if (go)
                kt->p[i].paused = 0;
            pthread_mutex_unlock(&ks->mu);
            if (go)
                kfk_consumer_pause(kt->c, i, 0);
        }
    }
}

/* Find a picked message again (the window may have moved). Under ks->mu. */
static struct kmsg *pick_find(struct ktype *kt, int32_t part, int64_t offset, unsigned gen,
                              struct kpart **pp)
{
    if (part < 0 || part >= kt->np)
        return NULL;
    struct kpart *p = &kt->p[part];
    if (!p->assigned || p->gen != gen)
        return NULL;
    *pp = p;
    return part_find(p, offset);
}

/* Mark a delivery over: done, or waiting again until due_ms. Under ks->mu. */
static void delivery_end(struct ktype *kt, int32_t part, int64_t offset, unsigned gen, int done,
                         int64_t due_ms)
{
    struct kpart *p = NULL;
    struct kmsg *m = pick_find(kt, part, offset, gen, &p);
    if (!m || m->st != KM_OUT)
        return;
    p->out--;
    m->st = done ? KM_DONE : KM_WAIT;
    m->due_ms = due_ms;
    if (done)
        part_advance(kt, part, p);
}

static void wait_for_messages(struct kstream *ks, int64_t until_mono)
{
    int64_t left = until_mono - clock_mono_ms();
    if (left > 0)
        cond_wait_ms(&ks->cv, &ks->mu, left);
}

/* Wait until something can be picked, or until (mono ms). Returns how many
 * were picked into pk. */
static size_t pick_wait(struct kstream *ks, const char *const *types, size_t ntypes, size_t max,
                        struct pick *pk, int64_t until)
{
    size_t k = 0;
    pthread_mutex_lock(&ks->mu);
    for (;;) {
        int64_t next_due = INT64_MAX;
        reclaim_abandoned(ks, &next_due);
        k = pick_all(ks, types, ntypes, max, pk, &next_due);
        if (k > 0 || clock_mono_ms() >= until)
            break;
        int64_t w = until;
        if (next_due != INT64_MAX && clock_mono_ms() + (next_due - clock_wall_ms()) < w)
            w = clock_mono_ms() + (next_due - clock_wall_ms()) + 1;
        wait_for_messages(ks, w);
    }
    pthread_mutex_unlock(&ks->mu);
    return k;
}

/* Start the picks, a script per type; the windows may move meanwhile (the
 * consumer's thread appends), so each is found again by offset after. Jobs
 * started go to out[*n]; the others end (skipped) or wait again. */
static enum cv_rc start_picks(struct kstream *ks, const char *consumer, const char *const *types,
                              size_t ntypes, struct pick *pk, size_t k,
                              struct jstore_delivery *d, struct pick **of, struct job **out,
                              size_t *n)
{
    enum cv_rc rc = CV_OK;
    for (size_t t = 0; t < ntypes; t++) {
        struct ktype *kt = type_find(ks, types[t]);
        size_t nd = 0;
        for (size_t i = 0; kt && i < k; i++)
            if (pk[i].kt == kt) {
                d[nd].msg_id = pk[i].msg_id;
                d[nd].id = pk[i].id;
                d[nd].kq = pk[i].kq;
                of[nd++] = &pk[i];
            }
        if (nd == 0)
            continue;
        enum cv_rc trc = rc == CV_OK
                             ? jstore_start(ks->js, JSTORE_EXTERNAL, consumer, kt->type, d, nd,
                                            out, n)
                             : rc;
        pthread_mutex_lock(&ks->mu);
        for (size_t i = 0; i < nd; i++) {
            struct pick *p = of[i];
            if (trc != CV_OK)
                delivery_end(kt, p->part, p->offset, p->gen, 0, 0);
            else if (d[i].res == JSTORE_SKIP)
                delivery_end(kt, p->part, p->offset, p->gen, 1, 0);
            else if (d[i].res == JSTORE_WAIT)
                delivery_end(kt, p->part, p->offset, p->gen, 0, d[i].wait_until_ms);
        }
        pthread_mutex_unlock(&ks->mu);
        rc = trc;
    }
    return rc;
}

static enum cv_rc ks_consume(struct broker *b, const char *consumer, const char *const *types,
                             size_t ntypes, size_t max, int block_ms, struct job **out,
                             size_t *n)
{
    struct kstream *ks = KS(b);
    enum cv_rc rc = ensure_consumers(ks, types, ntypes);
    if (rc != CV_OK)
        return rc;
    struct pick *pk = xcalloc(max, sizeof(*pk));
    struct jstore_delivery *d = xcalloc(max, sizeof(*d));
    struct pick **of = xcalloc(max, sizeof(*of));
    int64_t until = clock_mono_ms() + (block_ms > 0 ? block_ms : 0);
    /* until a job starts or the time is up: picks may all be skipped (ended
     * jobs, stale copies) or told to wait (a retry's backoff) */
    while (rc == CV_OK && *n == 0) {
        size_t k = pick_wait(ks, types, ntypes, max, pk, until);
        if (k == 0)
            break;
        rc = start_picks(ks, consumer, types, ntypes, pk, k, d, of, out, n);
        if (clock_mono_ms() >= until)
            break;
    }
    resume_fetching(ks);
    free(d);
    free(of);
    free(pk);
    return rc;
}

/* ---- settle ------------------------------------------------------------------------ */

static enum cv_rc ks_settle(struct broker *b, struct job *const *jobs, struct broker_settle *s,
                            size_t n, int status_ttl_s)
{
    struct kstream *ks = KS(b);
    enum cv_rc rc = jstore_settle(ks->js, JSTORE_EXTERNAL, jobs, s, n, status_ttl_s);
    if (rc != CV_OK)
        return rc;             /* still out: the next consume delivers them again */
    int64_t now = clock_wall_ms();
    pthread_mutex_lock(&ks->mu);
    for (size_t i = 0; i < n; i++) {
        struct ktype *kt = type_find(ks, jobs[i]->type);
        int part = -1;
        long long off = -1;
        unsigned gen = 0;
        if (!kt || sscanf(jobs[i]->msg_id, "%d:%lld:%u", &part, &off, &gen) != 3)
            continue;
        int again = !s[i].fenced &&
                    (s[i].outcome == BROKER_RETRY || s[i].outcome == BROKER_DEFER);
        delivery_end(kt, part, off, gen, !again, again ? now + s[i].delay_ms : 0);
    }
    pthread_cond_broadcast(&ks->cv);
    pthread_mutex_unlock(&ks->mu);
    resume_fetching(ks);
    return CV_OK;
}

static enum cv_rc ks_worker_gone(struct broker *b, const char *name)
{
    struct kstream *ks = KS(b);
    struct rds_reply *r = rds_cmdf(ks->sync, "ZREM cv:workers %s", name);
    enum cv_rc rc = rds_reply_rc(r, "worker_gone");
    rds_reply_free(r);
    r = rc == CV_OK ? rds_cmdf(ks->sync, "DEL cv:worker:%s", name) : NULL;
    if (rc == CV_OK)
        rc = rds_reply_rc(r, "worker_gone");
    rds_reply_free(r);
    return rc;
}

/* ---- queues: Redis's part, then each type's lag from Kafka -------------------------- */

/* The lag of every type's group, refreshed off the loop (async mode): a
 * thread of the process, started with the first async kstream. */
struct lag_cache {
    pthread_mutex_t mu;
    int started;
    struct kfk_producer *prod;
    char prefix[128];
    long long lag[JT_N];
    int known[JT_N];
    int64_t asked_ms;          /* the last time somebody read it (wall) */
};
static struct lag_cache lagc = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void lag_one(struct kfk_producer *prod, const char *prefix, const char *type,
                    long long *lag, int *known)
{
    char topic[160];
    int np = 0;
    snprintf(topic, sizeof(topic), "%s.%s", prefix, type);
    *known = kfk_lag(prod, topic, topic, LAG_TIMEOUT_MS, lag, &np) == 0;
}

static void *lag_thread(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&lagc.mu);
        int64_t asked = lagc.asked_ms;
        pthread_mutex_unlock(&lagc.mu);
        if (clock_wall_ms() - asked < 60000) {
            for (int i = 0; i < JT_N; i++) {
                long long lag = 0;
                int known = 0;
                lag_one(lagc.prod, lagc.prefix, jobtype_at(i)->name, &lag, &known);
                pthread_mutex_lock(&lagc.mu);
                lagc.lag[i] = lag;
                lagc.known[i] = known;
                pthread_mutex_unlock(&lagc.mu);
            }
        }
        usleep(2000 * 1000);
    }
    return NULL;
}

static void lag_start(struct kstream *ks)
{
    pthread_mutex_lock(&lagc.mu);
    if (!lagc.started) {
        pthread_t t;
        lagc.prod = kfk_producer_get(ks->cfg);   /* held for the process's life */
        snprintf(lagc.prefix, sizeof(lagc.prefix), "%s", prefix_of(ks->cfg));
        lagc.asked_ms = clock_wall_ms();
        if (lagc.prod && pthread_create(&t, NULL, lag_thread, NULL) == 0) {
            pthread_detach(t);
            lagc.started = 1;
        }
    }
    pthread_mutex_unlock(&lagc.mu);
}

struct queues_ctx {
    struct kstream *ks;
    broker_queues_cb cb;
    void *arg;
};

static void queues_done(const struct rds_reply *r, void *arg)
{
    struct queues_ctx *c = arg;
    enum cv_rc rc = rds_reply_rc(r, "queues");
    size_t n = rc == CV_OK ? rds_reply_len(r) : 0;
    struct queue_stat *q = xcalloc(n ? n : 1, sizeof(*q));
    if (c->ks->as) {
        pthread_mutex_lock(&lagc.mu);
        lagc.asked_ms = clock_wall_ms();
        pthread_mutex_unlock(&lagc.mu);
    }
    for (size_t i = 0; i < n; i++) {
        const struct rds_reply *e = rds_reply_at(r, i);
        const char *t = rds_reply_at_str(e, 0);
        snprintf(q[i].type, sizeof(q[i].type), "%s", t ? t : "");
        q[i].scheduled = rds_reply_at_int(e, 1, 0);
        q[i].dead = rds_reply_at_int(e, 2, 0);
        q[i].consumers = rds_reply_at_int(e, 3, 0);
        long long lag = -1;
        int known = 0;
        if (c->ks->as) {
            int ti = jobtype_index(q[i].type);
            pthread_mutex_lock(&lagc.mu);
            if (ti >= 0 && lagc.known[ti]) {
                lag = lagc.lag[ti];
                known = 1;
            }
            pthread_mutex_unlock(&lagc.mu);
        } else {
            lag_one(c->ks->prod, prefix_of(c->ks->cfg), q[i].type, &lag, &known);
        }
        /* the group's lag counts what is read but not committed too */
        q[i].lag = known ? lag : -1;
        q[i].depth = (known ? lag : 0) + rds_reply_at_int(e, 4, 0);
    }
    c->cb(c->arg, rc, q, n);
    free(q);
    free(c);
}

static void ks_queues(struct broker *b, broker_queues_cb cb, void *arg)
{
    struct kstream *ks = KS(b);
    char now[24], alive[24];
    num(now, sizeof(now), clock_wall_ms());
    num(alive, sizeof(alive), WORKER_ALIVE_MS);
    const char *argv[] = { now, alive };
    struct queues_ctx *c = xmalloc(sizeof(*c));
    c->ks = ks;
    c->cb = cb;
    c->arg = arg;
    rds_either_eval(ks->sync, ks->as, &ks->queues, queues_done, c, 2, argv, NULL);
}

/* ---- open/close ------------------------------------------------------------------ */

static int ks_ready(struct broker *b)
{
    struct kstream *ks = KS(b);
    if (!kfk_producer_up(ks->prod))
        return 0;
    if (ks->as)
        return rds_async_connected(ks->as);
    struct rds_reply *r = rds_cmdf(ks->sync, "PING");
    int ok = r && rds_reply_type(r) == RDS_STATUS;
    rds_reply_free(r);
    return ok;
}

/* What open made, whatever of it was made (a failed open, the end of a close). */
static void ks_free(struct kstream *ks)
{
    if (ks->ev)
        event_free(ks->ev);
    if (ks->efd >= 0)
        close(ks->efd);
    kfk_producer_put(ks->prod);
    jstore_free(ks->js);        /* before the link it borrows */
    rds_free(ks->sync);
    rds_async_free(ks->as);
    free(ks->seen);
    pthread_mutex_destroy(&ks->mu);
    pthread_cond_destroy(&ks->cv);
    pthread_mutex_destroy(&ks->cmu);
    pthread_cond_destroy(&ks->ccv);
    free(ks);
}

static void ks_close(struct broker *b)
{
    struct kstream *ks = KS(b);
    pthread_mutex_lock(&ks->mu);
    ks->closing = 1;              /* revokes stop waiting for jobs in flight */
    pthread_cond_broadcast(&ks->cv);
    pthread_mutex_unlock(&ks->mu);
    /* each consumer commits what is finished and leaves its group */
    for (size_t i = 0; i < ks->ntypes; i++) {
        kfk_consumer_free(ks->types[i].c);
        for (int k = 0; k < ks->types[i].np; k++)
            free(ks->types[i].p[k].v);
        free(ks->types[i].p);
    }
    free(ks->types);
    /* publishes in flight get their reports (bounded by message.timeout.ms) */
    int64_t until = clock_mono_ms() + 15000;
    for (;;) {
        pthread_mutex_lock(&ks->cmu);
        size_t left = ks->inflight;
        pthread_mutex_unlock(&ks->cmu);
        if (left == 0 || clock_mono_ms() >= until)
            break;
        finish_completed(ks);
        usleep(10 * 1000);
    }
    ks_free(ks);
}

static const struct broker_ops kstream_ops = {
    .name = "kafka",
    .close = ks_close,
    .ready = ks_ready,
    .publish = ks_publish,
    .dead_retry = ks_dead_retry,
    .queues = ks_queues,
    .consume = ks_consume,
    .settle = ks_settle,
    .promote = ks_promote,
    .worker_gone = ks_worker_gone,
};

struct broker *kstream_open(const struct cfg *cfg, struct event_base *base)
{
    struct kstream *ks = xcalloc(1, sizeof(*ks));
    ks->base.ops = &kstream_ops;
    ks->cfg = cfg;
    ks->efd = -1;
    pthread_mutex_init(&ks->mu, NULL);
    pthread_cond_init(&ks->cv, NULL);
    pthread_mutex_init(&ks->cmu, NULL);
    pthread_cond_init(&ks->ccv, NULL);
    ks->due = (struct rds_script){ "due", KSTREAM_LUA_DUE, "" };
    ks->produced = (struct rds_script){ "produced", KSTREAM_LUA_PRODUCED, "" };
    ks->queues = (struct rds_script){ "kqueues", KSTREAM_LUA_QUEUES, "" };
    ks->prod = kfk_producer_get(cfg);
    if (!ks->prod)
        goto fail;
    if (base) {
        ks->as = rds_async_new(base, cfg->redis_url, 5000);
        ks->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (!ks->as || ks->efd < 0)
            goto fail;
        ks->ev = event_new(base, ks->efd, EV_READ | EV_PERSIST, on_completions, ks);
        if (!ks->ev || event_add(ks->ev, NULL))
            goto fail;
        ks->js = jstore_new(NULL, ks->as, cfg);
        ks->base.js = ks->js;
        lag_start(ks);
        return &ks->base;
    }
    ks->sync = rds_connect(cfg->redis_url, cfg->block_ms + 5000);
    if (!ks->sync)
        goto fail;
    struct rds_script *all[] = { &ks->due, &ks->produced, &ks->queues };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (rds_script_load(ks->sync, all[i]))
            goto fail;
    ks->js = jstore_new(ks->sync, NULL, cfg);
    if (!ks->js)
        goto fail;
    ks->base.js = ks->js;
    return &ks->base;
fail:
    LOG_ERROR("kafka.open_failed", "producer=%s redis_url_set=%d", ks->prod ? "ok" : "failed",
              cfg->redis_url && *cfg->redis_url);
    ks_free(ks);
    return NULL;
}
