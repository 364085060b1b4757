/* chaos_check.c - `cv-chaos check`: wait for the acknowledged jobs to end, then judge the run.
 *
 * Inputs: the acknowledgement file of `cv-chaos load` (the jobs the API answered 202), Redis
 * through the broker interface (job states and the dead-letter list, as GET /v1/jobs/{id}
 * and GET /v1/dead show them), PostgreSQL (accounts, offers, transactions, and the audit
 * tables that tests/chaos/audit.sql installed before the load: chaos_initial, chaos_txlog,
 * chaos_ledger), and the simulator (GET /activations/{id}, GET /admin/stats).
 *
 * Steps:
 *  1. wait, up to --drain-s, until every acknowledged job is succeeded, failed or dead
 *     (the time this takes is "seconds to drain");
 *  2. wait, up to --held-wait-s more, until no transaction is PROCESSING (a reconciler may
 *     settle held money after the jobs ended);
 *  3. copy the final job states into chaos_jobs and the simulator's view of every known
 *     transaction into chaos_sim, so that each invariant is one SQL query over the tables
 *     of the run;
 *  4. print the figures and one PASS/FAIL line per invariant. Exit 1 when one fails.
 *
 * The invariants (each one can fail; none is relaxed for known defects):
 *  - every acknowledged job is terminal (missing or unfinished ones are "lost");
 *  - an activation job's state agrees with its transaction (succeeded <-> SUCCESS,
 *    failed <-> FAILED; dead only while the outcome is unknown: PROCESSING or no row);
 *  - balance = initial - sum(offer price) over SUCCESS transactions, per account;
 *  - one debit and at most one refund per transaction (audit log of status changes and
 *    balance changes; a decided transaction never changes again; money moves only with a
 *    status change);
 *  - one activation per transaction at the simulator: SUCCESS <-> ACTIVATED there, and
 *    the simulator counts no activation we cannot account for;
 *  - held money zero: no transaction PROCESSING;
 *  - dead letters are exactly the jobs that exhausted their attempts, plus the activations
 *    whose transaction was rejected or declined (failed, permanent);
 *  - no attempt is spent on an outage of our own Redis or PostgreSQL: no noop job, and no
 *    activation that never reached the reserve step (no transaction row), ends dead.
 *
 * With --orders N (the orders the run put in the simulator's Mirakl), the order pipeline's
 * invariants follow (chaos_orders.c): every order ends COMPLETE or FAILED_* with its reason;
 * one shipment per order reference across all carriers; at most one OR24 per order and
 * COMPLETE = shipped at Mirakl; every order's moves in operations follow order_edges to its
 * internal_state; the jobs that made an order's end state agree with it; no tracking event
 * left in tracking_pending. With --replays R (and --api), the dead and failed order jobs are
 * then replayed R times and the same invariants judged again, "(after replays)". */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "cfg.h"
#include "chaos.h"
#include "clock.h"
#include "db.h"
#include "json.h"
#include "mem.h"

#define POLL_MS 500
#define PROGRESS_EVERY_MS 10000
#define SIM_PARALLEL 16
#define SIM_TIMEOUT_MS 5000
#define MAX_VERDICTS 40

/* One acknowledged job and what Redis says about it at the end. */
struct cj {
    char id[UUID_STR_LEN];
    char type[JOB_TYPE_MAX];
    long long user, offer;
    int found;                     /* the status hash exists */
    enum job_state state;
    int attempt, max_attempts;
    int in_dead;                   /* listed in the dead-letter set */
    char last_error[JOB_ERROR_MAX];
};

struct verdict {
    char name[160];
    int ok;
    char detail[1024];
    const char *more_title, *more_sql;   /* a breakdown printed under a FAIL, or NULL */
};

struct check {
    const char *acked_path, *sim_url, *api_url;
    long long orders, replays;     /* --orders (0: no order invariants), --replays */
    long long jobs, drain_s, held_wait_s, kills, stops, redis_restarts, pg_restarts, started;
    struct cfg cfg;
    int cfg_loaded;
    struct broker *broker;
    struct db *db;
    struct cj *cj;
    size_t n, cap;
    double drain_secs;             /* < 0: did not drain before the deadline */
    long long lost, duplicated, dead_unknown, shared_ids, sim_lookup_errors;
    long long sim_calls, sim_activations, sim_declines, sim_errors, sim_repeats;
    struct verdict v[MAX_VERDICTS];
    int nv;
};

static int terminal(enum job_state s)
{
    return s == JOB_STATE_SUCCEEDED || s == JOB_STATE_FAILED || s == JOB_STATE_DEAD;
}

static void verdict(struct check *c, const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void verdict(struct check *c, const char *name, int ok, const char *fmt, ...)
{
    CV_ASSERT(c->nv < MAX_VERDICTS);
    struct verdict *v = &c->v[c->nv++];
    va_list ap;
    snprintf(v->name, sizeof(v->name), "%s", name);
    v->ok = ok;
    va_start(ap, fmt);
    vsnprintf(v->detail, sizeof(v->detail), fmt, ap);
    va_end(ap);
    v->more_title = v->more_sql = NULL;
}

/* Attach a breakdown query (its last column a count) to the verdict added last. */
static void verdict_more(struct check *c, const char *title, const char *sql)
{
    CV_ASSERT(c->nv > 0);
    c->v[c->nv - 1].more_title = title;
    c->v[c->nv - 1].more_sql = sql;
}

/* ==== PostgreSQL helpers ================================================================= */

static int sql_row(struct check *c, const char *sql, int np, const char *const *params,
                   long long *out, int n)
{
    return chaos_sql_row(c->db, sql, np, params, out, n);
}

/* One text value (the first column of the first row) into out; "" when none. */
static int sql_text(struct check *c, const char *sql, char *out, size_t cap)
{
    enum cv_rc rc;
    struct db_res *r = db_exec(c->db, sql, 0, NULL, &rc);
    out[0] = '\0';
    if (!r) {
        fprintf(stderr, "chaos check: SQL failed: %s\n  %s\n", db_last_error(c->db), sql);
        return -1;
    }
    if (db_res_rows(r) > 0 && db_res_get(r, 0, 0))
        snprintf(out, cap, "%s", db_res_get(r, 0, 0));
    db_res_free(r);
    return 0;
}

static void sql_print(struct check *c, const char *prefix, const char *sql)
{
    chaos_sql_print(c->db, prefix, sql);
}

/* ==== inputs ============================================================================ */

static int read_acked(struct check *c)
{
    FILE *f = fopen(c->acked_path, "r");
    char line[256];
    int rc = 0;
    if (!f) {
        perror(c->acked_path);
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        struct cj j;
        memset(&j, 0, sizeof(j));
        if (sscanf(line, "%36s %31s %lld %lld", j.id, j.type, &j.user, &j.offer) != 4 ||
            !uuid_valid(j.id)) {
            fprintf(stderr, "chaos check: %s: bad line: %s", c->acked_path, line);
            rc = -1;
            break;
        }
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 1024;
            c->cj = xrealloc(c->cj, c->cap * sizeof(*c->cj));
        }
        c->cj[c->n++] = j;
    }
    fclose(f);
    return rc;
}

static void on_status(void *arg, enum cv_rc rc, const struct job_status *st)
{
    struct cj *j = arg;
    if (rc == CV_ERR_NOT_FOUND) {
        j->found = 0;
        return;
    }
    if (rc != CV_OK || !st)
        return;                    /* Redis trouble: keep what we knew */
    j->found = 1;
    j->state = st->state;
    j->attempt = st->attempt;
    j->max_attempts = st->max_attempts;
    snprintf(j->last_error, sizeof(j->last_error), "%s", st->last_error);
}

/* Refresh the jobs not known terminal (all of them when all is set); returns how many are
 * terminal. */
static size_t refresh(struct check *c, int all)
{
    size_t done = 0;
    for (size_t i = 0; i < c->n; i++) {
        struct cj *j = &c->cj[i];
        if (all || !j->found || !terminal(j->state))
            broker_get(c->broker, j->id, on_status, j);
        done += j->found && terminal(j->state);
    }
    return done;
}

/* Step 1. */
static void wait_terminal(struct check *c)
{
    int64_t t0 = clock_mono_ms(), next_note = t0 + PROGRESS_EVERY_MS;
    c->drain_secs = -1;
    for (;;) {
        size_t done = refresh(c, 0);
        int64_t now = clock_mono_ms();
        if (done == c->n) {
            c->drain_secs = (double)(now - t0) / 1000.0;
            break;
        }
        if (now - t0 >= c->drain_s * 1000) {
            fprintf(stderr, "chaos: %zu of %zu jobs still not terminal after %lld s\n",
                    c->n - done, c->n, c->drain_s);
            break;
        }
        if (now >= next_note) {
            fprintf(stderr, "chaos: draining: %zu of %zu jobs terminal\n", done, c->n);
            next_note = now + PROGRESS_EVERY_MS;
        }
        chaos_sleep_ms(POLL_MS);
    }
}

/* Step 2. */
static void wait_not_held(struct check *c)
{
    int64_t t0 = clock_mono_ms();
    long long held = 0;
    while (sql_row(c, "SELECT count(*) FROM transactions WHERE status = 'PROCESSING'", 0, NULL,
                   &held, 1) == 0 &&
           held > 0 && clock_mono_ms() - t0 < c->held_wait_s * 1000)
        chaos_sleep_ms(POLL_MS);
    if (held > 0)
        fprintf(stderr, "chaos: %lld transactions still PROCESSING %lld s after the jobs "
                        "ended\n", held, c->held_wait_s);
}

/* Mark the jobs the dead-letter list names; count names we never acknowledged. */
static void on_dead_list(void *arg, enum cv_rc rc, const struct job_status *st, size_t n)
{
    struct check *c = arg;
    if (rc != CV_OK) {
        fprintf(stderr, "chaos check: cannot read the dead-letter list (%s)\n", cv_rc_str(rc));
        c->dead_unknown = -1;
        return;
    }
    for (size_t k = 0; k < n; k++) {
        size_t i;
        for (i = 0; i < c->n; i++)
            if (strcmp(c->cj[i].id, st[k].id) == 0)
                break;
        if (i < c->n)
            c->cj[i].in_dead = 1;
        else if (!chaos_order_type(st[k].type))   /* the pipeline's own jobs: chaos_orders.c */
            c->dead_unknown++;
    }
}

/* Step 3a: chaos_jobs. An id acknowledged for two different submissions is counted. */
static int store_jobs(struct check *c)
{
    if (db_run(c->db, "DROP TABLE IF EXISTS chaos_jobs", 0, NULL) != CV_OK ||
        db_run(c->db,
               "CREATE TABLE chaos_jobs (id uuid PRIMARY KEY, type text NOT NULL,"
               " user_id bigint, offer_id bigint, state text, attempt int, max_attempts int,"
               " in_dead boolean NOT NULL, last_error text)",
               0, NULL) != CV_OK ||
        db_run(c->db, "BEGIN", 0, NULL) != CV_OK)
        return -1;
    for (size_t i = 0; i < c->n; i++) {
        const struct cj *j = &c->cj[i];
        char user[24], offer[24], attempt[16], maxa[16];
        snprintf(user, sizeof(user), "%lld", j->user);
        snprintf(offer, sizeof(offer), "%lld", j->offer);
        snprintf(attempt, sizeof(attempt), "%d", j->attempt);
        snprintf(maxa, sizeof(maxa), "%d", j->max_attempts);
        const char *p[] = { j->id, j->type, user, offer,
                            j->found ? job_state_str(j->state) : NULL,
                            j->found ? attempt : NULL, j->found ? maxa : NULL,
                            j->in_dead ? "t" : "f", j->found ? j->last_error : NULL };
        enum cv_rc rc;
        struct db_res *r = db_exec(c->db,
                                   "INSERT INTO chaos_jobs VALUES ($1, $2, $3, $4, $5, $6, $7,"
                                   " $8, $9) ON CONFLICT (id) DO NOTHING RETURNING 1",
                                   9, p, &rc);
        if (!r) {
            db_run(c->db, "ROLLBACK", 0, NULL);
            return -1;
        }
        c->shared_ids += db_res_rows(r) == 0;
        db_res_free(r);
    }
    return db_run(c->db, "COMMIT", 0, NULL) == CV_OK ? 0 : -1;
}

/* GET url from the simulator; the parsed body, or NULL (then *status says why). */
static cJSON *sim_get(struct check *c, struct ch_http *h, const char *path, int *status)
{
    char url[512];
    struct ch_req r;
    memset(&r, 0, sizeof(r));
    snprintf(url, sizeof(url), "%s%s", c->sim_url, path);
    r.method = "GET";
    r.url = url;
    ch_http_run(h, &r, 1, SIM_TIMEOUT_MS);
    *status = r.status;
    cJSON *root = r.status == 200 ? json_parse(r.resp, r.resp_len) : NULL;
    ch_req_cleanup(&r);
    return root;
}

static long long num_field(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(it) ? (long long)it->valuedouble : -1;
}

/* Step 3b: chaos_sim holds, for every acknowledged activation and every transaction row,
 * what the simulator recorded: ACTIVATED, DECLINED, or none (404). */
static int store_sim(struct check *c)
{
    enum cv_rc rc;
    int ret = -1, status = 0;
    struct ch_http *h = ch_http_new(SIM_PARALLEL);
    struct db_res *ids = NULL;
    struct ch_req *reqs = NULL;
    char **urls = NULL;
    int n = 0;

    cJSON *st = sim_get(c, h, "/admin/stats", &status);
    if (!st) {
        fprintf(stderr, "chaos check: GET %s/admin/stats answered %d\n", c->sim_url, status);
        goto out;
    }
    c->sim_calls = num_field(st, "calls");
    c->sim_activations = num_field(st, "activations");
    c->sim_declines = num_field(st, "declines");
    c->sim_errors = num_field(st, "errors");
    c->sim_repeats = num_field(st, "duplicates");
    cJSON_Delete(st);

    if (db_run(c->db, "DROP TABLE IF EXISTS chaos_sim", 0, NULL) != CV_OK ||
        db_run(c->db, "CREATE TABLE chaos_sim (transaction_id uuid PRIMARY KEY, sim text NOT NULL)",
               0, NULL) != CV_OK)
        goto out;
    ids = db_exec(c->db,
                  "SELECT id::text FROM chaos_jobs WHERE type = 'activation'"
                  " UNION SELECT transaction_id::text FROM transactions",
                  0, NULL, &rc);
    if (!ids)
        goto out;
    n = db_res_rows(ids);
    reqs = xcalloc((size_t)n + 1, sizeof(*reqs));
    urls = xcalloc((size_t)n + 1, sizeof(*urls));
    for (int i = 0; i < n; i++) {
        urls[i] = xasprintf("%s/activations/%s", c->sim_url, db_res_get(ids, i, 0));
        reqs[i].method = "GET";
        reqs[i].url = urls[i];
    }
    ch_http_run(h, reqs, (size_t)n, SIM_TIMEOUT_MS);
    if (db_run(c->db, "BEGIN", 0, NULL) != CV_OK)
        goto out;
    for (int i = 0; i < n; i++) {
        const char *what = "none", *v = NULL, *field;
        cJSON *root = NULL;
        if (reqs[i].status == 200) {
            root = json_parse(reqs[i].resp, reqs[i].resp_len);
            if (root && json_get_str(root, "status", 32, &v, &field) == CV_OK)
                what = v;
            else
                what = "unreadable";
        } else if (reqs[i].status != 404) {
            what = "lookup failed";
        }
        c->sim_lookup_errors +=
            strcmp(what, "unreadable") == 0 || strcmp(what, "lookup failed") == 0;
        const char *p[] = { db_res_get(ids, i, 0), what };
        enum cv_rc irc = db_run(c->db, "INSERT INTO chaos_sim VALUES ($1, $2)", 2, p);
        cJSON_Delete(root);
        if (irc != CV_OK) {
            db_run(c->db, "ROLLBACK", 0, NULL);
            goto out;
        }
    }
    if (db_run(c->db, "COMMIT", 0, NULL) != CV_OK)
        goto out;
    ret = 0;
out:
    for (int i = 0; i < n; i++) {
        ch_req_cleanup(&reqs[i]);
        free(urls[i]);
    }
    free(reqs);
    free(urls);
    db_res_free(ids);
    ch_http_free(h);
    return ret;
}

/* ==== the invariants ===================================================================== */

/* The jobs whose dead-letter state is wrong (used twice below). */
#define DEAD_BAD_COUNTS                                                                        \
    "count(*) FILTER (WHERE j.in_dead AND j.state NOT IN ('dead', 'failed')), "                \
    "count(*) FILTER (WHERE NOT j.in_dead AND j.state IN ('dead', 'failed')), "                \
    "count(*) FILTER (WHERE j.state = 'dead' AND j.attempt < j.max_attempts), "                \
    "count(*) FILTER (WHERE j.state = 'failed' AND NOT (j.type = 'activation' "                \
    "  AND t.status IS NOT DISTINCT FROM 'FAILED')) "
#define DEAD_BAD                                                                               \
    "((j.in_dead AND j.state NOT IN ('dead', 'failed')) "                                      \
    "OR (NOT j.in_dead AND j.state IN ('dead', 'failed')) "                                    \
    "OR (j.state = 'dead' AND j.attempt < j.max_attempts) "                                    \
    "OR (j.state = 'failed' AND NOT (j.type = 'activation' "                                   \
    "  AND t.status IS NOT DISTINCT FROM 'FAILED')))"
/* Both directions: the job says what happened to its transaction, and a decided transaction
 * is not left behind a job that says otherwise (dead = "outcome unknown"). A dead job with a
 * PROCESSING transaction is consistent; held money is its own invariant. */
#define AGREE_BAD                                                                              \
    "((j.state = 'succeeded' AND t.status IS DISTINCT FROM 'SUCCESS') "                        \
    "OR (j.state = 'failed' AND t.status IS DISTINCT FROM 'FAILED') "                          \
    "OR (j.state = 'dead' AND t.status IN ('SUCCESS', 'FAILED')))"
#define JOBS_TX "FROM chaos_jobs j LEFT JOIN transactions t ON t.transaction_id = j.id "
#define LAST_ERROR "left(regexp_replace(coalesce(j.last_error, ''), '[0-9]+', 'N', 'g'), 60)"

enum { INV_TERMINAL, INV_AGREE, INV_BALANCE, INV_DEBITS, INV_SIM, INV_HELD, INV_DEAD, INV_OUTAGE,
       INV_COUNT };

static const struct chaos_inv invariants[INV_COUNT] = {
    [INV_TERMINAL] = {
        "every acknowledged job is terminal", 2, 0,
        { "unknown to Redis", "not finished", "terminal" },
        "SELECT count(*) FILTER (WHERE state IS NULL), count(*) FILTER (WHERE state NOT IN "
        "('succeeded', 'failed', 'dead')), count(*) FILTER (WHERE state IN ('succeeded', "
        "'failed', 'dead')) FROM chaos_jobs",
        "type / state: ",
        "SELECT type, coalesce(state, 'unknown'), count(*) FROM chaos_jobs WHERE state IS NULL "
        "OR state NOT IN ('succeeded', 'failed', 'dead') GROUP BY 1, 2 ORDER BY 3 DESC" },
    [INV_AGREE] = {
        "activation job state agrees with its transaction", 3, 0,
        { "succeeded but the transaction is not SUCCESS", "failed but it is not FAILED",
          "dead though it was decided" },
        "SELECT count(*) FILTER (WHERE j.state = 'succeeded' AND t.status IS DISTINCT FROM "
        "'SUCCESS'), count(*) FILTER (WHERE j.state = 'failed' AND t.status IS DISTINCT FROM "
        "'FAILED'), count(*) FILTER (WHERE j.state = 'dead' AND t.status IN ('SUCCESS', "
        "'FAILED')) " JOBS_TX "WHERE j.type = 'activation'",
        "job state / transaction status / job's last error: ",
        "SELECT j.state, coalesce(t.status, 'no row'), " LAST_ERROR ", count(*) " JOBS_TX
        "WHERE j.type = 'activation' AND " AGREE_BAD " GROUP BY 1, 2, 3 ORDER BY 4 DESC" },
    [INV_BALANCE] = {
        /* the second pair counts held (PROCESSING) money as spent: it tells held money
         * apart from money that moved twice or vanished */
        "balance = initial - price x successes, per account", 1, 0,
        { "accounts off", "off in all", "accounts off when held money counts as spent",
          "off in all then" },
        "WITH s AS (SELECT t.user_id, sum(o.price) AS spent FROM transactions t "
        "  JOIN offers o ON o.id = t.offer_id WHERE t.status = 'SUCCESS' GROUP BY 1), "
        "h AS (SELECT user_id, sum(amount) AS held FROM transactions "
        "  WHERE status = 'PROCESSING' GROUP BY 1), "
        "d AS (SELECT a.balance - (i.balance - coalesce(s.spent, 0)) AS off, "
        "  a.balance - (i.balance - coalesce(s.spent, 0) - coalesce(h.held, 0)) AS off_held "
        "  FROM accounts a JOIN chaos_initial i USING (user_id) "
        "  LEFT JOIN s USING (user_id) LEFT JOIN h USING (user_id)) "
        "SELECT count(*) FILTER (WHERE off <> 0), coalesce(sum(abs(off)), 0), "
        "count(*) FILTER (WHERE off_held <> 0), coalesce(sum(abs(off_held)), 0) FROM d",
        NULL, NULL },
    [INV_DEBITS] = {
        /* from the audit trail (audit.sql): a debit is a change into PROCESSING, a refund
         * one from PROCESSING to FAILED; every balance change is explained by the status
         * changes of that user's transactions, from the initial balance to the final one */
        "one debit and at most one refund per transaction", 7, 0,
        { "debited twice", "refunded twice", "changed after SUCCESS/FAILED",
          "SUCCESS/PROCESSING without exactly one debit", "FAILED keeping a debit",
          "rows the audit never saw", "accounts with money moved outside a status change" },
        "WITH ev AS (SELECT transaction_id, "
        "  count(*) FILTER (WHERE new_status = 'PROCESSING') AS debits, "
        "  count(*) FILTER (WHERE old_status = 'PROCESSING' AND new_status = 'FAILED') AS refunds, "
        "  count(*) FILTER (WHERE old_status IN ('SUCCESS', 'FAILED')) AS reopened "
        "  FROM chaos_txlog GROUP BY 1), "
        "g AS (SELECT user_id, sum(delta) AS s FROM chaos_ledger GROUP BY 1), "
        "e AS (SELECT user_id, sum(CASE WHEN new_status = 'PROCESSING' THEN -amount "
        "  WHEN old_status = 'PROCESSING' AND new_status = 'FAILED' THEN amount ELSE 0 END) AS s "
        "  FROM chaos_txlog GROUP BY 1) "
        "SELECT count(*) FILTER (WHERE ev.debits > 1), count(*) FILTER (WHERE ev.refunds > 1), "
        "count(*) FILTER (WHERE ev.reopened > 0), "
        "count(*) FILTER (WHERE t.status IN ('SUCCESS', 'PROCESSING') "
        "  AND coalesce(ev.debits, 0) <> 1), "
        "count(*) FILTER (WHERE t.status = 'FAILED' "
        "  AND coalesce(ev.debits, 0) <> coalesce(ev.refunds, 0)), "
        "count(*) FILTER (WHERE ev.transaction_id IS NULL), "
        "(SELECT count(*) FROM accounts a JOIN chaos_initial i USING (user_id) "
        "  LEFT JOIN g USING (user_id) LEFT JOIN e USING (user_id) "
        "  WHERE coalesce(g.s, 0) <> coalesce(e.s, 0) "
        "  OR a.balance <> i.balance + coalesce(g.s, 0)) "
        "FROM transactions t LEFT JOIN ev USING (transaction_id)",
        NULL, NULL },
    [INV_SIM] = {
        "one activation per transaction at the simulator", 4, 1,
        { "SUCCESS not activated there", "activated there but not SUCCESS",
          "activations there for no known transaction", "lookups failed" },
        "SELECT count(*) FILTER (WHERE t.status = 'SUCCESS' AND s.sim IS DISTINCT FROM "
        "'ACTIVATED'), count(*) FILTER (WHERE s.sim = 'ACTIVATED' AND t.status IS DISTINCT "
        "FROM 'SUCCESS'), $1::bigint - count(*) FILTER (WHERE s.sim = 'ACTIVATED'), $2::bigint "
        "FROM chaos_sim s FULL JOIN transactions t USING (transaction_id)",
        "activated at the simulator but not SUCCESS, transaction / job state: ",
        "SELECT coalesce(t.status, 'no row'), coalesce(j.state, 'no job'), count(*) "
        "FROM chaos_sim s LEFT JOIN transactions t USING (transaction_id) "
        "LEFT JOIN chaos_jobs j ON j.id = s.transaction_id "
        "WHERE s.sim = 'ACTIVATED' AND t.status IS DISTINCT FROM 'SUCCESS' "
        "GROUP BY 1, 2 ORDER BY 3 DESC" },
    [INV_HELD] = {
        "held money zero (no transaction PROCESSING)", 1, 0,
        { "transactions PROCESSING", "held", "s since the oldest was touched" },
        "SELECT count(*), coalesce(sum(amount), 0.00), "
        "coalesce(extract(epoch FROM now() - min(updated_at))::bigint, 0) "
        "FROM transactions WHERE status = 'PROCESSING'",
        "held, by job state / job's last error: ",
        "SELECT coalesce(j.state, 'no acknowledged job'), " LAST_ERROR ", count(*) "
        "FROM transactions t LEFT JOIN chaos_jobs j ON j.id = t.transaction_id "
        "WHERE t.status = 'PROCESSING' GROUP BY 1, 2 ORDER BY 3 DESC" },
    [INV_DEAD] = {
        "dead letters = jobs that exhausted their attempts (+ rejected activations)", 4, 0,
        { "listed but not ended", "ended but not listed", "dead before their last attempt",
          "failed without a rejected or declined transaction" },
        "SELECT " DEAD_BAD_COUNTS JOBS_TX,
        "type / state / transaction / last error: ",
        "SELECT j.type, coalesce(j.state, 'unknown'), coalesce(t.status, 'no row'), " LAST_ERROR
        ", count(*) " JOBS_TX "WHERE " DEAD_BAD " GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC" },
    [INV_OUTAGE] = {
        /* a noop never fails, and an activation reaches the outside world only after the
         * reserve step wrote its row: a dead one of either kind spent its attempts on our
         * own Redis or PostgreSQL */
        "no attempt spent on our own outage (dead noop / dead before reserve)", 2, 0,
        { "noop jobs dead", "activations dead without a transaction row" },
        "SELECT count(*) FILTER (WHERE j.type = 'noop'), count(*) FILTER (WHERE j.type = "
        "'activation' AND t.transaction_id IS NULL) " JOBS_TX "WHERE j.state = 'dead'",
        "type / last error: ",
        "SELECT j.type, " LAST_ERROR ", count(*) " JOBS_TX "WHERE j.state = 'dead' AND "
        "(j.type = 'noop' OR (j.type = 'activation' AND t.transaction_id IS NULL)) "
        "GROUP BY 1, 2 ORDER BY 3 DESC" },
};

/* Run one invariant's query into a verdict named d->name + suffix; vals gets its numeric
 * columns. */
static void judge(struct check *c, const struct chaos_inv *d, const char *suffix,
                  long long vals[8])
{
    char p1[24], p2[24], detail[1024], name[160];
    const char *params[] = { p1, p2 };
    enum cv_rc rc;
    size_t o = 0;
    int ok = 1;
    snprintf(p1, sizeof(p1), "%lld", c->sim_activations);
    snprintf(p2, sizeof(p2), "%lld", c->sim_lookup_errors);
    memset(vals, 0, 8 * sizeof(*vals));
    snprintf(name, sizeof(name), "%s%s", d->name, suffix);
    struct db_res *r = db_exec(c->db, d->sql, d->sim_params ? 2 : 0, d->sim_params ? params : NULL,
                               &rc);
    if (!r || db_res_rows(r) != 1 || db_res_cols(r) > 8) {
        verdict(c, name, 0, "query failed: %s", db_last_error(c->db));
        db_res_free(r);
        return;
    }
    detail[0] = '\0';
    for (int k = 0; k < db_res_cols(r); k++) {
        const char *v = db_res_get(r, 0, k);
        vals[k] = v ? strtoll(v, NULL, 10) : 0;
        if (k < d->zero && (!v || strcmp(v, "0") != 0))
            ok = 0;
        if (o < sizeof(detail))
            o += (size_t)snprintf(detail + o, sizeof(detail) - o, "%s%s %s", k ? ", " : "",
                                  v ? v : "?", d->labels[k] ? d->labels[k] : "");
    }
    db_res_free(r);
    verdict(c, name, ok, "%s", detail);
    verdict_more(c, d->more_title, d->more_sql);
}

/* ==== report ============================================================================ */

static void print_figures(struct check *c)
{
    long long nact = 0;
    for (size_t i = 0; i < c->n; i++)
        nact += strcmp(c->cj[i].type, "activation") == 0;
    printf("chaos: jobs %lld submitted, %zu acknowledged (%lld activation, %lld noop), "
           "%lld refused\n",
           c->jobs, c->n, nact, (long long)c->n - nact, c->jobs - (long long)c->n);
    printf("chaos: kills %lld, stops %lld, restarts %lld (redis %lld, postgres %lld), "
           "workers started %lld\n",
           c->kills, c->stops, c->redis_restarts + c->pg_restarts, c->redis_restarts,
           c->pg_restarts, c->started);
    if (c->drain_secs >= 0)
        printf("chaos: lost %lld, duplicated %lld, seconds to drain %.1f\n", c->lost,
               c->duplicated + c->shared_ids, c->drain_secs);
    else
        printf("chaos: lost %lld, duplicated %lld, seconds to drain: not drained within %lld\n",
               c->lost, c->duplicated + c->shared_ids, c->drain_s);
    printf("chaos: simulator: %lld calls, %lld activations, %lld declines, %lld injected "
           "errors, %lld repeated calls (answered idempotently)\n",
           c->sim_calls, c->sim_activations, c->sim_declines, c->sim_errors, c->sim_repeats);
    if (c->shared_ids)
        printf("chaos: %lld ids were acknowledged for two different submissions\n",
               c->shared_ids);
    if (c->dead_unknown > 0)
        printf("chaos: %lld dead letters name jobs that were never acknowledged\n",
               c->dead_unknown);
    printf("chaos: activation jobs by job state / transaction status:\n");
    sql_print(c, "",
              "SELECT j.state, coalesce(t.status, 'no row'), count(*) FROM chaos_jobs j "
              "LEFT JOIN transactions t ON t.transaction_id = j.id WHERE j.type = 'activation' "
              "GROUP BY 1, 2 ORDER BY 1, 2");
    printf("chaos: noop jobs by state:\n");
    sql_print(c, "", "SELECT coalesce(state, 'unknown'), count(*) FROM chaos_jobs "
                     "WHERE type = 'noop' GROUP BY 1 ORDER BY 1");
    printf("chaos: failed and dead jobs by last error (digits as N):\n");
    sql_print(c, "",
              "SELECT type, state, left(regexp_replace(coalesce(last_error, ''), '[0-9]+', 'N', "
              "'g'), 70), count(*) FROM chaos_jobs WHERE state IN ('failed', 'dead') "
              "GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 12");
    char extra[32];
    if (sql_text(c, "SELECT count(*) FROM transactions t WHERE NOT EXISTS (SELECT 1 FROM "
                    "chaos_jobs j WHERE j.id = t.transaction_id)", extra, sizeof(extra)) == 0 &&
        strcmp(extra, "0") != 0)
        printf("chaos: %s transactions belong to no acknowledged job (a submission that was "
               "refused but ran)\n", extra);
}

static int parse_args(struct check *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "acked", required_argument, NULL, 'a' },
        { "jobs", required_argument, NULL, 'j' },
        { "sim", required_argument, NULL, 's' },
        { "drain-s", required_argument, NULL, 'd' },
        { "held-wait-s", required_argument, NULL, 'H' },
        { "kills", required_argument, NULL, 'k' },
        { "stops", required_argument, NULL, 'S' },
        { "redis-restarts", required_argument, NULL, 'r' },
        { "pg-restarts", required_argument, NULL, 'p' },
        { "workers-started", required_argument, NULL, 'w' },
        { "orders", required_argument, NULL, 'o' },
        { "api", required_argument, NULL, 'A' },
        { "replays", required_argument, NULL, 'R' },
        { NULL, 0, NULL, 0 },
    };
    int ch, bad = 0;
    const long long big = 1LL << 40;
    c->drain_s = 180;
    c->held_wait_s = 30;
    c->jobs = -1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'a': c->acked_path = optarg; break;
        case 's': c->sim_url = optarg; break;
        case 'j': bad |= chaos_int_arg("--jobs", optarg, 0, big, &c->jobs); break;
        case 'd': bad |= chaos_int_arg("--drain-s", optarg, 0, 86400, &c->drain_s); break;
        case 'H': bad |= chaos_int_arg("--held-wait-s", optarg, 0, 86400, &c->held_wait_s); break;
        case 'k': bad |= chaos_int_arg("--kills", optarg, 0, big, &c->kills); break;
        case 'S': bad |= chaos_int_arg("--stops", optarg, 0, big, &c->stops); break;
        case 'r':
            bad |= chaos_int_arg("--redis-restarts", optarg, 0, big, &c->redis_restarts);
            break;
        case 'p': bad |= chaos_int_arg("--pg-restarts", optarg, 0, big, &c->pg_restarts); break;
        case 'w': bad |= chaos_int_arg("--workers-started", optarg, 0, big, &c->started); break;
        case 'o': bad |= chaos_int_arg("--orders", optarg, 0, 10000, &c->orders); break;
        case 'A': c->api_url = optarg; break;
        case 'R': bad |= chaos_int_arg("--replays", optarg, 0, 10, &c->replays); break;
        default: bad = 1; break;
        }
    }
    if (!bad && (!c->acked_path || !c->sim_url || c->jobs < 0)) {
        fprintf(stderr, "chaos check: --acked, --jobs and --sim are required\n");
        bad = 1;
    }
    if (!bad && c->replays > 0 && (!c->orders || !c->api_url)) {
        fprintf(stderr, "chaos check: --replays needs --orders and --api\n");
        bad = 1;
    }
    return bad ? -1 : 0;
}

/* Print the verdicts from `from` on, each FAIL with its breakdown; how many failed. */
static int print_verdicts(struct check *c, int from)
{
    int failed = 0;
    for (int i = from; i < c->nv; i++) {
        printf("%s  %s: %s\n", c->v[i].ok ? "PASS" : "FAIL", c->v[i].name, c->v[i].detail);
        if (!c->v[i].ok && c->v[i].more_sql)
            sql_print(c, c->v[i].more_title, c->v[i].more_sql);
        failed += !c->v[i].ok;
    }
    return failed;
}

static int connect_all(struct check *c)
{
    if (cfg_load(&c->cfg, NULL))
        return -1;
    c->cfg_loaded = 1;
    if (cfg_require(&c->cfg, "pg.dsn"))
        return -1;
    c->broker = broker_open(&c->cfg, NULL);
    c->db = db_connect(c->cfg.pg_dsn);
    if (!c->broker || !c->db) {
        fprintf(stderr, "chaos check: cannot reach %s\n", c->broker ? "PostgreSQL" : "Redis");
        return -1;
    }
    return 0;
}

int chaos_check(int argc, char **argv)
{
    struct check c;
    int code = CHAOS_EXIT_USAGE;
    memset(&c, 0, sizeof(c));
    if (parse_args(&c, argc, argv))
        goto out;
    code = CHAOS_EXIT_FAIL;
    if (read_acked(&c) || connect_all(&c))
        goto out;
    if (c.n == 0) {
        fprintf(stderr, "chaos check: the API acknowledged no job: nothing to check\n");
        goto out;
    }

    wait_terminal(&c);
    wait_not_held(&c);
    refresh(&c, 1);
    broker_dead_list(c.broker, NULL, (int)(c.n * 2 + 100000), on_dead_list, &c);
    if (c.dead_unknown < 0 || store_jobs(&c) || store_sim(&c))
        goto out;

    double orders_secs = -1;
    if (c.orders > 0)
        chaos_orders_settle(c.db, c.broker, c.orders, c.drain_s, &orders_secs);

    long long vals[INV_COUNT][8], ovals[8];
    for (int i = 0; i < INV_COUNT; i++)
        judge(&c, &invariants[i], "", vals[i]);
    c.lost = vals[INV_TERMINAL][0] + vals[INV_TERMINAL][1];
    c.duplicated = vals[INV_DEBITS][0] + vals[INV_DEBITS][1];
    if (c.orders > 0) {
        if (chaos_orders_store(c.db, c.broker, c.sim_url))
            goto out;
        for (int i = 0; i < chaos_order_ninv; i++)
            judge(&c, &chaos_order_invs[i], "", ovals);
    }

    print_figures(&c);
    if (c.orders > 0) {
        if (orders_secs >= 0)
            printf("chaos: orders: %lld in the simulator's Mirakl, settled %.1f s after the "
                   "jobs drained\n", c.orders, orders_secs);
        else
            printf("chaos: orders: %lld in the simulator's Mirakl, not settled within %lld s\n",
                   c.orders, c.drain_s);
        chaos_orders_figures(c.db);
    }
    int failed = print_verdicts(&c, 0);
    if (c.replays > 0) {
        /* the pipeline's invariants must survive an operator replaying every dead and
         * failed order job: the retry edges may complete a FAILED order, never ship twice */
        int from = c.nv;
        fflush(stdout);
        if (chaos_orders_replay(c.db, c.broker, c.api_url, c.sim_url, (int)c.replays, c.orders,
                                c.drain_s) ||
            chaos_orders_store(c.db, c.broker, c.sim_url))
            goto out;
        for (int i = 0; i < chaos_order_ninv; i++)
            judge(&c, &chaos_order_invs[i], " (after replays)", ovals);
        chaos_orders_figures(c.db);
        failed += print_verdicts(&c, from);
    }
    code = failed ? CHAOS_EXIT_FAIL : CHAOS_EXIT_OK;
out:
    broker_close(c.broker);
    db_free(c.db);
    if (c.cfg_loaded)
        cfg_cleanup(&c.cfg);
    free(c.cj);
    return code;
}
