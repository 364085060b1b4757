/* api.h - what the conveyor-api files share.
 *
 * Threads. main.c starts http.threads event loops. Each loop (struct
 * api_thread) owns its evhttp, its broker (async, one pipelined Redis
 * connection), its PostgreSQL connection and its Redis connection for the
 * activation hashes; nothing is shared between loops except the read-only
 * config, the metrics registry, whose counters are sharded per loop, and the
 * count of open connections (one atomic, for http.max_connections).
 *
 * Connections. Each accepted connection has a guard (api_conn.c) that sees
 * the client's bytes before evhttp does: it refuses ambiguous framing
 * (api_frame.c), runs the header, body and idle deadlines and the cap, and
 * tells the request when its client has gone.
 *
 * Requests. api_http.c turns every HTTP request into one struct req, routes
 * it, checks the key against the route's scope and calls the route's handler. A handler either replies
 * at once or starts async calls; each async call holds a reference
 * (api_req_hold before the call, api_req_release at the end of its callback),
 * and the request is freed in exactly one place, when the last reference
 * goes (api_req_release). A callback may run before the call that started it
 * returns (a link that is down fails at once); the dispatcher holds its own
 * reference while the handler runs, so req stays valid until the handler
 * returns, but it may already have been answered. If the client connection
 * goes away while a call is out, req->gone is set and the reply is skipped.
 *
 * Replies are always JSON (except /metrics); errors go through the one table
 * in api_err.c: {"error":{"code":"invalid","message":"...","field":"user_id"}}. */
#ifndef CV_API_H
#define CV_API_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "cidr.h"
#include "job.h"
#include "jobopt.h"
#include "jobtype.h"
#include "json.h"
#include "rc.h"
#include "sbuf.h"
#include "trc.h"

struct event;
struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_request;
struct evbuffer;
struct broker;
struct db_async;
struct rds_async;
struct api_pubq;
struct api_keys;
struct api_metrics;
struct met;
struct job_status;
struct req;

/* Job types come from the one table in common/jobtype.h; unknown names are 404. */

/* ---- the process ----------------------------------------------------------- */
enum api_act_status { API_ACT_ACCEPTED, API_ACT_REJECTED, API_ACT_ERROR, API_ACT_N };

/* Read-only once the loops run (the counters inside met are per-loop shards). */
struct api_global {
    const struct cfg *cfg;
    struct met *met;
    int m_http;                   /* first conveyor_http_requests_total series */
    int m_enqueued[JT_N];         /* conveyor_jobs_enqueued_total{type} */
    int m_act[API_ACT_N];         /* activation_requests_total{status} */
    int m_scrape[2];              /* conveyor_metrics_scrapes_total{source=cache|redis} */
    int m_conn_closed;            /* first conveyor_http_connections_closed_total series */
    atomic_int nconns;            /* open client connections, all loops (the cap) */
    struct cidr_list proxies;     /* http.trusted_proxies */
    struct cidr_list wh_cidrs[CFG_UPS_N]; /* upstreams.<name>.webhook_cidrs */
};

/* One event loop. */
struct api_thread {
    int idx;                      /* also the metrics shard */
    const struct cfg *cfg;
    struct api_global *g;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct broker *broker;
    struct db_async *db;          /* NULL when pg.dsn is empty */
    struct rds_async *rds;        /* activation hashes */
    struct api_pubq *pubq;        /* single-job publishes of this turn (api_pub.c) */
    struct api_keys *keys;        /* keys stored in PostgreSQL (api_keys.c); NULL without pg */
    struct api_trace *trace;      /* follows the tracing switch (api_trace.c); loop 0 only */
    struct api_metrics *metrics;  /* /metrics cache (api_health.c) */
    struct event *stop_ev;        /* readable when main asks us to stop */
    struct event *drain_ev;       /* timer while draining */
    int stop_pipe[2];
    int listen_fd;                /* our dup of the listening socket */
    int inflight;                 /* struct req alive on this loop */
    int stopping;                 /* not accepting; replies say Connection: close */
    int closing;                  /* tearing down: callbacks start no new I/O */
    struct api_conn *conns;       /* every connection guard of this loop */
    struct api_conn **conn_by_fd; /* socket -> guard, for requests (api_conn.c) */
    int conn_by_fd_cap;
    int64_t drain_deadline_ms;
    int64_t flush_until_ms;       /* idle while draining: stop at this time */
    pthread_t tid;
};

/* ---- HTTP framing (api_frame.c) -------------------------------------------- */
enum api_frame_ev {
    API_FRAME_NONE,               /* all bytes taken, nothing to report */
    API_FRAME_HEAD_START,         /* a request begins (no byte of it taken yet) */
    API_FRAME_HEAD_END,           /* its head is complete and valid; a body follows */
    API_FRAME_MSG_END,            /* the whole request is in (head, and body if any) */
    API_FRAME_ERROR,              /* refused: status (400, 501) and why; sticky */
};

/* The framing state of one connection's byte stream. Plain data: init it. */
struct api_frame {
    int state;
    int status;                   /* after API_FRAME_ERROR */
    const char *why;              /* after API_FRAME_ERROR: a static string */
    uint64_t left;                /* body or chunk bytes still to come */
    uint64_t num;                 /* chunk size being read */
    uint64_t cl;                  /* Content-Length of this head */
    size_t len, nlen, vlen;       /* current line: bytes, name bytes, value bytes kept */
    int cr, in_name, vlong, first, method_done, no_body, http10, n_cl, n_te, te_chunked;
    char method[16], tail[16], name[24], val[40];
};
void api_frame_init(struct api_frame *f);
/* Take bytes from p[0..n) up to the next event; returns how many were taken
 * (0 with API_FRAME_HEAD_START: call again with the same bytes). */
size_t api_frame_feed(struct api_frame *f, const char *p, size_t n, enum api_frame_ev *ev);
/* 1 while inside a head / inside a body. */
int api_frame_mid_head(const struct api_frame *f);
int api_frame_mid_body(const struct api_frame *f);

/* ---- connections (api_conn.c) ----------------------------------------------- */
struct api_conn;
struct bufferevent;
/* evhttp's bufferevent factory (evhttp_set_bevcb, arg = the api_thread): every
 * accepted connection gets a guard that checks the framing of what the client
 * sends before evhttp reads it, enforces the header, body and idle deadlines
 * and the connection cap, and turns evhttp's HTML error pages into JSON. */
struct bufferevent *api_conn_make_bev(struct event_base *base, void *arg);
/* The guard of the connection a request came on (NULL if unknown); marks the
 * request as in its handler: no deadline runs until api_conn_replied(). */
struct api_conn *api_conn_of_request(struct api_thread *t, struct evhttp_request *hr,
                                     struct req *r);
/* The handler answered r (call before the reply is handed to evhttp). */
void api_conn_replied(struct api_conn *c);
/* Close the connection now, without finishing its reply: a stream that cannot
 * go on (the client reads too slowly, the database failed mid-way) must end as
 * a broken transfer, never as a complete-looking one. Its request is marked
 * gone. NULL is fine. */
void api_conn_abort(struct api_conn *c);
/* Free the guards evhttp_free() left (teardown, after evhttp_free). */
void api_conn_free_all(struct api_thread *t);
/* Why the API closed a connection on its own (conveyor_http_connections_closed_total). */
enum api_conn_close {
    API_CLOSE_HEADER_TIMEOUT,
    API_CLOSE_BODY_TIMEOUT,
    API_CLOSE_IDLE_TIMEOUT,
    API_CLOSE_BAD_FRAMING,
    API_CLOSE_OVER_CAPACITY,
    API_CLOSE_N,
};
/* Register the connection metrics (before met_freeze). */
void api_conn_metrics_init(struct api_global *g);

/* ---- requests -------------------------------------------------------------- */
/* Who may call a route: the one place where scopes are decided (the routing
 * table in api_http.c). The key is checked before the body is looked at. */
enum api_auth {
    API_AUTH_NONE,                /* open: health, ready, metrics */
    API_AUTH_PATH_TYPE,           /* the job type named by the path's {type}: 404 when
                                   * unknown, 403 when the key may not use it */
    API_AUTH_JOB_TYPE,            /* any key here; the handler shows the job only when the
                                   * key may use its type, else 404 (ids cannot be probed) */
    API_AUTH_ACTIVATION,          /* the activation scope (seed endpoints) */
    API_AUTH_OPERATOR,            /* the operator scope (queues, workers, dead letters) */
    API_AUTH_ORDERS,              /* the orders scope (order reads, orchestrator routes) */
    API_AUTH_SESSION,             /* a dashboard session cookie, whatever its key's scopes
                                   * (the session's own routes: /ui/api/session, logout) */
};

typedef void (*api_handler)(struct req *r);

struct api_route {
    int method;                   /* EVHTTP_REQ_GET, ... */
    const char *pattern;          /* "/v1/jobs/{type}/batch": {x} matches one segment */
    enum api_auth auth;
    api_handler fn;
    const char *name;             /* metrics label */
    int activation_metric;        /* count in activation_requests_total */
};

#define API_PATH_MAX 256
/* A worker whose last heartbeat is older than this is not live (GET /v1/workers, /metrics). */
#define WORKER_ALIVE_MS 10000
/* In lists, payloads above this many bytes are left out (payload_bytes says the size). */
#define API_LIST_PAYLOAD_MAX (16 * 1024)
#define API_MAX_PARAMS 3

struct req {
    struct api_thread *t;
    struct api_conn *conn;        /* NULL once the connection is gone */
    struct evhttp_request *http;  /* NULL once replied or the client is gone */
    const struct api_route *route;
    const struct cfg_api_key *key;   /* the configuration's, or &key_copy */
    struct cfg_api_key key_copy;  /* a stored key (api_keys.c), copied: the loop's set of
                                   * stored keys may be replaced while r is in flight */
    int refs;
    int gone;                     /* the client left before the reply */
    int replied;
    int streaming;                /* a chunked reply is under way (api_reply_stream_*) */
    int status;
    int64_t t0_us;
    const char *param[API_MAX_PARAMS];
    char path[API_PATH_MAX];      /* the params point in here */

    /* endpoint state carried across async calls */
    char id[UUID_STR_LEN];        /* job / transaction id once known (logged) */
    char trace_id[33];            /* of the traceparent, for the log line */
    char type[JOB_TYPE_MAX];
    int type_idx;
    int scheduled;
    int64_t user_id, offer_id;
    char txn_status[16];          /* a duplicate activation: its transaction's status */
    int writes_left;              /* pipelined writes not yet answered */
    int pending_err;              /* a pipelined write failed */
    int pub_calling;              /* inside broker_publish (batch): a callback now = unsent */
    struct job *pending_job;      /* built, waiting for a check before it is published */
    struct sbuf *acc;             /* a reply assembled over several queries (freed with r) */
    char key_param[192];          /* a path or query value kept across async calls */
    int batch_idem;               /* the batch had an Idempotency-Key */
    size_t batch_n;
    char (*batch_ids)[UUID_STR_LEN]; /* the batch's ids, for an unknown-outcome reply */
    struct trc_span span;         /* the request's trace span (module api), when on */
    /* a request authenticated by a dashboard session cookie (api_sess.c) */
    int via_session;
    char sess_key[80];            /* its Redis key: cv:ui:sess:<sha256 of the id> */
    char sess_csrf[65];           /* its CSRF token */
};

/* api_http.c */
void api_req_hold(struct req *r);
/* Check that the route's first parameter is a UUID and copy it, lower-cased,
 * into r->id. Replies 400 naming field and returns -1 when it is not. */
int api_param_uuid_or_reply(struct req *r, const char *field);
/* Drop a reference; the last one frees r (replying 500 first if nobody replied). */
void api_req_release(struct req *r);
/* The header value or NULL. NULL as well once the client is gone. */
const char *api_header(struct req *r, const char *name);
/* The raw query string (after '?') or NULL. */
const char *api_query(struct req *r);
/* The body, contiguous; *len 0 when none. Valid until the reply. */
const char *api_body(struct req *r, size_t *len);
/* Add an output header (before replying). */
void api_add_header(struct req *r, const char *name, const char *value);
/* Send a reply. No-op (beyond bookkeeping) when the client is gone. */
void api_reply(struct req *r, int status, const char *content_type, const char *body,
               size_t len);
void api_reply_json(struct req *r, int status, const struct sbuf *body);
/* A chunked reply: start (0, or -1 when the client is gone: nothing to send),
 * chunks (-1 once the client is gone or reads too slowly: the connection is
 * then closed without the last chunk, so the client sees a broken transfer;
 * stop producing), end (also done by the request's last release). To stop
 * on an error mid-way, api_reply_stream_abort(). */
void api_reply_stream_abort(struct req *r);
int api_reply_stream_start(struct req *r, int status, const char *content_type);
int api_reply_stream_chunk(struct req *r, const void *data, size_t len);
void api_reply_stream_end(struct req *r);
/* The JSON error for rc from the table in api_err.c; field may be NULL. */
void api_reply_err(struct req *r, enum cv_rc rc, const char *message, const char *field);
/* Same with an explicit status (405). */
void api_reply_err_status(struct req *r, int status, enum cv_rc rc, const char *message,
                          const char *field);
/* 415 unless Content-Type is application/json (parameters allowed). Returns 0 when fine. */
int api_require_json_or_reply(struct req *r);
/* Parse the body as JSON; replies 400 and returns NULL when empty or not JSON. */
cJSON *api_parse_body_or_reply(struct req *r);
/* Query parameter name as a whole number in [min,max], def when absent.
 * Returns 0, or replies 400 (field = name) and returns -1. */
int api_query_int_or_reply(struct req *r, const char *name, int64_t min, int64_t max,
                           int64_t def, int64_t *out);
/* Query parameter name copied into buf ("" when absent). Returns 0, or
 * replies 400 and returns -1 when malformed, repeated or too long. */
int api_query_str_or_reply(struct req *r, const char *name, char *buf, size_t cap);

/* Listening and loops (api_http.c). */
int api_thread_start_http(struct api_thread *t);
void api_thread_stop_http(struct api_thread *t);
void api_thread_free_http(struct api_thread *t);
/* Register the HTTP metrics series (before met_freeze). */
void api_http_metrics_init(struct api_global *g);
/* Count a reply that no route made (evhttp's own, or a connection refusal). */
void api_http_count_other(struct api_thread *t, int status);

/* ---- API keys (api_keys.c) ------------------------------------------------- */
/* Read the stored keys (common/akey.h) on t->db every AKEY_REFRESH_MS; nothing
 * when t->db is NULL. 0, or -1 when the timer cannot be made. */
int api_keys_init(struct api_thread *t);
/* After db_async_free(t->db). NULL-safe. */
void api_keys_free(struct api_thread *t);
/* The key of an Authorization header value: the configuration's or a stored
 * one (then copied into *copy), unless its name is revoked. CV_OK with *key,
 * else CV_ERR_AUTH. */
enum cv_rc api_keys_check(struct api_thread *t, const char *authorization,
                          struct cfg_api_key *copy, const struct cfg_api_key **key);
/* The same for a key's hash (a dashboard login's key, a session's key). */
enum cv_rc api_keys_match(struct api_thread *t, const unsigned char sha[32],
                          struct cfg_api_key *copy, const struct cfg_api_key **key);

/* ---- submissions (api_jobs.c) ---------------------------------------------- */
/* The request header that names the job id: the API sends it with an
 * unknown-outcome reply, and the client sends it back with its retry. */
#define API_JOB_ID_HEADER "Conveyor-Job-Id"

/* The options every enqueuing route accepts besides its body: the query
 * (delay_ms, run_at, max_attempts) and the headers Idempotency-Key,
 * Conveyor-Job-Id (single jobs only) and traceparent, read by the one parser
 * in common/jobopt.h. Returns 0, or -1 after a 400. Also sets r->trace_id. */
int api_opts_or_reply(struct req *r, int single, struct jobopt *o);
/* Make a job of type t from o and a payload node (raw = its text when the
 * node is the whole body), the producer being r's key. Returns the job, or
 * NULL after a 400 naming field (prefixed with where, "[3]" in a batch). */
struct job *api_job_make_or_reply(struct req *r, const struct jobtype *t, const struct jobopt *o,
                                  const char *idem, const cJSON *node, const char *raw,
                                  size_t rawlen, int64_t now, const char *where);

/* ---- publishing (api_pub.c) ---------------------------------------------------- */
enum api_pub_outcome {
    API_PUB_NEW,                  /* enqueued */
    API_PUB_DUP,                  /* an earlier job of this producer had the Idempotency-Key
                                   * or the id: id is that job, nothing enqueued */
    API_PUB_CONFLICT,             /* the id is a job of another type or producer: 409 */
    API_PUB_UNSENT,               /* Redis unreachable: nothing sent, nothing enqueued: 503 */
    API_PUB_UNKNOWN,              /* sent, no answer: enqueued or not, we cannot tell: 504 */
    API_PUB_FULL,                 /* refused: the type holds its max_queued unsettled jobs;
                                   * id is the seconds to wait: 429 with Retry-After */
    API_PUB_RECORDED,             /* recorded, but the broker did not confirm it in time
                                   * (Kafka down): it runs once the broker is back (the
                                   * transport's sweep); 503 with the id to retry with */
};
/* id: the job's id (for NEW, UNSENT, UNKNOWN) or the earlier job's (DUP). */
typedef void (*api_pub_cb)(void *arg, enum api_pub_outcome o, const char *id);

int api_pub_init(struct api_thread *t);
/* Fails what is still queued (teardown only). */
void api_pub_free(struct api_thread *t);
/* broker_publish(t->broker, &job, 1, idempotency_ttl_s, ...), coalesced with
 * the other single jobs of this loop turn into one broker call at the end of
 * the turn. Takes job. cb runs exactly once, possibly inline. */
void api_publish_one(struct api_thread *t, struct job *job, api_pub_cb cb, void *arg);
/* The reply for CONFLICT (409), UNSENT (503) and UNKNOWN (504: names the id
 * in the body and in a Conveyor-Job-Id header, and says how to retry).
 * what: "job" or "activation". Uses r->id. */
void api_reply_pub_failure(struct req *r, enum api_pub_outcome o, const char *what,
                           const char *id);
/* 429 with Retry-After: wait_s for the type's full queue (backpressure). */
void api_reply_full(struct req *r, const char *wait_s);
/* The reply to a single publish: the failure's, or 202 {"<id_field>", "type",
 * "status", "duplicate"?} with Location, counting a new job for r->type_idx
 * (r->type names it). The caller releases r. */
void api_reply_published(struct req *r, enum api_pub_outcome o, const char *id,
                         const char *id_field);

/* api_err.c */
struct api_err {
    int status;
    const char *code;             /* stable JSON error code */
    const char *reason;           /* HTTP reason phrase */
};
const struct api_err *api_err_lookup(enum cv_rc rc);
/* Reason phrase for a status code. */
const char *api_status_reason(int status);
/* The JSON error body. */
void api_err_json(struct sbuf *b, enum cv_rc rc, const char *message, const char *field);
/* An error whose code is not an rc ("outcome_unknown"), with extra members
 * (raw JSON text such as "\"id\":\"...\"", may be NULL) inside "error". */
void api_err_json_extra(struct sbuf *b, const char *code, const char *message,
                        const char *extra);
#define API_CODE_OUTCOME_UNKNOWN "outcome_unknown"
#define API_STATUS_OUTCOME_UNKNOWN 504

/* ---- JSON helpers (api_http.c) --------------------------------------------- */
/* Append "key":"value" / "key":n with a leading comma unless first. */
void api_json_str(struct sbuf *b, const char *key, const char *v, int first);
void api_json_i64(struct sbuf *b, const char *key, long long v, int first);
/* An RFC 3339 time, omitted when ms is 0. Returns 1 when written. */
int api_json_time(struct sbuf *b, const char *key, int64_t ms, int first);
/* Digits (with optional '-') verbatim as a JSON number, else a string, NULL -> null. */
void api_json_num_text(struct sbuf *b, const char *key, const char *v, int first);
/* A string or null. */
void api_json_str_or_null(struct sbuf *b, const char *key, const char *v, int first);

/* ---- handlers ---------------------------------------------------------------- */
/* api_jobs.c */
void api_h_job_create(struct req *r);
void api_h_job_batch(struct req *r);
void api_h_job_get(struct req *r);
/* api_admin.c */
void api_h_dead_list(struct req *r);
void api_h_dead_retry(struct req *r);
void api_h_dead_purge(struct req *r);
void api_h_queues(struct req *r);
void api_h_stats(struct req *r);
void api_h_workers(struct req *r);
void api_h_held(struct req *r);

/* ---- tracing (api_trace.c) ------------------------------------------------------ */
/* Loop 0 reads TRC_KEY every TRC_REFRESH_MS; other loops do nothing. 0 or -1. */
int api_trace_init(struct api_thread *t);
void api_trace_free(struct api_thread *t);
void api_h_trace_get(struct req *r);
void api_h_trace_put(struct req *r);
void api_h_trace_delete(struct req *r);
/* api_activation.c */
void api_h_activation_create(struct req *r);

/* ---- orders (api_orders.c) ---------------------------------------------------------- */
void api_h_health_v1(struct req *r);
void api_h_orders_fetch(struct req *r);
void api_h_orders_post(struct req *r);
void api_h_orders_push(struct req *r);
void api_h_orders_view(struct req *r);
void api_h_orders_counts(struct req *r);
void api_h_orders_ops(struct req *r);
void api_h_orders_csv(struct req *r);
void api_h_order_get(struct req *r);

/* ---- the dashboard (api_ui.c: its files; api_sess.c: login and sessions) ------------- */
/* One file of ui/, compiled in (build/gen/ui_assets.c, made by scripts/ui_embed.sh). */
struct api_ui_asset {
    const char *name;             /* "app.js": served at /ui/app.js */
    const char *content_type;
    const unsigned char *data;
    size_t len;
};
extern const struct api_ui_asset api_ui_assets[];
extern const int api_ui_nassets;
/* GET /ui (index.html) and GET /ui/{file}. */
void api_h_ui_index(struct req *r);
void api_h_ui_asset(struct req *r);
/* The headers every dashboard reply carries: Content-Security-Policy (default-src
 * 'self': no inline script, nothing from elsewhere), X-Frame-Options DENY,
 * Referrer-Policy no-referrer, X-Content-Type-Options nosniff. */
void api_ui_security_headers(struct req *r);

/* The session cookie's name. Its value is 64 hex digits (32 random bytes); the
 * server keeps only their SHA-256, as the Redis key of the session. */
#define API_SESS_COOKIE "cv_session"
/* 1 when the request carries a session cookie (well formed or not). */
int api_sess_cookie_present(struct req *r);
/* Authenticate r by its session cookie, then call next(r) with r->key the key
 * that logged in and r->via_session set; a state-changing method (anything but
 * GET and HEAD) must also send X-CSRF-Token equal to the session's token.
 * Otherwise replies itself: 401 (no, bad or expired session: the cookie is
 * cleared), 403 (CSRF token missing or wrong), 503 (Redis down). Holds r
 * across the Redis read; next runs at most once, from a callback. */
typedef void (*api_sess_next)(struct req *r);
void api_sess_resolve(struct req *r, api_sess_next next);
/* POST /ui/login {"key":"..."}: a key of the operator scope opens a session. */
void api_h_ui_login(struct req *r);
/* POST /ui/logout: ends the session (X-CSRF-Token required) and clears the cookie. */
void api_h_ui_logout(struct req *r);
/* GET /ui/api/session: {"name","csrf","scopes"} of the current session. */
void api_h_ui_session(struct req *r);

/* ---- inbound webhooks (api_webhook.c) ---------------------------------------------- */
/* Parse the webhook allowlists and trusted proxies into g; -1 after printing why. */
int api_webhook_init(struct api_global *g, const struct cfg *cfg);
void api_h_carrier_webhook(struct req *r);
void api_h_ml_notification(struct req *r);
void api_h_activation_status(struct req *r);
void api_h_offers(struct req *r);
void api_h_offer(struct req *r);
void api_h_account(struct req *r);
void api_h_account_transactions(struct req *r);
/* ---- the upstreams (api_upstreams.c) --------------------------------------------------- */
struct rds_reply;
/* GET /v1/upstreams (operator): per configured upstream its circuit, last call, last
 * success, calls, latency p50/p95/p99 from the duration histogram and rate-limit waits. */
void api_h_upstreams(struct req *r);
/* 1 when upstreams.<id>.url is set (id: enum cfg_ups_id): the API reports only those. */
int api_ups_configured(const struct cfg *c, int id);
/* The circuit (an enum ups_breaker_state) that an upstream's breaker hash says (its
 * HGETALL reply; NULL or empty: closed), on this host's clock. */
int api_ups_circuit(const struct rds_reply *br, int open_ms);
/* One read of api_ups_read_all, given to its callback, which frees it. */
enum api_ups_part { API_UPS_LAST, API_UPS_BREAKER };
struct api_ups_read {
    void *owner;                  /* the caller's, as passed */
    int id;                       /* enum cfg_ups_id */
    int part;                     /* enum api_ups_part: ups:{name}:last or ups:{name}:br */
};
typedef void (*api_ups_cb)(const struct rds_reply *reply, void *read);
/* HGETALL both hashes of every configured upstream (ups.h ups_status_key) on t->rds,
 * pipelined: cb runs once per read, in this order (each upstream's last call, then its
 * breaker), possibly inline when the link is down (reply NULL). Each read holds hold
 * when it is not NULL (the callback releases it). Returns how many went out. */
int api_ups_read_all(struct api_thread *t, api_ups_cb cb, void *owner, struct req *hold);

/* api_health.c */
void api_h_health(struct req *r);
void api_h_ready(struct req *r);
void api_h_metrics(struct req *r);
/* The process's metrics registry (g->met and the series ids in g), frozen; shared by
 * main.c and the fuzz harness so that both run the same front. */
struct met *api_metrics_registry(struct api_global *g, int nthreads);
int api_metrics_init(struct api_thread *t);
/* After the Redis links are closed (their callbacks have run). */
void api_metrics_free(struct api_thread *t);
/* Render a job status object (used by GET /v1/jobs/{id} and the dead list). */
void api_json_job_status(struct sbuf *b, const struct job_status *st, size_t payload_max);

#endif
