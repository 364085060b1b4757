/* jobtype.h - the one table of job types.
 *
 * Every place that needs to know a job type reads this table: the API's
 * routes and metrics, the worker's handler lookup and its "known:" message,
 * the per-type configuration group (jobs.types.<name>.*, cfg.h), the payload
 * validator that the API runs before it enqueues and the worker runs before
 * it hands a job to its handler, and the ordering key that keeps one order's
 * jobs apart. Adding a type is one row here, one handler row in the worker
 * and, if it has one, its payload validator below.
 *
 * Payload validators take the parsed payload and the job's id and write the
 * canonical payload into out (what is stored and what the handler parses), or
 * leave out empty to keep the payload as given. On a bad payload they return
 * CV_ERR_INVALID with *field (NULL = the payload itself) and *why, which the
 * API sends back as its 400 and the worker records as the job's last error. */
#ifndef CV_JOBTYPE_H
#define CV_JOBTYPE_H

#include <stddef.h>

#include "json.h"
#include "rc.h"
#include "sbuf.h"

enum jobtype_id {
    JT_NOOP,
    JT_ACTIVATION,
    JT_ORDER_FETCH,       /* page the marketplace's orders, upsert, enqueue carrier posts */
    JT_CARRIER_POST,      /* create the shipment of one order at its carrier */
    JT_TRACKING_EVENT,    /* one carrier tracking event (webhook or feed) for one order */
    JT_TRACKING_POLL,     /* read a carrier's change feed (carriers that do not push) */
    JT_TRACKING_PUSH,     /* Mirakl OR23 then OR24 for one tracked order */
    JT_ML_NOTIFICATION,   /* a Mercado Livre notification: GET the resource, apply if changed */
    JT_N
};

/* What a job of the type needs from its worker (flags). */
#define JT_NEEDS_PG 1u        /* a PostgreSQL connection */
#define JT_NEEDS_UPSTREAM 2u  /* outbound HTTP to an outside system */
#define JT_HOLDS_EFFECTS 4u   /* a job stopped before it settled may leave effects
                               * unsettled (money): it ends dead and held */

typedef enum cv_rc (*jobtype_check_fn)(const cJSON *payload, const char *job_id,
                                       struct sbuf *out, const char **field,
                                       const char **why);

/* One payload field, checked by the generic validator. */
enum jobtype_kind {
    JTF_REF,    /* an external id: 1..64 of [A-Za-z0-9._:-] (order ids, references) */
    JTF_NAME,   /* a name: 1..32 of [a-z0-9_-] (carriers, topics) */
    JTF_TEXT,   /* any string of 1..512 bytes */
    JTF_TIME,   /* an RFC 3339 timestamp */
    JTF_INT,    /* a whole number >= 0 (or a string of digits) */
};
struct jobtype_field {
    const char *name;
    enum jobtype_kind kind;
    int required;
};

struct jobtype {
    const char *name;
    unsigned flags;
    /* Defaults of the type's config group; 0 = the global jobs.* value. */
    int max_attempts;
    int retry_base_ms;
    int retry_max_ms;
    /* The ordering key: the payload field that names the entity whose jobs must
     * not run at once or out of order (an order id), or NULL = the job id. */
    const char *key_field;
    /* An API-key scope word that also grants the type (NULL = only the type's
     * own name, or "*"). */
    const char *scope;
    /* The payload: an object whose fields are checked against this list
     * (ends with a NULL name; other fields pass untouched), then check() when
     * set. With neither, any JSON object or array. */
    const struct jobtype_field *fields;
    jobtype_check_fn check;
};

/* Row i of the table (i < JT_N). */
const struct jobtype *jobtype_at(int i);
/* The row named name (len bytes), or NULL. */
const struct jobtype *jobtype_find(const char *name, size_t len);
/* Index of the row named name, or -1. */
int jobtype_index(const char *name);
/* "noop, activation, ..." (static storage), for "known:" messages. */
const char *jobtype_names(void);

/* Validate and canonicalise a payload given as a parsed node (the API) or as
 * text (the worker: text may be NULL for node given). The canonical payload
 * goes to out; out is left empty when the payload is kept as given.
 * CV_ERR_INVALID with *field and *why on a bad payload. */
enum cv_rc jobtype_check(const struct jobtype *t, const cJSON *node, const char *job_id,
                         struct sbuf *out, const char **field, const char **why);
enum cv_rc jobtype_check_text(const struct jobtype *t, const char *payload, size_t len,
                              const char *job_id, struct sbuf *out, const char **field,
                              const char **why);

/* The ordering key of a job of type t with this payload into out (bytes
 * including the NUL): the key_field's string or whole-number value, else the
 * job id. Returns 0, or -1 when the field is missing (out = job id). */
int jobtype_key(const struct jobtype *t, const cJSON *payload, const char *job_id, char *out,
                size_t cap);

#endif
