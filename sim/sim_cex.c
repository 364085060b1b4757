#include "sim_cex.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "cfg.h"
#include "json.h"
#include "mem.h"
#include "sim.h"
#include "sim_carrier.h"

/* Demo credentials (changeable: POST /admin/cex/credentials). */
static const struct sim_cred_def creds[] = {
    { "user", "cex-demo-user" },
    { "password", "cex-demo-password" },
};

#define BASIC_MAX 256

static void put_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    (void)code;
    evbuffer_add_printf(b, "{\"codigoRetorno\":%d,\"mensajeRetorno\":", status);
    sim_put_json_str(b, msg);
    evbuffer_add(b, "}", 1);
}

static struct sim_carrier *cex_of(struct sim *s)
{
    return (struct sim_carrier *)s->sys[SIM_SYS_CEX];
}

/* Gate, then HTTP Basic. 1 when it answered. */
static int gate_basic_or_reply(struct sim *s, struct sim_carrier *k, const struct sim_call *c)
{
    if (sim_sys_gate(s, &k->sys, c))
        return 1;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(c->req),
                                       "Authorization");
    unsigned char dec[BASIC_MAX];
    long n = -1;
    if (h && strncasecmp(h, "Basic ", 6) == 0 && strlen(h + 6) < BASIC_MAX)
        n = auth_b64_decode(h + 6, strlen(h + 6), dec);
    int ok = 0;
    if (n > 0) {
        dec[n] = '\0';
        char *colon = memchr(dec, ':', (size_t)n);
        if (colon) {
            *colon = '\0';
            ok = sim_sys_cred_eq(&k->sys, "user", (const char *)dec);
            ok &= sim_sys_cred_eq(&k->sys, "password", colon + 1);
        }
    }
    if (ok)
        return 0;
    k->sys.stats.unauthorized++;
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "WWW-Authenticate",
                      "Basic realm=\"correosexpress\"");
    sim_sys_fail(s, &k->sys, c, 401, "UNAUTHORIZED", "Credenciales no válidas");
    return 1;
}

static const char *str_field(const cJSON *root, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsString(it) && it->valuestring[0] ? it->valuestring : NULL;
}

/* The 200-with-an-error answer. */
static void refuse(struct sim *s, struct sim_carrier *k, const struct sim_call *c, int code,
                   const char *msg)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    evbuffer_add_printf(b, "{\"codigoRetorno\":%d,\"mensajeRetorno\":", code);
    sim_put_json_str(b, msg);
    evbuffer_add_printf(b, ",\"datosResultado\":\"\",\"listaBultos\":[]}");
    sim_sys_answer(s, &k->sys, c, 200, 0);
}

static void h_grabacion(struct sim *s, const struct sim_call *c)
{
    struct sim_carrier *k = cex_of(s);
    const char *body, *why;
    size_t len;
    cJSON *root = NULL;
    if (gate_basic_or_reply(s, k, c))
        return;
    if (sim_body(c, &body, &len) != CV_OK || !(root = json_parse(body, len)) ||
        !cJSON_IsObject(root)) {
        k->sys.stats.validation_errors++;
        refuse(s, k, c, 10, "Error en el formato de la petición");
        goto out;
    }
    const char *ref = str_field(root, "ref");
    const char *zip = str_field(root, "codPosNacDest");
    if (!zip)
        zip = str_field(root, "codPosIntDest");
    struct sim_ship *sp = sim_carrier_create(s, k, ref, zip, &why);
    if (!sp) {
        refuse(s, k, c, strncmp(why, "postal", 6) == 0 ? 71 : 70, why);
        goto out;
    }
    evbuffer_add_printf(evhttp_request_get_output_buffer(c->req),
                        "{\"codigoRetorno\":0,\"mensajeRetorno\":\"\",\"datosResultado\":\"%s\","
                        "\"listaBultos\":[{\"orden\":1,\"codUnico\":\"%s\"}]}",
                        sp->tracking, sp->code);
    sim_sys_answer(s, &k->sys, c, 200, 1);
out:
    cJSON_Delete(root);
}

static void h_seguimiento(struct sim *s, const struct sim_call *c)
{
    struct sim_carrier *k = cex_of(s);
    const char *body;
    size_t len;
    cJSON *root = NULL;
    if (gate_basic_or_reply(s, k, c))
        return;
    const char *ref = NULL;
    if (sim_body(c, &body, &len) == CV_OK && (root = json_parse(body, len)))
        ref = str_field(root, "ref");
    const struct sim_ship *sp = ref ? sim_ships_find(&k->ships, ref, strlen(ref)) : NULL;
    if (!sp) {
        refuse(s, k, c, 1, "Envío no encontrado");
        goto out;
    }
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    evbuffer_add_printf(b, "{\"codigoRetorno\":0,\"mensajeRetorno\":\"\",\"datos\":{"
                           "\"numEnvio\":\"%s\",\"ref\":", sp->tracking);
    sim_put_json_str(b, ref);
    evbuffer_add_printf(b, ",\"envios\":%d,\"estados\":", (int)sp->creates);
    sim_carrier_put_events(b, sp);
    evbuffer_add(b, "}}", 2);
    sim_sys_answer(s, &k->sys, c, 200, 0);
out:
    cJSON_Delete(root);
}

static void cex_free(struct sim_sys *y)
{
    sim_carrier_cleanup((struct sim_carrier *)y);
    free(y);
}

void sim_cex_register(struct sim *s)
{
    struct sim_carrier *k = xcalloc(1, sizeof(*k));
    sim_carrier_init(s, k, SIM_SYS_CEX, "cex", "correos-express", "CEX", "3230", creds,
                     (int)(sizeof(creds) / sizeof(creds[0])), s->cfg->sim_token_ttl_s);
    k->sys.put_error = put_error;
    k->sys.free = cex_free;
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/cex/WSEnvio_REST/grabacionEnvio", 0,
                  h_grabacion);
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/cex/seguimientoEnvio", 0, h_seguimiento);
}
