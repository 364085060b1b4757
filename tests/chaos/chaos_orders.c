/* chaos_orders.c - the order pipeline's part of `cv-chaos check` (chaos.h).
 *
 * run-chaos.sh puts --orders orders in the simulator's Mirakl before the load; the fleet
 * fetches them on its schedule and on explicit POST /api/v1/orchestrator/fetch-orders,
 * posts them to the carriers the rules pick, takes tracking from the carriers' webhooks and
 * TIPSA's change feed, and pushes OR23 + OR24 back, while the kit kills workers and
 * restarts Redis and PostgreSQL. Afterwards:
 *
 *  1. settle: wait until every Mirakl order is in our orders table and in an end state
 *     (COMPLETE or FAILED_*), no kept tracking event waits for an order that can still take
 *     it, and every job that moved an order is terminal;
 *  2. store: copy the simulator's view into tables of the run (chaos_mk: Mirakl's orders
 *     with their OR23/OR24 calls; chaos_ship: per carrier and reference, creates) and the
 *     order jobs' states in Redis (chaos_ojobs: every job named in operations, plus every
 *     dead or failed order job), so that each invariant is one SQL query;
 *  3. the invariants (chaos_order_invs, judged by chaos_check.c);
 *  4. replay: an operator replays every dead and failed order job, twice; then the same
 *     invariants are judged again. A replay may legitimately complete a FAILED order
 *     through the retry edge; it must never make a second shipment.
 *
 * Why these are sound under SIGKILL, Redis and PostgreSQL restarts:
 *  - operations rows are written in the transaction that moves the order, under the
 *    order's row lock, so for one order their ids are in commit order: the sequence of
 *    to_state values IS the order's history, and every consecutive pair must be an edge;
 *  - a worker killed between an outside call and its move is redelivered and looks the
 *    shipment up before creating again, so the carriers' per-reference create counts must
 *    be exactly one per order that we recorded as POSTED;
 *  - a handler moves its order into FAILED_* only when the job will fail (permanent) or
 *    die (last attempt), and a redelivery that finds the order already moved ends the same
 *    way, so the job that made an order's end state must agree with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "chaos.h"
#include "clock.h"
#include "db.h"
#include "json.h"
#include "mem.h"

#define POLL_MS 500
#define PROGRESS_EVERY_MS 10000
#define HTTP_PARALLEL 16
#define HTTP_TIMEOUT_MS 10000
#define DEAD_LIMIT 100000

/* The job types of the order pipeline (worker/h_*.c). */
static const char *const order_types[] = { "order-fetch", "carrier-post", "tracking-event",
                                           "tracking-poll", "tracking-push" };
#define NTYPES (sizeof(order_types) / sizeof(order_types[0]))

/* The carriers' systems in the simulator (sim/sim_<name>.c). */
static const char *const carriers[] = { "tipsa", "seur", "cex", "ontime" };

int chaos_order_type(const char *t)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (strcmp(t, order_types[i]) == 0)
            return 1;
    return 0;
}

static int terminal(enum job_state s)
{
    return s == JOB_STATE_SUCCEEDED || s == JOB_STATE_FAILED || s == JOB_STATE_DEAD;
}

/* ==== the order jobs ===================================================================== */

/* A growable list of job ids. */
struct ids {
    char (*id)[UUID_STR_LEN];
    size_t n, cap;
};

/* Add id to l; when unique, only if l does not hold it yet. */
static void ids_add(struct ids *l, const char *id, int unique)
{
    for (size_t i = 0; unique && i < l->n; i++)
        if (strcmp(l->id[i], id) == 0)
            return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->id = xrealloc(l->id, l->cap * sizeof(*l->id));
    }
    snprintf(l->id[l->n++], UUID_STR_LEN, "%s", id);
}

static void on_dead(void *arg, enum cv_rc rc, const struct job_status *st, size_t n)
{
    struct ids *l = arg;
    if (rc != CV_OK) {
        fprintf(stderr, "chaos check: cannot read the dead-letter list (%s)\n", cv_rc_str(rc));
        return;
    }
    for (size_t k = 0; k < n; k++)
        if (chaos_order_type(st[k].type))
            ids_add(l, st[k].id, 1);
}

/* The dead and failed order jobs into l. */
static void dead_order_jobs(struct broker *b, struct ids *l)
{
    broker_dead_list(b, NULL, DEAD_LIMIT, on_dead, l);
}

/* Every job that operations names for an order, and every dead order job (a job may be
 * listed twice). */
static int order_jobs(struct db *db, struct broker *b, struct ids *l)
{
    enum cv_rc rc;
    struct db_res *r = db_exec(db,
                               "SELECT DISTINCT job_id::text FROM operations "
                               "WHERE order_id IS NOT NULL AND job_id IS NOT NULL",
                               0, NULL, &rc);
    if (!r) {
        fprintf(stderr, "chaos check: SQL failed: %s\n", db_last_error(db));
        return -1;
    }
    for (int i = 0; i < db_res_rows(r); i++)
        ids_add(l, db_res_get(r, i, 0), 0);   /* DISTINCT already */
    db_res_free(r);
    dead_order_jobs(b, l);
    return 0;
}

/* How many of l's jobs are not terminal (a job Redis does not know counts as terminal: it
 * cannot change any more). */
static size_t unfinished(struct broker *b, const struct ids *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        struct job_status st;
        if (broker_get_copy(b, l->id[i], &st) == CV_OK) {
            n += !terminal(st.state);
            job_status_cleanup(&st);
        }
    }
    return n;
}

/* ==== 1. settle ========================================================================== */

/* 1 when the orders look settled: all fetched, none in an intermediate state, no kept event
 * for an order that may still take it (one kept for a FAILED_POST order waits for a replay,
 * and the pending invariant judges it), and none changed in the last 3 s: a replayed
 * job can take an order from FAILED_POST through AWAITING_TRACKING between two polls, and
 * its carrier's webhook only comes later (a check that ran in that gap saw AWAITING). */
static int orders_settled(struct db *db, long long orders, long long v[4])
{
    if (chaos_sql_row(db,
                      "SELECT (SELECT count(*) FROM orders), "
                      "(SELECT count(*) FROM orders WHERE internal_state NOT IN ('COMPLETE', "
                      "  'FAILED_POST', 'FAILED_TRACKING', 'FAILED_PUSH')), "
                      "(SELECT count(*) FROM tracking_pending p WHERE NOT EXISTS (SELECT 1 "
                      "  FROM orders o WHERE o.order_id = p.order_id "
                      "  AND o.internal_state LIKE 'FAILED\\_%')), "
                      "(SELECT count(*) FROM orders WHERE updated_at > clock_timestamp() - "
                      "  interval '3 seconds')",
                      0, NULL, v, 4))
        return 0;
    return v[0] >= orders && v[1] == 0 && v[2] == 0 && v[3] == 0;
}

/* chaos_orders_settle, and also until every job of extra (may be NULL) is terminal. */
static void settle(struct db *db, struct broker *b, long long orders, long long deadline_s,
                   const struct ids *extra, double *secs)
{
    int64_t t0 = clock_mono_ms(), next_note = t0 + PROGRESS_EVERY_MS;
    long long v[4] = { 0, 0, 0, 0 };
    size_t left = 0;
    *secs = -1;
    for (;;) {
        if (orders_settled(db, orders, v)) {
            struct ids l = { NULL, 0, 0 };
            if (order_jobs(db, b, &l) == 0)
                left = unfinished(b, &l) + (extra ? unfinished(b, extra) : 0);
            free(l.id);
            if (left == 0) {
                *secs = (double)(clock_mono_ms() - t0) / 1000.0;
                return;
            }
        }
        int64_t now = clock_mono_ms();
        if (now - t0 >= deadline_s * 1000) {
            fprintf(stderr, "chaos: orders not settled after %lld s: %lld of %lld fetched, "
                            "%lld in an intermediate state, %lld kept events waiting, %zu "
                            "order jobs unfinished\n",
                    deadline_s, v[0], orders, v[1], v[2], left);
            return;
        }
        if (now >= next_note) {
            fprintf(stderr, "chaos: orders settling: %lld of %lld fetched, %lld in an "
                            "intermediate state, %lld kept events waiting\n",
                    v[0], orders, v[1], v[2]);
            next_note = now + PROGRESS_EVERY_MS;
        }
        chaos_sleep_ms(POLL_MS);
    }
}

void chaos_orders_settle(struct db *db, struct broker *b, long long orders, long long deadline_s,
                         double *secs)
{
    settle(db, b, orders, deadline_s, NULL, secs);
}

/* ==== 2. store =========================================================================== */

static cJSON *sim_stats(struct ch_http *h, const char *sim_url, const char *sys)
{
    char url[512];
    struct ch_req r;
    memset(&r, 0, sizeof(r));
    snprintf(url, sizeof(url), "%s/admin/%s/stats", sim_url, sys);
    r.method = "GET";
    r.url = url;
    ch_http_run(h, &r, 1, HTTP_TIMEOUT_MS);
    cJSON *root = r.status == 200 ? json_parse(r.resp, r.resp_len) : NULL;
    if (!root)
        fprintf(stderr, "chaos check: GET %s answered %d %s\n", url, r.status, r.err);
    ch_req_cleanup(&r);
    return root;
}

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static void int_of(const cJSON *o, const char *k, char *out, size_t cap)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    snprintf(out, cap, "%lld", cJSON_IsNumber(it) ? (long long)it->valuedouble : -1LL);
}

/* chaos_mk from /admin/mirakl/stats "orders". */
static int store_mirakl(struct db *db, struct ch_http *h, const char *sim_url)
{
    cJSON *st = sim_stats(h, sim_url, "mirakl");
    const cJSON *orders = st ? cJSON_GetObjectItemCaseSensitive(st, "orders") : NULL;
    const cJSON *o;
    int ret = -1;
    if (!cJSON_IsObject(orders))
        goto out;
    cJSON_ArrayForEach(o, orders)
    {
        char or23[24], or24[24];
        int_of(o, "or23", or23, sizeof(or23));
        int_of(o, "or24", or24, sizeof(or24));
        const char *p[] = { o->string, str_of(o, "state"), or23, or24,
                            str_of(o, "tracking_number") };
        if (db_run(db, "INSERT INTO chaos_mk VALUES ($1, $2, $3, $4, nullif($5, ''))", 5, p) !=
            CV_OK)
            goto out;
    }
    ret = 0;
out:
    cJSON_Delete(st);
    return ret;
}

/* chaos_ship from every carrier's /admin/<carrier>/stats "references". */
static int store_ships(struct db *db, struct ch_http *h, const char *sim_url)
{
    for (size_t c = 0; c < sizeof(carriers) / sizeof(carriers[0]); c++) {
        cJSON *st = sim_stats(h, sim_url, carriers[c]);
        const cJSON *refs = st ? cJSON_GetObjectItemCaseSensitive(st, "references") : NULL;
        const cJSON *r;
        int bad = !cJSON_IsObject(refs);
        if (!bad) {
            cJSON_ArrayForEach(r, refs)
            {
                char creates[24];
                int_of(r, "creates", creates, sizeof(creates));
                const char *p[] = { carriers[c], r->string, creates };
                if (db_run(db, "INSERT INTO chaos_ship VALUES ($1, $2, $3)", 3, p) != CV_OK) {
                    bad = 1;
                    break;
                }
            }
        }
        cJSON_Delete(st);
        if (bad)
            return -1;
    }
    return 0;
}

/* chaos_ojobs: the final state in Redis of every order job. */
static int store_jobs(struct db *db, struct broker *b)
{
    struct ids l = { NULL, 0, 0 };
    struct ids dead = { NULL, 0, 0 };
    int ret = -1;
    if (order_jobs(db, b, &l))
        goto out;
    dead_order_jobs(b, &dead);
    for (size_t i = 0; i < l.n; i++) {
        struct job_status st;
        char attempt[16], maxa[16];
        int in_dead = 0;
        for (size_t k = 0; k < dead.n && !in_dead; k++)
            in_dead = strcmp(dead.id[k], l.id[i]) == 0;
        enum cv_rc rc = broker_get_copy(b, l.id[i], &st);
        int found = rc == CV_OK;
        snprintf(attempt, sizeof(attempt), "%d", found ? st.attempt : 0);
        snprintf(maxa, sizeof(maxa), "%d", found ? st.max_attempts : 0);
        const char *p[] = { l.id[i], found ? st.type : NULL,
                            found ? job_state_str(st.state) : NULL, found ? attempt : NULL,
                            found ? maxa : NULL, in_dead ? "t" : "f",
                            found ? st.last_error : NULL };
        enum cv_rc irc = db_run(db, "INSERT INTO chaos_ojobs VALUES ($1, $2, $3, $4, $5, $6, $7)"
                                " ON CONFLICT (id) DO NOTHING", 7, p);
        if (found)
            job_status_cleanup(&st);
        if (irc != CV_OK)
            goto out;
    }
    ret = 0;
out:
    free(l.id);
    free(dead.id);
    return ret;
}

int chaos_orders_store(struct db *db, struct broker *b, const char *sim_url)
{
    struct ch_http *h = ch_http_new(HTTP_PARALLEL);
    int ret = -1;
    if (db_run(db, "DROP TABLE IF EXISTS chaos_mk, chaos_ship, chaos_ojobs", 0, NULL) != CV_OK ||
        db_run(db,
               "CREATE TABLE chaos_mk (order_id text PRIMARY KEY, state text, or23 int, "
               "or24 int, tracking text)",
               0, NULL) != CV_OK ||
        db_run(db,
               "CREATE TABLE chaos_ship (carrier text, ref text, creates int, "
               "PRIMARY KEY (carrier, ref))",
               0, NULL) != CV_OK ||
        db_run(db,
               "CREATE TABLE chaos_ojobs (id uuid PRIMARY KEY, type text, state text, "
               "attempt int, max_attempts int, in_dead boolean NOT NULL, last_error text)",
               0, NULL) != CV_OK ||
        db_run(db, "BEGIN", 0, NULL) != CV_OK)
        goto out;
    if (store_mirakl(db, h, sim_url) || store_ships(db, h, sim_url) || store_jobs(db, b)) {
        fprintf(stderr, "chaos check: storing the pipeline's view failed: %s\n",
                db_last_error(db));
        db_run(db, "ROLLBACK", 0, NULL);
        goto out;
    }
    ret = db_run(db, "COMMIT", 0, NULL) == CV_OK ? 0 : -1;
out:
    ch_http_free(h);
    return ret;
}

/* ==== 3. the invariants ================================================================== */

#define END_STATES "('COMPLETE', 'FAILED_POST', 'FAILED_TRACKING', 'FAILED_PUSH')"
#define OERR "left(regexp_replace(coalesce(o.last_error, ''), '[0-9]+', 'N', 'g'), 60)"
/* The moves: operations rows that changed an order's state (a REFUSED row names the edge
 * it was refused). For one order, ids are in commit order (see the top of the file). */
#define MOVES "SELECT * FROM operations WHERE order_id IS NOT NULL AND to_state IS NOT NULL " \
              "AND status <> 'REFUSED'"
#define SEQ                                                                                 \
    "WITH mv AS (SELECT order_id, id, from_state, to_state, "                               \
    "  lag(to_state) OVER (PARTITION BY order_id ORDER BY id) AS prev, "                    \
    "  row_number() OVER (PARTITION BY order_id ORDER BY id) AS n, "                        \
    "  row_number() OVER (PARTITION BY order_id ORDER BY id DESC) AS back FROM (" MOVES     \
    ") x), "                                                                                \
    "bad AS (SELECT order_id, "                                                             \
    "  bool_or(n > 1 AND NOT EXISTS (SELECT 1 FROM order_edges e "                          \
    "    WHERE e.from_state = mv.prev AND e.to_state = mv.to_state)) AS not_edge, "         \
    "  bool_or(n = 1 AND to_state <> 'PENDING_POST') AS bad_start, "                        \
    "  bool_or(n > 1 AND from_state IS DISTINCT FROM prev) AS bad_from, "                   \
    "  max(to_state) FILTER (WHERE back = 1) AS last, count(*) AS moves "                   \
    "  FROM mv GROUP BY order_id) "
/* Per order, the job of its last move and of its last move into POSTED. */
#define LAST_JOBS                                                                           \
    "WITH l AS (SELECT DISTINCT ON (order_id) order_id, to_state, job_id FROM (" MOVES      \
    ") x ORDER BY order_id, id DESC), "                                                     \
    "p AS (SELECT DISTINCT ON (order_id) order_id, job_id FROM (" MOVES ") x "              \
    "  WHERE to_state = 'POSTED' ORDER BY order_id, id DESC), "                             \
    "jl AS (SELECT o.order_id, o.internal_state, l.to_state, j.id AS jid, j.type, j.state, "\
    "  pj.state AS pstate FROM orders o LEFT JOIN l USING (order_id) "                      \
    "  LEFT JOIN chaos_ojobs j ON j.id = l.job_id LEFT JOIN p USING (order_id) "            \
    "  LEFT JOIN chaos_ojobs pj ON pj.id = p.job_id) "
#define JOBS_BAD                                                                            \
    "((to_state = 'COMPLETE' AND (type IS DISTINCT FROM 'tracking-push' "                   \
    "  OR state IS DISTINCT FROM 'succeeded')) "                                            \
    "OR (to_state IN ('FAILED_POST', 'FAILED_PUSH') AND state IS DISTINCT FROM 'failed' "   \
    "  AND state IS DISTINCT FROM 'dead') "                                                 \
    "OR pstate IN ('failed', 'dead'))"

enum { OI_END, OI_SHIP, OI_MIRAKL, OI_EDGES, OI_JOBS, OI_PENDING, OI_COUNT };

const int chaos_order_ninv = OI_COUNT;

const struct chaos_inv chaos_order_invs[OI_COUNT] = {
    [OI_END] = {
        "every order ends COMPLETE, or FAILED_* with its reason", 4, 0,
        { "Mirakl orders never fetched", "in an intermediate state",
          "FAILED_* without last_error", "fewer than half COMPLETE (1 = yes)", "COMPLETE",
          "FAILED_*" },
        "SELECT (SELECT count(*) FROM chaos_mk m WHERE NOT EXISTS (SELECT 1 FROM orders o "
        "  WHERE o.order_id = m.order_id)), "
        "count(*) FILTER (WHERE internal_state NOT IN " END_STATES "), "
        "count(*) FILTER (WHERE internal_state LIKE 'FAILED\\_%' "
        "  AND coalesce(last_error, '') = ''), "
        "(count(*) FILTER (WHERE internal_state = 'COMPLETE') * 2 < count(*))::int, "
        "count(*) FILTER (WHERE internal_state = 'COMPLETE'), "
        "count(*) FILTER (WHERE internal_state LIKE 'FAILED\\_%') FROM orders",
        "state / last error: ",
        "SELECT o.internal_state, " OERR ", count(*) FROM orders o "
        "WHERE o.internal_state NOT IN " END_STATES " OR (o.internal_state LIKE 'FAILED\\_%' "
        "  AND coalesce(o.last_error, '') = '') GROUP BY 1, 2 "
        "UNION ALL SELECT 'never fetched', m.order_id, 1 FROM chaos_mk m WHERE NOT EXISTS "
        "  (SELECT 1 FROM orders o WHERE o.order_id = m.order_id) ORDER BY 3 DESC LIMIT 20" },
    [OI_SHIP] = {
        /* the sim counts every create of a reference, at every carrier */
        "exactly one shipment per order reference across all carriers", 4, 0,
        { "references created 2+ times", "posted orders with no shipment",
          "references created for an order never POSTED", "creates - posted orders",
          "creates", "posted orders" },
        "WITH s AS (SELECT ref, sum(creates) AS n FROM chaos_ship GROUP BY ref), "
        "p AS (SELECT DISTINCT order_id FROM (" MOVES ") x WHERE to_state = 'POSTED') "
        "SELECT (SELECT count(*) FROM s WHERE n > 1), "
        "(SELECT count(*) FROM p WHERE NOT EXISTS (SELECT 1 FROM s WHERE s.ref = p.order_id)), "
        "(SELECT count(*) FROM s WHERE NOT EXISTS (SELECT 1 FROM p WHERE p.order_id = s.ref)), "
        "(SELECT coalesce(sum(n), 0) FROM s) - (SELECT count(*) FROM p), "
        "(SELECT coalesce(sum(n), 0) FROM s), (SELECT count(*) FROM p)",
        "reference / carriers / order state: ",
        "SELECT s.ref, string_agg(s.carrier || ' x' || s.creates, ' '), "
        "coalesce(o.internal_state, 'unknown'), sum(s.creates) FROM chaos_ship s "
        "LEFT JOIN orders o ON o.order_id = s.ref GROUP BY s.ref, o.internal_state "
        "HAVING sum(s.creates) > 1 OR NOT EXISTS (SELECT 1 FROM operations x "
        "  WHERE x.order_id = s.ref AND x.to_state = 'POSTED' AND x.status <> 'REFUSED') "
        "ORDER BY 4 DESC LIMIT 20" },
    [OI_MIRAKL] = {
        "at most one OR24 per order; COMPLETE = shipped at Mirakl with our tracking", 3, 0,
        { "orders with 2+ OR24", "COMPLETE but not SHIPPED there with our tracking number",
          "SHIPPED there but not COMPLETE here", "OR23 calls", "OR24 calls" },
        "SELECT count(*) FILTER (WHERE m.or24 > 1), "
        "count(*) FILTER (WHERE o.internal_state = 'COMPLETE' AND (m.state IS DISTINCT FROM "
        "  'SHIPPED' OR m.tracking IS DISTINCT FROM o.tracking_number)), "
        "count(*) FILTER (WHERE m.state = 'SHIPPED' AND o.internal_state IS DISTINCT FROM "
        "  'COMPLETE'), coalesce(sum(m.or23), 0), coalesce(sum(m.or24), 0) "
        "FROM chaos_mk m LEFT JOIN orders o USING (order_id)",
        "order / Mirakl state / OR23 / OR24 / our state: ",
        "SELECT m.order_id, m.state, m.or23, m.or24, coalesce(o.internal_state, 'unknown'), 1 "
        "FROM chaos_mk m LEFT JOIN orders o USING (order_id) WHERE m.or24 > 1 "
        "OR (o.internal_state = 'COMPLETE' AND (m.state IS DISTINCT FROM 'SHIPPED' "
        "  OR m.tracking IS DISTINCT FROM o.tracking_number)) "
        "OR (m.state = 'SHIPPED' AND o.internal_state IS DISTINCT FROM 'COMPLETE') LIMIT 20" },
    [OI_EDGES] = {
        /* the history of an order is its moves in operations: it starts with the fetch
         * (-> PENDING_POST), each next move is an order_edges row from the state before,
         * and it ends in the order's state */
        "no order moved backwards (operations follow order_edges to internal_state)", 4, 0,
        { "orders with a move not in order_edges", "orders not starting at PENDING_POST",
          "orders with a from_state that is not the state before",
          "orders whose last move is not their internal_state", "moves",
          "refused moves (logged, nothing changed)" },
        SEQ
        "SELECT (SELECT count(*) FROM bad WHERE not_edge), "
        "(SELECT count(*) FROM bad WHERE bad_start), "
        "(SELECT count(*) FROM bad WHERE bad_from), "
        "(SELECT count(*) FROM orders o LEFT JOIN bad USING (order_id) "
        "  WHERE bad.last IS DISTINCT FROM o.internal_state), "
        "(SELECT coalesce(sum(moves), 0) FROM bad), "
        "(SELECT count(*) FROM operations WHERE status = 'REFUSED')",
        "order / its moves: ",
        SEQ
        ", odd AS (SELECT bad.order_id FROM bad LEFT JOIN orders o USING (order_id) "
        "  WHERE not_edge OR bad_start OR bad_from OR last IS DISTINCT FROM o.internal_state "
        "  LIMIT 10) "
        "SELECT odd.order_id, (SELECT string_agg(coalesce(from_state, '-') || '>' || to_state, "
        "  ' ' ORDER BY id) FROM mv WHERE mv.order_id = odd.order_id), "
        "(SELECT internal_state FROM orders o WHERE o.order_id = odd.order_id), 1 FROM odd" },
    [OI_JOBS] = {
        /* the job that made an order's end state agrees with it; the job that posted it
         * did not end failed or dead (a carrier-post job never both posts and fails) */
        "order jobs agree with their orders (the job of the end state, the posting job)", 3, 0,
        { "COMPLETE by no succeeded tracking-push", "FAILED_POST/PUSH by a job not failed or dead",
          "posted by a job that ended failed or dead", "orders judged" },
        LAST_JOBS
        "SELECT count(*) FILTER (WHERE to_state = 'COMPLETE' AND (type IS DISTINCT FROM "
        "  'tracking-push' OR state IS DISTINCT FROM 'succeeded')), "
        "count(*) FILTER (WHERE to_state IN ('FAILED_POST', 'FAILED_PUSH') "
        "  AND state IS DISTINCT FROM 'failed' AND state IS DISTINCT FROM 'dead'), "
        "count(*) FILTER (WHERE pstate IN ('failed', 'dead')), count(*) FROM jl",
        "order state / job of its last move: type / state / posting job's state: ",
        LAST_JOBS
        "SELECT internal_state, coalesce(type, 'unknown'), coalesce(state, 'unknown'), "
        "coalesce(pstate, '-'), count(*) FROM jl WHERE " JOBS_BAD
        " GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC" },
    [OI_PENDING] = {
        "nothing lost: no tracking event left in tracking_pending", 1, 0,
        { "events kept", "orders they wait for" },
        "SELECT count(*), count(DISTINCT order_id) FROM tracking_pending",
        "order state / carrier / event: ",
        "SELECT coalesce(o.internal_state, 'no order'), p.carrier, p.status, count(*) "
        "FROM tracking_pending p LEFT JOIN orders o USING (order_id) "
        "GROUP BY 1, 2, 3 ORDER BY 4 DESC" },
};

/* ==== figures ============================================================================ */

void chaos_orders_figures(struct db *db)
{
    printf("chaos: orders by state / last error (digits as N):\n");
    chaos_sql_print(db, "",
                    "SELECT o.internal_state, " OERR ", count(*) FROM orders o "
                    "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 12");
    printf("chaos: order jobs by type / state:\n");
    chaos_sql_print(db, "", "SELECT coalesce(type, 'unknown'), coalesce(state, 'unknown'), "
                            "count(*) FROM chaos_ojobs GROUP BY 1, 2 ORDER BY 1, 2");
    printf("chaos: simulator: shipments created per carrier:\n");
    chaos_sql_print(db, "", "SELECT carrier, sum(creates) FROM chaos_ship GROUP BY 1 ORDER BY 1");
}

/* ==== 4. replays ========================================================================= */

/* POST /v1/dead/{id}/retry for every id of l; counts[0..2] += 202, 404/409, other. */
static int replay_all(const char *api_url, const char *key, const struct ids *l,
                      long long counts[3])
{
    struct ch_http *h = ch_http_new(HTTP_PARALLEL);
    struct ch_req *reqs = xcalloc(l->n + 1, sizeof(*reqs));
    char **urls = xcalloc(l->n + 1, sizeof(*urls));
    char *auth = xasprintf("Authorization: Bearer %s", key);
    const char *hdrs[] = { auth, NULL };
    for (size_t i = 0; i < l->n; i++) {
        urls[i] = xasprintf("%s/v1/dead/%s/retry", api_url, l->id[i]);
        reqs[i].method = "POST";
        reqs[i].url = urls[i];
        reqs[i].headers = hdrs;
    }
    ch_http_run(h, reqs, l->n, HTTP_TIMEOUT_MS);
    for (size_t i = 0; i < l->n; i++) {
        int s = reqs[i].status;
        counts[s == 202 ? 0 : s == 404 || s == 409 ? 1 : 2]++;
        if (s != 202 && s != 404 && s != 409)
            fprintf(stderr, "chaos check: replay %s: HTTP %d %.200s%s\n", l->id[i], s,
                    reqs[i].resp ? reqs[i].resp : "", reqs[i].err);
        ch_req_cleanup(&reqs[i]);
        free(urls[i]);
    }
    free(auth);
    free(urls);
    free(reqs);
    ch_http_free(h);
    return 0;
}

/* The operator fixed the data: no carrier refuses a reference any more. */
static int clear_fail_keys(const char *sim_url)
{
    struct ch_http *h = ch_http_new(HTTP_PARALLEL);
    int ret = 0;
    for (size_t c = 0; c < sizeof(carriers) / sizeof(carriers[0]); c++) {
        char url[512];
        struct ch_req r;
        memset(&r, 0, sizeof(r));
        snprintf(url, sizeof(url), "%s/admin/%s/faults", sim_url, carriers[c]);
        r.method = "POST";
        r.url = url;
        r.body = "{\"fail_keys\":[]}";
        ch_http_run(h, &r, 1, HTTP_TIMEOUT_MS);
        if (r.status != 200) {
            fprintf(stderr, "chaos check: POST %s answered %d %s\n", url, r.status, r.err);
            ret = -1;
        }
        ch_req_cleanup(&r);
    }
    ch_http_free(h);
    return ret;
}

int chaos_orders_replay(struct db *db, struct broker *b, const char *api_url, const char *sim_url,
                        int rounds, long long orders, long long deadline_s)
{
    const char *key = getenv("CHAOS_API_KEY");
    struct ids all = { NULL, 0, 0 };
    if (!key || !*key) {
        fprintf(stderr, "chaos check: replays need CHAOS_API_KEY\n");
        return -1;
    }
    if (clear_fail_keys(sim_url))
        return -1;
    for (int round = 1; round <= rounds; round++) {
        long long counts[3] = { 0, 0, 0 };
        size_t before = all.n;
        double secs;
        dead_order_jobs(b, &all);
        replay_all(api_url, key, &all, counts);
        printf("chaos: replay %d: %zu order jobs dead or failed (%zu new), %lld replayed, %lld "
               "refused (not dead any more), %lld other answers\n",
               round, all.n, all.n - before, counts[0], counts[1], counts[2]);
        fflush(stdout);
        settle(db, b, orders, deadline_s, &all, &secs);
        if (secs >= 0)
            printf("chaos: replay %d: settled in %.1f s\n", round, secs);
        else
            printf("chaos: replay %d: not settled within %lld s\n", round, deadline_s);
    }
    free(all.id);
    return 0;
}
