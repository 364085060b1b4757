#include "sim_seur.h"

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

/* Demo credentials (changeable: POST /admin/seur/credentials). */
static const struct sim_cred_def creds[] = {
    { "client_id", "seur-demo-client" },
    { "client_secret", "seur-demo-client-secret" },
    { "username", "seur-demo-user" },
    { "password", "seur-demo-password" },
};

#define FIELD_MAX 96

static void put_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    evbuffer_add_printf(b, "{\"errors\":[{\"title\":");
    sim_put_json_str(b, code);
    evbuffer_add_printf(b, ",\"status\":\"%d\",\"detail\":", status);
    sim_put_json_str(b, msg);
    evbuffer_add(b, "}]}", 3);
}

static struct sim_carrier *seur_of(struct sim *s)
{
    return (struct sim_carrier *)s->sys[SIM_SYS_SEUR];
}

static void h_token(struct sim *s, const struct sim_call *c)
{
    struct sim_carrier *k = seur_of(s);
    static const char *const fields[] = { "client_id", "client_secret", "username", "password" };
    char grant[32] = "", v[FIELD_MAX];
    int ok;
    if (sim_sys_gate(s, &k->sys, c))
        return;
    ok = sim_form(c, "grant_type", grant, sizeof(grant)) && strcmp(grant, "password") == 0;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        v[0] = '\0';
        sim_form(c, fields[i], v, sizeof(v));
        ok &= sim_sys_cred_eq(&k->sys, fields[i], v);   /* every field, no early exit */
    }
    if (!ok) {
        k->sys.stats.unauthorized++;
        evbuffer_add_printf(evhttp_request_get_output_buffer(c->req),
                            "{\"error\":\"invalid_grant\",\"error_description\":"
                            "\"Invalid user credentials\"}");
        sim_sys_answer(s, &k->sys, c, 401, 0);
        return;
    }
    sim_sys_token_reply(s, &k->sys, c, "seur_", NULL);
}

/* A nested string: root.a.b (b may be NULL for root.a). NULL when absent. */
static const char *str_at(const cJSON *root, const char *a, const char *b, const char *cc)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, a);
    if (b)
        it = cJSON_GetObjectItemCaseSensitive(it, b);
    if (cc)
        it = cJSON_GetObjectItemCaseSensitive(it, cc);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static void h_create(struct sim *s, const struct sim_call *c)
{
    struct sim_carrier *k = seur_of(s);
    const char *body, *why;
    size_t len;
    cJSON *root = NULL;
    if (sim_sys_gate(s, &k->sys, c) || sim_sys_bearer_or_reply(s, &k->sys, c))
        return;
    if (sim_body(c, &body, &len) != CV_OK || !(root = json_parse(body, len)) ||
        !cJSON_IsObject(root)) {
        k->sys.stats.validation_errors++;
        sim_sys_fail(s, &k->sys, c, 400, "Bad Request", "body: must be a JSON object");
        goto out;
    }
    const char *ref = str_at(root, "reference", NULL, NULL);
    const char *zip = str_at(root, "receiver", "address", "postalCode");
    struct sim_ship *sp = sim_carrier_create(s, k, ref, zip, &why);
    if (!sp) {
        sim_sys_fail(s, &k->sys, c, 400, "Validation error", why);
        goto out;
    }
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    evbuffer_add_printf(b, "{\"data\":{\"shipmentCode\":\"%s\",\"ecb\":\"%s\",\"reference\":",
                        sp->code, sp->tracking);
    sim_put_json_str(b, ref);
    evbuffer_add(b, "}}", 2);
    sim_sys_answer(s, &k->sys, c, 200, 1);
out:
    cJSON_Delete(root);
}

static void h_tracking(struct sim *s, const struct sim_call *c)
{
    struct sim_carrier *k = seur_of(s);
    char ref[64];
    if (sim_sys_gate(s, &k->sys, c) || sim_sys_bearer_or_reply(s, &k->sys, c))
        return;
    const struct sim_ship *sp = NULL;
    if (sim_query(c, "ref", ref, sizeof(ref)))
        sp = sim_ships_find(&k->ships, ref, strlen(ref));
    if (!sp) {
        sim_sys_fail(s, &k->sys, c, 404, "Not Found", "no shipment with this reference");
        return;
    }
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    evbuffer_add_printf(b, "{\"data\":{\"shipmentCode\":\"%s\",\"ecb\":\"%s\",\"reference\":",
                        sp->code, sp->tracking);
    sim_put_json_str(b, ref);
    evbuffer_add_printf(b, ",\"shipments\":%d,\"events\":", (int)sp->creates);
    sim_carrier_put_events(b, sp);
    evbuffer_add(b, "}}", 2);
    sim_sys_answer(s, &k->sys, c, 200, 0);
}

static void seur_free(struct sim_sys *y)
{
    sim_carrier_cleanup((struct sim_carrier *)y);
    free(y);
}

void sim_seur_register(struct sim *s)
{
    struct sim_carrier *k = xcalloc(1, sizeof(*k));
    sim_carrier_init(s, k, SIM_SYS_SEUR, "seur", "seur", "SEUR", "ECB", creds,
                     (int)(sizeof(creds) / sizeof(creds[0])), s->cfg->sim_token_ttl_s);
    k->sys.put_error = put_error;
    k->sys.free = seur_free;
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/seur/pic_token", 0, h_token);
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/seur/pic/v1/shipments", 0, h_create);
    sim_route_add(&s->router, EVHTTP_REQ_GET, "/seur/pic/v1/tracking-services/simplified", 0,
                  h_tracking);
}
