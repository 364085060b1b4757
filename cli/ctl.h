/* ctl.h - conveyorctl: the operator's command line.
 *
 * main.c reads the global options and the config, then hands the rest of the
 * command line to one ctl_<command>() function; argv[0] is the command name.
 * Each returns the process exit code, one of enum ctl_exit: these numbers are
 * a contract with scripts and runbooks (README "conveyorctl", --help), so they
 * never change meaning.
 *
 * Output: tables for people on stdout; with --json (global, anywhere on the
 * line) every read prints JSON instead: one object, or one object per line for
 * lists and streams (NDJSON). Errors go to stderr as "conveyorctl: ...".
 * Progress bars and questions only ever appear on a terminal (stderr / stdin),
 * never in a pipe. */
#ifndef CV_CTL_H
#define CV_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "rc.h"

enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAIL = 1,        /* the operation failed (or some items of a bulk one) */
    CTL_EXIT_USAGE = 2,       /* bad usage or configuration */
    CTL_EXIT_NOT_FOUND = 3,   /* no such job, order, key or migration directory */
    CTL_EXIT_CONFLICT = 4,    /* refused by state: held money, not dead, name taken */
    CTL_EXIT_UNAVAILABLE = 5, /* Redis or PostgreSQL cannot be reached */
};

/* --json was given. */
extern int ctl_json;

/* ---- ctl_util.c: options, messages, links --------------------------------- */

/* When argv[*i] is option name, as "--name VALUE" or "--name=VALUE": set *val,
 * move *i to the last word used and return 1. Return 0 when argv[*i] is
 * something else, -1 (after printing why) when the value is missing. */
int ctl_opt(int argc, char **argv, int *i, const char *name, const char **val);
/* 1 when argv[i] is the flag name (no value). */
int ctl_flag(char **argv, int i, const char *name);

/* Parse a whole decimal number in [min,max]. 0, or -1 when it is not one. */
int ctl_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Print "conveyorctl: <message>" to stderr and return CTL_EXIT_USAGE (with a
 * pointer to --help), CTL_EXIT_FAIL, or the given code. */
int ctl_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ctl_failx(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The exit code for a store's rc: NOT_FOUND 3, CONFLICT 4, IO and UNAVAILABLE
 * 5, OK 0, anything else 1. */
int ctl_exit_of(enum cv_rc rc);

struct broker;
struct db;
/* Open the broker (synchronous) or PostgreSQL (pg.dsn required: usage error
 * when empty). CTL_EXIT_OK with *out set, else the exit code after printing
 * why (5 when it cannot be reached). what names the command in messages. */
int ctl_broker_open(const struct cfg *c, const char *what, struct broker **out);
int ctl_db_open(const struct cfg *c, const char *what, struct db **out);

/* What a broker callback reports back (the broker is synchronous here: the
 * callback has run when the call returns). */
struct ctl_call {
    int called;
    enum cv_rc rc;
};
/* The exit code for a finished call, printing why it failed; id (may be NULL)
 * names the job in "not found" and "conflict" messages. */
int ctl_call_result(const struct ctl_call *k, const char *what, const char *id);

/* Write s to stdout with control characters replaced by spaces, "-" when
 * NULL or empty: one record stays on one line whatever a field holds. */
void ctl_put_safe(const char *s);

/* ---- ctl_term.c: the terminal ---------------------------------------------- */

/* 1 when fd is a terminal (tests run conveyorctl on a pseudo-terminal). */
int ctl_isatty(int fd);

/* A progress bar on stderr, drawn only when stderr is a terminal, at most
 * every 100 ms. total 0 = unknown (a count, no bar). */
struct ctl_progress {
    int on;
    const char *what;
    long long total, done;
    int64_t drawn_ms;
};
void ctl_progress_start(struct ctl_progress *p, const char *what, long long total);
void ctl_progress_set(struct ctl_progress *p, long long done);
/* The last frame, then a new line. */
void ctl_progress_end(struct ctl_progress *p);

/* Ask a yes/no question on stderr and read the answer from stdin. 1 for "y"
 * or "yes", 0 for anything else or end of input. */
int ctl_confirm(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* SIGINT and SIGTERM set a flag instead of killing the process (watch, ops
 * tail --follow, bulk retry: stop cleanly, print the summary). */
void ctl_catch_interrupt(void);
int ctl_interrupted(void);
/* Sleep ms, or less when interrupted. */
void ctl_sleep_ms(int ms);

/* ---- ctl_parse.c: pure parsers (unit-tested in tests/unit/test_ctl.c) ------- */

/* A duration: one or more <number><unit> with units ms, s, m, h, d ("90s",
 * "1h30m", "500ms", "7d"), at most 3650 days. 0 with *ms, or -1. */
int ctl_parse_duration_ms(const char *s, int64_t *ms);
/* --since: a duration ago (now_ms minus it) or an RFC 3339 time. 0 with *ms
 * (epoch ms), or -1. */
int ctl_parse_since(const char *s, int64_t now_ms, int64_t *ms);

struct job;
/* One line of a jobs file (submit --file): a JSON object {"type": T,
 * "payload": {...} (default {}), and optionally "idempotency_key", "delay_ms",
 * "run_at", "max_attempts"}; any other member is refused (a typo must not
 * pass silently). The job is made the way `submit` makes one (common/jobopt:
 * the same limits and payload checks as the API). Returns 1 with *out (free
 * with job_free), 0 for a blank line, -1 with the reason in why (cap bytes). */
int ctl_ndjson_job(const struct cfg *c, const char *line, size_t len, int64_t now_ms,
                   struct job **out, char *why, size_t cap);

/* ---- shared renderings (ctl_jobs.c) ----------------------------------------- */
struct sbuf;
struct queue_stat;
struct worker_info;
struct job_status;
/* The queues table / the workers table on stdout (now_ms: the wall clock). */
void ctl_queues_table(const struct queue_stat *q, size_t n);
void ctl_workers_table(const struct worker_info *w, size_t n, int64_t now_ms);
/* The same as a JSON array appended to b. */
void ctl_queues_json(struct sbuf *b, const struct queue_stat *q, size_t n);
void ctl_workers_json(struct sbuf *b, const struct worker_info *w, size_t n, int64_t now_ms);
/* A job's status as one JSON object (the payload embedded when it is JSON). */
void ctl_status_json(struct sbuf *b, const struct job_status *st);

/* ---- commands ---------------------------------------------------------------- */
/* ctl_migrate.c: migrate [up|status] */
int ctl_migrate(const struct cfg *c, int argc, char **argv);
/* ctl_seed.c */
int ctl_seed(const struct cfg *c, int argc, char **argv);
/* ctl_jobs.c: submit (one job), status, queues, workers */
int ctl_submit(const struct cfg *c, int argc, char **argv);
int ctl_status(const struct cfg *c, int argc, char **argv);
int ctl_queues(const struct cfg *c, int argc, char **argv);
int ctl_workers(const struct cfg *c, int argc, char **argv);
/* ctl_batch.c: submit --file (called by ctl_submit) */
int ctl_submit_file(const struct cfg *c, int argc, char **argv);
/* ctl_dead.c: dead list|show|retry|purge, and the old forms retry ID, purge ID */
int ctl_dead(const struct cfg *c, int argc, char **argv);
int ctl_retry(const struct cfg *c, int argc, char **argv);
int ctl_purge(const struct cfg *c, int argc, char **argv);
/* ctl_watch.c */
int ctl_watch(const struct cfg *c, int argc, char **argv);
/* ctl_held.c */
int ctl_held(const struct cfg *c, int argc, char **argv);
/* ctl_trace.c */
int ctl_trace(const struct cfg *c, int argc, char **argv);
/* Money held right now (transactions PROCESSING): for watch. */
struct ctl_held_sum {
    long long transactions;
    char amount[32];          /* numeric text, "0" when none */
    long long oldest_s;       /* age of the oldest, 0 when none */
};
enum cv_rc ctl_held_summary(struct db *d, struct ctl_held_sum *s);
/* ctl_orders.c */
int ctl_orders(const struct cfg *c, int argc, char **argv);
int ctl_order(const struct cfg *c, int argc, char **argv);
int ctl_ops(const struct cfg *c, int argc, char **argv);
/* ctl_keys.c: keys add|revoke|list */
int ctl_keys(const struct cfg *c, int argc, char **argv);
/* need no config: ctl_hash.c, ctl_completion.c */
int ctl_hash_key(int argc, char **argv);
int ctl_completion(int argc, char **argv);

#endif
