/* car_ontime.c - OnTime: a JSON carrier that pushes tracking (webhooks) and
 * takes batches.
 *
 *   POST /oauth/token                form grant_type=client_credentials, client_id,
 *                                    client_secret -> {access_token, expires_in}
 *   POST /api/v1/shipments           Bearer; {"reference","recipient":{"name","address",
 *                                    "postal_code","city","country"},"weight_kg"}
 *                                    -> 201 {id, tracking_number, reference}; 422
 *                                    {"error","message"} when refused
 *   POST /api/v1/shipments/batch     Bearer; an array of 1..50 such objects -> 200
 *                                    {"results":[{"index","status":201,id,tracking_number}
 *                                    or {"index","status":422,"error","message"}]}; items
 *                                    are independent (a refused one stops no other)
 *   GET  /api/v1/shipments?reference=R   -> {"data":[{id, tracking_number, ...}]}
 * Credentials: upstreams.ontime.auth_user (client id), auth_secret (client
 * secret), through ups_auth_bearer_cc. Batches: upstreams.ontime.batch_max
 * orders per request (default 50, OnTime's own limit). OnTime takes no
 * idempotency key: a create whose outcome is unknown is looked up by
 * reference before it is sent again (h_carrier_post.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "cfg.h"
#include "ostate.h"

static void add_shipment(struct sbuf *b, const struct car_order *o)
{
    sbuf_adds(b, "{\"reference\":");
    sbuf_add_json_str(b, o->order_id);
    sbuf_adds(b, ",\"recipient\":{\"name\":");
    sbuf_add_json_str(b, o->name ? o->name : "");
    sbuf_adds(b, ",\"address\":");
    sbuf_add_json_str(b, o->street ? o->street : "");
    sbuf_adds(b, ",\"postal_code\":");
    sbuf_add_json_str(b, o->zip ? o->zip : "");
    sbuf_adds(b, ",\"city\":");
    sbuf_add_json_str(b, o->city ? o->city : "");
    sbuf_adds(b, ",\"country\":");
    sbuf_add_json_str(b, o->country ? o->country : "");
    sbuf_addf(b, "},\"weight_kg\":%.3f}", o->weight_kg);
}

/* One order: /api/v1/shipments with an object; several: /batch with an array. */
static void create_req(const struct car_order *o, size_t n, struct ups_call *c, struct sbuf *b)
{
    if (n == 1) {
        add_shipment(b, &o[0]);
        c->path = "/api/v1/shipments";
    } else {
        sbuf_adds(b, "[");
        for (size_t i = 0; i < n; i++) {
            if (i)
                sbuf_adds(b, ",");
            add_shipment(b, &o[i]);
        }
        sbuf_adds(b, "]");
        c->path = "/api/v1/shipments/batch";
    }
    c->method = "POST";
    c->body = b->p;
    c->body_len = b->len;
    c->content_type = HTTPC_CT_JSON;
}

/* A shipment object {id, tracking_number} into out: 0, or -1. */
static int read_shipment(const cJSON *it, struct car_shipment *out)
{
    car_json_str(it, "id", out->expedition_id, sizeof(out->expedition_id));
    car_json_str(it, "tracking_number", out->tracking_number, sizeof(out->tracking_number));
    return out->expedition_id[0] && out->tracking_number[0] ? 0 : -1;
}

/* {"error","message"} as "ontime: <message>". */
static void read_error(const cJSON *it, const struct ups_call *c, char *out, size_t cap)
{
    char m[200];
    car_json_str(it, "message", m, sizeof(m));
    if (!m[0])
        car_json_str(it, "error", m, sizeof(m));
    snprintf(out, cap, "ontime: %s", m[0] ? m : c->error[0] ? c->error : "refused");
}

static void create_parse(const struct ups_call *c, const struct car_order *o, size_t n,
                         struct car_shipment *out, enum car_verdict *v)
{
    cJSON *root = c->resp ? json_parse(c->resp, c->resp_len) : NULL;
    (void)o;
    for (size_t i = 0; i < n; i++)
        v[i] = CAR_RETRY;
    if (c->cls != HTTPC_OK) {
        /* the whole request was refused (a 4xx): every order of it, as it stands */
        for (size_t i = 0; i < n; i++) {
            read_error(root, c, out[i].error, sizeof(out[i].error));
            v[i] = CAR_REFUSED;
        }
        goto out;
    }
    if (n == 1 && !cJSON_GetObjectItemCaseSensitive(root, "results")) {
        if (read_shipment(root, &out[0]) == 0)
            v[0] = CAR_CREATED;
        goto out;
    }
    /* per-item results, matched by index: an item without one stays CAR_RETRY
     * (its create may or may not have happened: the retry looks it up) */
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "results"))
    {
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(it, "index");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(it, "status");
        if (!cJSON_IsNumber(ix) || ix->valuedouble < 0 || ix->valuedouble >= (double)n)
            continue;
        size_t k = (size_t)ix->valuedouble;
        int status = cJSON_IsNumber(st) ? st->valueint : 0;
        if (status >= 200 && status < 300 && read_shipment(it, &out[k]) == 0) {
            v[k] = CAR_CREATED;
        } else if (status >= 400 && status < 500 && status != 429 && status != 408) {
            read_error(it, c, out[k].error, sizeof(out[k].error));
            v[k] = CAR_REFUSED;
        }
    }
out:
    for (size_t i = 0; i < n; i++)
        if (v[i] == CAR_RETRY && !out[i].error[0])
            snprintf(out[i].error, sizeof(out[i].error), "ontime: no result for this order");
    cJSON_Delete(root);
}

static void lookup_req(const struct car_order *o, struct ups_call *c, struct sbuf *b)
{
    sbuf_adds(b, "/api/v1/shipments?reference=");
    car_url_escape(b, o->order_id);
    c->method = "GET";
    c->path = b->p;
    c->body = NULL;
    c->body_len = 0;
    c->content_type = HTTPC_CT_NONE;
}

static int lookup_parse(const struct ups_call *c, struct car_shipment *out)
{
    if (c->outcome != UPS_DONE || c->cls != HTTPC_OK)
        return -1;
    cJSON *root = c->resp ? json_parse(c->resp, c->resp_len) : NULL;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    int found = -1;
    if (cJSON_IsArray(data))
        found = cJSON_GetArraySize(data) == 0 ? 0
                : read_shipment(cJSON_GetArrayItem(data, 0), out) == 0 ? 1
                                                                        : -1;
    cJSON_Delete(root);
    return found;
}

/* OnTime's webhooks carry our words (ACCEPTED ... EXCEPTION); its API's own
 * lower-case states are mapped too. */
static const struct car_status statuses[] = {
    { "CREATED", OTRACK_ACCEPTED, 0 },
    { "PICKED_UP", OTRACK_IN_TRANSIT, 0 },
    { "OUT_FOR_DELIVERY", OTRACK_OUT_FOR_DELIVERY, 0 },
    { "RETURNED", OTRACK_EXCEPTION, 1 },
    { "LOST", OTRACK_EXCEPTION, 1 },
    { "CANCELLED", OTRACK_EXCEPTION, 1 },
    { NULL, 0, 0 },
};

static int status_map(const char *code, int *terminal)
{
    int s = otrack_parse(code);
    return s >= 0 ? s : car_status_lookup(statuses, code, terminal);
}

const struct car car_ontime = {
    .name = "ontime",
    .label = "OnTime",
    .tracking_url = "",
    .ups_id = CFG_UPS_ONTIME,
    .auth = &ups_auth_bearer_cc,
    .auth_arg = "/oauth/token",
    .batch = 1,
    .create_req = create_req,
    .create_parse = create_parse,
    .lookup_req = lookup_req,
    .lookup_parse = lookup_parse,
    .status_map = status_map,
};
