/* car_cex.c - Correos Express: a JSON carrier that pushes tracking (webhooks)
 * and reports its errors inside 200 answers.
 *
 *   POST /WSEnvio_REST/grabacionEnvio   HTTP Basic; {"ref" (our reference),
 *        "codPosNacDest" (Spain) or "codPosIntDest" (abroad), "paisISODest", "nomDest",
 *        "dirDest", "pobDest", "kilos", "numBultos"} -> 200 {"codigoRetorno":0,
 *        "mensajeRetorno":"","datosResultado":"<envío>","listaBultos":[{"codUnico"}]}
 *        or 200 {"codigoRetorno":<n != 0>,"mensajeRetorno":"<why>",...}
 *   POST /seguimientoEnvio              HTTP Basic; {"ref"} -> 200 {"codigoRetorno":0,
 *        "datos":{"numEnvio","ref",...}} or codigoRetorno 1 (no such shipment)
 * Credentials: upstreams.correos-express.auth_user / auth_secret (Basic).
 *
 * The body check turns codigoRetorno != 0 in a 2xx into HTTPC_BODY_ERROR with
 * mensajeRetorno as the message; a create so answered is the carrier refusing
 * the data (CAR_REFUSED: FAILED_POST, no retry). Statuses other than 2xx keep
 * the class their status gives (a 5xx stays transient even though its body
 * also carries a codigoRetorno). The envío number (datosResultado, numEnvio)
 * is both the tracking number and the expedition id: the lookup gives only
 * that one, and a shipment found by lookup must be recorded as one created. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "car.h"
#include "cfg.h"
#include "ostate.h"

/* codigoRetorno of a seguimientoEnvio for an unknown reference */
#define CEX_NOT_FOUND 1

/* codigoRetorno of a JSON answer: 1 and *code when present, else 0. */
static int return_code(const char *resp, size_t len, long *code, char *msg, size_t cap)
{
    cJSON *root = resp ? json_parse(resp, len) : NULL;
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(root, "codigoRetorno");
    int has = cJSON_IsNumber(rc);
    if (has)
        *code = (long)rc->valuedouble;
    if (msg)
        car_json_str(root, "mensajeRetorno", msg, cap);
    cJSON_Delete(root);
    return has;
}

static enum httpc_class body_check(const struct httpc_req *r, void *arg, char *msg,
                                   size_t msg_len)
{
    long code = 0;
    (void)arg;
    if (r->status < 200 || r->status > 299)
        return HTTPC_OK;
    if (!return_code(r->resp, r->resp_len, &code, msg, msg_len)) {
        snprintf(msg, msg_len, "an answer without codigoRetorno");
        return HTTPC_BODY_ERROR;
    }
    if (code == 0)
        return HTTPC_OK;
    if (!msg[0])
        snprintf(msg, msg_len, "codigoRetorno %ld", code);
    return HTTPC_BODY_ERROR;
}

static void create_req(const struct car_order *o, size_t n, struct ups_call *c, struct sbuf *b)
{
    int home = o->country && strcasecmp(o->country, "ES") == 0;
    (void)n;
    sbuf_adds(b, "{\"ref\":");
    sbuf_add_json_str(b, o->order_id);
    sbuf_adds(b, home ? ",\"codPosNacDest\":" : ",\"codPosIntDest\":");
    sbuf_add_json_str(b, o->zip ? o->zip : "");
    sbuf_adds(b, ",\"paisISODest\":");
    sbuf_add_json_str(b, o->country ? o->country : "");
    sbuf_adds(b, ",\"nomDest\":");
    sbuf_add_json_str(b, o->name ? o->name : "");
    sbuf_adds(b, ",\"dirDest\":");
    sbuf_add_json_str(b, o->street ? o->street : "");
    sbuf_adds(b, ",\"pobDest\":");
    sbuf_add_json_str(b, o->city ? o->city : "");
    sbuf_addf(b, ",\"kilos\":\"%.3f\",\"numBultos\":\"1\"}", o->weight_kg);
    c->method = "POST";
    c->path = "/WSEnvio_REST/grabacionEnvio";
    c->body = b->p;
    c->body_len = b->len;
    c->content_type = HTTPC_CT_JSON;
}

static void create_parse(const struct ups_call *c, const struct car_order *o, size_t n,
                         struct car_shipment *out, enum car_verdict *v)
{
    char msg[200] = "";
    long code = 0;
    (void)o;
    (void)n;
    if (c->cls == HTTPC_OK) {
        cJSON *root = c->resp ? json_parse(c->resp, c->resp_len) : NULL;
        car_json_str(root, "datosResultado", out[0].tracking_number,
                     sizeof(out[0].tracking_number));
        cJSON_Delete(root);
        if (out[0].tracking_number[0]) {
            snprintf(out[0].expedition_id, sizeof(out[0].expedition_id), "%s",
                     out[0].tracking_number);
            v[0] = CAR_CREATED;
        } else {
            snprintf(out[0].error, sizeof(out[0].error),
                     "correos-express: a create answer without datosResultado");
            v[0] = CAR_RETRY;
        }
        return;
    }
    /* BODY_ERROR (codigoRetorno != 0) or a 4xx: the carrier refuses the data */
    return_code(c->resp, c->resp_len, &code, msg, sizeof(msg));
    snprintf(out[0].error, sizeof(out[0].error), "correos-express: %s",
             msg[0] ? msg : c->error[0] ? c->error : "refused");
    v[0] = CAR_REFUSED;
}

static void lookup_req(const struct car_order *o, struct ups_call *c, struct sbuf *b)
{
    sbuf_adds(b, "{\"ref\":");
    sbuf_add_json_str(b, o->order_id);
    sbuf_adds(b, "}");
    c->method = "POST";
    c->path = "/seguimientoEnvio";
    c->body = b->p;
    c->body_len = b->len;
    c->content_type = HTTPC_CT_JSON;
}

static int lookup_parse(const struct ups_call *c, struct car_shipment *out)
{
    long code = -1;
    if (c->outcome != UPS_DONE)
        return -1;
    if (c->cls == HTTPC_BODY_ERROR && return_code(c->resp, c->resp_len, &code, NULL, 0) &&
        code == CEX_NOT_FOUND)
        return 0;
    if (c->cls != HTTPC_OK)
        return -1;
    cJSON *root = c->resp ? json_parse(c->resp, c->resp_len) : NULL;
    car_json_str(cJSON_GetObjectItemCaseSensitive(root, "datos"), "numEnvio",
                 out->tracking_number, sizeof(out->tracking_number));
    cJSON_Delete(root);
    if (!out->tracking_number[0])
        return -1;
    snprintf(out->expedition_id, sizeof(out->expedition_id), "%s", out->tracking_number);
    return 1;
}

/* Correos Express's webhooks carry our words; its tracking pages' Spanish
 * states are mapped too. */
static const struct car_status statuses[] = {
    { "GRABADO", OTRACK_ACCEPTED, 0 },
    { "ADMITIDO", OTRACK_ACCEPTED, 0 },
    { "EN TRANSITO", OTRACK_IN_TRANSIT, 0 },
    { "EN_TRANSITO", OTRACK_IN_TRANSIT, 0 },
    { "EN REPARTO", OTRACK_OUT_FOR_DELIVERY, 0 },
    { "EN_REPARTO", OTRACK_OUT_FOR_DELIVERY, 0 },
    { "ENTREGADO", OTRACK_DELIVERED, 0 },
    { "INCIDENCIA", OTRACK_EXCEPTION, 0 },
    { "DEVUELTO", OTRACK_EXCEPTION, 1 },
    { "ANULADO", OTRACK_EXCEPTION, 1 },
    { NULL, 0, 0 },
};

static int status_map(const char *code, int *terminal)
{
    int s = otrack_parse(code);
    return s >= 0 ? s : car_status_lookup(statuses, code, terminal);
}

const struct car car_cex = {
    .name = "correos-express",
    .label = "Correos Express",
    .tracking_url = "",
    .ups_id = CFG_UPS_CEX,
    .auth = &ups_auth_basic,
    .batch = 0,
    .create_req = create_req,
    .create_parse = create_parse,
    .lookup_req = lookup_req,
    .lookup_parse = lookup_parse,
    .body_check = body_check,
    .status_map = status_map,
};
