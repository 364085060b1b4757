/* ostore.c - the orders store over common/db.h (see ostore.h and the functions of
 * migrations/0002_orders.sql, which hold the rules; this file only passes values
 * and reads answers).
 *
 * Values travel as text parameters, never inside SQL text. Batches (a fetch page,
 * comm_log rows) travel as one JSON array parameter built with sbuf's JSON
 * quoting: strings such as URLs, error texts and marketplace addresses need no
 * PostgreSQL array-literal escaping, and NULL is JSON null. Raw JSON coming from
 * outside (customer, lines) is sent as a JSON *string*, so it can never add keys
 * to the element around it; PostgreSQL parses it (a bad text fails the page). */
#include "ostore.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "sbuf.h"
#include "trc.h"

const char ostore_null[] = "\x01ostore-null";

static const char *const result_names[OSTORE_N] = {
    [OSTORE_OK] = "ok",
    [OSTORE_SAME] = "same",
    [OSTORE_EDGE] = "edge",
    [OSTORE_FENCED] = "fenced",
    [OSTORE_BUSY] = "busy",
    [OSTORE_MISSING] = "missing",
    [OSTORE_PENDING] = "pending",
    [OSTORE_STALE] = "stale",
};

const char *ostore_result_str(enum ostore_result r)
{
    return (int)r >= 0 && r < OSTORE_N ? result_names[r] : "?";
}

const char *ostore_upsert_str(enum ostore_upsert u)
{
    switch (u) {
    case OSTORE_UPSERT_NEW:
        return "new";
    case OSTORE_UPSERT_CHANGED:
        return "changed";
    case OSTORE_UPSERT_UNCHANGED:
        return "unchanged";
    }
    return "?";
}

/* ==== low level ================================================================== */

/* A result word of the SQL functions, or -1 for one this code does not know
 * (a newer migration's word: a bug to fix together, see 0002's header).
 * 'claimed' (cv_order_claim) is OK. */
static int result_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcmp(s, "claimed") == 0)
        return OSTORE_OK;
    for (int i = 0; i < OSTORE_N; i++)
        if (strcmp(result_names[i], s) == 0)
            return i;
    return -1;
}

/* Run one statement. A link that cannot be (re)opened, and db.h's CV_ERR_IO (the
 * link broke, the deadline passed, or a retryable serialization failure), become
 * CV_ERR_UNAVAILABLE, as in worker/h_activation.c: the job waits for PostgreSQL
 * without spending an attempt. NULL unless *rc is CV_OK. */
static struct db_res *run(struct db *d, const char *sql, int n, const char *const *params,
                          enum cv_rc *rc)
{
    if (db_ensure(d)) {
        *rc = CV_ERR_UNAVAILABLE;
        return NULL;
    }
    struct db_res *r = db_exec(d, sql, n, params, rc);
    if (*rc == CV_ERR_IO)
        *rc = CV_ERR_UNAVAILABLE;
    return r;
}

/* The first row's column col as a result word; CV_ERR_INTERNAL when the
 * function answered nothing this code knows. */
static enum cv_rc first_result(const struct db_res *r, int col, enum ostore_result *res)
{
    int v = db_res_rows(r) > 0 ? result_parse(db_res_get(r, 0, col)) : -1;
    if (v < 0) {
        LOG_ERROR("ostore.unknown_result", "result=%s",
                  db_res_rows(r) > 0 && db_res_get(r, 0, col) ? db_res_get(r, 0, col) : "none");
        return CV_ERR_INTERNAL;
    }
    *res = (enum ostore_result)v;
    return CV_OK;
}

static int state_or_missing(const char *s)
{
    return s ? ostate_parse(s) : -1;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void copy_cut(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

static int parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* ---- JSON objects built field by field --------------------------------------------- */

static void jkey(struct sbuf *b, const char *key)
{
    if (b->len > 0 && b->p[b->len - 1] != '{')
        sbuf_adds(b, ",");
    sbuf_add_json_str(b, key);
    sbuf_adds(b, ":");
}

/* "key": "v", or "key": null for NULL (and for ostore_null). */
static void jstr(struct sbuf *b, const char *key, const char *v)
{
    jkey(b, key);
    if (!v || v == ostore_null)
        sbuf_adds(b, "null");
    else
        sbuf_add_json_str(b, v);
}

/* ==== fetch ======================================================================== */

#define UPSERT_SQL                                                                          \
    "SELECT order_id, outcome, internal_state, carrier_code"                                \
    "  FROM cv_order_upsert($1::jsonb, $2::uuid, $3)"

enum cv_rc ostore_upsert_batch(struct db *d, const struct ostore_order_in *in, size_t n,
                               const char *job_id, const char *trace_id,
                               struct ostore_upserted *out)
{
    enum cv_rc rc = CV_ERR_INVALID;
    struct db_res *r = NULL;
    unsigned char *used = NULL;
    struct sbuf b;
    sbuf_init(&b);
    if (n == 0 || n > OSTORE_BATCH_MAX)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (!in[i].order_id || !in[i].order_id[0])
            goto out;
    sbuf_adds(&b, "[");
    for (size_t i = 0; i < n; i++) {
        sbuf_adds(&b, i ? ",{" : "{");
        jstr(&b, "order_id", in[i].order_id);
        jstr(&b, "mirakl_state", in[i].mirakl_state);
        jstr(&b, "weight_kg", in[i].weight_kg);
        jstr(&b, "country", in[i].country);
        jstr(&b, "shipping_deadline", in[i].shipping_deadline);
        jstr(&b, "customer", in[i].customer_json);
        jstr(&b, "lines", in[i].lines_json);
        jstr(&b, "mirakl_updated_at", in[i].mirakl_updated_at);
        sbuf_adds(&b, "}");
    }
    sbuf_adds(&b, "]");
    const char *params[] = { b.p, job_id, trace_id };
    r = run(d, UPSERT_SQL, 3, params, &rc);
    if (rc != CV_OK)
        goto out;
    /* Rows come back in lock (order_id) order: give each input order the first
     * unused row with its id (an id twice in a page gets two rows). */
    used = xcalloc((size_t)db_res_rows(r) + 1, 1);
    for (size_t i = 0; i < n; i++) {
        int row = -1;
        for (int k = 0; k < db_res_rows(r) && row < 0; k++)
            if (!used[k] && strcmp(db_res_get(r, k, 0), in[i].order_id) == 0)
                row = k;
        const char *oc = row >= 0 ? db_res_get(r, row, 1) : NULL;
        int st = row >= 0 ? state_or_missing(db_res_get(r, row, 2)) : -1;
        if (!oc || st < 0) {
            LOG_ERROR("ostore.upsert_unanswered", "rows=%d n=%zu", db_res_rows(r), n);
            rc = CV_ERR_INTERNAL;
            goto out;
        }
        used[row] = 1;
        out[i].outcome = !strcmp(oc, "new")       ? OSTORE_UPSERT_NEW
                         : !strcmp(oc, "changed") ? OSTORE_UPSERT_CHANGED
                                                  : OSTORE_UPSERT_UNCHANGED;
        out[i].state = (enum ostate)st;
        copy_cut(out[i].carrier_code, sizeof(out[i].carrier_code), db_res_get(r, row, 3));
    }
out:
    free(used);
    db_res_free(r);
    sbuf_cleanup(&b);
    return rc;
}

/* ==== claims ======================================================================= */

enum cv_rc ostore_claim(struct db *d, const char *order_id, const char *job_id, int64_t epoch,
                        int ttl_ms, enum ostore_result *res)
{
    enum cv_rc rc = CV_ERR_INVALID;
    char ep[24], ttl[16];
    if (!order_id || !job_id || ttl_ms <= 0)
        return rc;
    snprintf(ep, sizeof(ep), "%" PRId64, epoch);
    snprintf(ttl, sizeof(ttl), "%d", ttl_ms);
    const char *params[] = { order_id, job_id, ep, ttl };
    struct db_res *r = run(d, "SELECT cv_order_claim($1, $2::uuid, $3::bigint, $4::int)", 4,
                           params, &rc);
    if (rc == CV_OK)
        rc = first_result(r, 0, res);
    db_res_free(r);
    return rc;
}

enum cv_rc ostore_release(struct db *d, const char *order_id, const char *job_id, int64_t epoch,
                          enum ostore_result *res)
{
    enum cv_rc rc = CV_ERR_INVALID;
    char ep[24];
    if (!order_id || !job_id)
        return rc;
    snprintf(ep, sizeof(ep), "%" PRId64, epoch);
    const char *params[] = { order_id, job_id, ep };
    struct db_res *r = run(d, "SELECT cv_order_release($1, $2::uuid, $3::bigint)", 3, params,
                           &rc);
    if (rc == CV_OK)
        rc = first_result(r, 0, res);
    db_res_free(r);
    return rc;
}

/* ==== transitions ================================================================== */

#define TRANSITION_SQL                                                                      \
    "SELECT result, internal_state, pending_applied"                                        \
    "  FROM cv_order_transition($1, $2, $3::uuid, $4::bigint, $5, $6, $7, $8, $9::jsonb,"  \
    "                           $10, $11::jsonb)"

/* The "set" object of a change: only the fields the caller named. */
static void change_set(struct sbuf *b, const struct ostore_change *c)
{
    static const struct {
        const char *key;
        size_t off;
    } strs[] = {
        { "carrier_code", offsetof(struct ostore_change, carrier_code) },
        { "tracking_number", offsetof(struct ostore_change, tracking_number) },
        { "expedition_id", offsetof(struct ostore_change, expedition_id) },
        { "carrier_status", offsetof(struct ostore_change, carrier_status) },
        { "carrier_event_at", offsetof(struct ostore_change, carrier_event_at) },
        { "last_error", offsetof(struct ostore_change, last_error) },
    };
    sbuf_adds(b, "{");
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        const char *v = *(const char *const *)((const char *)c + strs[i].off);
        if (v)
            jstr(b, strs[i].key, v);
    }
    if (c->set_carrier_seq) {
        jkey(b, "carrier_seq");
        sbuf_addf(b, "%" PRId64, c->carrier_seq);
    }
    if (c->mirakl_tracking_updated >= 0) {
        jkey(b, "mirakl_tracking_updated");
        sbuf_adds(b, c->mirakl_tracking_updated ? "true" : "false");
    }
    sbuf_adds(b, "}");
}

enum cv_rc ostore_transition(struct db *d, const struct ostore_change *c, struct ostore_moved *out)
{
    enum cv_rc rc = CV_ERR_INVALID;
    struct db_res *r = NULL;
    char ep[24];
    struct sbuf set;
    sbuf_init(&set);
    if (!c->order_id || !c->scope || !c->action || (int)c->to < 0 || c->to >= OSTATE_N)
        goto out;
    snprintf(ep, sizeof(ep), "%" PRId64, c->epoch);
    change_set(&set, c);
    const char *params[] = {
        c->order_id, ostate_str(c->to), c->job_id, c->job_id ? ep : NULL, c->scope, c->action,
        c->status, c->message, c->meta_json, c->trace_id, set.p,
    };
    r = run(d, TRANSITION_SQL, 11, params, &rc);
    if (rc != CV_OK)
        goto out;
    rc = first_result(r, 0, &out->result);
    if (rc != CV_OK)
        goto out;
    out->state = state_or_missing(db_res_get(r, 0, 1));
    int64_t applied = 0;
    parse_i64(db_res_get(r, 0, 2), &applied);
    out->pending_applied = (int)applied;
out:
    db_res_free(r);
    sbuf_cleanup(&set);
    return rc;
}

/* ==== tracking ===================================================================== */

#define TRACK_SQL                                                                           \
    "SELECT result, internal_state"                                                         \
    "  FROM cv_order_track($1, $2, $3, $4::boolean, $5::timestamptz, $6::bigint, $7, $8,"  \
    "                      $9::jsonb, $10::uuid, $11::bigint, $12)"

enum cv_rc ostore_track(struct db *d, const struct ostore_event *e, enum ostore_result *res,
                        int *state)
{
    enum cv_rc rc = CV_ERR_INVALID;
    char seq[24], ep[24];
    if (!e->order_id || !e->carrier || !e->event_at || (int)e->status < 0 ||
        e->status >= OTRACK_N)
        return rc;
    snprintf(seq, sizeof(seq), "%" PRId64, e->seq);
    snprintf(ep, sizeof(ep), "%" PRId64, e->epoch);
    const char *params[] = {
        e->order_id, e->carrier, otrack_str(e->status), e->terminal ? "t" : "f", e->event_at,
        e->has_seq ? seq : NULL, e->tracking_number, e->webhook_id, e->payload_json, e->job_id,
        e->job_id ? ep : NULL, e->trace_id,
    };
    struct db_res *r = run(d, TRACK_SQL, 12, params, &rc);
    if (rc == CV_OK)
        rc = first_result(r, 0, res);
    if (rc == CV_OK)
        *state = state_or_missing(db_res_get(r, 0, 1));
    db_res_free(r);
    return rc;
}

#define PENDING_TAKE_SQL                                                                    \
    "SELECT pending_id, carrier, status, cv_ts(event_at), seq, webhook_id, outcome"         \
    "  FROM cv_order_pending_take($1, $2::uuid, $3::bigint, $4)"

enum cv_rc ostore_pending_take(struct db *d, const char *order_id, const char *job_id,
                               int64_t epoch, const char *trace_id, enum ostore_result *res,
                               struct ostore_pending **events, size_t *n)
{
    enum cv_rc rc = CV_ERR_INVALID;
    struct db_res *r = NULL;
    struct ostore_pending *ev = NULL;
    size_t m = 0;
    char ep[24];
    *events = NULL;
    *n = 0;
    if (!order_id)
        goto out;
    snprintf(ep, sizeof(ep), "%" PRId64, epoch);
    const char *params[] = { order_id, job_id, job_id ? ep : NULL, trace_id };
    r = run(d, PENDING_TAKE_SQL, 4, params, &rc);
    if (rc != CV_OK)
        goto out;
    *res = OSTORE_OK;
    int rows = db_res_rows(r);
    if (rows > 0 && !db_res_get(r, 0, 0)) {
        /* a single row without an event: why nothing was applied */
        rc = first_result(r, 6, res);
        goto out;
    }
    ev = rows > 0 ? xcalloc((size_t)rows, sizeof(*ev)) : NULL;
    for (int i = 0; i < rows; i++, m++) {
        struct ostore_pending *p = &ev[m];
        int oc = result_parse(db_res_get(r, i, 6));
        if (parse_i64(db_res_get(r, i, 0), &p->id) || oc < 0) {
            rc = CV_ERR_INTERNAL;
            goto out;
        }
        copy_cut(p->carrier, sizeof(p->carrier), db_res_get(r, i, 1));
        p->status = otrack_parse(db_res_get(r, i, 2));
        copy_cut(p->event_at, sizeof(p->event_at), db_res_get(r, i, 3));
        p->has_seq = parse_i64(db_res_get(r, i, 4), &p->seq) == 0;
        copy_cut(p->webhook_id, sizeof(p->webhook_id), db_res_get(r, i, 5));
        p->outcome = (enum ostore_result)oc;
    }
    *events = ev;
    *n = m;
    ev = NULL;
out:
    free(ev);
    db_res_free(r);
    return rc;
}

/* ==== read side ==================================================================== */

#define ORDER_COLS                                                                          \
    "o.order_id, o.internal_state, o.mirakl_state, o.carrier_code, o.tracking_number,"      \
    " o.expedition_id, o.carrier_status, cv_ts(o.carrier_event_at) AS carrier_event_at,"    \
    " o.carrier_seq, o.mirakl_tracking_updated::text AS mirakl_tracking_updated,"           \
    " o.weight_kg, o.country, cv_ts(o.shipping_deadline) AS shipping_deadline,"             \
    " o.customer, o.lines, o.attempts, o.last_error, cv_ts(o.created_at) AS created_at,"    \
    " cv_ts(o.updated_at) AS updated_at, cv_ts(o.state_changed_at) AS state_changed_at,"    \
    " cv_ts(o.fetched_at) AS fetched_at, cv_ts(o.mirakl_updated_at) AS mirakl_updated_at,"  \
    " o.lock_job, o.lock_epoch, cv_ts(o.lock_until) AS lock_until"

/* A struct's string members by column name: one table per struct fills and
 * frees them. */
struct col {
    const char *name;
    size_t off;
};

#define OC(f) { #f, offsetof(struct ostore_order, f) }
static const struct col order_cols[] = {
    OC(order_id), OC(internal_state), OC(mirakl_state), OC(carrier_code),
    OC(tracking_number), OC(expedition_id), OC(carrier_status), OC(carrier_event_at),
    OC(carrier_seq), OC(mirakl_tracking_updated), OC(weight_kg), OC(country),
    OC(shipping_deadline), OC(customer), OC(lines), OC(attempts), OC(last_error),
    OC(created_at), OC(updated_at), OC(state_changed_at), OC(fetched_at),
    OC(mirakl_updated_at), OC(lock_job), OC(lock_epoch), OC(lock_until),
};
#undef OC

#define OPC(f) { #f, offsetof(struct ostore_op, f) }
static const struct col op_cols[] = {
    OPC(at), OPC(scope), OPC(action), OPC(order_id), OPC(carrier), OPC(status), OPC(message),
    OPC(meta), OPC(from_state), OPC(to_state), OPC(job_id), OPC(trace_id),
};
#undef OPC

#define NCOLS(t) (sizeof(t) / sizeof((t)[0]))

static char **member(void *obj, const struct col *c)
{
    return (char **)((char *)obj + c->off);
}

static void fill(void *obj, const struct col *cols, size_t ncols, const struct db_res *r, int row)
{
    for (size_t i = 0; i < ncols; i++) {
        int k = db_res_col(r, cols[i].name);
        *member(obj, &cols[i]) = k >= 0 ? dup_or_null(db_res_get(r, row, k)) : NULL;
    }
}

static void drop(void *obj, const struct col *cols, size_t ncols)
{
    for (size_t i = 0; i < ncols; i++)
        FREE_NULL(*member(obj, &cols[i]));
}

void ostore_orders_free(struct ostore_order *o, size_t n)
{
    for (size_t i = 0; o && i < n; i++)
        drop(&o[i], order_cols, NCOLS(order_cols));
    free(o);
}

void ostore_ops_free(struct ostore_op *ops, size_t n)
{
    for (size_t i = 0; ops && i < n; i++)
        drop(&ops[i], op_cols, NCOLS(op_cols));
    free(ops);
}

static struct ostore_order *orders_from(const struct db_res *r)
{
    int rows = db_res_rows(r);
    struct ostore_order *o = xcalloc(rows > 0 ? (size_t)rows : 1, sizeof(*o));
    for (int i = 0; i < rows; i++) {
        fill(&o[i], order_cols, NCOLS(order_cols), r, i);
        int st = state_or_missing(o[i].internal_state);
        o[i].state = st >= 0 ? (enum ostate)st : OSTATE_N;
    }
    return o;
}

#define GET_SQL "SELECT " ORDER_COLS " FROM orders o WHERE o.order_id = $1"
#define OPS_SQL                                                                             \
    "SELECT * FROM (SELECT id, cv_ts(at) AS at, scope, action, order_id, carrier, status,"  \
    "                      message, meta, from_state, to_state, job_id, trace_id"           \
    "                 FROM operations WHERE order_id = $1 ORDER BY id DESC LIMIT $2::int) t" \
    " ORDER BY id"

enum cv_rc ostore_get(struct db *d, const char *order_id, int ops_max, struct ostore_order **order,
                      struct ostore_op **ops, size_t *nops)
{
    enum cv_rc rc = CV_ERR_INVALID;
    struct db_res *r = NULL;
    struct ostore_order *o = NULL;
    struct ostore_op *p = NULL;
    size_t np = 0;
    char lim[16];
    if (!order_id)
        goto out;
    const char *params[] = { order_id, lim };
    r = run(d, GET_SQL, 1, params, &rc);
    if (rc != CV_OK)
        goto out;
    if (db_res_rows(r) == 0) {
        rc = CV_ERR_NOT_FOUND;
        goto out;
    }
    o = orders_from(r);
    db_res_free(r);
    snprintf(lim, sizeof(lim), "%d", ops_max > 0 ? ops_max : 0);
    r = run(d, OPS_SQL, 2, params, &rc);
    if (rc != CV_OK)
        goto out;
    int rows = db_res_rows(r);
    p = xcalloc(rows > 0 ? (size_t)rows : 1, sizeof(*p));
    for (int i = 0; i < rows; i++, np++) {
        parse_i64(db_res_get(r, i, 0), &p[i].id);
        fill(&p[i], op_cols, NCOLS(op_cols), r, i);
    }
    *order = o;
    *ops = p;
    *nops = np;
    o = NULL;
    p = NULL;
out:
    ostore_orders_free(o, 1);
    ostore_ops_free(p, np);
    db_res_free(r);
    return rc;
}

#define FIND_SQL                                                                            \
    "SELECT order_id FROM orders WHERE tracking_number = $1"                                \
    " UNION SELECT order_id FROM orders WHERE expedition_id = $1 LIMIT 2"

enum cv_rc ostore_find(struct db *d, const char *ref, char **order_id)
{
    enum cv_rc rc = CV_ERR_INVALID;
    struct db_res *r = NULL;
    *order_id = NULL;
    if (!ref || !*ref)
        goto out;
    const char *params[] = { ref };
    r = run(d, FIND_SQL, 1, params, &rc);
    if (rc != CV_OK)
        goto out;
    if (db_res_rows(r) != 1) {
        rc = db_res_rows(r) == 0 ? CV_ERR_NOT_FOUND : CV_ERR_CONFLICT;
        goto out;
    }
    *order_id = xstrdup(db_res_get(r, 0, 0));
out:
    db_res_free(r);
    return rc;
}

#define LIST_SQL                                                                            \
    "SELECT " ORDER_COLS ", (extract(epoch FROM o.updated_at) * 1000000)::bigint AS cur_us" \
    "  FROM orders o"                                                                       \
    " WHERE ($1::text IS NULL OR o.internal_state = $1::text)"                              \
    "   AND ($2::bigint IS NULL OR (o.updated_at, o.order_id) >"                            \
    "        (timestamptz 'epoch' + $2::bigint * interval '1 microsecond', $3::text))"       \
    " ORDER BY o.updated_at, o.order_id LIMIT $4::int"

const char ostore_sql_list[] = LIST_SQL;
const char ostore_sql_get[] = GET_SQL;
const char ostore_sql_ops[] = OPS_SQL;
const char ostore_sql_calls[] =
    "SELECT id, cv_ts(at) AS at, upstream, method, url, status AS status_code, class,"
    " duration_ms, attempt, job_id, trace_id, error FROM comm_log WHERE order_id = $1"
    " ORDER BY id DESC LIMIT $2::int";
const char ostore_sql_counts[] =
    "SELECT internal_state, count(*) AS n FROM orders GROUP BY internal_state";

/* A cursor is "<updated_at in epoch microseconds>:<order_id>" of the last row
 * seen: exact (timestamptz has microseconds) and opaque to clients. */
int ostore_cursor_split(const char *cursor, char us[24], const char **id)
{
    const char *colon = strchr(cursor, ':');
    size_t n = colon ? (size_t)(colon - cursor) : 0;
    if (n == 0 || n >= 20 || !colon[1])
        return -1;
    for (size_t i = 0; i < n; i++)
        if (cursor[i] < '0' || cursor[i] > '9')
            return -1;
    memcpy(us, cursor, n);
    us[n] = '\0';
    *id = colon + 1;
    return 0;
}

enum cv_rc ostore_list(struct db *d, const char *state, const char *cursor, int limit,
                       struct ostore_order **orders, size_t *n, char **next_cursor)
{
    enum cv_rc rc = CV_ERR_INVALID;
    struct db_res *r = NULL;
    char us[24], lim[16];
    const char *after_id = NULL;
    *orders = NULL;
    *n = 0;
    *next_cursor = NULL;
    if (state && ostate_parse(state) < 0)
        goto out;
    if (cursor && ostore_cursor_split(cursor, us, &after_id))
        goto out;
    if (limit < 1)
        limit = 1;
    if (limit > OSTORE_BATCH_MAX)
        limit = OSTORE_BATCH_MAX;
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *params[] = { state, cursor ? us : NULL, after_id, lim };
    r = run(d, LIST_SQL, 4, params, &rc);
    if (rc != CV_OK)
        goto out;
    int rows = db_res_rows(r);
    *orders = orders_from(r);
    *n = (size_t)rows;
    if (rows == limit) {
        int k = db_res_col(r, "cur_us");
        *next_cursor = xasprintf("%s:%s", db_res_get(r, rows - 1, k),
                                 (*orders)[rows - 1].order_id);
    }
out:
    db_res_free(r);
    return rc;
}

/* ==== communication log ============================================================= */

#define COMM_LOG_SQL                                                                        \
    "INSERT INTO comm_log (at, upstream, method, url, status, class, duration_ms, attempt,"  \
    "                      job_id, trace_id, order_id, error)"                              \
    "SELECT coalesce(x.at, now()), x.upstream, x.method, x.url, x.status, x.class,"         \
    "       x.duration_ms, x.attempt, x.job_id, x.trace_id, x.order_id, x.error"            \
    "  FROM jsonb_to_recordset($1::jsonb) AS x(at timestamptz, upstream text, method text,"  \
    "       url text, status int, class text, duration_ms numeric, attempt int, job_id uuid," \
    "       trace_id text, order_id text, error text)"

enum cv_rc ostore_comm_log_batch(struct db *d, const struct ostore_call *calls, size_t n)
{
    enum cv_rc rc = CV_ERR_INVALID;
    struct db_res *r = NULL;
    struct sbuf b;
    sbuf_init(&b);
    if (n == 0 || n > OSTORE_BATCH_MAX)
        goto out;
    sbuf_adds(&b, "[");
    for (size_t i = 0; i < n; i++) {
        const struct ostore_call *c = &calls[i];
        if (!c->upstream || !c->method || !c->url)
            goto out;
        sbuf_adds(&b, i ? ",{" : "{");
        jstr(&b, "at", c->at);
        jstr(&b, "upstream", c->upstream);
        jstr(&b, "method", c->method);
        jstr(&b, "url", c->url);
        jkey(&b, "status");
        if (c->status > 0)
            sbuf_addf(&b, "%d", c->status);
        else
            sbuf_adds(&b, "null");
        jstr(&b, "class", c->class_);
        jkey(&b, "duration_ms");
        if (isfinite(c->duration_ms))
            sbuf_addf(&b, "%.3f", c->duration_ms);
        else
            sbuf_adds(&b, "null");
        jkey(&b, "attempt");
        sbuf_addf(&b, "%d", c->attempt);
        jstr(&b, "job_id", c->job_id);
        jstr(&b, "trace_id", c->trace_id);
        jstr(&b, "order_id", c->order_id);
        jstr(&b, "error", c->error);
        sbuf_adds(&b, "}");
    }
    sbuf_adds(&b, "]");
    const char *params[] = { b.p };
    r = run(d, COMM_LOG_SQL, 1, params, &rc);
out:
    db_res_free(r);
    sbuf_cleanup(&b);
    return rc;
}

/* ==== batches (0005_orders_batch.sql) ============================================== */

enum cv_rc ostore_claim_many(struct db *d, const struct ostore_claim_in *in, size_t n, int ttl_ms,
                             struct ostore_claimed *out)
{
    enum cv_rc rc = CV_OK;
    struct db_res *r = NULL;
    struct sbuf items;
    char ttl[16];
    sbuf_init(&items);
    memset(out, 0, n * sizeof(*out));
    if (n == 0)
        goto out;
    sbuf_adds(&items, "[");
    for (size_t i = 0; i < n; i++) {
        sbuf_addf(&items, "%s{\"i\":%zu", i ? "," : "", i);
        jstr(&items, "order_id", in[i].order_id);
        jstr(&items, "job", in[i].job_id);
        jkey(&items, "epoch");
        sbuf_addf(&items, "%" PRId64 "}", in[i].epoch);
    }
    sbuf_adds(&items, "]");
    snprintf(ttl, sizeof(ttl), "%d", ttl_ms);
    const char *params[] = { items.p, ttl };
    struct trc_span sp;
    char fn[48];
    snprintf(fn, sizeof(fn), "ostore_claim_many %zu", n);
    trc_enter(&sp, TRC_DB, fn, n == 1 ? in[0].job_id : NULL, NULL);
    r = run(d,
            "SELECT i, result, internal_state, carrier_code, tracking_number, country,"
            " weight_kg, customer, attempts, last_error, mirakl_tracking_updated, age_ms"
            "  FROM cv_order_claim_many($1::jsonb, $2::int)",
            2, params, &rc);
    trc_exit(&sp, rc == CV_OK ? NULL : cv_rc_str(rc));
    if (rc != CV_OK)
        goto out;
    int64_t answered = clock_mono_ms();
    for (int row = 0; row < db_res_rows(r); row++) {
        int i = atoi(db_res_get(r, row, 0));
        if (i < 0 || (size_t)i >= n)
            continue;
        struct ostore_claimed *c = &out[i];
        const char *w = db_res_get(r, row, 1);
        c->result = strcmp(w, "claimed") == 0 ? OSTORE_OK
                    : strcmp(w, "busy") == 0  ? OSTORE_BUSY
                    : strcmp(w, "fenced") == 0 ? OSTORE_FENCED
                                               : OSTORE_MISSING;
        if (c->result != OSTORE_OK)
            continue;
        c->state = ostate_parse(db_res_get(r, row, 2));
        static const size_t offs[] = {
            offsetof(struct ostore_claimed, carrier_code),
            offsetof(struct ostore_claimed, tracking_number),
            offsetof(struct ostore_claimed, country),
            offsetof(struct ostore_claimed, weight_kg),
            offsetof(struct ostore_claimed, customer),
            offsetof(struct ostore_claimed, attempts),
            offsetof(struct ostore_claimed, last_error),
        };
        for (size_t k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
            const char *v = db_res_get(r, row, (int)k + 3);
            *(char **)((char *)c + offs[k]) = v ? xstrdup(v) : NULL;
        }
        const char *tu = db_res_get(r, row, 10);
        c->tracking_pushed = tu && tu[0] == 't';
        const char *age = db_res_get(r, row, 11);
        c->age_ms = age ? strtoll(age, NULL, 10) : -1;
        c->claimed_mono_ms = answered;
    }
out:
    db_res_free(r);
    sbuf_cleanup(&items);
    return rc;
}

void ostore_claimed_free(struct ostore_claimed *c, size_t n)
{
    for (size_t i = 0; c && i < n; i++) {
        free(c[i].carrier_code);
        free(c[i].tracking_number);
        free(c[i].country);
        free(c[i].weight_kg);
        free(c[i].customer);
        free(c[i].attempts);
        free(c[i].last_error);
    }
}

enum cv_rc ostore_move_many(struct db *d, const struct ostore_plan *plans, size_t n,
                            struct ostore_moved *out)
{
    enum cv_rc rc = CV_OK;
    struct db_res *r = NULL;
    struct sbuf items, set;
    sbuf_init(&items);
    sbuf_init(&set);
    for (size_t i = 0; i < n; i++) {
        out[i].result = OSTORE_MISSING;
        out[i].state = -1;
        out[i].pending_applied = 0;
    }
    if (n == 0)
        goto out;
    sbuf_adds(&items, "[");
    for (size_t i = 0; i < n; i++) {
        const struct ostore_plan *p = &plans[i];
        sbuf_addf(&items, "%s{\"i\":%zu", i ? "," : "", i);
        jstr(&items, "order_id", p->order_id);
        jstr(&items, "job", p->job_id);
        jkey(&items, "epoch");
        sbuf_addf(&items, "%" PRId64, p->epoch);
        jstr(&items, "trace", p->trace_id);
        jkey(&items, "release");
        sbuf_adds(&items, p->release ? "true" : "false");
        jkey(&items, "steps");
        sbuf_adds(&items, "[");
        for (size_t k = 0; k < p->nsteps; k++) {
            const struct ostore_change *c = &p->steps[k];
            sbuf_adds(&items, k ? ",{" : "{");
            jstr(&items, "to", ostate_str(c->to));
            jstr(&items, "scope", c->scope);
            jstr(&items, "action", c->action);
            jstr(&items, "status", c->status);
            jstr(&items, "message", c->message);
            if (c->meta_json) {
                jkey(&items, "meta");
                sbuf_adds(&items, c->meta_json);
            }
            sbuf_reset(&set);
            change_set(&set, c);
            jkey(&items, "set");
            sbuf_add(&items, set.p, set.len);
            sbuf_adds(&items, "}");
        }
        sbuf_adds(&items, "]}");
    }
    sbuf_adds(&items, "]");
    const char *params[] = { items.p };
    struct trc_span sp;
    char fn[48];
    snprintf(fn, sizeof(fn), "ostore_move_many %zu", n);
    trc_enter(&sp, TRC_DB, fn, n == 1 ? plans[0].job_id : NULL, n == 1 ? plans[0].trace_id : NULL);
    r = run(d,
            "SELECT i, result, internal_state, pending_applied FROM cv_order_move_many($1::jsonb)",
            1, params, &rc);
    trc_exit(&sp, rc == CV_OK ? NULL : cv_rc_str(rc));
    if (rc != CV_OK)
        goto out;
    for (int row = 0; row < db_res_rows(r); row++) {
        int i = atoi(db_res_get(r, row, 0));
        int v = result_parse(db_res_get(r, row, 1));
        if (i < 0 || (size_t)i >= n || v < 0)
            continue;
        out[i].result = (enum ostore_result)v;
        const char *st = db_res_get(r, row, 2);
        out[i].state = st ? ostate_parse(st) : -1;
        out[i].pending_applied = atoi(db_res_get(r, row, 3) ? db_res_get(r, row, 3) : "0");
    }
out:
    db_res_free(r);
    sbuf_cleanup(&items);
    sbuf_cleanup(&set);
    return rc;
}

enum cv_rc ostore_mark_tracking_pushed(struct db *d, const char *order_id, const char *job_id,
                                       int64_t epoch, const char *trace_id,
                                       enum ostore_result *res)
{
    enum cv_rc rc;
    char ep[24];
    snprintf(ep, sizeof(ep), "%" PRId64, epoch);
    const char *params[] = { order_id, job_id, ep, trace_id };
    struct db_res *r = run(d,
                           "SELECT cv_order_mark_tracking_pushed($1, $2::uuid, $3::bigint, $4)",
                           4, params, &rc);
    if (rc == CV_OK)
        rc = first_result(r, 0, res);
    db_res_free(r);
    return rc;
}
