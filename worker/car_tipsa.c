/* car_tipsa.c - TIPSA: a SOAP 1.1 carrier that never pushes (its tracking is
 * read from a change feed by h_tracking_poll.c).
 *
 * Every call is POST <url>/SOAP?service=<service> with an envelope whose body
 * holds the method element:
 *   LoginWSService___LoginCli(strCodAge, strCod, strPass) -> strSesion
 *   WebServService (the session in the header: <ROClientIDHeader><ID>):
 *     ___GrabaEnvio4(strRef = our reference, strCPDes, strNomDes, strDirDes,
 *        strPobDes, strCodPais, intPaq, dPesoOri) -> strAlbaran, strGuidOut
 *     ___ConsEnvEstadosRef(strRef) -> strEnvEstadosRef: escaped
 *        <CONSULTA><ENV_ESTADOS_REF V_ALBARAN V_REF V_COD_TIPO_EST .../></CONSULTA>
 *        (empty when the reference is unknown)
 *     ___ConsEnvEstIncCambiosEstados(dtFecDesde, intPagina, intNumReg)
 *        -> strEnvEstIncCambiosEstados (escaped <CONSULTA><CAMBIO_ESTADO .../>),
 *           intTotal, bMasPaginas
 * Errors are SOAP Faults (HTTP 500): faultcode Client or Server, detail
 * errorCode SESSION_EXPIRED, LOGIN_FAILED, VALIDATION, BAD_REQUEST.
 *
 * Credentials: upstreams.tipsa.account (agency code), auth_user (client
 * code), auth_secret (password). The session is a token of the shared cache
 * (ups_token.c): TIPSA does not say how long a session lives, so we keep it
 * 10 minutes, and a SESSION_EXPIRED fault is classed HTTPC_AUTH by the body
 * check: the pipeline drops the session, logs in once (one worker for all)
 * and sends the call once more with the new one.
 *
 * The albarán is both the tracking number and the expedition id: the status
 * lookup by reference only gives the albarán, and a shipment found by lookup
 * must be recorded the same way as one we created. A create is not
 * idempotent (TIPSA makes a new shipment for a known strRef): a create whose
 * outcome is unknown is looked up by reference before it is sent again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "cfg.h"
#include "ostate.h"
#include "soap.h"

#define SESSION_TTL_MS (10 * 60 * 1000)
#define FEED_PAGE 100
#define FIELD_MAX 128

static const char *const login_hdrs[] = {
    "SOAPAction: \"urn:LoginWSService#LoginWSService___LoginCli\"", NULL };
static const char *const graba_hdrs[] = {
    "SOAPAction: \"urn:WebServService#WebServService___GrabaEnvio4\"", NULL };
static const char *const ref_hdrs[] = {
    "SOAPAction: \"urn:WebServService#WebServService___ConsEnvEstadosRef\"", NULL };
static const char *const feed_hdrs[] = {
    "SOAPAction: \"urn:WebServService#WebServService___ConsEnvEstIncCambiosEstados\"", NULL };

/* ---- the body check: SOAP Faults ------------------------------------------------- */

/* A Fault in an answer whose status SOAP uses for one (200 or 500): SESSION_EXPIRED
 * -> AUTH (refresh once, retry once), Client -> PERMANENT, Server -> TRANSIENT.
 * Other statuses (401, 429, 503 ...) keep the class their status gives. */
static enum httpc_class body_check(const struct httpc_req *r, void *arg, char *msg,
                                   size_t msg_len)
{
    char code[32], fs[160], err[64];
    (void)arg;
    if ((r->status != 200 && r->status != 500) || !r->resp ||
        !soap_fault(r->resp, code, sizeof(code), fs, sizeof(fs), err, sizeof(err)))
        return HTTPC_OK;
    snprintf(msg, msg_len, "%s%s%s", err, err[0] ? ": " : "", fs);
    if (strcmp(err, "SESSION_EXPIRED") == 0)
        return HTTPC_AUTH;
    if (strcmp(code, "Client") == 0)
        return HTTPC_PERMANENT;
    return HTTPC_TRANSIENT;
}

/* ---- credentials: the soap session -------------------------------------------------- */

static enum cv_rc tipsa_login(struct ups *u, void *arg, char **token, int64_t *ttl_ms, char *err,
                              size_t err_len)
{
    const struct ups_conf *c = ups_conf_of(u);
    const struct cfg *cfg = arg;
    const struct cfg_upstream *cu = &cfg->ups[CFG_UPS_TIPSA];
    struct sbuf b;
    struct httpc_req r;
    char sid[FIELD_MAX];
    enum cv_rc rc = CV_ERR_TRANSIENT;
    sbuf_init(&b);
    sbuf_adds(&b, SOAP_OPEN "<LoginWSService___LoginCli xmlns=\"urn:LoginWSService\">");
    soap_field(&b, "strCodAge", cu->account);
    soap_field(&b, "strCod", c->auth_user);
    soap_field(&b, "strPass", c->auth_secret);
    sbuf_adds(&b, "</LoginWSService___LoginCli>" SOAP_CLOSE);
    char *url = xasprintf("%s/SOAP?service=LoginWSService", c->url);
    memset(&r, 0, sizeof(r));
    r.method = "POST";
    r.url = url;
    r.body = b.p;
    r.body_len = b.len;
    r.content_type = HTTPC_CT_SOAP;
    r.headers = login_hdrs;
    r.body_check = body_check;
    ups_call_raw(u, &r);
    if (r.cls == HTTPC_OK) {
        if (soap_text(r.resp, "strSesion", sid, sizeof(sid)) && sid[0]) {
            *token = xstrdup(sid);
            *ttl_ms = SESSION_TTL_MS;
            rc = CV_OK;
        } else {
            snprintf(err, err_len, "tipsa login: no strSesion in the answer");
        }
    } else if (r.cls == HTTPC_PERMANENT || r.cls == HTTPC_AUTH || r.cls == HTTPC_BODY_ERROR) {
        rc = CV_ERR_AUTH;
        snprintf(err, err_len, "tipsa login refused: %s", r.error);
    } else {
        rc = httpc_class_rc(r.cls);
        snprintf(err, err_len, "tipsa login: %s", r.error);
    }
    httpc_req_cleanup(&r);
    free(url);
    /* the body held the password */
    if (b.p)
        memset(b.p, 0, b.len);
    sbuf_cleanup(&b);
    return rc;
}

/* The session goes in the SOAP header: the call's body is rebuilt with it. */
static void tipsa_apply(struct ups *u, void *arg, struct ups_call *c, const char *token)
{
    struct sbuf h;
    (void)u;
    (void)arg;
    sbuf_init(&h);
    sbuf_adds(&h, "<soap:Header><ROClientIDHeader xmlns=\"urn:WebServService\">");
    soap_field(&h, "ID", token ? token : "");
    sbuf_adds(&h, "</ROClientIDHeader></soap:Header>");
    c->auth_body = c->body ? soap_with_header(c->body, h.p) : NULL;
    sbuf_cleanup(&h);
}

static const struct ups_auth tipsa_auth = { "soap-session", tipsa_login, tipsa_apply };

/* ---- requests ------------------------------------------------------------------------- */

static void web_call(struct ups_call *c, struct sbuf *b, const char *const *hdrs)
{
    c->method = "POST";
    c->path = "/SOAP?service=WebServService";
    c->body = b->p;
    c->body_len = b->len;
    c->content_type = HTTPC_CT_SOAP;
    c->headers = hdrs;
}

static void create_req(const struct car_order *o, size_t n, struct ups_call *c, struct sbuf *b)
{
    char kg[32];
    (void)n;
    snprintf(kg, sizeof(kg), "%.3f", o->weight_kg);
    sbuf_adds(b, SOAP_OPEN "<WebServService___GrabaEnvio4 xmlns=\"urn:WebServService\">");
    soap_field(b, "strRef", o->order_id);
    soap_field(b, "strCPDes", o->zip);
    soap_field(b, "strNomDes", o->name);
    soap_field(b, "strDirDes", o->street);
    soap_field(b, "strPobDes", o->city);
    soap_field(b, "strCodPais", o->country);
    soap_field(b, "intPaq", "1");
    soap_field(b, "dPesoOri", kg);
    sbuf_adds(b, "</WebServService___GrabaEnvio4>" SOAP_CLOSE);
    web_call(c, b, graba_hdrs);
}

/* The fault's message of an answer, as "tipsa: <why>". */
static void fault_msg(const struct ups_call *c, char *out, size_t cap)
{
    char code[32], fs[160], err[64];
    if (c->resp && soap_fault(c->resp, code, sizeof(code), fs, sizeof(fs), err, sizeof(err)))
        snprintf(out, cap, "tipsa: %s%s%s", err, err[0] && fs[0] ? ": " : "", fs);
    else
        snprintf(out, cap, "tipsa: %s", c->error[0] ? c->error : "refused");
}

static void create_parse(const struct ups_call *c, const struct car_order *o, size_t n,
                         struct car_shipment *out, enum car_verdict *v)
{
    (void)o;
    (void)n;
    if (c->cls != HTTPC_OK) {
        fault_msg(c, out[0].error, sizeof(out[0].error));
        v[0] = CAR_REFUSED;
        return;
    }
    if (soap_text(c->resp, "strAlbaran", out[0].tracking_number,
                  sizeof(out[0].tracking_number)) &&
        out[0].tracking_number[0]) {
        snprintf(out[0].expedition_id, sizeof(out[0].expedition_id), "%s",
                 out[0].tracking_number);
        v[0] = CAR_CREATED;
        return;
    }
    snprintf(out[0].error, sizeof(out[0].error), "tipsa: a create answer without strAlbaran");
    v[0] = CAR_RETRY;
}

static void lookup_req(const struct car_order *o, struct ups_call *c, struct sbuf *b)
{
    sbuf_adds(b, SOAP_OPEN "<WebServService___ConsEnvEstadosRef xmlns=\"urn:WebServService\">");
    soap_field(b, "strRef", o->order_id);
    sbuf_adds(b, "</WebServService___ConsEnvEstadosRef>" SOAP_CLOSE);
    web_call(c, b, ref_hdrs);
}

/* The escaped XML document inside the string element name of an answer,
 * unescaped: malloc'd, or NULL when absent. */
static char *inner_doc(const char *resp, const char *name)
{
    const char *content, *a;
    size_t cl, al;
    if (!resp || !soap_find(resp, name, &content, &cl, &a, &al))
        return NULL;
    char *doc = xmalloc(cl + 1);
    if (soap_unescape(content, cl, doc, cl + 1) != 0) {
        free(doc);
        return NULL;
    }
    return doc;
}

static int lookup_parse(const struct ups_call *c, struct car_shipment *out)
{
    const char *content, *attrs;
    size_t cl, al;
    if (c->outcome != UPS_DONE || c->cls != HTTPC_OK)
        return -1;
    char *doc = inner_doc(c->resp, "strEnvEstadosRef");
    if (!doc)
        return -1;
    int found = 0;
    if (!soap_find(doc, "CONSULTA", &content, &cl, &attrs, &al))
        found = -1;
    else if (soap_find(doc, "ENV_ESTADOS_REF", &content, &cl, &attrs, &al) &&
             soap_attr(attrs, al, "V_ALBARAN", out->tracking_number,
                       sizeof(out->tracking_number)) &&
             out->tracking_number[0]) {
        snprintf(out->expedition_id, sizeof(out->expedition_id), "%s", out->tracking_number);
        found = 1;
    }
    free(doc);
    return found;
}

/* ---- the change feed ------------------------------------------------------------------ */

static void feed_req(const char *since, int page, struct ups_call *c, struct sbuf *b)
{
    char num[16];
    sbuf_adds(b, SOAP_OPEN
              "<WebServService___ConsEnvEstIncCambiosEstados xmlns=\"urn:WebServService\">");
    soap_field(b, "dtFecDesde", since);
    snprintf(num, sizeof(num), "%d", page);
    soap_field(b, "intPagina", num);
    snprintf(num, sizeof(num), "%d", FEED_PAGE);
    soap_field(b, "intNumReg", num);
    sbuf_adds(b, "</WebServService___ConsEnvEstIncCambiosEstados>" SOAP_CLOSE);
    web_call(c, b, feed_hdrs);
}

static int feed_parse(const struct ups_call *c, struct car_event **ev, size_t *n, int *more)
{
    const char *content, *attrs;
    size_t cl, al, cap = 0;
    char flag[16];
    *ev = NULL;
    *n = 0;
    *more = 0;
    char *doc = inner_doc(c->resp, "strEnvEstIncCambiosEstados");
    if (!doc || !soap_find(doc, "CONSULTA", &content, &cl, &attrs, &al)) {
        free(doc);
        return -1;
    }
    int rc = 0;
    for (const char *p = doc; (p = soap_find(p, "CAMBIO_ESTADO", &content, &cl, &attrs, &al));
         p = content + cl) {
        struct car_event e;
        char code[16];
        memset(&e, 0, sizeof(e));
        int ok = soap_attr(attrs, al, "V_REF", e.order_id, sizeof(e.order_id));
        ok &= soap_attr(attrs, al, "V_ALBARAN", e.tracking_number, sizeof(e.tracking_number));
        ok &= soap_attr(attrs, al, "V_COD_TIPO_EST", code, sizeof(code));
        ok &= soap_attr(attrs, al, "D_FEC_HORA_ALTA", e.event_at, sizeof(e.event_at));
        if (!ok || !e.order_id[0] || !e.event_at[0]) {
            rc = -1;
            break;
        }
        snprintf(e.status, sizeof(e.status), "%s", code);
        /* TIPSA gives no sequence: two changes of one instant are ordered by their
         * code, which follows the parcel's progress (0 documented ... 3 delivered) */
        e.seq = strtoll(code, NULL, 10);
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *ev = xrealloc(*ev, cap * sizeof(**ev));
        }
        (*ev)[(*n)++] = e;
    }
    if (rc == 0 && soap_text(c->resp, "bMasPaginas", flag, sizeof(flag)))
        *more = strcmp(flag, "true") == 0 || strcmp(flag, "1") == 0;
    if (rc != 0) {
        free(*ev);
        *ev = NULL;
        *n = 0;
    }
    free(doc);
    return rc;
}

/* ---- status codes ----------------------------------------------------------------------- */

static const struct car_status statuses[] = {
    { "0", OTRACK_ACCEPTED, 0 },      { "DOCUMENTADO", OTRACK_ACCEPTED, 0 },
    { "1", OTRACK_IN_TRANSIT, 0 },    { "TRANSITO", OTRACK_IN_TRANSIT, 0 },
    { "2", OTRACK_OUT_FOR_DELIVERY, 0 }, { "REPARTO", OTRACK_OUT_FOR_DELIVERY, 0 },
    { "3", OTRACK_DELIVERED, 0 },     { "ENTREGADO", OTRACK_DELIVERED, 0 },
    { "4", OTRACK_EXCEPTION, 0 },     { "INCIDENCIA", OTRACK_EXCEPTION, 0 },
    { "DEVUELTO", OTRACK_EXCEPTION, 1 }, { "ANULADO", OTRACK_EXCEPTION, 1 },
    { NULL, 0, 0 },
};

static int status_map(const char *code, int *terminal)
{
    return car_status_lookup(statuses, code, terminal);
}

const struct car car_tipsa = {
    .name = "tipsa",
    .label = "TIPSA",
    .tracking_url = "",
    .ups_id = CFG_UPS_TIPSA,
    .auth = &tipsa_auth,
    .batch = 0,
    .create_req = create_req,
    .create_parse = create_parse,
    .lookup_req = lookup_req,
    .lookup_parse = lookup_parse,
    .body_check = body_check,
    .status_map = status_map,
    .feed_req = feed_req,
    .feed_parse = feed_parse,
};
