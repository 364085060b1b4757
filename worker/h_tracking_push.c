/* h_tracking_push.c - tell the marketplace: Mirakl OR23 (tracking) then OR24
 * (ship), then TRACKED -> MIRAKL_OK -> COMPLETE (seed 004, step 5).
 *
 * Both calls are made before the order moves: OR23 is a PUT (repeating it
 * sets the same tracking), and an OR24 repeated after a crash is answered
 * ORDER_INVALID_STATE because the order is shipped already, which we take as
 * done. So a redelivery at any point makes no second effect, and the order
 * never sits in MIRAKL_OK with a ship that failed. The calls of the whole
 * batch are in flight together: every OR23, then every OR24.
 * Failures: Mirakl refusing the data (4xx) -> FAILED_PUSH, the job fails;
 * 429 -> the job waits Retry-After; network, 5xx -> retry, on the last
 * attempt FAILED_PUSH and dead. The two moves are two transactions: a delivery
 * that finds the order MIRAKL_OK (its predecessor crashed in between) only
 * moves it on to COMPLETE. FAILED_PUSH on a fresh life of the job (a
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
    struct ostore_order *order;
    const struct car *car;
    int claimed;
    int active;
    int resume;          /* found MIRAKL_OK: only the move to COMPLETE is left */
    struct sbuf path, body;
};

static void fail_push(struct wrk_ctx *ctx, struct push *p, enum cv_rc rc, const char *why)
{
    struct ostore_change c;
    struct ostore_moved m;
    memset(&c, 0, sizeof(c));
    c.order_id = p->order_id;
    c.to = OSTATE_FAILED_PUSH;
    c.scope = "mirakl";
    c.action = "update_tracking";
    c.status = "ERROR";
    c.message = why;
    c.last_error = why;
    c.mirakl_tracking_updated = -1;
    if (ord_move(ctx, p->job, &c, &m, p->res) != CV_OK)
        return;
    wrk_fail(p->res, rc, "%s", why);
    LOG_WARN("order.failed_push", "order_id=%s error=%s", p->order_id, why);
}

static void prepare(struct wrk_ctx *ctx, struct push *p)
{
    cJSON *pl = json_parse(p->job->payload, p->job->payload_len);
    car_json_str(pl, "order_id", p->order_id, sizeof(p->order_id));
    cJSON_Delete(pl);
    if (ord_claim(ctx, p->job, p->order_id, p->res) != CV_OK)
        return;
    p->claimed = 1;
    struct ostore_op *ops = NULL;
    size_t nops = 0;
    enum cv_rc rc = ostore_get(ctx->db, p->order_id, 0, &p->order, &ops, &nops);
    ostore_ops_free(ops, nops);
    if (rc != CV_OK) {
        wrk_fail(p->res, rc == CV_ERR_NOT_FOUND ? CV_ERR_PERMANENT : CV_ERR_UNAVAILABLE,
                 "order %s: %s", p->order_id, cv_rc_str(rc));
        return;
    }
    enum ostate st = p->order->state;
    if (st == OSTATE_FAILED_PUSH && p->job->attempt == 1 && p->job->deliveries <= 1) {
        struct ostore_change c;
        struct ostore_moved m;
        memset(&c, 0, sizeof(c));
        c.order_id = p->order_id;
        c.to = OSTATE_TRACKED;
        c.scope = "mirakl";
        c.action = "retry_push";
        c.mirakl_tracking_updated = -1;
        if (ord_move(ctx, p->job, &c, &m, p->res) != CV_OK)
            return;
        st = OSTATE_TRACKED;
    }
    if (st == OSTATE_MIRAKL_OK) {
        /* a crash between the two moves of finish(): OR23 and OR24 are done, and without
         * this the order would stay MIRAKL_OK (found by the chaos kit, tests/chaos) */
        p->resume = 1;
        p->res->rc = CV_OK;
        return;
    }
    if (st != OSTATE_TRACKED) {
        /* pushed already, or not tracked yet (a push sweep racing the event) */
        if (st == OSTATE_FAILED_PUSH)
            wrk_fail(p->res, CV_ERR_PERMANENT, "order %s is FAILED_PUSH: %s", p->order_id,
                     p->order->last_error ? p->order->last_error : "");
        else
            p->res->rc = CV_OK;
        return;
    }
    p->car = car_find(p->order->carrier_code);
    p->active = 1;
    p->res->rc = CV_OK;
}

static void call_init(struct ups_call *c, struct push *p)
{
    memset(c, 0, sizeof(*c));
    c->traceparent = p->job->traceparent;
    c->job_id = p->job->id;
    c->order_id = p->order_id;
    c->attempt = p->job->attempt;
}

/* One round: OR23 (ship = 0) or OR24 (ship = 1) for every active push. */
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
                             p->order->carrier_code ? p->order->carrier_code : "",
                             p->car ? p->car->label : "",
                             p->car ? p->car->tracking_url : "",
                             p->order->tracking_number ? p->order->tracking_number : "");
    }
    ups_run(wrk_ups(ctx, CFG_UPS_MIRAKL), calls, n);
    for (size_t i = 0; i < n; i++) {
        struct push *p = ps[i];
        struct ups_call *c = &calls[i];
        char code[64], msg[160], why[JOB_ERROR_MAX];
        if (c->outcome == UPS_DONE && c->cls == HTTPC_OK)
            goto next;
        p->active = 0;
        if (c->outcome == UPS_DEFERRED) {
            wrk_fail(p->res, CV_ERR_BUSY, "mirakl: %s", c->error);
            p->res->delay_ms = c->delay_ms;
            goto next;
        }
        mkl_error_code(c->resp, c->resp_len, code, sizeof(code), msg, sizeof(msg));
        if (ship && strcmp(code, "ORDER_INVALID_STATE") == 0 && p->order->tracking_number) {
            /* shipped already: our earlier OR24 went through before a crash */
            p->active = 1;
            LOG_INFO("order.ship_already_done", "order_id=%s", p->order_id);
            goto next;
        }
        snprintf(why, sizeof(why), "mirakl %s: %s%s%s", ship ? "OR24" : "OR23",
                 code[0] ? code : httpc_class_str(c->cls), msg[0] ? ": " : "", msg);
        if (c->outcome == UPS_DONE && (c->cls == HTTPC_PERMANENT || c->cls == HTTPC_AUTH ||
                                       c->cls == HTTPC_BODY_ERROR)) {
            fail_push(ctx, p, CV_ERR_PERMANENT, why);
        } else if (p->job->attempt >= p->job->max_attempts) {
            fail_push(ctx, p, CV_ERR_TRANSIENT, why);
        } else {
            wrk_fail(p->res, c->cls == HTTPC_THROTTLED ? CV_ERR_RATE : CV_ERR_TRANSIENT, "%s",
                     why);
            p->res->delay_ms = c->retry_after_ms;
        }
    next:
        ups_call_cleanup(c);
    }
    free(calls);
}

static void complete(struct wrk_ctx *ctx, struct push *p);

/* TRACKED -> MIRAKL_OK (both calls done), then COMPLETE. */
static void finish(struct wrk_ctx *ctx, struct push *p)
{
    struct ostore_change c;
    struct ostore_moved m;
    memset(&c, 0, sizeof(c));
    c.order_id = p->order_id;
    c.to = OSTATE_MIRAKL_OK;
    c.scope = "mirakl";
    c.action = "update_tracking";
    c.mirakl_tracking_updated = 1;
    c.last_error = ostore_null;
    if (ord_move(ctx, p->job, &c, &m, p->res) != CV_OK)
        return;
    complete(ctx, p);
}

/* MIRAKL_OK -> COMPLETE. */
static void complete(struct wrk_ctx *ctx, struct push *p)
{
    struct ostore_change c;
    struct ostore_moved m;
    memset(&c, 0, sizeof(c));
    c.order_id = p->order_id;
    c.to = OSTATE_COMPLETE;
    c.scope = "mirakl";
    c.action = "ship";
    c.mirakl_tracking_updated = -1;
    if (ord_move(ctx, p->job, &c, &m, p->res) != CV_OK)
        return;
    p->res->rc = CV_OK;
    LOG_INFO("order.complete", "order_id=%s carrier=%s", p->order_id,
             p->order->carrier_code ? p->order->carrier_code : "");
}

void h_tracking_push(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res)
{
    struct push *ps = xcalloc(n, sizeof(*ps));
    struct push **act = xcalloc(n, sizeof(*act));
    size_t na = 0;
    for (size_t i = 0; i < n; i++) {
        ps[i].job = jobs[i];
        ps[i].res = &res[i];
        sbuf_init(&ps[i].path);
        sbuf_init(&ps[i].body);
        prepare(ctx, &ps[i]);
    }
    for (int ship = 0; ship <= 1; ship++) {
        na = 0;
        for (size_t i = 0; i < n; i++)
            if (ps[i].active)
                act[na++] = &ps[i];
        if (na)
            round_(ctx, act, na, ship);
    }
    for (size_t i = 0; i < n; i++) {
        if (ps[i].active)
            finish(ctx, &ps[i]);
        else if (ps[i].resume)
            complete(ctx, &ps[i]);
        if (ps[i].claimed && res[i].rc != CV_ERR_FENCED)
            ord_release(ctx, ps[i].job, ps[i].order_id);
        ostore_orders_free(ps[i].order, ps[i].order ? 1 : 0);
        sbuf_cleanup(&ps[i].path);
        sbuf_cleanup(&ps[i].body);
    }
    wrk_out_flush(ctx);
    free(act);
    free(ps);
}
