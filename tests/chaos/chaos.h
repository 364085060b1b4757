/* chaos.h - the crash-consistency kit's tool (`make chaos`, tests/chaos/run-chaos.sh).
 *
 * One binary (build/san/tests/cv-chaos), two commands:
 *   cv-chaos load   submit a paced mix of activation and noop jobs through the API over HTTP
 *                   and record every job that got a 202 (chaos_load.c);
 *   cv-chaos check  wait until every recorded job is terminal, then check the invariants
 *                   against Redis (through the broker), PostgreSQL and the simulator,
 *                   print the figures and PASS/FAIL per invariant (chaos_check.c); with
 *                   --orders, also the order pipeline's invariants, before and after
 *                   replaying its dead and failed jobs (chaos_orders.c).
 * run-chaos.sh starts the stack, runs `load` in the background while it kills, stops and
 * restarts things, then runs `check`. Test code: it blocks, and it talks to libcurl
 * directly (as tests/harness does) because it needs headers that common/httpc.c does not
 * send. Single-threaded. */
#ifndef CV_CHAOS_H
#define CV_CHAOS_H

#include <stddef.h>
#include <stdint.h>

/* Exit codes of both commands. */
#define CHAOS_EXIT_OK 0
#define CHAOS_EXIT_FAIL 1     /* an invariant failed (check) or the load could not run */
#define CHAOS_EXIT_USAGE 2

/* One line of the acknowledgement file that `load` writes and `check` reads:
 *   <job id> TAB <type> TAB <user_id> TAB <offer_id> NL   (user and offer 0 for noop) */
#define CHAOS_ACK_FMT "%s\t%s\t%lld\t%lld\n"

/* ---- HTTP (chaos_http.c) ------------------------------------------------------------- */

struct ch_req {
    /* in */
    const char *method;            /* "GET", "POST" */
    const char *url;
    const char *body;              /* NULL: none */
    const char *const *headers;    /* NULL-terminated "Name: value" lines, may be NULL */
    /* out */
    int status;                    /* HTTP status, 0 when there was no response */
    char *resp;                    /* body, NUL-terminated, at most 16 MiB; never NULL after
                                      ch_http_run; free with ch_req_cleanup() */
    size_t resp_len;
    char err[128];                 /* curl's reason when status is 0 */
};

struct ch_http;

/* A client that keeps up to `parallel` transfers in flight on reused connections.
 * Free with ch_http_free(). */
struct ch_http *ch_http_new(int parallel);
void ch_http_free(struct ch_http *h);

/* Perform the n requests, up to `parallel` at a time, each bounded by timeout_ms.
 * Returns when all are done. */
void ch_http_run(struct ch_http *h, struct ch_req *reqs, size_t n, int timeout_ms);
void ch_req_cleanup(struct ch_req *r);

/* ---- small shared helpers (chaos.c) --------------------------------------------------- */

struct db;
struct broker;

/* Run sql (np parameters) and copy the first row's n columns as numbers (SQL NULL = 0).
 * 0, or -1 after printing why. */
int chaos_sql_row(struct db *db, const char *sql, int np, const char *const *params,
                  long long *out, int n);

/* Print every row of sql as "        prefix a / b / ... : last" (the last column a count). */
void chaos_sql_print(struct db *db, const char *prefix, const char *sql);

/* Whole number in [min, max] from s; 0 on success, -1 (after printing which option) when not. */
int chaos_int_arg(const char *opt, const char *s, long long min, long long max, long long *out);

/* Sleep ms milliseconds (restarts after signals). */
void chaos_sleep_ms(int64_t ms);

/* ---- invariants (chaos_check.c judges them) ----------------------------------------- */

/* One invariant: a query over the run's tables that returns one row. Its first `zero`
 * columns count violations (all 0 = PASS); every column is printed after its label. A query
 * with sim_params gets $1 = activations the simulator counts, $2 = failed lookups there. */
struct chaos_inv {
    const char *name;
    int zero;
    int sim_params;
    const char *labels[8];
    const char *sql;
    const char *more_title, *more_sql;   /* a breakdown printed under a FAIL */
};

/* ---- the order pipeline (chaos_orders.c) --------------------------------------------- */

/* 1 when t is a job type of the order pipeline. */
int chaos_order_type(const char *t);

/* The order invariants, over orders, operations, order_edges, tracking_pending and the
 * tables chaos_orders_store() fills. */
extern const struct chaos_inv chaos_order_invs[];
extern const int chaos_order_ninv;

/* Wait, up to deadline_s, until the sim's `orders` orders are all in our orders table, none
 * is in an intermediate state, no kept tracking event waits for an order that can still take
 * it, and every job that moved an order (or is a dead order job) is terminal. The seconds it
 * took go to *secs (-1 when the deadline passed). */
void chaos_orders_settle(struct db *db, struct broker *b, long long orders, long long deadline_s,
                         double *secs);

/* (Re)build chaos_mk (the sim's Mirakl orders: state, OR23 and OR24 calls, tracking),
 * chaos_ship (per carrier and reference: creates) and chaos_ojobs (the order jobs' final
 * states in Redis: every job named in operations, every dead order job). 0 or -1. */
int chaos_orders_store(struct db *db, struct broker *b, const char *sim_url);

/* Print the pipeline's figures (orders by state and last error, the sim's calls). */
void chaos_orders_figures(struct db *db);

/* First clear every carrier's fail_keys at the simulator (the operator fixed the orders
 * the carriers refused), then replay every dead or failed order job through POST
 * <api>/v1/dead/{id}/retry (key from CHAOS_API_KEY), `rounds` times, each round the jobs
 * dead or failed then plus those of the rounds before, and wait (deadline_s) for the
 * pipeline to settle after each. Prints what each round did. 0, or -1 when the simulator
 * could not be told. */
int chaos_orders_replay(struct db *db, struct broker *b, const char *api_url, const char *sim_url,
                        int rounds, long long orders, long long deadline_s);

/* ---- the commands ------------------------------------------------------------------- */

int chaos_load(int argc, char **argv);
int chaos_check(int argc, char **argv);

#endif
