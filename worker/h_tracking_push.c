/* h_tracking_push.c - tell the marketplace: Mirakl OR23 (tracking) then OR24
 * (ship), then TRACKED -> MIRAKL_OK -> COMPLETE (seed 004, step 5).
 *
 * Both calls are made before the order moves: OR23 is a PUT (repeating it
 * sets the same tracking), and an OR24 repeated after a crash is answered
 * ORDER_INVALID_STATE because the order is shipped already, which we take as
 * done. So a redelivery at any point makes no second effect, and the order
 * never sits in MIRAKL_OK with a ship that failed. The calls of the whole
 * batch are in flight together: every OR23, then every OR24; PostgreSQL sees
 * two statements per batch (claim and read all, move and release all).
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
    int failed;                  /* ends FAILED_PUSH with why (round 4) */
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
        if (!ord_step_start(ctx, p->job, p->order_id, (enum ostate)p->cl.state, OSTATE_TRACKED,
                            OSTATE_FAILED_PUSH, "mirakl", "retry_push", p->cl.last_error,
                            p->res))
            continue;
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

/* Round 4: the moves and every release in one statement. */
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
        pl->order_id = p->order_id;
        pl->job_id = p->job->id;
        pl->epoch = p->job->epoch;
        pl->trace_id = p->trace;
        pl->release = 1;
        pl->steps = c;
        if (p->active) {
            c[0].order_id = p->order_id;
            c[0].to = OSTATE_MIRAKL_OK;
            c[0].scope = "mirakl";
            c[0].action = "update_tracking";
            c[0].mirakl_tracking_updated = 1;
            c[0].last_error = ostore_null;
            c[1].order_id = p->order_id;
            c[1].to = OSTATE_COMPLETE;
            c[1].scope = "mirakl";
            c[1].action = "ship";
            c[1].mirakl_tracking_updated = -1;
            pl->nsteps = 2;
        } else if (p->failed) {
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
    enum cv_rc rc = ostore_move_many(ctx->db, plans, m, moved);
    for (size_t k = 0; k < m; k++) {
        struct push *p = who[k];
        if (!p->active && !p->failed)
            continue;
        if (rc != CV_OK) {
            wrk_fail(p->res, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(rc));
            continue;
        }
        if (ord_moved_rc(ctx, p->job, &plans[k].steps[plans[k].nsteps - 1], &moved[k], p->res) !=
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
    for (int ship = 0; ship <= 1; ship++) {
        size_t na = 0;
        for (size_t i = 0; i < n; i++)
            if (ps[i].active)
                act[na++] = &ps[i];
        if (na)
            round_(ctx, act, na, ship);
    }
    finish(ctx, ps, n);
    for (size_t i = 0; i < n; i++) {
        ostore_claimed_free(&ps[i].cl, 1);
        sbuf_cleanup(&ps[i].path);
        sbuf_cleanup(&ps[i].body);
    }
    wrk_out_flush(ctx);
    free(act);
    free(ps);
}
