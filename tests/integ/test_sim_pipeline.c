/* test_sim_pipeline.c - the simulator's order-pipeline systems over real HTTP: Mirakl,
 * SEUR (with its signed webhooks, received by a libevent listener in this process),
 * OnTime, TIPSA (SOAP), Correos Express and Mercado Livre. Each test starts its own
 * conveyor-sim (no API, no workers) and stops it, checking its exit status and that its
 * log holds no sanitizer report. */
#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "auth.h"
#include "harness.h"

#define MIRAKL_KEY "Authorization: mirakl-demo-shop-key-0001"
#define DEMO_SECRET "whsec_Y29udmV5b3Itc2ltLWRlbW8td2ViaG9vay1rZXk="

static struct hn_stack st;

TestSuite(sim_pipeline, .timeout = 60);

static void start_sim(const char *const *env)
{
    struct hn_stack_opts o = { .workers = 0, .no_api = 1, .sim_env = env };
    hn_start_stack(&st, &o);
}

/* One request to the sim; path is appended to its URL. Free with hn_resp_free(). */
static struct hn_resp *call(const char *method, const char *path, const char *const *headers,
                            const char *body, int timeout_ms)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", st.sim_url, path);
    return hn_http(method, url, headers, body, body ? strlen(body) : 0, timeout_ms);
}

/* call() that must answer want; returns the body parsed as JSON (free it). */
static cJSON *call_json(const char *method, const char *path, const char *const *headers,
                        const char *body, int want)
{
    struct hn_resp *r = call(method, path, headers, body, 5000);
    cr_assert_eq(r->status, want, "%s %s: %d %s", method, path, r->status, r->body);
    cJSON *j = hn_json(r);
    cr_assert_not_null(j, "%s %s: not JSON: %s", method, path, r->body);
    hn_resp_free(r);
    return j;
}

static void admin(const char *path, const char *body)
{
    cJSON_Delete(call_json("POST", path, NULL, body, 200));
}

/* A number at a dotted path of the system's stats ("references.MK-1.creates"). */
static double stat_of(const char *system, const char *dotted)
{
    char path[96], key[256];
    snprintf(path, sizeof(path), "/admin/%s/stats", system);
    cJSON *j = call_json("GET", path, NULL, NULL, 200);
    const cJSON *it = j;
    snprintf(key, sizeof(key), "%s", dotted);
    for (char *save = NULL, *part = strtok_r(key, ".", &save); part && it;
         part = strtok_r(NULL, ".", &save))
        it = cJSON_GetObjectItemCaseSensitive(it, part);
    cr_assert(cJSON_IsNumber(it), "%s stats: no number at %s", system, dotted);
    double v = it->valuedouble;
    cJSON_Delete(j);
    return v;
}

static const char *str_of(const cJSON *j, const char *a, const char *b)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b)
        it = cJSON_GetObjectItemCaseSensitive(it, b);
    cr_assert(cJSON_IsString(it), "no string at %s.%s", a, b ? b : "");
    return it->valuestring;
}

/* ---- Mirakl ---------------------------------------------------------------------------- */

Test(sim_pipeline, mirakl_or11_pages_and_or23_before_or24)
{
    start_sim(NULL);
    const char *const key[] = { MIRAKL_KEY, NULL };
    admin("/admin/mirakl/orders", "{\"generate\":12,\"seed\":42}");

    struct hn_resp *r = call("GET", "/mirakl/api/orders", NULL, NULL, 5000);
    cr_assert_eq(r->status, 401, "no shop key: %d", r->status);
    hn_resp_free(r);

    cJSON *j = call_json("GET", "/mirakl/api/orders?order_state_codes=SHIPPING&max=5&offset=10",
                         key, NULL, 200);
    cr_assert_eq(cJSON_GetObjectItem(j, "total_count")->valueint, 12);
    cJSON *orders = cJSON_GetObjectItem(j, "orders");
    cr_assert_eq(cJSON_GetArraySize(orders), 2, "offset 10 of 12 leaves 2");
    cJSON *o = cJSON_GetArrayItem(orders, 0);
    cr_assert_str_eq(str_of(o, "order_state", NULL), "SHIPPING");
    const cJSON *addr = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "customer"),
                                            "shipping_address");
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(addr, "country_iso_code")));
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(o, "order_lines"), 0), "weight")));
    cJSON_Delete(j);

    /* generated weights hit every carrier rule: < 1 kg, 1-5 kg, > 5 kg, international */
    j = call_json("GET", "/mirakl/api/orders?max=100", key, NULL, 200);
    int light = 0, mid = 0, heavy = 0, intl = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "orders"))
    {
        double w = 0;
        cJSON *l;
        cJSON_ArrayForEach(l, cJSON_GetObjectItem(it, "order_lines"))
            w += cJSON_GetObjectItem(l, "weight")->valuedouble *
                 cJSON_GetObjectItem(l, "quantity")->valuedouble;
        const char *cc = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(it,
                                                 "customer"), "shipping_address"),
                                             "country_iso_code")->valuestring;
        if (strcmp(cc, "ES") != 0)
            intl++;
        else if (w < 1)
            light++;
        else if (w <= 5)
            mid++;
        else
            heavy++;
    }
    cr_assert(light && mid && heavy && intl, "light %d mid %d heavy %d intl %d", light, mid,
              heavy, intl);
    cJSON_Delete(j);

    r = call("GET", "/mirakl/api/orders?max=101", key, NULL, 5000);
    cr_assert_eq(r->status, 400, "max 101: %d", r->status);
    hn_resp_free(r);

    j = call_json("PUT", "/mirakl/api/orders/MK-00000001-A/ship", key, "{}", 400);
    cr_assert_str_eq(str_of(j, "code", NULL), "ORDER_INVALID_STATE");
    cJSON_Delete(j);
    r = call("PUT", "/mirakl/api/orders/MK-00000001-A/tracking", key,
             "{\"carrier_code\":\"SEUR\",\"carrier_name\":\"SEUR\",\"carrier_url\":"
             "\"https://seur.example/t\",\"tracking_number\":\"ECB123\"}", 5000);
    cr_assert_eq(r->status, 204, "OR23: %d %s", r->status, r->body);
    hn_resp_free(r);
    r = call("PUT", "/mirakl/api/orders/MK-00000001-A/ship", key, "{}", 5000);
    cr_assert_eq(r->status, 204, "OR24: %d %s", r->status, r->body);
    hn_resp_free(r);

    cr_assert_eq(stat_of("mirakl", "orders.MK-00000001-A.or23"), 1);
    cr_assert_eq(stat_of("mirakl", "orders.MK-00000001-A.or24"), 2);
    cr_assert_eq(stat_of("mirakl", "operations.OR24"), 2);
    j = call_json("GET", "/admin/mirakl/orders/MK-00000001-A", NULL, NULL, 200);
    cr_assert_str_eq(str_of(j, "order_state", NULL), "SHIPPED");
    cr_assert_str_eq(str_of(j, "shipping_tracking", NULL), "ECB123");
    cJSON_Delete(j);
    hn_stop_stack(&st);
}

Test(sim_pipeline, mirakl_429_mode_and_budget_send_retry_after)
{
    start_sim(NULL);
    const char *const key[] = { MIRAKL_KEY, NULL };
    admin("/admin/mirakl/orders", "{\"generate\":1}");
    admin("/admin/mirakl/faults", "{\"throttle_next\":2,\"retry_after_s\":3}");
    for (int i = 0; i < 2; i++) {
        struct hn_resp *r = call("GET", "/mirakl/api/orders", key, NULL, 5000);
        cr_assert_eq(r->status, 429, "call %d: %d", i, r->status);
        char *ra = hn_resp_header(r, "Retry-After");
        cr_assert(ra && strcmp(ra, "3") == 0, "Retry-After: %s", ra ? ra : "(none)");
        free(ra);
        hn_resp_free(r);
    }
    cJSON_Delete(call_json("GET", "/mirakl/api/orders", key, NULL, 200));
    cr_assert_eq(stat_of("mirakl", "throttled"), 2);

    /* the per-operation budget: OR11 once a minute */
    admin("/admin/mirakl/budget", "{\"OR11\":1}");
    cJSON_Delete(call_json("GET", "/mirakl/api/orders", key, NULL, 200));
    struct hn_resp *r = call("GET", "/mirakl/api/orders", key, NULL, 5000);
    cr_assert_eq(r->status, 429);
    char *ra = hn_resp_header(r, "Retry-After");
    cr_assert(ra && atoi(ra) >= 1 && atoi(ra) <= 60, "Retry-After: %s", ra ? ra : "(none)");
    free(ra);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

/* ---- SEUR -------------------------------------------------------------------------------- */

static void seur_token(char *auth, size_t len)
{
    cJSON *j = call_json("POST", "/seur/pic_token",
                         (const char *const[]){ "Content-Type: application/x-www-form-urlencoded",
                                                NULL },
                         "grant_type=password&client_id=seur-demo-client&client_secret="
                         "seur-demo-client-secret&username=seur-demo-user&password="
                         "seur-demo-password",
                         200);
    cr_assert_str_eq(str_of(j, "token_type", NULL), "Bearer");
    snprintf(auth, len, "Authorization: Bearer %s", str_of(j, "access_token", NULL));
    cJSON_Delete(j);
}

static void seur_create(const char *auth, const char *ref, int want)
{
    char body[256];
    const char *const h[] = { auth, NULL };
    snprintf(body, sizeof(body), "{\"reference\":\"%s\",\"receiver\":{\"name\":\"Ana\","
                                 "\"address\":{\"postalCode\":\"41001\"}},\"parcels\":"
                                 "[{\"weight\":7.5}]}", ref);
    cJSON *j = call_json("POST", "/seur/pic/v1/shipments", h, body, want);
    if (want == 200) {
        cr_assert(strncmp(str_of(j, "data", "shipmentCode"), "SEUR", 4) == 0);
        cr_assert_str_eq(str_of(j, "data", "reference"), ref);
    } else {
        const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "errors"), 0);
        cr_assert(cJSON_IsString(cJSON_GetObjectItem(e, "detail")), "SEUR error shape");
    }
    cJSON_Delete(j);
}

Test(sim_pipeline, seur_creates_are_not_idempotent_and_counted_per_reference)
{
    const char *const env[] = { "CONVEYOR_SIM_WEBHOOK_DELAY_MS=0", NULL };
    start_sim(env);
    char auth[128];
    seur_token(auth, sizeof(auth));
    seur_create(auth, "MK-7", 200);
    seur_create(auth, "MK-7", 200);
    cr_assert_eq(stat_of("seur", "references.MK-7.creates"), 2);

    /* a marked postal code fails validation in SEUR's shape, and makes nothing */
    admin("/admin/seur/faults", "{\"fail_keys\":[\"41001\"]}");
    seur_create(auth, "MK-8", 400);
    cr_assert_eq(stat_of("seur", "shipments_created"), 2);

    /* applied, then no reply: the lookup by reference finds it */
    admin("/admin/seur/faults", "{\"fail_keys\":[],\"apply_then_timeout_next\":1}");
    const char *const h[] = { auth, NULL };
    struct hn_resp *r = call("POST", "/seur/pic/v1/shipments", h, "{\"reference\":\"MK-9\"}",
                             700);
    cr_assert_eq(r->status, 0, "the create must time out, got %d", r->status);
    hn_resp_free(r);
    cJSON *j = call_json("GET", "/seur/pic/v1/tracking-services/simplified?ref=MK-9", h, NULL,
                         200);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "shipments")->valueint, 1);
    cJSON_Delete(j);
    cJSON_Delete(call_json("GET", "/seur/pic/v1/tracking-services/simplified?ref=NONE", h,
                           NULL, 404));

    /* tokens expire now: 401, and a new token works */
    admin("/admin/seur/faults", "{\"expire_tokens_now\":true}");
    seur_create(auth, "MK-10", 401);
    seur_token(auth, sizeof(auth));
    seur_create(auth, "MK-10", 200);
    /* a valid token refused once */
    admin("/admin/seur/faults", "{\"unauthorized_next\":1}");
    seur_create(auth, "MK-11", 401);
    seur_create(auth, "MK-11", 200);
    cr_assert_eq(stat_of("seur", "logins"), 2);
    hn_stop_stack(&st);
}

/* ---- SEUR's signed webhooks, received here ------------------------------------------------ */

#define MAX_HOOKS 16

struct hook {
    char id[64], ts[32], sig[128], uri[128];
    char *body;
};

static struct {
    struct event_base *base;
    struct evhttp *http;
    int port;
    int fail_first;                      /* answer 500 to this many first */
    int n;
    struct hook h[MAX_HOOKS];
} L;

static void on_hook(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evbuffer *b = evhttp_request_get_input_buffer(req);
    if (L.n < MAX_HOOKS) {
        struct hook *k = &L.h[L.n++];
        const char *v;
        snprintf(k->id, sizeof(k->id), "%s", (v = evhttp_find_header(in, "webhook-id")) ? v : "");
        snprintf(k->ts, sizeof(k->ts), "%s",
                 (v = evhttp_find_header(in, "webhook-timestamp")) ? v : "");
        snprintf(k->sig, sizeof(k->sig), "%s",
                 (v = evhttp_find_header(in, "webhook-signature")) ? v : "");
        size_t n = evbuffer_get_length(b);
        k->body = calloc(1, n + 1);
        evbuffer_copyout(b, k->body, n);
        snprintf(k->uri, sizeof(k->uri), "%s", evhttp_request_get_uri(req));
    }
    evhttp_send_reply(req, L.fail_first-- > 0 ? 500 : 200, "OK", NULL);
}

static void listen_hooks(void)
{
    memset(&L, 0, sizeof(L));
    L.base = event_base_new();
    L.http = evhttp_new(L.base);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(L.http, "127.0.0.1", 0);
    cr_assert_not_null(bs);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl);
    L.port = ntohs(sa.sin_port);
    evhttp_set_gencb(L.http, on_hook, NULL);
}

static void hook_cleanup(void)
{
    for (int i = 0; i < L.n; i++)
        free(L.h[i].body);
    evhttp_free(L.http);
    event_base_free(L.base);
}

static int hooks_at_least(void *arg)
{
    event_base_loop(L.base, EVLOOP_NONBLOCK);
    return L.n >= *(int *)arg;
}

/* 1 when k's signature is the Standard Webhooks v1 signature under the demo secret. */
static int signature_ok(const struct hook *k)
{
    const char *b64 = DEMO_SECRET + 6;
    unsigned char key[64], mac[32];
    char text[4096], want[64];
    long kl = auth_b64_decode(b64, strlen(b64), key);
    cr_assert(kl > 0);
    int n = snprintf(text, sizeof(text), "%s.%s.%s", k->id, k->ts, k->body);
    cr_assert(n > 0 && (size_t)n < sizeof(text));
    auth_hmac_sha256(key, (size_t)kl, text, (size_t)n, mac);
    memcpy(want, "v1,", 3);
    auth_b64_encode(mac, 32, want + 3);
    return strcmp(want, k->sig) == 0;
}

Test(sim_pipeline, seur_sends_signed_webhooks_with_retries_and_faults)
{
    listen_hooks();
    char url_env[96];
    snprintf(url_env, sizeof(url_env), "CONVEYOR_SIM_WEBHOOK_URL=http://127.0.0.1:%d", L.port);
    const char *const env[] = { url_env, "CONVEYOR_SIM_WEBHOOK_DELAY_MS=20",
                                "CONVEYOR_SIM_TRANSIT_DELAY_MS=0", NULL };
    start_sim(env);
    char auth[128];
    seur_token(auth, sizeof(auth));

    /* one shipment, one ACCEPTED message; the first answer is a 500: retried, same id */
    L.fail_first = 1;
    seur_create(auth, "MK-21", 200);
    int want = 2;
    cr_assert(hn_wait_until(hooks_at_least, &want, 10000, 5), "got %d webhooks", L.n);
    cr_assert_str_eq(L.h[0].id, L.h[1].id, "a retry keeps its webhook-id");
    cr_assert_str_eq(L.h[1].uri, "/api/v1/carriers/seur/webhook");
    cr_assert(strncmp(L.h[0].id, "msg_", 4) == 0);
    cr_assert(signature_ok(&L.h[1]), "signature %s does not verify", L.h[1].sig);
    long long ts = atoll(L.h[1].ts);
    cr_assert(llabs(ts - (long long)time(NULL)) < 60, "timestamp %lld is now", ts);
    cJSON *j = cJSON_Parse(L.h[1].body);
    cr_assert_not_null(j);
    cr_assert_str_eq(str_of(j, "type", NULL), "shipment.tracking");
    cr_assert_str_eq(str_of(j, "data", "carrier"), "seur");
    cr_assert_str_eq(str_of(j, "data", "reference"), "MK-21");
    cr_assert_str_eq(str_of(j, "data", "status"), "ACCEPTED");
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "seq")->valueint, 1);
    cJSON_Delete(j);

    /* bad signature, then stale timestamp, then a duplicate (same id twice) */
    admin("/admin/seur/faults", "{\"webhook_bad_signature_next\":1}");
    seur_create(auth, "MK-22", 200);
    want = 3;
    cr_assert(hn_wait_until(hooks_at_least, &want, 10000, 5));
    cr_assert(!signature_ok(&L.h[2]), "the bad signature verified");
    admin("/admin/seur/faults", "{\"webhook_stale_next\":1}");
    seur_create(auth, "MK-23", 200);
    want = 4;
    cr_assert(hn_wait_until(hooks_at_least, &want, 10000, 5));
    cr_assert(signature_ok(&L.h[3]), "a stale message is still signed right");
    cr_assert(atoll(L.h[3].ts) < (long long)time(NULL) - 300, "stale: %s", L.h[3].ts);
    admin("/admin/seur/faults", "{\"webhook_duplicate_next\":1}");
    seur_create(auth, "MK-24", 200);
    want = 6;
    cr_assert(hn_wait_until(hooks_at_least, &want, 10000, 5));
    cr_assert_str_eq(L.h[4].id, L.h[5].id);
    cr_assert_str_eq(L.h[4].body, L.h[5].body);
    cr_assert_eq(stat_of("seur", "webhooks.retries"), 1);
    cr_assert_eq(stat_of("seur", "webhooks.delivered"), 5);

    hn_stop_stack(&st);
    hook_cleanup();
}

/* ---- OnTime ---------------------------------------------------------------------------- */

Test(sim_pipeline, ontime_batch_gives_per_item_results)
{
    start_sim(NULL);
    cJSON *j = call_json("POST", "/ontime/oauth/token",
                         (const char *const[]){ "Content-Type: application/x-www-form-urlencoded",
                                                NULL },
                         "grant_type=client_credentials&client_id=ontime-demo-client&"
                         "client_secret=ontime-demo-secret", 200);
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", str_of(j, "access_token", NULL));
    cJSON_Delete(j);
    const char *const h[] = { auth, NULL };

    admin("/admin/ontime/faults", "{\"fail_keys\":[\"BAD-1\"]}");
    j = call_json("POST", "/ontime/api/v1/shipments/batch", h,
                  "[{\"reference\":\"A-1\"},{\"reference\":\"BAD-1\"},{\"reference\":\"A-2\"}]",
                  200);
    cJSON *res = cJSON_GetObjectItem(j, "results");
    cr_assert_eq(cJSON_GetArraySize(res), 3);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 0), "status")->valueint, 201);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 1), "status")->valueint, 422);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 2), "status")->valueint, 201);
    cJSON_Delete(j);
    cr_assert_eq(stat_of("ontime", "shipments_created"), 2);

    /* 51 items: refused whole */
    char big[51 * 24 + 8];
    size_t o = 0;
    big[o++] = '[';
    for (int i = 0; i < 51; i++)
        o += (size_t)snprintf(big + o, sizeof(big) - o, "%s{\"reference\":\"B-%d\"}",
                              i ? "," : "", i);
    snprintf(big + o, sizeof(big) - o, "]");
    cJSON_Delete(call_json("POST", "/ontime/api/v1/shipments/batch", h, big, 413));
    cr_assert_eq(stat_of("ontime", "shipments_created"), 2);

    j = call_json("GET", "/ontime/api/v1/shipments?reference=A-2", h, NULL, 200);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "data")), 1);
    cJSON_Delete(j);
    j = call_json("POST", "/ontime/api/v1/shipments", h, "{\"reference\":\"BAD-1\"}", 422);
    cr_assert_str_eq(str_of(j, "error", NULL), "validation_failed");
    cJSON_Delete(j);
    hn_stop_stack(&st);
}

/* ---- TIPSA ------------------------------------------------------------------------------- */

static char *soap(const char *service, const char *session, const char *inner, int want)
{
    char path[96], body[2048], header[256] = "";
    if (session)
        snprintf(header, sizeof(header), "<soap:Header><ROClientIDHeader><ID>%s</ID>"
                                         "</ROClientIDHeader></soap:Header>", session);
    snprintf(path, sizeof(path), "/tipsa/SOAP?service=%s", service);
    snprintf(body, sizeof(body),
             "<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/"
             "soap/envelope/\">%s<soap:Body>%s</soap:Body></soap:Envelope>", header, inner);
    const char *const h[] = { "Content-Type: text/xml; charset=utf-8", NULL };
    struct hn_resp *r = call("POST", path, h, body, 5000);
    cr_assert_eq(r->status, want, "%s: %d %s", service, r->status, r->body);
    char *ct = hn_resp_header(r, "Content-Type");
    cr_assert(ct && strncmp(ct, "text/xml", 8) == 0, "Content-Type %s", ct ? ct : "(none)");
    free(ct);
    char *out = strdup(r->body);
    hn_resp_free(r);
    return out;
}

/* The text of <tag>...</tag> in x, malloc'd. */
static char *xml_of(const char *x, const char *tag)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = strstr(x, open), *b = a ? strstr(a, close) : NULL;
    cr_assert(a && b, "no <%s> in %s", tag, x);
    a += strlen(open);
    return strndup(a, (size_t)(b - a));
}

Test(sim_pipeline, tipsa_soap_session_create_lookup_and_faults)
{
    const char *const env[] = { "CONVEYOR_SIM_WEBHOOK_DELAY_MS=0", NULL };
    start_sim(env);
    char *x = soap("LoginWSService", NULL,
                   "<LoginWSService___LoginCli><strCodAge>000000</strCodAge><strCod>33333"
                   "</strCod><strPass>wrong</strPass></LoginWSService___LoginCli>", 500);
    cr_assert(strstr(x, "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>"),
              "fault shape: %s", x);
    free(x);
    x = soap("LoginWSService", NULL,
             "<tns:LoginWSService___LoginCli xmlns:tns=\"urn:LoginWSService\"><strCodAge>000000"
             "</strCodAge><strCod>33333</strCod><strPass>tipsa-demo-password</strPass>"
             "</tns:LoginWSService___LoginCli>", 200);
    char *sid = xml_of(x, "strSesion");
    free(x);

    x = soap("WebServService", "{nope}",
             "<WebServService___GrabaEnvio4><strRef>MK-31</strRef></WebServService___GrabaEnvio4>",
             500);
    char *code = xml_of(x, "errorCode");
    cr_assert_str_eq(code, "SESSION_EXPIRED");
    free(code);
    free(x);

    x = soap("WebServService", sid,
             "<WebServService___GrabaEnvio4><strRef>MK-31</strRef><strCPDes>46001</strCPDes>"
             "</WebServService___GrabaEnvio4>", 200);
    char *albaran = xml_of(x, "strAlbaran");
    free(x);
    x = soap("WebServService", sid,
             "<WebServService___ConsEnvEstadosRef><strRef>MK-31</strRef>"
             "</WebServService___ConsEnvEstadosRef>", 200);
    cr_assert(strstr(x, albaran) && strstr(x, "V_COD_TIPO_EST=&quot;0&quot;"),
              "status by reference: %s", x);
    free(x);
    x = soap("WebServService", sid,
             "<WebServService___ConsEnvEstIncCambiosEstados><dtFecDesde>2020-01-01T00:00:00Z"
             "</dtFecDesde><intPagina>1</intPagina><intNumReg>10</intNumReg>"
             "</WebServService___ConsEnvEstIncCambiosEstados>", 200);
    char *total = xml_of(x, "intTotal");
    cr_assert_str_eq(total, "1");
    free(total);
    free(x);
    cr_assert_eq(stat_of("tipsa", "references.MK-31.creates"), 1);

    /* admin expires every session now */
    admin("/admin/tipsa/faults", "{\"expire_tokens_now\":true}");
    x = soap("WebServService", sid,
             "<WebServService___ConsEnvEstadosRef><strRef>MK-31</strRef>"
             "</WebServService___ConsEnvEstadosRef>", 500);
    cr_assert(strstr(x, "SESSION_EXPIRED"));
    free(x);
    free(albaran);
    free(sid);
    hn_stop_stack(&st);
}

/* ---- Correos Express ---------------------------------------------------------------------- */

Test(sim_pipeline, cex_reports_errors_inside_a_200)
{
    const char *const env[] = { "CONVEYOR_SIM_WEBHOOK_DELAY_MS=0", NULL };
    start_sim(env);
    char basic[128], b64[96];
    const char *userpass = "cex-demo-user:cex-demo-password";
    auth_b64_encode(userpass, strlen(userpass), b64);
    snprintf(basic, sizeof(basic), "Authorization: Basic %s", b64);
    const char *const h[] = { basic, NULL };

    struct hn_resp *r = call("POST", "/cex/WSEnvio_REST/grabacionEnvio", NULL, "{}", 5000);
    cr_assert_eq(r->status, 401, "no Basic: %d", r->status);
    hn_resp_free(r);

    cJSON *j = call_json("POST", "/cex/WSEnvio_REST/grabacionEnvio", h,
                         "{\"ref\":\"MK-41\",\"codPosIntDest\":\"1100-148\",\"paisISODest\":"
                         "\"PT\",\"kilos\":\"2.5\"}", 200);
    cr_assert_eq(cJSON_GetObjectItem(j, "codigoRetorno")->valueint, 0);
    cr_assert(strncmp(str_of(j, "datosResultado", NULL), "3230", 4) == 0);
    cJSON_Delete(j);

    admin("/admin/cex/faults", "{\"fail_keys\":[\"1100-148\"]}");
    j = call_json("POST", "/cex/WSEnvio_REST/grabacionEnvio", h,
                  "{\"ref\":\"MK-42\",\"codPosIntDest\":\"1100-148\"}", 200);
    cr_assert_neq(cJSON_GetObjectItem(j, "codigoRetorno")->valueint, 0, "an error in a 200");
    cr_assert(str_of(j, "mensajeRetorno", NULL)[0]);
    cr_assert_str_eq(str_of(j, "datosResultado", NULL), "");
    cJSON_Delete(j);

    j = call_json("POST", "/cex/seguimientoEnvio", h, "{\"ref\":\"MK-41\"}", 200);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "datos"), "envios")->valueint, 1);
    cJSON_Delete(j);
    j = call_json("POST", "/cex/seguimientoEnvio", h, "{\"ref\":\"MK-42\"}", 200);
    cr_assert_eq(cJSON_GetObjectItem(j, "codigoRetorno")->valueint, 1);
    cJSON_Delete(j);
    cr_assert_eq(stat_of("cex", "shipments_created"), 1);
    cr_assert_eq(stat_of("cex", "validation_errors"), 1);
    hn_stop_stack(&st);
}

/* ---- Mercado Livre ------------------------------------------------------------------------ */

/* Refresh with rt; returns the answer (free it) and asserts the status. */
static cJSON *meli_refresh(const char *rt, int want)
{
    char body[256];
    snprintf(body, sizeof(body), "grant_type=refresh_token&client_id=5503910054141466&"
                                 "client_secret=meli-demo-client-secret&refresh_token=%s", rt);
    return call_json("POST", "/meli/oauth/token",
                     (const char *const[]){ "Content-Type: application/x-www-form-urlencoded",
                                            NULL },
                     body, want);
}

Test(sim_pipeline, meli_rotates_refresh_tokens_and_notifies_the_api)
{
    listen_hooks();
    char url_env[96];
    snprintf(url_env, sizeof(url_env), "CONVEYOR_SIM_WEBHOOK_URL=http://127.0.0.1:%d", L.port);
    const char *const env[] = { url_env, NULL };
    start_sim(env);

    cJSON *j = meli_refresh("TG-demo-refresh-0001", 200);
    char auth[128], rt2[64];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", str_of(j, "access_token", NULL));
    snprintf(rt2, sizeof(rt2), "%s", str_of(j, "refresh_token", NULL));
    cJSON_Delete(j);
    j = meli_refresh("TG-demo-refresh-0001", 400);   /* spent */
    cr_assert_str_eq(str_of(j, "error", NULL), "invalid_grant");
    cJSON_Delete(j);

    admin("/admin/meli/orders", "{\"id\":\"2000001\",\"status\":\"paid\",\"notify\":true}");
    int want = 1;
    cr_assert(hn_wait_until(hooks_at_least, &want, 10000, 5), "no notification");
    cr_assert_str_eq(L.h[0].uri, "/api/webhook/mercado-livre");
    j = cJSON_Parse(L.h[0].body);
    cr_assert_str_eq(str_of(j, "resource", NULL), "/orders/2000001");
    cr_assert_str_eq(str_of(j, "topic", NULL), "orders_v2");
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(j, "application_id")));
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(j, "user_id")));
    cJSON_Delete(j);

    const char *const h[] = { auth, NULL };
    j = call_json("GET", "/meli/orders/2000001", h, NULL, 200);
    cr_assert_str_eq(str_of(j, "status", NULL), "paid");
    cJSON_Delete(j);
    cJSON_Delete(call_json("GET", "/meli/orders/2000002", h, NULL, 404));

    /* the access token expires: 401; the rotated refresh token gives a new one */
    admin("/admin/meli/faults", "{\"expire_tokens_now\":true}");
    cJSON_Delete(call_json("GET", "/meli/orders/2000001", h, NULL, 401));
    j = meli_refresh(rt2, 200);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", str_of(j, "access_token", NULL));
    cJSON_Delete(j);
    cJSON_Delete(call_json("GET", "/meli/orders/2000001", h, NULL, 200));
    cJSON_Delete(meli_refresh(rt2, 400));              /* spent too */
    hn_stop_stack(&st);
    hook_cleanup();
}
