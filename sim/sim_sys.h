/* sim_sys.h - what every simulated system of the order pipeline shares.
 *
 * Mirakl, TIPSA, SEUR, Correos Express, OnTime and Mercado Livre each live in
 * their own sim_<name>.c under their own path prefix (/<name>/...), and each
 * embeds a struct sim_sys as its first member. The shared part is:
 *
 * - faults (struct sim_sys_faults): the activation faults (latency,
 *   error_rate/status, timeout_rate, fail_next) per system, plus
 *   apply_then_timeout_next (a create is applied, then never answered),
 *   a 429 mode (throttle_next N calls, or throttle_on) with Retry-After,
 *   unauthorized_next (401 on a valid token), fail_keys (references or postal
 *   codes whose creates fail validation, in the system's own error shape),
 *   token_ttl_s, and the webhook faults of pushing carriers;
 * - the gate every call passes first (sim_sys_gate) and the one way to
 *   answer (sim_sys_answer), both waiting the system's latency;
 * - access tokens (sim_token.h) and the Bearer check;
 * - demo credentials: a few named values per system, set at start from one
 *   static const block at the top of each system's file and changeable at
 *   run time (POST /admin/<name>/credentials);
 * - the admin routes, the same for every system:
 *
 *   GET  /admin/<name>/faults       the live faults as JSON
 *   POST /admin/<name>/faults       any subset of the fields below; all are
 *                                   checked before any is applied (400 names
 *                                   the bad one); answers the new faults.
 *        latency_ms, error_rate, error_status, timeout_rate, fail_next,
 *        apply_then_timeout_next, throttle_next, throttle_on (bool),
 *        retry_after_s, unauthorized_next, token_ttl_s,
 *        fail_keys ([strings], replaces the list),
 *        webhook_duplicate_next/_rate, webhook_reverse_next/_rate,
 *        webhook_bad_signature_next/_rate, webhook_stale_next/_rate,
 *        expire_tokens_now (true: every token or session issued so far is
 *        refused from now on; an action, not stored)
 *   GET  /admin/<name>/stats        calls, errors, timeouts, throttled,
 *                                   unauthorized, applied_then_timeout,
 *                                   validation_errors, tokens_issued, logins,
 *                                   then the system's own (per-reference create
 *                                   counts for carriers, per-operation calls and
 *                                   per-order pushes for Mirakl)
 *   GET  /admin/<name>/credentials  the names of the credentials (not values)
 *   POST /admin/<name>/credentials  {"<name>":"<value>",...}
 *   *    /admin/<name>/...          anything else goes to the system (Mirakl's
 *                                   orders, Mercado Livre's notifications)
 *
 * POST /admin/reset resets every system (records, stats, faults, credentials).
 * Loop thread only. */
#ifndef SIM_SYS_H
#define SIM_SYS_H

#include <stddef.h>
#include <stdint.h>

#include "sim_faults.h"
#include "sim_http.h"
#include "sim_token.h"
#include "sim_webhook.h"

enum sim_sys_id {
    SIM_SYS_MIRAKL,
    SIM_SYS_TIPSA,
    SIM_SYS_SEUR,
    SIM_SYS_CEX,
    SIM_SYS_ONTIME,
    SIM_SYS_MELI,
    SIM_SYS_N
};

#define SIM_SYS_FAIL_KEYS_MAX 64
#define SIM_SYS_FAIL_KEY_LEN 40
#define SIM_SYS_CREDS_MAX 6
#define SIM_SYS_CRED_LEN 96
#define SIM_RETRY_AFTER_MAX_S 3600

struct sim;
struct evbuffer;
struct evhttp_request;

struct sim_sys_faults {
    struct sim_faults base;
    int64_t apply_then_timeout_next;
    int64_t throttle_next;
    int throttle_on;
    int retry_after_s;                   /* 1..SIM_RETRY_AFTER_MAX_S */
    int64_t unauthorized_next;
    int token_ttl_s;                     /* 1..86400 */
    int nfail_keys;
    char fail_keys[SIM_SYS_FAIL_KEYS_MAX][SIM_SYS_FAIL_KEY_LEN];
    struct sim_wh_faults wh;
};

struct sim_sys_stats {
    int64_t calls;                       /* every call to the system's routes */
    int64_t errors;                      /* injected error answers */
    int64_t timeouts;                    /* injected timeouts (held) */
    int64_t throttled;                   /* 429 answers */
    int64_t unauthorized;                /* 401 answers and SOAP session faults */
    int64_t applied_then_timeout;        /* creates applied, then held */
    int64_t validation_errors;           /* creates refused (fail_keys, bad input) */
    int64_t logins;                      /* token or session requests that succeeded */
};

struct sim_cred {
    const char *name;                    /* a literal */
    char value[SIM_SYS_CRED_LEN];
};

/* A demo credential as each system file declares it. */
struct sim_cred_def {
    const char *name;
    const char *value;
};

struct sim_sys {
    enum sim_sys_id id;
    const char *name;                    /* "mirakl", "seur", ... (the path prefix) */
    struct sim_sys_faults faults, faults_start;
    struct sim_sys_stats stats;
    const struct sim_cred_def *cred_defs;
    int ncreds;
    struct sim_cred creds[SIM_SYS_CREDS_MAX];
    struct sim_tokens tokens;
    char admin_prefix[32];               /* "/admin/<name>/" */
    /* Write the system's own error shape for status into req's output (and
     * its headers). code is a short machine word, msg a sentence. */
    void (*put_error)(struct evhttp_request *req, int status, const char *code, const char *msg);
    /* Append the system's own stats as ,"key":value pairs (may be NULL). */
    void (*put_stats)(struct sim *s, struct sim_sys *y, struct evbuffer *out);
    /* Forget records and own stats (faults, creds and common stats are done here). */
    void (*reset)(struct sim *s, struct sim_sys *y);
    /* Free the system (the struct sim_sys is inside it). */
    void (*free)(struct sim_sys *y);
    /* Other /admin/<name>/<rest> requests; NULL = 404. */
    void (*admin)(struct sim *s, struct sim_sys *y, const struct sim_call *c, const char *rest);
};

/* Set up y (inside a system's struct): name, faults from the sim's start
 * faults (cfg), credentials from defs, tokens. Also adds its admin route. */
void sim_sys_init(struct sim *s, struct sim_sys *y, enum sim_sys_id id, const char *name,
                  const struct sim_cred_def *defs, int ndefs, int token_ttl_s);
/* Free what sim_sys_init() set up (not y itself). */
void sim_sys_cleanup(struct sim_sys *y);
/* Faults, stats, credentials, tokens back to the start, then y->reset. */
void sim_sys_reset(struct sim *s, struct sim_sys *y);

/* The value of credential name (never NULL; "" when unknown). */
const char *sim_sys_cred(const struct sim_sys *y, const char *name);
/* Constant-time equality of a presented secret with credential name. */
int sim_sys_cred_eq(const struct sim_sys *y, const char *name, const char *presented);

/* The first gate of every call: counts it, then the 429 mode, fail_next,
 * timeout_rate and error_rate. Returns 1 when it answered (or held) the
 * request: the handler must then do nothing more; 0 to go on. */
int sim_sys_gate(struct sim *s, struct sim_sys *y, const struct sim_call *c);

/* Answer with status and the body already in the output buffer, after the
 * system's latency. created = 1 for a create that was applied: while
 * apply_then_timeout_next is > 0 it is held instead (never answered). */
void sim_sys_answer(struct sim *s, struct sim_sys *y, const struct sim_call *c, int status,
                    int created);

/* Write y's error shape and answer (after the latency). */
void sim_sys_fail(struct sim *s, struct sim_sys *y, const struct sim_call *c, int status,
                  const char *code, const char *msg);

/* Answer 429 with Retry-After: retry_after_s in y's shape. */
void sim_sys_throttle(struct sim *s, struct sim_sys *y, const struct sim_call *c,
                      int retry_after_s);

/* Check "Authorization: Bearer <token>" against y's tokens, and
 * unauthorized_next. Returns 1 when it answered 401, 0 when the token is good. */
int sim_sys_bearer_or_reply(struct sim *s, struct sim_sys *y, const struct sim_call *c);

/* 1 when key (a reference or a postal code) is in y's fail_keys. */
int sim_sys_fails(const struct sim_sys *y, const char *key);

/* The value of a query parameter of the request, decoded, copied into out
 * (at most outlen - 1 bytes). Returns 1 when present, else 0. */
int sim_query(const struct sim_call *c, const char *name, char *out, size_t outlen);

/* A field of an application/x-www-form-urlencoded body, decoded, into out.
 * Returns 1 when present, else 0. */
int sim_form(const struct sim_call *c, const char *name, char *out, size_t outlen);

/* Issue a token from y's store and answer 200 with the OAuth shape
 * {"access_token","token_type":"Bearer","expires_in"[,"refresh_token"]}; refresh
 * may be NULL. Counts a login. */
void sim_sys_token_reply(struct sim *s, struct sim_sys *y, const struct sim_call *c,
                         const char *prefix, const char *refresh);

#endif
