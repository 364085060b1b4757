/* api_orders.c - seed 004's orchestrator routes and read side (the orders
 * scope). The API never does the work: the orchestrator routes enqueue jobs.
 *
 *   POST /api/v1/orchestrator/fetch-orders          one order-fetch job (body: its
 *                                                   optional payload {since, max_pages})
 *   POST /api/v1/orchestrator/post-to-carrier       a carrier-post job for every order in
 *                                                   PENDING_POST (up to http.batch_max)
 *   POST /api/v1/orchestrator/push-tracking-to-mirakl   a tracking-push job for every
 *                                                   order in TRACKED (same bound)
 *   GET  /api/v1/logs/orders-view?state=&limit=&cursor=   orders, cursor paging
 *   GET  /api/v1/logs/orders-counts                 orders per state, every state named
 *   GET  /api/v1/logs/operations?limit=&order_id=&after=  the operations log, newest
 *                                                   first (after=ID: newer rows, oldest
 *                                                   first, for `conveyorctl ops tail`)
 *   GET  /api/v1/logs/exports/orders-view.csv?state=  RFC 4180 CSV, streamed (chunked)
 *   GET  /api/v1/orders/{id}                         one order, its operations and its
 *                                                   outbound calls
 *
 * The sweeps' jobs have ids derived from "<order>:post:<attempts>" and
 * "<order>:push:<attempts>", the same as the follow-ups the workers make: a
 * sweep that races the pipeline, or runs twice, makes no second job. PostgreSQL
 * is read through the loop's asynchronous connection and the statements of
 * common/ostore (one SQL for the workers and the API). */
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
#include "ostate.h"
#include "ostore.h"

#define CSV_ROWS_MAX 1000       /* rows per query (and per chunk) of the streamed export */

/* ---- rendering ------------------------------------------------------------------ */

/* How a column is shown in JSON. Columns not listed are strings. */
static const struct {
    const char *name;
    char kind;            /* 'n' number, 'b' boolean, 'j' raw JSON */
} col_kinds[] = {
    { "weight_kg", 'n' },  { "attempts", 'n' }, { "carrier_seq", 'n' }, { "lock_epoch", 'n' },
    { "id", 'n' },         { "status_code", 'n' }, { "duration_ms", 'n' }, { "attempt", 'n' },
    { "mirakl_tracking_updated", 'b' }, { "customer", 'j' }, { "lines", 'j' }, { "meta", 'j' },
};

static char kind_of(const char *name)
{
    for (size_t i = 0; i < sizeof(col_kinds) / sizeof(col_kinds[0]); i++)
        if (strcmp(col_kinds[i].name, name) == 0)
            return col_kinds[i].kind;
    return 's';
}

/* Row `row` of res as a JSON object; columns named in skip are left out. */
static void row_json(struct sbuf *b, const struct db_res *res, int row, const char *skip)
{
    sbuf_add(b, "{", 1);
    int first = 1;
    for (int c = 0; c < db_res_cols(res); c++) {
        const char *name = db_res_colname(res, c), *v = db_res_get(res, row, c);
        if (skip && strstr(skip, name))
            continue;
        if (!first)
            sbuf_add(b, ",", 1);
        first = 0;
        sbuf_add_json_str(b, name);
        sbuf_add(b, ":", 1);
        char k = kind_of(name);
        if (!v)
            sbuf_adds(b, "null");
        else if (k == 'n' || k == 'j')
            sbuf_adds(b, v);   /* PostgreSQL's own numeric and jsonb text */
        else if (k == 'b')
            sbuf_adds(b, v[0] == 't' ? "true" : "false");
        else
            sbuf_add_json_str(b, v);
    }
    sbuf_add(b, "}", 1);
}

static int db_ready_or_reply(struct req *r)
{
    if (r->t->db && !r->t->closing)
        return 0;
    api_reply_err(r, CV_ERR_UNAVAILABLE, "PostgreSQL is not available", NULL);
    return -1;
}

static void query(struct req *r, const char *sql, int n, const char *const *params, db_cb cb)
{
    api_req_hold(r);
    db_async_query(r->t->db, sql, n, params, cb, r);
}

static int failed(struct req *r, enum cv_rc rc, const struct db_res *res)
{
    if (rc == CV_OK && res)
        return 0;
    api_reply_err(r, rc == CV_ERR_INVALID ? CV_ERR_INVALID : CV_ERR_UNAVAILABLE,
                  rc == CV_ERR_INVALID ? "bad parameter" : "PostgreSQL is not available; retry",
                  NULL);
    return 1;
}

/* ---- POST /api/v1/orchestrator/fetch-orders ---------------------------------------- */

/* seed 004's reply names the id job_id */
static void on_fetch_published(void *arg, enum api_pub_outcome o, const char *id)
{
    struct req *r = arg;
    api_reply_published(r, o, id, "job_id");
    api_req_release(r);
}

void api_h_orders_fetch(struct req *r)
{
    struct jobopt o;
    cJSON *root = NULL;
    struct job *j = NULL;
    size_t len = 0;
    const char *body = api_body(r, &len);
    if (api_opts_or_reply(r, 1, &o))
        goto out;
    /* seed 004's clients post nothing: an empty body is an empty payload */
    if (len == 0) {
        root = cJSON_CreateObject();
        body = NULL;
    } else {
        if (api_require_json_or_reply(r))
            goto out;
        root = api_parse_body_or_reply(r);
        if (!root)
            goto out;
        body = NULL;
    }
    int64_t now = clock_wall_ms();
    j = api_job_make_or_reply(r, jobtype_at(JT_ORDER_FETCH), &o, NULL, root, body, len, now,
                              NULL);
    if (!j)
        goto out;
    r->scheduled = o.not_before_ms > now;
    r->type_idx = JT_ORDER_FETCH;
    snprintf(r->type, sizeof(r->type), "%s", jobtype_at(JT_ORDER_FETCH)->name);
    api_req_hold(r);
    api_publish_one(r->t, j, on_fetch_published, r);
    j = NULL;
out:
    job_free(j);
    cJSON_Delete(root);
}

/* ---- sweeps: post-to-carrier, push-tracking-to-mirakl -------------------------------- */

static void on_sweep_published(void *arg, enum cv_rc rc, const char *const *ids, const int *dup,
                               size_t n)
{
    (void)ids;
    struct req *r = arg;
    if (rc != CV_OK) {
        api_reply_err(r, rc == CV_ERR_INVALID ? CV_ERR_INTERNAL : CV_ERR_UNAVAILABLE,
                      r->pub_calling ? "could not enqueue; nothing was enqueued; retry"
                                     : "Redis did not answer: some jobs may be enqueued; "
                                       "retry (a retry makes no duplicate)",
                      NULL);
    } else {
        size_t ndup = 0;
        for (size_t i = 0; i < n; i++)
            ndup += dup[i] != 0;
        if (n > ndup)
            met_add(r->t->g->met, r->t->idx, r->t->g->m_enqueued[r->type_idx], n - ndup);
        struct sbuf b;
        sbuf_init(&b);
        sbuf_add(&b, "{", 1);
        api_json_str(&b, "type", r->type, 1);
        api_json_i64(&b, "orders", (long long)n, 0);
        api_json_i64(&b, "enqueued", (long long)(n - ndup), 0);
        api_json_i64(&b, "duplicates", (long long)ndup, 0);
        sbuf_add(&b, "}", 1);
        api_reply_json(r, 202, &b);
        sbuf_cleanup(&b);
    }
    api_req_release(r);
}

static void on_sweep_rows(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    struct job **jobs = NULL;
    size_t n = 0;
    if (failed(r, rc, res))
        goto out;
    int rows = db_res_rows(res);
    if (rows == 0) {
        struct sbuf b;
        sbuf_init(&b);
        sbuf_add(&b, "{", 1);
        api_json_str(&b, "type", r->type, 1);
        sbuf_adds(&b, ",\"orders\":0,\"enqueued\":0,\"duplicates\":0}");
        api_reply_json(r, 202, &b);
        sbuf_cleanup(&b);
        goto out;
    }
    jobs = xcalloc((size_t)rows, sizeof(*jobs));
    const char *step = r->type_idx == JT_CARRIER_POST ? "post" : "push";
    for (int i = 0; i < rows; i++) {
        const char *oid = db_res_get(res, i, 0), *att = db_res_get(res, i, 1);
        char key[200];
        snprintf(key, sizeof(key), "%s:%s:%s", oid, step, att ? att : "0");
        struct sbuf p;
        sbuf_init(&p);
        sbuf_adds(&p, "{\"order_id\":");
        sbuf_add_json_str(&p, oid);
        sbuf_add(&p, "}", 1);
        jobs[n++] = jobopt_derived(r->t->cfg, api_header(r, "traceparent"), r->type, key, p.p,
                                   0);
        sbuf_cleanup(&p);
    }
    api_req_hold(r);
    r->pub_calling = 1;
    broker_publish(r->t->broker, jobs, n, r->t->cfg->idempotency_ttl_s, on_sweep_published, r);
    r->pub_calling = 0;
out:
    for (size_t i = 0; i < n; i++)
        job_free(jobs[i]);
    free(jobs);
    api_req_release(r);
}

static void sweep(struct req *r, enum ostate st, int type_idx)
{
    if (db_ready_or_reply(r))
        return;
    r->type_idx = type_idx;
    snprintf(r->type, sizeof(r->type), "%s", jobtype_at(type_idx)->name);
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", r->t->cfg->batch_max);
    const char *params[] = { ostate_str(st), lim };
    query(r,
          "SELECT order_id, attempts FROM orders WHERE internal_state = $1"
          " ORDER BY updated_at, order_id LIMIT $2::int",
          2, params, on_sweep_rows);
}

void api_h_orders_post(struct req *r)
{
    sweep(r, OSTATE_PENDING_POST, JT_CARRIER_POST);
}

void api_h_orders_push(struct req *r)
{
    sweep(r, OSTATE_TRACKED, JT_TRACKING_PUSH);
}

/* ---- GET /api/v1/logs/orders-view ------------------------------------------------------ */

/* state, limit and cursor of the query into params; -1 after a 400. */
static int list_params_or_reply(struct req *r, int64_t max, char state[32], char lim[16],
                                char cursor[128], char us[24], const char *params[4])
{
    int64_t limit;
    const char *after = NULL;
    if (api_query_str_or_reply(r, "state", state, 32) ||
        api_query_int_or_reply(r, "limit", 1, max, 100, &limit) ||
        api_query_str_or_reply(r, "cursor", cursor, 128))
        return -1;
    if (state[0] && ostate_parse(state) < 0) {
        api_reply_err(r, CV_ERR_INVALID,
                      "state must be one of PENDING_POST, POSTED, AWAITING_TRACKING, TRACKED, "
                      "MIRAKL_OK, COMPLETE, FAILED_POST, FAILED_TRACKING, FAILED_PUSH",
                      "state");
        return -1;
    }
    if (cursor[0] && ostore_cursor_split(cursor, us, &after) != 0) {
        api_reply_err(r, CV_ERR_INVALID, "malformed cursor", "cursor");
        return -1;
    }
    snprintf(lim, 16, "%lld", (long long)limit);
    params[0] = state[0] ? state : NULL;
    params[1] = cursor[0] ? us : NULL;
    params[2] = after;
    params[3] = lim;
    return 0;
}

/* The next cursor when the page is full, else "". */
static void next_cursor(const struct db_res *res, int limit, char *out, size_t cap)
{
    int rows = db_res_rows(res);
    out[0] = '\0';
    if (rows < limit || rows == 0)
        return;
    snprintf(out, cap, "%s:%s", db_res_get(res, rows - 1, db_res_col(res, "cur_us")),
             db_res_get(res, rows - 1, db_res_col(res, "order_id")));
}

static void on_view(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    if (failed(r, rc, res))
        goto out;
    struct sbuf b;
    char cur[160];
    sbuf_init(&b);
    sbuf_adds(&b, "{\"orders\":[");
    for (int i = 0; i < db_res_rows(res); i++) {
        if (i)
            sbuf_add(&b, ",", 1);
        row_json(&b, res, i, "cur_us lock_job lock_epoch lock_until");
    }
    sbuf_add(&b, "]", 1);
    next_cursor(res, atoi(r->key_param), cur, sizeof(cur));
    api_json_str_or_null(&b, "next_cursor", cur[0] ? cur : NULL, 0);
    sbuf_add(&b, "}", 1);
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_orders_view(struct req *r)
{
    char state[32], lim[16], cursor[128], us[24];
    const char *params[4];
    if (db_ready_or_reply(r) ||
        list_params_or_reply(r, OSTORE_BATCH_MAX, state, lim, cursor, us, params))
        return;
    snprintf(r->key_param, sizeof(r->key_param), "%s", lim);
    query(r, ostore_sql_list, 4, params, on_view);
}

/* ---- GET /api/v1/logs/orders-counts --------------------------------------------------- */

/* {"counts":{"PENDING_POST":n,...},"total":n}: every state of the machine, in
 * its order, 0 when it has no order (a count that reached 0 stays visible). */
static void on_counts(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    if (failed(r, rc, res))
        goto out;
    struct sbuf b;
    long long total = 0;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"counts\":{");
    for (int s = 0; s < OSTATE_N; s++) {
        long long n = 0;
        for (int i = 0; i < db_res_rows(res); i++)
            if (strcmp(db_res_get(res, i, 0), ostate_str((enum ostate)s)) == 0)
                n = atoll(db_res_get(res, i, 1));
        total += n;
        api_json_i64(&b, ostate_str((enum ostate)s), n, s == 0);
    }
    sbuf_add(&b, "}", 1);
    api_json_i64(&b, "total", total, 0);
    sbuf_add(&b, "}", 1);
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_orders_counts(struct req *r)
{
    if (db_ready_or_reply(r))
        return;
    query(r, ostore_sql_counts, 0, NULL, on_counts);
}

/* ---- GET /api/v1/logs/operations ------------------------------------------------------- */

#define OPS_COLS                                                                             \
    "id, cv_ts(at) AS at, scope, action, order_id, carrier, status, message, meta,"          \
    " from_state, to_state, job_id, trace_id"

static void on_ops(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    if (failed(r, rc, res))
        goto out;
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"operations\":[");
    for (int i = 0; i < db_res_rows(res); i++) {
        if (i)
            sbuf_add(&b, ",", 1);
        row_json(&b, res, i, NULL);
    }
    sbuf_adds(&b, "]}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_orders_ops(struct req *r)
{
    int64_t limit, after;
    char order_id[80], lim[16], aft[24];
    if (db_ready_or_reply(r) || api_query_int_or_reply(r, "limit", 1, 1000, 50, &limit) ||
        api_query_str_or_reply(r, "order_id", order_id, sizeof(order_id)) ||
        api_query_int_or_reply(r, "after", 0, INT64_MAX / 2, 0, &after))
        return;
    snprintf(lim, sizeof(lim), "%lld", (long long)limit);
    snprintf(aft, sizeof(aft), "%lld", (long long)after);
    const char *params[] = { order_id[0] ? order_id : NULL, lim, aft };
    if (after > 0)
        query(r,
              "SELECT " OPS_COLS " FROM operations WHERE id > $3::bigint"
              " AND ($1::text IS NULL OR order_id = $1) ORDER BY id LIMIT $2::int",
              3, params, on_ops);
    else
        query(r,
              "SELECT " OPS_COLS " FROM operations WHERE ($1::text IS NULL OR order_id = $1)"
              " ORDER BY id DESC LIMIT $2::int",
              2, params, on_ops);
}

/* ---- GET /api/v1/logs/exports/orders-view.csv ----------------------------------------- */

static const char *const csv_cols[] = {
    "order_id", "internal_state", "mirakl_state", "carrier_code", "tracking_number",
    "expedition_id", "carrier_status", "carrier_event_at", "mirakl_tracking_updated",
    "weight_kg", "country", "shipping_deadline", "attempts", "last_error", "created_at",
    "updated_at", "state_changed_at",
};
#define NCSV (sizeof(csv_cols) / sizeof(csv_cols[0]))

/* One RFC 4180 field: quoted when it holds a comma, quote, CR or LF. */
static void csv_field(struct sbuf *b, const char *v)
{
    if (!v)
        return;
    if (!strpbrk(v, ",\"\r\n")) {
        sbuf_adds(b, v);
        return;
    }
    sbuf_add(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '"')
            sbuf_add(b, "\"", 1);
        sbuf_add(b, p, 1);
    }
    sbuf_add(b, "\"", 1);
}

/* The export streams: a page of CSV_PAGE rows is one query and one chunk,
 * the next query is sent when the chunk is handed over, and a client that
 * reads slower than that is cut (api_reply_stream_chunk). r->type holds the
 * state filter ("" = all), r->key_param the cursor of the next page. */
static void csv_next(struct req *r);

static void on_csv(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    struct sbuf b;
    sbuf_init(&b);
    if (rc != CV_OK || !res) {
        if (!r->streaming && !r->replied)
            failed(r, rc, res);           /* nothing sent yet: an ordinary error */
        else
            api_reply_stream_abort(r);    /* mid-way: a broken transfer, never a short file */
        goto out;
    }
    if (!r->streaming) {
        api_add_header(r, "Content-Disposition", "attachment; filename=\"orders-view.csv\"");
        if (api_reply_stream_start(r, 200, "text/csv; charset=utf-8; header=present") != 0)
            goto out;
        for (size_t c = 0; c < NCSV; c++) {
            sbuf_adds(&b, c ? "," : "");
            sbuf_adds(&b, csv_cols[c]);
        }
        sbuf_adds(&b, "\r\n");
    }
    int idx[NCSV];
    for (size_t c = 0; c < NCSV; c++)
        idx[c] = db_res_col(res, csv_cols[c]);
    for (int i = 0; i < db_res_rows(res); i++) {
        for (size_t c = 0; c < NCSV; c++) {
            if (c)
                sbuf_add(&b, ",", 1);
            csv_field(&b, idx[c] >= 0 ? db_res_get(res, i, idx[c]) : NULL);
        }
        sbuf_adds(&b, "\r\n");
    }
    if (b.len && api_reply_stream_chunk(r, b.p, b.len) != 0)
        goto out;                         /* the client went or was cut */
    char cur[160];
    next_cursor(res, CSV_ROWS_MAX, cur, sizeof(cur));
    if (!cur[0] || r->t->closing) {
        api_reply_stream_end(r);
        goto out;
    }
    snprintf(r->key_param, sizeof(r->key_param), "%s", cur);
    csv_next(r);
out:
    sbuf_cleanup(&b);
    api_req_release(r);
}

static void csv_next(struct req *r)
{
    char us[24], lim[16];
    const char *after = NULL;
    snprintf(lim, sizeof(lim), "%d", CSV_ROWS_MAX);
    if (r->key_param[0])
        ostore_cursor_split(r->key_param, us, &after);
    const char *params[] = { r->type[0] ? r->type : NULL, r->key_param[0] ? us : NULL, after,
                             lim };
    query(r, ostore_sql_list, 4, params, on_csv);
}

void api_h_orders_csv(struct req *r)
{
    char state[32], lim[16], cursor[128], us[24];
    const char *params[4];
    if (db_ready_or_reply(r) ||
        list_params_or_reply(r, CSV_ROWS_MAX, state, lim, cursor, us, params))
        return;
    snprintf(r->type, sizeof(r->type), "%s", state);
    snprintf(r->key_param, sizeof(r->key_param), "%s", cursor);
    csv_next(r);
}

/* ---- GET /api/v1/orders/{id} ----------------------------------------------------------- */

static void on_calls(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    if (failed(r, rc, res))
        goto out;
    sbuf_adds(r->acc, ",\"calls\":[");
    for (int i = 0; i < db_res_rows(res); i++) {
        if (i)
            sbuf_add(r->acc, ",", 1);
        row_json(r->acc, res, i, NULL);
    }
    sbuf_adds(r->acc, "]}");
    api_reply_json(r, 200, r->acc);
out:
    api_req_release(r);
}

static void on_history(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    if (failed(r, rc, res))
        goto out;
    sbuf_adds(r->acc, ",\"operations\":[");
    for (int i = 0; i < db_res_rows(res); i++) {
        if (i)
            sbuf_add(r->acc, ",", 1);
        row_json(r->acc, res, i, NULL);
    }
    sbuf_add(r->acc, "]", 1);
    const char *params[] = { r->key_param, "200" };
    query(r, ostore_sql_calls, 2, params, on_calls);
out:
    api_req_release(r);
}

static void on_order(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct req *r = arg;
    if (failed(r, rc, res))
        goto out;
    if (db_res_rows(res) == 0) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "no such order", NULL);
        goto out;
    }
    r->acc = xcalloc(1, sizeof(*r->acc));
    sbuf_init(r->acc);
    sbuf_adds(r->acc, "{\"order\":");
    row_json(r->acc, res, 0, NULL);
    const char *params[] = { r->key_param, "500" };
    query(r, ostore_sql_ops, 2, params, on_history);
out:
    api_req_release(r);
}

void api_h_order_get(struct req *r)
{
    const char *id = r->param[0];
    size_t n = strlen(id);
    if (n == 0 || n > 64 || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                       "0123456789._:-") != n) {
        api_reply_err(r, CV_ERR_INVALID, "an order id is 1..64 of A-Z a-z 0-9 . _ : -", "id");
        return;
    }
    if (db_ready_or_reply(r))
        return;
    snprintf(r->key_param, sizeof(r->key_param), "%s", id);
    const char *params[] = { r->key_param };
    query(r, ostore_sql_get, 1, params, on_order);
}
