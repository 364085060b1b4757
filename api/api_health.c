/* api_health.c - /health, /ready (and the seed's /api/v1/health), /metrics.
 *
 * All three are open (no key): load balancers and Prometheus call them.
 * /health does no I/O. /ready reports whether this loop's Redis and
 * PostgreSQL links are up, from state the links keep, without a round trip.
 * /metrics renders this process's counters and two things every process
 * shares through Redis: the per-type job counters (broker_counters) and the
 * activation histogram the workers write; those two are cached (below). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "broker.h"
#include "clock.h"
#include "db.h"
#include "mem.h"
#include "met.h"
#include "ostore.h"
#include "ostate.h"
#include "rds.h"
#include "ups.h"

void api_h_health(struct req *r)
{
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"status\":\"ok\"}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
}

/* Links are NULL or closing only while the loop is torn down. */
static int redis_up(const struct api_thread *t)
{
    return !t->closing && t->broker && broker_ready(t->broker);
}

/* "{"status":..,"redis":..,"postgres":.." into b (no closing brace); returns 1
 * when both stores answer. GET /ready and GET /v1/health share it. */
static int ready_fields(struct api_thread *t, struct sbuf *b)
{
    int redis = redis_up(t), pg = t->db && db_async_connected(t->db);
    sbuf_add(b, "{", 1);
    api_json_str(b, "status", redis && pg ? "ready" : "not_ready", 1);
    api_json_str(b, "redis", redis ? "up" : "down", 0);
    api_json_str(b, "postgres", pg ? "up" : "down", 0);
    return redis && pg;
}

void api_h_ready(struct req *r)
{
    struct sbuf b;
    sbuf_init(&b);
    int ready = ready_fields(r->t, &b);
    sbuf_add(&b, "}", 1);
    api_reply_json(r, ready ? 200 : 503, &b);
    sbuf_cleanup(&b);
}

/* ==== /metrics ============================================================ */

/* The part of a scrape that comes from Redis and PostgreSQL is cached per
 * loop and read again at most every http.metrics_cache_ms:
 *   Redis: the per-type job counters (one script), the three histograms the
 *   workers write (activation processing, upstream call durations, an order's
 *   fetch to COMPLETE: an HGETALL each), the held-money figures the reconciler
 *   writes and the rate waits (an HGETALL each), the queues (one script over
 *   the types), the live workers (one script), and two HGETALLs per configured
 *   upstream (its breaker and its last call);
 *   PostgreSQL: orders per state (one GROUP BY over the state index).
 * A scrape in between is served from memory, and scrapes that arrive while a
 * read is out wait for that read instead of starting their own. So however
 * often /metrics is called, each loop costs Redis eight bounded reads and two
 * per upstream, and PostgreSQL one, per period. */
#define METRICS_PARTS 10
struct api_metrics {
    struct sbuf part[METRICS_PARTS];  /* rendered: job counters, histogram, held money,
                                       * queues, workers, orders, upstreams,
                                       * upstream call durations, rate waits,
                                       * fetch-to-complete */
    int ups_left;                     /* upstream reads still out */
    struct sbuf ups_br, ups_lat;      /* their lines, joined into part 6 at the end */
    struct sbuf next[METRICS_PARTS];  /* being read */
    int64_t fetched_ms;               /* monotonic; 0 = never */
    int reads_left;                   /* calls out; 0 = none */
    struct req **waiting;
    size_t nwaiting, cap;
};

static void metrics_finish(struct req *r)
{
    struct api_thread *t = r->t;
    struct api_metrics *m = t->metrics;
    struct sbuf b;
    sbuf_init(&b);
    met_render(t->g->met, &b);
    met_text_header(&b, "conveyor_api_redis_up", "gauge",
                    "1 when this process's Redis link is up.");
    met_text_u64(&b, "conveyor_api_redis_up", NULL, redis_up(t));
    met_text_header(&b, "conveyor_api_postgres_up", "gauge",
                    "1 when this process's PostgreSQL link is up.");
    met_text_u64(&b, "conveyor_api_postgres_up", NULL, t->db && db_async_connected(t->db));
    met_text_header(&b, "conveyor_http_connections", "gauge",
                    "Open client connections of this process.");
    met_text_u64(&b, "conveyor_http_connections", NULL,
                 (unsigned long long)atomic_load(&t->g->nconns));
    for (int i = 0; i < METRICS_PARTS; i++)
        sbuf_add(&b, m->part[i].p ? m->part[i].p : "", m->part[i].len);
    api_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    sbuf_cleanup(&b);
}

/* One of the reads is back: when all are, the cache is new and every
 * waiting scrape is answered from it. */
static void read_done(struct api_thread *t)
{
    struct api_metrics *m = t->metrics;
    if (--m->reads_left > 0)
        return;
    for (int i = 0; i < METRICS_PARTS; i++) {
        struct sbuf tmp = m->part[i];
        m->part[i] = m->next[i];
        m->next[i] = tmp;
        sbuf_reset(&m->next[i]);
    }
    /* a failed read leaves its part empty, as an uncached scrape did; the
     * time is taken all the same so that a Redis outage is not read for on
     * every scrape */
    m->fetched_ms = clock_mono_ms();
    size_t n = m->nwaiting;
    m->nwaiting = 0;
    for (size_t i = 0; i < n; i++) {
        metrics_finish(m->waiting[i]);
        api_req_release(m->waiting[i]);
    }
}

static void on_counters(void *arg, enum cv_rc rc, const struct type_counters *c, size_t n)
{
    struct api_thread *t = arg;
    if (rc == CV_OK) {
        struct sbuf *b = &t->metrics->next[0];
        struct sbuf lab;
        sbuf_init(&lab);
        met_text_header(b, "conveyor_jobs_total", "counter",
                        "Jobs by type and outcome, counted by every producer and worker.");
        for (size_t i = 0; i < n; i++) {
            for (int k = 0; k < BROKER_NCOUNTERS; k++) {
                sbuf_reset(&lab);
                met_text_label(&lab, "type", c[i].type, 1);
                met_text_label(&lab, "outcome", broker_counter_names[k], 0);
                met_text_u64(b, "conveyor_jobs_total", lab.p,
                              (unsigned long long)(c[i].n[k] > 0 ? c[i].n[k] : 0));
            }
        }
        static const char *const help[BROKER_NEVENTS] = {
            [BROKER_E_RECLAIMED] = "Deliveries taken over from a worker that went silent, by type.",
            [BROKER_E_FENCED] =
                "Settles refused because the delivery's lease had passed to a newer one, by type.",
        };
        for (int e = 0; e < BROKER_NEVENTS; e++) {
            met_text_header(b, broker_event_metrics[e], "counter", help[e]);
            for (size_t i = 0; i < n; i++) {
                sbuf_reset(&lab);
                met_text_label(&lab, "type", c[i].type, 1);
                met_text_u64(b, broker_event_metrics[e], lab.p,
                             (unsigned long long)(c[i].ev[e] > 0 ? c[i].ev[e] : 0));
            }
        }
        sbuf_cleanup(&lab);
    }
    read_done(t);
}

/* A histogram hash the workers write (met.h) into part, rendered. */
static void hist_part(struct api_thread *t, const struct rds_reply *reply, int part,
                      const struct met_hist *h)
{
    if (reply && rds_reply_type(reply) == RDS_ARR) {
        const char **f, **v;
        size_t n;
        rds_reply_hash_pairs(reply, &f, &v, &n);
        met_hist_render(&t->metrics->next[part], h, f, v, n);
        free(f);
        free(v);
    }
    read_done(t);
}

static void on_hist(const struct rds_reply *reply, void *arg)
{
    hist_part(arg, reply, 1, &met_hists[MET_H_ACTIVATION]);
}

static void on_ups_hist(const struct rds_reply *reply, void *arg)
{
    hist_part(arg, reply, 7, &met_hists[MET_H_UPSTREAM]);
}

static void on_f2c_hist(const struct rds_reply *reply, void *arg)
{
    hist_part(arg, reply, 9, &met_hists[MET_H_FETCH_TO_COMPLETE]);
}

/* MET_UPSTREAM_WAITS_KEY: upstream -> calls that waited for its rate limit. */
static void on_ups_waits(const struct rds_reply *reply, void *arg)
{
    struct api_thread *t = arg;
    struct sbuf *b = &t->metrics->next[8];
    if (reply && rds_reply_type(reply) == RDS_ARR) {
        struct sbuf lab;
        sbuf_init(&lab);
        met_text_header(b, "conveyor_upstream_rate_limit_waits_total", "counter",
                        "Calls that waited (slept or were deferred) for an outside system's "
                        "shared rate limit.");
        for (size_t i = 0; i + 1 < rds_reply_len(reply); i += 2) {
            sbuf_reset(&lab);
            met_text_label(&lab, "upstream", rds_reply_at_str(reply, i), 1);
            met_text_u64(b, "conveyor_upstream_rate_limit_waits_total", lab.p,
                         strtoull(rds_reply_at_str(reply, i + 1), NULL, 10));
        }
        sbuf_cleanup(&lab);
    }
    read_done(t);
}

/* cv:held:stats, written by the reconciler (worker/wrk_reconcile.c) */
static void on_held(const struct rds_reply *reply, void *arg)
{
    static const struct {
        const char *field, *name, *help;
    } gauges[] = {
        { "count", "conveyor_held_transactions",
          "Transactions debited with no recorded outcome and no job working on them." },
        { "amount", "conveyor_held_amount", "Money in those transactions." },
        { "oldest_s", "conveyor_held_oldest_seconds", "Age of the oldest of them." },
    };
    struct api_thread *t = arg;
    struct sbuf *b = &t->metrics->next[2];
    for (size_t g = 0; reply && rds_reply_type(reply) == RDS_ARR && g < 3; g++) {
        const char *v = rds_reply_hash_get(reply, gauges[g].field);
        char *end = NULL;
        double d = v ? strtod(v, &end) : 0;
        if (!v || end == v || *end)
            continue;              /* no reconciler has run yet: no figure */
        met_text_header(b, gauges[g].name, "gauge", gauges[g].help);
        sbuf_addf(b, "%s %.2f\n", gauges[g].name, d);
    }
    read_done(t);
}

/* The queues of every type (broker_queues: the same figures as GET
 * /v1/queues), one gauge family per figure. */
static void on_queues(void *arg, enum cv_rc rc, const struct queue_stat *q, size_t n)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } gauges[] = {
        { "conveyor_queue_depth", "Jobs published and not yet started, by type.",
          offsetof(struct queue_stat, depth) },
        { "conveyor_queue_running", "Jobs started and not yet settled, by type.",
          offsetof(struct queue_stat, pending) },
        { "conveyor_queue_delayed",
          "Jobs waiting for their not-before time or their retry's backoff, by type.",
          offsetof(struct queue_stat, scheduled) },
        { "conveyor_dead_jobs", "Jobs in the dead-letter set (dead or failed), by type.",
          offsetof(struct queue_stat, dead) },
        { "conveyor_queue_consumers", "Consumers of the type's queue.",
          offsetof(struct queue_stat, consumers) },
    };
    struct api_thread *t = arg;
    struct sbuf *b = &t->metrics->next[3];
    struct sbuf lab;
    sbuf_init(&lab);
    for (size_t g = 0; rc == CV_OK && g < sizeof(gauges) / sizeof(gauges[0]); g++) {
        met_text_header(b, gauges[g].name, "gauge", gauges[g].help);
        for (size_t i = 0; i < n; i++) {
            sbuf_reset(&lab);
            met_text_label(&lab, "type", q[i].type, 1);
            long long v = *(const long long *)((const char *)&q[i] + gauges[g].off);
            met_text_u64(b, gauges[g].name, lab.p, (unsigned long long)(v > 0 ? v : 0));
        }
    }
    if (rc == CV_OK) {
        met_text_header(b, "conveyor_queue_lag_seconds", "gauge",
                        "Age of the oldest unsettled job, by type (0 when none).");
        for (size_t i = 0; i < n; i++) {
            sbuf_reset(&lab);
            met_text_label(&lab, "type", q[i].type, 1);
            sbuf_addf(b, "conveyor_queue_lag_seconds{%s} %.3f\n", lab.p,
                      (double)(q[i].oldest_age_ms > 0 ? q[i].oldest_age_ms : 0) / 1000.0);
        }
    }
    sbuf_cleanup(&lab);
    read_done(t);
}

/* Workers that sent a heartbeat lately; busy = settled jobs since their
 * previous heartbeat. */
static void on_workers(void *arg, enum cv_rc rc, const struct worker_info *w, size_t n)
{
    struct api_thread *t = arg;
    struct sbuf *b = &t->metrics->next[4];
    if (rc == CV_OK) {
        unsigned long long busy = 0, conc = 0;
        for (size_t i = 0; i < n; i++) {
            busy += w[i].recent > 0;
            conc += w[i].concurrency > 0 ? (unsigned long long)w[i].concurrency : 0;
        }
        met_text_header(b, "conveyor_workers_live", "gauge",
                        "Worker processes whose heartbeat is recent.");
        met_text_u64(b, "conveyor_workers_live", NULL, n);
        met_text_header(b, "conveyor_workers_busy", "gauge",
                        "Live workers that settled jobs since their previous heartbeat.");
        met_text_u64(b, "conveyor_workers_busy", NULL, busy);
        met_text_header(b, "conveyor_workers_slots", "gauge",
                        "Job slots (--concurrency) of the live workers, summed.");
        met_text_u64(b, "conveyor_workers_slots", NULL, conc);
    }
    read_done(t);
}

/* Orders per state (orders.internal_state), every state of the table
 * present, 0 when none; nothing when PostgreSQL did not answer. */
static void on_orders(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct api_thread *t = arg;
    struct sbuf *b = &t->metrics->next[5];
    if (rc == CV_OK && res) {
        long long n[OSTATE_N] = { 0 };
        for (int i = 0; i < db_res_rows(res); i++) {
            int s = ostate_parse(db_res_get(res, i, 0));
            if (s >= 0)
                n[s] = atoll(db_res_get(res, i, 1));
        }
        struct sbuf lab;
        sbuf_init(&lab);
        met_text_header(b, "conveyor_orders", "gauge", "Orders by state.");
        for (int s = 0; s < OSTATE_N; s++) {
            sbuf_reset(&lab);
            met_text_label(&lab, "state", ostate_str((enum ostate)s), 1);
            met_text_u64(b, "conveyor_orders", lab.p, (unsigned long long)n[s]);
        }
        sbuf_cleanup(&lab);
    }
    read_done(t);
}

/* One upstream's last call or breaker, for /metrics. */
static void on_ups_metric(const struct rds_reply *reply, void *arg)
{
    struct api_ups_read *u = arg;
    struct api_thread *t = u->owner;
    struct api_metrics *m = t->metrics;
    struct sbuf lab;
    sbuf_init(&lab);
    met_text_label(&lab, "upstream", cfg_ups_name(u->id), 1);
    if (reply && rds_reply_type(reply) == RDS_ARR) {
        if (u->part == API_UPS_BREAKER) {
            int s = api_ups_circuit(reply, t->cfg->ups[u->id].breaker_open_ms);
            met_text_u64(&m->ups_br, "conveyor_upstream_breaker_state", lab.p,
                         s == UPS_BREAKER_OPEN ? 2 : s == UPS_BREAKER_HALF_OPEN ? 1 : 0);
        } else {
            const char *lat = rds_reply_hash_get(reply, "latency_ms");
            if (lat)
                sbuf_addf(&m->ups_lat, "conveyor_upstream_last_latency_seconds{%s} %.3f\n",
                          lab.p, atof(lat) / 1000.0);
        }
    }
    sbuf_cleanup(&lab);
    free(u);
    if (--m->ups_left > 0)
        return;
    struct sbuf *b = &m->next[6];
    met_text_header(b, "conveyor_upstream_breaker_state", "gauge",
                    "Circuit breaker of an outside system: 0 closed, 1 half-open, 2 open.");
    sbuf_add(b, m->ups_br.p ? m->ups_br.p : "", m->ups_br.len);
    met_text_header(b, "conveyor_upstream_last_latency_seconds", "gauge",
                    "Duration of the last call a worker made to the outside system.");
    sbuf_add(b, m->ups_lat.p ? m->ups_lat.p : "", m->ups_lat.len);
    read_done(t);
}

/* Part 6: the upstreams' hashes; done when the last answer is in, at once
 * when none is configured. */
static void read_upstreams(struct api_thread *t)
{
    struct api_metrics *m = t->metrics;
    sbuf_reset(&m->ups_br);
    sbuf_reset(&m->ups_lat);
    m->ups_left = 0;
    for (int i = 0; i < CFG_UPS_N; i++)
        m->ups_left += 2 * api_ups_configured(t->cfg, i);
    if (m->ups_left == 0)
        read_done(t);
    else
        api_ups_read_all(t, on_ups_metric, t, NULL);
}

void api_h_metrics(struct req *r)
{
    struct api_thread *t = r->t;
    struct api_metrics *m = t->metrics;
    int64_t now = clock_mono_ms();
    int fresh = m->fetched_ms && now - m->fetched_ms < t->cfg->metrics_cache_ms;
    met_inc(t->g->met, t->idx, t->g->m_scrape[!(fresh && !m->reads_left)]);
    if (t->closing || (fresh && !m->reads_left)) {
        metrics_finish(r);
        return;
    }
    if (m->nwaiting == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->waiting = xrealloc(m->waiting, m->cap * sizeof(*m->waiting));
    }
    api_req_hold(r);
    m->waiting[m->nwaiting++] = r;
    if (m->reads_left)
        return;                       /* a read is out: wait for it */
    /* either call may answer inline (link down): count both first */
    m->reads_left = METRICS_PARTS;
    broker_counters(t->broker, on_counters, t);
    const char *argv[] = { "HGETALL", met_hists[MET_H_ACTIVATION].key };
    rds_async_cmd(t->rds, on_hist, t, 2, argv, NULL);
    const char *fh[] = { "HGETALL", met_hists[MET_H_FETCH_TO_COMPLETE].key };
    rds_async_cmd(t->rds, on_f2c_hist, t, 2, fh, NULL);
    const char *held[] = { "HGETALL", "cv:held:stats" };
    rds_async_cmd(t->rds, on_held, t, 2, held, NULL);
    const char *uh[] = { "HGETALL", met_hists[MET_H_UPSTREAM].key };
    rds_async_cmd(t->rds, on_ups_hist, t, 2, uh, NULL);
    const char *uw[] = { "HGETALL", MET_UPSTREAM_WAITS_KEY };
    rds_async_cmd(t->rds, on_ups_waits, t, 2, uw, NULL);
    broker_queues(t->broker, on_queues, t);
    broker_workers(t->broker, WORKER_ALIVE_MS, on_workers, t);
    if (t->db)
        db_async_query(t->db, ostore_sql_counts, 0, NULL, on_orders, t);
    else
        read_done(t);
    read_upstreams(t);
}

/* ==== the registry (every counter and series, before the loops start) ===== */

struct met *api_metrics_registry(struct api_global *g, int nthreads)
{
    static const char *const type_label[] = { "type" };
    static const char *const status_label[] = { "status" };
    static const char *const act_status[API_ACT_N] = { "accepted", "rejected", "error" };
    struct met *m = met_new(nthreads);
    g->met = m;
    api_http_metrics_init(g);
    api_conn_metrics_init(g);
    int f = met_family(m, "conveyor_jobs_enqueued_total",
                       "Jobs this process published (duplicates not counted).", 1, type_label,
                       0);
    for (int i = 0; i < JT_N; i++) {
        const char *v[] = { jobtype_at(i)->name };
        g->m_enqueued[i] = met_series(m, f, v);
    }
    static const char *const source_label[] = { "source" };
    f = met_family(m, "conveyor_metrics_scrapes_total",
                   "Scrapes of /metrics by where their Redis part came from: the loop's cache, "
                   "or a read.",
                   1, source_label, 0);
    for (int i = 0; i < 2; i++) {
        const char *v[] = { i ? "redis" : "cache" };
        g->m_scrape[i] = met_series(m, f, v);
    }
    f = met_family(m, "activation_requests_total",
                   "Activation requests by outcome: accepted (202), rejected (4xx), error (5xx).",
                   1, status_label, 0);
    for (int i = 0; i < API_ACT_N; i++) {
        const char *v[] = { act_status[i] };
        g->m_act[i] = met_series(m, f, v);
    }
    met_freeze(m);
    return m;
}

int api_metrics_init(struct api_thread *t)
{
    t->metrics = xcalloc(1, sizeof(*t->metrics));
    for (int i = 0; i < METRICS_PARTS; i++) {
        sbuf_init(&t->metrics->part[i]);
        sbuf_init(&t->metrics->next[i]);
    }
    sbuf_init(&t->metrics->ups_br);
    sbuf_init(&t->metrics->ups_lat);
    return 0;
}

void api_metrics_free(struct api_thread *t)
{
    struct api_metrics *m = t->metrics;
    if (!m)
        return;
    /* the links are closed by now: no read is out, nobody waits */
    CV_ASSERT(m->reads_left == 0 && m->nwaiting == 0);
    for (int i = 0; i < METRICS_PARTS; i++) {
        sbuf_cleanup(&m->part[i]);
        sbuf_cleanup(&m->next[i]);
    }
    sbuf_cleanup(&m->ups_br);
    sbuf_cleanup(&m->ups_lat);
    free(m->waiting);
    free(m);
    t->metrics = NULL;
}

/* ==== /api/v1/health: readiness plus every upstream =========================== */

/* The workers note each upstream's last call in ups:{name}:last and keep its
 * circuit in ups:{name}:br (common/ups.c, ups_breaker.c); this reads both
 * for every configured upstream, pipelined, and answers once all are in. An
 * upstream is "reachable" when its last call got a complete answer (any
 * status: it answered), unknown when no worker has called it yet. */
static void v1_reply(struct req *r)
{
    struct sbuf *b = r->acc;
    sbuf_adds(b, "}");
    struct sbuf out;
    sbuf_init(&out);
    int ready = ready_fields(r->t, &out);
    sbuf_adds(&out, ",\"upstreams\":");
    sbuf_add(&out, b->p, b->len);
    sbuf_add(&out, "}", 1);
    api_reply_json(r, ready ? 200 : 503, &out);
    sbuf_cleanup(&out);
}

static void on_ups(const struct rds_reply *reply, void *arg)
{
    struct api_ups_read *p = arg;
    struct req *r = p->owner;
    struct sbuf *b = r->acc;
    const char *name = cfg_ups_name(p->id);
    if (p->part == API_UPS_LAST) {
        const char *cls = reply ? rds_reply_hash_get(reply, "class") : NULL;
        sbuf_adds(b, b->len > 1 ? "," : "");
        sbuf_add_json_str(b, name);
        sbuf_adds(b, ":{");
        if (!cls)
            sbuf_adds(b, "\"reachable\":null");
        else
            sbuf_addf(b, "\"reachable\":%s",
                      strcmp(cls, "not_sent") && strcmp(cls, "unknown") ? "true" : "false");
        const char *lat = rds_reply_hash_get(reply, "latency_ms");
        const char *st = rds_reply_hash_get(reply, "status");
        const char *at = rds_reply_hash_get(reply, "at_ms");
        const char *ok = rds_reply_hash_get(reply, "ok_at_ms");
        api_json_num_text(b, "last_latency_ms", lat, 0);   /* NULL: JSON null */
        api_json_num_text(b, "last_status", st, 0);
        api_json_str_or_null(b, "last_class", cls, 0);
        api_json_time(b, "last_call_at", at ? atoll(at) : 0, 0);
        api_json_time(b, "last_ok_at", ok ? atoll(ok) : 0, 0);
    } else {
        int s = api_ups_circuit(reply, r->t->cfg->ups[p->id].breaker_open_ms);
        const char *circuit = ups_breaker_state_str((enum ups_breaker_state)s);
        api_json_str(b, "circuit", reply ? circuit : "unknown", 0);
        sbuf_add(b, "}", 1);
    }
    free(p);
    if (--r->writes_left == 0)
        v1_reply(r);
    api_req_release(r);
}

void api_h_health_v1(struct req *r)
{
    r->acc = xcalloc(1, sizeof(*r->acc));
    sbuf_init(r->acc);
    sbuf_add(r->acc, "{", 1);
    if (!r->t->rds || r->t->closing) {
        v1_reply(r);
        return;
    }
    for (int i = 0; i < CFG_UPS_N; i++)
        r->writes_left += 2 * api_ups_configured(r->t->cfg, i);
    if (r->writes_left == 0) {
        v1_reply(r);
        return;
    }
    /* Redis answers in order: each upstream's "last" then its breaker */
    api_ups_read_all(r->t, on_ups, r, r);
}
