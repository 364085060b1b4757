/* h_tracking_push.c - tell the marketplace: Mirakl OR23 (tracking) then OR24
 * (ship), then TRACKED -> MIRAKL_OK -> COMPLETE (seed 004, step 5).
 *
 * The order stays TRACKED until both calls are done (seed 004's table has one
 * failed edge for a push, TRACKED -> FAILED_PUSH, and none out of MIRAKL_OK),
 * then moves TRACKED -> MIRAKL_OK -> COMPLETE in one statement. OR23's success
 * is remembered on the order itself (mirakl_tracking_updated, under the job's
 * claim: 0007_tracking_pushed.sql), so a push that stops between the calls
 * (Mirakl's call budget spent, a 5xx, a crash) goes on with OR24 alone: a
 * tight budget is never spent on OR23 again and again. Whether an OR24 went
 * out before such a stop cannot be known from here, so that order is first
 * looked up (one OR11 by order ids for the batch): shipped already -> no
 * second OR24. OR23 is a PUT (repeating it sets the same tracking); an OR24
 * Mirakl refuses as ORDER_INVALID_STATE while we hold its tracking number
 * means shipped already. So a redelivery at any point makes no second effect.
 * Failures: Mirakl refusing the data (4xx) -> FAILED_PUSH, the job fails;
 * 429 or a spent budget -> the job waits (Retry-After); network, 5xx -> retry,
 * on the last attempt FAILED_PUSH and dead. FAILED_PUSH on a fresh life of the
 * job (a replay) takes the retry edge back to TRACKED first, keeping the mark.
 * The calls of the whole batch are in flight together (every OR23, every
 * lookup, every OR24); PostgreSQL sees two statements per batch plus one per
 * OR23 done. Each completion is observed in
 * conveyor_order_fetch_to_complete_seconds (the order's age at its claim, on
 * PostgreSQL's clock, plus the push's own time): one Redis pipeline a batch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "met.h"
#include "mkl.h"
#include "ord.h"
#include "rds.h"

struct push {
    struct job *job;
    struct wrk_result *res;
    char order_id[80];
    char trace[33];
    struct ostore_claimed cl;
    const struct car *car;
    int claimed;
    int active;
    int tracked_done;            /* OR23 done (now, or by an earlier delivery) */
    int resumed;                 /* an earlier delivery did OR23: look up before OR24 */
    int at_mirakl_ok;            /* found MIRAKL_OK (a stop inside the final move) */
    int shipped;                 /* the lookup found it shipped: no OR24 */
    int failed;                  /* ends FAILED_PUSH (or, after OR23, the job fails) */
    enum cv_rc fail_rc;
    char why[JOB_ERROR_MAX];
    struct sbuf path, body;
};

static void fail_push(struct push *p, enum cv_rc rc, const char *why)
{
    p->active = 0;
    p->failed = 1;
    p->fail_rc = rc;
    snprintf(p->why, sizeof(p->why), "%s", why);
}

/* Round 1: claim and read every order in one statement, then decide. */
static void prepare(struct wrk_ctx *ctx, struct push *ps, size_t n)
{
    struct ostore_claim_in *in = xcalloc(n, sizeof(*in));
    struct ostore_claimed *cl = xcalloc(n, sizeof(*cl));
    for (size_t i = 0; i < n; i++) {
        cJSON *pl = json_parse(ps[i].job->payload, ps[i].job->payload_len);
        car_json_str(pl, "order_id", ps[i].order_id, sizeof(ps[i].order_id));
        cJSON_Delete(pl);
        ord_trace_id(ps[i].job, ps[i].trace);
        in[i].order_id = ps[i].order_id;
        in[i].job_id = ps[i].job->id;
        in[i].epoch = ps[i].job->epoch;
    }
    enum cv_rc rc = ostore_claim_many(ctx->db, in, n, ctx->cfg->visibility_timeout_ms, cl);
    for (size_t i = 0; i < n; i++) {
        struct push *p = &ps[i];
        p->cl = cl[i];
        if (rc != CV_OK) {
            wrk_fail(p->res, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(rc));
            continue;
        }
        if (p->cl.result == OSTORE_BUSY) {
            wrk_fail(p->res, CV_ERR_BUSY, "order %s is held by another job", p->order_id);
            p->res->delay_ms = 500;
            continue;
        }
        if (p->cl.result == OSTORE_FENCED) {
            wrk_fail(p->res, CV_ERR_FENCED, "a newer delivery holds order %s", p->order_id);
            continue;
        }
        if (p->cl.result != OSTORE_OK) {
            wrk_fail(p->res, CV_ERR_PERMANENT, "no such order: %s", p->order_id);
            continue;
        }
        p->claimed = 1;
        if (p->cl.state == OSTATE_MIRAKL_OK) {
            p->at_mirakl_ok = 1;   /* both calls went out before: make sure, then COMPLETE */
        } else if (!ord_step_start(ctx, p->job, p->order_id, (enum ostate)p->cl.state,
                                   OSTATE_TRACKED, OSTATE_FAILED_PUSH, "mirakl", "retry_push",
                                   p->cl.last_error, p->res)) {
            continue;
        }
        p->tracked_done = p->cl.tracking_pushed || p->at_mirakl_ok;
        p->resumed = p->tracked_done;
        p->car = car_find(p->cl.carrier_code);
        p->active = 1;
        p->res->rc = CV_OK;
    }
    free(cl);
    free(in);
}

/* Orders shipped at Mirakl, from an OR11 answer: marks the pushes among ps. */
static void mark_shipped(const struct ups_call *c, struct push **ps, size_t n)
{
    cJSON *root = c->resp ? json_parse(c->resp, c->resp_len) : NULL;
    const cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(root, "orders"))
    {
        char id[80], state[40];
        car_json_str(o, "order_id", id, sizeof(id));
        car_json_str(o, "order_state", state, sizeof(state));
        /* SHIPPED and the states Mirakl moves a shipped order on to */
        int done = strcmp(state, "SHIPPED") == 0 || strcmp(state, "TO_COLLECT") == 0 ||
                   strcmp(state, "RECEIVED") == 0 || strcmp(state, "CLOSED") == 0;
        for (size_t i = 0; done && i < n; i++)
            if (strcmp(ps[i]->order_id, id) == 0)
                ps[i]->shipped = 1;
    }
    cJSON_Delete(root);
}

/* Before OR24 for orders found in MIRAKL_OK: one OR11 by their ids. An order
 * that cannot be looked up is not shipped blindly: its job waits or retries. */
static void lookups(struct wrk_ctx *ctx, struct push **ps, size_t n)
{
    const char **ids = xcalloc(n, sizeof(*ids));
    struct sbuf path;
    struct ups_call c;
    sbuf_init(&path);
    for (size_t i = 0; i < n; i++)
        ids[i] = ps[i]->order_id;
    ord_call_init(&c, ps[0]->job, ps[0]->trace, ps[0]->order_id);
    c.order_id = n == 1 ? ps[0]->order_id : NULL;
    mkl_ids_req(&c, &path, ids, n);
    ups_run(wrk_ups(ctx, CFG_UPS_MIRAKL), &c, 1);
    if (c.outcome == UPS_DONE && c.cls == HTTPC_OK) {
        mark_shipped(&c, ps, n);
    } else {
        char why[JOB_ERROR_MAX];
        snprintf(why, sizeof(why), "mirakl OR11 (looking the order up): %s",
                 c.error[0] ? c.error : httpc_class_str(c.cls));
        for (size_t i = 0; i < n; i++) {
            struct push *p = ps[i];
            if (c.outcome == UPS_DEFERRED) {
                p->active = 0;
                wrk_fail(p->res, CV_ERR_BUSY, "mirakl: %s", c.error);
                p->res->delay_ms = c.delay_ms;
            } else if (p->job->attempt >= p->job->max_attempts) {
                /* the last attempt: the order ends FAILED_PUSH with the job, as
                 * any push that runs out does (found by the chaos kit: it stayed
                 * TRACKED under a dead job) */
                fail_push(p, CV_ERR_TRANSIENT, why);
            } else {
                p->active = 0;
                wrk_fail(p->res, c.cls == HTTPC_THROTTLED ? CV_ERR_RATE : CV_ERR_TRANSIENT,
                         "%s", why);
                p->res->delay_ms = c.retry_after_ms;
            }
        }
    }
    ups_call_cleanup(&c);
    sbuf_cleanup(&path);
    free(ids);
}

/* Rounds 2 and 3: OR23 (ship = 0) or OR24 (ship = 1) for every active push. */
static void round_(struct wrk_ctx *ctx, struct push **ps, size_t n, int ship)
{
    struct ups_call *calls = xcalloc(n ? n : 1, sizeof(*calls));
    for (size_t i = 0; i < n; i++) {
        struct push *p = ps[i];
        sbuf_reset(&p->path);
        sbuf_reset(&p->body);
        ord_call_init(&calls[i], p->job, p->trace, p->order_id);
        if (ship)
            mkl_ship_req(&calls[i], &p->path, p->order_id);
        else
            mkl_tracking_req(&calls[i], &p->path, &p->body, p->order_id,
                             p->cl.carrier_code ? p->cl.carrier_code : "",
                             p->car ? p->car->label : "", p->car ? p->car->tracking_url : "",
                             p->cl.tracking_number ? p->cl.tracking_number : "");
    }
    ups_run(wrk_ups(ctx, CFG_UPS_MIRAKL), calls, n);
    for (size_t i = 0; i < n; i++) {
        struct push *p = ps[i];
        struct ups_call *c = &calls[i];
        char code[64], msg[160], why[JOB_ERROR_MAX];
        if (c->outcome == UPS_DONE && c->cls == HTTPC_OK)
            goto next;
        if (c->outcome == UPS_DEFERRED) {
            p->active = 0;
            wrk_fail(p->res, CV_ERR_BUSY, "mirakl: %s", c->error);
            p->res->delay_ms = c->delay_ms;
            goto next;
        }
        mkl_error_code(c->resp, c->resp_len, code, sizeof(code), msg, sizeof(msg));
        if (ship && strcmp(code, "ORDER_INVALID_STATE") == 0 && p->cl.tracking_number) {
            /* shipped already: our earlier OR24 went through before a crash */
            LOG_INFO("order.ship_already_done", "order_id=%s", p->order_id);
            goto next;
        }
        snprintf(why, sizeof(why), "mirakl %s: %s%s%s", ship ? "OR24" : "OR23",
                 code[0] ? code : httpc_class_str(c->cls), msg[0] ? ": " : "", msg);
        if (c->outcome == UPS_DONE && (c->cls == HTTPC_PERMANENT || c->cls == HTTPC_AUTH ||
                                       c->cls == HTTPC_BODY_ERROR)) {
            fail_push(p, CV_ERR_PERMANENT, why);
        } else if (p->job->attempt >= p->job->max_attempts) {
            fail_push(p, CV_ERR_TRANSIENT, why);
        } else {
            p->active = 0;
            wrk_fail(p->res, c->cls == HTTPC_THROTTLED ? CV_ERR_RATE : CV_ERR_TRANSIENT, "%s",
                     why);
            p->res->delay_ms = c->retry_after_ms;
        }
    next:
        ups_call_cleanup(c);
    }
    free(calls);
}

/* Remember OR23 on every order whose OR23 just went through. */
static void mark_tracked(struct wrk_ctx *ctx, struct push **ps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct push *p = ps[i];
        if (!p->active)
            continue;
        enum ostore_result r;
        enum cv_rc rc = ostore_mark_tracking_pushed(ctx->db, p->order_id, p->job->id,
                                                    p->job->epoch, p->trace, &r);
        if (rc != CV_OK) {
            p->active = 0;
            wrk_fail(p->res, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(rc));
        } else if (r == OSTORE_FENCED || r == OSTORE_BUSY || r == OSTORE_MISSING) {
            p->active = 0;
            wrk_fail(p->res, r == OSTORE_FENCED ? CV_ERR_FENCED : CV_ERR_BUSY,
                     "order %s: %s", p->order_id, ostore_result_str(r));
            if (r == OSTORE_BUSY)
                p->res->delay_ms = 500;
        } else {
            p->tracked_done = 1;
        }
    }
}

/* conveyor_order_fetch_to_complete_seconds: the batch's completions in one
 * pipeline (met.h). A lost write loses figures, never an order: logged only. */
static void note_fetch_to_complete(struct wrk_ctx *ctx, const struct met_obs *o)
{
    int sent;
    if (met_obs_append(ctx->rds, &met_hists[MET_H_FETCH_TO_COMPLETE], MET_HIST_ALL, o, &sent))
        LOG_WARN("metrics.write_failed", "histogram=fetch_to_complete");
    for (int i = 0; i < sent; i++)
        rds_reply_free(rds_read(ctx->rds));
}

/* The last statement: TRACKED -> MIRAKL_OK -> COMPLETE for the pushes done,
 * FAILED_PUSH for the failed ones, and every claim released. */
static void finish(struct wrk_ctx *ctx, struct push *ps, size_t n)
{
    struct ostore_plan *plans = xcalloc(n ? n : 1, sizeof(*plans));
    struct ostore_change *steps = xcalloc(2 * (n ? n : 1), sizeof(*steps));
    struct ostore_moved *moved = xcalloc(n ? n : 1, sizeof(*moved));
    struct push **who = xcalloc(n ? n : 1, sizeof(*who));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        struct push *p = &ps[i];
        if (!p->claimed || p->res->rc == CV_ERR_FENCED)
            continue;
        struct ostore_plan *pl = &plans[m];
        struct ostore_change *c = &steps[2 * m];
        ord_plan(pl, p->job, p->order_id, p->trace, c);
        if (p->active) {
            size_t k = 0;
            if (!p->at_mirakl_ok) {
                c[k].order_id = p->order_id;
                c[k].to = OSTATE_MIRAKL_OK;
                c[k].scope = "mirakl";
                c[k].action = "update_tracking";
                c[k].mirakl_tracking_updated = 1;
                c[k].last_error = ostore_null;
                k++;
            }
            c[k].order_id = p->order_id;
            c[k].to = OSTATE_COMPLETE;
            c[k].scope = "mirakl";
            c[k].action = "ship";
            c[k].mirakl_tracking_updated = -1;
            pl->nsteps = k + 1;
        } else if (p->failed && !p->at_mirakl_ok) {
            c[0].order_id = p->order_id;
            c[0].to = OSTATE_FAILED_PUSH;
            c[0].scope = "mirakl";
            c[0].action = "update_tracking";
            c[0].status = "ERROR";
            c[0].message = p->why;
            c[0].last_error = p->why;
            c[0].mirakl_tracking_updated = -1;
            pl->nsteps = 1;
        }
        who[m++] = p;
    }
    struct met_obs f2c = { { 0 }, 0, 0 };
    enum cv_rc rc = ostore_move_many(ctx->db, plans, m, moved);
    for (size_t k = 0; k < m; k++) {
        struct push *p = who[k];
        if (!p->active && !p->failed)
            continue;
        if (rc != CV_OK) {
            wrk_fail(p->res, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(rc));
            continue;
        }
        if (plans[k].nsteps > 0 &&
            ord_moved_rc(ctx, p->job, &plans[k].steps[plans[k].nsteps - 1], &moved[k], p->res) !=
                CV_OK)
            continue;
        if (p->failed) {
            wrk_fail(p->res, p->fail_rc, "%s", p->why);
            LOG_WARN("order.failed_push", "order_id=%s error=%s", p->order_id, p->why);
            continue;
        }
        p->res->rc = CV_OK;
        LOG_INFO("order.complete", "order_id=%s carrier=%s", p->order_id,
                 p->cl.carrier_code ? p->cl.carrier_code : "");
        if (p->cl.age_ms >= 0)
            met_obs_add(&f2c, &met_hists[MET_H_FETCH_TO_COMPLETE],
                        (double)(p->cl.age_ms + clock_mono_ms() - p->cl.claimed_mono_ms) /
                            1000.0);
    }
    note_fetch_to_complete(ctx, &f2c);
    free(plans);
    free(steps);
    free(moved);
    free(who);
}

void h_tracking_push(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res)
{
    struct push *ps = xcalloc(n, sizeof(*ps));
    struct push **act = xcalloc(n, sizeof(*act));
    for (size_t i = 0; i < n; i++) {
        ps[i].job = jobs[i];
        ps[i].res = &res[i];
        sbuf_init(&ps[i].path);
        sbuf_init(&ps[i].body);
    }
    prepare(ctx, ps, n);
    size_t na = 0;
    for (size_t i = 0; i < n; i++)
        if (ps[i].active && !ps[i].tracked_done)
            act[na++] = &ps[i];
    if (na) {
        round_(ctx, act, na, 0);                       /* OR23 */
        mark_tracked(ctx, act, na);                    /* remembered before OR24 */
    }
    na = 0;
    for (size_t i = 0; i < n; i++)
        if (ps[i].active && ps[i].resumed)
            act[na++] = &ps[i];
    if (na)
        lookups(ctx, act, na);                         /* shipped before a stop? */
    na = 0;
    for (size_t i = 0; i < n; i++)
        if (ps[i].active && !ps[i].shipped)
            act[na++] = &ps[i];
    if (na)
        round_(ctx, act, na, 1);                       /* OR24 */
    finish(ctx, ps, n);                                /* and every release */
    for (size_t i = 0; i < n; i++) {
        ostore_claimed_free(&ps[i].cl, 1);
        sbuf_cleanup(&ps[i].path);
        sbuf_cleanup(&ps[i].body);
    }
    wrk_out_flush(ctx);
    free(act);
    free(ps);
}
