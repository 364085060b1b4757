#include "sim_tipsa.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "clock.h"
#include "mem.h"
#include "sim.h"
#include "sim_carrier.h"

/* Demo credentials (changeable: POST /admin/tipsa/credentials). */
static const struct sim_cred_def creds[] = {
    { "agency", "000000" },
    { "client", "33333" },
    { "password", "tipsa-demo-password" },
};

#define FIELD_MAX 128
#define PAGE_DEFAULT 100
#define PAGE_MAX 500
#define ENV_OPEN "<?xml version=\"1.0\" encoding=\"utf-8\"?><SOAP-ENV:Envelope " \
                 "xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body>"
#define ENV_CLOSE "</SOAP-ENV:Body></SOAP-ENV:Envelope>"

static const char *const status_codes[] = { "0", "1", "2", "3", "4" };
static const char *const status_names[] = { "DOCUMENTADO", "TRANSITO", "REPARTO", "ENTREGADO",
                                            "INCIDENCIA" };

/* ---- XML, just enough ----------------------------------------------------------- */

static void put_xml_str(struct evbuffer *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': evbuffer_add(b, "&lt;", 4); break;
        case '>': evbuffer_add(b, "&gt;", 4); break;
        case '&': evbuffer_add(b, "&amp;", 5); break;
        case '"': evbuffer_add(b, "&quot;", 6); break;
        case '\'': evbuffer_add(b, "&apos;", 6); break;
        default: evbuffer_add(b, s, 1); break;
        }
    }
}

/* Unescape text[0..n) into out (at most outlen - 1 bytes). -1 when it does not fit. */
static int xml_unescape(const char *text, size_t n, char *out, size_t outlen)
{
    static const struct {
        const char *ent;
        char ch;
    } ents[] = { { "&lt;", '<' }, { "&gt;", '>' }, { "&amp;", '&' }, { "&quot;", '"' },
                 { "&apos;", '\'' } };
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = text[i];
        for (size_t e = 0; ch == '&' && e < sizeof(ents) / sizeof(ents[0]); e++) {
            size_t el = strlen(ents[e].ent);
            if (i + el <= n && strncmp(text + i, ents[e].ent, el) == 0) {
                ch = ents[e].ch;
                i += el - 1;
                break;
            }
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    return 0;
}

/* Where the content of the first element whose local name is name (any
 * namespace prefix) begins, or NULL when there is none; *empty = 1 for <name/>. */
static const char *xml_find(const char *x, const char *name, int *empty)
{
    size_t nl = strlen(name);
    for (const char *p = strchr(x, '<'); p; p = strchr(p + 1, '<')) {
        const char *q = p + 1, *local = q;
        if (*q == '/' || *q == '?' || *q == '!')
            continue;
        while (*q && *q != ':' && *q != '>' && *q != ' ' && *q != '/')
            q++;
        if (*q == ':')
            local = q + 1;
        if (strncmp(local, name, nl) != 0 || !local[nl] || !strchr("> \t\r\n/", local[nl]))
            continue;
        const char *gt = strchr(local + nl, '>');
        if (!gt)
            return NULL;
        *empty = gt[-1] == '/';
        return gt + 1;
    }
    return NULL;
}

static int xml_has(const char *x, const char *name)
{
    int empty;
    return xml_find(x, name, &empty) != NULL;
}

/* The text of the first element named name, unescaped, into out: 1 when found,
 * 0 when absent or too long for out. */
static int xml_text(const char *x, const char *name, char *out, size_t outlen)
{
    int empty = 0;
    const char *start = xml_find(x, name, &empty);
    const char *end = start && !empty ? strchr(start, '<') : NULL;
    if (start && empty) {
        out[0] = '\0';
        return 1;
    }
    return end && xml_unescape(start, (size_t)(end - start), out, outlen) == 0;
}

/* ---- replies ------------------------------------------------------------------------ */

static void put_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    int client = status < 500 || strcmp(code, "VALIDATION") == 0 ||
                 strcmp(code, "SESSION_EXPIRED") == 0 || strcmp(code, "LOGIN_FAILED") == 0 ||
                 strcmp(code, "BAD_REQUEST") == 0;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/xml; charset=utf-8");
    evbuffer_add_printf(b, ENV_OPEN "<SOAP-ENV:Fault><faultcode>SOAP-ENV:%s</faultcode>"
                                    "<faultstring>",
                        client ? "Client" : "Server");
    put_xml_str(b, msg);
    evbuffer_add_printf(b, "</faultstring><detail><errorCode>");
    put_xml_str(b, code);
    evbuffer_add_printf(b, "</errorCode></detail></SOAP-ENV:Fault>" ENV_CLOSE);
}

/* Open a method's response element; the caller adds the fields and calls resp_close. */
static struct evbuffer *resp_open(const struct sim_call *c, const char *service,
                                  const char *method)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Content-Type",
                      "text/xml; charset=utf-8");
    evbuffer_add_printf(b, ENV_OPEN "<v1:%sResponse xmlns:v1=\"urn:%s\">", method, service);
    return b;
}

static void resp_close(struct evbuffer *b, const char *method)
{
    evbuffer_add_printf(b, "</v1:%sResponse>" ENV_CLOSE, method);
}

/* ---- methods -------------------------------------------------------------------------- */

static void login(struct sim *s, struct sim_carrier *k, const struct sim_call *c, const char *x)
{
    char age[FIELD_MAX] = "", cod[FIELD_MAX] = "", pass[FIELD_MAX] = "", tok[SIM_TOKEN_LEN];
    xml_text(x, "strCodAge", age, sizeof(age));
    xml_text(x, "strCod", cod, sizeof(cod));
    xml_text(x, "strPass", pass, sizeof(pass));
    int ok = sim_sys_cred_eq(&k->sys, "agency", age);
    ok &= sim_sys_cred_eq(&k->sys, "client", cod);
    ok &= sim_sys_cred_eq(&k->sys, "password", pass);
    if (!ok) {
        k->sys.stats.unauthorized++;
        sim_sys_fail(s, &k->sys, c, 500, "LOGIN_FAILED", "Usuario o contraseña incorrectos");
        return;
    }
    if (sim_tokens_issue(&k->sys.tokens, "", k->sys.faults.token_ttl_s, tok) != 0) {
        sim_sys_fail(s, &k->sys, c, 500, "FULL", "too many sessions; reset the simulator");
        return;
    }
    k->sys.stats.logins++;
    struct evbuffer *b = resp_open(c, "LoginWSService", "LoginWSService___LoginCli");
    evbuffer_add_printf(b, "<strSesion>{%s}</strSesion><intCodAge>", tok);
    put_xml_str(b, age);
    evbuffer_add_printf(b, "</intCodAge>");
    resp_close(b, "LoginWSService___LoginCli");
    sim_sys_answer(s, &k->sys, c, 200, 0);
}

/* 1 when it answered: no session header, or a session that is not valid. */
static int session_or_reply(struct sim *s, struct sim_carrier *k, const struct sim_call *c,
                            const char *x)
{
    char id[FIELD_MAX] = "";
    const char *tok = id;
    size_t len;
    xml_text(x, "ID", id, sizeof(id));
    len = strlen(id);
    if (len >= 2 && id[0] == '{' && id[len - 1] == '}') {   /* "{guid}" as login gave it */
        tok = id + 1;
        len -= 2;
    }
    int ok = len > 0 && sim_tokens_valid(&k->sys.tokens, tok, len);
    if (ok && k->sys.faults.unauthorized_next > 0) {
        k->sys.faults.unauthorized_next--;
        ok = 0;
    }
    if (ok)
        return 0;
    k->sys.stats.unauthorized++;
    sim_sys_fail(s, &k->sys, c, 500, "SESSION_EXPIRED",
                 "Sesión no válida o caducada (ROClientIDHeader)");
    return 1;
}

static void graba_envio(struct sim *s, struct sim_carrier *k, const struct sim_call *c,
                        const char *x)
{
    char ref[FIELD_MAX] = "", zip[FIELD_MAX] = "";
    const char *why;
    xml_text(x, "strRef", ref, sizeof(ref));
    xml_text(x, "strCPDes", zip, sizeof(zip));
    struct sim_ship *sp = sim_carrier_create(s, k, ref, zip[0] ? zip : NULL, &why);
    if (!sp) {
        sim_sys_fail(s, &k->sys, c, 500, "VALIDATION", why);
        return;
    }
    struct evbuffer *b = resp_open(c, "WebServService", "WebServService___GrabaEnvio4");
    evbuffer_add_printf(b, "<strAlbaran>%s</strAlbaran><strGuidOut>{%s}</strGuidOut>",
                        sp->tracking, sp->code);
    resp_close(b, "WebServService___GrabaEnvio4");
    sim_sys_answer(s, &k->sys, c, 200, 1);
}

/* One state change as an escaped <tag .../> element into b. */
static void put_change(struct evbuffer *b, const char *tag, const struct sim_ship *sp,
                       const struct sim_ship_event *ev)
{
    struct evbuffer *e = evbuffer_new();
    char at[CLOCK_RFC3339_LEN];
    CV_ASSERT(e);
    clock_rfc3339(ev->at_ms, at);
    evbuffer_add_printf(e, "<%s V_ALBARAN=\"%s\" V_REF=\"", tag, sp->tracking);
    put_xml_str(e, sim_ship_ref(sp));
    evbuffer_add_printf(e, "\" V_COD_TIPO_EST=\"%s\" V_DES_TIPO_EST=\"%s\" "
                           "D_FEC_HORA_ALTA=\"%s\"/>",
                        status_codes[ev->status], status_names[ev->status], at);
    size_t n = evbuffer_get_length(e);
    char *text = xmalloc(n + 1);
    evbuffer_remove(e, text, n);
    text[n] = '\0';
    put_xml_str(b, text);               /* escaped once more: the field is a string */
    free(text);
    evbuffer_free(e);
}

static void estados_ref(struct sim *s, struct sim_carrier *k, const struct sim_call *c,
                        const char *x)
{
    char ref[FIELD_MAX] = "";
    xml_text(x, "strRef", ref, sizeof(ref));
    const struct sim_ship *sp = ref[0] ? sim_ships_find(&k->ships, ref, strlen(ref)) : NULL;
    struct evbuffer *b = resp_open(c, "WebServService", "WebServService___ConsEnvEstadosRef");
    evbuffer_add_printf(b, "<strEnvEstadosRef>&lt;CONSULTA&gt;");
    if (sp) {
        struct sim_ship_event ev[SIM_SHIP_EVENTS];
        int n = sim_ship_events(sp, clock_wall_ms(), ev);
        for (int i = 0; i < n; i++)
            put_change(b, "ENV_ESTADOS_REF", sp, &ev[i]);
    }
    evbuffer_add_printf(b, "&lt;/CONSULTA&gt;</strEnvEstadosRef>");
    resp_close(b, "WebServService___ConsEnvEstadosRef");
    sim_sys_answer(s, &k->sys, c, 200, 0);
}

struct change {
    const struct sim_ship *sp;
    struct sim_ship_event ev;
};

static int cmp_change(const void *a, const void *b)
{
    const struct change *x = a, *y = b;
    if (x->ev.at_ms != y->ev.at_ms)
        return x->ev.at_ms < y->ev.at_ms ? -1 : 1;
    return x->sp < y->sp ? -1 : x->sp > y->sp;     /* creation order of references */
}

static void cambios(struct sim *s, struct sim_carrier *k, const struct sim_call *c,
                    const char *x)
{
    char since[FIELD_MAX] = "", num[32];
    int64_t since_ms = 0, page = 1, per = PAGE_DEFAULT;
    char *end;
    if (xml_text(x, "dtFecDesde", since, sizeof(since)) && since[0] &&
        clock_parse_rfc3339(since, &since_ms) != 0) {
        sim_sys_fail(s, &k->sys, c, 500, "BAD_REQUEST", "dtFecDesde: fecha no válida");
        return;
    }
    if (xml_text(x, "intPagina", num, sizeof(num)) && num[0]) {
        page = strtoll(num, &end, 10);
        if (*end || page < 1)
            page = 0;
    }
    if (xml_text(x, "intNumReg", num, sizeof(num)) && num[0]) {
        per = strtoll(num, &end, 10);
        if (*end || per < 1 || per > PAGE_MAX)
            per = 0;
    }
    if (page < 1 || per < 1) {
        sim_sys_fail(s, &k->sys, c, 500, "BAD_REQUEST", "intPagina >= 1, intNumReg 1..500");
        return;
    }
    /* The feed is read from the schedules: every change in (since, now]. */
    int64_t now = clock_wall_ms();
    size_t n = sim_ships_count(&k->ships), nch = 0;
    struct change *ch = xmalloc((n ? n : 1) * SIM_SHIP_EVENTS * sizeof(*ch));
    for (size_t i = 0; i < n; i++) {
        const struct sim_ship *sp = sim_ships_at(&k->ships, i);
        struct sim_ship_event ev[SIM_SHIP_EVENTS];
        int ne = sim_ship_events(sp, now, ev);
        for (int e = 0; e < ne; e++)
            if (ev[e].at_ms > since_ms)
                ch[nch++] = (struct change){ sp, ev[e] };
    }
    qsort(ch, nch, sizeof(*ch), cmp_change);
    size_t from = (size_t)((page - 1) * per);
    size_t to = from + (size_t)per < nch ? from + (size_t)per : nch;
    struct evbuffer *b = resp_open(c, "WebServService",
                                   "WebServService___ConsEnvEstIncCambiosEstados");
    evbuffer_add_printf(b, "<strEnvEstIncCambiosEstados>&lt;CONSULTA&gt;");
    for (size_t i = from; i < to; i++)
        put_change(b, "CAMBIO_ESTADO", ch[i].sp, &ch[i].ev);
    evbuffer_add_printf(b, "&lt;/CONSULTA&gt;</strEnvEstIncCambiosEstados><intTotal>%zu"
                           "</intTotal><bMasPaginas>%s</bMasPaginas>",
                        nch, to < nch ? "true" : "false");
    resp_close(b, "WebServService___ConsEnvEstIncCambiosEstados");
    free(ch);
    sim_sys_answer(s, &k->sys, c, 200, 0);
}

/* ---- the endpoint ------------------------------------------------------------------- */

static void h_soap(struct sim *s, const struct sim_call *c)
{
    struct sim_carrier *k = (struct sim_carrier *)s->sys[SIM_SYS_TIPSA];
    char service[64] = "";
    const char *body;
    size_t len;
    char *x = NULL;
    if (sim_sys_gate(s, &k->sys, c))
        return;
    if (sim_body(c, &body, &len) != CV_OK) {
        sim_sys_fail(s, &k->sys, c, 413, "BAD_REQUEST", "body too large");
        goto out;
    }
    x = xstrndup(body, len);
    sim_query(c, "service", service, sizeof(service));
    int login_svc = strcmp(service, "LoginWSService") == 0;
    int web_svc = strcmp(service, "WebServService") == 0;
    if (login_svc && xml_has(x, "LoginWSService___LoginCli")) {
        login(s, k, c, x);
        goto out;
    }
    if (!web_svc) {
        sim_sys_fail(s, &k->sys, c, 500, "BAD_REQUEST", "unknown service or method");
        goto out;
    }
    if (session_or_reply(s, k, c, x))
        goto out;
    if (xml_has(x, "WebServService___GrabaEnvio4"))
        graba_envio(s, k, c, x);
    else if (xml_has(x, "WebServService___ConsEnvEstadosRef"))
        estados_ref(s, k, c, x);
    else if (xml_has(x, "WebServService___ConsEnvEstIncCambiosEstados"))
        cambios(s, k, c, x);
    else
        sim_sys_fail(s, &k->sys, c, 500, "BAD_REQUEST", "unknown method");
out:
    free(x);
}

static void tipsa_free(struct sim_sys *y)
{
    sim_carrier_cleanup((struct sim_carrier *)y);
    free(y);
}

void sim_tipsa_register(struct sim *s)
{
    struct sim_carrier *k = xcalloc(1, sizeof(*k));
    sim_carrier_init(s, k, SIM_SYS_TIPSA, "tipsa", NULL, "TIPSA", "", creds,
                     (int)(sizeof(creds) / sizeof(creds[0])), s->cfg->sim_session_ttl_s);
    k->sys.put_error = put_error;
    k->sys.free = tipsa_free;
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/tipsa/SOAP", 0, h_soap);
}
