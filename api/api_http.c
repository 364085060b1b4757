/* api_http.c - requests: routing, scopes, replies, and the evhttp plumbing.
 *
 * Banners, low level first: JSON helpers, the routing table (with each
 * route's scope), metrics, replies, dispatch, per-loop setup. What happens on
 * a connection before a request exists (framing, deadlines, the cap, evhttp's
 * own error pages) is api_conn.c's. */
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"

#include <ctype.h>
#include "auth.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "met.h"

/* ==== JSON helpers ======================================================== */

static void key(struct sbuf *b, const char *k, int first)
{
    if (!first)
        sbuf_add(b, ",", 1);
    sbuf_add_json_str(b, k);
    sbuf_add(b, ":", 1);
}

void api_json_str(struct sbuf *b, const char *k, const char *v, int first)
{
    key(b, k, first);
    sbuf_add_json_str(b, v);
}

void api_json_i64(struct sbuf *b, const char *k, long long v, int first)
{
    key(b, k, first);
    sbuf_addf(b, "%lld", v);
}

int api_json_time(struct sbuf *b, const char *k, int64_t ms, int first)
{
    char ts[CLOCK_RFC3339_LEN];
    if (ms <= 0)
        return 0;
    key(b, k, first);
    sbuf_add_json_str(b, clock_rfc3339(ms, ts));
    return 1;
}

static int is_integer_text(const char *v)
{
    const char *p = v;
    if (*p == '-')
        p++;
    if (!*p || strlen(p) > 18)
        return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

void api_json_num_text(struct sbuf *b, const char *k, const char *v, int first)
{
    key(b, k, first);
    if (!v)
        sbuf_adds(b, "null");
    else if (is_integer_text(v))
        sbuf_adds(b, v);
    else
        sbuf_add_json_str(b, v);
}

void api_json_str_or_null(struct sbuf *b, const char *k, const char *v, int first)
{
    key(b, k, first);
    if (v)
        sbuf_add_json_str(b, v);
    else
        sbuf_adds(b, "null");
}

/* ==== the routing table ==================================================== */

static const struct api_route routes[] = {
    { EVHTTP_REQ_GET, "/health", API_AUTH_NONE, api_h_health, "GET /health", 0 },
    { EVHTTP_REQ_GET, "/ready", API_AUTH_NONE, api_h_ready, "GET /ready", 0 },
    { EVHTTP_REQ_GET, "/metrics", API_AUTH_NONE, api_h_metrics, "GET /metrics", 0 },
    { EVHTTP_REQ_GET, "/api/v1/health", API_AUTH_NONE, api_h_health_v1, "GET /api/v1/health",
      0 },
    /* seed 004: the orchestrator and its read side (the orders scope) */
    { EVHTTP_REQ_POST, "/api/v1/orchestrator/fetch-orders", API_AUTH_ORDERS, api_h_orders_fetch,
      "POST /api/v1/orchestrator/fetch-orders", 0 },
    { EVHTTP_REQ_POST, "/api/v1/orchestrator/post-to-carrier", API_AUTH_ORDERS,
      api_h_orders_post, "POST /api/v1/orchestrator/post-to-carrier", 0 },
    { EVHTTP_REQ_POST, "/api/v1/orchestrator/push-tracking-to-mirakl", API_AUTH_ORDERS,
      api_h_orders_push, "POST /api/v1/orchestrator/push-tracking-to-mirakl", 0 },
    { EVHTTP_REQ_GET, "/api/v1/logs/orders-view", API_AUTH_ORDERS, api_h_orders_view,
      "GET /api/v1/logs/orders-view", 0 },
    { EVHTTP_REQ_GET, "/api/v1/logs/orders-counts", API_AUTH_ORDERS, api_h_orders_counts,
      "GET /api/v1/logs/orders-counts", 0 },
    { EVHTTP_REQ_GET, "/api/v1/logs/operations", API_AUTH_ORDERS, api_h_orders_ops,
      "GET /api/v1/logs/operations", 0 },
    { EVHTTP_REQ_GET, "/api/v1/logs/exports/orders-view.csv", API_AUTH_ORDERS,
      api_h_orders_csv, "GET /api/v1/logs/exports/orders-view.csv", 0 },
    { EVHTTP_REQ_GET, "/api/v1/orders/{id}", API_AUTH_ORDERS, api_h_order_get,
      "GET /api/v1/orders/{id}", 0 },
    /* webhooks carry their own proof: a signature, a source address */
    { EVHTTP_REQ_POST, "/api/v1/carriers/{carrier}/webhook", API_AUTH_NONE,
      api_h_carrier_webhook, "POST /api/v1/carriers/{carrier}/webhook", 0 },
    { EVHTTP_REQ_POST, "/api/webhook/mercado-livre", API_AUTH_NONE, api_h_ml_notification,
      "POST /api/webhook/mercado-livre", 0 },
    { EVHTTP_REQ_POST, "/v1/jobs/{type}", API_AUTH_PATH_TYPE, api_h_job_create,
      "POST /v1/jobs/{type}", 0 },
    { EVHTTP_REQ_GET, "/v1/jobs/{id}", API_AUTH_JOB_TYPE, api_h_job_get, "GET /v1/jobs/{id}",
      0 },
    { EVHTTP_REQ_POST, "/v1/jobs/{type}/batch", API_AUTH_PATH_TYPE, api_h_job_batch,
      "POST /v1/jobs/{type}/batch", 0 },
    /* the dashboard: its files and login are open, the rest needs its session */
    { EVHTTP_REQ_GET, "/ui", API_AUTH_NONE, api_h_ui_index, "GET /ui", 0 },
    { EVHTTP_REQ_POST, "/ui/login", API_AUTH_NONE, api_h_ui_login, "POST /ui/login", 0 },
    { EVHTTP_REQ_POST, "/ui/logout", API_AUTH_SESSION, api_h_ui_logout, "POST /ui/logout", 0 },
    { EVHTTP_REQ_GET, "/ui/api/session", API_AUTH_SESSION, api_h_ui_session,
      "GET /ui/api/session", 0 },
    { EVHTTP_REQ_GET, "/ui/{file}", API_AUTH_NONE, api_h_ui_asset, "GET /ui/{file}", 0 },
    { EVHTTP_REQ_GET, "/v1/dead", API_AUTH_OPERATOR, api_h_dead_list, "GET /v1/dead", 0 },
    { EVHTTP_REQ_POST, "/v1/dead/{id}/retry", API_AUTH_OPERATOR, api_h_dead_retry,
      "POST /v1/dead/{id}/retry", 0 },
    { EVHTTP_REQ_POST, "/v1/dead/{id}/purge", API_AUTH_OPERATOR, api_h_dead_purge,
      "POST /v1/dead/{id}/purge", 0 },
    { EVHTTP_REQ_GET, "/v1/queues", API_AUTH_OPERATOR, api_h_queues, "GET /v1/queues", 0 },
    { EVHTTP_REQ_GET, "/stats", API_AUTH_OPERATOR, api_h_stats, "GET /stats", 0 },
    { EVHTTP_REQ_GET, "/v1/workers", API_AUTH_OPERATOR, api_h_workers, "GET /v1/workers", 0 },
    { EVHTTP_REQ_GET, "/v1/held", API_AUTH_OPERATOR, api_h_held, "GET /v1/held", 0 },
    { EVHTTP_REQ_GET, "/v1/trace", API_AUTH_OPERATOR, api_h_trace_get, "GET /v1/trace", 0 },
    { EVHTTP_REQ_PUT, "/v1/trace", API_AUTH_OPERATOR, api_h_trace_put, "PUT /v1/trace", 0 },
    { EVHTTP_REQ_DELETE, "/v1/trace", API_AUTH_OPERATOR, api_h_trace_delete,
      "DELETE /v1/trace", 0 },
    { EVHTTP_REQ_GET, "/v1/upstreams", API_AUTH_OPERATOR, api_h_upstreams, "GET /v1/upstreams",
      0 },
    { EVHTTP_REQ_POST, "/api/v1/activation", API_AUTH_ACTIVATION, api_h_activation_create,
      "POST /api/v1/activation/", 1 },
    { EVHTTP_REQ_GET, "/api/v1/activation/status/{transaction_id}", API_AUTH_ACTIVATION,
      api_h_activation_status, "GET /api/v1/activation/status/{transaction_id}/", 0 },
    { EVHTTP_REQ_GET, "/api/v1/offers", API_AUTH_ACTIVATION, api_h_offers,
      "GET /api/v1/offers/", 0 },
    { EVHTTP_REQ_GET, "/api/v1/offers/{id}", API_AUTH_ACTIVATION, api_h_offer,
      "GET /api/v1/offers/{id}/", 0 },
    { EVHTTP_REQ_GET, "/api/v1/accounts/{user_id}", API_AUTH_ACTIVATION, api_h_account,
      "GET /api/v1/accounts/{user_id}/", 0 },
    { EVHTTP_REQ_GET, "/api/v1/accounts/{user_id}/transactions", API_AUTH_ACTIVATION,
      api_h_account_transactions, "GET /api/v1/accounts/{user_id}/transactions/", 0 },
};
#define NROUTES ((int)(sizeof(routes) / sizeof(routes[0])))

/* ==== metrics of the HTTP layer =========================================== */

static const int codes[] = { 200, 202, 304, 400, 401, 403, 404, 405, 408, 409,
                             413, 415, 429, 500, 501, 503, 504 };
#define NCODES ((int)(sizeof(codes) / sizeof(codes[0])) + 1)  /* + "other" */

static void count_request(struct api_thread *t, int route_idx, int status)
{
    int ci = NCODES - 1;
    for (int i = 0; i < NCODES - 1; i++)
        if (codes[i] == status)
            ci = i;
    met_inc(t->g->met, t->idx, t->g->m_http + route_idx * NCODES + ci);
}

void api_http_count_other(struct api_thread *t, int status)
{
    count_request(t, NROUTES, status);
}

void api_http_metrics_init(struct api_global *g)
{
    static const char *const labels[] = { "route", "code" };
    int fam = met_family(g->met, "conveyor_http_requests_total",
                         "HTTP requests answered, by route and status code.", 2, labels, 1);
    for (int r = 0; r <= NROUTES; r++) {
        for (int c = 0; c < NCODES; c++) {
            char code[16];
            if (c < NCODES - 1)
                snprintf(code, sizeof(code), "%d", codes[c]);
            else
                snprintf(code, sizeof(code), "other");
            const char *v[] = { r < NROUTES ? routes[r].name : "other", code };
            int s = met_series(g->met, fam, v);
            if (r == 0 && c == 0)
                g->m_http = s;
        }
    }
}

/* ==== replies ============================================================== */

static const char *method_str(int m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

void api_add_header(struct req *r, const char *name, const char *value)
{
    if (r->http)
        evhttp_add_header(evhttp_request_get_output_headers(r->http), name, value);
}

/* What every reply counts and logs, once. */
static void reply_account(struct req *r, int status)
{
    struct api_thread *t = r->t;
    CV_ASSERT(!r->replied);
    r->replied = 1;
    r->status = status;
    int ri = r->route ? (int)(r->route - routes) : NROUTES;
    count_request(t, ri, status);
    if (r->route && r->route->activation_metric) {
        enum api_act_status a = status < 400 ? API_ACT_ACCEPTED
                                : status < 500 ? API_ACT_REJECTED : API_ACT_ERROR;
        met_inc(t->g->met, t->idx, t->g->m_act[a]);
    }
    if (status >= 500 && status != 503)
        LOG_WARN("http.server_error", "route=\"%s\" status=%d",
                 r->route ? r->route->name : "other", status);
    if (log_min_level <= LOG_LVL_DEBUG) {
        char rs[LOG_STR_MAX];
        LOG_DEBUG("http.request", "route=%s status=%d dur_us=%lld gone=%d%s%s%s%s%s%s",
                  log_str(rs, r->route ? r->route->name : "other"), status,
                  (long long)(clock_mono_us() - r->t0_us), r->gone,
                  r->id[0] ? " job_id=" : "", r->id, r->type[0] ? " type=" : "", r->type,
                  r->trace_id[0] ? " trace_id=" : "", r->trace_id);
    }
}

/* The request's libevent request and connection, taken for its last write:
 * r no longer points at them (they are freed once the reply is out). NULL
 * when the client is gone. */
static struct evhttp_request *take_http(struct req *r, struct api_conn **conn)
{
    struct evhttp_request *hr = r->gone ? NULL : r->http;
    *conn = r->conn;
    if (!hr)
        return NULL;
    r->http = NULL;
    r->conn = NULL;
    return hr;
}

/* ETags. Every 200 to a GET carries a strong ETag computed from its body
 * (FNV-1a, 64 bits: it tells versions of one resource apart, it protects
 * nothing), and a request whose If-None-Match names it gets 304 with no body.
 * The handler still did its reads: this saves the bytes and the client's work
 * (the dashboard polls every 2 s and redraws only what changed), not Redis's. */
static void etag_of(const char *body, size_t len, char out[24])
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)body[i];
        h *= 1099511628211ULL;
    }
    snprintf(out, 24, "\"%016llx\"", (unsigned long long)h);
}

/* 1 when the If-None-Match value inm (a list of entity tags, or "*") names
 * etag; weak tags (W/"...") compare by their opaque part, as RFC 9110 asks. */
static int etag_listed(const char *inm, const char *etag)
{
    size_t el = strlen(etag);
    const char *p = inm;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        size_t n = strcspn(p, ", \t");
        if (n == el && memcmp(p, etag, el) == 0)
            return 1;
        p += n;
    }
    return 0;
}

void api_reply(struct req *r, int status, const char *content_type, const char *body,
               size_t len)
{
    struct api_thread *t = r->t;
    if (status == 200 && r->http && !r->gone &&
        evhttp_request_get_command(r->http) == EVHTTP_REQ_GET) {
        char etag[24];
        etag_of(body, len, etag);
        api_add_header(r, "ETag", etag);
        if (etag_listed(api_header(r, "If-None-Match"), etag))
            status = 304;
    }
    reply_account(r, status);
    struct api_conn *conn;
    struct evhttp_request *hr = take_http(r, &conn);
    if (!hr)
        return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(hr);
    if (status != 304)
        evhttp_add_header(h, "Content-Type", content_type);
    if (t->stopping)
        evhttp_add_header(h, "Connection", "close");
    /* libevent 2.1 gives HEAD and CONNECT replies no Content-Length but still
     * writes their body, and keeps a CONNECT connection open whatever it
     * says: a keep-alive client (or a proxy) would read the body as the start
     * of the next reply (found by tests/fuzz/fuzz_http). HEAD gets no body,
     * as HTTP says; every other reply states its length itself. */
    if (evhttp_request_get_command(hr) != EVHTTP_REQ_HEAD && status != 304) {
        char cl[24];
        snprintf(cl, sizeof(cl), "%zu", len);
        evhttp_add_header(h, "Content-Length", cl);
        if (len)
            evbuffer_add(evhttp_request_get_output_buffer(hr), body, len);
    }
    evhttp_send_reply(hr, status, api_status_reason(status), NULL);
    /* after: the guard may queue a refusal of a later request behind this reply */
    api_conn_replied(conn);
}

void api_reply_json(struct req *r, int status, const struct sbuf *body)
{
    api_reply(r, status, "application/json", body->p ? body->p : "", body->len);
}

/* Streaming. The request stays the connection guard's current one until the
 * end (its deadlines stay off, and should the client go, the guard clears
 * r->http: every chunk checks it). A chunk that finds more than
 * API_STREAM_PENDING_MAX bytes still unsent ends the stream: a client that
 * reads slower than we produce is cut, not buffered without bound. */
#define API_STREAM_PENDING_MAX (16 * 1024 * 1024)

int api_reply_stream_start(struct req *r, int status, const char *content_type)
{
    reply_account(r, status);
    if (r->gone || !r->http)
        return -1;
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->http);
    evhttp_add_header(h, "Content-Type", content_type);
    if (r->t->stopping)
        evhttp_add_header(h, "Connection", "close");
    r->streaming = 1;
    evhttp_send_reply_start(r->http, status, api_status_reason(status));
    return 0;
}

int api_reply_stream_chunk(struct req *r, const void *data, size_t len)
{
    if (!r->streaming || r->gone || !r->http)
        return -1;
    struct evhttp_connection *c = evhttp_request_get_connection(r->http);
    struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
    if (bev && evbuffer_get_length(bufferevent_get_output(bev)) > API_STREAM_PENDING_MAX) {
        LOG_WARN("http.stream_cut", "route=\"%s\" why=client_too_slow",
                 r->route ? r->route->name : "other");
        api_reply_stream_abort(r);
        return -1;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, data, len);
    evhttp_send_reply_chunk(r->http, b);
    evbuffer_free(b);
    return 0;
}

void api_reply_stream_abort(struct req *r)
{
    if (!r->streaming)
        return;
    r->streaming = 0;
    if (!r->gone && r->http)
        api_conn_abort(r->conn);   /* marks r gone and forgets its http */
}

void api_reply_stream_end(struct req *r)
{
    if (!r->streaming)
        return;
    r->streaming = 0;
    struct api_conn *conn;
    struct evhttp_request *hr = take_http(r, &conn);
    if (!hr)
        return;
    evhttp_send_reply_end(hr);
    api_conn_replied(conn);
}

void api_reply_err_status(struct req *r, int status, enum cv_rc rc, const char *message,
                          const char *field)
{
    struct sbuf b;
    sbuf_init(&b);
    api_err_json(&b, rc, message, field);
    if (rc == CV_ERR_AUTH)
        api_add_header(r, "WWW-Authenticate", "Bearer realm=\"conveyor\"");
    /* our own store or broker is down: say when to come back (unless a caller did) */
    if (status == 503 && r->http &&
        !evhttp_find_header(evhttp_request_get_output_headers(r->http), "Retry-After"))
        api_add_header(r, "Retry-After", "1");
    api_reply_json(r, status, &b);
    sbuf_cleanup(&b);
}

void api_reply_err(struct req *r, enum cv_rc rc, const char *message, const char *field)
{
    api_reply_err_status(r, api_err_lookup(rc)->status, rc, message, field);
}

/* ==== request accessors ==================================================== */

const char *api_header(struct req *r, const char *name)
{
    if (!r->http)
        return NULL;
    return evhttp_find_header(evhttp_request_get_input_headers(r->http), name);
}

const char *api_query(struct req *r)
{
    if (!r->http)
        return NULL;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r->http);
    return u ? evhttp_uri_get_query(u) : NULL;
}

const char *api_body(struct req *r, size_t *len)
{
    *len = 0;
    if (!r->http)
        return "";
    struct evbuffer *in = evhttp_request_get_input_buffer(r->http);
    size_t n = evbuffer_get_length(in);
    if (n == 0)
        return "";
    const char *p = (const char *)evbuffer_pullup(in, -1);
    if (!p)
        return "";
    *len = n;
    return p;
}

int api_param_uuid_or_reply(struct req *r, const char *field)
{
    const char *id = r->param[0];
    if (!uuid_valid(id)) {
        char msg[64];
        snprintf(msg, sizeof(msg), "%s must be a UUID", field);
        api_reply_err(r, CV_ERR_INVALID, msg, field);
        return -1;
    }
    for (int i = 0; i < UUID_STR_LEN; i++)
        r->id[i] = (char)tolower((unsigned char)id[i]);
    return 0;
}

int api_require_json_or_reply(struct req *r)
{
    const char *ce = api_header(r, "Content-Encoding");
    if (ce && strcasecmp(ce, "identity") != 0) {
        api_reply_err(r, CV_ERR_UNSUPPORTED, "Content-Encoding is not supported",
                      "Content-Encoding");
        return -1;
    }
    const char *ct = api_header(r, "Content-Type");
    const char *p = ct;
    if (p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, "application/json", 16) == 0) {
            p += 16;
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p == '\0')
                return 0;
            if (*p == ';') {
                /* parameters: only a UTF-8 charset makes sense for JSON */
                const char *cs = strcasestr(p, "charset");
                if (!cs)
                    return 0;
                cs += 7;
                while (*cs == ' ' || *cs == '=' || *cs == '"')
                    cs++;
                if (strncasecmp(cs, "utf-8", 5) == 0 || strncasecmp(cs, "utf8", 4) == 0)
                    return 0;
            }
        }
    }
    api_reply_err(r, CV_ERR_UNSUPPORTED, "Content-Type must be application/json",
                  "Content-Type");
    return -1;
}

cJSON *api_parse_body_or_reply(struct req *r)
{
    size_t len;
    const char *body = api_body(r, &len);
    if (len == 0) {
        api_reply_err(r, CV_ERR_INVALID, "empty body", "body");
        return NULL;
    }
    if (len > (size_t)r->t->cfg->body_max_bytes) {
        /* evhttp enforces the limit; this only guards a change there */
        api_reply_err(r, CV_ERR_TOO_LARGE, "request body too large", "body");
        return NULL;
    }
    cJSON *root = json_parse(body, len);
    if (!root)
        api_reply_err(r, CV_ERR_INVALID, "body is not valid JSON", "body");
    return root;
}

/* Match path against pattern; on success fill start/len of each {param}. */
static int route_match(const char *pattern, const char *path, size_t pstart[], size_t plen[],
                       int *np)
{
    const char *p = pattern, *s = path;
    int n = 0;
    while (*p && *s) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            CV_ASSERT(close);
            const char *e = strchr(s, '/');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            if (len == 0 || n == API_MAX_PARAMS)
                return 0;
            pstart[n] = (size_t)(s - path);
            plen[n] = len;
            n++;
            p = close + 1;
            s += len;
        } else if (*p == *s) {
            p++;
            s++;
        } else {
            return 0;
        }
    }
    if (*p || *s)
        return 0;
    *np = n;
    return 1;
}

/* ==== dispatch ============================================================= */

void api_req_hold(struct req *r)
{
    r->refs++;
}

void api_req_release(struct req *r)
{
    CV_ASSERT(r->refs > 0);
    if (--r->refs > 0)
        return;
    if (!r->replied && !r->gone) {
        LOG_ERROR("api.no_reply", "route=%s", r->route ? r->route->name : "other");
        api_reply_err(r, CV_ERR_INTERNAL, NULL, NULL);
    }
    api_reply_stream_end(r);   /* a stream is always ended, once */
    if (r->span.on) {
        char st[16];
        snprintf(st, sizeof(st), "http %d", r->status);
        snprintf(r->span.job_id, sizeof(r->span.job_id), "%s", r->id);
        trc_exit(&r->span, r->status < 400 ? NULL : st);
    }
    free(r->batch_ids);
    job_free(r->pending_job);
    if (r->acc) {
        sbuf_cleanup(r->acc);
        free(r->acc);
    }
    r->t->inflight--;
    free(r);
}

/* The route's scope (see enum api_auth) for r->key, the key that sent r (or
 * logged in the session that did). Returns 0, or -1 after replying. */
static int scope_or_reply(struct req *r, const struct api_route *hit)
{
    const char *scope = NULL;
    switch (hit->auth) {
    case API_AUTH_PATH_TYPE: {
        int ti = jobtype_index(r->param[0]);
        if (ti < 0) {
            api_reply_err(r, CV_ERR_NOT_FOUND, "unknown job type", "type");
            return -1;
        }
        r->type_idx = ti;
        snprintf(r->type, sizeof(r->type), "%s", jobtype_at(ti)->name);
        scope = r->type;
        break;
    }
    case API_AUTH_ACTIVATION: scope = AUTH_SCOPE_ACTIVATION; break;
    case API_AUTH_OPERATOR: scope = AUTH_SCOPE_OPERATOR; break;
    case API_AUTH_ORDERS: scope = AUTH_SCOPE_ORDERS; break;
    case API_AUTH_JOB_TYPE:
    case API_AUTH_SESSION:
    case API_AUTH_NONE: return 0;
    }
    if (hit->auth == API_AUTH_PATH_TYPE ? !auth_allows_type(r->key, scope)
                                        : !auth_allows(r->key, scope)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "key not allowed for %s", scope);
        api_reply_err(r, CV_ERR_FORBIDDEN, msg,
                      hit->auth == API_AUTH_PATH_TYPE ? "type" : NULL);
        return -1;
    }
    return 0;
}

/* The routes on which a dashboard session cookie stands in for a key (README
 * "Dashboard"): the operator routes, the reads of orders and jobs, and the
 * session's own. Never a producer's submission, the seed endpoints or the
 * orchestrator's triggers: a browser session is for looking and for the
 * dead-letter actions, whatever else its key may do. */
static int session_may(const struct api_route *hit)
{
    switch (hit->auth) {
    case API_AUTH_OPERATOR:
    case API_AUTH_SESSION: return 1;
    case API_AUTH_ORDERS:
    case API_AUTH_JOB_TYPE: return hit->method == EVHTTP_REQ_GET;
    default: return 0;
    }
}

/* r->key is known: check the scope and run the handler. */
static void authorized(struct req *r)
{
    if (scope_or_reply(r, r->route) == 0)
        r->route->fn(r);
}

/* Who sent r: the Authorization header's key, or, with no such header, a
 * dashboard session (asynchronous: a Redis read), then the scope. A request
 * that sends both is judged by its key alone. */
static void authorize(struct req *r, const struct api_route *hit)
{
    if (hit->auth == API_AUTH_NONE) {
        hit->fn(r);
        return;
    }
    const char *authorization = api_header(r, "Authorization");
    if (!authorization && session_may(hit) && api_sess_cookie_present(r)) {
        api_sess_resolve(r, authorized);
        return;
    }
    if (hit->auth == API_AUTH_SESSION) {
        api_reply_err(r, CV_ERR_AUTH, "no dashboard session: log in at /ui", NULL);
        return;
    }
    if (api_keys_check(r->t, authorization, &r->key_copy, &r->key) != CV_OK) {
        api_reply_err(r, CV_ERR_AUTH, "missing or invalid API key", NULL);
        return;
    }
    authorized(r);
}

static void route_or_reply(struct req *r)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r->http);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    size_t len = path ? strlen(path) : 0;
    if (len > 1 && path[len - 1] == '/')
        len--;                       /* the seed's URLs end in '/'; both forms work */
    if (len == 0 || len >= sizeof(r->path)) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "no such route", NULL);
        return;
    }
    memcpy(r->path, path, len);
    r->path[len] = '\0';

    int method = (int)evhttp_request_get_command(r->http);
    unsigned allow = 0;
    size_t ps[API_MAX_PARAMS], pl[API_MAX_PARAMS];
    int np = 0;
    const struct api_route *hit = NULL;
    for (int i = 0; i < NROUTES && !hit; i++) {
        if (!route_match(routes[i].pattern, r->path, ps, pl, &np))
            continue;
        if (routes[i].method == method)
            hit = &routes[i];
        else
            allow |= (unsigned)routes[i].method;
    }
    if (!hit && !allow) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "no such route", NULL);
        return;
    }
    if (!hit) {
        char a[64] = "";
        int ms[] = { EVHTTP_REQ_GET, EVHTTP_REQ_POST };
        for (int i = 0; i < 2; i++) {
            if (allow & (unsigned)ms[i]) {
                if (a[0])
                    strcat(a, ", ");
                strcat(a, method_str(ms[i]));
            }
        }
        api_add_header(r, "Allow", a);
        char msg[160];
        snprintf(msg, sizeof(msg), "method %s not allowed here (allowed: %s)",
                 method_str(method), a);
        api_reply_err_status(r, 405, CV_ERR_UNSUPPORTED, msg, NULL);
        return;
    }
    r->route = hit;
    for (int i = 0; i < np; i++) {
        r->path[ps[i] + pl[i]] = '\0';
        r->param[i] = r->path + ps[i];
    }

    trc_enter(&r->span, TRC_API, hit->name, NULL, api_header(r, "traceparent"));
    authorize(r, hit);
}

static void on_request(struct evhttp_request *hr, void *arg)
{
    struct api_thread *t = arg;
    struct req *r = xcalloc(1, sizeof(*r));
    r->t = t;
    r->http = hr;
    r->refs = 1;
    r->t0_us = clock_mono_us();
    t->inflight++;
    /* the guard marks r as in its handler and tells us if the client leaves */
    r->conn = api_conn_of_request(t, hr, r);
    route_or_reply(r);
    api_req_release(r);
}

/* ==== per loop ============================================================= */

int api_thread_start_http(struct api_thread *t)
{
    const struct cfg *cfg = t->cfg;
    t->http = evhttp_new(t->base);
    if (!t->http)
        return -1;
    evhttp_set_gencb(t->http, on_request, t);
    evhttp_set_bevcb(t->http, api_conn_make_bev, t);
    /* Bodies over the limit are refused from Content-Length before they are
     * read; the lingering close drains what the client still sends so that
     * it reads our 413 instead of a connection reset. */
    evhttp_set_max_body_size(t->http, cfg->body_max_bytes);
    evhttp_set_flags(t->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_max_headers_size(t->http, 16384);
    /* Reads are bounded by the guard's deadlines (api_conn.c). evhttp's own
     * timeout, which every byte restarts, is left as the bound on a client
     * that does not read its reply; it must not close an idle connection
     * before the idle deadline does. */
    int longest = cfg->http_header_timeout_ms;
    if (cfg->http_body_timeout_ms > longest)
        longest = cfg->http_body_timeout_ms;
    if (cfg->http_idle_timeout_ms > longest)
        longest = cfg->http_idle_timeout_ms;
    evhttp_set_timeout(t->http, longest / 1000 + 5);
    /* let every method through so that the router answers 405, not evhttp 501 */
    evhttp_set_allowed_methods(t->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(t->http, "application/json");
    t->sock = evhttp_accept_socket_with_handle(t->http, t->listen_fd);
    if (!t->sock)
        return -1;
    t->listen_fd = -1;                 /* the listener owns it now */
    return 0;
}

void api_thread_stop_http(struct api_thread *t)
{
    if (t->http && t->sock) {
        evhttp_del_accept_socket(t->http, t->sock);
        t->sock = NULL;
    }
}

void api_thread_free_http(struct api_thread *t)
{
    if (t->http)
        evhttp_free(t->http);       /* frees the guards of the connections it had */
    t->http = NULL;
    api_conn_free_all(t);
}

/* ==== query parameters ====================================================== */

/* Find name in the query: 0 with *val (NULL when absent, copied into buf),
 * -1 after replying 400. */
static int query_get_or_reply(struct req *r, const char *name, char *buf, size_t cap,
                              const char **val)
{
    struct evkeyvalq q;
    int rc = -1, seen = 0;
    *val = NULL;
    TAILQ_INIT(&q);
    const char *query = api_query(r);
    if (!query || !*query)
        return 0;
    if (evhttp_parse_query_str(query, &q) != 0) {
        api_reply_err(r, CV_ERR_INVALID, "malformed query string", "query");
        goto out;
    }
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &q, next)
    {
        if (strcmp(kv->key, name) != 0)
            continue;
        if (seen++ || strlen(kv->value) >= cap) {
            api_reply_err(r, CV_ERR_INVALID, seen > 1 ? "parameter given twice"
                                                      : "parameter too long", name);
            goto out;
        }
        strcpy(buf, kv->value);
        *val = buf;
    }
    rc = 0;
out:
    evhttp_clear_headers(&q);
    return rc;
}

int api_query_int_or_reply(struct req *r, const char *name, int64_t min, int64_t max,
                           int64_t def, int64_t *out)
{
    char buf[32];
    const char *v;
    if (query_get_or_reply(r, name, buf, sizeof(buf), &v))
        return -1;
    *out = def;
    if (!v)
        return 0;
    int64_t x = 0;
    const char *p = v;
    int ok = *p != '\0' && strlen(p) <= 15;
    for (; ok && *p; p++) {
        if (*p < '0' || *p > '9')
            ok = 0;
        else
            x = x * 10 + (*p - '0');
    }
    if (!ok || x < min || x > max) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s must be a whole number %lld..%lld", name,
                 (long long)min, (long long)max);
        api_reply_err(r, CV_ERR_INVALID, msg, name);
        return -1;
    }
    *out = x;
    return 0;
}

int api_query_str_or_reply(struct req *r, const char *name, char *buf, size_t cap)
{
    const char *v;
    if (query_get_or_reply(r, name, buf, cap, &v))
        return -1;
    if (!v)
        buf[0] = '\0';
    return 0;
}
