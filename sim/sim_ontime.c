#include "sim_ontime.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "json.h"
#include "mem.h"
#include "sim.h"
#include "sim_carrier.h"

/* Demo credentials (changeable: POST /admin/ontime/credentials). */
static const struct sim_cred_def creds[] = {
    { "client_id", "ontime-demo-client" },
    { "client_secret", "ontime-demo-secret" },
};

#define FIELD_MAX 96

static void put_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    (void)status;
    evbuffer_add_printf(b, "{\"error\":");
    sim_put_json_str(b, code);
    evbuffer_add_printf(b, ",\"message\":");
    sim_put_json_str(b, msg);
    evbuffer_add(b, "}", 1);
}

static struct sim_carrier *ontime_of(struct sim *s)
{
    return (struct sim_carrier *)s->sys[SIM_SYS_ONTIME];
}

static void h_token(struct sim *s, const struct sim_call *c)
{
    struct sim_carrier *k = ontime_of(s);
    char grant[32] = "", id[FIELD_MAX] = "", secret[FIELD_MAX] = "";
    if (sim_sys_gate(s, &k->sys, c))
        return;
    sim_form(c, "grant_type", grant, sizeof(grant));
    sim_form(c, "client_id", id, sizeof(id));
    sim_form(c, "client_secret", secret, sizeof(secret));
    int ok = strcmp(grant, "client_credentials") == 0;
    ok &= sim_sys_cred_eq(&k->sys, "client_id", id);
    ok &= sim_sys_cred_eq(&k->sys, "client_secret", secret);
    if (!ok) {
        k->sys.stats.unauthorized++;
        sim_sys_fail(s, &k->sys, c, 401, "invalid_client", "client authentication failed");
        return;
    }
    sim_sys_token_reply(s, &k->sys, c, "ot_", NULL);
}

/* Create one shipment from item; writes its result object (with "index" when
 * index >= 0) to b. Returns 201, or 422 when refused. */
static int create_one(struct sim *s, struct sim_carrier *k, const cJSON *item, int index,
                      struct evbuffer *b)
{
    const char *why = "body: must be a JSON object";
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(item, "reference");
    const cJSON *zip = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(item, "recipient"), "postal_code");
    struct sim_ship *sp = NULL;
    if (cJSON_IsObject(item))
        sp = sim_carrier_create(s, k, cJSON_IsString(ref) ? ref->valuestring : NULL,
                                cJSON_IsString(zip) ? zip->valuestring : NULL, &why);
    else
        k->sys.stats.validation_errors++;
    evbuffer_add(b, "{", 1);
    if (index >= 0)
        evbuffer_add_printf(b, "\"index\":%d,\"status\":%d,", index, sp ? 201 : 422);
    if (!sp) {
        evbuffer_add_printf(b, "\"error\":\"validation_failed\",\"message\":");
        sim_put_json_str(b, why);
        evbuffer_add(b, "}", 1);
        return 422;
    }
    evbuffer_add_printf(b, "\"id\":\"%s\",\"tracking_number\":\"%s\",\"reference\":", sp->code,
                        sp->tracking);
    sim_put_json_str(b, ref->valuestring);
    evbuffer_add_printf(b, ",\"state\":\"created\"}");
    return 201;
}

/* Both create routes: one object, or a batch (an array). */
static void create(struct sim *s, const struct sim_call *c, int batch)
{
    struct sim_carrier *k = ontime_of(s);
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    const char *body;
    size_t len;
    cJSON *root = NULL;
    if (sim_sys_gate(s, &k->sys, c) || sim_sys_bearer_or_reply(s, &k->sys, c))
        return;
    if (sim_body(c, &body, &len) != CV_OK || !(root = json_parse(body, len)) ||
        (batch && !cJSON_IsArray(root))) {
        k->sys.stats.validation_errors++;
        sim_sys_fail(s, &k->sys, c, 400, "bad_request",
                     batch ? "body: must be a JSON array" : "body: must be a JSON object");
        goto out;
    }
    if (!batch) {
        int st = create_one(s, k, root, -1, b);
        sim_sys_answer(s, &k->sys, c, st, st == 201);
        goto out;
    }
    int n = cJSON_GetArraySize(root);
    if (n < 1 || n > SIM_ONTIME_BATCH_MAX) {
        sim_sys_fail(s, &k->sys, c, n < 1 ? 400 : 413, "batch_size",
                     "a batch holds 1..50 shipments");
        goto out;
    }
    int i = 0, created = 0;
    evbuffer_add_printf(b, "{\"results\":[");
    for (const cJSON *it = root->child; it; it = it->next, i++) {
        if (i)
            evbuffer_add(b, ",", 1);
        created |= create_one(s, k, it, i, b) == 201;
    }
    evbuffer_add(b, "]}", 2);
    sim_sys_answer(s, &k->sys, c, 200, created);
out:
    cJSON_Delete(root);
}

static void h_batch(struct sim *s, const struct sim_call *c)
{
    create(s, c, 1);
}

static void h_lookup(struct sim *s, const struct sim_call *c)
{
    struct sim_carrier *k = ontime_of(s);
    char ref[64];
    if (sim_sys_gate(s, &k->sys, c) || sim_sys_bearer_or_reply(s, &k->sys, c))
        return;
    if (!sim_query(c, "reference", ref, sizeof(ref)) || !ref[0]) {
        sim_sys_fail(s, &k->sys, c, 400, "bad_request", "reference: required");
        return;
    }
    const struct sim_ship *sp = sim_ships_find(&k->ships, ref, strlen(ref));
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    evbuffer_add_printf(b, "{\"data\":[");
    if (sp) {
        evbuffer_add_printf(b, "{\"id\":\"%s\",\"tracking_number\":\"%s\",\"reference\":",
                            sp->code, sp->tracking);
        sim_put_json_str(b, ref);
        evbuffer_add_printf(b, ",\"shipments\":%d,\"events\":", (int)sp->creates);
        sim_carrier_put_events(b, sp);
        evbuffer_add(b, "}", 1);
    }
    evbuffer_add(b, "]}", 2);
    sim_sys_answer(s, &k->sys, c, 200, 0);
}

/* One path, two methods: POST creates, GET looks up by reference. */
static void h_create_or_lookup(struct sim *s, const struct sim_call *c)
{
    if (evhttp_request_get_command(c->req) == EVHTTP_REQ_POST)
        create(s, c, 0);
    else
        h_lookup(s, c);
}

static void ontime_free(struct sim_sys *y)
{
    sim_carrier_cleanup((struct sim_carrier *)y);
    free(y);
}

void sim_ontime_register(struct sim *s)
{
    struct sim_carrier *k = xcalloc(1, sizeof(*k));
    sim_carrier_init(s, k, SIM_SYS_ONTIME, "ontime", "ontime", "OT-", "OT", creds,
                     (int)(sizeof(creds) / sizeof(creds[0])), s->cfg->sim_token_ttl_s);
    k->sys.put_error = put_error;
    k->sys.free = ontime_free;
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/ontime/oauth/token", 0, h_token);
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/ontime/api/v1/shipments/batch", 0, h_batch);
    sim_route_add(&s->router, EVHTTP_REQ_POST | EVHTTP_REQ_GET, "/ontime/api/v1/shipments", 0,
                  h_create_or_lookup);
}
