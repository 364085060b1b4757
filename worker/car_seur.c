/* car_seur.c - SEUR: a carrier that pushes tracking (webhooks).
 *
 *   POST /pic_token                   form grant_type=password, client_id, client_secret,
 *                                     username, password -> {access_token, expires_in}
 *   POST /pic/v1/shipments            Bearer; {"reference","receiver":{"name","address":
 *                                     {"streetName","postalCode","cityName","countryCode"}},
 *                                     "parcels":[{"weight"}]} -> {"data":{"shipmentCode",
 *                                     "ecb","reference"}}
 *   GET  /pic/v1/tracking-services/simplified?ref=R   the shipment of our reference, or 404
 * Errors: {"errors":[{"title","status","detail"}]} with a 4xx (validation) or 5xx.
 * Credentials: upstreams.seur.auth_user (client id), auth_secret (client secret),
 * account (user name), password. SEUR takes no idempotency key: a create whose
 * outcome is unknown is looked up by reference before it is sent again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "cfg.h"
#include "ostate.h"

static enum cv_rc seur_token(struct ups *u, void *arg, char **token, int64_t *ttl_ms, char *err,
                             size_t err_len)
{
    const struct ups_conf *c = ups_conf_of(u);
    const struct cfg *cfg = arg;
    const struct cfg_upstream *cu = &cfg->ups[CFG_UPS_SEUR];
    struct sbuf form;
    struct httpc_req r;
    enum cv_rc rc = CV_ERR_AUTH;
    sbuf_init(&form);
    car_form_add(&form, "grant_type", "password");
    car_form_add(&form, "client_id", c->auth_user);
    car_form_add(&form, "client_secret", c->auth_secret);
    car_form_add(&form, "username", cu->account);
    car_form_add(&form, "password", cu->password);
    char *url = xasprintf("%s/pic_token", c->url);
    memset(&r, 0, sizeof(r));
    r.method = "POST";
    r.url = url;
    r.body = form.p;
    r.body_len = form.len;
    r.content_type = HTTPC_CT_FORM;
    ups_call_raw(u, &r);
    if (r.cls == HTTPC_OK)
        rc = car_token_parse(&r, token, ttl_ms, err, err_len) == 0 ? CV_OK : CV_ERR_TRANSIENT;
    else if (r.cls == HTTPC_AUTH || r.cls == HTTPC_PERMANENT)
        snprintf(err, err_len, "seur token: refused (status %d)", r.status);
    else
        rc = httpc_class_rc(r.cls), snprintf(err, err_len, "seur token: %s", r.error);
    httpc_req_cleanup(&r);
    free(url);
    sbuf_cleanup(&form);
    return rc;
}

static const struct ups_auth seur_auth = { "bearer", seur_token, ups_auth_apply_bearer };

static void create_req(const struct car_order *o, size_t n, struct ups_call *c, struct sbuf *b)
{
    (void)n;
    sbuf_adds(b, "{\"reference\":");
    sbuf_add_json_str(b, o->order_id);
    sbuf_adds(b, ",\"receiver\":{\"name\":");
    sbuf_add_json_str(b, o->name ? o->name : "");
    sbuf_adds(b, ",\"address\":{\"streetName\":");
    sbuf_add_json_str(b, o->street ? o->street : "");
    sbuf_adds(b, ",\"postalCode\":");
    sbuf_add_json_str(b, o->zip ? o->zip : "");
    sbuf_adds(b, ",\"cityName\":");
    sbuf_add_json_str(b, o->city ? o->city : "");
    sbuf_adds(b, ",\"countryCode\":");
    sbuf_add_json_str(b, o->country ? o->country : "");
    sbuf_addf(b, "}},\"parcels\":[{\"weight\":%.3f}]}", o->weight_kg);
    c->method = "POST";
    c->path = "/pic/v1/shipments";
    c->body = b->p;
    c->body_len = b->len;
    c->content_type = HTTPC_CT_JSON;
}

/* {"data":{"shipmentCode","ecb"}} into out: 0, or -1. */
static int read_data(const char *resp, size_t len, struct car_shipment *out)
{
    cJSON *root = resp ? json_parse(resp, len) : NULL;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "data");
    car_json_str(d, "shipmentCode", out->expedition_id, sizeof(out->expedition_id));
    car_json_str(d, "ecb", out->tracking_number, sizeof(out->tracking_number));
    cJSON_Delete(root);
    return out->expedition_id[0] && out->tracking_number[0] ? 0 : -1;
}

/* The first error's detail (or title) of {"errors":[...]}. */
static void read_error(const char *resp, size_t len, char *out, size_t cap)
{
    cJSON *root = resp ? json_parse(resp, len) : NULL;
    const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "errors"), 0);
    char d[200];
    car_json_str(e, "detail", d, sizeof(d));
    if (!d[0])
        car_json_str(e, "title", d, sizeof(d));
    snprintf(out, cap, "seur: %s", d[0] ? d : "refused");
    cJSON_Delete(root);
}

static void create_parse(const struct ups_call *c, const struct car_order *o, size_t n,
                         struct car_shipment *out, enum car_verdict *v)
{
    (void)o;
    (void)n;
    if (c->cls == HTTPC_OK) {
        v[0] = read_data(c->resp, c->resp_len, &out[0]) == 0 ? CAR_CREATED : CAR_RETRY;
        if (v[0] == CAR_RETRY)
            snprintf(out[0].error, sizeof(out[0].error), "seur: a create answer without ids");
        return;
    }
    read_error(c->resp, c->resp_len, out[0].error, sizeof(out[0].error));
    v[0] = CAR_REFUSED;
}

static void lookup_req(const struct car_order *o, struct ups_call *c, struct sbuf *b)
{
    sbuf_adds(b, "/pic/v1/tracking-services/simplified?ref=");
    car_url_escape(b, o->order_id);
    c->method = "GET";
    c->path = b->p;
    c->body = NULL;
    c->body_len = 0;
    c->content_type = HTTPC_CT_NONE;
}

static int lookup_parse(const struct ups_call *c, struct car_shipment *out)
{
    if (c->outcome == UPS_DONE && c->status == 404)
        return 0;
    if (c->outcome != UPS_DONE || c->cls != HTTPC_OK)
        return -1;
    return read_data(c->resp, c->resp_len, out) == 0 ? 1 : -1;
}

/* SEUR's webhook statuses are already our words; its terminal flag comes
 * with the event (kept as given). */
static int status_map(const char *code, int *terminal)
{
    (void)terminal;
    return otrack_parse(code);
}

const struct car car_seur = {
    "seur", "SEUR", "https://www.seur.com/livetracking/?segOnlineIdentificador=",
    CFG_UPS_SEUR, &seur_auth, NULL, 0, create_req, create_parse, lookup_req, lookup_parse, NULL,
    status_map, NULL, NULL,
};
