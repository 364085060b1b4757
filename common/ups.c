/* ups.c - the call pipeline (see ups.h): breaker, rate limit, credentials,
 * httpc, one 401 retry, breaker outcome, communication log. */
#include "ups_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "met.h"
#include "mem.h"
#include "rds.h"
#include "trc.h"
#include "uuid.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_RATE_SLEEP_MS 250
#define DEFAULT_OPEN_MS 30000
#define DEFAULT_MIN_CALLS 10
#define DEFAULT_WINDOW_S 60

void ups_status_key(const char *name, const char *suffix, char *buf, size_t len)
{
    snprintf(buf, len, "ups:{%s}:%s", name, suffix);
}

void ups_key(const struct ups *u, const char *suffix, char *buf, size_t len)
{
    ups_status_key(u->conf.name, suffix, buf, len);
}

void ups_conf_from_cfg(struct ups_conf *out, const struct cfg *c, int id)
{
    const struct cfg_upstream *g = &c->ups[id];
    memset(out, 0, sizeof(*out));
    out->name = cfg_ups_name(id);
    out->url = g->url;
    out->auth_user = g->auth_user;
    out->auth_secret = g->auth_secret;
    out->timeout_ms = g->timeout_ms;
    out->connect_timeout_ms = g->connect_timeout_ms;
    out->rate_per_min = g->rate_per_min;
    out->rate_burst = g->rate_burst;
    out->breaker_failures = g->breaker_failures;
    out->breaker_rate = g->breaker_rate;
    out->breaker_window_s = g->breaker_window_s;
    out->breaker_min_calls = g->breaker_min_calls;
    out->breaker_open_ms = g->breaker_open_ms;
}

struct ups *ups_new(const struct ups_conf *conf, const struct ups_auth *auth, void *auth_arg,
                    struct rds *rds, struct httpc *http, struct ups_log *log)
{
    struct ups *u = xcalloc(1, sizeof(*u));
    unsigned char rnd[16];
    u->conf = *conf;
    struct ups_conf *c = &u->conf;
    CV_ASSERT(c->name && c->name[0]);
    if (!c->url)
        c->url = "";
    if (c->timeout_ms <= 0)
        c->timeout_ms = DEFAULT_TIMEOUT_MS;
    if (c->connect_timeout_ms <= 0 || c->connect_timeout_ms > c->timeout_ms)
        c->connect_timeout_ms = c->timeout_ms;
    if (c->rate_burst <= 0)
        c->rate_burst = 1;
    if (c->rate_sleep_max_ms <= 0)
        c->rate_sleep_max_ms = DEFAULT_RATE_SLEEP_MS;
    if (c->breaker_open_ms <= 0)
        c->breaker_open_ms = DEFAULT_OPEN_MS;
    if (c->breaker_min_calls <= 0)
        c->breaker_min_calls = DEFAULT_MIN_CALLS;
    if (c->breaker_window_s <= 0)
        c->breaker_window_s = DEFAULT_WINDOW_S;
    u->auth = auth ? auth : &ups_auth_none;
    u->auth_arg = auth_arg;
    u->rds = rds;
    u->http = http;
    u->log = log;
    uuid_random_bytes(rnd, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(u->owner + 2 * i, 3, "%02x", rnd[i]);
    return u;
}

void ups_free(struct ups *u)
{
    free(u);
}

const struct ups_conf *ups_conf_of(const struct ups *u)
{
    return &u->conf;
}

struct rds *ups_rds(struct ups *u)
{
    return u->rds;
}

void ups_call_cleanup(struct ups_call *c)
{
    FREE_NULL(c->resp);
    c->resp_len = 0;
    FREE_NULL(c->auth_body);
}

static void log_request(struct ups *u, const struct httpc_req *r, const struct ups_call *c,
                        int64_t at_ms)
{
    if (!u->log)
        return;
    struct ups_log_row row = {
        .at_ms = at_ms,
        .upstream = u->conf.name,
        .method = r->method,
        .url = r->url,
        .status = r->status,
        .cls = httpc_class_str(r->cls),
        .duration_ms = r->timing.total_us / 1000,
        .attempt = c ? c->attempt : 0,
        .job_id = c ? c->job_id : NULL,
        .trace_id = c ? c->trace_id : NULL,
        .order_id = c ? c->order_id : NULL,
        .error = r->error,
    };
    ups_log_add(u->log, &row);
}

void ups_call_raw(struct ups *u, struct httpc_req *r)
{
    int64_t at = clock_wall_ms();
    if (r->timeout_ms <= 0)
        r->timeout_ms = u->conf.timeout_ms;
    if (r->connect_timeout_ms <= 0)
        r->connect_timeout_ms = u->conf.connect_timeout_ms;
    httpc_run(u->http, r, 1, u->conf.timeout_ms);
    log_request(u, r, NULL, at);
}

/* ---- pipeline steps ----------------------------------------------------- */

static void defer(struct ups_call *c, int64_t delay_ms, const char *why)
{
    c->outcome = UPS_DEFERRED;
    c->rc = CV_ERR_RATE;
    c->delay_ms = delay_ms > 0 ? delay_ms : 1;
    snprintf(c->error, sizeof(c->error), "%s: %s, retry in %lld ms", "deferred", why,
             (long long)c->delay_ms);
}

static void fail(struct ups_call *c, enum cv_rc rc, const char *why)
{
    c->outcome = UPS_FAILED;
    c->rc = rc;
    snprintf(c->error, sizeof(c->error), "%s", why);
}

static void reset_out(struct ups_call *c)
{
    c->outcome = UPS_DONE;
    c->cls = HTTPC_OK;
    c->rc = CV_OK;
    c->status = 0;
    c->retry_after_ms = 0;
    c->delay_ms = 0;
    c->duration_ms = 0;
    c->retried_auth = 0;
    c->resp = NULL;
    c->resp_len = 0;
    c->error[0] = '\0';
    c->auth_body = NULL;
}

static void attach(struct ups *u, struct ups_call *c, const char *token)
{
    c->auth_header[0] = '\0';
    c->basic_user = NULL;
    c->basic_pass = NULL;
    FREE_NULL(c->auth_body);
    u->auth->apply(u, u->auth_arg, c, token);
}

/* The httpc request of a call, with its credentials. hdrs has room for the
 * caller's headers + the auth line + NULL; url is the buffer for the full URL. */
static void build_req(struct ups *u, struct ups_call *c, struct httpc_req *r, const char **hdrs,
                      size_t nhdrs_max, char **url)
{
    size_t k = 0;
    memset(r, 0, sizeof(*r));
    if (!strncmp(c->path, "http://", 7) || !strncmp(c->path, "https://", 8))
        *url = xstrdup(c->path);
    else
        *url = xasprintf("%s%s", u->conf.url, c->path);
    if (c->headers) {
        for (const char *const *l = c->headers; *l && k + 2 < nhdrs_max; l++)
            hdrs[k++] = *l;
    }
    if (c->auth_header[0])
        hdrs[k++] = c->auth_header;
    hdrs[k] = NULL;
    r->method = c->method;
    r->url = *url;
    r->body = c->auth_body ? c->auth_body : c->body;
    r->body_len = c->auth_body ? strlen(c->auth_body) : c->body_len;
    r->content_type = c->content_type;
    r->headers = hdrs;
    r->basic_user = c->basic_user;
    r->basic_pass = c->basic_pass;
    r->timeout_ms = u->conf.timeout_ms;
    r->connect_timeout_ms = u->conf.connect_timeout_ms;
    r->idempotency_key = c->idempotency_key;
    r->traceparent = c->traceparent;
    r->body_check = c->body_check;
    r->body_check_arg = c->body_check_arg;
}

static size_t count_headers(const struct ups_call *c)
{
    size_t n = 0;
    if (c->headers) {
        while (c->headers[n])
            n++;
    }
    return n;
}

/* One call's answer into the call (its earlier response freed), and the log. */
static void wave_take(struct ups *u, struct ups_call *c, struct httpc_req *r, int64_t at)
{
    log_request(u, r, c, at);
    FREE_NULL(c->resp);
    c->outcome = UPS_DONE;
    c->cls = r->cls;
    c->rc = r->rc;
    c->status = r->status;
    c->retry_after_ms = r->retry_after_ms;
    c->delay_ms = r->cls == HTTPC_THROTTLED ? r->retry_after_ms : 0;
    c->duration_ms = r->timing.total_us / 1000;
    c->resp = r->resp;
    c->resp_len = r->resp_len;
    r->resp = NULL;
    snprintf(c->error, sizeof(c->error), "%s", r->error);
}

/* A wave: calls of one or several upstreams sent at once on one httpc. */
struct wave {
    struct httpc_req *reqs;
    const char ***hdrs;
    char **urls;
    struct ups **ups;
    struct ups_call **calls;
    size_t m, cap;
};

static void wave_add(struct wave *w, struct ups *u, struct ups_call *c)
{
    if (w->m == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 16;
        w->reqs = xrealloc(w->reqs, w->cap * sizeof(*w->reqs));
        w->hdrs = xrealloc(w->hdrs, w->cap * sizeof(*w->hdrs));
        w->urls = xrealloc(w->urls, w->cap * sizeof(*w->urls));
        w->ups = xrealloc(w->ups, w->cap * sizeof(*w->ups));
        w->calls = xrealloc(w->calls, w->cap * sizeof(*w->calls));
    }
    size_t k = w->m++, nh = count_headers(c) + 2;
    memset(&w->reqs[k], 0, sizeof(w->reqs[k]));
    w->hdrs[k] = xcalloc(nh, sizeof(**w->hdrs));
    w->ups[k] = u;
    w->calls[k] = c;
    build_req(u, c, &w->reqs[k], w->hdrs[k], nh, &w->urls[k]);
}

/* The last check before anything leaves: a call whose send_by_ms has passed
 * is taken out of the wave and DEFERRED, unsent. It is made here, after the
 * breaker, the rate limit's sleep and the credentials, right before httpc
 * writes, so that only microseconds separate it from the send. */
static void drop_late(struct wave *w)
{
    int64_t now = clock_mono_ms();
    size_t kept = 0;
    for (size_t k = 0; k < w->m; k++) {
        struct ups_call *c = w->calls[k];
        if (c->send_by_ms > 0 && now > c->send_by_ms) {
            LOG_WARN("ups.lease_spent", "upstream=%s job_id=%s late_ms=%lld",
                     w->ups[k]->conf.name, c->job_id ? c->job_id : "",
                     (long long)(now - c->send_by_ms));
            defer(c, 1, "the delivery's lease is spent, a newer one may own the job");
            free(w->hdrs[k]);
            free(w->urls[k]);
            continue;
        }
        w->reqs[kept] = w->reqs[k];
        w->hdrs[kept] = w->hdrs[k];
        w->urls[kept] = w->urls[k];
        w->ups[kept] = w->ups[k];
        w->calls[kept] = w->calls[k];
        kept++;
    }
    w->m = kept;
}

/* Send the wave (every request has its own upstream's timeouts), take the
 * answers, empty it. */
static void wave_send(struct wave *w)
{
    drop_late(w);
    if (w->m == 0)
        return;
    /* one span per call when the ups module is traced (trc.h) */
    struct trc_span *sp = trc_on(TRC_UPS) ? xcalloc(w->m, sizeof(*sp)) : NULL;
    for (size_t k = 0; sp && k < w->m; k++) {
        char fn[64];
        snprintf(fn, sizeof(fn), "%s %s", w->ups[k]->conf.name, w->reqs[k].method);
        const struct ups_call *c = w->calls[k];
        trc_enter(&sp[k], TRC_UPS, fn, c->job_id,
                  c->traceparent && *c->traceparent ? c->traceparent : c->trace_id);
    }
    int64_t at = clock_wall_ms();
    httpc_run(w->ups[0]->http, w->reqs, w->m, w->ups[0]->conf.timeout_ms);
    for (size_t k = 0; k < w->m; k++) {
        if (sp) {
            char st[48];
            snprintf(st, sizeof(st), "%s %d", httpc_class_str(w->reqs[k].cls),
                     w->reqs[k].status);
            trc_exit(&sp[k], w->reqs[k].cls == HTTPC_OK ? NULL : st);
        }
        wave_take(w->ups[k], w->calls[k], &w->reqs[k], at);
        free(w->hdrs[k]);
        free(w->urls[k]);
    }
    free(sp);
    w->m = 0;
}

static void wave_free(struct wave *w)
{
    free(w->reqs);
    free(w->hdrs);
    free(w->urls);
    free(w->ups);
    free(w->calls);
}

/* Send calls[idx[0..m)] at once. */
static void send_wave(struct ups *u, struct ups_call *calls, const size_t *idx, size_t m)
{
    struct wave w = { 0 };
    for (size_t k = 0; k < m; k++)
        wave_add(&w, u, &calls[idx[k]]);
    wave_send(&w);
    wave_free(&w);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (ms > 0 && nanosleep(&ts, &ts) != 0) {
    }
}

/* Step 1: the breaker, once for the batch. Returns the index of the probe call
 * (or (size_t)-1); defers what may not go. */
static size_t check_breaker(struct ups *u, struct ups_call *calls, size_t n, int *go)
{
    int probe = 0;
    int64_t wait_ms = 0;
    if (u->conf.breaker_failures <= 0 && u->conf.breaker_rate <= 0) {
        for (size_t i = 0; i < n; i++)
            go[i] = 1;
        return (size_t)-1;
    }
    enum cv_rc rc = ups_breaker_allow(u, &probe, &wait_ms);
    for (size_t i = 0; i < n; i++) {
        if (rc == CV_ERR_RATE)
            defer(&calls[i], wait_ms, "circuit open");
        else if (probe && i > 0)
            defer(&calls[i], u->conf.timeout_ms, "circuit half-open, probe in flight");
        else
            go[i] = 1;
    }
    return probe ? 0 : (size_t)-1;
}

/* Step 2: a rate slot per call that may go; wait_at[i] = ms from now. The
 * calls that had to wait (a sleep or a deferral) are counted in the hash
 * MET_UPSTREAM_WAITS_KEY under the upstream's name, once per batch. */
static void take_rate(struct ups *u, struct ups_call *calls, size_t n, int *go, int64_t *wait_at)
{
    if (u->conf.rate_per_min <= 0)
        return;
    long long waited = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t w = 0;
        if (!go[i])
            continue;
        int got = ups_rate_take(u, u->conf.rate_sleep_max_ms, &w);
        if (got == 0) {
            go[i] = 0;
            defer(&calls[i], w, "rate limit");
            waited++;
        } else if (got == 1) {
            wait_at[i] = w;
            waited += w > 0;
        }
    }
    if (waited > 0)
        rds_reply_free(rds_cmdf(u->rds, "HINCRBY %s %s %lld", MET_UPSTREAM_WAITS_KEY,
                                u->conf.name, waited));
}

/* Steps 3-4: credentials, then send in waves ordered by rate wait. Returns the
 * token used (malloc'd) or NULL. */
static void send_all(struct ups *u, struct ups_call *calls, size_t n, int *go,
                     const int64_t *wait_at, const char *token, int *sent)
{
    size_t *idx = xmalloc(sizeof(*idx) * (n ? n : 1));
    int64_t t0 = clock_mono_ms();
    for (;;) {
        int64_t next = -1;
        for (size_t i = 0; i < n; i++) {
            if (go[i] && !sent[i] && (next < 0 || wait_at[i] < next))
                next = wait_at[i];
        }
        if (next < 0)
            break;
        int64_t now = clock_mono_ms() - t0;
        if (next > now)
            sleep_ms(next - now); /* a reserved rate slot, bounded by rate_sleep_max_ms */
        now = clock_mono_ms() - t0;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (go[i] && !sent[i] && wait_at[i] <= now) {
                attach(u, &calls[i], token);
                idx[m++] = i;
                sent[i] = 1;
            }
        }
        send_wave(u, calls, idx, m);
    }
    free(idx);
}

/* Step 4b: a 401 drops the token, one refresh (single-flight), one more try. */
static void retry_auth(struct ups *u, struct ups_call *calls, size_t n, const int *go,
                       const char *token)
{
    size_t *idx = xmalloc(sizeof(*idx) * (n ? n : 1));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (go[i] && calls[i].outcome == UPS_DONE && calls[i].cls == HTTPC_AUTH)
            idx[m++] = i;
    }
    char *fresh = NULL;
    char err[128];
    if (m > 0) {
        ups_token_drop(u, token);
        enum cv_rc rc = ups_token_get(u, &fresh, err, sizeof(err));
        if (rc != CV_OK) {
            m = 0; /* keep the 401s as they are */
            LOG_WARN("ups.token_refresh_failed", "upstream=%s rc=%s", u->conf.name,
                     cv_rc_str(rc));
        }
    }
    for (size_t k = 0; k < m; k++) {
        attach(u, &calls[idx[k]], fresh);
        calls[idx[k]].retried_auth = 1;
    }
    if (m > 0)
        send_wave(u, calls, idx, m);
    free(fresh);
    free(idx);
}

/* What /api/v1/health and /v1/upstreams show of this upstream: the last call
 * of the batch that was made (when, how long, what came back) and the last
 * success, in the hash ups:{name}:last; and every call's duration in the
 * histogram met_hists[MET_H_UPSTREAM] (met.h: the upstream's name as the
 * label). One pipelined write per batch: an HINCRBY per bucket the batch
 * touched, one HINCRBYFLOAT for the sum, one HSET. */
struct seen {
    struct met_obs obs;
    int any, ok;
    int status;                  /* of the batch's last call */
    enum httpc_class cls;
    int64_t duration_ms;
};

static void seen_add(struct seen *s, enum httpc_class cls, int status, int64_t duration_ms)
{
    s->any = 1;
    s->ok |= cls == HTTPC_OK;
    s->status = status;
    s->cls = cls;
    s->duration_ms = duration_ms;
    met_obs_add(&s->obs, &met_hists[MET_H_UPSTREAM], (double)duration_ms / 1000.0);
}

static void note(struct ups *u, const struct seen *s)
{
    if (!s->any)
        return;
    int sent;
    met_obs_append(u->rds, &met_hists[MET_H_UPSTREAM], u->conf.name, &s->obs, &sent);
    for (int i = 0; i < sent; i++)
        rds_reply_free(rds_read(u->rds));
    char key[96], at[24], lat[24], st[16];
    ups_key(u, "last", key, sizeof(key));
    snprintf(at, sizeof(at), "%lld", (long long)clock_wall_ms());
    snprintf(lat, sizeof(lat), "%lld", (long long)s->duration_ms);
    snprintf(st, sizeof(st), "%d", s->status);
    const char *argv[] = { "HSET", key, "at_ms", at, "latency_ms", lat, "status", st, "class",
                           httpc_class_str(s->cls), "ok_at_ms", at };
    struct rds_reply *r = rds_cmd(u->rds, s->ok ? 12 : 10, argv, NULL);
    rds_reply_free(r);
}

static void note_last(struct ups *u, const struct ups_call *calls, size_t n, const int *go)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    for (size_t i = 0; i < n; i++)
        if (go[i] && calls[i].outcome == UPS_DONE)
            seen_add(&s, calls[i].cls, calls[i].status, calls[i].duration_ms);
    note(u, &s);
}

void ups_observe(struct ups *u, const struct httpc_req *reqs, size_t n)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    for (size_t i = 0; i < n; i++)
        seen_add(&s, reqs[i].cls, reqs[i].status, reqs[i].timing.total_us / 1000);
    note(u, &s);
}

/* One group's part of a run: steps 1-3 before the send, the rest after. */
struct grp {
    struct ups *u;
    struct ups_call *calls;
    size_t n;
    int *go, *sent;
    int64_t *wait_at;
    char *token;
    size_t probe;
};

static void grp_begin(struct grp *g)
{
    struct ups *u = g->u;
    size_t n = g->n;
    g->go = xcalloc(n ? n : 1, sizeof(*g->go));
    g->sent = xcalloc(n ? n : 1, sizeof(*g->sent));
    g->wait_at = xcalloc(n ? n : 1, sizeof(*g->wait_at));
    g->token = NULL;
    for (size_t i = 0; i < n; i++)
        reset_out(&g->calls[i]);
    g->probe = check_breaker(u, g->calls, n, g->go);
    take_rate(u, g->calls, n, g->go, g->wait_at);
    if (u->auth->fetch_token) {
        int any = 0;
        for (size_t i = 0; i < n; i++)
            any |= g->go[i];
        char err[128] = "";
        enum cv_rc rc = any ? ups_token_get(u, &g->token, err, sizeof(err)) : CV_OK;
        if (rc != CV_OK) {
            for (size_t i = 0; i < n; i++) {
                if (g->go[i]) {
                    fail(&g->calls[i], rc, err[0] ? err : "no credentials");
                    g->go[i] = 0;
                }
            }
            if (g->probe != (size_t)-1) /* give the probe back: nothing was learnt */
                ups_breaker_record(u, HTTPC_THROTTLED, 1);
            g->probe = (size_t)-1;
        }
    }
}

static void grp_end(struct grp *g)
{
    struct ups *u = g->u;
    send_all(u, g->calls, g->n, g->go, g->wait_at, g->token, g->sent);
    if (u->auth->fetch_token)
        retry_auth(u, g->calls, g->n, g->go, g->token);
    if (u->conf.breaker_failures > 0 || u->conf.breaker_rate > 0) {
        for (size_t i = 0; i < g->n; i++) {
            if (g->go[i] && g->calls[i].outcome == UPS_DONE)
                ups_breaker_record(u, g->calls[i].cls, i == g->probe);
        }
        /* a probe kept back by its send_by_ms: give it back, nothing was learnt */
        if (g->probe != (size_t)-1 && g->calls[g->probe].outcome == UPS_DEFERRED)
            ups_breaker_record(u, HTTPC_THROTTLED, 1);
    }
    note_last(u, g->calls, g->n, g->go);
    free(g->token);
    free(g->go);
    free(g->sent);
    free(g->wait_at);
}

void ups_run_groups(const struct ups_group *groups, size_t ng)
{
    struct grp *g = xcalloc(ng ? ng : 1, sizeof(*g));
    struct wave w = { 0 };
    for (size_t k = 0; k < ng; k++) {
        g[k].u = groups[k].u;
        g[k].calls = groups[k].calls;
        g[k].n = groups[k].n;
        grp_begin(&g[k]);
    }
    /* Every call that may go now, of every group, in one wave: the calls to
     * different systems overlap instead of waiting for each other. Calls
     * with a rate wait follow in their group's own waves. */
    for (size_t k = 0; k < ng; k++) {
        CV_ASSERT(g[k].u->http == g[0].u->http);
        for (size_t i = 0; i < g[k].n; i++) {
            if (g[k].go[i] && g[k].wait_at[i] == 0) {
                attach(g[k].u, &g[k].calls[i], g[k].token);
                wave_add(&w, g[k].u, &g[k].calls[i]);
                g[k].sent[i] = 1;
            }
        }
    }
    wave_send(&w);
    wave_free(&w);
    for (size_t k = 0; k < ng; k++)
        grp_end(&g[k]);
    free(g);
}

void ups_run(struct ups *u, struct ups_call *calls, size_t n)
{
    struct ups_group one = { u, calls, n };
    ups_run_groups(&one, 1);
}
