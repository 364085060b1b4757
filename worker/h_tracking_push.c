/* h_tracking_push.c - tell the marketplace: Mirakl OR23 (tracking) then OR24
 * (ship), then TRACKED -> MIRAKL_OK -> COMPLETE (seed 004, step 5).
 *
 * Each call's success is recorded before the next is made: OR23 done ->
 * MIRAKL_OK (mirakl_tracking_updated), OR24 done -> COMPLETE. A job that stops
 * between them (Mirakl's call budget spent, a crash) starts again from
 * MIRAKL_OK with OR24 only, so a tight budget is never spent on OR23 again
 * and again. Whether an earlier OR24 went out before the stop cannot be
 * known from here, so an order found in MIRAKL_OK is first looked up (one
 * OR11 by order ids for the batch): shipped already -> COMPLETE with no
 * second OR24. OR23 is a PUT (repeating it sets the same tracking), and an OR24
 * repeated after a crash is answered ORDER_INVALID_STATE because the order is
 * shipped already, which we take as done: a redelivery at any point makes no
 * second effect. An OR24 that Mirakl refuses leaves the order MIRAKL_OK (its
 * tracking is there; the table has no failed edge out of MIRAKL_OK) and fails
 * the job with Mirakl's message; a replay tries OR24 again. The calls of the
 * whole batch are in flight together: every OR23, then every OR24; PostgreSQL
 * sees at most three statements per batch.
 * Failures: Mirakl refusing the data (4xx) -> FAILED_PUSH, the job fails;
 * 429 -> the job waits Retry-After; network, 5xx -> retry, on the last
 * attempt FAILED_PUSH and dead. FAILED_PUSH on a fresh life of the job (a
 * replay) takes the retry edge back to TRACKED first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "log.h"
#include "mem.h"
#include "mkl.h"
#include "ord.h"

struct push {
    struct job *job;
    struct wrk_result *res;
    char order_id[80];
    char trace[33];
    struct ostore_claimed cl;
    const struct car *car;
    int claimed;
    int active;
    int tracked_done;            /* OR23 done: MIRAKL_OK (or it started there) */
    int resumed;                 /* started in MIRAKL_OK: look it up before OR24 */
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
            p->tracked_done = 1;   /* OR23 went through before: OR24 only */
            p->resumed = 1;
        } else if (!ord_step_start(ctx, p->job, p->order_id, (enum ostate)p->cl.state,
                                   OSTATE_TRACKED, OSTATE_FAILED_PUSH, "mirakl", "retry_push",
                                   p->cl.last_error, p->res)) {
            continue;
        }
        p->car = car_find(p->cl.carrier_code);
        p->active = 1;
        p->res->rc = CV_OK;
    }
    free(cl);
    free(in);
}

static void call_init(struct ups_call *c, struct push *p)
{
    memset(c, 0, sizeof(*c));
    c->traceparent = p->job->traceparent;
    c->job_id = p->job->id;
    c->trace_id = p->trace;
    c->order_id = p->order_id;
    c->attempt = p->job->attempt;
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
    call_init(&c, ps[0]);
    c.order_id = n == 1 ? ps[0]->order_id : NULL;
    mkl_ids_req(&c, &path, ids, n);
    ups_run(wrk_ups(ctx, CFG_UPS_MIRAKL), &c, 1);
    if (c.outcome == UPS_DONE && c.cls == HTTPC_OK) {
        mark_shipped(&c, ps, n);
    } else {
        for (size_t i = 0; i < n; i++) {
            struct push *p = ps[i];
            p->active = 0;
            if (c.outcome == UPS_DEFERRED) {
                wrk_fail(p->res, CV_ERR_BUSY, "mirakl: %s", c.error);
                p->res->delay_ms = c.delay_ms;
            } else {
                wrk_fail(p->res, c.cls == HTTPC_THROTTLED ? CV_ERR_RATE : CV_ERR_TRANSIENT,
                         "mirakl OR11 (looking the order up): %s",
                         c.error[0] ? c.error : httpc_class_str(c.cls));
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
        call_init(&calls[i], p);
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

/* Apply one step per push in one statement: ok_to for the active ones (with
 * set_tracked: mirakl_tracking_updated), FAILED_PUSH for the failed ones that
 * may still take it, and every claim released when release is set. Pushes
 * whose move did not happen as asked stop (res says why). */
static void move_round(struct wrk_ctx *ctx, struct push *ps, size_t n, enum ostate ok_to,
                       int release)
{
    struct ostore_plan *plans = xcalloc(n ? n : 1, sizeof(*plans));
    struct ostore_change *steps = xcalloc(n ? n : 1, sizeof(*steps));
    struct ostore_moved *moved = xcalloc(n ? n : 1, sizeof(*moved));
    struct push **who = xcalloc(n ? n : 1, sizeof(*who));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        struct push *p = &ps[i];
        if (!p->claimed || p->res->rc == CV_ERR_FENCED)
            continue;
        /* the MIRAKL_OK round moves the pushes whose OR23 just went through;
         * the last round moves what OR24 finished, and the failures */
        int move = p->active ? ok_to != OSTATE_MIRAKL_OK || !p->tracked_done
                             : release && p->failed && !p->tracked_done;
        if (!move && !release)
            continue;
        struct ostore_plan *pl = &plans[m];
        struct ostore_change *c = &steps[m];
        pl->order_id = p->order_id;
        pl->job_id = p->job->id;
        pl->epoch = p->job->epoch;
        pl->trace_id = p->trace;
        pl->release = release;
        pl->steps = c;
        c->order_id = p->order_id;
        c->mirakl_tracking_updated = -1;
        if (move && p->active) {
            c->to = ok_to;
            c->scope = "mirakl";
            c->action = ok_to == OSTATE_MIRAKL_OK ? "update_tracking" : "ship";
            if (ok_to == OSTATE_MIRAKL_OK) {
                c->mirakl_tracking_updated = 1;
                c->last_error = ostore_null;
            }
            pl->nsteps = 1;
        } else if (move) {
            c->to = OSTATE_FAILED_PUSH;
            c->scope = "mirakl";
            c->action = "update_tracking";
            c->status = "ERROR";
            c->message = p->why;
            c->last_error = p->why;
            pl->nsteps = 1;
        }
        who[m++] = p;
    }
    enum cv_rc rc = ostore_move_many(ctx->db, plans, m, moved);
    for (size_t k = 0; k < m; k++) {
        struct push *p = who[k];
        if (plans[k].nsteps == 0)
            continue;
        if (rc != CV_OK) {
            p->active = 0;
            p->failed = 0;
            wrk_fail(p->res, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(rc));
            continue;
        }
        if (ord_moved_rc(ctx, p->job, &steps[k], &moved[k], p->res) != CV_OK) {
            p->active = 0;
            p->failed = 0;
            continue;
        }
        if (p->active && ok_to == OSTATE_MIRAKL_OK) {
            p->tracked_done = 1;
        } else if (p->active) {
            p->res->rc = CV_OK;
            LOG_INFO("order.complete", "order_id=%s carrier=%s", p->order_id,
                     p->cl.carrier_code ? p->cl.carrier_code : "");
        }
    }
    /* a failure that could not take FAILED_PUSH (after OR23: MIRAKL_OK has no
     * failed edge) or that did: the job ends with Mirakl's word */
    for (size_t i = 0; release && i < n; i++) {
        struct push *p = &ps[i];
        if (p->failed && p->res->rc != CV_ERR_FENCED && p->res->rc != CV_ERR_UNAVAILABLE) {
            wrk_fail(p->res, p->fail_rc, "%s", p->why);
            LOG_WARN("order.failed_push", "order_id=%s state=%s error=%s", p->order_id,
                     p->tracked_done ? "MIRAKL_OK" : "FAILED_PUSH", p->why);
        }
    }
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
        move_round(ctx, ps, n, OSTATE_MIRAKL_OK, 0);   /* recorded before OR24 */
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
    move_round(ctx, ps, n, OSTATE_COMPLETE, 1);        /* and every release */
    for (size_t i = 0; i < n; i++) {
        ostore_claimed_free(&ps[i].cl, 1);
        sbuf_cleanup(&ps[i].path);
        sbuf_cleanup(&ps[i].body);
    }
    wrk_out_flush(ctx);
    free(act);
    free(ps);
}
