/* mkl.c - Mirakl's seller API shapes (mkl.h). */
#include "mkl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "json.h"
#include "mem.h"

void mkl_list_req(struct ups_call *c, struct sbuf *path, const char *states, const char *since,
                  long long offset, int max)
{
    sbuf_adds(path, "/api/orders?order_state_codes=");
    car_url_escape(path, states);
    if (since && *since) {
        sbuf_adds(path, "&start_update_date=");
        car_url_escape(path, since);
    }
    sbuf_addf(path, "&offset=%lld&max=%d", offset, max);
    c->method = "GET";
    c->path = path->p;
    c->content_type = HTTPC_CT_NONE;
}

void mkl_ids_req(struct ups_call *c, struct sbuf *path, const char *const *ids, size_t n)
{
    sbuf_adds(path, "/api/orders?order_ids=");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sbuf_adds(path, "%2C");
        car_url_escape(path, ids[i]);
    }
    sbuf_addf(path, "&max=%zu", n > 100 ? (size_t)100 : n);
    c->method = "GET";
    c->path = path->p;
    c->content_type = HTTPC_CT_NONE;
}

static const char *own(struct mkl_page *p, char *s)
{
    p->owned = xrealloc(p->owned, (p->nowned + 1) * sizeof(*p->owned));
    p->owned[p->nowned++] = s;
    return s;
}

static const char *own_str(struct mkl_page *p, const cJSON *obj, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(it) ? own(p, xstrdup(it->valuestring)) : NULL;
}

int mkl_page_parse(const char *resp, size_t len, struct mkl_page *out)
{
    memset(out, 0, sizeof(*out));
    cJSON *root = resp ? json_parse(resp, len) : NULL;
    const cJSON *orders = cJSON_GetObjectItemCaseSensitive(root, "orders");
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(root, "total_count");
    int rc = -1;
    if (!cJSON_IsArray(orders))
        goto out;
    out->total_count = cJSON_IsNumber(total) ? (long long)total->valuedouble : 0;
    size_t n = (size_t)cJSON_GetArraySize(orders);
    out->orders = xcalloc(n ? n : 1, sizeof(*out->orders));
    const cJSON *o;
    cJSON_ArrayForEach(o, orders)
    {
        struct ostore_order_in *in = &out->orders[out->n];
        in->order_id = own_str(out, o, "order_id");
        if (!in->order_id || !in->order_id[0])
            continue;   /* a row we cannot name is skipped, not guessed */
        in->mirakl_state = own_str(out, o, "order_state");
        in->shipping_deadline = own_str(out, o, "shipping_deadline");
        in->mirakl_updated_at = own_str(out, o, "last_updated_date");
        const cJSON *cust = cJSON_GetObjectItemCaseSensitive(o, "customer");
        const cJSON *addr = cJSON_GetObjectItemCaseSensitive(cust, "shipping_address");
        in->country = own_str(out, addr, "country_iso_code");
        if (cust)
            in->customer_json = own(out, json_print(cust, NULL));
        const cJSON *lines = cJSON_GetObjectItemCaseSensitive(o, "order_lines");
        if (lines)
            in->lines_json = own(out, json_print(lines, NULL));
        /* the parcel's weight: quantity x unit weight over the lines */
        double kg = 0;
        const cJSON *l;
        cJSON_ArrayForEach(l, lines)
        {
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(l, "weight");
            const cJSON *q = cJSON_GetObjectItemCaseSensitive(l, "quantity");
            if (cJSON_IsNumber(w))
                kg += w->valuedouble * (cJSON_IsNumber(q) ? q->valuedouble : 1);
        }
        char *wt = xasprintf("%.3f", kg);
        in->weight_kg = own(out, wt);
        if (in->mirakl_updated_at && strcmp(in->mirakl_updated_at, out->max_updated) > 0 &&
            strlen(in->mirakl_updated_at) < sizeof(out->max_updated))
            snprintf(out->max_updated, sizeof(out->max_updated), "%s", in->mirakl_updated_at);
        out->n++;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

void mkl_page_free(struct mkl_page *p)
{
    for (size_t i = 0; i < p->nowned; i++)
        free(p->owned[i]);
    free(p->owned);
    free(p->orders);
    memset(p, 0, sizeof(*p));
}

static void order_path(struct sbuf *path, const char *order_id, const char *what)
{
    sbuf_adds(path, "/api/orders/");
    car_url_escape(path, order_id);
    sbuf_adds(path, what);
}

void mkl_tracking_req(struct ups_call *c, struct sbuf *path, struct sbuf *body,
                      const char *order_id, const char *carrier_code, const char *carrier_name,
                      const char *carrier_url, const char *tracking_number)
{
    order_path(path, order_id, "/tracking");
    sbuf_adds(body, "{\"carrier_code\":");
    sbuf_add_json_str(body, carrier_code);
    sbuf_adds(body, ",\"carrier_name\":");
    sbuf_add_json_str(body, carrier_name);
    sbuf_adds(body, ",\"carrier_url\":");
    sbuf_add_json_str(body, carrier_url);
    sbuf_adds(body, ",\"tracking_number\":");
    sbuf_add_json_str(body, tracking_number);
    sbuf_add(body, "}", 1);
    c->method = "PUT";
    c->path = path->p;
    c->body = body->p;
    c->body_len = body->len;
    c->content_type = HTTPC_CT_JSON;
}

void mkl_ship_req(struct ups_call *c, struct sbuf *path, const char *order_id)
{
    order_path(path, order_id, "/ship");
    c->method = "PUT";
    c->path = path->p;
    c->content_type = HTTPC_CT_NONE;
}

void mkl_error_code(const char *resp, size_t len, char *code, size_t cap, char *msg,
                    size_t msg_cap)
{
    cJSON *root = resp ? json_parse(resp, len) : NULL;
    car_json_str(root, "code", code, cap);
    car_json_str(root, "message", msg, msg_cap);
    cJSON_Delete(root);
}
