#include "sim_mirakl.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "clock.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "sim.h"
#include "sim_admin.h"
#include "sim_table.h"
#include "uuid.h"

/* Demo credentials (changeable: POST /admin/mirakl/credentials). */
static const struct sim_cred_def creds[] = {
    { "shop_key", "mirakl-demo-shop-key-0001" },
};

#define ORDERS_MAX (1u << 20)
#define LINES_MAX 3
#define OR11_MAX 100
#define OR11_DEFAULT 10
#define GENERATE_MAX 10000
#define STATS_ORDERS 10000
#define RATE_TICK_MS 100
#define PREFIX "/mirakl/api/orders"

enum mk_state { MK_WAITING_ACCEPTANCE, MK_SHIPPING, MK_SHIPPED, MK_CANCELED, MK_NSTATES };
static const char *const state_names[MK_NSTATES] = { "WAITING_ACCEPTANCE", "SHIPPING",
                                                     "SHIPPED", "CANCELED" };

enum mk_op { OP_OR11, OP_OR21, OP_OR23, OP_OR24, OP_N };
static const char *const op_names[OP_N] = { "OR11", "OR21", "OR23", "OR24" };

struct mk_line {
    char sku[24];
    char title[48];
    int quantity;
    double weight_kg;                    /* per unit */
    double price;                        /* per unit */
};

struct mk_order {
    char id[24];
    enum mk_state state;
    int64_t created_ms, updated_ms, deadline_ms;
    char firstname[24], lastname[24], street[64], city[32], zip[12], country[3];
    int nlines;
    struct mk_line lines[LINES_MAX];
    char carrier_code[32], carrier_name[48], carrier_url[128], tracking[48];
    int32_t or21, or23, or24;
    int32_t ships;               /* OR24 calls that shipped the order (the effect) */
};

struct sim_mirakl {
    struct sim_sys sys;                  /* first */
    struct mk_order *orders;             /* in creation order */
    uint32_t norders, cap;
    struct sim_table *index;             /* order_id -> uint32_t position */
    int64_t next_no;
    int64_t op_calls[OP_N];
    int budget[OP_N];                    /* per minute; 0 = none */
    int64_t budget_minute[OP_N];         /* the minute the counts are for */
    int budget_used[OP_N];
    double rate;                         /* orders per second */
    double rate_acc;
    struct event *rate_timer;
    struct sim_rng gen_rng;              /* the continuous generator's */
    int64_t gen_count;
};

/* ---- orders -------------------------------------------------------------------- */

static struct mk_order *order_find(struct sim_mirakl *m, const char *id)
{
    const uint32_t *pos = sim_table_find(m->index, id, strlen(id));
    return pos ? &m->orders[*pos] : NULL;
}

/* A new order with an id (given, or the next MK-nnnnnnnn-A), or NULL when the id
 * is taken or the store is full. */
static struct mk_order *order_add(struct sim_mirakl *m, const char *id)
{
    char gen[24];
    if (!id) {
        snprintf(gen, sizeof(gen), "MK-%08lld-A", (long long)m->next_no++);
        id = gen;
    }
    if (m->norders >= ORDERS_MAX || strlen(id) >= sizeof(((struct mk_order *)0)->id))
        return NULL;
    int created;
    uint32_t *pos = sim_table_get_or_add(m->index, id, strlen(id), &created);
    if (!pos || !created)
        return NULL;
    if (m->norders == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->orders = xrealloc(m->orders, m->cap * sizeof(*m->orders));
    }
    *pos = m->norders;
    struct mk_order *o = &m->orders[m->norders++];
    memset(o, 0, sizeof(*o));
    snprintf(o->id, sizeof(o->id), "%s", id);
    o->state = MK_SHIPPING;
    o->created_ms = o->updated_ms = clock_wall_ms();
    o->deadline_ms = o->created_ms + 2 * 86400000LL;
    return o;
}

static void order_touch(struct mk_order *o)
{
    int64_t now = clock_wall_ms();
    o->updated_ms = now > o->updated_ms ? now : o->updated_ms + 1;
}

static double total_weight(const struct mk_order *o)
{
    double w = 0;
    for (int i = 0; i < o->nlines; i++)
        w += o->lines[i].weight_kg * o->lines[i].quantity;
    return w;
}

static double total_price(const struct mk_order *o)
{
    double p = 0;
    for (int i = 0; i < o->nlines; i++)
        p += o->lines[i].price * o->lines[i].quantity;
    return p;
}

/* Fill o as the n-th generated order: its total weight and country cycle through
 * the carrier rules (< 1 kg, 1-5 kg, > 5 kg in Spain; then Portugal, France). */
static void order_generate(struct mk_order *o, int64_t n, struct sim_rng *r)
{
    static const char *const first[] = { "Lucia", "Hugo", "Martina", "Pablo", "Sofia", "Joao",
                                         "Claire", "Mateo" };
    static const char *const last[] = { "Garcia", "Martinez", "Lopez", "Sanchez", "Silva",
                                        "Dubois", "Fernandez", "Ruiz" };
    static const struct {
        const char *country, *city, *zip;
        double wmin, wmax;
    } kinds[] = {
        { "ES", "Madrid", "28013", 0.1, 0.95 },
        { "ES", "Valencia", "46001", 1.0, 5.0 },
        { "ES", "Sevilla", "41001", 5.5, 30.0 },
        { "PT", "Lisboa", "1100-148", 0.2, 12.0 },
        { "FR", "Lyon", "69001", 0.2, 12.0 },
    };
    const int nkinds = (int)(sizeof(kinds) / sizeof(kinds[0]));
    int k = (int)(n % nkinds);
    double target = kinds[k].wmin + sim_rng_unit(r) * (kinds[k].wmax - kinds[k].wmin);
    target = floor(target * 1000 + 0.5) / 1000;
    snprintf(o->firstname, sizeof(o->firstname), "%s", first[sim_rng_next(r) % 8]);
    snprintf(o->lastname, sizeof(o->lastname), "%s", last[sim_rng_next(r) % 8]);
    snprintf(o->street, sizeof(o->street), "Calle Mayor %d", (int)(sim_rng_next(r) % 200) + 1);
    snprintf(o->city, sizeof(o->city), "%s", kinds[k].city);
    snprintf(o->zip, sizeof(o->zip), "%s", kinds[k].zip);
    snprintf(o->country, sizeof(o->country), "%s", kinds[k].country);
    o->nlines = 1 + (int)(sim_rng_next(r) % 2);
    for (int i = 0; i < o->nlines; i++) {
        struct mk_line *l = &o->lines[i];
        int sku = (int)(sim_rng_next(r) % 9000) + 1000;
        snprintf(l->sku, sizeof(l->sku), "SKU-%d", sku);
        snprintf(l->title, sizeof(l->title), "Product %d", sku);
        l->quantity = 1;
        /* the weight splits over the lines; the total stays in its band */
        l->weight_kg = floor(target / o->nlines * 1000) / 1000;
        l->price = (double)(sim_rng_next(r) % 9000 + 500) / 100;
    }
    o->lines[0].weight_kg += floor((target - total_weight(o)) * 1000 + 0.5) / 1000;
}

static void put_order(struct evbuffer *b, const struct mk_order *o, int admin)
{
    char cr[CLOCK_RFC3339_LEN], up[CLOCK_RFC3339_LEN], dl[CLOCK_RFC3339_LEN];
    clock_rfc3339(o->created_ms, cr);
    clock_rfc3339(o->updated_ms, up);
    clock_rfc3339(o->deadline_ms, dl);
    evbuffer_add_printf(b, "{\"order_id\":");
    sim_put_json_str(b, o->id);
    evbuffer_add_printf(b, ",\"order_state\":\"%s\",\"created_date\":\"%s\","
                           "\"last_updated_date\":\"%s\",\"shipping_deadline\":\"%s\","
                           "\"customer\":{\"firstname\":",
                        state_names[o->state], cr, up, dl);
    sim_put_json_str(b, o->firstname);
    evbuffer_add_printf(b, ",\"lastname\":");
    sim_put_json_str(b, o->lastname);
    evbuffer_add_printf(b, ",\"shipping_address\":{\"firstname\":");
    sim_put_json_str(b, o->firstname);
    evbuffer_add_printf(b, ",\"lastname\":");
    sim_put_json_str(b, o->lastname);
    evbuffer_add_printf(b, ",\"street_1\":");
    sim_put_json_str(b, o->street);
    evbuffer_add_printf(b, ",\"city\":");
    sim_put_json_str(b, o->city);
    evbuffer_add_printf(b, ",\"zip_code\":");
    sim_put_json_str(b, o->zip);
    evbuffer_add_printf(b, ",\"country_iso_code\":");
    sim_put_json_str(b, o->country);
    evbuffer_add_printf(b, "}},\"order_lines\":[");
    for (int i = 0; i < o->nlines; i++) {
        const struct mk_line *l = &o->lines[i];
        evbuffer_add_printf(b, "%s{\"order_line_id\":\"%s-%d\",\"order_line_state\":\"%s\","
                               "\"offer_sku\":",
                            i ? "," : "", o->id, i + 1, state_names[o->state]);
        sim_put_json_str(b, l->sku);
        evbuffer_add_printf(b, ",\"product_title\":");
        sim_put_json_str(b, l->title);
        evbuffer_add_printf(b, ",\"quantity\":%d,\"weight\":%.3f,\"price\":%.2f}", l->quantity,
                            l->weight_kg, l->price * l->quantity);
    }
    evbuffer_add_printf(b, "],\"total_price\":%.2f,\"currency_iso_code\":\"EUR\"",
                        total_price(o));
    if (o->tracking[0] || o->carrier_code[0]) {
        evbuffer_add_printf(b, ",\"shipping_carrier_code\":");
        sim_put_json_str(b, o->carrier_code);
        evbuffer_add_printf(b, ",\"shipping_company\":");
        sim_put_json_str(b, o->carrier_name);
        evbuffer_add_printf(b, ",\"shipping_tracking\":");
        sim_put_json_str(b, o->tracking);
        evbuffer_add_printf(b, ",\"shipping_tracking_url\":");
        sim_put_json_str(b, o->carrier_url);
    }
    if (admin)
        evbuffer_add_printf(b, ",\"or21_calls\":%d,\"or23_calls\":%d,\"or24_calls\":%d",
                            (int)o->or21, (int)o->or23, (int)o->or24);
    evbuffer_add(b, "}", 1);
}

/* ---- the error shape ------------------------------------------------------------- */

static void put_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    evbuffer_add_printf(b, "{\"status\":%d,\"code\":", status);
    sim_put_json_str(b, code);
    evbuffer_add_printf(b, ",\"message\":");
    sim_put_json_str(b, msg);
    evbuffer_add(b, "}", 1);
}

/* ---- gates: auth and the per-operation budget ---------------------------------------- */

/* 1 when it answered (401, or 429 over the operation's budget). */
static int auth_budget_or_reply(struct sim *s, struct sim_mirakl *m, const struct sim_call *c,
                                enum mk_op op)
{
    const char *key = evhttp_find_header(evhttp_request_get_input_headers(c->req),
                                         "Authorization");
    if (!sim_sys_cred_eq(&m->sys, "shop_key", key)) {
        m->sys.stats.unauthorized++;
        sim_sys_fail(s, &m->sys, c, 401, "UNAUTHORIZED", "Unauthorized: invalid shop key");
        return 1;
    }
    m->op_calls[op]++;
    if (m->budget[op] > 0) {
        int64_t now = clock_wall_ms(), minute = now / 60000;
        if (minute != m->budget_minute[op]) {
            m->budget_minute[op] = minute;
            m->budget_used[op] = 0;
        }
        if (m->budget_used[op] >= m->budget[op]) {
            int wait_s = (int)(((minute + 1) * 60000 - now + 999) / 1000);
            sim_sys_throttle(s, &m->sys, c, wait_s > 0 ? wait_s : 1);
            return 1;
        }
        m->budget_used[op]++;
    }
    return 0;
}

/* ---- handlers ------------------------------------------------------------------------- */

/* 1 when name is one of the comma-separated words of list. */
static int listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p += len + (e ? 1 : 0);
    }
    return 0;
}

static void h_or11(struct sim *s, struct sim_mirakl *m, const struct sim_call *c)
{
    char states[256] = "", since[64] = "", ids[2048] = "", num[24];
    int64_t since_ms = 0, offset = 0, max = OR11_DEFAULT;
    char *end;

    if (auth_budget_or_reply(s, m, c, OP_OR11))
        return;
    sim_query(c, "order_state_codes", states, sizeof(states));
    sim_query(c, "order_ids", ids, sizeof(ids));
    if (sim_query(c, "start_update_date", since, sizeof(since))) {
        for (char *p = since; *p; p++)   /* an unencoded '+' in the offset arrives as ' ' */
            if (*p == ' ')
                *p = '+';
        if (clock_parse_rfc3339(since, &since_ms) != 0) {
            sim_sys_fail(s, &m->sys, c, 400, "INVALID_PARAMETER",
                         "start_update_date: must be an ISO 8601 date-time");
            return;
        }
    }
    if (sim_query(c, "offset", num, sizeof(num))) {
        offset = strtoll(num, &end, 10);
        if (end == num || *end || offset < 0) {
            sim_sys_fail(s, &m->sys, c, 400, "INVALID_PARAMETER", "offset: must be >= 0");
            return;
        }
    }
    if (sim_query(c, "max", num, sizeof(num))) {
        max = strtoll(num, &end, 10);
        if (end == num || *end || max < 1 || max > OR11_MAX) {
            sim_sys_fail(s, &m->sys, c, 400, "INVALID_PARAMETER", "max: must be 1..100");
            return;
        }
    }
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    int64_t total = 0, shown = 0;
    evbuffer_add_printf(b, "{\"orders\":[");
    for (uint32_t i = 0; i < m->norders; i++) {
        const struct mk_order *o = &m->orders[i];
        if ((states[0] && !listed(states, state_names[o->state])) || o->updated_ms < since_ms ||
            (ids[0] && !listed(ids, o->id)))
            continue;
        if (total++ < offset || shown >= max)
            continue;
        if (shown++)
            evbuffer_add(b, ",", 1);
        put_order(b, o, 0);
    }
    evbuffer_add_printf(b, "],\"total_count\":%lld}", (long long)total);
    sim_sys_answer(s, &m->sys, c, 200, 0);
}

/* Copy a string field of a JSON body into out; 0 when absent or not a string. */
static int str_field(const cJSON *root, const char *key, char *out, size_t outlen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsString(it) || strlen(it->valuestring) >= outlen)
        return 0;
    snprintf(out, outlen, "%s", it->valuestring);
    return 1;
}

static void h_or23(struct sim *s, struct sim_mirakl *m, const struct sim_call *c,
                   struct mk_order *o)
{
    const char *body;
    size_t len;
    char code[32] = "", name[48] = "", url[128] = "", trk[48] = "";
    cJSON *root = NULL;
    o->or23++;
    if (sim_body(c, &body, &len) != CV_OK || !(root = json_parse(body, len)) ||
        !cJSON_IsObject(root)) {
        sim_sys_fail(s, &m->sys, c, 400, "INVALID_BODY", "body: must be a JSON object");
        goto out;
    }
    str_field(root, "carrier_code", code, sizeof(code));
    str_field(root, "carrier_name", name, sizeof(name));
    str_field(root, "carrier_url", url, sizeof(url));
    if (!str_field(root, "tracking_number", trk, sizeof(trk)) || !trk[0] ||
        (!code[0] && !name[0])) {
        sim_sys_fail(s, &m->sys, c, 400, "INVALID_PARAMETER",
                     "tracking_number and carrier_code or carrier_name are required");
        goto out;
    }
    if (o->state != MK_SHIPPING && o->state != MK_SHIPPED) {
        sim_sys_fail(s, &m->sys, c, 400, "ORDER_INVALID_STATE",
                     "the order's state does not allow updating its tracking");
        goto out;
    }
    memcpy(o->carrier_code, code, sizeof(code));
    memcpy(o->carrier_name, name, sizeof(name));
    memcpy(o->carrier_url, url, sizeof(url));
    memcpy(o->tracking, trk, sizeof(trk));
    order_touch(o);
    sim_sys_answer(s, &m->sys, c, 204, 1);
out:
    cJSON_Delete(root);
}

static void h_order_op(struct sim *s, struct sim_mirakl *m, const struct sim_call *c)
{
    /* /mirakl/api/orders/{id}/{accept|tracking|ship} */
    const char *rest = c->path + strlen(PREFIX);
    char id[24];
    const char *slash = rest[0] == '/' ? strchr(rest + 1, '/') : NULL;
    size_t idlen = slash ? (size_t)(slash - rest - 1) : 0;
    enum mk_op op;
    if (!slash || idlen == 0 || idlen >= sizeof(id) ||
        evhttp_request_get_command(c->req) != EVHTTP_REQ_PUT) {
        sim_sys_fail(s, &m->sys, c, 404, "NOT_FOUND", "no such operation");
        return;
    }
    if (strcmp(slash, "/accept") == 0)
        op = OP_OR21;
    else if (strcmp(slash, "/tracking") == 0)
        op = OP_OR23;
    else if (strcmp(slash, "/ship") == 0)
        op = OP_OR24;
    else {
        sim_sys_fail(s, &m->sys, c, 404, "NOT_FOUND", "no such operation");
        return;
    }
    if (auth_budget_or_reply(s, m, c, op))
        return;
    memcpy(id, rest + 1, idlen);
    id[idlen] = '\0';
    struct mk_order *o = order_find(m, id);
    if (!o) {
        sim_sys_fail(s, &m->sys, c, 404, "ORDER_NOT_FOUND", "Order not found");
        return;
    }
    if (op == OP_OR23) {
        h_or23(s, m, c, o);
        return;
    }
    if (op == OP_OR21) {
        o->or21++;
        if (o->state != MK_WAITING_ACCEPTANCE) {
            sim_sys_fail(s, &m->sys, c, 400, "ORDER_INVALID_STATE",
                         "the order is not waiting for acceptance");
            return;
        }
        o->state = MK_SHIPPING;
    } else {
        o->or24++;
        if (o->state != MK_SHIPPING || !o->tracking[0]) {
            sim_sys_fail(s, &m->sys, c, 400, "ORDER_INVALID_STATE",
                         o->state == MK_SHIPPING ? "the order has no tracking yet"
                                                 : "the order is not in SHIPPING");
            return;
        }
        o->state = MK_SHIPPED;
        o->ships++;
    }
    order_touch(o);
    sim_sys_answer(s, &m->sys, c, 204, 1);
}

static void h_orders(struct sim *s, const struct sim_call *c)
{
    struct sim_mirakl *m = (struct sim_mirakl *)s->sys[SIM_SYS_MIRAKL];
    if (sim_sys_gate(s, &m->sys, c))
        return;
    const char *rest = c->path + strlen(PREFIX);
    if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
        if (evhttp_request_get_command(c->req) != EVHTTP_REQ_GET)
            sim_sys_fail(s, &m->sys, c, 405, "METHOD_NOT_ALLOWED", "use GET");
        else
            h_or11(s, m, c);
        return;
    }
    if (rest[0] != '/') {
        sim_sys_fail(s, &m->sys, c, 404, "NOT_FOUND", "no such path");
        return;
    }
    h_order_op(s, m, c);
}

/* ---- the generator ------------------------------------------------------------------------ */

static int generate(struct sim_mirakl *m, int64_t n, struct sim_rng *r, struct evbuffer *ids)
{
    int made = 0;
    for (int64_t i = 0; i < n; i++) {
        struct mk_order *o = order_add(m, NULL);
        if (!o)
            break;
        order_generate(o, i, r);
        if (ids) {
            evbuffer_add_printf(ids, "%s", made ? "," : "");
            sim_put_json_str(ids, o->id);
        }
        made++;
    }
    return made;
}

static void on_rate_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sim_mirakl *m = arg;
    (void)fd;
    (void)what;
    if (m->rate <= 0)
        return;
    m->rate_acc += m->rate * RATE_TICK_MS / 1000.0;
    int64_t n = (int64_t)m->rate_acc;
    m->rate_acc -= (double)n;
    for (int64_t i = 0; i < n; i++) {
        struct mk_order *o = order_add(m, NULL);
        if (!o)
            break;
        order_generate(o, m->gen_count++, &m->gen_rng);
    }
}

/* ---- admin ---------------------------------------------------------------------------------- */

/* One explicit order of POST /admin/mirakl/orders. */
static int explicit_order(struct sim_mirakl *m, const cJSON *it, struct evbuffer *ids, int first,
                          const char **why)
{
    char id[24] = "", state[24] = "";
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(it, "weight");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(it, "quantity");
    *why = "orders[]: each needs weight (kg, > 0)";
    if (!cJSON_IsObject(it) || !cJSON_IsNumber(w) || !(w->valuedouble > 0) ||
        w->valuedouble > 1000)
        return -1;
    int qty = cJSON_IsNumber(q) && q->valuedouble >= 1 && q->valuedouble <= 100
                  ? (int)q->valuedouble : 1;
    str_field(it, "order_id", id, sizeof(id));
    enum mk_state st = MK_SHIPPING;
    if (str_field(it, "order_state", state, sizeof(state))) {
        int k = 0;
        while (k < MK_NSTATES && strcmp(state_names[k], state) != 0)
            k++;
        *why = "orders[].order_state: unknown state";
        if (k == MK_NSTATES)
            return -1;
        st = (enum mk_state)k;
    }
    struct mk_order *o = order_add(m, id[0] ? id : NULL);
    *why = "orders[].order_id: taken, or the store is full";
    if (!o)
        return -1;
    struct sim_rng r;
    sim_rng_seed(&r, (uint64_t)m->next_no * 2654435761u + 1);
    order_generate(o, 0, &r);            /* names and a line; then what was given */
    o->state = st;
    o->nlines = 1;
    o->lines[0].quantity = qty;
    o->lines[0].weight_kg = w->valuedouble / qty;
    str_field(it, "country_iso_code", o->country, sizeof(o->country));
    str_field(it, "zip_code", o->zip, sizeof(o->zip));
    str_field(it, "city", o->city, sizeof(o->city));
    str_field(it, "street_1", o->street, sizeof(o->street));
    evbuffer_add_printf(ids, "%s", first ? "" : ",");
    sim_put_json_str(ids, o->id);
    return 0;
}

static void admin_orders_post(struct sim_mirakl *m, const struct sim_call *c)
{
    const char *why = NULL;
    int64_t n = 0, seed = 1;
    cJSON *root = NULL;
    struct evbuffer *ids = evbuffer_new();
    CV_ASSERT(ids);
    root = sim_admin_json_or_reply(c);
    if (!root)
        goto out;
    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(root, "generate");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "orders");
    if (gen) {
        const cJSON *sd = cJSON_GetObjectItemCaseSensitive(root, "seed");
        if (sim_admin_int_of(gen, 1, GENERATE_MAX, &n) ||
            (sd && sim_admin_int_of(sd, 1, INT64_MAX / 2, &seed))) {
            sim_reply_error(c, 400, cv_rc_str(CV_ERR_INVALID),
                            "generate: 1..10000, seed: a positive integer");
            goto out;
        }
        struct sim_rng r;
        sim_rng_seed(&r, (uint64_t)seed);
        generate(m, n, &r, ids);
    } else if (cJSON_IsArray(list) && cJSON_GetArraySize(list) <= GENERATE_MAX) {
        int i = 0;
        for (const cJSON *it = list->child; it; it = it->next, i++) {
            if (explicit_order(m, it, ids, i == 0, &why) != 0) {
                sim_reply_error(c, 400, cv_rc_str(CV_ERR_INVALID), why);
                goto out;
            }
        }
    } else {
        sim_reply_error(c, 400, cv_rc_str(CV_ERR_INVALID),
                        "body: needs generate (with seed) or orders (an array)");
        goto out;
    }
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    evbuffer_add_printf(b, "{\"created\":[");
    evbuffer_add_buffer(b, ids);
    evbuffer_add_printf(b, "]}");
    sim_reply(c, 200);
out:
    evbuffer_free(ids);
    cJSON_Delete(root);
}

static void admin_budget(struct sim_mirakl *m, const struct sim_call *c)
{
    int next[OP_N];
    cJSON *root = NULL;
    memcpy(next, m->budget, sizeof(next));
    root = sim_admin_json_or_reply(c);
    if (!root)
        goto out;
    for (const cJSON *it = root->child; it; it = it->next) {
        int op = 0;
        int64_t v;
        while (op < OP_N && strcmp(op_names[op], it->string) != 0)
            op++;
        if (op == OP_N || sim_admin_int_of(it, 0, 1000000, &v)) {
            sim_admin_bad_field(c, it->string, op == OP_N ? NULL : "an integer 0..1000000");
            goto out;
        }
        next[op] = (int)v;
    }
    memcpy(m->budget, next, sizeof(next));
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    evbuffer_add(b, "{", 1);
    for (int i = 0; i < OP_N; i++)
        evbuffer_add_printf(b, "%s\"%s\":%d", i ? "," : "", op_names[i], m->budget[i]);
    evbuffer_add(b, "}", 1);
    sim_reply(c, 200);
out:
    cJSON_Delete(root);
}

static void set_rate(struct sim_mirakl *m, double rate)
{
    m->rate = rate;
    m->rate_acc = 0;
    if (rate > 0 && !evtimer_pending(m->rate_timer, NULL)) {
        struct timeval tv = { 0, RATE_TICK_MS * 1000 };
        int r = evtimer_add(m->rate_timer, &tv);
        CV_ASSERT(r == 0);
    } else if (rate <= 0) {
        evtimer_del(m->rate_timer);
    }
}

static void admin_rate(struct sim_mirakl *m, const struct sim_call *c)
{
    cJSON *root = NULL;
    const cJSON *v;
    root = sim_admin_json_or_reply(c);
    if (!root)
        goto out;
    if (!cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(root, "per_second")) ||
        !(v->valuedouble >= 0) || v->valuedouble > 10000) {
        sim_reply_error(c, 400, cv_rc_str(CV_ERR_INVALID), "per_second: must be 0..10000");
        goto out;
    }
    set_rate(m, v->valuedouble);
    LOG_INFO("sim.mirakl.order_rate", "per_second=%g", m->rate);
    evbuffer_add_printf(evhttp_request_get_output_buffer(c->req), "{\"per_second\":%.15g}",
                        m->rate);
    sim_reply(c, 200);
out:
    cJSON_Delete(root);
}

static void admin(struct sim *s, struct sim_sys *y, const struct sim_call *c, const char *rest)
{
    struct sim_mirakl *m = (struct sim_mirakl *)y;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(c->req);
    (void)s;
    if (strcmp(rest, "orders") == 0 && cmd == EVHTTP_REQ_POST) {
        admin_orders_post(m, c);
    } else if (strncmp(rest, "orders/", 7) == 0 && cmd == EVHTTP_REQ_GET) {
        const struct mk_order *o = strlen(rest + 7) < 24 ? order_find(m, rest + 7) : NULL;
        if (!o) {
            sim_reply_error(c, 404, cv_rc_str(CV_ERR_NOT_FOUND), "no such order");
            return;
        }
        put_order(evhttp_request_get_output_buffer(c->req), o, 1);
        sim_reply(c, 200);
    } else if (strcmp(rest, "budget") == 0 && cmd == EVHTTP_REQ_POST) {
        admin_budget(m, c);
    } else if (strcmp(rest, "order_rate") == 0 && cmd == EVHTTP_REQ_POST) {
        admin_rate(m, c);
    } else {
        sim_reply_error(c, 404, cv_rc_str(CV_ERR_NOT_FOUND), "no such admin path");
    }
}

static void put_stats(struct sim *s, struct sim_sys *y, struct evbuffer *b)
{
    struct sim_mirakl *m = (struct sim_mirakl *)y;
    int64_t by_state[MK_NSTATES] = { 0 };
    (void)s;
    evbuffer_add_printf(b, ",\"operations\":{");
    for (int i = 0; i < OP_N; i++)
        evbuffer_add_printf(b, "%s\"%s\":%lld", i ? "," : "", op_names[i],
                            (long long)m->op_calls[i]);
    evbuffer_add_printf(b, "},\"orders_count\":%u,\"orders\":{", m->norders);
    for (uint32_t i = 0; i < m->norders; i++) {
        const struct mk_order *o = &m->orders[i];
        by_state[o->state]++;
        if (i >= STATS_ORDERS)
            continue;
        /* or24: every OR24 call, refused ones too; ships: the calls that shipped */
        evbuffer_add_printf(b, "%s\"%s\":{\"state\":\"%s\",\"or23\":%d,\"or24\":%d,"
                               "\"ships\":%d,\"tracking_number\":",
                            i ? "," : "", o->id, state_names[o->state], (int)o->or23,
                            (int)o->or24, (int)o->ships);
        sim_put_json_str(b, o->tracking);
        evbuffer_add_printf(b, ",\"carrier_code\":");
        sim_put_json_str(b, o->carrier_code);
        evbuffer_add(b, "}", 1);
    }
    evbuffer_add_printf(b, "},\"orders_by_state\":{");
    for (int i = 0; i < MK_NSTATES; i++)
        evbuffer_add_printf(b, "%s\"%s\":%lld", i ? "," : "", state_names[i],
                            (long long)by_state[i]);
    evbuffer_add(b, "}", 1);
}

static void reset(struct sim *s, struct sim_sys *y)
{
    struct sim_mirakl *m = (struct sim_mirakl *)y;
    m->norders = 0;
    sim_table_clear(m->index);
    memset(m->op_calls, 0, sizeof(m->op_calls));
    memset(m->budget, 0, sizeof(m->budget));
    memset(m->budget_used, 0, sizeof(m->budget_used));
    set_rate(m, s->cfg->sim_mirakl_order_rate);
}

static void mirakl_free(struct sim_sys *y)
{
    struct sim_mirakl *m = (struct sim_mirakl *)y;
    event_free(m->rate_timer);
    sim_table_free(m->index);
    free(m->orders);
    sim_sys_cleanup(&m->sys);
    free(m);
}

/* ---- API ------------------------------------------------------------------------------------- */

void sim_mirakl_register(struct sim *s)
{
    struct sim_mirakl *m = xcalloc(1, sizeof(*m));
    uint64_t seed;
    sim_sys_init(s, &m->sys, SIM_SYS_MIRAKL, "mirakl", creds,
                 (int)(sizeof(creds) / sizeof(creds[0])), s->cfg->sim_token_ttl_s);
    m->sys.put_error = put_error;
    m->sys.put_stats = put_stats;
    m->sys.reset = reset;
    m->sys.free = mirakl_free;
    m->sys.admin = admin;
    uuid_random_bytes(&seed, sizeof(seed));
    m->index = sim_table_new(sizeof(uint32_t), ORDERS_MAX, seed);
    m->next_no = 1;
    sim_rng_seed(&m->gen_rng, 20250601);
    m->rate_timer = event_new(s->base, -1, EV_PERSIST, on_rate_tick, m);
    CV_ASSERT(m->rate_timer);
    set_rate(m, s->cfg->sim_mirakl_order_rate);
    sim_route_add(&s->router, EVHTTP_REQ_GET | EVHTTP_REQ_PUT, PREFIX, 1, h_orders);
}
