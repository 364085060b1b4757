#include "sim_meli.h"

#include <event2/buffer.h>
#include <event2/http.h>
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
#include "sim_webhook.h"
#include "uuid.h"

/* Demo credentials (changeable: POST /admin/meli/credentials). */
static const struct sim_cred_def creds[] = {
    { "client_id", "5503910054141466" },  /* the application_id */
    { "client_secret", "meli-demo-client-secret" },
    { "refresh_token", "TG-demo-refresh-0001" },
    { "user_id", "123456789" },
};

#define ORDERS_MAX 100000
#define FIELD_MAX 96
#define PREFIX "/meli/orders/"
#define NOTIFY_PATH "/api/webhook/mercado-livre"

struct ml_order {
    char status[24];
    double total_amount;
    int64_t created_ms, updated_ms;
};

struct sim_meli {
    struct sim_sys sys;                  /* first */
    struct sim_tokens refresh;           /* refresh tokens issued (spent ones revoked) */
    int initial_spent;                   /* the demo refresh token was used */
    struct sim_table *orders;            /* id -> struct ml_order */
    int64_t notifications;
};

static void put_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    evbuffer_add_printf(b, "{\"message\":");
    sim_put_json_str(b, msg);
    evbuffer_add_printf(b, ",\"error\":");
    sim_put_json_str(b, code);
    evbuffer_add_printf(b, ",\"status\":%d,\"cause\":[]}", status);
}

static struct sim_meli *meli_of(struct sim *s)
{
    return (struct sim_meli *)s->sys[SIM_SYS_MELI];
}

static void h_token(struct sim *s, const struct sim_call *c)
{
    struct sim_meli *m = meli_of(s);
    char grant[32] = "", id[FIELD_MAX] = "", secret[FIELD_MAX] = "", rt[FIELD_MAX] = "";
    char next[SIM_TOKEN_LEN];
    if (sim_sys_gate(s, &m->sys, c))
        return;
    sim_form(c, "grant_type", grant, sizeof(grant));
    sim_form(c, "client_id", id, sizeof(id));
    sim_form(c, "client_secret", secret, sizeof(secret));
    sim_form(c, "refresh_token", rt, sizeof(rt));
    int ok = strcmp(grant, "refresh_token") == 0;
    ok &= sim_sys_cred_eq(&m->sys, "client_id", id);
    ok &= sim_sys_cred_eq(&m->sys, "client_secret", secret);
    int initial = !m->initial_spent && sim_sys_cred_eq(&m->sys, "refresh_token", rt);
    int issued = rt[0] && sim_tokens_valid(&m->refresh, rt, strlen(rt));
    if (!ok || !(initial || issued)) {
        m->sys.stats.unauthorized++;
        sim_sys_fail(s, &m->sys, c, 400, "invalid_grant",
                     "Error validating grant. Your authorization code or refresh token may be "
                     "expired or it was already used");
        return;
    }
    /* rotation: the token just used is spent; a new one comes with the answer */
    if (initial)
        m->initial_spent = 1;
    else
        sim_tokens_revoke(&m->refresh, rt, strlen(rt));
    if (sim_tokens_issue(&m->refresh, "TG-", 180 * 86400, next) != 0) {
        sim_sys_fail(s, &m->sys, c, 503, "full", "too many tokens; reset the simulator");
        return;
    }
    sim_sys_token_reply(s, &m->sys, c, "APP-", next);
}

static void put_order(struct sim_meli *m, struct evbuffer *b, const char *id,
                      const struct ml_order *o)
{
    char cr[CLOCK_RFC3339_LEN], up[CLOCK_RFC3339_LEN];
    clock_rfc3339(o->created_ms, cr);
    clock_rfc3339(o->updated_ms, up);
    evbuffer_add_printf(b, "{\"id\":%s,\"status\":", id);
    sim_put_json_str(b, o->status);
    evbuffer_add_printf(b, ",\"date_created\":\"%s\",\"last_updated\":\"%s\","
                           "\"total_amount\":%.2f,\"currency_id\":\"BRL\",\"buyer\":{\"id\":%s},"
                           "\"seller\":{\"id\":%s},\"order_items\":[{\"item\":{\"id\":\"MLB%s\","
                           "\"title\":\"Produto %s\"},\"quantity\":1,\"unit_price\":%.2f}],"
                           "\"shipping\":{\"id\":4%s}}",
                        cr, up, o->total_amount, "987654321", sim_sys_cred(&m->sys, "user_id"),
                        id, id, o->total_amount, id);
}

/* 1 when id is 1..18 digits (Mercado Livre order ids are numbers). */
static int id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 18)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (id[i] < '0' || id[i] > '9')
            return 0;
    return 1;
}

static void h_order(struct sim *s, const struct sim_call *c)
{
    struct sim_meli *m = meli_of(s);
    const char *id = c->path + strlen(PREFIX);
    if (sim_sys_gate(s, &m->sys, c) || sim_sys_bearer_or_reply(s, &m->sys, c))
        return;
    const struct ml_order *o = id_ok(id) ? sim_table_find(m->orders, id, strlen(id)) : NULL;
    if (!o) {
        sim_sys_fail(s, &m->sys, c, 404, "not_found", "Order not found");
        return;
    }
    put_order(m, evhttp_request_get_output_buffer(c->req), id, o);
    sim_sys_answer(s, &m->sys, c, 200, 0);
}

/* ---- notifications and admin ---------------------------------------------------------- */

static void notify(struct sim *s, struct sim_meli *m, const char *resource, const char *topic)
{
    char now[CLOCK_RFC3339_LEN];
    struct evbuffer *b = evbuffer_new();
    CV_ASSERT(b);
    clock_rfc3339(clock_wall_ms(), now);
    evbuffer_add_printf(b, "{\"resource\":");
    sim_put_json_str(b, resource);
    evbuffer_add_printf(b, ",\"user_id\":%s,\"topic\":", sim_sys_cred(&m->sys, "user_id"));
    sim_put_json_str(b, topic);
    evbuffer_add_printf(b, ",\"application_id\":%s,\"attempts\":1,\"sent\":\"%s\","
                           "\"received\":\"%s\"}",
                        sim_sys_cred(&m->sys, "client_id"), now, now);
    size_t n = evbuffer_get_length(b);
    char *text = xmalloc(n + 1);
    evbuffer_remove(b, text, n);
    text[n] = '\0';
    sim_webhook_post(s->wh, NOTIFY_PATH, text);
    free(text);
    evbuffer_free(b);
    m->notifications++;
}

static void admin_order(struct sim *s, struct sim_meli *m, const struct sim_call *c)
{
    cJSON *root = sim_admin_json_or_reply(c);
    if (!root)
        return;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "status");
    const cJSON *amt = cJSON_GetObjectItemCaseSensitive(root, "total_amount");
    int created;
    struct ml_order *o = NULL;
    if (cJSON_IsString(id) && id_ok(id->valuestring) &&
        (!st || (cJSON_IsString(st) && strlen(st->valuestring) < sizeof(o->status))) &&
        (!amt || (cJSON_IsNumber(amt) && amt->valuedouble >= 0)))
        o = sim_table_get_or_add(m->orders, id->valuestring, strlen(id->valuestring), &created);
    if (!o) {
        sim_reply_error(c, 400, cv_rc_str(CV_ERR_INVALID),
                        "id: 1..18 digits; status: a string; total_amount: >= 0");
        goto out;
    }
    int64_t now = clock_wall_ms();
    if (created) {
        snprintf(o->status, sizeof(o->status), "paid");
        o->total_amount = 100;
        o->created_ms = now;
    }
    if (st)
        snprintf(o->status, sizeof(o->status), "%s", st->valuestring);
    if (amt)
        o->total_amount = amt->valuedouble;
    o->updated_ms = now > o->updated_ms ? now : o->updated_ms + 1;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "notify"))) {
        char res[64];
        snprintf(res, sizeof(res), "/orders/%s", id->valuestring);
        notify(s, m, res, "orders_v2");
    }
    put_order(m, evhttp_request_get_output_buffer(c->req), id->valuestring, o);
    sim_reply(c, 200);
out:
    cJSON_Delete(root);
}

static void admin_notify(struct sim *s, struct sim_meli *m, const struct sim_call *c)
{
    static const char *const topics[] = { "orders_v2", "items", "messages" };
    cJSON *root = sim_admin_json_or_reply(c);
    if (!root)
        return;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "resource");
    const cJSON *topic = cJSON_GetObjectItemCaseSensitive(root, "topic");
    int known = 0;
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
        known |= cJSON_IsString(topic) && strcmp(topics[i], topic->valuestring) == 0;
    int ok = known && cJSON_IsString(res) && res->valuestring[0] == '/' &&
             strlen(res->valuestring) < 128;
    if (!ok) {
        sim_reply_error(c, 400, cv_rc_str(CV_ERR_INVALID),
                        "resource: a path; topic: orders_v2, items or messages");
        goto out;
    }
    notify(s, m, res->valuestring, topic->valuestring);
    evbuffer_add_printf(evhttp_request_get_output_buffer(c->req), "{\"sent\":true}");
    sim_reply(c, 200);
out:
    cJSON_Delete(root);
}

static void admin(struct sim *s, struct sim_sys *y, const struct sim_call *c, const char *rest)
{
    struct sim_meli *m = (struct sim_meli *)y;
    if (evhttp_request_get_command(c->req) != EVHTTP_REQ_POST)
        sim_reply_error(c, 404, cv_rc_str(CV_ERR_NOT_FOUND), "no such admin path");
    else if (strcmp(rest, "orders") == 0)
        admin_order(s, m, c);
    else if (strcmp(rest, "notify") == 0)
        admin_notify(s, m, c);
    else
        sim_reply_error(c, 404, cv_rc_str(CV_ERR_NOT_FOUND), "no such admin path");
}

static void put_stats(struct sim *s, struct sim_sys *y, struct evbuffer *b)
{
    struct sim_meli *m = (struct sim_meli *)y;
    (void)s;
    evbuffer_add_printf(b, ",\"orders_count\":%zu,\"notifications\":%lld,"
                           "\"refresh_tokens_issued\":%lld",
                        sim_table_count(m->orders), (long long)m->notifications,
                        (long long)m->refresh.issued);
}

static void reset(struct sim *s, struct sim_sys *y)
{
    struct sim_meli *m = (struct sim_meli *)y;
    (void)s;
    sim_tokens_clear(&m->refresh);
    sim_table_clear(m->orders);
    m->initial_spent = 0;
    m->notifications = 0;
}

static void meli_free(struct sim_sys *y)
{
    struct sim_meli *m = (struct sim_meli *)y;
    sim_tokens_cleanup(&m->refresh);
    sim_table_free(m->orders);
    sim_sys_cleanup(&m->sys);
    free(m);
}

void sim_meli_register(struct sim *s)
{
    struct sim_meli *m = xcalloc(1, sizeof(*m));
    uint64_t seed;
    sim_sys_init(s, &m->sys, SIM_SYS_MELI, "meli", creds, (int)(sizeof(creds) / sizeof(creds[0])),
                 s->cfg->sim_token_ttl_s);
    m->sys.put_error = put_error;
    m->sys.put_stats = put_stats;
    m->sys.reset = reset;
    m->sys.free = meli_free;
    m->sys.admin = admin;
    sim_tokens_init(&m->refresh);
    uuid_random_bytes(&seed, sizeof(seed));
    m->orders = sim_table_new(sizeof(struct ml_order), ORDERS_MAX, seed);
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/meli/oauth/token", 0, h_token);
    sim_route_add(&s->router, EVHTTP_REQ_GET, PREFIX, 1, h_order);
}
