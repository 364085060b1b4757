/* h_carrier_post.c - create each order's shipment at its carrier:
 * PENDING_POST -> POSTED -> AWAITING_TRACKING (seed 004, step 3).
 *
 * A batch of deliveries is worked in rounds so that the outside calls of the
 * whole batch are in flight at once (one worker process keeps hundreds of
 * carrier calls going without threads) and PostgreSQL sees two statements per
 * batch, not five per order:
 *   1. claim and read every order in one statement (ostore_claim_many);
 *      decide: already posted -> done;
 *      FAILED_POST on a fresh life of the job (a replay, an operator's new
 *      job) -> back to PENDING_POST first (the retry edge); no carrier yet ->
 *      the carrier rules;
 *   2. lookups: a job that may have sent its create before (attempt > 1, or
 *      any delivery before this one: a crash, a re-run after our own outage, a
 *      replay) looks the shipment up by our reference first, because carriers take no idempotency key: found -> use it, no
 *      second create;
 *   3. creates, grouped by carrier, several orders per request where the
 *      carrier takes batches (OnTime: up to upstreams.ontime.batch_max), every
 *      carrier's requests in one wave (ups_run_groups);
 *   4. every order's moves and the release of every claim in one statement
 *      (ostore_move_many).
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

enum post_end {
    END_NONE,        /* nothing to write: release only */
    END_POSTED,      /* created or found: POSTED -> AWAITING_TRACKING */
    END_FAILED,      /* FAILED_POST with fail_why; the job ends with fail_rc */
};

struct post {
    struct job *job;
    struct wrk_result *res;
    char order_id[80];
    struct ostore_claimed cl;
    const struct car *car;
    struct car_order co;
    char name[ADDR_MAX], street[ADDR_MAX], city[ADDR_MAX], zip[ADDR_MAX];
    char trace[33];
    int claimed;
    int active;                  /* still to be posted */
    int look_first;              /* a create may have been sent before */
    struct car_shipment ship;
    enum car_verdict verdict;
    int have_verdict;
    enum post_end end;
    enum cv_rc fail_rc;
    char fail_why[JOB_ERROR_MAX];
};

/* p ends FAILED_POST (written in round 4) with why; the job with rc. */
static void fail_post(struct post *p, enum cv_rc rc, const char *why)
{
    p->active = 0;
    p->end = END_FAILED;
    p->fail_rc = rc;
    snprintf(p->fail_why, sizeof(p->fail_why), "%s", why);
}

/* The transient end of an attempt: retry, or on the last attempt FAILED_POST
 * and dead. */
static void post_retry(struct post *p, enum cv_rc rc, int64_t delay_ms, const char *why)
{
    p->active = 0;
    if (p->job->attempt >= p->job->max_attempts) {
        fail_post(p, CV_ERR_TRANSIENT, why);
        return;
    }
    wrk_fail(p->res, rc, "%s", why);
    p->res->delay_ms = delay_ms;
}

/* Round 1 for one claimed order: decide what to do with it. */
static void decide(struct wrk_ctx *ctx, struct post *p, const cJSON *payload)
{
    if (!ord_step_start(ctx, p->job, p->order_id, (enum ostate)p->cl.state,
                        OSTATE_PENDING_POST, OSTATE_FAILED_POST, "carrier", "retry_post",
                        p->cl.last_error, p->res))
        return;
    const cJSON *cj = cJSON_GetObjectItemCaseSensitive(payload, "carrier");
    const char *carrier = cJSON_IsString(cj) ? cj->valuestring : p->cl.carrier_code;
    if (!carrier || !*carrier) {
        enum cv_rc rrc;
        carrier = ord_rules_pick(ctx, p->cl.country, p->cl.weight_kg ? atof(p->cl.weight_kg) : 0,
                                 &rrc);
        if (!carrier) {
            if (rrc == CV_ERR_UNAVAILABLE)
                wrk_fail(p->res, CV_ERR_UNAVAILABLE, "orders store: carrier rules unreadable");
            else
                fail_post(p, CV_ERR_PERMANENT, "no carrier rule matches this order");
            return;
        }
    }
    p->car = car_find(carrier);
    if (!p->car) {
        char why[96];
        snprintf(why, sizeof(why), "unknown carrier '%.40s'", carrier);
        fail_post(p, CV_ERR_PERMANENT, why);
        return;
    }
    ord_car_order_of(p->order_id, p->cl.customer, p->cl.country, p->cl.weight_kg, &p->co, p->name,
                     sizeof(p->name), p->street, p->city, p->zip, ADDR_MAX);
    /* Any earlier delivery of this job may have sent the create: a redelivery after a
     * crash, a re-run after our PostgreSQL refused the move (CV_ERR_UNAVAILABLE defers
     * without spending an attempt, and the settle resets `deliveries`), or a replay of a
     * life that ended FAILED_POST on an unknown outcome. The epoch counts every delivery
     * over all the job's lives, so look first whenever there was one before (both holes
     * were found by the chaos kit, tests/chaos). */
    p->look_first = p->job->attempt > 1 || p->job->epoch > 1;
    p->active = 1;
    p->res->rc = CV_OK;
}

/* Round 1: claim and read every order in one statement, then decide. */
static void prepare(struct wrk_ctx *ctx, struct post *ps, size_t n)
{
    struct ostore_claim_in *in = xcalloc(n, sizeof(*in));
    struct ostore_claimed *cl = xcalloc(n, sizeof(*cl));
    cJSON **payloads = xcalloc(n, sizeof(*payloads));
    for (size_t i = 0; i < n; i++) {
        struct post *p = &ps[i];
        payloads[i] = json_parse(p->job->payload, p->job->payload_len);
        car_json_str(payloads[i], "order_id", p->order_id, sizeof(p->order_id));
        ord_trace_id(p->job, p->trace);
        in[i].order_id = p->order_id;
        in[i].job_id = p->job->id;
        in[i].epoch = p->job->epoch;
    }
    enum cv_rc rc = ostore_claim_many(ctx->db, in, n, ctx->cfg->visibility_timeout_ms, cl);
    for (size_t i = 0; i < n; i++) {
        struct post *p = &ps[i];
        p->cl = cl[i];   /* the strings move to the post */
        if (rc != CV_OK) {
            wrk_fail(p->res, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(rc));
            continue;
        }
        switch (p->cl.result) {
        case OSTORE_OK:
            p->claimed = 1;
            decide(ctx, p, payloads[i]);
            break;
        case OSTORE_BUSY:
            /* another job works on this order now: wait for it, spend nothing */
            wrk_fail(p->res, CV_ERR_BUSY, "order %s is held by another job", p->order_id);
            p->res->delay_ms = 500;
            break;
        case OSTORE_FENCED:
            wrk_fail(p->res, CV_ERR_FENCED, "a newer delivery holds order %s", p->order_id);
            break;
        default:
            wrk_fail(p->res, CV_ERR_PERMANENT, "no such order: %s", p->order_id);
            break;
        }
    }
    for (size_t i = 0; i < n; i++)
        cJSON_Delete(payloads[i]);
    free(payloads);
    free(cl);
    free(in);
}

static void call_init(struct ups_call *c, const struct post *p)
{
    ord_call_init(c, p->job, p->trace, p->order_id);
    c->body_check = p->car->body_check;
}

/* Round 2: look up the orders whose create may have been sent already (all
 * carriers in one wave). */
static void lookups(struct wrk_ctx *ctx, struct post *ps, size_t n)
{
    struct ups_call *calls = xcalloc(n, sizeof(*calls));
    struct sbuf *bufs = xcalloc(n, sizeof(*bufs));
    struct ups_group *groups = xcalloc(n, sizeof(*groups));
    struct post **who = xcalloc(n, sizeof(*who));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        struct post *p = &ps[i];
        if (!p->active || !p->look_first)
            continue;
        sbuf_init(&bufs[m]);
        call_init(&calls[m], p);
        p->car->lookup_req(&p->co, &calls[m], &bufs[m]);
        groups[m].u = wrk_ups(ctx, p->car->ups_id);
        groups[m].calls = &calls[m];
        groups[m].n = 1;
        who[m++] = p;
    }
    if (m)
        ups_run_groups(groups, m);
    for (size_t k = 0; k < m; k++) {
        struct post *p = who[k];
        struct ups_call *c = &calls[k];
        int found = c->outcome == UPS_DONE ? p->car->lookup_parse(c, &p->ship) : -1;
        if (found == 1) {
            p->verdict = CAR_CREATED;
            p->have_verdict = 1;
            LOG_INFO("order.shipment_found", "order_id=%s carrier=%s expedition_id=%s",
                     p->order_id, p->car->name, p->ship.expedition_id);
        } else if (found < 0) {
            /* cannot tell whether it exists: never create blindly */
            if (c->outcome == UPS_DEFERRED) {
                p->active = 0;
                wrk_fail(p->res, CV_ERR_BUSY, "%s: %s", p->car->name, c->error);
                p->res->delay_ms = c->delay_ms;
            } else {
                post_retry(p, CV_ERR_TRANSIENT, c->retry_after_ms,
                           c->error[0] ? c->error : "shipment lookup failed");
            }
        }
        ups_call_cleanup(c);
        sbuf_cleanup(&bufs[k]);
    }
    free(calls);
    free(bufs);
    free(groups);
    free(who);
}

/* What a create's call (for the m orders op[0..m)) said, per order. */
static void create_outcome(const struct car *car, struct ups_call *uc, struct post **op,
                           const struct car_order *cos, size_t m)
{
    if (uc->outcome == UPS_DONE &&
        (uc->cls == HTTPC_OK || uc->cls == HTTPC_BODY_ERROR || uc->cls == HTTPC_PERMANENT)) {
        struct car_shipment *sh = xcalloc(m, sizeof(*sh));
        enum car_verdict *v = xcalloc(m, sizeof(*v));
        car->create_parse(uc, cos, m, sh, v);
        for (size_t k = 0; k < m; k++) {
            op[k]->ship = sh[k];
            op[k]->verdict = v[k];
            op[k]->have_verdict = 1;
        }
        free(sh);
        free(v);
        return;
    }
    for (size_t k = 0; k < m; k++) {
        struct post *p = op[k];
        char why[JOB_ERROR_MAX];
        if (uc->outcome == UPS_DEFERRED) {
            p->active = 0;
            wrk_fail(p->res, CV_ERR_BUSY, "%s: %s", car->name, uc->error);
            p->res->delay_ms = uc->delay_ms;
        } else if (uc->outcome == UPS_DONE && uc->cls == HTTPC_AUTH) {
            /* refreshed once and refused again: our credentials */
            snprintf(why, sizeof(why), "%s: authentication refused (%s)", car->name, uc->error);
            fail_post(p, CV_ERR_PERMANENT, why);
        } else {
            snprintf(why, sizeof(why), "%s: %s (%s)", car->name,
                     uc->error[0] ? uc->error : "create failed", httpc_class_str(uc->cls));
            post_retry(p, CV_ERR_TRANSIENT, uc->retry_after_ms, why);
        }
    }
}

/* Round 3: the creates, batched per carrier where the carrier allows it,
 * every carrier's requests in one wave. */
static void creates(struct wrk_ctx *ctx, struct post *ps, size_t n)
{
    struct ups_call *calls = xcalloc(n, sizeof(*calls));
    struct sbuf *bodies = xcalloc(n, sizeof(*bodies));
    struct ups_group *groups = xcalloc(n, sizeof(*groups));
    size_t *first = xcalloc(n, sizeof(*first));     /* call -> its first order */
    size_t *count = xcalloc(n, sizeof(*count));
    const struct car **carof = xcalloc(n, sizeof(*carof));
    struct post **order = xcalloc(n, sizeof(*order));
    struct car_order *cos = xcalloc(n, sizeof(*cos));
    char *done = xcalloc(n, 1);
    size_t nc = 0, no = 0, ng = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ps[i].active || ps[i].have_verdict || done[i])
            continue;
        const struct car *car = ps[i].car;
        int bmax = car->batch ? ctx->cfg->ups[car->ups_id].batch_max : 1;
        size_t c0 = nc;
        /* every pending post of this carrier, in calls of at most bmax orders */
        for (size_t k = i; k < n; k++) {
            if (!ps[k].active || ps[k].have_verdict || done[k] || ps[k].car != car)
                continue;
            done[k] = 1;
            order[no] = &ps[k];
            cos[no] = ps[k].co;
            if (nc == c0 || (int)count[nc - 1] >= bmax) {
                first[nc] = no;
                count[nc] = 0;
                carof[nc] = car;
                nc++;
            }
            count[nc - 1]++;
            no++;
        }
        for (size_t c = c0; c < nc; c++) {
            sbuf_init(&bodies[c]);
            call_init(&calls[c], order[first[c]]);
            if (count[c] > 1)
                calls[c].order_id = NULL;
            car->create_req(&cos[first[c]], count[c], &calls[c], &bodies[c]);
        }
        groups[ng].u = wrk_ups(ctx, car->ups_id);
        groups[ng].calls = &calls[c0];
        groups[ng].n = nc - c0;
        ng++;
    }
    if (ng)
        ups_run_groups(groups, ng);
    for (size_t c = 0; c < nc; c++) {
        create_outcome(carof[c], &calls[c], &order[first[c]], &cos[first[c]], count[c]);
        ups_call_cleanup(&calls[c]);
        sbuf_cleanup(&bodies[c]);
    }
    free(calls);
    free(bodies);
    free(groups);
    free(first);
    free(count);
    free(carof);
    free(order);
    free(cos);
    free(done);
}

/* Round 4: every order's moves and every claim's release in one statement. */
static void finish(struct wrk_ctx *ctx, struct post *ps, size_t n)
{
    struct ostore_plan *plans = xcalloc(n, sizeof(*plans));
    struct ostore_change *steps = xcalloc(2 * n, sizeof(*steps));
    struct ostore_moved *moved = xcalloc(n, sizeof(*moved));
    struct post **who = xcalloc(n, sizeof(*who));
    char (*meta)[200] = xcalloc(n, sizeof(*meta));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        struct post *p = &ps[i];
        if (!p->claimed || p->res->rc == CV_ERR_FENCED)
            continue;
        if (p->active && p->have_verdict) {
            if (p->verdict == CAR_REFUSED)
                fail_post(p, CV_ERR_PERMANENT, p->ship.error[0] ? p->ship.error : "refused");
            else if (p->verdict == CAR_RETRY)
                post_retry(p, CV_ERR_TRANSIENT, 0,
                           p->ship.error[0] ? p->ship.error : "no usable create answer");
            else
                p->end = END_POSTED;
        }
        struct ostore_plan *pl = &plans[m];
        struct ostore_change *c = &steps[2 * m];
        ord_plan(pl, p->job, p->order_id, p->trace, c);
        if (p->end == END_POSTED) {
            snprintf(meta[m], sizeof(meta[m]),
                     "{\"carrier\":\"%s\",\"attempt\":%d,\"looked_up\":%s}", p->car->name,
                     p->job->attempt, p->look_first ? "true" : "false");
            c[0].order_id = p->order_id;
            c[0].to = OSTATE_POSTED;
            c[0].scope = "carrier";
            c[0].action = "create_shipment";
            c[0].carrier_code = p->car->name;
            c[0].expedition_id = p->ship.expedition_id;
            c[0].tracking_number = p->ship.tracking_number;
            c[0].last_error = ostore_null;
            c[0].mirakl_tracking_updated = -1;
            c[0].meta_json = meta[m];
            c[1].order_id = p->order_id;
            c[1].to = OSTATE_AWAITING_TRACKING;
            c[1].scope = "carrier";
            c[1].action = "await_tracking";
            c[1].mirakl_tracking_updated = -1;
            pl->nsteps = 2;
        } else if (p->end == END_FAILED) {
            snprintf(meta[m], sizeof(meta[m]), "{\"carrier\":\"%s\",\"attempt\":%d}",
                     p->car ? p->car->name : "", p->job->attempt);
            c[0].order_id = p->order_id;
            c[0].to = OSTATE_FAILED_POST;
            c[0].scope = "carrier";
            c[0].action = "create_shipment";
            c[0].status = "ERROR";
            c[0].message = p->fail_why;
            c[0].last_error = p->fail_why;
            c[0].mirakl_tracking_updated = -1;
            c[0].meta_json = meta[m];
            pl->nsteps = 1;
        }
        who[m++] = p;
    }
    enum cv_rc rc = ostore_move_many(ctx->db, plans, m, moved);
    for (size_t k = 0; k < m; k++) {
        struct post *p = who[k];
        if (rc != CV_OK) {
            /* nothing was written (one statement): the delivery is redelivered */
            if (p->end != END_NONE)
                wrk_fail(p->res, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(rc));
            continue;
        }
        if (p->end == END_NONE)
            continue;
        if (ord_moved_rc(ctx, p->job, &plans[k].steps[plans[k].nsteps - 1], &moved[k], p->res) !=
            CV_OK)
            continue;
        if (p->end == END_FAILED) {
            wrk_fail(p->res, p->fail_rc, "%s", p->fail_why);
            LOG_WARN("order.failed_post", "order_id=%s carrier=%s error=%s", p->order_id,
                     p->car ? p->car->name : "", p->fail_why);
            continue;
        }
        p->res->rc = CV_OK;
        if (moved[k].state == OSTATE_TRACKED)
            /* tracking came first and was kept: it applied on entering AWAITING_TRACKING */
            ord_follow_push(ctx, p->job, p->order_id, p->res);
        LOG_INFO("order.posted", "order_id=%s carrier=%s expedition_id=%s state=%s",
                 p->order_id, p->car->name, p->ship.expedition_id,
                 moved[k].state >= 0 ? ostate_str((enum ostate)moved[k].state) : "?");
    }
    free(plans);
    free(steps);
    free(moved);
    free(who);
    free(meta);
}

void h_carrier_post(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res)
{
    struct post *ps = xcalloc(n, sizeof(*ps));
    for (size_t i = 0; i < n; i++) {
        ps[i].job = jobs[i];
        ps[i].res = &res[i];
    }
    prepare(ctx, ps, n);
    lookups(ctx, ps, n);
    creates(ctx, ps, n);
    finish(ctx, ps, n);
    for (size_t i = 0; i < n; i++)
        ostore_claimed_free(&ps[i].cl, 1);
    wrk_out_flush(ctx);
    free(ps);
}
