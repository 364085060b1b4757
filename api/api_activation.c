/* api_activation.c - the seed's offer-activation endpoints.
 *
 *   POST /api/v1/activation/                       enqueue an `activation` job
 *   GET  /api/v1/activation/status/{transaction_id}/
 *   GET  /api/v1/offers/, /api/v1/offers/{id}/
 *   GET  /api/v1/accounts/{user_id}/, /api/v1/accounts/{user_id}/transactions/
 *
 * The transaction id is the job id. After a new (not duplicate) publish the
 * Redis hash transaction:<id> gets the request fields and, only if nobody
 * wrote them yet, status PENDING and updated_at (HSETNX: a fast worker may
 * already have moved it on). Status reads try that hash first, then the
 * transactions table. PostgreSQL is reached only through db_async_query with
 * parameters; when it is down these endpoints answer 503. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "broker.h"
#include "clock.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "met.h"
#include "rds.h"

/* Ids stay exact in every JSON parser (2^53 - 1). */
#define ID_MAX 9007199254740991LL
#define TXN_KEY_PREFIX "transaction:"

/* ==== payload ============================================================== */

/* ==== helpers ============================================================== */

static void txn_key(char out[64], const char *id)
{
    snprintf(out, 64, TXN_KEY_PREFIX "%s", id);
}

/* user and offer are the ids to show (NULL = null): the request's own for a
 * new transaction, the first request's for a duplicate. */
static void activation_reply(struct req *r, const char *status, const char *user,
                             const char *offer, int duplicate)
{
    struct sbuf b;
    char loc[96];
    sbuf_init(&b);
    sbuf_add(&b, "{", 1);
    api_json_str(&b, "transaction_id", r->id, 1);
    api_json_str(&b, "status", status ? status : "PENDING", 0);
    api_json_num_text(&b, "user_id", user, 0);
    api_json_num_text(&b, "offer_id", offer, 0);
    if (duplicate)
        sbuf_adds(&b, ",\"duplicate\":true");
    sbuf_add(&b, "}", 1);
    snprintf(loc, sizeof(loc), "/api/v1/activation/status/%s/", r->id);
    api_add_header(r, "Location", loc);
    api_reply_json(r, 202, &b);
    sbuf_cleanup(&b);
}

/* The request's own ids as text. */
static void own_ids(const struct req *r, char uid[24], char oid[24])
{
    snprintf(uid, 24, "%lld", (long long)r->user_id);
    snprintf(oid, 24, "%lld", (long long)r->offer_id);
}

/* Run a statement for r, or answer 503 when PostgreSQL is not configured. */
static void db_query(struct req *r, const char *sql, int n, const char *const *params, db_cb cb)
{
    if (!r->t->db || r->t->closing) {
        api_reply_err(r, CV_ERR_IO, "PostgreSQL is not available", NULL);
        return;
    }
    api_req_hold(r);
    db_async_query(r->t->db, sql, n, params, cb, r);
}

/* Common failure handling for a PostgreSQL callback: 1 when it replied. */
static int db_failed(struct req *r, enum cv_rc rc, const struct db_res *res)
{
    if (rc == CV_OK && res)
        return 0;
    api_reply_err(r, rc == CV_OK ? CV_ERR_INTERNAL : CV_ERR_IO,
                  "PostgreSQL is not available; retry", NULL);
    return 1;
}

/* A path id: digits, 1..ID_MAX. Replies 400 and returns -1 otherwise. */
static int path_id_or_reply(struct req *r, const char *s, const char *field, int64_t *out)
{
    int64_t v = 0;
    size_t n = strlen(s);
    int ok = n > 0 && n <= 16;
    for (size_t i = 0; ok && i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            ok = 0;
        else
            v = v * 10 + (s[i] - '0');
    }
    if (!ok || v < 1 || v > ID_MAX) {
        api_reply_err(r, CV_ERR_INVALID, "must be a whole number > 0", field);
        return -1;
    }
    *out = v;
    return 0;
}

/* ==== POST /api/v1/activation/ ============================================== */

static void on_hash_written(const struct rds_reply *reply, void *arg)
{
    struct req *r = arg;
    if (!reply || rds_reply_type(reply) == RDS_ERR)
        r->pending_err = 1;
    /* four pipelined writes; the last reply answers the client */
    if (--r->writes_left == 0) {
        char uid[24], oid[24];
        if (r->pending_err)
            LOG_WARN("api.activation_hash_failed", "transaction_id=%s", r->id);
        /* the job is enqueued either way: the worker writes the status too */
        own_ids(r, uid, oid);
        activation_reply(r, "PENDING", uid, oid, 0);
    }
    api_req_release(r);
}

/* A duplicate whose transaction hash lacks the ids (expired, or the first
 * request's outcome was unknown so the API never wrote it): the job's
 * payload holds the first request's user_id and offer_id. */
static void on_dup_job(void *arg, enum cv_rc rc, const struct job_status *st)
{
    struct req *r = arg;
    char uid[24] = "", oid[24] = "";
    cJSON *p = NULL;
    if (rc == CV_OK && st && st->payload)
        p = json_parse(st->payload, strlen(st->payload));
    int64_t u, o;
    const char *field;
    if (p && json_get_int64(p, "user_id", 1, ID_MAX, &u, &field) == CV_OK &&
        json_get_int64(p, "offer_id", 1, ID_MAX, &o, &field) == CV_OK) {
        snprintf(uid, sizeof(uid), "%lld", (long long)u);
        snprintf(oid, sizeof(oid), "%lld", (long long)o);
    }
    cJSON_Delete(p);
    /* never the current request's ids: null when the first ones are unknown */
    activation_reply(r, r->txn_status[0] ? r->txn_status : "PENDING", uid[0] ? uid : NULL,
                     oid[0] ? oid : NULL, 1);
    api_req_release(r);
}

static void on_dup_read(const struct rds_reply *reply, void *arg)
{
    struct req *r = arg;
    /* HMGET status user_id offer_id */
    const char *st = NULL, *u = NULL, *o = NULL;
    if (reply && rds_reply_type(reply) == RDS_ARR && rds_reply_len(reply) == 3) {
        st = rds_reply_at_str(reply, 0);
        u = rds_reply_at_str(reply, 1);
        o = rds_reply_at_str(reply, 2);
    }
    if (u && o) {
        activation_reply(r, st, u, o, 1);
    } else if (r->t->closing) {
        activation_reply(r, st, NULL, NULL, 1);
    } else {
        snprintf(r->txn_status, sizeof(r->txn_status), "%s", st ? st : "");
        api_req_hold(r);
        broker_get(r->t->broker, r->id, on_dup_job, r);
    }
    api_req_release(r);
}

static void on_activation_published(void *arg, enum api_pub_outcome o, const char *id)
{
    struct req *r = arg;
    struct api_thread *t = r->t;
    char key[64], uid[24], oid[24];
    if (o != API_PUB_NEW && o != API_PUB_DUP) {
        if (o != API_PUB_FULL)
            snprintf(r->id, sizeof(r->id), "%s", id);
        api_reply_pub_failure(r, o, "activation", id);
        goto out;
    }
    snprintf(r->id, sizeof(r->id), "%s", id);
    txn_key(key, r->id);
    if (o == API_PUB_DUP) {
        /* a repeat (Idempotency-Key or Conveyor-Job-Id of this producer):
         * answer with the first transaction, never with this request's ids */
        if (t->closing) {
            activation_reply(r, NULL, NULL, NULL, 1);
            goto out;
        }
        const char *argv[] = { "HMGET", key, "status", "user_id", "offer_id" };
        api_req_hold(r);
        rds_async_cmd(t->rds, on_dup_read, r, 5, argv, NULL);
        goto out;
    }
    met_inc(t->g->met, t->idx, t->g->m_enqueued[r->type_idx]);
    own_ids(r, uid, oid);
    if (t->closing) {
        activation_reply(r, "PENDING", uid, oid, 0);
        goto out;
    }
    char now[CLOCK_RFC3339_LEN], ttl[24];
    snprintf(ttl, sizeof(ttl), "%d", t->cfg->status_ttl_s);
    clock_rfc3339(clock_wall_ms(), now);
    const char *hset[] = { "HSET", key, "transaction_id", r->id, "user_id", uid,
                           "offer_id", oid, "created_at", now };
    const char *status[] = { "HSETNX", key, "status", "PENDING" };
    const char *updated[] = { "HSETNX", key, "updated_at", now };
    const char *expire[] = { "EXPIRE", key, ttl };
    r->writes_left = 4;
    r->pending_err = 0;
    for (int i = 0; i < 4; i++)
        api_req_hold(r);
    /* pipelined on one connection: one round trip for the four */
    rds_async_cmd(t->rds, on_hash_written, r, 10, hset, NULL);
    rds_async_cmd(t->rds, on_hash_written, r, 4, status, NULL);
    rds_async_cmd(t->rds, on_hash_written, r, 4, updated, NULL);
    rds_async_cmd(t->rds, on_hash_written, r, 3, expire, NULL);
out:
    api_req_release(r);
}

void api_h_activation_create(struct req *r)
{
    struct jobopt o;
    cJSON *root = NULL;
    struct job *j = NULL;
    /* the same options as POST /v1/jobs/activation, through the same parser */
    if (api_require_json_or_reply(r) || api_opts_or_reply(r, 1, &o))
        goto out;
    root = api_parse_body_or_reply(r);
    if (!root)
        goto out;
    if (!cJSON_IsObject(root)) {
        api_reply_err(r, CV_ERR_INVALID, "body must be a JSON object with user_id and offer_id",
                      "body");
        goto out;
    }
    const char *field = NULL, *why = NULL;
    if (jobopt_make(r->t->cfg, jobtype_at(JT_ACTIVATION), &o, NULL, r->key ? r->key->name : "",
                    root, NULL, 0, clock_wall_ms(), &j, &field, &why) != CV_OK) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s %s", field ? field : "body", why);
        api_reply_err(r, CV_ERR_INVALID, msg, field ? field : "body");
        goto out;
    }
    j->bounded = 1;
    /* the reply shows the ids: read them back from the canonical payload */
    json_get_int64(root, "user_id", 1, ID_MAX, &r->user_id, &field);
    json_get_int64(root, "offer_id", 1, ID_MAX, &r->offer_id, &field);
    snprintf(r->type, sizeof(r->type), "activation");
    r->type_idx = JT_ACTIVATION;
    snprintf(r->id, sizeof(r->id), "%s", j->id);
    api_req_hold(r);
    api_publish_one(r->t, j, on_activation_published, r);
    j = NULL;
out:
    job_free(j);
    cJSON_Delete(root);
}

/* ==== GET /api/v1/activation/status/{transaction_id}/ ======================== */

static const char *const txn_fields[] = { "transaction_id", "user_id",    "offer_id",
                                          "amount",         "status",     "error",
                                          "created_at",     "updated_at", "completed_at" };
#define NTXN_FIELDS (sizeof(txn_fields) / sizeof(txn_fields[0]))

/* The columns in txn_fields order; times as RFC 3339 UTC like the rest of the API. */
#define TXN_COLUMNS                                                                           \
    "transaction_id::text AS transaction_id, user_id, offer_id, amount::text AS amount, "     \
    "status, error, "                                                                         \
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS created_at, " \
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS updated_at, " \
    "to_char(completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS completed_at"

static void txn_json(struct sbuf *b, const char *const vals[NTXN_FIELDS])
{
    sbuf_add(b, "{", 1);
    for (size_t i = 0; i < NTXN_FIELDS; i++) {
        if (i == 1 || i == 2)
            api_json_num_text(b, txn_fields[i], vals[i], i == 0);
        else
            api_json_str_or_null(b, txn_fields[i], vals[i], i == 0);
    }
    sbuf_add(b, "}", 1);
}

static void txn_row_json(struct sbuf *b, const struct db_res *res, int row)
{
    const char *vals[NTXN_FIELDS];
    for (size_t i = 0; i < NTXN_FIELDS; i++) {
        int c = db_res_col(res, txn_fields[i]);
        vals[i] = c < 0 ? NULL : db_res_get(res, row, c);
    }
    txn_json(b, vals);
}

static void on_status_row(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    if (db_failed(r, rc, res))
        goto out;
    if (db_res_rows(res) == 0) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "no such transaction", NULL);
        goto out;
    }
    struct sbuf b;
    sbuf_init(&b);
    txn_row_json(&b, res, 0);
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

static void on_status_hash(const struct rds_reply *reply, void *arg)
{
    struct req *r = arg;
    if (reply && rds_reply_type(reply) == RDS_ARR && rds_reply_len(reply) >= 2) {
        const char *vals[NTXN_FIELDS];
        for (size_t i = 0; i < NTXN_FIELDS; i++)
            vals[i] = rds_reply_hash_get(reply, txn_fields[i]);
        if (!vals[0])
            vals[0] = r->id;
        struct sbuf b;
        sbuf_init(&b);
        txn_json(&b, vals);
        api_reply_json(r, 200, &b);
        sbuf_cleanup(&b);
    } else if (!r->t->db && reply && rds_reply_type(reply) == RDS_ARR) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "no such transaction", NULL);
    } else {
        /* not cached (expired, or written by the worker only), or Redis is
         * down: the table has every transaction */
        const char *params[] = { r->id };
        db_query(r, "SELECT " TXN_COLUMNS " FROM transactions WHERE transaction_id = $1", 1,
                 params, on_status_row);
    }
    api_req_release(r);
}

void api_h_activation_status(struct req *r)
{
    char key[64];
    if (api_param_uuid_or_reply(r, "transaction_id"))
        return;
    txn_key(key, r->id);
    const char *argv[] = { "HGETALL", key };
    api_req_hold(r);
    rds_async_cmd(r->t->rds, on_status_hash, r, 2, argv, NULL);
}

/* ==== offers and accounts =================================================== */

#define OFFER_COLUMNS "id, name, price::text AS price, duration_days"

static void offer_json(struct sbuf *b, const struct db_res *res, int row)
{
    sbuf_add(b, "{", 1);
    api_json_num_text(b, "id", db_res_get(res, row, 0), 1);
    api_json_str_or_null(b, "name", db_res_get(res, row, 1), 0);
    api_json_str_or_null(b, "price", db_res_get(res, row, 2), 0);
    api_json_num_text(b, "duration_days", db_res_get(res, row, 3), 0);
    sbuf_add(b, "}", 1);
}

static void on_offers(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    if (db_failed(r, rc, res))
        goto out;
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"offers\":[");
    for (int i = 0; i < db_res_rows(res); i++) {
        if (i)
            sbuf_add(&b, ",", 1);
        offer_json(&b, res, i);
    }
    sbuf_adds(&b, "]}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_offers(struct req *r)
{
    db_query(r, "SELECT " OFFER_COLUMNS " FROM offers ORDER BY id LIMIT 1000", 0, NULL,
             on_offers);
}

static void on_offer(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    if (db_failed(r, rc, res))
        goto out;
    if (db_res_rows(res) == 0) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "no such offer", NULL);
        goto out;
    }
    struct sbuf b;
    sbuf_init(&b);
    offer_json(&b, res, 0);
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_offer(struct req *r)
{
    int64_t id;
    char p[24];
    if (path_id_or_reply(r, r->param[0], "id", &id))
        return;
    snprintf(p, sizeof(p), "%lld", (long long)id);
    const char *params[] = { p };
    db_query(r, "SELECT " OFFER_COLUMNS " FROM offers WHERE id = $1", 1, params, on_offer);
}

static void on_account(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    if (db_failed(r, rc, res))
        goto out;
    if (db_res_rows(res) == 0) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "no such account", NULL);
        goto out;
    }
    struct sbuf b;
    sbuf_init(&b);
    sbuf_add(&b, "{", 1);
    api_json_num_text(&b, "user_id", db_res_get(res, 0, 0), 1);
    api_json_str_or_null(&b, "balance", db_res_get(res, 0, 1), 0);
    sbuf_add(&b, "}", 1);
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_account(struct req *r)
{
    int64_t id;
    char p[24];
    if (path_id_or_reply(r, r->param[0], "user_id", &id))
        return;
    snprintf(p, sizeof(p), "%lld", (long long)id);
    const char *params[] = { p };
    db_query(r, "SELECT user_id, balance::text AS balance FROM accounts WHERE user_id = $1", 1,
             params, on_account);
}

static void on_transactions(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    if (db_failed(r, rc, res))
        goto out;
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"transactions\":[");
    for (int i = 0; i < db_res_rows(res); i++) {
        if (i)
            sbuf_add(&b, ",", 1);
        txn_row_json(&b, res, i);
    }
    sbuf_adds(&b, "]}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_account_transactions(struct req *r)
{
    int64_t id, limit;
    char p[24], l[24];
    if (path_id_or_reply(r, r->param[0], "user_id", &id) ||
        api_query_int_or_reply(r, "limit", 1, 500, 50, &limit))
        return;
    snprintf(p, sizeof(p), "%lld", (long long)id);
    snprintf(l, sizeof(l), "%lld", (long long)limit);
    const char *params[] = { p, l };
    db_query(r,
             "SELECT " TXN_COLUMNS " FROM transactions WHERE user_id = $1"
             " ORDER BY created_at DESC, id DESC LIMIT $2",
             2, params, on_transactions);
}
