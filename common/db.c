/* db.c - PostgreSQL through libpq: a sync connection and an async one on a
 * libevent loop. The only file that includes libpq-fe.h.
 *
 * A struct db_res is a PGresult seen through our own incomplete type: the
 * accessors cast it back, so a result costs no extra allocation. */
#include "db.h"

#include <event2/event.h>
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mem.h"

#define ASYNC_BACKOFF_MIN_MS 100
#define ASYNC_BACKOFF_MAX_MS 2000
#define ASYNC_CONNECT_MIN_MS 1000     /* a connect attempt gets at least this long */
#define LAST_ERROR_MAX 512
#define WAIT_SLICE_MS 100             /* sync waits ask should_abort this often */
/* TCP defaults of every connection (a DSN may override them): a dead peer is
 * noticed in ~25 s on an idle link, and unacknowledged data fails in 15 s. */
#define KEEPALIVES_IDLE_S "10"
#define KEEPALIVES_INTERVAL_S "5"
#define KEEPALIVES_COUNT "3"
#define TCP_USER_TIMEOUT_MS "15000"

/* ---- results ---------------------------------------------------------- */

static const PGresult *pg(const struct db_res *r)
{
    return (const PGresult *)r;
}

int db_res_rows(const struct db_res *r)
{
    return r ? PQntuples(pg(r)) : 0;
}

int db_res_cols(const struct db_res *r)
{
    return r ? PQnfields(pg(r)) : 0;
}

const char *db_res_get(const struct db_res *r, int row, int col)
{
    if (!r || row < 0 || col < 0 || row >= PQntuples(pg(r)) || col >= PQnfields(pg(r)))
        return NULL;
    if (PQgetisnull(pg(r), row, col))
        return NULL;
    return PQgetvalue(pg(r), row, col);
}

const char *db_res_colname(const struct db_res *r, int col)
{
    return r ? PQfname(pg(r), col) : NULL;
}

int db_res_col(const struct db_res *r, const char *name)
{
    if (!r || !name)
        return -1;
    /* PQfnumber folds unquoted names to lower case; ours are lower case anyway. */
    return PQfnumber(pg(r), name);
}

void db_res_free(struct db_res *r)
{
    PQclear((PGresult *)r);
}

/* ---- error classification --------------------------------------------- */

/* Map a SQLSTATE to our codes. NULL (no SQLSTATE: libpq itself failed, the
 * link broke) is connection trouble. Serialization failures and deadlocks are
 * retryable as a whole, so they are CV_ERR_IO like a lost link. */
TESTABLE enum cv_rc db_classify_sqlstate(const char *st);
TESTABLE enum cv_rc db_classify_sqlstate(const char *st)
{
    if (!st || strlen(st) != 5)
        return CV_ERR_IO;
    if (strncmp(st, "08", 2) == 0)          /* connection exception */
        return CV_ERR_IO;
    if (strncmp(st, "53", 2) == 0)          /* insufficient resources */
        return CV_ERR_IO;
    if (strncmp(st, "57", 2) == 0)          /* admin/crash shutdown, cannot connect now, canceled */
        return CV_ERR_IO;
    if (strncmp(st, "58", 2) == 0 || strncmp(st, "XX", 2) == 0) /* system / internal error */
        return CV_ERR_IO;
    if (strncmp(st, "40", 2) == 0)          /* serialization failure, deadlock, unknown outcome */
        return CV_ERR_IO;
    if (strcmp(st, "55P03") == 0)           /* lock not available */
        return CV_ERR_IO;
    if (strcmp(st, "23505") == 0 || strcmp(st, "23P01") == 0)
        return CV_ERR_CONFLICT;
    if (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0)
        return CV_ERR_INVALID;
    if (strncmp(st, "42", 2) == 0)
        return CV_ERR_INTERNAL;
    return CV_ERR_INTERNAL;
}

/* Copy libpq's text into out as one line without the trailing newline. */
static void one_line(char *out, size_t cap, const char *msg)
{
    size_t o = 0;
    if (!msg || !*msg)
        msg = "unknown error";
    for (; *msg && o + 1 < cap; msg++)
        out[o++] = (*msg == '\n' || *msg == '\r') ? ' ' : *msg;
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

/* Classify a failed result (res may be NULL), remember the message in
 * last (LAST_ERROR_MAX bytes) and log it once. */
static enum cv_rc fail_result(PGconn *conn, const PGresult *res, const char *sql, char *last)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg && res)
        msg = PQresultErrorMessage(res);
    if ((!msg || !*msg) && conn)
        msg = PQerrorMessage(conn);
    enum cv_rc rc = db_classify_sqlstate(st);
    if (res && !st && PQresultStatus(res) != PGRES_FATAL_ERROR &&
        PQresultStatus(res) != PGRES_NONFATAL_ERROR && (!conn || PQstatus(conn) == CONNECTION_OK)) {
        /* COPY or another status we never ask for: a bug on our side */
        rc = CV_ERR_INTERNAL;
        msg = PQresStatus(PQresultStatus(res));
    }
    if (conn && PQstatus(conn) == CONNECTION_BAD)
        rc = CV_ERR_IO;
    one_line(last, LAST_ERROR_MAX, msg);
    char b1[LOG_STR_MAX], b2[LOG_STR_MAX];
    char head[72];
    one_line(head, sizeof(head), sql ? sql : "");
    LOG_ERROR("db.error", "sqlstate=%s rc=%s msg=%s sql=%s", st ? st : "none", cv_rc_str(rc),
              log_str(b1, last), log_str(b2, head));
    return rc;
}

static int result_ok(const PGresult *res)
{
    ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_EMPTY_QUERY;
}

/* Server notices (e.g. "relation already exists, skipping") go to the debug log,
 * not raw to stderr. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    char line[LAST_ERROR_MAX], b[LOG_STR_MAX];
    one_line(line, sizeof(line), message);
    LOG_DEBUG("db.notice", "msg=%s", log_str(b, line));
}

/* The host and database a connection points at, for logs (never the DSN:
 * it may hold a password). */
static void log_conn_failure(const char *evt, PGconn *conn)
{
    char line[LAST_ERROR_MAX], b1[LOG_STR_MAX], b2[LOG_STR_MAX], b3[LOG_STR_MAX];
    one_line(line, sizeof(line), conn ? PQerrorMessage(conn) : "out of memory");
    const char *host = conn ? PQhost(conn) : NULL;
    const char *dbname = conn ? PQdb(conn) : NULL;
    LOG_WARN(evt, "host=%s db=%s msg=%s", log_str(b1, host ? host : ""),
             log_str(b2, dbname ? dbname : ""), log_str(b3, line));
}

/* ---- sync ---------------------------------------------------------------
 *
 * The sync connection never blocks without a bound (issue 5: a blackholed
 * server, one that accepts TCP and never answers, hung a worker for good: no
 * heartbeats, SIGTERM ignored). The connection is non-blocking and every wait
 * is a poll() on its socket in slices of at most WAIT_SLICE_MS:
 *
 *   - connect: PQconnectStartParams + PQconnectPoll, bounded by
 *     connect_timeout_ms (libpq's own connect_timeout counts whole seconds,
 *     at least 2, and cannot be interrupted);
 *   - a statement: PQsendQueryParams, then flush and read until the last
 *     result, bounded by stmt_timeout_ms from the send;
 *   - between slices should_abort(arg) is asked, so a stopping process gives
 *     up a blocked wait at once. It is asked only when a slice ended with the
 *     socket still silent: a server that answers is never cut short.
 *
 * On a timeout or an abort the connection is closed, not cancelled: PQcancel
 * opens a second connection and waits for the server without any timeout, so
 * against a blackholed server it would hang just the same. The statement may
 * or may not have been executed (like any lost link): the caller gets
 * CV_ERR_IO and the next call reconnects. TCP keepalives and tcp_user_timeout
 * go into the conninfo (of the async connection too) as defaults the DSN may
 * override, so a dead peer is also noticed on an idle link. */

struct db {
    PGconn *conn;              /* NULL after a timeout closed it */
    char *dsn;
    int connect_timeout_ms;    /* 0: no bound */
    int stmt_timeout_ms;       /* 0: no bound */
    int (*should_abort)(void *);
    void *abort_arg;
    char last_error[LAST_ERROR_MAX];
};

enum wait_rc { WAIT_READY, WAIT_TIMEOUT, WAIT_ABORT, WAIT_ERROR };

static int64_t deadline_in(int ms)
{
    return ms > 0 ? clock_mono_ms() + ms : 0;
}

/* Wait until fd is ready for events, deadline_ms passes (0: never) or
 * should_abort says so after a silent slice. */
static enum wait_rc wait_sock(const struct db *d, int fd, short events, int64_t deadline_ms)
{
    if (fd < 0)
        return WAIT_ERROR;
    for (;;) {
        int slice = WAIT_SLICE_MS;
        if (deadline_ms) {
            int64_t left = deadline_ms - clock_mono_ms();
            if (left <= 0)
                return WAIT_TIMEOUT;
            if (left < slice)
                slice = (int)left;
        }
        struct pollfd pfd = { .fd = fd, .events = events };
        int n = poll(&pfd, 1, slice);
        if (n > 0)
            return WAIT_READY;      /* POLLERR/POLLHUP too: libpq reports the error */
        if (n < 0 && errno != EINTR)
            return WAIT_ERROR;
        /* a silent slice, or a signal (SIGTERM lands here at once) */
        if (d->should_abort && d->should_abort(d->abort_arg))
            return WAIT_ABORT;
    }
}

/* Remember why a wait gave up, log it once and close the link. */
static void give_up(struct db *d, enum wait_rc w, const char *what, int timeout_ms,
                    const char *sql)
{
    char b1[LOG_STR_MAX], b2[LOG_STR_MAX], head[72];
    if (w == WAIT_TIMEOUT)
        snprintf(d->last_error, sizeof(d->last_error), "%s timed out after %d ms", what,
                 timeout_ms);
    else if (w == WAIT_ABORT)
        snprintf(d->last_error, sizeof(d->last_error), "%s abandoned: the process is stopping",
                 what);
    else
        snprintf(d->last_error, sizeof(d->last_error), "%s: poll failed: %s", what,
                 strerror(errno));
    one_line(head, sizeof(head), sql ? sql : "");
    LOG_WARN(w == WAIT_ABORT ? "db.aborted" : "db.timeout", "msg=%s sql=%s",
             log_str(b1, d->last_error), log_str(b2, head));
    PQfinish(d->conn);
    d->conn = NULL;
}

/* Begin a non-blocking connect with our TCP defaults (sync and async). */
static PGconn *connect_start(const char *dsn)
{
    /* Ours first, the DSN last: libpq keeps the last value of a repeated key,
     * so the DSN (expanded in place of dbname) may override every default. */
    static const char *const keys[] = { "keepalives", "keepalives_idle", "keepalives_interval",
                                        "keepalives_count", "tcp_user_timeout", "dbname", NULL };
    const char *const vals[] = { "1", KEEPALIVES_IDLE_S, KEEPALIVES_INTERVAL_S,
                                 KEEPALIVES_COUNT, TCP_USER_TIMEOUT_MS, dsn, NULL };
    return PQconnectStartParams(keys, vals, 1);
}

/* Open a new connection for d within connect_timeout_ms. NULL on failure
 * (logged as evt, d->last_error set). */
static PGconn *open_conn(struct db *d, const char *evt)
{
    int64_t deadline = deadline_in(d->connect_timeout_ms);
    PGconn *conn = connect_start(d->dsn);
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING; /* as libpq's docs say to start */
    if (!conn || PQstatus(conn) == CONNECTION_BAD)
        ps = PGRES_POLLING_FAILED;
    while (ps == PGRES_POLLING_READING || ps == PGRES_POLLING_WRITING) {
        enum wait_rc w = wait_sock(d, PQsocket(conn), ps == PGRES_POLLING_READING ? POLLIN
                                                                                   : POLLOUT,
                                   deadline);
        if (w != WAIT_READY) {
            char b1[LOG_STR_MAX], b2[LOG_STR_MAX];
            const char *host = PQhost(conn);
            if (w == WAIT_TIMEOUT)
                snprintf(d->last_error, sizeof(d->last_error), "connect timed out after %d ms",
                         d->connect_timeout_ms);
            else
                snprintf(d->last_error, sizeof(d->last_error),
                         "connect abandoned: %s", w == WAIT_ABORT ? "the process is stopping"
                                                                  : "poll failed");
            LOG_WARN(evt, "host=%s msg=%s", log_str(b1, host ? host : ""),
                     log_str(b2, d->last_error));
            goto fail;
        }
        ps = PQconnectPoll(conn);
    }
    if (ps != PGRES_POLLING_OK || PQsetnonblocking(conn, 1) != 0) {
        one_line(d->last_error, sizeof(d->last_error),
                 conn ? PQerrorMessage(conn) : "out of memory");
        log_conn_failure(evt, conn);
        goto fail;
    }
    PQsetNoticeProcessor(conn, on_notice, NULL);
    return conn;
fail:
    PQfinish(conn);
    return NULL;
}

struct db *db_new(const char *dsn, int connect_timeout_ms, int stmt_timeout_ms)
{
    struct db *d = xcalloc(1, sizeof(*d));
    d->dsn = xstrdup(dsn ? dsn : "");
    d->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : 0;
    d->stmt_timeout_ms = stmt_timeout_ms > 0 ? stmt_timeout_ms : 0;
    d->conn = open_conn(d, "db.connect_failed");   /* NULL is fine: db_ensure retries */
    if (d->conn)
        LOG_DEBUG("db.connected", "host=%s", PQhost(d->conn) ? PQhost(d->conn) : "");
    return d;
}

struct db *db_connect_timeout(const char *dsn, int connect_timeout_ms, int stmt_timeout_ms)
{
    struct db *d = db_new(dsn, connect_timeout_ms, stmt_timeout_ms);
    if (!d->conn) {
        db_free(d);
        return NULL;
    }
    return d;
}

struct db *db_connect(const char *dsn)
{
    return db_connect_timeout(dsn, DB_CONNECT_TIMEOUT_MS, DB_STMT_TIMEOUT_MS);
}

void db_set_abort(struct db *d, int (*should_abort)(void *), void *arg)
{
    d->should_abort = should_abort;
    d->abort_arg = arg;
}

void db_free(struct db *d)
{
    if (!d)
        return;
    PQfinish(d->conn);
    free(d->dsn);
    free(d);
}

int db_ensure(struct db *d)
{
    if (d->conn && PQstatus(d->conn) == CONNECTION_OK)
        return 0;
    PQfinish(d->conn);
    d->conn = open_conn(d, "db.reconnect_failed");
    if (!d->conn)
        return -1;
    LOG_INFO("db.reconnected", "host=%s", PQhost(d->conn) ? PQhost(d->conn) : "");
    return 0;
}

const char *db_last_error(const struct db *d)
{
    return d ? d->last_error : "";
}

/* Send one statement (script: several, no parameters) and collect its
 * results within stmt_timeout_ms. The first error wins when there are
 * several results, else the last result is kept. */
static struct db_res *run(struct db *d, const char *sql, int nparams, const char *const *params,
                          int script, enum cv_rc *rc)
{
    PGresult *res = NULL;
    *rc = CV_ERR_IO;
    d->last_error[0] = '\0';
    if (db_ensure(d))
        goto out;
    int sent = script ? PQsendQuery(d->conn, sql)
                      : PQsendQueryParams(d->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (!sent) {
        *rc = fail_result(d->conn, NULL, sql, d->last_error);
        goto out;
    }
    int64_t deadline = deadline_in(d->stmt_timeout_ms);
    int flushing = 1;
    for (;;) {
        if (flushing) {
            int f = PQflush(d->conn);
            if (f < 0) {
                *rc = fail_result(d->conn, NULL, sql, d->last_error);
                goto out;
            }
            flushing = f == 1;
        }
        if (!flushing && !PQisBusy(d->conn)) {
            PGresult *r = PQgetResult(d->conn);
            if (!r)
                break;                  /* the statement is complete */
            if (res && !result_ok(res)) {
                PQclear(r);
            } else {
                PQclear(res);
                res = r;
            }
            continue;
        }
        enum wait_rc w = wait_sock(d, PQsocket(d->conn), POLLIN | (flushing ? POLLOUT : 0),
                                   deadline);
        if (w != WAIT_READY) {
            give_up(d, w, "statement", d->stmt_timeout_ms, sql);
            goto out;
        }
        if (!PQconsumeInput(d->conn)) {
            *rc = fail_result(d->conn, NULL, sql, d->last_error);
            goto out;
        }
    }
    if (!result_ok(res)) {
        *rc = fail_result(d->conn, res, sql, d->last_error);
        goto out;
    }
    *rc = CV_OK;
out:
    if (*rc != CV_OK) {
        PQclear(res);
        res = NULL;
    }
    return (struct db_res *)res;
}

struct db_res *db_exec(struct db *d, const char *sql, int nparams, const char *const *params,
                       enum cv_rc *rc)
{
    return run(d, sql, nparams, params, 0, rc);
}

enum cv_rc db_run(struct db *d, const char *sql, int nparams, const char *const *params)
{
    enum cv_rc rc;
    db_res_free(db_exec(d, sql, nparams, params, &rc));
    return rc;
}

enum cv_rc db_exec_script(struct db *d, const char *sql)
{
    enum cv_rc rc;
    db_res_free(run(d, sql, 0, NULL, 1, &rc));
    return rc;
}

/* ---- async ---------------------------------------------------------------
 *
 * States: DOWN (no link; ev_timer waits out the backoff), CONNECTING
 * (PQconnectPoll driven by one-shot socket events; ev_timer bounds the
 * attempt) and READY. Statements wait in a FIFO and are sent one at a time.
 * Every statement has a deadline of queue time + timeout_ms; since the
 * timeout is the same for all, the oldest statement has the earliest deadline,
 * so one timer (ev_deadline) serves the whole queue.
 *
 *   - queued while DOWN:             fails with CV_ERR_IO (on the next loop turn)
 *   - queued while CONNECTING:       waits, bounded by its deadline
 *   - the link drops mid-statement:  that statement fails with CV_ERR_IO (it may
 *                                    or may not have committed: callers must
 *                                    use idempotent statements); the link goes
 *                                    DOWN and every queued statement fails too
 *   - a connect attempt fails:       DOWN, every queued statement fails
 *   - the deadline of the statement in flight passes: it fails with CV_ERR_IO
 *                                    and the link is dropped and reopened at
 *                                    once (PQcancel would block the loop);
 *                                    queued statements keep waiting
 *   - the deadline of a queued one passes: it fails with CV_ERR_IO
 *
 * Callbacks never run inside db_async_query: failures found there are
 * delivered from ev_fail on the next loop turn. A callback may queue more
 * statements or free the db_async. */

enum ast { AST_DOWN, AST_CONNECTING, AST_READY };

struct dbq {
    struct dbq *next;
    char *sql;
    int nparams;
    char **params;
    db_cb cb;
    void *arg;
    int64_t deadline_ms;       /* monotonic */
};

struct db_async {
    struct event_base *base;
    char *dsn;
    int timeout_ms;
    enum ast st;
    PGconn *conn;
    struct event *ev_io;       /* one-shot socket event while connecting */
    struct event *ev_read;     /* persistent, while READY */
    struct event *ev_write;    /* one-shot, while a send is not flushed */
    struct event *ev_timer;    /* backoff (DOWN) or connect deadline (CONNECTING) */
    struct event *ev_deadline; /* deadline of the oldest statement */
    struct event *ev_fail;     /* delivers failures found outside a callback */
    int backoff_ms;
    int flushing;              /* PQflush said 1: wait for writable */
    struct dbq *inflight;
    PGresult *res;             /* result of inflight collected so far */
    struct dbq *head, *tail;   /* waiting to be sent */
    struct dbq *fhead, *ftail; /* failed, callback not yet run */
    int depth;                 /* > 0 while inside one of our event handlers */
    int gone;                  /* db_async_free was called inside a callback */
    char last_error[LAST_ERROR_MAX];
};

static void start_connect(struct db_async *a);
static void pump(struct db_async *a);

static void q_free(struct dbq *q)
{
    if (!q)
        return;
    for (int i = 0; i < q->nparams; i++)
        free(q->params[i]);
    free(q->params);
    free(q->sql);
    free(q);
}

static void q_append(struct dbq **head, struct dbq **tail, struct dbq *q)
{
    q->next = NULL;
    if (*tail)
        (*tail)->next = q;
    else
        *head = q;
    *tail = q;
}

static void drop_list(struct dbq *q)
{
    while (q) {
        struct dbq *next = q->next;
        q_free(q);
        q = next;
    }
}

static void free_event(struct event **ev)
{
    if (*ev) {
        event_free(*ev);
        *ev = NULL;
    }
}

static void timer_in(struct event *ev, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
                          .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(ev, &tv);
}

/* Run q's callback and free q. Returns 1 when the callback freed a (the
 * caller must stop touching a). */
static int complete(struct db_async *a, struct dbq *q, enum cv_rc rc, const PGresult *res)
{
    if (q->cb)
        q->cb(q->arg, rc, rc == CV_OK ? (const struct db_res *)res : NULL);
    q_free(q);
    return a->gone;
}

/* Move every queued statement to the failed list and schedule delivery. */
static void fail_queued(struct db_async *a)
{
    while (a->head) {
        struct dbq *q = a->head;
        a->head = q->next;
        q_append(&a->fhead, &a->ftail, q);
    }
    a->tail = NULL;
    if (a->fhead)
        event_active(a->ev_fail, EV_TIMEOUT, 0);
}

/* Re-arm ev_deadline for the oldest statement (in flight, else head). */
static void arm_deadline(struct db_async *a)
{
    const struct dbq *q = a->inflight ? a->inflight : a->head;
    evtimer_del(a->ev_deadline);
    if (q)
        timer_in(a->ev_deadline, q->deadline_ms - clock_mono_ms());
}

static void close_link(struct db_async *a)
{
    free_event(&a->ev_io);
    free_event(&a->ev_read);
    free_event(&a->ev_write);
    PQclear(a->res);
    a->res = NULL;
    a->flushing = 0;
    PQfinish(a->conn);
    a->conn = NULL;
}

/* Enter DOWN: fail the queue, retry after the backoff. */
static void go_down(struct db_async *a)
{
    close_link(a);
    a->st = AST_DOWN;
    fail_queued(a);
    evtimer_del(a->ev_timer);
    timer_in(a->ev_timer, a->backoff_ms);
    a->backoff_ms *= 2;
    if (a->backoff_ms > ASYNC_BACKOFF_MAX_MS)
        a->backoff_ms = ASYNC_BACKOFF_MAX_MS;
}

/* The link broke (or timed out) while a statement may be in flight: fail
 * it and either go DOWN or reconnect at once. Returns 1 when a was freed. */
static int link_lost(struct db_async *a, int reconnect_now)
{
    struct dbq *q = a->inflight;
    a->inflight = NULL;
    if (reconnect_now) {
        close_link(a);
        start_connect(a);
    } else {
        go_down(a);
    }
    arm_deadline(a);
    return q ? complete(a, q, CV_ERR_IO, NULL) : 0;
}

static void on_fail(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct db_async *a = arg;
    /* Only what failed before this turn: a callback that queues again while
     * the link is down is answered on the next turn, not in a busy loop. */
    struct dbq *list = a->fhead;
    a->fhead = a->ftail = NULL;
    a->depth++;
    while (list && !a->gone) {
        struct dbq *q = list;
        list = q->next;
        complete(a, q, CV_ERR_IO, NULL);
    }
    drop_list(list);
    a->depth--;
    if (a->gone && a->depth == 0)
        db_async_free(a);
}

/* Send the next statement when the link is idle. Never runs a callback
 * (db_async_query calls it): a statement that cannot go out is failed
 * through ev_fail. */
static void pump(struct db_async *a)
{
    if (a->st != AST_READY || a->inflight || !a->head)
        return;
    struct dbq *q = a->head;
    a->head = q->next;
    if (!a->head)
        a->tail = NULL;
    int f = -1;
    if (PQsendQueryParams(a->conn, q->sql, q->nparams, NULL, (const char *const *)q->params,
                          NULL, NULL, 0))
        f = PQflush(a->conn);
    if (f < 0) {
        fail_result(a->conn, NULL, q->sql, a->last_error);
        q_append(&a->fhead, &a->ftail, q);
        event_active(a->ev_fail, EV_TIMEOUT, 0);
        if (PQstatus(a->conn) == CONNECTION_BAD)
            go_down(a);
        return;
    }
    a->inflight = q;
    a->flushing = f == 1;
    if (a->flushing)
        event_add(a->ev_write, NULL);
}

/* Collect results of the statement in flight; run its callback when done.
 * Returns 1 when a was freed. */
static int drain(struct db_async *a)
{
    while (a->inflight && !PQisBusy(a->conn)) {
        PGresult *r = PQgetResult(a->conn);
        if (r) {
            /* one statement gives one result; keep the first error if several */
            if (a->res && !result_ok(a->res)) {
                PQclear(r);
            } else {
                PQclear(a->res);
                a->res = r;
            }
            continue;
        }
        /* NULL: the statement is complete */
        struct dbq *q = a->inflight;
        PGresult *res = a->res;
        a->inflight = NULL;
        a->res = NULL;
        enum cv_rc rc = CV_OK;
        if (!result_ok(res))
            rc = fail_result(a->conn, res, q->sql, a->last_error);
        if (PQstatus(a->conn) == CONNECTION_BAD) {
            rc = CV_ERR_IO;
            go_down(a);
        }
        arm_deadline(a);
        int freed = complete(a, q, rc, res);
        PQclear(res);
        if (freed)
            return 1;
        pump(a);
        arm_deadline(a);
    }
    return 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct db_async *a = arg;
    a->depth++;
    if (!PQconsumeInput(a->conn) || PQstatus(a->conn) == CONNECTION_BAD) {
        if (a->inflight)
            fail_result(a->conn, NULL, a->inflight->sql, a->last_error);
        else
            log_conn_failure("db.disconnected", a->conn);
        link_lost(a, 0);
        goto out;
    }
    if (a->flushing) {
        int f = PQflush(a->conn);
        if (f < 0) {
            link_lost(a, 0);
            goto out;
        }
        a->flushing = f == 1;
    }
    drain(a);
out:
    a->depth--;
    if (a->gone && a->depth == 0)
        db_async_free(a);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct db_async *a = arg;
    a->depth++;
    int f = PQflush(a->conn);
    if (f < 0) {
        fail_result(a->conn, NULL, a->inflight ? a->inflight->sql : NULL, a->last_error);
        link_lost(a, 0);
        goto out;
    }
    a->flushing = f == 1;
    if (a->flushing)
        event_add(a->ev_write, NULL);
out:
    a->depth--;
    if (a->gone && a->depth == 0)
        db_async_free(a);
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg);

/* Wait for the socket as PQconnectPoll asked. The socket may change between
 * polls, so the event is made anew each time. */
static void connect_wait(struct db_async *a, short what)
{
    free_event(&a->ev_io);
    a->ev_io = event_new(a->base, PQsocket(a->conn), what, on_connect_io, a);
    CV_ASSERT(a->ev_io);
    event_add(a->ev_io, NULL);
}

static void connected(struct db_async *a)
{
    free_event(&a->ev_io);
    evtimer_del(a->ev_timer);
    if (PQsetnonblocking(a->conn, 1) != 0) {
        log_conn_failure("db.connect_failed", a->conn);
        go_down(a);
        return;
    }
    PQsetNoticeProcessor(a->conn, on_notice, NULL);
    int fd = PQsocket(a->conn);
    a->ev_read = event_new(a->base, fd, EV_READ | EV_PERSIST, on_read, a);
    a->ev_write = event_new(a->base, fd, EV_WRITE, on_write, a);
    CV_ASSERT(a->ev_read && a->ev_write);
    event_add(a->ev_read, NULL);
    a->st = AST_READY;
    a->backoff_ms = ASYNC_BACKOFF_MIN_MS;
    char b[LOG_STR_MAX];
    LOG_INFO("db.connected", "host=%s async=1", log_str(b, PQhost(a->conn) ? PQhost(a->conn) : ""));
    pump(a);
    arm_deadline(a);
}

static void connect_step(struct db_async *a)
{
    switch (PQconnectPoll(a->conn)) {
    case PGRES_POLLING_READING:
        connect_wait(a, EV_READ);
        break;
    case PGRES_POLLING_WRITING:
        connect_wait(a, EV_WRITE);
        break;
    case PGRES_POLLING_OK:
        connected(a);
        break;
    default:
        log_conn_failure("db.connect_failed", a->conn);
        go_down(a);
        break;
    }
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct db_async *a = arg;
    a->depth++;
    connect_step(a);
    a->depth--;
    if (a->gone && a->depth == 0)
        db_async_free(a);
}

/* Begin a non-blocking connect. Note that libpq resolves a host name with a
 * blocking lookup here: give hostaddr or an IP (or a socket dir) in the DSN. */
static void start_connect(struct db_async *a)
{
    evtimer_del(a->ev_timer);
    a->conn = connect_start(a->dsn);
    if (!a->conn || PQstatus(a->conn) == CONNECTION_BAD) {
        log_conn_failure("db.connect_failed", a->conn);
        go_down(a);
        return;
    }
    a->st = AST_CONNECTING;
    int limit_ms = a->timeout_ms < ASYNC_CONNECT_MIN_MS ? ASYNC_CONNECT_MIN_MS : a->timeout_ms;
    timer_in(a->ev_timer, limit_ms);
    /* as if PQconnectPoll had returned PGRES_POLLING_WRITING */
    connect_wait(a, EV_WRITE);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct db_async *a = arg;
    a->depth++;
    if (a->st == AST_DOWN) {
        start_connect(a);
    } else if (a->st == AST_CONNECTING) {
        char b[LOG_STR_MAX];
        LOG_WARN("db.connect_failed", "host=%s msg=\"connect timed out\"",
                 log_str(b, a->conn && PQhost(a->conn) ? PQhost(a->conn) : ""));
        go_down(a);
    }
    a->depth--;
    if (a->gone && a->depth == 0)
        db_async_free(a);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct db_async *a = arg;
    int64_t now = clock_mono_ms();
    a->depth++;
    if (a->inflight && a->inflight->deadline_ms <= now) {
        char b[LOG_STR_MAX], head[72];
        one_line(head, sizeof(head), a->inflight->sql);
        LOG_WARN("db.timeout", "timeout_ms=%d sql=%s", a->timeout_ms, log_str(b, head));
        if (link_lost(a, 1))
            goto out;
    }
    while (a->head && a->head->deadline_ms <= now) {
        struct dbq *q = a->head;
        a->head = q->next;
        if (!a->head)
            a->tail = NULL;
        if (complete(a, q, CV_ERR_IO, NULL))
            goto out;
    }
    arm_deadline(a);
out:
    a->depth--;
    if (a->gone && a->depth == 0)
        db_async_free(a);
}

struct db_async *db_async_new(struct event_base *base, const char *dsn, int timeout_ms)
{
    struct db_async *a = xcalloc(1, sizeof(*a));
    a->base = base;
    a->dsn = xstrdup(dsn ? dsn : "");
    a->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    a->backoff_ms = ASYNC_BACKOFF_MIN_MS;
    a->ev_timer = evtimer_new(base, on_timer, a);
    a->ev_deadline = evtimer_new(base, on_deadline, a);
    a->ev_fail = event_new(base, -1, 0, on_fail, a);
    CV_ASSERT(a->ev_timer && a->ev_deadline && a->ev_fail);
    start_connect(a);
    return a;
}

/* Close the link and free a. Statements still queued or in flight are
 * dropped WITHOUT running their callbacks: the caller is shutting down and
 * owns whatever their args point at. Safe to call from inside a callback. */
void db_async_free(struct db_async *a)
{
    if (!a)
        return;
    if (a->depth > 0) {
        a->gone = 1;
        return;
    }
    close_link(a);
    free_event(&a->ev_timer);
    free_event(&a->ev_deadline);
    free_event(&a->ev_fail);
    q_free(a->inflight);
    drop_list(a->head);
    drop_list(a->fhead);
    free(a->dsn);
    free(a);
}

int db_async_connected(const struct db_async *a)
{
    return a && a->st == AST_READY;
}

void db_async_query(struct db_async *a, const char *sql, int nparams, const char *const *params,
                    db_cb cb, void *arg)
{
    struct dbq *q = xcalloc(1, sizeof(*q));
    q->sql = xstrdup(sql);
    q->cb = cb;
    q->arg = arg;
    q->deadline_ms = clock_mono_ms() + a->timeout_ms;
    if (nparams > 0) {
        q->params = xcalloc((size_t)nparams, sizeof(*q->params));
        for (int i = 0; i < nparams; i++)
            q->params[i] = params[i] ? xstrdup(params[i]) : NULL;
        q->nparams = nparams;
    }
    if (a->st == AST_DOWN || a->gone) {
        q_append(&a->fhead, &a->ftail, q);
        event_active(a->ev_fail, EV_TIMEOUT, 0);
        return;
    }
    int was_idle = !a->inflight && !a->head;
    q_append(&a->head, &a->tail, q);
    pump(a);
    if (was_idle)
        arm_deadline(a);
}
