/* api_health.c - /health, /ready (and the seed's /api/v1/health), /metrics.
 *
 * All three are open (no key): load balancers and Prometheus call them.
 * /health does no I/O. /ready reports whether this loop's Redis and
 * PostgreSQL links are up, from state the links keep, without a round trip.
 * /metrics renders this process's counters and two things every process
 * shares through Redis: the per-type job counters (broker_counters) and the
 * activation histogram the workers write. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "broker.h"
#include "db.h"
#include "mem.h"
#include "met.h"
#include "rds.h"

void api_h_health(struct req *r)
{
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"status\":\"ok\"}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
}

/* Links are NULL only while the loop is torn down. */
static int redis_up(const struct api_thread *t)
{
    return t->broker && broker_ready(t->broker);
}

void api_h_ready(struct req *r)
{
    int redis = redis_up(r->t);
    int pg = r->t->db && db_async_connected(r->t->db);
    struct sbuf b;
    sbuf_init(&b);
    sbuf_add(&b, "{", 1);
    api_json_str(&b, "status", redis && pg ? "ready" : "not_ready", 1);
    api_json_str(&b, "redis", redis ? "up" : "down", 0);
    api_json_str(&b, "postgres", pg ? "up" : "down", 0);
    sbuf_add(&b, "}", 1);
    api_reply_json(r, redis && pg ? 200 : 503, &b);
    sbuf_cleanup(&b);
}

/* ==== /metrics ============================================================ */

static void metrics_finish(struct req *r)
{
    struct api_thread *t = r->t;
    struct sbuf b;
    sbuf_init(&b);
    met_render(t->g->met, &b);
    met_text_header(&b, "conveyor_api_redis_up", "gauge",
                    "1 when this process's Redis link is up.");
    met_text_u64(&b, "conveyor_api_redis_up", NULL, redis_up(t));
    met_text_header(&b, "conveyor_api_postgres_up", "gauge",
                    "1 when this process's PostgreSQL link is up.");
    met_text_u64(&b, "conveyor_api_postgres_up", NULL, t->db && db_async_connected(t->db));
    sbuf_add(&b, r->part[0].p ? r->part[0].p : "", r->part[0].len);
    sbuf_add(&b, r->part[1].p ? r->part[1].p : "", r->part[1].len);
    api_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    sbuf_cleanup(&b);
}

static void on_counters(void *arg, enum cv_rc rc, const struct type_counters *c, size_t n)
{
    struct req *r = arg;
    if (rc == CV_OK) {
        struct sbuf *b = &r->part[0];
        struct sbuf lab;
        sbuf_init(&lab);
        met_text_header(b, "conveyor_jobs_total", "counter",
                        "Jobs by type and outcome, counted by every producer and worker.");
        for (size_t i = 0; i < n; i++) {
            static const char *const outcomes[] = { "enqueued", "succeeded", "failed",
                                                    "retried", "dead" };
            const long long v[] = { c[i].enqueued, c[i].succeeded, c[i].failed, c[i].retried,
                                    c[i].dead };
            for (int k = 0; k < 5; k++) {
                sbuf_reset(&lab);
                met_text_label(&lab, "type", c[i].type, 1);
                met_text_label(&lab, "outcome", outcomes[k], 0);
                met_text_u64(b, "conveyor_jobs_total", lab.p,
                              (unsigned long long)(v[k] > 0 ? v[k] : 0));
            }
        }
        sbuf_cleanup(&lab);
    }
    if (--r->writes_left == 0)
        metrics_finish(r);
    api_req_release(r);
}

static void on_hist(const struct rds_reply *reply, void *arg)
{
    struct req *r = arg;
    if (reply && rds_reply_type(reply) == RDS_ARR) {
        size_t n = rds_reply_len(reply) / 2;
        const char **f = n ? xcalloc(n, sizeof(*f)) : NULL;
        const char **v = n ? xcalloc(n, sizeof(*v)) : NULL;
        for (size_t i = 0; i < n; i++) {
            f[i] = rds_reply_at_str(reply, 2 * i);
            v[i] = rds_reply_at_str(reply, 2 * i + 1);
        }
        met_hist_render(&r->part[1], MET_ACTIVATION_HIST_NAME,
                        "Time spent processing activations, by final status.", "status", f, v,
                        n);
        free(f);
        free(v);
    }
    if (--r->writes_left == 0)
        metrics_finish(r);
    api_req_release(r);
}

void api_h_metrics(struct req *r)
{
    if (r->t->closing) {
        metrics_finish(r);
        return;
    }
    /* the dispatcher's reference keeps r alive until this returns, even if
     * a callback runs inline */
    r->writes_left = 2;
    api_req_hold(r);
    broker_counters(r->t->broker, on_counters, r);
    const char *argv[] = { "HGETALL", MET_ACTIVATION_HIST_KEY };
    api_req_hold(r);
    rds_async_cmd(r->t->rds, on_hist, r, 2, argv, NULL);
}
