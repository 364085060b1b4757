/* kfk.c - librdkafka behind one module (see kfk.h).
 *
 * Threads. librdkafka runs its own broker threads; on top of them this module
 * runs one thread per handle that serves its events: the producer's thread
 * calls rd_kafka_poll (delivery reports, errors), a consumer's thread calls
 * rd_kafka_consumer_poll without pause. A consumer's caller may run a job for
 * minutes: polling never waits for it, so max.poll.interval.ms holds and the
 * group never evicts a member for a slow job. Rebalance callbacks run on that
 * thread too, and hand the caller the chance to say what is finished before
 * the partitions go (kfk_consumer_ops.revoked).
 *
 * Settings. Conveyor's defaults for the handle first, then every kafka.* key
 * from cfg (cfg.h), so an operator can override any of them. */
#include "kfk.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "mem.h"

/* ---- settings -------------------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *val)
{
    char err[256];
    if (rd_kafka_conf_set(conf, name, val, err, sizeof(err)) == RD_KAFKA_CONF_OK)
        return 0;
    LOG_ERROR("kafka.bad_setting", "name=%s value=%s err=\"%s\"", name,
              cfg_secret_name(name) ? "(secret)" : val, err);
    return -1;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    char b[LOG_STR_MAX];
    /* a kafka.* key for the consumers is "ignored by this producer": expected;
     * a broker that cannot be reached is a warning (the client reconnects) */
    if (!strcmp(fac, "CONFWARN"))
        level = 7;
    else if (!strcmp(fac, "FAIL") && level < 4)
        level = 4;
    if (level <= 3)
        LOG_ERROR("kafka.log", "fac=%s msg=%s", fac, log_str(b, buf));
    else if (level <= 4)
        LOG_WARN("kafka.log", "fac=%s msg=%s", fac, log_str(b, buf));
    else
        LOG_DEBUG("kafka.log", "fac=%s msg=%s", fac, log_str(b, buf));
}

/* A conf with defaults (name, value pairs, NULL-terminated) then cfg's kafka.*
 * keys. NULL after logging when librdkafka refuses one. */
static rd_kafka_conf_t *conf_new(const struct cfg *cfg, const char *const *defaults)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; defaults[i]; i += 2)
        if (conf_set(conf, defaults[i], defaults[i + 1]))
            goto fail;
    for (size_t i = 0; i < cfg->kafka_nprops; i++)
        if (conf_set(conf, cfg->kafka_props[2 * i], cfg->kafka_props[2 * i + 1]))
            goto fail;
    rd_kafka_conf_set_log_cb(conf, on_log);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- the producer ------------------------------------------------------------- */

struct kfk_producer {
    rd_kafka_t *rk;
    pthread_t thr;
    atomic_int stop;
    atomic_llong down_ms;     /* when every broker was last reported down, or a delivery
                               * failed (mono ms); 0 once a delivery succeeded since */
    int refs;                 /* under prod_mu */
};

static pthread_mutex_t prod_mu = PTHREAD_MUTEX_INITIALIZER;
static struct kfk_producer *prod;

/* What a message carries to its delivery report. */
struct dr_ctx {
    kfk_dr_fn fn;
    void *opaque;
};

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct kfk_producer *p = opaque;
    struct dr_ctx *d = m->_private;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_store(&p->down_ms, 0);
    } else {
        atomic_store(&p->down_ms, clock_mono_ms());
        LOG_WARN("kafka.delivery_failed", "topic=%s err=\"%s\"", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
    }
    d->fn(d->opaque, m->err == RD_KAFKA_RESP_ERR_NO_ERROR);
    free(d);
}

static void on_prod_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kfk_producer *p = opaque;
    char b[LOG_STR_MAX];
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        atomic_store(&p->down_ms, clock_mono_ms());
    /* a refused connection is in librdkafka's own log line already (once) */
    if (err == RD_KAFKA_RESP_ERR__TRANSPORT) {
        LOG_DEBUG("kafka.error", "role=producer err=%s", rd_kafka_err2name(err));
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[256];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        LOG_ERROR("kafka.fatal", "role=producer err=%s", log_str(b, why));
        return;
    }
    LOG_WARN("kafka.error", "role=producer err=%s reason=%s", rd_kafka_err2name(err),
             log_str(b, reason));
}

static void *prod_thread(void *arg)
{
    struct kfk_producer *p = arg;
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 100);
    return NULL;
}

struct kfk_producer *kfk_producer_get(const struct cfg *cfg)
{
    static const char *const defaults[] = {
        "enable.idempotence", "true",
        "acks", "all",
        /* a job system waits on each answer: 1 ms of batching, not 5 (single POSTs
         * 4.8k/s -> 12k/s on the mock here; batches still fill the messages) */
        "linger.ms", "1",
        /* the bounded wait: a publish to a cluster that is down fails after this */
        "message.timeout.ms", "10000",
        "socket.connection.setup.timeout.ms", "5000",
        NULL,
    };
    pthread_mutex_lock(&prod_mu);
    if (prod) {
        prod->refs++;
        goto out;
    }
    char err[256];
    rd_kafka_conf_t *conf = conf_new(cfg, defaults);
    if (!conf)
        goto out;
    struct kfk_producer *p = xcalloc(1, sizeof(*p));
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
    rd_kafka_conf_set_error_cb(conf, on_prod_error);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!p->rk) {
        LOG_ERROR("kafka.producer_failed", "err=\"%s\"", err);
        rd_kafka_conf_destroy(conf);
        free(p);
        goto out;
    }
    if (pthread_create(&p->thr, NULL, prod_thread, p) != 0) {
        rd_kafka_destroy(p->rk);
        free(p);
        goto out;
    }
    p->refs = 1;
    prod = p;
out:;
    struct kfk_producer *r = prod;
    pthread_mutex_unlock(&prod_mu);
    return r;
}

void kfk_producer_put(struct kfk_producer *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&prod_mu);
    int last = --p->refs == 0;
    if (last)
        prod = NULL;
    pthread_mutex_unlock(&prod_mu);
    if (!last)
        return;
    /* every queued message gets its report before the thread stops */
    if (rd_kafka_flush(p->rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        LOG_WARN("kafka.flush_timeout", "left=%d", rd_kafka_outq_len(p->rk));
    atomic_store(&p->stop, 1);
    pthread_join(p->thr, NULL);
    rd_kafka_poll(p->rk, 0);
    rd_kafka_destroy(p->rk);
    free(p);
}

int kfk_produce(struct kfk_producer *p, const char *topic, const char *key, size_t klen,
                const char *val, size_t vlen, kfk_dr_fn fn, void *opaque)
{
    struct dr_ctx *d = xmalloc(sizeof(*d));
    d->fn = fn;
    d->opaque = opaque;
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, klen),
        RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    LOG_WARN("kafka.produce_refused", "topic=%s err=\"%s\"", topic, rd_kafka_err2str(e));
    free(d);
    return -1;
}

/* Down for DOWN_HOLD_MS after the last sign of it; then a publish goes
 * through again and its report says whether the cluster is back (librdkafka
 * tells when every broker is down, not when one comes back). */
#define DOWN_HOLD_MS 3000

int kfk_producer_up(const struct kfk_producer *p)
{
    long long at = atomic_load(&p->down_ms);
    return !at || clock_mono_ms() - at >= DOWN_HOLD_MS;
}

/* ---- lag ---------------------------------------------------------------------- */

/* The group's committed offsets for parts (filled in place, -1 = none). */
static int committed(rd_kafka_t *rk, const char *group, rd_kafka_topic_partition_list_t *parts,
                     int timeout_ms)
{
    int rc = -1;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
    char err[256];
    rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, err, sizeof(err));
    rd_kafka_ListConsumerGroupOffsets_t *req = rd_kafka_ListConsumerGroupOffsets_new(group, parts);
    rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, o, q);
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (!ev || rd_kafka_event_error(ev))
        goto out;
    const rd_kafka_ListConsumerGroupOffsets_result_t *res =
        rd_kafka_event_ListConsumerGroupOffsets_result(ev);
    size_t ng = 0;
    const rd_kafka_group_result_t **g =
        res ? rd_kafka_ListConsumerGroupOffsets_result_groups(res, &ng) : NULL;
    if (ng != 1 || rd_kafka_group_result_error(g[0]))
        goto out;
    const rd_kafka_topic_partition_list_t *got = rd_kafka_group_result_partitions(g[0]);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *f =
            rd_kafka_topic_partition_list_find(got, parts->elems[i].topic,
                                               parts->elems[i].partition);
        parts->elems[i].offset = f && !f->err ? f->offset : -1;
    }
    rc = 0;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    return rc;
}

int kfk_lag(struct kfk_producer *p, const char *group, const char *topic, int timeout_ms,
            long long *lag, int *partitions)
{
    int rc = -1;
    *lag = 0;
    *partitions = 0;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_metadata(p->rk, 0, rkt, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        md->topic_cnt != 1 || md->topics[0].err)
        goto out;
    int np = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(np);
    for (int i = 0; i < np; i++)
        rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id);
    if (committed(p->rk, group, parts, timeout_ms))
        goto out;
    long long sum = 0;
    for (int i = 0; i < np; i++) {
        int64_t lo = 0, hi = 0;
        if (rd_kafka_query_watermark_offsets(p->rk, topic, parts->elems[i].partition, &lo, &hi,
                                             timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
            goto out;
        int64_t at = parts->elems[i].offset >= 0 ? parts->elems[i].offset : lo;
        sum += hi > at ? hi - at : 0;
    }
    *lag = sum;
    *partitions = np;
    rc = 0;
out:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* ---- group consumers ----------------------------------------------------------- */

struct kfk_consumer {
    rd_kafka_t *rk;
    pthread_t thr;
    atomic_int stop;
    struct kfk_consumer_ops ops;
    char *topic;
    char *group;
};

static void on_cons_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    struct kfk_consumer *c = opaque;
    char b[LOG_STR_MAX];
    if (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        LOG_DEBUG("kafka.error", "role=consumer group=%s err=%s", c->group,
                  rd_kafka_err2name(err));   /* librdkafka's log line has said it */
        return;
    }
    LOG_WARN("kafka.error", "role=consumer group=%s err=%s reason=%s", c->group,
             rd_kafka_err2name(err), log_str(b, reason));
}

/* Eager protocols (range, roundrobin) hand over everything at each rebalance;
 * cooperative-sticky (an operator's choice) only what moves. Both commit what
 * the caller says is finished before the partitions go. */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct kfk_consumer *c = opaque;
    int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    int32_t *ids = xcalloc((size_t)parts->cnt + 1, sizeof(*ids));
    for (int i = 0; i < parts->cnt; i++)
        ids[i] = parts->elems[i].partition;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        c->ops.assigned(c->ops.arg, ids, (size_t)parts->cnt);
        LOG_INFO("kafka.assigned", "group=%s partitions=%d", c->group, parts->cnt);
        if (coop)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
        free(ids);
        return;
    }
    int64_t *commit = xcalloc((size_t)parts->cnt + 1, sizeof(*commit));
    c->ops.revoked(c->ops.arg, ids, (size_t)parts->cnt, commit);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++)
        if (commit[i] >= 0)
            rd_kafka_topic_partition_list_add(l, parts->elems[i].topic, ids[i])->offset =
                commit[i];
    /* explicit list: rd_kafka_commit(NULL) drops metadata in 2.0.2 (PLATFORM.md) */
    if (l->cnt > 0) {
        rd_kafka_resp_err_t ce = rd_kafka_commit(rk, l, 0);
        if (ce != RD_KAFKA_RESP_ERR_NO_ERROR && ce != RD_KAFKA_RESP_ERR__NO_OFFSET)
            LOG_WARN("kafka.commit_failed", "group=%s err=\"%s\"", c->group,
                     rd_kafka_err2str(ce));
    }
    LOG_INFO("kafka.revoked", "group=%s partitions=%d committed=%d", c->group, parts->cnt,
             l->cnt);
    rd_kafka_topic_partition_list_destroy(l);
    if (coop)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
    free(commit);
    free(ids);
}

static void *cons_thread(void *arg)
{
    struct kfk_consumer *c = arg;
    while (!atomic_load(&c->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            c->ops.message(c->ops.arg, m->partition, m->offset, m->key, m->key_len, m->payload,
                           m->len);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            LOG_WARN("kafka.consume_error", "group=%s err=\"%s\"", c->group,
                     rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    /* leaves the group: the rebalance callback runs here, on this thread */
    rd_kafka_consumer_close(c->rk);
    return NULL;
}

struct kfk_consumer *kfk_consumer_new(const struct cfg *cfg, const char *group,
                                      const char *topic, const struct kfk_consumer_ops *ops)
{
    static const char *const defaults[] = {
        "enable.auto.commit", "true",
        "enable.auto.offset.store", "false",
        "auto.commit.interval.ms", "1000",
        "auto.offset.reset", "earliest",
        "partition.assignment.strategy", "range",
        "session.timeout.ms", "10000",
        "enable.partition.eof", "false",
        /* a cluster that allows it creates a type's topic on first use */
        "allow.auto.create.topics", "true",
        /* a fetch that finds nothing answers after 20 ms, not 500: submit-to-done
         * p50 259 ms -> 12 ms on the mock here, at some idle fetches */
        "fetch.wait.max.ms", "20",
        /* prefetch little: what is fetched waits in memory for a slot */
        "queued.max.messages.kbytes", "8192",
        NULL,
    };
    char err[256];
    rd_kafka_conf_t *conf = conf_new(cfg, defaults);
    if (!conf || conf_set(conf, "group.id", group)) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        return NULL;
    }
    struct kfk_consumer *c = xcalloc(1, sizeof(*c));
    c->ops = *ops;
    c->topic = xstrdup(topic);
    c->group = xstrdup(group);
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_error_cb(conf, on_cons_error);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!c->rk) {
        LOG_ERROR("kafka.consumer_failed", "group=%s err=\"%s\"", group, err);
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_poll_set_consumer(c->rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        LOG_ERROR("kafka.subscribe_failed", "topic=%s err=\"%s\"", topic, rd_kafka_err2str(e));
        rd_kafka_destroy(c->rk);
        goto fail;
    }
    if (pthread_create(&c->thr, NULL, cons_thread, c) != 0) {
        rd_kafka_destroy(c->rk);
        goto fail;
    }
    return c;
fail:
    free(c->topic);
    free(c->group);
    free(c);
    return NULL;
}

static void one_partition(struct kfk_consumer *c, int32_t partition, int64_t offset,
                          rd_kafka_topic_partition_list_t **out)
{
    *out = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(*out, c->topic, partition)->offset = offset;
}

void kfk_consumer_store(struct kfk_consumer *c, int32_t partition, int64_t next)
{
    rd_kafka_topic_partition_list_t *l;
    one_partition(c, partition, next, &l);
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__STATE)
        LOG_DEBUG("kafka.store_failed", "group=%s partition=%d err=\"%s\"", c->group,
                  (int)partition, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

void kfk_consumer_pause(struct kfk_consumer *c, int32_t partition, int pause)
{
    rd_kafka_topic_partition_list_t *l;
    one_partition(c, partition, RD_KAFKA_OFFSET_INVALID, &l);
    if (pause)
        rd_kafka_pause_partitions(c->rk, l);
    else
        rd_kafka_resume_partitions(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

void kfk_consumer_free(struct kfk_consumer *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, 1);
    pthread_join(c->thr, NULL);
    rd_kafka_destroy(c->rk);
    free(c->topic);
    free(c->group);
    free(c);
}

/* ---- the mock cluster ---------------------------------------------------------- */

struct kfk_mock {
    rd_kafka_t *rk;                 /* the handle that owns the cluster */
    rd_kafka_mock_cluster_t *mc;
    int nbrokers;
};

struct kfk_mock *kfk_mock_new(int nbrokers)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        LOG_ERROR("kafka.mock_failed", "err=\"%s\"", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, nbrokers);
    if (!mc) {
        LOG_ERROR("kafka.mock_failed", "brokers=%d", nbrokers);
        rd_kafka_destroy(rk);
        return NULL;
    }
    struct kfk_mock *m = xcalloc(1, sizeof(*m));
    m->rk = rk;
    m->mc = mc;
    m->nbrokers = nbrokers;
    return m;
}

const char *kfk_mock_bootstraps(const struct kfk_mock *m)
{
    return rd_kafka_mock_cluster_bootstraps(m->mc);
}

int kfk_mock_topic(struct kfk_mock *m, const char *topic, int partitions)
{
    int rf = m->nbrokers < 3 ? m->nbrokers : 3;
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(m->mc, topic, partitions, rf);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    LOG_ERROR("kafka.mock_topic_failed", "topic=%s err=\"%s\"", topic, rd_kafka_err2str(e));
    return -1;
}

int kfk_mock_broker(struct kfk_mock *m, int id, int up)
{
    for (int b = id ? id : 1; b <= (id ? id : m->nbrokers); b++) {
        rd_kafka_resp_err_t e = up ? rd_kafka_mock_broker_set_up(m->mc, b)
                                   : rd_kafka_mock_broker_set_down(m->mc, b);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            return -1;
    }
    return 0;
}

void kfk_mock_free(struct kfk_mock *m)
{
    if (!m)
        return;
    rd_kafka_mock_cluster_destroy(m->mc);
    rd_kafka_destroy(m->rk);
    free(m);
}
