/* ups.h - one call pipeline for every upstream (marketplace, carriers, activation).
 *
 * A worker keeps one struct ups per upstream and thread. ups_run() takes a
 * batch of calls to that upstream and, per call:
 *   1. asks the circuit breaker (ups_breaker.c, shared by all workers in
 *      Redis): open -> the call is DEFERRED until the half-open time, no request
 *      made, no attempt spent; half-open -> exactly one call across all workers
 *      goes through as the probe, the others are deferred;
 *   2. takes a slot from the shared rate limit (ups_rate.c, GCRA in Redis):
 *      a short wait is slept (bounded by conf.rate_sleep_max_ms), a longer one
 *      DEFERS the call by that much;
 *   3. attaches the credentials (struct ups_auth: none, a static header, Basic,
 *      a bearer token or session from the shared token cache, ups_token.c);
 *   4. runs every admitted call concurrently through httpc, classifies it (with
 *      the call's body check), and on a 401 drops the token, refreshes it once
 *      (single-flight across workers) and retries that call once;
 *   5. records the outcome in the breaker (throttling is no failure; not sent,
 *      transient and unknown are) and in the communication log (ups_log.c,
 *      PostgreSQL comm_log, batched, URL without secrets, never Authorization).
 * The system-specific request and response shapes stay in the worker: the
 * pipeline gives hooks (auth vtable, body check), not carrier code.
 *
 * Redis keys (all workers share them; {name} is the upstream's name):
 *   ups:{name}:tok, ups:{name}:tok:stale, ups:{name}:tok:lock   token cache
 *   ups:{name}:br, ups:{name}:br:probe                           circuit breaker
 *   ups:{name}:rate                                              GCRA state
 *   ups:{name}:last                                              its last call
 *   ups:notify:<minute>                                          notification budget
 *
 * Threads: a struct ups, its rds, httpc and ups_log belong to one thread. */
#ifndef CV_UPS_H
#define CV_UPS_H

#include <stddef.h>
#include <stdint.h>

#include "httpc.h"
#include "rc.h"

struct db;
struct rds;
struct ups;
struct ups_call;

/* ---- configuration ------------------------------------------------------ */

/* One upstream's settings (the upstreams.<name> config group). Strings belong
 * to the caller and must outlive the struct ups. */
struct ups_conf {
    const char *name;          /* "mirakl", "tipsa", ...: Redis keys and comm_log */
    const char *url;           /* base URL; a call's path is appended */
    const char *auth_user;     /* shop key id, client id, login or user, by system */
    const char *auth_secret;   /* key, client secret or password: never logged or stored */
    int timeout_ms;            /* one call, all of it (0 = 10000) */
    int connect_timeout_ms;    /* 0 = timeout_ms */
    int rate_per_min;          /* shared by every worker; 0 = no limit */
    int rate_burst;            /* calls allowed at once (0 = 1) */
    int rate_sleep_max_ms;     /* a rate wait up to this is slept, longer defers (0 = 250) */
    int breaker_failures;      /* consecutive failures that open the circuit (0 = off) */
    double breaker_rate;       /* or this failure ratio (0..1) over the window ... */
    int breaker_window_s;      /* ... of this many seconds ... */
    int breaker_min_calls;     /* ... once it holds at least this many calls */
    int breaker_open_ms;       /* open this long, then one probe (0 = 30000) */
};

struct cfg;
/* Fill out from the upstreams.<name> group of c (id: enum cfg_ups_id). Strings
 * point into c, which must outlive out and every struct ups made from it.
 * rate_sleep_max_ms is left 0 (the default). */
void ups_conf_from_cfg(struct ups_conf *out, const struct cfg *c, int id);

/* ---- credentials -------------------------------------------------------- */

/* How an upstream authenticates: a small vtable. fetch_token is NULL for
 * static credentials (none, header, Basic). */
struct ups_auth {
    const char *kind;          /* "none", "header", "basic", "bearer", "soap-session" */
    /* Obtain a fresh token or session id from the upstream (use ups_call_raw for
     * the HTTP call so that it is logged). On CV_OK sets *token (malloc'd, the
     * caller frees) and *ttl_ms (> 0); on failure writes why into err (no
     * secrets) and returns the rc (CV_ERR_AUTH: the credentials are wrong). */
    enum cv_rc (*fetch_token)(struct ups *u, void *arg, char **token, int64_t *ttl_ms,
                              char *err, size_t err_len);
    /* Attach the credentials to one call: set c->auth_header, c->basic_*, or
     * replace the body (c->auth_body, malloc'd: a SOAP header with the session
     * id). token is NULL when fetch_token is NULL. */
    void (*apply)(struct ups *u, void *arg, struct ups_call *c, const char *token);
};

/* No credentials. */
extern const struct ups_auth ups_auth_none;
/* "Authorization: <auth_secret>" (Mirakl's shop key). */
extern const struct ups_auth ups_auth_header;
/* HTTP Basic with auth_user / auth_secret (Correos Express). */
extern const struct ups_auth ups_auth_basic;
/* "Authorization: Bearer <token>" from an OAuth2 client-credentials grant:
 * POST form grant_type=client_credentials, client_id=auth_user,
 * client_secret=auth_secret to the path given as the auth arg (a const char *,
 * say "/oauth/token"); reads access_token and expires_in. A system with
 * another grant (SEUR's password form, Mercado Livre's refresh token) keeps
 * this apply and brings its own fetch_token. */
extern const struct ups_auth ups_auth_bearer_cc;
/* The apply of a bearer token, for such vtables. */
void ups_auth_apply_bearer(struct ups *u, void *arg, struct ups_call *c, const char *token);

/* ---- one call ----------------------------------------------------------- */

enum ups_outcome {
    UPS_DONE = 0,     /* the request ran (or failed to be sent): see cls */
    UPS_DEFERRED,     /* not called (circuit open, rate wait, half-open probe busy,
                       * send_by_ms passed):
                       * run it again after delay_ms; spend no attempt */
    UPS_FAILED,       /* not called: we could not get credentials or reach Redis */
};

struct ups_call {
    /* in (strings belong to the caller until ups_run returns) */
    const char *method;
    const char *path;             /* appended to conf.url; a full http(s) URL is taken as is */
    const char *body;
    size_t body_len;
    enum httpc_ctype content_type;
    const char *const *headers;   /* NULL-terminated "Name: value" lines, or NULL */
    const char *idempotency_key;
    const char *traceparent;
    httpc_body_check body_check;
    void *body_check_arg;
    const char *job_id;           /* for comm_log (a UUID or NULL) */
    const char *trace_id;
    const char *order_id;
    int attempt;                  /* the job's attempt, for comm_log */
    /* Monotonic ms (clock_mono_ms); 0 = any time. A call that has not gone out
     * by then is not sent at all: it comes back DEFERRED ("lease spent"). The
     * worker sets it from the delivery's lease, so that a worker stalled past
     * the point where another one may own the job (SIGSTOP, swap, a long GC of
     * the host) makes no late, second effect upstream. */
    int64_t send_by_ms;
    /* set by the auth's apply (cleared by ups_run before each send) */
    char auth_header[1024];       /* one header line, or "" */
    const char *basic_user;
    const char *basic_pass;
    char *auth_body;              /* a replacement body, malloc'd (ups_run frees it) */
    /* out */
    enum ups_outcome outcome;
    enum httpc_class cls;         /* UPS_DONE only */
    enum cv_rc rc;                /* CV_OK, httpc_class_rc(cls); CV_ERR_RATE when deferred */
    int status;
    int64_t retry_after_ms;
    int64_t delay_ms;             /* deferred: circuit open / rate wait; throttled: Retry-After */
    int64_t duration_ms;
    int retried_auth;             /* 1 when a 401 made us refresh and send it again */
    char *resp;                   /* response body (NUL-terminated) or NULL; free with ups_call_cleanup */
    size_t resp_len;
    char error[160];              /* why (no secrets) */
};

/* Free a call's response. */
void ups_call_cleanup(struct ups_call *c);

/* ---- the pipeline ------------------------------------------------------- */

struct ups_log;

/* A pipeline for one upstream. auth NULL = ups_auth_none; auth_arg goes to
 * its hooks. rds, http and log (may be NULL: no comm log) belong to the caller
 * and must outlive u; one thread. Free with ups_free. */
struct ups *ups_new(const struct ups_conf *conf, const struct ups_auth *auth, void *auth_arg,
                    struct rds *rds, struct httpc *http, struct ups_log *log);
void ups_free(struct ups *u);

const struct ups_conf *ups_conf_of(const struct ups *u);
struct rds *ups_rds(struct ups *u);

/* Run n calls (see the top of this file). Every call gets its outcome. */
void ups_run(struct ups *u, struct ups_call *calls, size_t n);

/* Calls to several upstreams at once: each group goes through its own
 * breaker, rate limit and credentials, and then every call that may go is
 * sent in one wave, so a batch that posts to four carriers waits for the
 * slowest, not for the sum. The upstreams must share one httpc. */
struct ups_group {
    struct ups *u;
    struct ups_call *calls;
    size_t n;
};
void ups_run_groups(const struct ups_group *groups, size_t ng);

/* One call without breaker, rate limit or auth (the token endpoint itself),
 * logged in comm_log. The caller fills an httpc_req; the upstream's timeouts
 * apply when the request has none. Free the response with httpc_req_cleanup. */
void ups_call_raw(struct ups *u, struct httpc_req *r);

/* ---- token cache (ups_token.c) ---------------------------------------- */

/* The current token, fetched once across all workers when there is none:
 * one worker takes the refresh lock (SET NX PX) and fetches; the others use the
 * previous token while it is still valid, or wait (polling, at most the
 * upstream's timeout) for the new one. *token is malloc'd (free it). */
enum cv_rc ups_token_get(struct ups *u, char **token, char *err, size_t err_len);
/* Forget token after the upstream refused it (401), unless another worker
 * has already replaced it. */
void ups_token_drop(struct ups *u, const char *token);

/* ---- circuit breaker (ups_breaker.c) ------------------------------------ */

enum ups_breaker_state { UPS_BREAKER_CLOSED, UPS_BREAKER_OPEN, UPS_BREAKER_HALF_OPEN };

/* The Redis key ups:{name}:<suffix> of an upstream's shared state, for
 * readers outside the pipeline (the API's health and metrics): suffix "br",
 * the breaker's hash (state, opened_at); "last", the last call's (at_ms,
 * latency_ms, status, class, ok_at_ms). */
void ups_status_key(const char *name, const char *suffix, char *buf, size_t len);
const char *ups_breaker_state_str(enum ups_breaker_state s);

/* May a call go now? Returns CV_OK with *probe = 1 when this call is the one
 * half-open probe; CV_ERR_RATE with *wait_ms when the circuit is open (or
 * another worker holds the probe); CV_ERR_IO when Redis failed (then the
 * call goes: a broken breaker must not stop all traffic). */
enum cv_rc ups_breaker_allow(struct ups *u, int *probe, int64_t *wait_ms);
/* Count one outcome (NOT_SENT, TRANSIENT and UNKNOWN fail; THROTTLED counts
 * for nothing; anything else is a success). probe: the call was the probe. */
void ups_breaker_record(struct ups *u, enum httpc_class cls, int probe);
/* The state as Redis holds it (for /health); CLOSED when unknown. */
enum ups_breaker_state ups_breaker_state(struct ups *u);

/* ---- rate limit (ups_rate.c) ------------------------------------------- */

/* Take one slot of the shared budget. Returns 1 and *wait_ms (0 = now) when a
 * slot is reserved for now + *wait_ms (wait at most max_wait_ms, then send);
 * 0 and *wait_ms when the next slot is further than max_wait_ms (nothing is
 * reserved); -1 when Redis failed (the call goes). */
int ups_rate_take(struct ups *u, int64_t max_wait_ms, int64_t *wait_ms);

/* ---- communication log (ups_log.c) ------------------------------------- */

struct ups_log_row {
    int64_t at_ms;                /* wall clock at the start of the call */
    const char *upstream;
    const char *method;
    const char *url;              /* redacted here: userinfo and secret query values go */
    int status;
    const char *cls;              /* httpc_class_str() or "deferred" */
    int64_t duration_ms;
    int attempt;
    const char *job_id;
    const char *trace_id;
    const char *order_id;
    const char *error;
};

/* A buffer of comm_log rows written to PostgreSQL in batches through db, a
 * connection that runs no order transactions (so a rolled-back step keeps its
 * record). Rows are written when flush_rows are buffered (0 = 64), by
 * ups_log_flush, and by ups_log_free. Free with ups_log_free. */
struct ups_log *ups_log_new(struct db *db, int flush_rows);
void ups_log_free(struct ups_log *l);
/* Copy one row into the buffer (redacting the URL); may flush. */
void ups_log_add(struct ups_log *l, const struct ups_log_row *row);
/* Write the buffered rows in one INSERT. On failure they are kept (up to a
 * bound, then the oldest are dropped and counted in a log line). */
enum cv_rc ups_log_flush(struct ups_log *l);
/* Copy url into out without userinfo and with the values of query parameters
 * whose names hint at secrets (token, key, secret, password, signature, auth,
 * code) replaced by "***". */
void ups_url_redact(const char *url, char *out, size_t out_len);

/* ---- error notification (ups_notify.c) ---------------------------------- */

/* POST {"text": text} (Slack-compatible) to conf->url of the "notify"
 * upstream, at most per_min times a minute across all workers (a Redis counter);
 * short timeout, no retry, result ignored. Returns 1 when sent (2xx), 0 when
 * skipped (no url, over budget) or failed. */
int ups_notify_failure(struct rds *rds, struct httpc *http, const struct ups_conf *conf,
                       int per_min, const char *text);

/* Record calls made outside ups_run (httpc_run'd by the caller: the
 * activation system's, which keeps its own money-specific classification) in
 * this upstream's figures: its last call and the duration histogram, as
 * ups_run records its own. No breaker, no rate limit, no comm_log. */
void ups_observe(struct ups *u, const struct httpc_req *reqs, size_t n);

#endif
