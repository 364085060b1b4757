/* ord.c - shared steps of the order handlers (ord.h). */
#include "ord.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "log.h"
#include "mem.h"

#define BUSY_DELAY_MS 500
#define RULES_TTL_MS 60000
#define RULES_MAX 64

void ord_trace_id(const struct job *j, char out[33])
{
    if (job_traceparent_valid(j->traceparent))
        memcpy(out, j->traceparent + 3, 32);
    else
        memset(out, '0', 32);
    out[32] = '\0';
}

enum cv_rc ord_claim(struct wrk_ctx *ctx, const struct job *j, const char *order_id,
                     struct wrk_result *r)
{
    enum ostore_result res;
    enum cv_rc rc = ostore_claim(ctx->db, order_id, j->id, j->epoch,
                                 ctx->cfg->visibility_timeout_ms, &res);
    if (rc != CV_OK) {
        wrk_fail(r, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(rc));
        return CV_ERR_UNAVAILABLE;
    }
    switch (res) {
    case OSTORE_OK: return CV_OK;
    case OSTORE_BUSY:
        /* another job works on this order now: wait for it, spend nothing */
        wrk_fail(r, CV_ERR_BUSY, "order %s is held by another job", order_id);
        r->delay_ms = BUSY_DELAY_MS;
        return CV_ERR_BUSY;
    case OSTORE_FENCED:
        wrk_fail(r, CV_ERR_FENCED, "a newer delivery holds order %s", order_id);
        return CV_ERR_FENCED;
    default:
        wrk_fail(r, CV_ERR_PERMANENT, "no such order: %s", order_id);
        return CV_ERR_NOT_FOUND;
    }
}

void ord_release(struct wrk_ctx *ctx, const struct job *j, const char *order_id)
{
    enum ostore_result res;
    if (ostore_release(ctx->db, order_id, j->id, j->epoch, &res) != CV_OK)
        LOG_WARN("order.release_failed", "order_id=%s job_id=%s", order_id, j->id);
}

/* Seed 000's error notification: an order that ends FAILED_* is announced on
 * the notify upstream (a Slack-compatible webhook), at most
 * upstreams.notify.rate_per_min a minute across the fleet (10 when unset).
 * Off while upstreams.notify.url is empty. */
static void notify_failed(struct wrk_ctx *ctx, const struct ostore_change *c)
{
    const struct cfg_upstream *n = &ctx->cfg->ups[CFG_UPS_NOTIFY];
    if (!n->url || !n->url[0])
        return;
    char text[512];
    snprintf(text, sizeof(text), "order %s is %s: %s", c->order_id, ostate_str(c->to),
             c->message ? c->message : "");
    struct ups *u = wrk_ups(ctx, CFG_UPS_NOTIFY);
    ups_notify_failure(ctx->rds, ctx->http, ups_conf_of(u),
                       n->rate_per_min > 0 ? n->rate_per_min : 10, text);
}

void ord_call_init(struct ups_call *c, const struct job *j, const char *trace,
                   const char *order_id)
{
    memset(c, 0, sizeof(*c));
    c->traceparent = j->traceparent;
    c->job_id = j->id;
    c->trace_id = trace;
    c->order_id = order_id;
    c->attempt = j->attempt;
    c->send_by_ms = j->send_by_ms;
}

enum cv_rc ord_move(struct wrk_ctx *ctx, const struct job *j, struct ostore_change *c,
                    struct ostore_moved *moved, struct wrk_result *r)
{
    char trace[33];
    ord_trace_id(j, trace);
    c->job_id = j->id;
    c->epoch = j->epoch;
    c->trace_id = trace;
    enum cv_rc rc = ostore_transition(ctx->db, c, moved);
    if (rc != CV_OK) {
        wrk_fail(r, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(rc));
        return CV_ERR_UNAVAILABLE;
    }
    return ord_moved_rc(ctx, j, c, moved, r);
}

enum cv_rc ord_moved_rc(struct wrk_ctx *ctx, const struct job *j, const struct ostore_change *c,
                        const struct ostore_moved *moved, struct wrk_result *r)
{
    switch (moved->result) {
    case OSTORE_OK:
        if (ostate_failed(c->to))
            notify_failed(ctx, c);
        return CV_OK;
    case OSTORE_SAME: return CV_OK;
    case OSTORE_FENCED:
        wrk_fail(r, CV_ERR_FENCED, "fenced moving order %s", c->order_id);
        return CV_ERR_FENCED;
    case OSTORE_BUSY:
        wrk_fail(r, CV_ERR_BUSY, "order %s is held by another job", c->order_id);
        r->delay_ms = BUSY_DELAY_MS;
        return CV_ERR_BUSY;
    case OSTORE_EDGE:
        LOG_WARN("order.edge_refused", "order_id=%s from=%s to=%s job_id=%s", c->order_id,
                 moved->state >= 0 ? ostate_str((enum ostate)moved->state) : "?",
                 ostate_str(c->to), j->id);
        wrk_fail(r, CV_ERR_CONFLICT, "order %s is %s: no edge to %s", c->order_id,
                 moved->state >= 0 ? ostate_str((enum ostate)moved->state) : "?",
                 ostate_str(c->to));
        return CV_ERR_CONFLICT;
    default:
        wrk_fail(r, CV_ERR_PERMANENT, "no such order: %s", c->order_id);
        return CV_ERR_NOT_FOUND;
    }
}

enum cv_rc ord_follow_push(struct wrk_ctx *ctx, const struct job *j, const char *order_id,
                           struct wrk_result *r)
{
    struct ostore_order *o = NULL;
    struct ostore_op *ops = NULL;
    size_t nops = 0;
    if (ostore_get(ctx->db, order_id, 0, &o, &ops, &nops) != CV_OK) {
        wrk_fail(r, CV_ERR_UNAVAILABLE, "orders store: cannot read order %s", order_id);
        return CV_ERR_UNAVAILABLE;
    }
    char key[160];
    struct sbuf body;
    sbuf_init(&body);
    snprintf(key, sizeof(key), "%s:push:%s", order_id, o->attempts ? o->attempts : "0");
    sbuf_adds(&body, "{\"order_id\":");
    sbuf_add_json_str(&body, order_id);
    sbuf_adds(&body, "}");
    wrk_follow(ctx, j, r, "tracking-push", key, body.p, 0);
    sbuf_cleanup(&body);
    ostore_orders_free(o, 1);
    ostore_ops_free(ops, nops);
    return CV_OK;
}

void ord_car_order(const struct ostore_order *o, struct car_order *out, char *name,
                   size_t name_cap, char *street, char *city, char *zip, size_t cap)
{
    ord_car_order_of(o->order_id, o->customer, o->country, o->weight_kg, out, name, name_cap,
                     street, city, zip, cap);
}

void ord_car_order_of(const char *order_id, const char *customer, const char *country,
                      const char *weight_kg, struct car_order *out, char *name, size_t name_cap,
                      char *street, char *city, char *zip, size_t cap)
{
    cJSON *cust = customer ? json_parse(customer, strlen(customer)) : NULL;
    const cJSON *addr = cJSON_GetObjectItemCaseSensitive(cust, "shipping_address");
    char first[64], last[64];
    car_json_str(cust, "firstname", first, sizeof(first));
    car_json_str(cust, "lastname", last, sizeof(last));
    snprintf(name, name_cap, "%s%s%s", first, first[0] && last[0] ? " " : "", last);
    car_json_str(addr, "street_1", street, cap);
    car_json_str(addr, "city", city, cap);
    car_json_str(addr, "zip_code", zip, cap);
    cJSON_Delete(cust);
    memset(out, 0, sizeof(*out));
    out->order_id = order_id;
    out->name = name;
    out->street = street;
    out->city = city;
    out->zip = zip;
    out->country = country ? country : "";
    out->weight_kg = weight_kg ? atof(weight_kg) : 0;
}

/* ---- carrier rules ------------------------------------------------------------ */

struct rule {
    int international;       /* -1 either */
    int op;                  /* 0 none, 1 '<', 2 '<=' */
    double kg;
    char carrier[32];
};

static struct rule rules[RULES_MAX];
static int nrules = -1;
static int64_t rules_at_ms;

static enum cv_rc rules_load(struct wrk_ctx *ctx)
{
    enum cv_rc rc;
    struct db_res *res = db_exec(ctx->db,
                                 "SELECT coalesce(international::int, -1), coalesce(weight_op, ''),"
                                 " coalesce(weight_kg, 0)::float8, carrier FROM carrier_rules"
                                 " WHERE enabled ORDER BY position",
                                 0, NULL, &rc);
    if (!res)
        return rc == CV_ERR_IO ? CV_ERR_UNAVAILABLE : rc;
    int n = db_res_rows(res);
    nrules = 0;
    for (int i = 0; i < n && nrules < RULES_MAX; i++) {
        struct rule *u = &rules[nrules++];
        u->international = atoi(db_res_get(res, i, 0));
        const char *op = db_res_get(res, i, 1);
        u->op = strcmp(op, "<") == 0 ? 1 : strcmp(op, "<=") == 0 ? 2 : 0;
        u->kg = atof(db_res_get(res, i, 2));
        snprintf(u->carrier, sizeof(u->carrier), "%s", db_res_get(res, i, 3));
    }
    db_res_free(res);
    rules_at_ms = clock_mono_ms();
    return CV_OK;
}

const char *ord_rules_pick(struct wrk_ctx *ctx, const char *country, double kg, enum cv_rc *rc)
{
    *rc = CV_OK;
    if (nrules < 0 || clock_mono_ms() - rules_at_ms > RULES_TTL_MS) {
        enum cv_rc lrc = rules_load(ctx);
        if (lrc != CV_OK && nrules < 0) {
            *rc = lrc;
            return NULL;
        }
    }
    int intl = country && *country && strcasecmp(country, ctx->cfg->orders_home_country) != 0;
    for (int i = 0; i < nrules; i++) {
        const struct rule *u = &rules[i];
        if (u->international >= 0 && u->international != intl)
            continue;
        if ((u->op == 1 && !(kg < u->kg)) || (u->op == 2 && !(kg <= u->kg)))
            continue;
        return u->carrier;
    }
    *rc = CV_ERR_NOT_FOUND;
    return NULL;
}

int ord_step_start(struct wrk_ctx *ctx, const struct job *j, const char *order_id,
                   enum ostate state, enum ostate from, enum ostate failed, const char *scope,
                   const char *retry_action, const char *last_error, struct wrk_result *r)
{
    if (state == failed && j->attempt == 1 && j->deliveries <= 1) {
        /* a fresh life of the job (a replay, an operator's new job): take the
         * retry edge back to where the step starts */
        struct ostore_change c;
        struct ostore_moved m;
        memset(&c, 0, sizeof(c));
        c.order_id = order_id;
        c.to = from;
        c.scope = scope;
        c.action = retry_action;
        c.mirakl_tracking_updated = -1;
        if (ord_move(ctx, j, &c, &m, r) != CV_OK)
            return 0;
        state = from;
    }
    if (state == from)
        return 1;
    /* done already (a duplicate job, a redelivery after the move), not there
     * yet (a sweep racing the pipeline), or failed by an earlier life: nothing
     * to do here, and the job's end says which */
    if (state == failed)
        wrk_fail(r, CV_ERR_PERMANENT, "order %s is %s: %s", order_id, ostate_str(failed),
                 last_error ? last_error : "");
    else
        r->rc = CV_OK;
    return 0;
}

void ord_plan(struct ostore_plan *pl, const struct job *j, const char *order_id,
              const char *trace_id, const struct ostore_change *steps)
{
    memset(pl, 0, sizeof(*pl));
    pl->order_id = order_id;
    pl->job_id = j->id;
    pl->epoch = j->epoch;
    pl->trace_id = trace_id;
    pl->release = 1;
    pl->steps = steps;
}
