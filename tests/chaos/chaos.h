/* chaos.h - the crash-consistency kit's tool (`make chaos`, tests/chaos/run-chaos.sh).
 *
 * One binary (build/san/tests/cv-chaos), two commands:
 *   cv-chaos load   submit a paced mix of activation and noop jobs through the API over HTTP
 *                   and record every job that got a 202 (chaos_load.c);
 *   cv-chaos check  wait until every recorded job is terminal, then check the invariants
 *                   against Redis (through the broker), PostgreSQL and the simulator,
 *                   print the figures and PASS/FAIL per invariant (chaos_check.c).
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
    char *resp;                    /* body, NUL-terminated, at most 64 KiB; never NULL after
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

/* Whole number in [min, max] from s; 0 on success, -1 (after printing which option) when not. */
int chaos_int_arg(const char *opt, const char *s, long long min, long long max, long long *out);

/* Sleep ms milliseconds (restarts after signals). */
void chaos_sleep_ms(int64_t ms);

/* ---- the commands ------------------------------------------------------------------- */

int chaos_load(int argc, char **argv);
int chaos_check(int argc, char **argv);

#endif
