/* api_admin.c - operators' endpoints: the dead-letter set, queues, workers.
 *
 *   GET  /v1/dead?type=&limit=     newest first
 *   POST /v1/dead/{id}/retry       202, 404, 409
 *   POST /v1/dead/{id}/purge       200, 404, 409 (not dead, or held)
 *   GET  /v1/queues                per type: depth, lag, ... and the job counters
 *   GET  /v1/workers               heartbeat younger than 10 s
 *   GET  /v1/held?min_age_s=&limit=   held money: the reconciler's figures and the
 *                                  transactions debited with no recorded outcome
 *
 * All of them need the operator scope (a key listing "operator", or "*"):
 * they show every producer's jobs, host names and pids. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "broker.h"
#include "db.h"
#include "mem.h"
#include "rds.h"


/* ==== GET /v1/dead ========================================================== */

static void on_dead_list(void *arg, enum cv_rc rc, const struct job_status *st, size_t n)
{
    struct req *r = arg;
    if (rc != CV_OK) {
        api_reply_err(r, rc, "could not read the dead-letter set; retry", NULL);
        goto out;
    }
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"jobs\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sbuf_add(&b, ",", 1);
        api_json_job_status(&b, &st[i], API_LIST_PAYLOAD_MAX);
    }
    sbuf_adds(&b, "]}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_dead_list(struct req *r)
{
    int64_t limit;
    if (api_query_str_or_reply(r, "type", r->type, sizeof(r->type)) ||
        api_query_int_or_reply(r, "limit", 1, 1000, 100, &limit))
        return;
    if (r->type[0] && !job_type_valid(r->type, strlen(r->type))) {
        api_reply_err(r, CV_ERR_INVALID, "type must be 1..31 of [a-z0-9_-]", "type");
        return;
    }
    api_req_hold(r);
    broker_dead_list(r->t->broker, r->type[0] ? r->type : NULL, (int)limit, on_dead_list, r);
}

/* ==== POST /v1/dead/{id}/retry ============================================== */

static void on_dead_retry(void *arg, enum cv_rc rc)
{
    struct req *r = arg;
    if (rc == CV_OK) {
        struct sbuf b;
        sbuf_init(&b);
        sbuf_add(&b, "{", 1);
        api_json_str(&b, "id", r->id, 1);
        api_json_str(&b, "status", "queued", 0);
        sbuf_add(&b, "}", 1);
        char loc[64];
        snprintf(loc, sizeof(loc), "/v1/jobs/%s", r->id);
        api_add_header(r, "Location", loc);
        api_reply_json(r, 202, &b);
        sbuf_cleanup(&b);
    } else if (rc == CV_ERR_NOT_FOUND) {
        api_reply_err(r, rc, "no such job", NULL);
    } else if (rc == CV_ERR_CONFLICT) {
        api_reply_err(r, rc, "job is not dead or failed", NULL);
    } else {
        api_reply_err(r, rc, "could not retry the job; retry", NULL);
    }
    api_req_release(r);
}

void api_h_dead_retry(struct req *r)
{
    if (api_param_uuid_or_reply(r, "id"))
        return;
    api_req_hold(r);
    broker_dead_retry(r->t->broker, r->id, on_dead_retry, r);
}

/* ==== POST /v1/dead/{id}/purge ============================================== */

/* An operator's way to delete a dead job for good. Refused (409) while the job
 * is held: its money may be debited, and its status is the only handle on it
 * until the reconciler settles it. */
static void on_dead_purge(void *arg, enum cv_rc rc, enum broker_purge what)
{
    struct req *r = arg;
    if (rc != CV_OK) {
        api_reply_err(r, rc, "could not purge the job; retry", NULL);
    } else if (what == BROKER_PURGED) {
        struct sbuf b;
        sbuf_init(&b);
        sbuf_add(&b, "{", 1);
        api_json_str(&b, "id", r->id, 1);
        api_json_str(&b, "status", "purged", 0);
        sbuf_add(&b, "}", 1);
        api_reply_json(r, 200, &b);
        sbuf_cleanup(&b);
    } else if (what == BROKER_PURGE_UNKNOWN) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "no such job", NULL);
    } else if (what == BROKER_PURGE_LIVE) {
        api_reply_err(r, CV_ERR_CONFLICT, "job is not dead or failed", NULL);
    } else {
        api_reply_err(r, CV_ERR_CONFLICT,
                      "job is held: its effects (money) may be unsettled; the reconciler "
                      "settles it, then it can be purged",
                      NULL);
    }
    api_req_release(r);
}

void api_h_dead_purge(struct req *r)
{
    if (api_param_uuid_or_reply(r, "id"))
        return;
    api_req_hold(r);
    broker_dead_purge(r->t->broker, r->id, on_dead_purge, r);
}

/* ==== GET /v1/queues ========================================================== */

/* The queues and, beside each, its type's counters (the outcomes of
 * conveyor_jobs_total: enqueued, succeeded, dead, ...; totals since the
 * store began, so a client gets rates from two readings). Two reads: the
 * counters first, kept here, then the queues. */
struct queues_call {
    struct req *r;
    struct type_counters *c;      /* NULL when the counters could not be read */
    size_t n;
};

static void counts_json(struct sbuf *b, const struct queues_call *qc, const char *type)
{
    for (size_t i = 0; qc->c && i < qc->n; i++) {
        if (strcmp(qc->c[i].type, type) != 0)
            continue;
        sbuf_adds(b, ",\"counts\":{");
        for (int k = 0; k < BROKER_NCOUNTERS; k++)
            api_json_i64(b, broker_counter_names[k], qc->c[i].n[k] > 0 ? qc->c[i].n[k] : 0,
                         k == 0);
        sbuf_add(b, "}", 1);
        return;
    }
}

static void on_queues(void *arg, enum cv_rc rc, const struct queue_stat *q, size_t n)
{
    struct queues_call *qc = arg;
    struct req *r = qc->r;
    if (rc != CV_OK) {
        api_reply_err(r, rc, "could not read the queues; retry", NULL);
        goto out;
    }
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{");
    api_json_str(&b, "transport", broker_transport(r->t->broker), 1);
    sbuf_adds(&b, ",\"queues\":[");
    for (size_t i = 0; i < n; i++) {
        sbuf_adds(&b, i ? ",{" : "{");
        api_json_str(&b, "type", q[i].type, 1);
        api_json_i64(&b, "depth", q[i].depth, 0);
        if (q[i].lag >= 0)
            api_json_i64(&b, "lag", q[i].lag, 0);
        else
            sbuf_adds(&b, ",\"lag\":null");
        api_json_i64(&b, "pending", q[i].pending, 0);
        api_json_i64(&b, "consumers", q[i].consumers, 0);
        api_json_i64(&b, "scheduled", q[i].scheduled, 0);
        api_json_i64(&b, "dead", q[i].dead, 0);
        api_json_i64(&b, "oldest_age_ms", (long long)q[i].oldest_age_ms, 0);
        counts_json(&b, qc, q[i].type);
        sbuf_add(&b, "}", 1);
    }
    sbuf_adds(&b, "]}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    free(qc->c);
    free(qc);
    api_req_release(r);
}

static void on_queue_counters(void *arg, enum cv_rc rc, const struct type_counters *c,
                              size_t n)
{
    struct queues_call *qc = arg;
    /* without counters the queues are still worth answering: "counts" is left out */
    if (rc == CV_OK && n > 0) {
        qc->c = xcalloc(n, sizeof(*c));
        memcpy(qc->c, c, n * sizeof(*c));
        qc->n = n;
    }
    if (qc->r->gone || qc->r->t->closing) {
        struct req *r = qc->r;
        free(qc->c);
        free(qc);
        api_req_release(r);
        return;
    }
    broker_queues(qc->r->t->broker, on_queues, qc);
}

void api_h_queues(struct req *r)
{
    struct queues_call *qc = xcalloc(1, sizeof(*qc));
    qc->r = r;
    api_req_hold(r);
    broker_counters(r->t->broker, on_queue_counters, qc);
}

/* ==== GET /v1/workers ========================================================= */

/* "a,b" -> ["a","b"] */
static void types_array(struct sbuf *b, const char *types)
{
    sbuf_add(b, "[", 1);
    int first = 1;
    const char *p = types;
    while (*p) {
        const char *e = p + strcspn(p, ", ");
        if (e > p) {
            if (!first)
                sbuf_add(b, ",", 1);
            sbuf_add_json_strn(b, p, (size_t)(e - p));
            first = 0;
        }
        p = *e ? e + 1 : e;
    }
    sbuf_add(b, "]", 1);
}

static void on_workers(void *arg, enum cv_rc rc, const struct worker_info *w, size_t n)
{
    struct req *r = arg;
    if (rc != CV_OK) {
        api_reply_err(r, rc, "could not read the workers; retry", NULL);
        goto out;
    }
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"workers\":[");
    for (size_t i = 0; i < n; i++) {
        sbuf_adds(&b, i ? ",{" : "{");
        api_json_str(&b, "name", w[i].name, 1);
        api_json_str(&b, "host", w[i].host, 0);
        api_json_i64(&b, "pid", w[i].pid, 0);
        sbuf_adds(&b, ",\"types\":");
        types_array(&b, w[i].types);
        api_json_i64(&b, "concurrency", w[i].concurrency, 0);
        api_json_time(&b, "started_at", w[i].started_ms, 0);
        api_json_time(&b, "last_seen", w[i].last_seen_ms, 0);
        api_json_i64(&b, "processed", w[i].processed, 0);
        /* settled since its previous heartbeat: busy when > 0 */
        api_json_i64(&b, "recent", w[i].recent, 0);
        sbuf_adds(&b, w[i].recent > 0 ? ",\"busy\":true" : ",\"busy\":false");
        sbuf_add(&b, "}", 1);
    }
    sbuf_adds(&b, "]}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_workers(struct req *r)
{
    api_req_hold(r);
    broker_workers(r->t->broker, WORKER_ALIVE_MS, on_workers, r);
}

/* ==== GET /v1/held ============================================================= */

/* Money is held while a transaction is PROCESSING: debited, its outcome not
 * recorded (worker/wrk_reconcile.c). The reply has the reconciler's figures
 * (the Redis hash cv:held:stats it writes each pass: count, amount and age of
 * the oldest of the rows older than reconcile.held_after_s; null until a
 * reconciler has run) and the rows themselves from PostgreSQL, oldest first,
 * at least min_age_s old (0: every PROCESSING row, including the jobs running
 * right now). Without PostgreSQL the figures still come, with
 * "transactions":null and "postgres":"down". */
#define HELD_LIMIT_MAX 1000
static const char HELD_LIST_SQL[] =
    "SELECT transaction_id::text, user_id, offer_id, amount::text AS amount, "
    "extract(epoch FROM now() - updated_at)::bigint AS age_s "
    "FROM transactions WHERE status = 'PROCESSING' "
    "AND updated_at <= now() - make_interval(secs => $1::int) "
    "ORDER BY updated_at LIMIT $2::int";

/* 1 when v is a JSON-safe decimal: -?digits(.digits)? */
static int is_decimal(const char *v)
{
    const char *p = v + (*v == '-');
    size_t n = strspn(p, "0123456789");
    if (n == 0)
        return 0;
    p += n;
    if (*p == '.') {
        n = strspn(p + 1, "0123456789");
        if (n == 0)
            return 0;
        p += 1 + n;
    }
    return *p == '\0';
}

/* A decimal from PostgreSQL (numeric text) as a JSON number, else a string or null. */
static void json_decimal(struct sbuf *b, const char *k, const char *v, int first)
{
    if (!v || !is_decimal(v)) {
        api_json_str_or_null(b, k, v, first);
        return;
    }
    if (!first)
        sbuf_add(b, ",", 1);
    sbuf_add_json_str(b, k);
    sbuf_add(b, ":", 1);
    sbuf_adds(b, v);
}

static void held_reply(struct req *r, const struct db_res *res)
{
    struct sbuf b;
    sbuf_init(&b);
    sbuf_add(&b, "{", 1);
    api_json_i64(&b, "held_after_s", r->t->cfg->reconcile_held_after_s, 1);
    sbuf_adds(&b, ",\"figures\":");
    sbuf_add(&b, r->acc->p, r->acc->len);
    if (!res) {
        sbuf_adds(&b, ",\"postgres\":\"down\",\"transactions\":null}");
    } else {
        sbuf_adds(&b, ",\"postgres\":\"up\",\"transactions\":[");
        for (int i = 0; i < db_res_rows(res); i++) {
            sbuf_adds(&b, i ? ",{" : "{");
            api_json_str(&b, "transaction_id", db_res_get(res, i, 0), 1);
            api_json_num_text(&b, "user_id", db_res_get(res, i, 1), 0);
            api_json_num_text(&b, "offer_id", db_res_get(res, i, 2), 0);
            json_decimal(&b, "amount", db_res_get(res, i, 3), 0);
            api_json_num_text(&b, "age_s", db_res_get(res, i, 4), 0);
            sbuf_add(&b, "}", 1);
        }
        sbuf_adds(&b, "]}");
    }
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
}

static void on_held_rows(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    held_reply(r, rc == CV_OK ? res : NULL);
    api_req_release(r);
}

static void on_held_figures(const struct rds_reply *reply, void *arg)
{
    struct req *r = arg;
    struct sbuf *a = r->acc;
    const char *count = reply ? rds_reply_hash_get(reply, "count") : NULL;
    if (!count) {
        sbuf_adds(a, "null");      /* no reconciler has run yet (or Redis is down) */
    } else {
        const char *at = rds_reply_hash_get(reply, "at_ms");
        sbuf_add(a, "{", 1);
        api_json_num_text(a, "count", count, 1);
        json_decimal(a, "amount", rds_reply_hash_get(reply, "amount"), 0);
        api_json_num_text(a, "oldest_s", rds_reply_hash_get(reply, "oldest_s"), 0);
        api_json_time(a, "at", at ? atoll(at) : 0, 0);
        sbuf_add(a, "}", 1);
    }
    if (!r->t->db || r->t->closing || r->gone) {
        held_reply(r, NULL);
    } else {
        const char *params[] = { r->key_param, r->key_param + 32 };
        api_req_hold(r);
        db_async_query(r->t->db, HELD_LIST_SQL, 2, params, on_held_rows, r);
    }
    api_req_release(r);
}

void api_h_held(struct req *r)
{
    int64_t min_age, limit;
    if (api_query_int_or_reply(r, "min_age_s", 0, 315360000, 0, &min_age) ||
        api_query_int_or_reply(r, "limit", 1, HELD_LIMIT_MAX, 100, &limit))
        return;
    /* the two parameters, kept for the second query: "<min_age>" at 0, "<limit>" at 32 */
    snprintf(r->key_param, 32, "%lld", (long long)min_age);
    snprintf(r->key_param + 32, 32, "%lld", (long long)limit);
    r->acc = xcalloc(1, sizeof(*r->acc));
    sbuf_init(r->acc);
    if (!r->t->rds || r->t->closing) {
        sbuf_adds(r->acc, "null");
        held_reply(r, NULL);
        return;
    }
    const char *argv[] = { "HGETALL", "cv:held:stats" };
    api_req_hold(r);
    rds_async_cmd(r->t->rds, on_held_figures, r, 2, argv, NULL);
}
