/* api_upstreams.c - what the API reads of the upstreams (the outside systems the
 * workers call): GET /v1/upstreams, and the readers that /metrics and /api/v1/health
 * (api_health.c) share with it.
 *
 * The workers keep every figure in Redis (common/ups.c, ups_breaker.c), {name} being the
 * upstream's name:
 *   ups:{name}:last            the last call of the last batch: at_ms, latency_ms, status,
 *                              class, and ok_at_ms when one of its calls succeeded
 *   ups:{name}:br              the circuit breaker: state, opened_at
 *   met_hists[MET_H_UPSTREAM]  call durations, one hash: "<name>:<bound>" non-cumulative
 *                              counts, "<name>:+Inf", "<name>:sum" (common/met.h)
 *   MET_UPSTREAM_WAITS_KEY     name -> calls that waited for the shared rate limit
 *
 * GET /v1/upstreams reads them all in one pipeline on the loop's Redis link: two HGETALLs
 * (the histogram, the waits) plus two per configured upstream. Every answer is a callback
 * on the loop, so nothing blocks; each copies what it needs into one struct ups_view, and
 * the last one renders the reply. The latency quantiles are estimated from the histogram's
 * buckets by met_hist_quantile(): linear interpolation inside the bucket that holds the
 * rank, as Prometheus' histogram_quantile() does, so the page and a Grafana panel over
 * conveyor_upstream_request_duration_seconds agree. A rank above the last bound reads as
 * that bound (10 s): "at least".
 *
 * One failed read (Redis down, a timeout, a reply that is not a hash) makes the whole
 * answer a 503: a table with the figures of half the hashes would show a busy upstream as
 * idle. No cache: an operator's read, a few small hashes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "clock.h"
#include "mem.h"
#include "met.h"
#include "rds.h"
#include "ups.h"

/* ==== the readers /metrics and /api/v1/health share ======================== */

int api_ups_configured(const struct cfg *c, int id)
{
    return c->ups[id].url && c->ups[id].url[0];
}

/* As ups_breaker.c's state script reads the hash, on this host's clock: a view,
 * not a decision (the workers decide on Redis's clock). */
int api_ups_circuit(const struct rds_reply *br, int open_ms)
{
    const char *state = br ? rds_reply_hash_get(br, "state") : NULL;
    const char *opened = br ? rds_reply_hash_get(br, "opened_at") : NULL;
    if (!state || strcmp(state, "open") != 0)
        return UPS_BREAKER_CLOSED;
    return opened && clock_wall_ms() >= atoll(opened) + open_ms ? UPS_BREAKER_HALF_OPEN
                                                                 : UPS_BREAKER_OPEN;
}

int api_ups_read_all(struct api_thread *t, api_ups_cb cb, void *owner, struct req *hold)
{
    int n = 0;
    for (int i = 0; i < CFG_UPS_N; i++) {
        if (!api_ups_configured(t->cfg, i))
            continue;
        for (int part = API_UPS_LAST; part <= API_UPS_BREAKER; part++) {
            struct api_ups_read *u = xcalloc(1, sizeof(*u));
            char key[96];
            u->owner = owner;
            u->id = i;
            u->part = part;
            ups_status_key(cfg_ups_name(i), part == API_UPS_BREAKER ? "br" : "last", key,
                           sizeof(key));
            const char *argv[] = { "HGETALL", key };
            if (hold)
                api_req_hold(hold);
            rds_async_cmd(t->rds, cb, u, 2, argv, NULL);
            n++;
        }
    }
    return n;
}

/* ==== GET /v1/upstreams ===================================================== */

static const struct {
    const char *name;
    double q;
} quantiles[] = { { "p50", 0.50 }, { "p95", 0.95 }, { "p99", 0.99 } };

/* One upstream's two hashes, copied out of their replies (which live only during
 * their callback). */
struct ups_row {
    long long at_ms;               /* its last call; 0 = no call recorded yet */
    long long ok_at_ms;            /* its last success; 0 = none */
    long long latency_ms;
    int status;                    /* HTTP status; 0 = no response (not sent, timeout) */
    char cls[24];                  /* httpc_class_str */
    int circuit;                   /* enum ups_breaker_state */
};

/* One GET /v1/upstreams while its reads are out. Freed by the last callback, after
 * the reply; every read also holds r. */
struct ups_view {
    struct req *r;
    int left;                      /* reads not answered yet */
    int failed;                    /* one answered NULL or not a hash */
    struct ups_row row[CFG_UPS_N];
    struct met_hist_series hist[MET_HIST_MAX_SERIES];
    int nhist;
    long long waits[CFG_UPS_N];
};

static int is_hash(const struct rds_reply *reply)
{
    return reply && rds_reply_type(reply) == RDS_ARR && rds_reply_len(reply) % 2 == 0;
}

static long long field_ll(const struct rds_reply *reply, const char *field)
{
    const char *v = rds_reply_hash_get(reply, field);
    return v ? atoll(v) : 0;
}

static void time_or_null(struct sbuf *b, const char *key, long long ms)
{
    if (!api_json_time(b, key, ms, 0)) {
        sbuf_add(b, ",", 1);
        sbuf_add_json_str(b, key);
        sbuf_adds(b, ":null");
    }
}

static void render_one(struct sbuf *b, const struct ups_view *v, int id, int first)
{
    const struct met_hist *h = &met_hists[MET_H_UPSTREAM];
    const struct ups_row *u = &v->row[id];
    const char *name = cfg_ups_name(id);
    sbuf_adds(b, first ? "{" : ",{");
    api_json_str(b, "name", name, 1);
    api_json_str(b, "circuit", ups_breaker_state_str((enum ups_breaker_state)u->circuit), 0);
    if (u->at_ms > 0) {
        sbuf_adds(b, ",\"last_call\":{");
        api_json_time(b, "at", u->at_ms, 1);
        api_json_i64(b, "latency_ms", u->latency_ms, 0);
        if (u->status > 0)
            api_json_i64(b, "status", u->status, 0);
        else
            sbuf_adds(b, ",\"status\":null");
        api_json_str_or_null(b, "class", u->cls[0] ? u->cls : NULL, 0);
        sbuf_adds(b, "}");
    } else {
        sbuf_adds(b, ",\"last_call\":null");
    }
    time_or_null(b, "last_ok_at", u->ok_at_ms);
    const struct met_hist_series *s = NULL;
    for (int k = 0; k < v->nhist && !s; k++)
        if (strcmp(v->hist[k].prefix, name) == 0)
            s = &v->hist[k];
    unsigned long long calls = s ? met_hist_count(h, s) : 0;
    sbuf_addf(b, ",\"calls\":%llu,\"latency_ms\":", calls);
    if (calls == 0) {
        sbuf_adds(b, "null");
    } else {
        for (size_t q = 0; q < sizeof(quantiles) / sizeof(quantiles[0]); q++)
            sbuf_addf(b, "%s\"%s\":%.1f", q ? "," : "{", quantiles[q].name,
                      met_hist_quantile(h, s->bucket, quantiles[q].q) * 1000.0);
        sbuf_adds(b, "}");
    }
    api_json_i64(b, "rate_limit_waits", v->waits[id], 0);
    sbuf_adds(b, "}");
}

/* {"upstreams":[...],"latency_bounds_ms":[...]}: the configured upstreams in the
 * configuration's order, and the histogram's bounds (a quantile equal to the last one
 * means "at least that"). */
static void reply_view(struct ups_view *v)
{
    struct req *r = v->r;
    if (v->failed) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "Redis did not answer; retry", NULL);
        return;
    }
    const struct met_hist *h = &met_hists[MET_H_UPSTREAM];
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"upstreams\":[");
    int n = 0;
    for (int i = 0; i < CFG_UPS_N; i++)
        if (api_ups_configured(r->t->cfg, i))
            render_one(&b, v, i, n++ == 0);
    sbuf_adds(&b, "],\"latency_bounds_ms\":[");
    for (int i = 0; i < h->nbounds; i++)
        sbuf_addf(&b, "%s%g", i ? "," : "", h->bounds[i] * 1000.0);
    sbuf_adds(&b, "]}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
}

/* A read is in: the last one replies and frees v; then this read's hold on r goes. */
static void read_in(struct ups_view *v)
{
    struct req *r = v->r;
    if (--v->left == 0) {
        reply_view(v);
        free(v);
    }
    api_req_release(r);
}

static void on_hist(const struct rds_reply *reply, void *arg)
{
    struct ups_view *v = arg;
    if (!is_hash(reply)) {
        v->failed = 1;
    } else {
        const char **f, **val;
        size_t n;
        rds_reply_hash_pairs(reply, &f, &val, &n);
        v->nhist = met_hist_parse(&met_hists[MET_H_UPSTREAM], f, val, n, v->hist,
                                  MET_HIST_MAX_SERIES);
        free(f);
        free(val);
    }
    read_in(v);
}

static void on_waits(const struct rds_reply *reply, void *arg)
{
    struct ups_view *v = arg;
    if (!is_hash(reply)) {
        v->failed = 1;
    } else {
        for (size_t i = 0; i + 1 < rds_reply_len(reply); i += 2) {
            const char *name = rds_reply_at_str(reply, i);
            int id = name ? cfg_ups_find(name) : -1;
            const char *n = rds_reply_at_str(reply, i + 1);
            if (id >= 0 && n)
                v->waits[id] = atoll(n);
        }
    }
    read_in(v);
}

static void on_row(const struct rds_reply *reply, void *arg)
{
    struct api_ups_read *u = arg;
    struct ups_view *v = u->owner;
    struct ups_row *row = &v->row[u->id];
    if (!is_hash(reply)) {
        v->failed = 1;
    } else if (u->part == API_UPS_BREAKER) {
        row->circuit = api_ups_circuit(reply, v->r->t->cfg->ups[u->id].breaker_open_ms);
    } else {
        row->at_ms = field_ll(reply, "at_ms");
        row->ok_at_ms = field_ll(reply, "ok_at_ms");
        row->latency_ms = field_ll(reply, "latency_ms");
        row->status = (int)field_ll(reply, "status");
        const char *cls = rds_reply_hash_get(reply, "class");
        snprintf(row->cls, sizeof(row->cls), "%s", cls ? cls : "");
    }
    free(u);
    read_in(v);
}

void api_h_upstreams(struct req *r)
{
    struct api_thread *t = r->t;
    if (!t->rds || t->closing || !rds_async_connected(t->rds)) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "Redis cannot be reached; retry", NULL);
        return;
    }
    struct ups_view *v = xcalloc(1, sizeof(*v));
    v->r = r;
    /* every read is counted before the first goes out: a link that fails answers
     * inline, and v must outlive all but the last of those answers */
    v->left = 2;
    for (int i = 0; i < CFG_UPS_N; i++)
        v->left += 2 * api_ups_configured(t->cfg, i);
    const char *hist[] = { "HGETALL", met_hists[MET_H_UPSTREAM].key };
    const char *waits[] = { "HGETALL", MET_UPSTREAM_WAITS_KEY };
    api_req_hold(r);
    rds_async_cmd(t->rds, on_hist, v, 2, hist, NULL);
    api_req_hold(r);
    rds_async_cmd(t->rds, on_waits, v, 2, waits, NULL);
    /* v may be gone once this returns: the last answer frees it */
    api_ups_read_all(t, on_row, v, r);
}
