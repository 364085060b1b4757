/* ostore.h - the orders store: typed C calls over migrations/0002_orders.sql's
 * tables and functions, through common/db.h (never libpq).
 *
 * Every change of an order goes through one PostgreSQL function that locks the
 * row, checks the claim (fencing) and the state machine's edge, and writes the
 * operations row in the same transaction; these wrappers only pass parameters
 * and read the answer. The SQL file explains each outcome; the short form is
 * repeated above each call.
 *
 * Claims and fencing (as worker/h_activation.c's lease epochs): a job claims an
 * order with (job id, delivery epoch) before it works on it, and every write
 * names the same pair. A write whose pair no longer holds the claim returns
 * OSTORE_FENCED and changes nothing. job_id NULL means an operator: allowed
 * while no live claim exists (else OSTORE_BUSY).
 *
 * Errors: each call returns an enum cv_rc about the store itself. CV_OK means
 * the function ran and *res says what it decided. CV_ERR_UNAVAILABLE: PostgreSQL
 * could not be reached or the link broke (db.h's CV_ERR_IO: the outcome of a
 * statement already sent is unknown; every function here is safe to call again
 * with the same arguments: the retry answers OSTORE_SAME / 'unchanged' / a
 * duplicate). CV_ERR_INVALID: the arguments were refused (a bad timestamp, JSON
 * text that is not JSON, a state name out of range); nothing changed.
 * CV_ERR_INTERNAL: a bug (bad SQL). Errors are logged once by db.c.
 *
 * Threads: a struct db serves one thread at a time; so does every call here.
 * Strings passed in are only read during the call. */
#ifndef CV_OSTORE_H
#define CV_OSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "ostate.h"
#include "rc.h"

struct db;

/* What a store function decided. Stable names (ostore_result_str). */
enum ostore_result {
    OSTORE_OK,       /* done (claimed, released, moved, applied) */
    OSTORE_SAME,     /* already so: an idempotent no-op (same state, duplicate webhook) */
    OSTORE_EDGE,     /* the state machine has no such edge: nothing changed, logged REFUSED */
    OSTORE_FENCED,   /* the caller's (job, epoch) does not hold the claim: nothing changed */
    OSTORE_BUSY,     /* another live claim holds the order */
    OSTORE_MISSING,  /* no such order */
    OSTORE_PENDING,  /* a tracking event kept until the order is AWAITING_TRACKING */
    OSTORE_STALE,    /* a tracking event older than the last applied: history only */
    OSTORE_N
};

/* "ok", "same", "edge", "fenced", "busy", "missing", "pending", "stale"; "?" out
 * of range. Never NULL. */
const char *ostore_result_str(enum ostore_result r);

/* Pass as a string field of struct ostore_change to set the column to SQL NULL
 * (a NULL pointer keeps the column as it is). */
extern const char ostore_null[];

/* ---- marketplace fetch ---------------------------------------------------------- */

/* One order of a fetched page. NULL fields are stored as SQL NULL. Timestamps are
 * RFC 3339 text, weight_kg decimal text; customer_json and lines_json are JSON
 * text (sent as strings, parsed by PostgreSQL: text that is not JSON fails the
 * page with CV_ERR_INVALID and nothing is written). */
struct ostore_order_in {
    const char *order_id;          /* required, non-empty */
    const char *mirakl_state;
    const char *weight_kg;
    const char *country;
    const char *shipping_deadline;
    const char *customer_json;     /* the shipping address */
    const char *lines_json;
    const char *mirakl_updated_at; /* the marketplace's last update date of the order */
};

enum ostore_upsert { OSTORE_UPSERT_NEW, OSTORE_UPSERT_CHANGED, OSTORE_UPSERT_UNCHANGED };
const char *ostore_upsert_str(enum ostore_upsert u);

#define OSTORE_CARRIER_MAX 64
struct ostore_upserted {
    enum ostore_upsert outcome;
    enum ostate state;                      /* internal_state after the call */
    char carrier_code[OSTORE_CARRIER_MAX];  /* "" when none */
};

/* Upsert one page (1..OSTORE_BATCH_MAX orders) in one round trip: new orders are
 * inserted as PENDING_POST; known ones take the marketplace fields only when the
 * fetched mirakl_updated_at is newer than the stored one; internal_state is never
 * moved. out (n entries, caller's storage) gets each input order's outcome, in
 * input order. job_id (a UUID) and trace_id may be NULL. CV_ERR_INVALID when n is
 * 0 or too large or an order has no id. */
#define OSTORE_BATCH_MAX 1000
enum cv_rc ostore_upsert_batch(struct db *d, const struct ostore_order_in *in, size_t n,
                               const char *job_id, const char *trace_id,
                               struct ostore_upserted *out);

/* ---- claims --------------------------------------------------------------------- */

/* Claim order_id for (job_id, epoch) for ttl_ms. *res: OK (claimed, renewed, or a
 * newer delivery of the same job took over), BUSY (another job's live claim),
 * FENCED (this job holds it with a newer epoch), MISSING. */
enum cv_rc ostore_claim(struct db *d, const char *order_id, const char *job_id, int64_t epoch,
                        int ttl_ms, enum ostore_result *res);

/* Release the claim. *res: OK (released), SAME (nobody held it), BUSY (another job
 * or epoch holds it), FENCED (this job with a newer epoch holds it), MISSING. */
enum cv_rc ostore_release(struct db *d, const char *order_id, const char *job_id, int64_t epoch,
                          enum ostore_result *res);

/* ---- transitions ------------------------------------------------------------------ */

/* One state change. String fields of the "set" part: NULL keeps the column,
 * ostore_null sets SQL NULL, anything else sets the value. */
struct ostore_change {
    const char *order_id;
    enum ostate to;
    const char *job_id;            /* NULL: an operator action */
    int64_t epoch;
    const char *scope;             /* operations row: "carrier", "mirakl", "operator" */
    const char *action;            /* "create_shipment", "update_tracking", ... */
    const char *status;            /* NULL = "OK"; "ERROR" for a move into FAILED_* */
    const char *message;
    const char *meta_json;         /* JSON object text or NULL */
    const char *trace_id;
    /* set */
    const char *carrier_code;
    const char *tracking_number;
    const char *expedition_id;
    const char *carrier_status;
    const char *carrier_event_at;  /* RFC 3339 */
    const char *last_error;
    int set_carrier_seq;           /* 1: carrier_seq := carrier_seq */
    int64_t carrier_seq;
    int mirakl_tracking_updated;   /* -1 keep, 0 or 1 set */
};

struct ostore_moved {
    enum ostore_result result;     /* OK, SAME, EDGE, FENCED, BUSY, MISSING */
    int state;                     /* enum ostate after the call, -1 when MISSING */
    int pending_applied;           /* kept tracking events applied on entering
                                    * AWAITING_TRACKING (the state may be TRACKED) */
};

/* Move c->order_id to c->to if the caller holds the claim and the edge exists, in
 * one transaction with its operations row. A refused edge changes nothing but
 * leaves an operations row with status REFUSED. */
enum cv_rc ostore_transition(struct db *d, const struct ostore_change *c, struct ostore_moved *out);

/* ---- batches: one round trip for a whole batch of deliveries ---------------------
 * (0005_orders_batch.sql: the same functions as above, applied item by item in
 * order_id order inside one statement.) */
struct ostore_claim_in {
    const char *order_id;
    const char *job_id;
    int64_t epoch;
};
/* An order as claimed: what a post or a push reads of it (malloc'd strings,
 * NULL for SQL NULL; free with ostore_claimed_free). */
struct ostore_claimed {
    enum ostore_result result;     /* OK (claimed), BUSY, FENCED, MISSING */
    int state;                     /* enum ostate when OK */
    char *carrier_code, *tracking_number, *country, *weight_kg, *customer, *attempts,
        *last_error;
    int tracking_pushed;           /* mirakl_tracking_updated: OR23 went through */
    int64_t age_ms;                /* since the order's first fetch, at the claim (-1: unknown) */
    int64_t claimed_mono_ms;       /* when the claim's answer came (clock_mono_ms) */
};
/* Claim in[0..n) for ttl_ms and read each claimed order; out has n entries. */
enum cv_rc ostore_claim_many(struct db *d, const struct ostore_claim_in *in, size_t n, int ttl_ms,
                             struct ostore_claimed *out);
void ostore_claimed_free(struct ostore_claimed *c, size_t n);

/* One order's moves for one job: steps applied in order (each as
 * ostore_transition; the step's own job, epoch and trace fields are ignored),
 * stopping at the first that is neither OK nor SAME; then the claim released
 * when release is set (unless fenced). */
struct ostore_plan {
    const char *order_id;
    const char *job_id;
    int64_t epoch;
    const char *trace_id;
    const struct ostore_change *steps;
    size_t nsteps;
    int release;
};
/* Apply n plans in one statement; out[i] says how plan i ended (its last step). */
enum cv_rc ostore_move_many(struct db *d, const struct ostore_plan *plans, size_t n,
                            struct ostore_moved *out);

/* Remember that Mirakl took the order's tracking (OR23) without a state change
 * (0007_tracking_pushed.sql): the order stays TRACKED until OR24 is done too.
 * *res: OK, SAME (marked before), FENCED, BUSY, MISSING. */
enum cv_rc ostore_mark_tracking_pushed(struct db *d, const char *order_id, const char *job_id,
                                       int64_t epoch, const char *trace_id,
                                       enum ostore_result *res);

/* ---- tracking ------------------------------------------------------------------------ */

struct ostore_event {
    const char *order_id;          /* our reference, as the carrier echoed it */
    const char *carrier;           /* the carrier code; also the webhook id's namespace */
    enum otrack status;
    int terminal;                  /* an EXCEPTION the carrier flags as final */
    const char *event_at;          /* RFC 3339, required: the order of events */
    int has_seq;
    int64_t seq;                   /* the carrier's sequence number, when it has one */
    const char *tracking_number;   /* NULL keeps the stored one */
    const char *webhook_id;        /* NULL for polled events */
    const char *payload_json;      /* the carrier's event, kept while pending; or NULL */
    const char *job_id;
    int64_t epoch;
    const char *trace_id;
};

/* Apply one tracking event. *res: OK (applied: carrier_status updated, and an order
 * in AWAITING_TRACKING moved to TRACKED, or FAILED_TRACKING on a terminal
 * exception), STALE (older than the last applied: recorded as history only),
 * PENDING (kept: the order is missing or not yet AWAITING_TRACKING), SAME (the
 * webhook id was taken before), FENCED or BUSY. *state: the order's state after
 * the call, -1 when the order does not exist. */
enum cv_rc ostore_track(struct db *d, const struct ostore_event *e, enum ostore_result *res,
                        int *state);

struct ostore_pending {
    int64_t id;
    char carrier[OSTORE_CARRIER_MAX];
    int status;                    /* enum otrack */
    char event_at[40];             /* RFC 3339 UTC */
    int has_seq;
    int64_t seq;
    char webhook_id[128];          /* "" when none (longer ids are cut) */
    enum ostore_result outcome;    /* OK or STALE */
};

/* Apply and delete the events kept for order_id, in event order (entering
 * AWAITING_TRACKING through ostore_transition does this by itself). *res: OK (the
 * events, possibly none, were applied; *events lists them), MISSING, FENCED, BUSY,
 * PENDING (the order is not yet AWAITING_TRACKING: the events stay). *events is
 * malloc'd (free with free(); NULL when *n is 0). */
enum cv_rc ostore_pending_take(struct db *d, const char *order_id, const char *job_id,
                               int64_t epoch, const char *trace_id, enum ostore_result *res,
                               struct ostore_pending **events, size_t *n);

/* ---- read side ----------------------------------------------------------------------- */

/* One order as stored. Every string is malloc'd and NULL for SQL NULL; timestamps
 * are RFC 3339 UTC with microseconds, customer and lines JSON text. */
struct ostore_order {
    enum ostate state;
    char *order_id, *internal_state, *mirakl_state, *carrier_code, *tracking_number,
        *expedition_id, *carrier_status, *carrier_event_at, *carrier_seq,
        *mirakl_tracking_updated, *weight_kg, *country, *shipping_deadline, *customer,
        *lines, *attempts, *last_error, *created_at, *updated_at, *state_changed_at,
        *fetched_at, *mirakl_updated_at, *lock_job, *lock_epoch, *lock_until;
};

/* One operations row (strings as in struct ostore_order). */
struct ostore_op {
    int64_t id;
    char *at, *scope, *action, *order_id, *carrier, *status, *message, *meta, *from_state,
        *to_state, *job_id, *trace_id;
};

/* Free the strings of n orders and the array itself. NULL is fine. */
void ostore_orders_free(struct ostore_order *o, size_t n);
/* Free the strings of n operations rows and the array itself. NULL is fine. */
void ostore_ops_free(struct ostore_op *ops, size_t n);

/* One order and its operations (oldest first, at most ops_max rows: the newest
 * ones when there are more). *order is a malloc'd array of one (free with
 * ostore_orders_free(*order, 1)), *ops with ostore_ops_free(*ops, *nops).
 * CV_ERR_NOT_FOUND when there is no such order (nothing allocated). */
enum cv_rc ostore_get(struct db *d, const char *order_id, int ops_max, struct ostore_order **order,
                      struct ostore_op **ops, size_t *nops);

/* The order whose tracking_number or expedition_id is ref (a carrier event that
 * names the parcel rather than our reference). *order_id is malloc'd (free with
 * free()). CV_ERR_NOT_FOUND when none, CV_ERR_CONFLICT when several orders match
 * (nothing allocated either way). */
enum cv_rc ostore_find(struct db *d, const char *ref, char **order_id);

/* A page of orders in (updated_at, order_id) order, ascending: an order that
 * changes while a client pages moves behind the cursor and is seen again, never
 * skipped. state NULL = every state; cursor NULL = from the start, else a value
 * from a previous call. limit is clamped to 1..OSTORE_BATCH_MAX. *orders as in
 * ostore_get; *next_cursor is malloc'd when the page was full (ask again with
 * it), else NULL. CV_ERR_INVALID for a malformed cursor or an unknown state. */
enum cv_rc ostore_list(struct db *d, const char *state, const char *cursor, int limit,
                       struct ostore_order **orders, size_t *n, char **next_cursor);

/* The read side's statements, for a caller with its own connection (the API's
 * asynchronous one): the same SQL as ostore_list and ostore_get.
 *   ostore_sql_list  $1 state or NULL, $2 cursor microseconds or NULL, $3 cursor
 *                    order id, $4 limit; the order columns plus cur_us (the next
 *                    cursor is "<cur_us>:<order_id>" of the last row)
 *   ostore_sql_get   $1 order id
 *   ostore_sql_ops   $1 order id, $2 limit: its operations, oldest first
 *   ostore_sql_calls $1 order id, $2 limit: its outbound calls (comm_log), newest
 *                    first: id, at, upstream, method, url, status_code, class,
 *                    duration_ms, attempt, job_id, trace_id, error
 *   ostore_sql_counts no parameters: internal_state, count for every state that
 *                    has orders */
extern const char ostore_sql_list[];
extern const char ostore_sql_get[];
extern const char ostore_sql_ops[];
extern const char ostore_sql_calls[];
extern const char ostore_sql_counts[];
/* Split a cursor into its microseconds and order id (pointing into cursor);
 * -1 when malformed. */
int ostore_cursor_split(const char *cursor, char us[24], const char **id);

/* ---- communication log ----------------------------------------------------------------- */

/* One outbound call. url must carry no secret; no header is stored. */
struct ostore_call {
    const char *at;                /* RFC 3339 start of the call; NULL = now */
    const char *upstream;          /* "mirakl", "tipsa", ... */
    const char *method;
    const char *url;
    int status;                    /* HTTP status; 0 = no response (stored NULL) */
    const char *class_;            /* the outbound error class, NULL on success */
    double duration_ms;
    int attempt;
    const char *job_id;
    const char *trace_id;
    const char *order_id;
    const char *error;
};

/* Insert n (1..OSTORE_BATCH_MAX) calls in one statement. Run it outside any order
 * transaction (each ostore call is its own), so the record survives a rolled-back
 * step. */
enum cv_rc ostore_comm_log_batch(struct db *d, const struct ostore_call *calls, size_t n);

#endif
