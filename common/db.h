/* db.h - the only module that includes libpq.
 *
 * SQL goes through parameters only (PQexecParams / PQsendQueryParams): values
 * are never pasted into SQL text. A sync connection serves workers, the CLI and
 * tests; an async connection serves the API's event loop without blocking it.
 * Results are read through struct db_res, never a PGresult. */
#ifndef CV_DB_H
#define CV_DB_H

#include <stddef.h>

#include "rc.h"

struct event_base;
struct db;
struct db_async;
struct db_res;

/* ---- results ---------------------------------------------------------- */
int db_res_rows(const struct db_res *r);
int db_res_cols(const struct db_res *r);
/* Text value, or NULL for SQL NULL (or out of range). */
const char *db_res_get(const struct db_res *r, int row, int col);
const char *db_res_colname(const struct db_res *r, int col);
/* Column number for a name, or -1. */
int db_res_col(const struct db_res *r, const char *name);
void db_res_free(struct db_res *r);

/* ---- sync ------------------------------------------------------------- */
/* Defaults of db_connect(). */
#define DB_CONNECT_TIMEOUT_MS 5000
#define DB_STMT_TIMEOUT_MS 10000

/* Connect with a libpq DSN (URI or key=value) within connect_timeout_ms (0: no
 * bound; also bounds every reconnect). Each later statement must complete
 * within stmt_timeout_ms of being sent (0: no bound), else it fails with
 * CV_ERR_IO and the link is closed (reopened by the next call). TCP keepalives
 * and tcp_user_timeout are on unless the DSN sets them. NULL on failure
 * (logged, password never printed). Free with db_free(). One thread at a
 * time. */
struct db *db_connect_timeout(const char *dsn, int connect_timeout_ms, int stmt_timeout_ms);
/* The same, but never NULL: when PostgreSQL cannot be reached yet, the handle
 * connects on the first db_ensure()/db_exec() that finds it up (a worker that
 * starts during an outage waits for it instead of exiting). */
struct db *db_new(const char *dsn, int connect_timeout_ms, int stmt_timeout_ms);
/* db_connect_timeout(dsn, DB_CONNECT_TIMEOUT_MS, DB_STMT_TIMEOUT_MS). */
struct db *db_connect(const char *dsn);
/* Give up a blocked wait (connect or statement) early when should_abort(arg)
 * returns non-zero; it is asked at least every 100 ms while the server is
 * silent, and at once when a signal interrupts the wait. The call then fails
 * with CV_ERR_IO and the link is closed. NULL turns it off. (The worker passes
 * wrk_past_grace, as it does to httpc_set_abort.) */
void db_set_abort(struct db *d, int (*should_abort)(void *), void *arg);
void db_free(struct db *d);
/* Reconnect when the link is broken or was closed. 0 when usable. */
int db_ensure(struct db *d);
/* Run one statement with text parameters (NULL = SQL NULL). On success returns
 * a result (free with db_res_free) and sets *rc to CV_OK. On failure returns
 * NULL, logs once and sets *rc: CV_ERR_IO (connection or server trouble, the
 * statement deadline or an abort (outcome unknown: it may have committed),
 * serialization failure, deadlock: retryable), CV_ERR_CONFLICT (unique or
 * exclusion violation), CV_ERR_INVALID (bad data), CV_ERR_INTERNAL (bad SQL). */
struct db_res *db_exec(struct db *d, const char *sql, int nparams, const char *const *params,
                       enum cv_rc *rc);
/* Same, discarding the result. */
enum cv_rc db_run(struct db *d, const char *sql, int nparams, const char *const *params);
/* Several statements, no parameters (migrations only). */
enum cv_rc db_exec_script(struct db *d, const char *sql);
/* The primary message of the last failed call on d ("" after a success), for
 * tools that print it (conveyorctl migrate). Valid until the next call on d. */
const char *db_last_error(const struct db *d);

/* ---- async (one libevent loop) ---------------------------------------- */
/* res is NULL unless rc is CV_OK; valid only during the callback. */
typedef void (*db_cb)(void *arg, enum cv_rc rc, const struct db_res *res);

/* Connects in the background and reconnects when the link drops. */
struct db_async *db_async_new(struct event_base *base, const char *dsn, int timeout_ms);
void db_async_free(struct db_async *a);
int db_async_connected(const struct db_async *a);
/* Queue one parameterised statement; params are copied. cb runs exactly once,
 * with CV_ERR_IO when down or when the statement took longer than timeout_ms. */
void db_async_query(struct db_async *a, const char *sql, int nparams, const char *const *params,
                    db_cb cb, void *arg);

#endif
