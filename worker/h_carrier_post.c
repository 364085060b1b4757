/* h_carrier_post.c - create each order's shipment at its carrier:
 * PENDING_POST -> POSTED -> AWAITING_TRACKING (seed 004, step 3).
 *
 * A batch of deliveries is worked in three rounds so that the outside calls
 * of the whole batch are in flight at once (one worker process keeps
 * hundreds of carrier calls going without threads):
 *   1. claim and read every order (ord.h); decide: already posted -> done;
 *      FAILED_POST on a fresh life of the job (a replay, an operator's new
 *      job) -> back to PENDING_POST first (the retry edge); no carrier yet ->
 *      the carrier rules;
 *   2. lookups: a job that may have sent its create before (attempt > 1 or
 *      delivered again after a crash) looks the shipment up by our reference
 *      first, because carriers take no idempotency key: found -> use it, no
 *      second create;
 *   3. creates, grouped by carrier, several orders per request where the
 *      carrier takes batches (OnTime: up to upstreams.ontime.batch_max);
 * then moves each order and releases it.
 *
 * Outcomes (seed 004's retry rule: network and temporary errors back off 1, 2,
 * 4, 8, 16 s, at most 3 attempts; authentication and validation errors do not
 * retry):
 *   created               -> POSTED (carrier code, expedition id, tracking
 *                            number) -> AWAITING_TRACKING (kept tracking events
 *                            apply now; TRACKED -> a tracking-push follow-up)
 *   refused (validation)  -> FAILED_POST with the carrier's message; the job fails
 *   not sent, 5xx, unknown outcome, throttled
 *                         -> retry (a throttled call waits its Retry-After); on
 *                            the last attempt FAILED_POST, the job dead
 *   circuit open or rate budget spent -> the job waits (CV_ERR_BUSY), no attempt
 *   our PostgreSQL down   -> CV_ERR_UNAVAILABLE (the worker pauses) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "log.h"
#include "mem.h"
#include "ord.h"

#define ADDR_MAX 128

struct post {
    struct job *job;
    struct wrk_result *res;
    const char *order_id;        /* into payload */
    cJSON *payload;
    struct ostore_order *order;  /* ostore_get's */
    const struct car *car;
    struct car_order co;
    char name[ADDR_MAX], street[ADDR_MAX], city[ADDR_MAX], zip[ADDR_MAX];
    int claimed;
    int active;                  /* still to be posted */
    int look_first;              /* a create may have been sent before */
    struct car_shipment ship;
    enum car_verdict verdict;
    int have_verdict;
};

static int is_last_attempt(const struct job *j)
{
    return j->attempt >= j->max_attempts;
}

/* Move p's order to FAILED_POST with why; the job ends with rc. */
static void fail_post(struct wrk_ctx *ctx, struct post *p, enum cv_rc rc, const char *why)
{
    struct ostore_change c;
    struct ostore_moved m;
    memset(&c, 0, sizeof(c));
    c.order_id = p->order_id;
    c.to = OSTATE_FAILED_POST;
    c.scope = "carrier";
    c.action = "create_shipment";
    c.status = "ERROR";
    c.message = why;
    c.last_error = why;
    c.mirakl_tracking_updated = -1;
    char meta[160];
    snprintf(meta, sizeof(meta), "{\"carrier\":\"%s\",\"attempt\":%d}",
             p->car ? p->car->name : "", p->job->attempt);
    c.meta_json = meta;
    if (ord_move(ctx, p->job, &c, &m, p->res) != CV_OK)
        return;   /* res says why (fenced, unavailable, ...) */
    wrk_fail(p->res, rc, "%s", why);
    LOG_WARN("order.failed_post", "order_id=%s carrier=%s error=%s", p->order_id,
             p->car ? p->car->name : "", why);
}

/* The transient end of an attempt: retry, or on the last attempt FAILED_POST
 * and dead. */
static void post_retry(struct wrk_ctx *ctx, struct post *p, enum cv_rc rc, int64_t delay_ms,
                       const char *why)
{
    if (is_last_attempt(p->job)) {
        fail_post(ctx, p, CV_ERR_TRANSIENT, why);
        return;
    }
    wrk_fail(p->res, rc, "%s", why);
    p->res->delay_ms = delay_ms;
}

/* Round 1: claim, read, decide. */
static void prepare(struct wrk_ctx *ctx, struct post *p)
{
    const char *field;
    p->payload = json_parse(p->job->payload, p->job->payload_len);
    json_get_str(p->payload, "order_id", 64, &p->order_id, &field);
    if (ord_claim(ctx, p->job, p->order_id, p->res) != CV_OK)
        return;
    p->claimed = 1;
    size_t nops = 0;
    struct ostore_op *ops = NULL;
    enum cv_rc rc = ostore_get(ctx->db, p->order_id, 0, &p->order, &ops, &nops);
    ostore_ops_free(ops, nops);
    if (rc != CV_OK) {
        if (rc == CV_ERR_NOT_FOUND)
            wrk_fail(p->res, CV_ERR_PERMANENT, "no such order: %s", p->order_id);
        else
            wrk_fail(p->res, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(rc));
        return;
    }
    enum ostate st = p->order->state;
    if (st == OSTATE_FAILED_POST && p->job->attempt == 1 && p->job->deliveries <= 1) {
        /* a fresh life of the job (a replay, a new job): take the retry edge */
        struct ostore_change c;
        struct ostore_moved m;
        memset(&c, 0, sizeof(c));
        c.order_id = p->order_id;
        c.to = OSTATE_PENDING_POST;
        c.scope = "carrier";
        c.action = "retry_post";
        c.mirakl_tracking_updated = -1;
        if (ord_move(ctx, p->job, &c, &m, p->res) != CV_OK)
            return;
        st = OSTATE_PENDING_POST;
    }
    if (st != OSTATE_PENDING_POST) {
        /* posted already (a duplicate job, a redelivery after the move), or
         * failed by an earlier life: nothing to do, and nothing contradicts */
        p->res->rc = st == OSTATE_FAILED_POST ? CV_ERR_PERMANENT : CV_OK;
        if (st == OSTATE_FAILED_POST)
            wrk_fail(p->res, CV_ERR_PERMANENT, "order %s is FAILED_POST: %s", p->order_id,
                     p->order->last_error ? p->order->last_error : "");
        return;
    }
    const cJSON *cj = cJSON_GetObjectItemCaseSensitive(p->payload, "carrier");
    const char *carrier = cJSON_IsString(cj) ? cj->valuestring : p->order->carrier_code;
    if (!carrier || !*carrier) {
        enum cv_rc rrc;
        carrier = ord_rules_pick(ctx, p->order->country,
                                 p->order->weight_kg ? atof(p->order->weight_kg) : 0, &rrc);
        if (!carrier) {
            if (rrc == CV_ERR_UNAVAILABLE)
                wrk_fail(p->res, CV_ERR_UNAVAILABLE, "orders store: carrier rules unreadable");
            else
                fail_post(ctx, p, CV_ERR_PERMANENT, "no carrier rule matches this order");
            return;
        }
    }
    p->car = car_find(carrier);
    if (!p->car) {
        char why[96];
        snprintf(why, sizeof(why), "unknown carrier '%.40s'", carrier);
        fail_post(ctx, p, CV_ERR_PERMANENT, why);
        return;
    }
    ord_car_order(p->order, &p->co, p->name, sizeof(p->name), p->street, p->city, p->zip,
                  ADDR_MAX);
    p->look_first = p->job->attempt > 1 || p->job->deliveries > 1;
    p->active = 1;
    p->res->rc = CV_OK;
}

static void call_init(struct ups_call *c, const struct post *p)
{
    char trace[33];
    memset(c, 0, sizeof(*c));
    ord_trace_id(p->job, trace);
    c->traceparent = p->job->traceparent;
    c->job_id = p->job->id;
    c->order_id = p->order_id;
    c->attempt = p->job->attempt;
    c->body_check = p->car->body_check;
}

/* Round 2: look up the orders whose create may have been sent already. */
static void lookups(struct wrk_ctx *ctx, struct post *ps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct post *p = &ps[i];
        if (!p->active || !p->look_first)
            continue;
        struct ups_call c;
        struct sbuf b;
        sbuf_init(&b);
        call_init(&c, p);
        p->car->lookup_req(&p->co, &c, &b);
        ups_run(wrk_ups(ctx, p->car->ups_id), &c, 1);
        int found = c.outcome == UPS_DONE ? p->car->lookup_parse(&c, &p->ship) : -1;
        if (found == 1) {
            p->verdict = CAR_CREATED;
            p->have_verdict = 1;
            LOG_INFO("order.shipment_found", "order_id=%s carrier=%s expedition_id=%s",
                     p->order_id, p->car->name, p->ship.expedition_id);
        } else if (found < 0) {
            /* cannot tell whether it exists: never create blindly */
            p->active = 0;
            if (c.outcome == UPS_DEFERRED) {
                wrk_fail(p->res, CV_ERR_BUSY, "%s: %s", p->car->name, c.error);
                p->res->delay_ms = c.delay_ms;
            } else {
                post_retry(ctx, p, CV_ERR_TRANSIENT, c.retry_after_ms,
                           c.error[0] ? c.error : "shipment lookup failed");
            }
        }
        ups_call_cleanup(&c);
        sbuf_cleanup(&b);
    }
}

/* Round 3: the creates, per carrier, batched where the carrier allows. */
static void creates(struct wrk_ctx *ctx, struct post *ps, size_t n)
{
    struct ups_call *calls = xcalloc(n ? n : 1, sizeof(*calls));
    struct sbuf *bodies = xcalloc(n ? n : 1, sizeof(*bodies));
    size_t *first = xcalloc(n ? n : 1, sizeof(*first));   /* call -> its first post */
    size_t *count = xcalloc(n ? n : 1, sizeof(*count));
    struct post **order = xcalloc(n ? n : 1, sizeof(*order));
    struct car_order *cos = xcalloc(n ? n : 1, sizeof(*cos));
    char *done = xcalloc(n ? n : 1, 1);
    for (size_t i = 0; i < n; i++) {
        if (!ps[i].active || ps[i].have_verdict || done[i])
            continue;
        const struct car *car = ps[i].car;
        int bmax = car->batch ? ctx->cfg->ups[car->ups_id].batch_max : 1;
        size_t nc = 0, no = 0;
        /* every pending post of this carrier, in calls of at most bmax orders */
        for (size_t k = i; k < n; k++) {
            if (!ps[k].active || ps[k].have_verdict || done[k] || ps[k].car != car)
                continue;
            done[k] = 1;
            order[no] = &ps[k];
            cos[no] = ps[k].co;
            if (nc == 0 || (int)count[nc - 1] >= bmax) {
                first[nc] = no;
                count[nc] = 0;
                nc++;
            }
            count[nc - 1]++;
            no++;
        }
        for (size_t c = 0; c < nc; c++) {
            sbuf_init(&bodies[c]);
            call_init(&calls[c], order[first[c]]);
            if (count[c] > 1)
                calls[c].order_id = NULL;
            car->create_req(&cos[first[c]], count[c], &calls[c], &bodies[c]);
        }
        ups_run(wrk_ups(ctx, car->ups_id), calls, nc);
        for (size_t c = 0; c < nc; c++) {
            struct ups_call *uc = &calls[c];
            struct post **op = &order[first[c]];
            size_t m = count[c];
            if (uc->outcome == UPS_DONE &&
                (uc->cls == HTTPC_OK || uc->cls == HTTPC_BODY_ERROR ||
                 uc->cls == HTTPC_PERMANENT)) {
                struct car_shipment *sh = xcalloc(m, sizeof(*sh));
                enum car_verdict *v = xcalloc(m, sizeof(*v));
                car->create_parse(uc, &cos[first[c]], m, sh, v);
                for (size_t k = 0; k < m; k++) {
                    op[k]->ship = sh[k];
                    op[k]->verdict = v[k];
                    op[k]->have_verdict = 1;
                }
                free(sh);
                free(v);
                continue;
            }
            for (size_t k = 0; k < m; k++) {
                struct post *p = op[k];
                p->active = 0;
                if (uc->outcome == UPS_DEFERRED) {
                    wrk_fail(p->res, CV_ERR_BUSY, "%s: %s", car->name, uc->error);
                    p->res->delay_ms = uc->delay_ms;
                } else if (uc->outcome == UPS_DONE && uc->cls == HTTPC_AUTH) {
                    /* refreshed once and refused again: our credentials */
                    char why[JOB_ERROR_MAX];
                    snprintf(why, sizeof(why), "%s: authentication refused (%s)", car->name,
                             uc->error);
                    fail_post(ctx, p, CV_ERR_PERMANENT, why);
                } else {
                    char why[JOB_ERROR_MAX];
                    snprintf(why, sizeof(why), "%s: %s (%s)", car->name,
                             uc->error[0] ? uc->error : "create failed",
                             httpc_class_str(uc->cls));
                    post_retry(ctx, p, CV_ERR_TRANSIENT, uc->retry_after_ms, why);
                }
            }
        }
        for (size_t c = 0; c < nc; c++) {
            ups_call_cleanup(&calls[c]);
            sbuf_cleanup(&bodies[c]);
        }
        memset(calls, 0, n * sizeof(*calls));
    }
    free(calls);
    free(bodies);
    free(first);
    free(count);
    free(order);
    free(cos);
    free(done);
}

/* The verdict applied: POSTED then AWAITING_TRACKING, or FAILED_POST. */
static void finish(struct wrk_ctx *ctx, struct post *p)
{
    if (!p->active || !p->have_verdict)
        return;
    if (p->verdict == CAR_REFUSED) {
        fail_post(ctx, p, CV_ERR_PERMANENT, p->ship.error[0] ? p->ship.error : "refused");
        return;
    }
    if (p->verdict == CAR_RETRY) {
        post_retry(ctx, p, CV_ERR_TRANSIENT, 0,
                   p->ship.error[0] ? p->ship.error : "no usable create answer");
        return;
    }
    struct ostore_change c;
    struct ostore_moved m;
    char meta[256];
    memset(&c, 0, sizeof(c));
    c.order_id = p->order_id;
    c.to = OSTATE_POSTED;
    c.scope = "carrier";
    c.action = "create_shipment";
    c.carrier_code = p->car->name;
    c.expedition_id = p->ship.expedition_id;
    c.tracking_number = p->ship.tracking_number;
    c.last_error = ostore_null;
    c.mirakl_tracking_updated = -1;
    snprintf(meta, sizeof(meta), "{\"carrier\":\"%s\",\"attempt\":%d,\"looked_up\":%s}",
             p->car->name, p->job->attempt, p->look_first ? "true" : "false");
    c.meta_json = meta;
    if (ord_move(ctx, p->job, &c, &m, p->res) != CV_OK)
        return;
    memset(&c, 0, sizeof(c));
    c.order_id = p->order_id;
    c.to = OSTATE_AWAITING_TRACKING;
    c.scope = "carrier";
    c.action = "await_tracking";
    c.mirakl_tracking_updated = -1;
    if (ord_move(ctx, p->job, &c, &m, p->res) != CV_OK)
        return;
    p->res->rc = CV_OK;
    if (m.state == OSTATE_TRACKED) {
        /* tracking came first and was kept: it applied on entering AWAITING_TRACKING */
        char key[160], body[128];
        snprintf(key, sizeof(key), "%s:push:%s", p->order_id,
                 p->order->attempts ? p->order->attempts : "0");
        snprintf(body, sizeof(body), "{\"order_id\":\"%s\"}", p->order_id);
        wrk_follow(ctx, p->job, p->res, "tracking-push", key, body, 0);
    }
    LOG_INFO("order.posted", "order_id=%s carrier=%s expedition_id=%s state=%s", p->order_id,
             p->car->name, p->ship.expedition_id,
             m.state >= 0 ? ostate_str((enum ostate)m.state) : "?");
}

void h_carrier_post(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res)
{
    struct post *ps = xcalloc(n, sizeof(*ps));
    for (size_t i = 0; i < n; i++) {
        ps[i].job = jobs[i];
        ps[i].res = &res[i];
        prepare(ctx, &ps[i]);
    }
    lookups(ctx, ps, n);
    creates(ctx, ps, n);
    for (size_t i = 0; i < n; i++) {
        finish(ctx, &ps[i]);
        if (ps[i].claimed && res[i].rc != CV_ERR_FENCED)
            ord_release(ctx, ps[i].job, ps[i].order_id);
        ostore_orders_free(ps[i].order, ps[i].order ? 1 : 0);
        cJSON_Delete(ps[i].payload);
    }
    wrk_out_flush(ctx);
    free(ps);
}
