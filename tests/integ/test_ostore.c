/* The orders store against the real PostgreSQL of the harness: the SQL edge
 * table equals common/ostate.c's, refused edges change nothing but are logged,
 * claims fence stale jobs, re-fetches never move an order back, early tracking
 * is kept and applied in event order, duplicates apply once, operations is
 * append-only, and racing writers produce exactly one effect. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "harness.h"
#include "ostate.h"
#include "ostore.h"
#include "uuid.h"

static struct db *D;

static void setup(void)
{
    hn_psql_exec("TRUNCATE orders, operations, tracking_pending, comm_log, webhook_seen "
                 "RESTART IDENTITY");
    D = db_connect(hn_env("CONVEYOR_PG_DSN"));
    cr_assert_not_null(D);
}

static void teardown(void)
{
    db_free(D);
}

TestSuite(ostore, .init = setup, .fini = teardown, .timeout = 120);

#define q hn_sql_id

/* ---- helpers ---------------------------------------------------------------------- */

/* A new order in PENDING_POST through the store, as a fetch makes it. */
static void new_order(const char *id)
{
    struct ostore_order_in in = { .order_id = id, .mirakl_state = "SHIPPING",
                                  .weight_kg = "2.5", .country = "ES",
                                  .customer_json = "{\"city\":\"Madrid\"}",
                                  .lines_json = "[{\"sku\":\"A\",\"weight_kg\":2.5}]",
                                  .mirakl_updated_at = "2025-01-01T00:00:00Z" };
    struct ostore_upserted out;
    cr_assert_eq(ostore_upsert_batch(D, &in, 1, NULL, "trace-1", &out), CV_OK);
    cr_assert_eq(out.outcome, OSTORE_UPSERT_NEW);
}

static char *state_of(const char *id)
{
    return hn_psql_scalar(q("SELECT internal_state FROM orders WHERE order_id = '%s'", id));
}

static void assert_state(const char *id, const char *want)
{
    char *s = state_of(id);
    cr_assert(s && strcmp(s, want) == 0, "order %s is %s, expected %s", id, s ? s : "(none)",
              want);
    free(s);
}

/* An operator transition (no job). */
static enum ostore_result op_move(const char *id, enum ostate to)
{
    struct ostore_change c = { .order_id = id, .to = to, .scope = "operator", .action = "test",
                               .mirakl_tracking_updated = -1 };
    struct ostore_moved m;
    cr_assert_eq(ostore_transition(D, &c, &m), CV_OK);
    return m.result;
}

/* A job's transition under its claim. */
static struct ostore_moved job_move(const char *id, enum ostate to, const char *job,
                                    int64_t epoch)
{
    struct ostore_change c = { .order_id = id, .to = to, .job_id = job, .epoch = epoch,
                               .scope = "carrier", .action = "test",
                               .mirakl_tracking_updated = -1 };
    struct ostore_moved m;
    cr_assert_eq(ostore_transition(D, &c, &m), CV_OK);
    return m;
}

static enum ostore_result claim(const char *id, const char *job, int64_t epoch, int ttl_ms)
{
    enum ostore_result r;
    cr_assert_eq(ostore_claim(D, id, job, epoch, ttl_ms, &r), CV_OK);
    return r;
}

static enum ostore_result track(const char *id, enum otrack st, const char *at,
                                const char *webhook, const char *job, int64_t epoch, int *state)
{
    struct ostore_event e = { .order_id = id, .carrier = "tipsa", .status = st,
                              .event_at = at, .tracking_number = "TN-1",
                              .webhook_id = webhook, .payload_json = "{\"raw\":1}",
                              .job_id = job, .epoch = epoch, .trace_id = "trace-t" };
    enum ostore_result r;
    int s = -2;
    cr_assert_eq(ostore_track(D, &e, &r, &s), CV_OK);
    if (state)
        *state = s;
    return r;
}

/* ---- the state machine ------------------------------------------------------------ */

Test(ostore, sql_edges_equal_the_c_table)
{
    for (int f = 0; f < OSTATE_N; f++)
        for (int t = 0; t < OSTATE_N; t++) {
            char sql[256];
            snprintf(sql, sizeof(sql),
                     "SELECT count(*) FROM order_edges WHERE from_state = '%s' AND to_state = '%s'",
                     ostate_str((enum ostate)f), ostate_str((enum ostate)t));
            cr_assert_eq(hn_psql_int(sql), ostate_allowed((enum ostate)f, (enum ostate)t),
                         "%s -> %s", ostate_str((enum ostate)f), ostate_str((enum ostate)t));
        }
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM order_edges"), 14);
}

Test(ostore, every_pair_through_cv_order_transition)
{
    /* one scratch order per pair, put in `from` directly, then asked to move */
    for (int f = 0; f < OSTATE_N; f++)
        for (int t = 0; t < OSTATE_N; t++) {
            char id[32], sql[256];
            snprintf(id, sizeof(id), "pair-%d-%d", f, t);
            snprintf(sql, sizeof(sql),
                     "INSERT INTO orders (order_id, internal_state) VALUES ('%s', '%s')", id,
                     ostate_str((enum ostate)f));
            hn_psql_exec(sql);
            enum ostore_result want = f == t ? OSTORE_SAME
                                      : ostate_allowed((enum ostate)f, (enum ostate)t)
                                          ? OSTORE_OK
                                          : OSTORE_EDGE;
            enum ostore_result got = op_move(id, (enum ostate)t);
            cr_assert_eq(got, want, "%s -> %s: %s, expected %s", ostate_str((enum ostate)f),
                         ostate_str((enum ostate)t), ostore_result_str(got),
                         ostore_result_str(want));
            assert_state(id, ostate_str(want == OSTORE_OK ? (enum ostate)t : (enum ostate)f));
        }
    /* an operations row per change and per refusal, none for the no-ops */
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE status = 'OK'"), 14);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE status = 'REFUSED'"),
                 81 - 14 - 9);
}

Test(ostore, refused_edge_changes_nothing_and_is_logged)
{
    new_order("R1");
    char *before = hn_psql_scalar("SELECT updated_at FROM orders WHERE order_id = 'R1'");
    struct ostore_change c = { .order_id = "R1", .to = OSTATE_COMPLETE, .scope = "operator",
                               .action = "force", .message = "skip ahead",
                               .carrier_code = "seur", .tracking_number = "X",
                               .mirakl_tracking_updated = 1 };
    struct ostore_moved m;
    cr_assert_eq(ostore_transition(D, &c, &m), CV_OK);
    cr_assert_eq(m.result, OSTORE_EDGE);
    cr_assert_eq(m.state, OSTATE_PENDING_POST);
    assert_state("R1", "PENDING_POST");
    char *after = hn_psql_scalar("SELECT updated_at FROM orders WHERE order_id = 'R1'");
    cr_assert_str_eq(after, before);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM orders WHERE order_id = 'R1' AND "
                             "carrier_code IS NULL AND tracking_number IS NULL AND "
                             "NOT mirakl_tracking_updated"), 1);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE order_id = 'R1' AND "
                             "status = 'REFUSED' AND from_state = 'PENDING_POST' AND "
                             "to_state = 'COMPLETE' AND message LIKE '%skip ahead'"), 1);
    free(before);
    free(after);
}

Test(ostore, transition_sets_whitelisted_columns)
{
    new_order("S1");
    struct ostore_change c = { .order_id = "S1", .to = OSTATE_POSTED, .scope = "carrier",
                               .action = "create_shipment", .message = "albaran 77",
                               .meta_json = "{\"albaran\":\"77\"}", .trace_id = "tr-9",
                               .carrier_code = "tipsa", .expedition_id = "E-77",
                               .last_error = "old", .mirakl_tracking_updated = -1 };
    struct ostore_moved m;
    cr_assert_eq(ostore_transition(D, &c, &m), CV_OK);
    cr_assert_eq(m.result, OSTORE_OK);
    cr_assert_eq(m.state, OSTATE_POSTED);
    /* ostore_null clears, NULL keeps */
    struct ostore_change c2 = { .order_id = "S1", .to = OSTATE_FAILED_POST, .scope = "carrier",
                                .action = "create_shipment", .status = "ERROR",
                                .last_error = ostore_null, .mirakl_tracking_updated = 1 };
    cr_assert_eq(ostore_transition(D, &c2, &m), CV_OK);
    cr_assert_eq(m.result, OSTORE_OK);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM orders WHERE order_id = 'S1' AND "
                             "carrier_code = 'tipsa' AND expedition_id = 'E-77' AND "
                             "last_error IS NULL AND mirakl_tracking_updated AND attempts = 1"),
                 1);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE order_id = 'S1' AND "
                             "action = 'create_shipment' AND trace_id = 'tr-9' AND "
                             "meta->>'albaran' = '77' AND carrier = 'tipsa'"), 1);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE order_id = 'S1' AND "
                             "status = 'ERROR' AND to_state = 'FAILED_POST'"), 1);
}

/* ---- claims and fencing ---------------------------------------------------------------- */

struct claim_poll {
    const char *id, *job;
    int64_t epoch;
};

static int claim_taken(void *arg)
{
    struct claim_poll *p = arg;
    enum ostore_result r;
    return ostore_claim(D, p->id, p->job, p->epoch, 60000, &r) == CV_OK && r == OSTORE_OK;
}

Test(ostore, claims_fence_stale_writers)
{
    char a[UUID_STR_LEN], b[UUID_STR_LEN], c[UUID_STR_LEN];
    uuid_v4(a);
    uuid_v4(b);
    uuid_v4(c);
    new_order("F1");
    cr_assert_eq(claim("F1", a, 1, 60000), OSTORE_OK);
    cr_assert_eq(claim("F1", b, 1, 60000), OSTORE_BUSY, "another job while A's claim lives");
    cr_assert_eq(job_move("F1", OSTATE_POSTED, b, 1).result, OSTORE_FENCED);
    cr_assert_eq(op_move("F1", OSTATE_POSTED), OSTORE_BUSY, "an operator waits for the claim");
    cr_assert_eq(claim("F1", a, 2, 60000), OSTORE_OK, "a newer delivery of A takes over");
    cr_assert_eq(job_move("F1", OSTATE_POSTED, a, 1).result, OSTORE_FENCED, "epoch 1 is stale");
    assert_state("F1", "PENDING_POST");
    cr_assert_eq(claim("F1", a, 1, 60000), OSTORE_FENCED);
    enum ostore_result r;
    cr_assert_eq(ostore_release(D, "F1", a, 1, &r), CV_OK);
    cr_assert_eq(r, OSTORE_FENCED);
    struct ostore_moved m = job_move("F1", OSTATE_POSTED, a, 2);
    cr_assert_eq(m.result, OSTORE_OK);
    cr_assert_eq(m.state, OSTATE_POSTED);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE order_id = 'F1'"), 2,
                 "the fetch and the one move: fenced writes leave nothing");
    cr_assert_eq(ostore_release(D, "F1", a, 2, &r), CV_OK);
    cr_assert_eq(r, OSTORE_OK);
    cr_assert_eq(ostore_release(D, "F1", a, 2, &r), CV_OK);
    cr_assert_eq(r, OSTORE_SAME);

    /* an expired claim can be taken, and its late holder is fenced */
    cr_assert_eq(claim("F1", a, 3, 1), OSTORE_OK);
    struct claim_poll p = { "F1", b, 7 };
    cr_assert(hn_wait_until(claim_taken, &p, 5000, 5), "B never took the expired claim");
    cr_assert_eq(job_move("F1", OSTATE_AWAITING_TRACKING, a, 3).result, OSTORE_FENCED);
    cr_assert_eq(job_move("F1", OSTATE_AWAITING_TRACKING, b, 7).result, OSTORE_OK);
    cr_assert_eq(claim("missing-order", c, 1, 1000), OSTORE_MISSING);
    cr_assert_eq(op_move("missing-order", OSTATE_POSTED), OSTORE_MISSING);
}

/* ---- marketplace fetch --------------------------------------------------------------------- */

Test(ostore, refetch_never_moves_back)
{
    struct ostore_order_in page1[] = {
        { .order_id = "M3", .mirakl_state = "SHIPPING", .weight_kg = "7",
          .mirakl_updated_at = "2025-03-01T10:00:00Z" },
        { .order_id = "M1", .mirakl_state = "SHIPPING", .weight_kg = "0.5", .country = "ES",
          .customer_json = "{\"name\":\"Ana \\\"A\\\"\",\"city\":\"Le\u00f3n\"}",
          .lines_json = "[]", .mirakl_updated_at = "2025-03-01T10:00:00Z" },
        { .order_id = "M2", .mirakl_state = "SHIPPING", .weight_kg = "3",
          .mirakl_updated_at = "2025-03-01T10:00:00Z" },
    };
    struct ostore_upserted out[3];
    cr_assert_eq(ostore_upsert_batch(D, page1, 3, NULL, NULL, out), CV_OK);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(out[i].outcome, OSTORE_UPSERT_NEW);
        cr_assert_eq(out[i].state, OSTATE_PENDING_POST);
    }
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM orders WHERE order_id = 'M1' AND "
                             "customer->>'city' = 'Le\u00f3n' AND jsonb_typeof(lines) = 'array' "
                             "AND weight_kg = 0.5"), 1);

    /* M1 goes all the way to TRACKED */
    cr_assert_eq(op_move("M1", OSTATE_POSTED), OSTORE_OK);
    struct ostore_change c = { .order_id = "M1", .to = OSTATE_AWAITING_TRACKING,
                               .scope = "carrier", .action = "create_shipment",
                               .carrier_code = "ontime", .mirakl_tracking_updated = -1 };
    struct ostore_moved m;
    cr_assert_eq(ostore_transition(D, &c, &m), CV_OK);
    int st;
    cr_assert_eq(track("M1", OTRACK_ACCEPTED, "2025-03-02T00:00:00Z", NULL, NULL, 0, &st),
                 OSTORE_OK);
    cr_assert_eq(st, OSTATE_TRACKED);

    /* an overlapping, older page: nothing moves, not even the marketplace fields */
    struct ostore_order_in page2[] = {
        { .order_id = "M1", .mirakl_state = "WAITING_ACCEPTANCE", .weight_kg = "9",
          .mirakl_updated_at = "2025-02-01T00:00:00Z" },
        { .order_id = "M2", .mirakl_state = "SHIPPING", .weight_kg = "3",
          .mirakl_updated_at = "2025-03-01T10:00:00Z" },
        { .order_id = "M4", .mirakl_state = "SHIPPING",
          .mirakl_updated_at = "2025-03-01T10:00:00Z" },
        { .order_id = "M1", .mirakl_state = "CLOSED" },
    };
    struct ostore_upserted out2[4];
    cr_assert_eq(ostore_upsert_batch(D, page2, 4, NULL, NULL, out2), CV_OK);
    cr_assert_eq(out2[0].outcome, OSTORE_UPSERT_UNCHANGED);
    cr_assert_eq(out2[0].state, OSTATE_TRACKED);
    cr_assert_str_eq(out2[0].carrier_code, "ontime");
    cr_assert_eq(out2[1].outcome, OSTORE_UPSERT_UNCHANGED);
    cr_assert_eq(out2[2].outcome, OSTORE_UPSERT_NEW);
    cr_assert_eq(out2[3].outcome, OSTORE_UPSERT_UNCHANGED, "no date never overwrites");
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM orders WHERE order_id = 'M1' AND "
                             "mirakl_state = 'SHIPPING' AND weight_kg = 0.5"), 1);

    /* a newer page changes the marketplace fields and still not the state */
    struct ostore_order_in page3[] = {
        { .order_id = "M1", .mirakl_state = "SHIPPED", .weight_kg = "0.5", .country = "ES",
          .customer_json = "{\"name\":\"Ana \\\"A\\\"\",\"city\":\"Le\u00f3n\"}",
          .lines_json = "[]", .mirakl_updated_at = "2025-03-05T00:00:00Z" },
    };
    cr_assert_eq(ostore_upsert_batch(D, page3, 1, NULL, NULL, out2), CV_OK);
    cr_assert_eq(out2[0].outcome, OSTORE_UPSERT_CHANGED);
    cr_assert_eq(out2[0].state, OSTATE_TRACKED);
    assert_state("M1", "TRACKED");
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM orders WHERE order_id = 'M1' AND "
                             "mirakl_state = 'SHIPPED'"), 1);
    cr_assert_eq(ostore_upsert_batch(D, page3, 1, NULL, NULL, out2), CV_OK);
    cr_assert_eq(out2[0].outcome, OSTORE_UPSERT_UNCHANGED, "the same page twice");
    /* one fetch_order row per new or changed order: M1 M2 M3 new, M4 new, M1 changed */
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE action = 'fetch_order'"), 5);
}

Test(ostore, bad_page_changes_nothing)
{
    struct ostore_order_in page[] = {
        { .order_id = "B1", .mirakl_updated_at = "2025-03-01T10:00:00Z" },
        { .order_id = "B2", .customer_json = "{not json",
          .mirakl_updated_at = "2025-03-01T10:00:00Z" },
    };
    struct ostore_upserted out[2];
    cr_assert_eq(ostore_upsert_batch(D, page, 2, NULL, NULL, out), CV_ERR_INVALID);
    /* a customer text that tries to add keys stays a (bad) string: no injection */
    struct ostore_order_in inj = { .order_id = "B3",
                                   .customer_json = "{}\",\"order_id\":\"EVIL",
                                   .mirakl_updated_at = "2025-03-01T10:00:00Z" };
    cr_assert_eq(ostore_upsert_batch(D, &inj, 1, NULL, NULL, out), CV_ERR_INVALID);
    struct ostore_order_in noid = { .order_id = "" };
    cr_assert_eq(ostore_upsert_batch(D, &noid, 1, NULL, NULL, out), CV_ERR_INVALID);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM orders"), 0);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations"), 0);
}

/* ---- tracking ------------------------------------------------------------------------------- */

Test(ostore, early_tracking_is_kept_and_applied_in_event_order)
{
    int st;
    /* before the order exists, then before it is AWAITING_TRACKING; the later event
     * arrives first */
    cr_assert_eq(track("T1", OTRACK_IN_TRANSIT, "2025-04-01T12:00:00Z", "w-2", NULL, 0, &st),
                 OSTORE_PENDING);
    cr_assert_eq(st, -1);
    new_order("T1");
    cr_assert_eq(track("T1", OTRACK_ACCEPTED, "2025-04-01T09:00:00Z", "w-1", NULL, 0, &st),
                 OSTORE_PENDING);
    cr_assert_eq(track("T1", OTRACK_ACCEPTED, "2025-04-01T09:00:00Z", "w-1", NULL, 0, &st),
                 OSTORE_SAME, "a duplicate is not kept twice");
    cr_assert_eq(op_move("T1", OSTATE_POSTED), OSTORE_OK);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM tracking_pending WHERE order_id = 'T1'"), 2,
                 "still kept while POSTED");
    enum ostore_result r;
    struct ostore_pending *ev;
    size_t n;
    cr_assert_eq(ostore_pending_take(D, "T1", NULL, 0, NULL, &r, &ev, &n), CV_OK);
    cr_assert_eq(r, OSTORE_PENDING);
    cr_assert_eq(n, 0);

    struct ostore_change c = { .order_id = "T1", .to = OSTATE_AWAITING_TRACKING,
                               .scope = "carrier", .action = "create_shipment",
                               .carrier_code = "tipsa", .mirakl_tracking_updated = -1 };
    struct ostore_moved m;
    cr_assert_eq(ostore_transition(D, &c, &m), CV_OK);
    cr_assert_eq(m.result, OSTORE_OK);
    cr_assert_eq(m.pending_applied, 2);
    cr_assert_eq(m.state, OSTATE_TRACKED);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM tracking_pending"), 0);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM orders WHERE order_id = 'T1' AND "
                             "carrier_status = 'IN_TRANSIT' AND tracking_number = 'TN-1' AND "
                             "carrier_event_at = '2025-04-01T12:00:00Z'"), 1);
    /* applied in event order: the ACCEPTED event first (it moved the order), then
     * IN_TRANSIT, both OK (in arrival order the older one would have been STALE) */
    char *seq = hn_psql_scalar("SELECT string_agg(meta->>'carrier_status' || ':' || status || "
                               "':' || coalesce(to_state, '-'), ' ' ORDER BY id) FROM operations "
                               "WHERE order_id = 'T1' AND meta->>'source' = 'pending'");
    cr_assert_str_eq(seq, "ACCEPTED:OK:TRACKED IN_TRANSIT:OK:-");
    free(seq);
    cr_assert_eq(ostore_pending_take(D, "T1", NULL, 0, NULL, &r, &ev, &n), CV_OK);
    cr_assert_eq(r, OSTORE_OK);
    cr_assert_eq(n, 0, "nothing left");
}

Test(ostore, pending_take_applies_kept_events)
{
    new_order("P1");
    int st;
    cr_assert_eq(track("P1", OTRACK_DELIVERED, "2025-04-02T00:00:00Z", "p-2", NULL, 0, &st),
                 OSTORE_PENDING);
    cr_assert_eq(track("P1", OTRACK_ACCEPTED, "2025-04-01T00:00:00Z", "p-1", NULL, 0, &st),
                 OSTORE_PENDING);
    /* put it in AWAITING_TRACKING behind the functions' back: only pending_take applies */
    hn_psql_exec("UPDATE orders SET internal_state = 'AWAITING_TRACKING' WHERE order_id = 'P1'");
    char job[UUID_STR_LEN];
    uuid_v4(job);
    cr_assert_eq(claim("P1", job, 4, 60000), OSTORE_OK);
    enum ostore_result r;
    struct ostore_pending *ev;
    size_t n;
    cr_assert_eq(ostore_pending_take(D, "P1", NULL, 0, NULL, &r, &ev, &n), CV_OK);
    cr_assert_eq(r, OSTORE_BUSY, "an operator waits for the claim");
    cr_assert_eq(ostore_pending_take(D, "P1", job, 3, NULL, &r, &ev, &n), CV_OK);
    cr_assert_eq(r, OSTORE_FENCED);
    cr_assert_eq(ostore_pending_take(D, "P1", job, 4, "tr", &r, &ev, &n), CV_OK);
    cr_assert_eq(r, OSTORE_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(ev[0].status, OTRACK_ACCEPTED);
    cr_assert_str_eq(ev[0].webhook_id, "p-1");
    cr_assert_str_eq(ev[0].event_at, "2025-04-01T00:00:00.000000Z");
    cr_assert_eq(ev[0].outcome, OSTORE_OK);
    cr_assert_eq(ev[1].status, OTRACK_DELIVERED);
    cr_assert_eq(ev[1].outcome, OSTORE_OK);
    free(ev);
    assert_state("P1", "TRACKED");
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM orders WHERE order_id = 'P1' AND "
                             "carrier_status = 'DELIVERED'"), 1);
    cr_assert_eq(ostore_pending_take(D, "nope", NULL, 0, NULL, &r, &ev, &n), CV_OK);
    cr_assert_eq(r, OSTORE_MISSING);
}

/* An order in AWAITING_TRACKING claimed by job (epoch 1). */
static void awaiting(const char *id, const char *job)
{
    new_order(id);
    cr_assert_eq(claim(id, job, 1, 60000), OSTORE_OK);
    cr_assert_eq(job_move(id, OSTATE_POSTED, job, 1).result, OSTORE_OK);
    cr_assert_eq(job_move(id, OSTATE_AWAITING_TRACKING, job, 1).result, OSTORE_OK);
}

Test(ostore, delivered_then_in_transit_never_moves_back)
{
    char job[UUID_STR_LEN];
    uuid_v4(job);
    awaiting("O1", job);
    int st;
    cr_assert_eq(track("O1", OTRACK_DELIVERED, "2025-05-03T10:00:00Z", "d-1", job, 1, &st),
                 OSTORE_OK);
    cr_assert_eq(st, OSTATE_TRACKED);
    cr_assert_eq(track("O1", OTRACK_IN_TRANSIT, "2025-05-02T10:00:00Z", "d-2", job, 1, &st),
                 OSTORE_STALE);
    cr_assert_eq(st, OSTATE_TRACKED);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM orders WHERE order_id = 'O1' AND "
                             "carrier_status = 'DELIVERED' AND "
                             "carrier_event_at = '2025-05-03T10:00:00Z'"), 1);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE order_id = 'O1' AND "
                             "status = 'STALE' AND meta->>'carrier_status' = 'IN_TRANSIT'"), 1,
                 "the stale event is kept as history");
    /* the same time again is the same event: stale too */
    cr_assert_eq(track("O1", OTRACK_EXCEPTION, "2025-05-03T10:00:00Z", NULL, job, 1, &st),
                 OSTORE_STALE);
}

Test(ostore, terminal_exception_fails_tracking)
{
    char job[UUID_STR_LEN];
    uuid_v4(job);
    awaiting("X1", job);
    struct ostore_event e = { .order_id = "X1", .carrier = "seur", .status = OTRACK_EXCEPTION,
                              .terminal = 0, .event_at = "2025-05-01T00:00:00Z", .has_seq = 1,
                              .seq = 1, .job_id = job, .epoch = 1 };
    enum ostore_result r;
    int st;
    cr_assert_eq(ostore_track(D, &e, &r, &st), CV_OK);
    cr_assert_eq(r, OSTORE_OK);
    cr_assert_eq(st, OSTATE_AWAITING_TRACKING, "a non-final exception moves nothing");
    e.terminal = 1;
    e.seq = 2;   /* same time, later sequence number: newer */
    cr_assert_eq(ostore_track(D, &e, &r, &st), CV_OK);
    cr_assert_eq(r, OSTORE_OK);
    cr_assert_eq(st, OSTATE_FAILED_TRACKING);
    cr_assert_eq(hn_psql_int("SELECT attempts FROM orders WHERE order_id = 'X1'"), 1);
}

Test(ostore, duplicate_webhook_applies_once)
{
    char job[UUID_STR_LEN], other[UUID_STR_LEN];
    uuid_v4(job);
    uuid_v4(other);
    awaiting("W1", job);
    int st;
    /* a fenced call must not mark the webhook as seen */
    cr_assert_eq(track("W1", OTRACK_ACCEPTED, "2025-05-01T00:00:00Z", "dup", other, 1, &st),
                 OSTORE_FENCED);
    cr_assert_eq(track("W1", OTRACK_ACCEPTED, "2025-05-01T00:00:00Z", "dup", job, 1, &st),
                 OSTORE_OK);
    cr_assert_eq(track("W1", OTRACK_ACCEPTED, "2025-05-01T00:00:00Z", "dup", job, 1, &st),
                 OSTORE_SAME);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE order_id = 'W1' AND "
                             "action = 'webhook_received' AND status = 'OK'"), 1);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE order_id = 'W1' AND "
                             "status = 'DUPLICATE'"), 1);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM webhook_seen"), 1);
}

Test(ostore, tracking_targets_agree_with_c)
{
    for (int t = 0; t < OTRACK_N; t++)
        for (int term = 0; term < 2; term++) {
            char sql[160];
            snprintf(sql, sizeof(sql), "SELECT coalesce(cv_otrack_target('%s', %s), '-')",
                     otrack_str((enum otrack)t), term ? "true" : "false");
            char *got = hn_psql_scalar(sql);
            int want = otrack_target((enum otrack)t, term);
            cr_assert_str_eq(got, want < 0 ? "-" : ostate_str((enum ostate)want), "%s",
                             otrack_str((enum otrack)t));
            free(got);
        }
}

/* ---- operations, read side, comm_log -------------------------------------------------- */

Test(ostore, operations_is_append_only)
{
    new_order("A1");
    long long before = hn_psql_int("SELECT count(*) FROM operations");
    cr_assert_eq(before, 1);
    enum cv_rc rc;
    struct db_res *r = db_exec(D, "UPDATE operations SET status = 'X'", 0, NULL, &rc);
    cr_assert_null(r);
    cr_assert_neq(rc, CV_OK);
    r = db_exec(D, "DELETE FROM operations", 0, NULL, &rc);
    cr_assert_null(r);
    cr_assert_neq(rc, CV_OK);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE status = 'OK'"), before);
}

Test(ostore, get_returns_the_order_and_its_history)
{
    new_order("G1");
    cr_assert_eq(op_move("G1", OSTATE_POSTED), OSTORE_OK);
    cr_assert_eq(op_move("G1", OSTATE_COMPLETE), OSTORE_EDGE);
    struct ostore_order *o;
    struct ostore_op *ops;
    size_t n;
    cr_assert_eq(ostore_get(D, "G1", 100, &o, &ops, &n), CV_OK);
    cr_assert_eq(o->state, OSTATE_POSTED);
    cr_assert_str_eq(o->order_id, "G1");
    cr_assert_str_eq(o->country, "ES");
    cr_assert_str_eq(o->mirakl_tracking_updated, "false");
    cr_assert_str_eq(o->mirakl_updated_at, "2025-01-01T00:00:00.000000Z");
    cr_assert_null(o->carrier_code);
    cr_assert_not_null(strstr(o->customer, "Madrid"));
    cr_assert_eq(n, 3);
    cr_assert_str_eq(ops[0].action, "fetch_order");
    cr_assert_str_eq(ops[1].to_state, "POSTED");
    cr_assert_str_eq(ops[2].status, "REFUSED");
    cr_assert_lt(ops[0].id, ops[1].id);
    ostore_orders_free(o, 1);
    ostore_ops_free(ops, n);
    cr_assert_eq(ostore_get(D, "G1", 1, &o, &ops, &n), CV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(ops[0].status, "REFUSED", "the newest rows when capped");
    ostore_orders_free(o, 1);
    ostore_ops_free(ops, n);
    cr_assert_eq(ostore_get(D, "none", 10, &o, &ops, &n), CV_ERR_NOT_FOUND);
}

Test(ostore, list_pages_by_cursor)
{
    struct ostore_order_in in[25];
    char ids[25][16];
    for (int i = 0; i < 25; i++) {
        snprintf(ids[i], sizeof(ids[i]), "L%02d", i);
        in[i] = (struct ostore_order_in){ .order_id = ids[i],
                                          .mirakl_updated_at = "2025-01-01T00:00:00Z" };
    }
    struct ostore_upserted out[25];
    cr_assert_eq(ostore_upsert_batch(D, in, 25, NULL, NULL, out), CV_OK);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(op_move(ids[i * 5], OSTATE_POSTED), OSTORE_OK);

    int seen[25] = { 0 }, pages = 0, total = 0;
    char *cursor = NULL;
    do {
        struct ostore_order *o;
        size_t n;
        char *next;
        cr_assert_eq(ostore_list(D, NULL, cursor, 10, &o, &n, &next), CV_OK);
        for (size_t i = 0; i < n; i++) {
            int k = atoi(o[i].order_id + 1);
            cr_assert(k >= 0 && k < 25);
            seen[k]++;
        }
        total += (int)n;
        pages++;
        ostore_orders_free(o, n);
        free(cursor);
        cursor = next;
    } while (cursor && pages < 10);
    cr_assert_eq(total, 25);
    cr_assert_eq(pages, 3);
    for (int i = 0; i < 25; i++)
        cr_assert_eq(seen[i], 1, "%s seen %d times", ids[i], seen[i]);

    struct ostore_order *o;
    size_t n;
    char *next;
    cr_assert_eq(ostore_list(D, "POSTED", NULL, 3, &o, &n, &next), CV_OK);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(o[i].state, OSTATE_POSTED);
    ostore_orders_free(o, n);
    cr_assert_not_null(next);
    char *second = next;
    cr_assert_eq(ostore_list(D, "POSTED", second, 3, &o, &n, &next), CV_OK);
    cr_assert_eq(n, 2);
    cr_assert_null(next);
    ostore_orders_free(o, n);
    free(second);
    cr_assert_eq(ostore_list(D, "NOPE", NULL, 3, &o, &n, &next), CV_ERR_INVALID);
    cr_assert_eq(ostore_list(D, NULL, "x:y", 3, &o, &n, &next), CV_ERR_INVALID);
    cr_assert_eq(ostore_list(D, NULL, "123:", 3, &o, &n, &next), CV_ERR_INVALID);
}

Test(ostore, comm_log_batch_is_one_insert)
{
    char job[UUID_STR_LEN];
    uuid_v4(job);
    struct ostore_call calls[] = {
        { .upstream = "mirakl", .method = "GET", .url = "http://m/api/orders?max=100",
          .status = 200, .duration_ms = 12.5, .attempt = 1, .job_id = job, .trace_id = "t1" },
        { .at = "2025-01-01T00:00:00Z", .upstream = "tipsa", .method = "POST",
          .url = "http://t/\"quoted\"\\path", .status = 0, .class_ = "not_sent",
          .duration_ms = 3, .attempt = 2, .order_id = "C1",
          .error = "connect: refused \u00e9\n" },
    };
    cr_assert_eq(ostore_comm_log_batch(D, calls, 2), CV_OK);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM comm_log"), 2);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM comm_log WHERE upstream = 'tipsa' AND "
                             "status IS NULL AND class = 'not_sent' AND attempt = 2 AND "
                             "url = 'http://t/\"quoted\"\\path' AND order_id = 'C1' AND "
                             "at = '2025-01-01T00:00:00Z' AND error LIKE 'connect: refused %'"),
                 1);
    cr_assert_eq(hn_psql_int(q("SELECT count(*) FROM comm_log WHERE upstream = 'mirakl' AND "
                               "status = 200 AND duration_ms = 12.5 AND job_id = '%s'", job)),
                 1);
    cr_assert_eq(ostore_comm_log_batch(D, calls, 0), CV_ERR_INVALID);
}

Test(ostore, find_by_tracking_or_expedition)
{
    new_order("N1");
    new_order("N2");
    struct ostore_change c = { .order_id = "N1", .to = OSTATE_POSTED, .scope = "carrier",
                               .action = "create_shipment", .tracking_number = "TRK-1",
                               .expedition_id = "EXP-1", .mirakl_tracking_updated = -1 };
    struct ostore_moved m;
    cr_assert_eq(ostore_transition(D, &c, &m), CV_OK);
    c.order_id = "N2";
    c.tracking_number = "TRK-2";
    c.expedition_id = "TRK-1";   /* another carrier's numbering collides */
    cr_assert_eq(ostore_transition(D, &c, &m), CV_OK);
    char *id;
    cr_assert_eq(ostore_find(D, "EXP-1", &id), CV_OK);
    cr_assert_str_eq(id, "N1");
    free(id);
    cr_assert_eq(ostore_find(D, "TRK-2", &id), CV_OK);
    cr_assert_str_eq(id, "N2");
    free(id);
    cr_assert_eq(ostore_find(D, "TRK-1", &id), CV_ERR_CONFLICT);
    cr_assert_null(id);
    cr_assert_eq(ostore_find(D, "none", &id), CV_ERR_NOT_FOUND);
}

Test(ostore, outage_is_unavailable_then_recovers)
{
    new_order("U1");
    char job[UUID_STR_LEN];
    uuid_v4(job);
    struct db *d = db_connect_timeout(hn_env("CONVEYOR_PG_DSN"), 2000, 2000);
    cr_assert_not_null(d);
    hn_pg_outage(1);
    enum ostore_result r = OSTORE_N;
    cr_assert_eq(ostore_claim(d, "U1", job, 1, 60000, &r), CV_ERR_UNAVAILABLE,
                 "a broken link is our infrastructure, not the job's fault");
    cr_assert_eq(r, OSTORE_N, "no result without an answer");
    cr_assert_eq(ostore_claim(d, "U1", job, 1, 60000, &r), CV_ERR_UNAVAILABLE,
                 "and while it cannot reconnect");
    hn_pg_outage(0);
    cr_assert_eq(ostore_claim(d, "U1", job, 1, 60000, &r), CV_OK, "reconnects by itself");
    cr_assert_eq(r, OSTORE_OK);
    db_free(d);
}

/* ---- races ---------------------------------------------------------------------------- */

#define RACE_ORDERS 40

/* One of two threads that move the same orders at the same moment (a barrier per
 * order), each on its own connection. With a claim: a job claims the order, then
 * moves it to POSTED whatever the claim said (the loser must be fenced). Without:
 * an operator moves it to FAILED_POST (the row lock serialises the two; the
 * second sees the first's move and answers 'same'). */
struct racer {
    struct db *db;
    pthread_barrier_t *bar;
    int with_claim;
    char job[UUID_STR_LEN];
    enum ostore_result claimed[RACE_ORDERS];
    enum ostore_result moved[RACE_ORDERS];
    enum cv_rc rc;
};

static void race_id(char id[16], int with_claim, int i)
{
    snprintf(id, 16, "%s%02d", with_claim ? "RC" : "OR", i);
}

static void *race(void *arg)
{
    struct racer *x = arg;
    x->rc = CV_OK;
    for (int i = 0; i < RACE_ORDERS && x->rc == CV_OK; i++) {
        char id[16];
        race_id(id, x->with_claim, i);
        pthread_barrier_wait(x->bar);
        if (x->with_claim) {
            x->rc = ostore_claim(x->db, id, x->job, 1, 60000, &x->claimed[i]);
            if (x->rc != CV_OK)
                break;
        }
        struct ostore_change c = { .order_id = id, .job_id = x->with_claim ? x->job : NULL,
                                   .to = x->with_claim ? OSTATE_POSTED : OSTATE_FAILED_POST,
                                   .epoch = 1, .scope = "race", .action = "race",
                                   .mirakl_tracking_updated = -1 };
        struct ostore_moved m;
        x->rc = ostore_transition(x->db, &c, &m);
        x->moved[i] = m.result;
    }
    return NULL;
}

/* Create the orders, run two racers to the end, check their links worked. */
static void run_race(int with_claim, struct racer r[2])
{
    struct ostore_order_in in[RACE_ORDERS];
    char ids[RACE_ORDERS][16];
    for (int i = 0; i < RACE_ORDERS; i++) {
        race_id(ids[i], with_claim, i);
        in[i] = (struct ostore_order_in){ .order_id = ids[i] };
    }
    struct ostore_upserted out[RACE_ORDERS];
    cr_assert_eq(ostore_upsert_batch(D, in, RACE_ORDERS, NULL, NULL, out), CV_OK);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        memset(&r[k], 0, sizeof(r[k]));
        r[k].db = db_connect(hn_env("CONVEYOR_PG_DSN"));
        cr_assert_not_null(r[k].db);
        r[k].bar = &bar;
        r[k].with_claim = with_claim;
        uuid_v4(r[k].job);
        pthread_create(&th[k], NULL, race, &r[k]);
    }
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&bar);
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(r[k].rc, CV_OK);
        db_free(r[k].db);
    }
}

static int count(const struct racer r[2], int i, enum ostore_result want, int claimed)
{
    int n = 0;
    for (int k = 0; k < 2; k++)
        n += (claimed ? r[k].claimed[i] : r[k].moved[i]) == want;
    return n;
}

Test(ostore, racing_jobs_one_effect)
{
    struct racer r[2];
    run_race(1, r);
    for (int i = 0; i < RACE_ORDERS; i++) {
        cr_assert_eq(count(r, i, OSTORE_OK, 1), 1, "order %d: one claim", i);
        cr_assert_eq(count(r, i, OSTORE_OK, 0), 1, "order %d: one move", i);
        cr_assert_eq(count(r, i, OSTORE_FENCED, 0), 1, "order %d: the loser is fenced", i);
    }
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE action = 'race'"),
                 RACE_ORDERS);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM orders WHERE internal_state = 'POSTED'"),
                 RACE_ORDERS);
}

Test(ostore, racing_operators_one_effect)
{
    struct racer r[2];
    run_race(0, r);
    for (int i = 0; i < RACE_ORDERS; i++) {
        cr_assert_eq(count(r, i, OSTORE_OK, 0), 1, "order %d: one move", i);
        cr_assert_eq(count(r, i, OSTORE_SAME, 0), 1, "order %d: one no-op", i);
    }
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM orders WHERE attempts = 1"), RACE_ORDERS,
                 "each order entered FAILED_POST once");
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE action = 'race'"),
                 RACE_ORDERS);
}
