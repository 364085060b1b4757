/* test_carriers.c - the carrier clients (worker/car_ontime.c, car_tipsa.c,
 * car_cex.c), the TIPSA change-feed poll (worker/h_tracking_poll.c) and the
 * Mercado Livre notification job (worker/h_ml_notification.c), in this
 * process, against a real conveyor-sim over HTTP and the harness's real
 * Redis and PostgreSQL. The worker's own wiring is used: a struct wrk_ctx
 * with wrk_out's pipelines (credentials vtables, token cache, comm log), as
 * conveyor-worker builds it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "cfg.h"
#include "clock.h"
#include "db.h"
#include "harness.h"
#include "httpc.h"
#include "jobopt.h"
#include "meli.h"
#include "ostore.h"
#include "rds.h"
#include "wrk.h"

static struct hn_stack st;
static struct cfg cfg;
static struct wrk_ctx ctx;

/* ---- setup ------------------------------------------------------------------------ */

static void set(const char *key, const char *value)
{
    cr_assert_eq(cfg_set(&cfg, key, value), 0, "cfg_set %s", key);
}

static void set_url(const char *ups, const char *prefix)
{
    char key[96], url[128];
    snprintf(key, sizeof(key), "upstreams.%s.url", ups);
    snprintf(url, sizeof(url), "%s/%s", st.sim_url, prefix);
    set(key, url);
}

/* A sim (no API, no worker) whose shipments are accepted at once and move on
 * only after a long while, and a worker context wired to it. */
static void start(void)
{
    static const char *const env[] = { "CONVEYOR_SIM_WEBHOOK_DELAY_MS=0",
                                       "CONVEYOR_SIM_TRANSIT_DELAY_MS=3600000",
                                       "CONVEYOR_SIM_DELIVER_DELAY_MS=3600000", NULL };
    struct hn_stack_opts o = { .workers = 0, .no_api = 1, .sim_env = env };
    hn_flush_redis();
    hn_psql_exec("TRUNCATE orders, operations, tracking_pending, comm_log, ml_resources");
    hn_start_stack(&st, &o);
    cr_assert_eq(cfg_load(&cfg, NULL), 0);
    set_url("ontime", "ontime");
    set_url("tipsa", "tipsa");
    set_url("correos-express", "cex");
    set_url("meli", "meli");
    set("upstreams.ontime.auth_user", "ontime-demo-client");
    set("upstreams.ontime.auth_secret", "ontime-demo-secret");
    set("upstreams.tipsa.account", "000000");
    set("upstreams.tipsa.auth_user", "33333");
    set("upstreams.tipsa.auth_secret", "tipsa-demo-password");
    set("upstreams.correos-express.auth_user", "cex-demo-user");
    set("upstreams.correos-express.auth_secret", "cex-demo-password");
    set("upstreams.meli.auth_user", "5503910054141466");
    set("upstreams.meli.auth_secret", "meli-demo-client-secret");
    set("upstreams.meli.password", "TG-demo-refresh-0001");
    /* short enough that "applied, then no answer" ends the call quickly */
    set("upstreams.ontime.timeout_ms", "1500");
    set("upstreams.tipsa.timeout_ms", "1500");
    set("upstreams.correos-express.timeout_ms", "1500");
    memset(&ctx, 0, sizeof(ctx));
    ctx.cfg = &cfg;
    ctx.db = db_connect(hn_env("CONVEYOR_PG_DSN"));
    cr_assert_not_null(ctx.db);
    ctx.rds = rds_connect(hn_env("CONVEYOR_REDIS_URL"), 2000);
    cr_assert_not_null(ctx.rds);
    ctx.http = httpc_new(16);
    ctx.out = wrk_out_new(&ctx);
}

static void stop(void)
{
    wrk_out_free(ctx.out);
    httpc_free(ctx.http);
    rds_free(ctx.rds);
    db_free(ctx.db);
    cfg_cleanup(&cfg);
    hn_stop_stack(&st);
}

TestSuite(carriers, .init = start, .fini = stop, .timeout = 120);

/* ---- the simulator ---------------------------------------------------------------- */

static void admin(const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", st.sim_url, path);
    struct hn_resp *r = hn_http("POST", url, NULL, body, strlen(body), 5000);
    cr_assert_eq(r->status, 200, "%s: %d %s", path, r->status, r->body);
    hn_resp_free(r);
}

/* A number at a dotted path of /admin/<system>/stats; -1 when absent. */
static double stat_of(const char *system, const char *dotted)
{
    char url[256], key[256];
    snprintf(url, sizeof(url), "%s/admin/%s/stats", st.sim_url, system);
    struct hn_resp *r = hn_http("GET", url, NULL, NULL, 0, 5000);
    cr_assert_eq(r->status, 200);
    cJSON *j = hn_json(r);
    const cJSON *it = j;
    snprintf(key, sizeof(key), "%s", dotted);
    for (char *save = NULL, *part = strtok_r(key, ".", &save); part && it;
         part = strtok_r(NULL, ".", &save))
        it = cJSON_GetObjectItemCaseSensitive(it, part);
    double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
    cJSON_Delete(j);
    hn_resp_free(r);
    return v;
}

/* ---- calling a carrier as h_carrier_post.c does ------------------------------------- */

static struct car_order order_of(const char *id, const char *zip, const char *country)
{
    struct car_order o = { id, "Ana Pérez", "Calle Mayor 1", "Valencia", zip, country, 2.5 };
    return o;
}

/* One create request for o[0..n): the call's class into *cls (outcome into
 * *outcome) and, when the answer is one create_parse reads, the verdicts. */
static void create(const struct car *car, const struct car_order *o, size_t n,
                   struct car_shipment *out, enum car_verdict *v, enum ups_outcome *outcome,
                   enum httpc_class *cls, int *retried_auth)
{
    struct ups_call c;
    struct sbuf b;
    memset(&c, 0, sizeof(c));
    memset(out, 0, n * sizeof(*out));
    sbuf_init(&b);
    c.body_check = car->body_check;
    car->create_req(o, n, &c, &b);
    ups_run(wrk_ups(&ctx, car->ups_id), &c, 1);
    *outcome = c.outcome;
    *cls = c.cls;
    if (retried_auth)
        *retried_auth = c.retried_auth;
    for (size_t i = 0; i < n; i++)
        v[i] = CAR_RETRY;
    if (c.outcome == UPS_DONE &&
        (c.cls == HTTPC_OK || c.cls == HTTPC_BODY_ERROR || c.cls == HTTPC_PERMANENT))
        car->create_parse(&c, o, n, out, v);
    ups_call_cleanup(&c);
    sbuf_cleanup(&b);
}

/* A create that must come back CAR_CREATED. */
static void create_ok(const struct car *car, const struct car_order *o, struct car_shipment *out)
{
    enum car_verdict v;
    enum ups_outcome oc;
    enum httpc_class cls;
    create(car, o, 1, out, &v, &oc, &cls, NULL);
    cr_assert_eq(oc, UPS_DONE, "%s create: outcome %d", car->name, oc);
    cr_assert_eq(cls, HTTPC_OK, "%s create: %s", car->name, httpc_class_str(cls));
    cr_assert_eq(v, CAR_CREATED, "%s create: verdict %d (%s)", car->name, v, out->error);
    cr_assert(out->tracking_number[0] && out->expedition_id[0]);
}

/* Look o up: 1 found (out set), 0 not found, -1 no usable answer. */
static int lookup(const struct car *car, const struct car_order *o, struct car_shipment *out)
{
    struct ups_call c;
    struct sbuf b;
    memset(&c, 0, sizeof(c));
    memset(out, 0, sizeof(*out));
    sbuf_init(&b);
    c.body_check = car->body_check;
    car->lookup_req(o, &c, &b);
    ups_run(wrk_ups(&ctx, car->ups_id), &c, 1);
    int found = car->lookup_parse(&c, out);
    ups_call_cleanup(&c);
    sbuf_cleanup(&b);
    return found;
}

/* The carrier applied the create but never answered: the client sees an
 * unknown outcome, and the lookup by our reference finds the shipment. */
static void applied_then_timeout(const struct car *car, const char *system, const char *ref)
{
    char path[96], stat[160];
    struct car_order o = order_of(ref, "46001", "ES");
    struct car_shipment sh, found;
    enum car_verdict v;
    enum ups_outcome oc;
    enum httpc_class cls;
    snprintf(path, sizeof(path), "/admin/%s/faults", system);
    admin(path, "{\"apply_then_timeout_next\":1}");
    cr_assert_eq(lookup(car, &o, &found), 0, "%s: %s is not there before", car->name, ref);
    create(car, &o, 1, &sh, &v, &oc, &cls, NULL);
    cr_assert_eq(oc, UPS_DONE);
    cr_assert_eq(cls, HTTPC_UNKNOWN, "%s: a create without an answer is %s", car->name,
                 httpc_class_str(cls));
    cr_assert_eq(v, CAR_RETRY);
    cr_assert_eq(lookup(car, &o, &found), 1, "%s: the lookup finds %s", car->name, ref);
    cr_assert(found.tracking_number[0] && found.expedition_id[0]);
    snprintf(stat, sizeof(stat), "references.%s.creates", ref);
    cr_assert_eq(stat_of(system, stat), 1, "%s: one shipment for %s", car->name, ref);
}

/* ---- OnTime --------------------------------------------------------------------------- */

Test(carriers, ontime_creates_one_and_a_batch_with_a_refusal)
{
    const struct car *car = car_find("ontime");
    cr_assert_not_null(car);
    cr_assert_eq(car->batch, 1);
    struct car_order one = order_of("MK-OT-1", "28001", "ES");
    struct car_shipment sh[3];
    create_ok(car, &one, &sh[0]);
    cr_assert_eq(strncmp(sh[0].tracking_number, "OT", 2), 0, "%s", sh[0].tracking_number);

    /* a batch of three whose middle one OnTime refuses: the others are created */
    admin("/admin/ontime/faults", "{\"fail_keys\":[\"MK-OT-3\"]}");
    struct car_order batch[3] = { order_of("MK-OT-2", "28001", "ES"),
                                  order_of("MK-OT-3", "28001", "ES"),
                                  order_of("MK-OT-4", "08001", "ES") };
    enum car_verdict v[3];
    enum ups_outcome oc;
    enum httpc_class cls;
    double calls = stat_of("ontime", "calls");
    create(car, batch, 3, sh, v, &oc, &cls, NULL);
    cr_assert_eq(stat_of("ontime", "calls"), calls + 1, "one request for the batch");
    cr_assert_eq(cls, HTTPC_OK);
    cr_assert_eq(v[0], CAR_CREATED);
    cr_assert_eq(v[1], CAR_REFUSED);
    cr_assert_eq(v[2], CAR_CREATED);
    cr_assert(strstr(sh[1].error, "rejected by the carrier"), "message: %s", sh[1].error);
    cr_assert_str_neq(sh[0].tracking_number, sh[2].tracking_number);
    cr_assert_eq(stat_of("ontime", "references.MK-OT-3.creates"), -1, "nothing for MK-OT-3");

    /* a single create refused: CAR_REFUSED with OnTime's message, no retry */
    create(car, &batch[1], 1, sh, v, &oc, &cls, NULL);
    cr_assert_eq(cls, HTTPC_PERMANENT, "422 is %s", httpc_class_str(cls));
    cr_assert_eq(v[0], CAR_REFUSED);
    cr_assert(strstr(sh[0].error, "ontime: reference: rejected"), "message: %s", sh[0].error);

    /* the status words of its webhooks */
    int term = 0;
    cr_assert_eq(car->status_map("IN_TRANSIT", &term), OTRACK_IN_TRANSIT);
    cr_assert_eq(car->status_map("RETURNED", &term), OTRACK_EXCEPTION);
    cr_assert_eq(term, 1);
    cr_assert_eq(car->status_map("NONSENSE", &term), -1);
}

Test(carriers, ontime_lookup_finds_a_create_that_timed_out)
{
    applied_then_timeout(car_find("ontime"), "ontime", "MK-OT-9");
    /* one token for all those calls: the cache in Redis */
    cr_assert_eq(stat_of("ontime", "tokens_issued"), 1);
}

/* ---- TIPSA ------------------------------------------------------------------------------ */

Test(carriers, tipsa_session_create_refusal_and_expiry_refreshed_once)
{
    const struct car *car = car_find("tipsa");
    cr_assert_not_null(car);
    struct car_order o = order_of("MK-TP-1", "46001", "ES");
    struct car_shipment sh;
    create_ok(car, &o, &sh);
    cr_assert_str_eq(sh.expedition_id, sh.tracking_number, "the albarán is both");
    cr_assert_eq(stat_of("tipsa", "logins"), 1);

    /* VALIDATION fault (a SOAP Client fault in a 500): refused with TIPSA's message */
    admin("/admin/tipsa/faults", "{\"fail_keys\":[\"MK-TP-2\"]}");
    struct car_order bad = order_of("MK-TP-2", "46001", "ES");
    enum car_verdict v;
    enum ups_outcome oc;
    enum httpc_class cls;
    int retried = 0;
    create(car, &bad, 1, &sh, &v, &oc, &cls, &retried);
    cr_assert_eq(cls, HTTPC_PERMANENT, "a Client fault is %s", httpc_class_str(cls));
    cr_assert_eq(v, CAR_REFUSED);
    cr_assert(strstr(sh.error, "tipsa: VALIDATION: reference: rejected"), "%s", sh.error);

    /* every session expires: the SESSION_EXPIRED fault logs in once, sends once more */
    admin("/admin/tipsa/faults", "{\"expire_tokens_now\":true}");
    struct car_order o3 = order_of("MK-TP-3", "46001", "ES");
    create(car, &o3, 1, &sh, &v, &oc, &cls, &retried);
    cr_assert_eq(cls, HTTPC_OK, "after expiry: %s", httpc_class_str(cls));
    cr_assert_eq(v, CAR_CREATED);
    cr_assert_eq(retried, 1, "refreshed and sent again");
    cr_assert_eq(stat_of("tipsa", "logins"), 2, "one new login");
    cr_assert_eq(stat_of("tipsa", "references.MK-TP-3.creates"), 1);

    /* TIPSA changes the password: the login is refused, the call fails unsent */
    admin("/admin/tipsa/credentials", "{\"password\":\"a-new-password\"}");
    admin("/admin/tipsa/faults", "{\"expire_tokens_now\":true}");
    hn_flush_redis();
    create(car, &o3, 1, &sh, &v, &oc, &cls, &retried);
    cr_assert_eq(oc, UPS_FAILED, "no session, no call");
    cr_assert_eq(stat_of("tipsa", "references.MK-TP-3.creates"), 1);

    int term = 0;
    cr_assert_eq(car->status_map("3", &term), OTRACK_DELIVERED);
    cr_assert_eq(car->status_map("TRANSITO", &term), OTRACK_IN_TRANSIT);
    cr_assert_eq(term, 0);
    cr_assert_eq(car->status_map("DEVUELTO", &term), OTRACK_EXCEPTION);
    cr_assert_eq(term, 1);
}

Test(carriers, tipsa_lookup_finds_a_create_that_timed_out)
{
    applied_then_timeout(car_find("tipsa"), "tipsa", "MK-TP-9");
}

/* ---- Correos Express ----------------------------------------------------------------------- */

Test(carriers, cex_create_and_an_error_inside_a_200_is_a_refusal)
{
    const struct car *car = car_find("correos-express");
    cr_assert_not_null(car);
    struct car_order o = order_of("MK-CX-1", "1100-148", "PT");
    struct car_shipment sh;
    create_ok(car, &o, &sh);
    cr_assert_eq(strncmp(sh.tracking_number, "3230", 4), 0, "%s", sh.tracking_number);

    admin("/admin/cex/faults", "{\"fail_keys\":[\"99999\"]}");
    struct car_order bad = order_of("MK-CX-2", "99999", "ES");
    enum car_verdict v;
    enum ups_outcome oc;
    enum httpc_class cls;
    create(car, &bad, 1, &sh, &v, &oc, &cls, NULL);
    cr_assert_eq(cls, HTTPC_BODY_ERROR, "codigoRetorno != 0 in a 200 is %s",
                 httpc_class_str(cls));
    cr_assert_eq(v, CAR_REFUSED);
    cr_assert(strstr(sh.error, "correos-express: postal code: not served"), "%s", sh.error);

    /* an injected 503 keeps its class: transient, not a refusal */
    admin("/admin/cex/faults", "{\"fail_next\":1,\"error_status\":503}");
    struct car_order o3 = order_of("MK-CX-3", "46001", "ES");
    create(car, &o3, 1, &sh, &v, &oc, &cls, NULL);
    cr_assert_eq(cls, HTTPC_TRANSIENT, "503 is %s", httpc_class_str(cls));
    cr_assert_eq(v, CAR_RETRY);
}

Test(carriers, cex_lookup_finds_a_create_that_timed_out)
{
    applied_then_timeout(car_find("correos-express"), "cex", "MK-CX-9");
}

/* ---- tracking-poll ------------------------------------------------------------------------- */

/* An order of ours in AWAITING_TRACKING at carrier, shipped as tracking. */
static void order_awaiting(const char *id, const char *carrier, const char *tracking)
{
    struct ostore_order_in in = { .order_id = id, .mirakl_state = "SHIPPING", .weight_kg = "2.5",
                                  .country = "ES" };
    struct ostore_upserted up;
    cr_assert_eq(ostore_upsert_batch(ctx.db, &in, 1, NULL, NULL, &up), CV_OK);
    struct ostore_change c = { .order_id = id, .to = OSTATE_POSTED, .scope = "operator",
                               .action = "test", .carrier_code = carrier,
                               .tracking_number = tracking, .expedition_id = tracking,
                               .mirakl_tracking_updated = -1 };
    struct ostore_moved m;
    cr_assert_eq(ostore_transition(ctx.db, &c, &m), CV_OK);
    cr_assert_eq(m.result, OSTORE_OK);
    c.to = OSTATE_AWAITING_TRACKING;
    cr_assert_eq(ostore_transition(ctx.db, &c, &m), CV_OK);
    cr_assert_eq(m.result, OSTORE_OK);
}

static char *state_of(const char *id)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT internal_state FROM orders WHERE order_id = '%s'", id);
    return hn_psql_scalar(sql);
}

/* Run one job of type with payload through handler fn; its result into r. */
static struct job *run_job(wrk_handler_fn fn, const char *type, const char *key,
                           const char *payload, struct wrk_result *r)
{
    struct job *j = jobopt_derived(&cfg, NULL, type, key, payload, 0);
    j->attempt = 1;
    j->max_attempts = 3;
    j->epoch = 1;
    j->deliveries = 1;
    memset(r, 0, sizeof(*r));
    fn(&ctx, &j, 1, r);
    return j;
}

static void result_free(struct wrk_result *r)
{
    for (size_t i = 0; i < r->nnext; i++)
        job_free(r->next[i]);
    free(r->next);
    r->next = NULL;
    r->nnext = 0;
}

static long long hwm(void)
{
    struct rds_reply *rep = rds_cmdf(ctx.rds, "GET cv:track:hwm:tipsa");
    cr_assert_not_null(rep);
    long long v = rds_reply_type(rep) == RDS_STR ? atoll(rds_reply_str(rep, NULL)) : 0;
    rds_reply_free(rep);
    return v;
}

Test(carriers, tracking_poll_applies_tipsa_changes_and_leaves_busy_orders_for_later)
{
    const struct car *car = car_find("tipsa");
    struct car_shipment a, b;
    struct car_order oa = order_of("MK-TR-1", "46001", "ES"), ob = order_of("MK-TR-2", "46001",
                                                                             "ES");
    create_ok(car, &oa, &a);
    create_ok(car, &ob, &b);
    struct car_order ox = order_of("MK-TR-X", "46001", "ES");   /* no order of ours yet */
    struct car_shipment x;
    create_ok(car, &ox, &x);
    order_awaiting("MK-TR-1", "tipsa", a.tracking_number);
    order_awaiting("MK-TR-2", "tipsa", b.tracking_number);
    /* MK-TR-2 is held by another job during the first poll */
    enum ostore_result res;
    cr_assert_eq(ostore_claim(ctx.db, "MK-TR-2", "7b7e5a4c-1d2e-4f00-9a00-000000000001", 1,
                              60000, &res),
                 CV_OK);
    cr_assert_eq(res, OSTORE_OK);

    struct wrk_result r;
    struct job *j = run_job(h_tracking_poll, "tracking-poll", "t1", "{}", &r);
    cr_assert_eq(r.rc, CV_OK, "poll: %s %s", cv_rc_str(r.rc), r.error);
    char *s1 = state_of("MK-TR-1"), *s2 = state_of("MK-TR-2");
    cr_assert_str_eq(s1, "TRACKED");
    cr_assert_str_eq(s2, "AWAITING_TRACKING", "a busy order is left for the next poll");
    free(s1);
    free(s2);
    cr_assert_eq(r.nnext, 1, "one tracking-push follow-up");
    cr_assert_str_eq(r.next[0]->type, "tracking-push");
    cr_assert(strstr(r.next[0]->payload, "MK-TR-1"));
    long long mark1 = hwm();
    cr_assert_gt(mark1, 0, "the high-water mark is stored");
    result_free(&r);
    job_free(j);

    /* released: the next poll (from the mark, with its overlap) applies it */
    cr_assert_eq(ostore_release(ctx.db, "MK-TR-2", "7b7e5a4c-1d2e-4f00-9a00-000000000001", 1,
                                &res),
                 CV_OK);
    j = run_job(h_tracking_poll, "tracking-poll", "t2", "{\"carrier\":\"tipsa\"}", &r);
    cr_assert_eq(r.rc, CV_OK, "poll 2: %s", r.error);
    s2 = state_of("MK-TR-2");
    cr_assert_str_eq(s2, "TRACKED");
    free(s2);
    cr_assert_eq(r.nnext, 1, "a push for MK-TR-2 only: MK-TR-1's change is a duplicate now");
    cr_assert(strstr(r.next[0]->payload, "MK-TR-2"));
    cr_assert_geq(hwm(), mark1);
    result_free(&r);
    job_free(j);
    /* MK-TR-1's ACCEPTED was applied once; read again, it is a duplicate */
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE order_id = 'MK-TR-1'"
                             " AND action = 'webhook_received' AND status = 'OK'"),
                 1);

    /* the change of an order we do not have yet is kept once, however often it is read */
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM tracking_pending WHERE order_id = 'MK-TR-X'"),
                 1);

    /* a carrier without a change feed is refused */
    j = run_job(h_tracking_poll, "tracking-poll", "t3", "{\"carrier\":\"seur\"}", &r);
    cr_assert_eq(r.rc, CV_ERR_PERMANENT);
    job_free(j);
    /* the calls are in the communication log, no secrets in it */
    wrk_out_flush(&ctx);
    cr_assert_gt(hn_psql_int("SELECT count(*) FROM comm_log WHERE upstream = 'tipsa'"), 0);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM comm_log WHERE url LIKE '%tipsa-demo%'"
                             " OR error LIKE '%tipsa-demo%'"),
                 0);
}

/* ---- Mercado Livre ------------------------------------------------------------------------- */

static char *redis_get(const char *key)
{
    struct rds_reply *rep = rds_cmdf(ctx.rds, "GET %s", key);
    cr_assert_not_null(rep);
    char *v = rds_reply_type(rep) == RDS_STR ? strdup(rds_reply_str(rep, NULL)) : NULL;
    rds_reply_free(rep);
    return v;
}

#define ML_ORDER "{\"resource\":\"/orders/2000001\",\"topic\":\"orders_v2\",\"user_id\":123456789}"

Test(carriers, ml_notification_applies_only_changes_and_rotates_the_refresh_token)
{
    admin("/admin/meli/orders", "{\"id\":\"2000001\",\"status\":\"paid\",\"total_amount\":12.5}");
    struct wrk_result r;
    struct job *j = run_job(h_ml_notification, "ml-notification", "m1", ML_ORDER, &r);
    cr_assert_eq(r.rc, CV_OK, "first: %s", r.error);
    job_free(j);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM ml_resources WHERE resource = '/orders/2000001'"
                             " AND body->>'status' = 'paid'"),
                 1);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE scope = 'meli'"
                             " AND action = 'order_updated' AND order_id = '2000001'"),
                 1);
    /* the demo refresh token was spent and its successor stored */
    char *rt = redis_get(MELI_REFRESH_KEY);
    cr_assert(rt && strncmp(rt, "TG-", 3) == 0 && strcmp(rt, "TG-demo-refresh-0001") != 0,
              "rotated: %s", rt ? "other value" : "(none)");
    free(rt);

    /* the same body again: only fetched_at moves */
    char *fetched = hn_psql_scalar("SELECT fetched_at::text FROM ml_resources");
    char *changed = hn_psql_scalar("SELECT changed_at::text FROM ml_resources");
    j = run_job(h_ml_notification, "ml-notification", "m2", ML_ORDER, &r);
    cr_assert_eq(r.rc, CV_OK);
    job_free(j);
    char *fetched2 = hn_psql_scalar("SELECT fetched_at::text FROM ml_resources");
    char *changed2 = hn_psql_scalar("SELECT changed_at::text FROM ml_resources");
    cr_assert_str_neq(fetched, fetched2);
    cr_assert_str_eq(changed, changed2);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE scope = 'meli'"), 1);
    free(fetched);
    free(fetched2);
    free(changed2);

    /* a change, fetched with a token refused once: the second refresh uses the rotated
     * refresh token (the spent one would be refused) */
    admin("/admin/meli/orders", "{\"id\":\"2000001\",\"status\":\"cancelled\"}");
    admin("/admin/meli/faults", "{\"unauthorized_next\":1}");
    j = run_job(h_ml_notification, "ml-notification", "m3", ML_ORDER, &r);
    cr_assert_eq(r.rc, CV_OK, "after a 401: %s", r.error);
    job_free(j);
    cr_assert_eq(stat_of("meli", "refresh_tokens_issued"), 2);
    changed2 = hn_psql_scalar("SELECT changed_at::text FROM ml_resources");
    cr_assert_str_neq(changed, changed2);
    free(changed);
    free(changed2);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM operations WHERE scope = 'meli'"
                             " AND message = 'status cancelled'"),
                 1);

    /* a resource that is not its topic's path is never fetched */
    double calls = stat_of("meli", "calls");
    j = run_job(h_ml_notification, "ml-notification", "m4",
                "{\"resource\":\"http://127.0.0.1:1/orders/1\",\"topic\":\"orders_v2\","
                "\"user_id\":1}",
                &r);
    cr_assert_eq(r.rc, CV_ERR_PERMANENT);
    job_free(j);
    j = run_job(h_ml_notification, "ml-notification", "m5",
                "{\"resource\":\"/items/../orders/1\",\"topic\":\"items\",\"user_id\":1}", &r);
    cr_assert_eq(r.rc, CV_ERR_PERMANENT);
    job_free(j);
    cr_assert_eq(stat_of("meli", "calls"), calls);
    /* an unknown order: failed, nothing stored */
    j = run_job(h_ml_notification, "ml-notification", "m6",
                "{\"resource\":\"/orders/999\",\"topic\":\"orders_v2\",\"user_id\":1}", &r);
    cr_assert_eq(r.rc, CV_ERR_PERMANENT, "404: %s", cv_rc_str(r.rc));
    job_free(j);
    cr_assert_eq(hn_psql_int("SELECT count(*) FROM ml_resources"), 1);
}
