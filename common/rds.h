/* rds.h - the only module that includes hiredis.
 *
 * A sync connection (workers, conveyorctl, tests) and an async connection on a
 * libevent base (conveyor-api), with one read-only reply view so that no
 * hiredis type leaves this module. Lua scripts are sent with EVALSHA and fall
 * back to EVAL when Redis answers NOSCRIPT (after a restart or a flush). */
#ifndef CV_RDS_H
#define CV_RDS_H

#include <stddef.h>
#include <stdint.h>

#include "rc.h"

struct event_base;
struct rds;
struct rds_async;
struct rds_reply;

enum rds_type { RDS_NIL, RDS_STR, RDS_INT, RDS_ARR, RDS_STATUS, RDS_ERR, RDS_OTHER };

/* A Lua script: the source, with its SHA-1 computed on first use. */
struct rds_script {
    const char *name;
    const char *src;
    char sha[41];
};

/* ---- replies ---------------------------------------------------------- */
enum rds_type rds_reply_type(const struct rds_reply *r);
/* String, status or error text (NUL-terminated); len may be NULL. NULL for other types. */
const char *rds_reply_str(const struct rds_reply *r, size_t *len);
long long rds_reply_int(const struct rds_reply *r);
size_t rds_reply_len(const struct rds_reply *r);          /* array elements, else 0 */
const struct rds_reply *rds_reply_at(const struct rds_reply *r, size_t i); /* NULL if out */
/* Convenience: element i as string/int with defaults. */
const char *rds_reply_at_str(const struct rds_reply *r, size_t i);
long long rds_reply_at_int(const struct rds_reply *r, size_t i, long long def);
/* The value of field k in a flat field/value array (an HGETALL reply), or
 * NULL when absent. */
const char *rds_reply_hash_get(const struct rds_reply *h, const char *k);
/* The pairs of a flat field/value array (an HGETALL reply) as two arrays of
 * *n strings each, fields[i] naming values[i] (NULL for an element that is no
 * string). They point into h: use them while h lives; free() the two arrays
 * (NULL when *n is 0). */
void rds_reply_hash_pairs(const struct rds_reply *h, const char ***fields, const char ***values,
                          size_t *n);
/* Free a reply that a sync call returned (never one passed to an async callback). */
void rds_reply_free(struct rds_reply *r);

/* ---- sync ------------------------------------------------------------- */
/* Connect to redis://[:password@]host:port[/db] (or unix:///path). timeout_ms
 * bounds connect and every command. NULL on failure (logged). */
struct rds *rds_connect(const char *url, int timeout_ms);
void rds_free(struct rds *r);
/* Reconnect when the connection broke; 0 when usable. */
int rds_ensure(struct rds *r);
/* One command from argv (lens may be NULL for C strings). Returns the reply
 * (free with rds_reply_free) or NULL on I/O error (logged, connection reset). */
struct rds_reply *rds_cmd(struct rds *r, int argc, const char **argv, const size_t *lens);
/* printf-like, hiredis format (%s, %b with pointer+len, %lld). */
struct rds_reply *rds_cmdf(struct rds *r, const char *fmt, ...);
/* Pipelining: append commands, then read exactly as many replies. */
int rds_append(struct rds *r, int argc, const char **argv, const size_t *lens);
int rds_appendf(struct rds *r, const char *fmt, ...);
struct rds_reply *rds_read(struct rds *r);
/* Run a script: EVALSHA, EVAL on NOSCRIPT. keys then args. */
struct rds_reply *rds_eval(struct rds *r, struct rds_script *s, int nkeys, int argc,
                           const char **argv, const size_t *lens);
/* Append an EVALSHA to the pipeline (load scripts first with rds_script_load). */
int rds_append_eval(struct rds *r, struct rds_script *s, int nkeys, int argc,
                    const char **argv, const size_t *lens);
int rds_script_load(struct rds *r, struct rds_script *s);

/* ---- async (one libevent loop) ---------------------------------------- */
/* The reply is NULL when the connection failed or the command timed out.
 * The reply is only valid during the callback: copy what you keep. */
typedef void (*rds_cb)(const struct rds_reply *reply, void *arg);

/* Connect on base; reconnects by itself (with backoff) when the link drops.
 * Commands issued while down fail at once (callback with NULL). A command not
 * answered within timeout_ms drops the link and fails all in flight. */
struct rds_async *rds_async_new(struct event_base *base, const char *url, int timeout_ms);
void rds_async_free(struct rds_async *a);
int rds_async_connected(const struct rds_async *a);
/* Queue a command; cb is always called exactly once (possibly with NULL). */
void rds_async_cmd(struct rds_async *a, rds_cb cb, void *arg, int argc, const char **argv,
                   const size_t *lens);
/* EVALSHA; when Redis answers NOSCRIPT (SCRIPT FLUSH, a restart) the same
 * call is sent again as EVAL with the source, and cb gets the EVAL's reply:
 * still exactly one callback. The EVAL joins the end of the pipeline, so it
 * runs after commands queued behind the EVALSHA: wait for cb before relying
 * on the script's effect. */
void rds_async_eval(struct rds_async *a, struct rds_script *s, rds_cb cb, void *arg, int nkeys,
                    int argc, const char **argv, const size_t *lens);

/* ---- either mode ------------------------------------------------------ */
/* For code written once in callback style over a link that is sync or async:
 * exactly one of sync and as is non-NULL. With sync the command runs inline,
 * cb runs before the return and the reply is freed after it; with as it is
 * queued and cb runs later on the loop. Either way cb runs exactly once, with
 * NULL when the link failed. */
void rds_either_cmd(struct rds *sync, struct rds_async *as, rds_cb cb, void *arg, int argc,
                    const char **argv, const size_t *lens);
void rds_either_eval(struct rds *sync, struct rds_async *as, struct rds_script *s, rds_cb cb,
                     void *arg, int argc, const char **argv, const size_t *lens);

/* A reply as an rc: NULL (link down, timeout) and error replies are CV_ERR_IO;
 * an error reply is logged once here (evt=broker.redis_error op=<op>). An OOM
 * reply (maxmemory reached: the command or script was refused before it ran,
 * nothing written) is CV_ERR_BUSY. */
enum cv_rc rds_reply_rc(const struct rds_reply *r, const char *op);
/* Sync: run a script that answers one integer into *out (0 on error; out may be NULL). */
enum cv_rc rds_eval_int(struct rds *r, struct rds_script *s, int argc, const char **argv,
                        const char *op, long long *out);

#endif
