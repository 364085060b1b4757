/* The dashboard's server side over real HTTP (api/api_ui.c, api/api_sess.c): its files and
 * their headers, login with a key of the operator scope, the session cookie's flags, the
 * cookie as auth on the routes the dashboard polls (with ETags), CSRF on replay, logout.
 * The browser side is tests/ui/e2e.js (`make ui-test`). */
#include <criterion/criterion.h>
#include <ctype.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "harness.h"
#include "met.h"
#include "rds.h"

static const char *const fast_env[] = { HN_FAST_ENV, NULL };

static void setup(void)
{
    hn_flush_redis();
    hn_reset_db();
}

TestSuite(ui, .init = setup, .timeout = 120);

/* ---- helpers ------------------------------------------------------------------------ */

static struct hn_resp *call(struct hn_stack *st, const char *method, const char *path,
                            const char *body, const char *const *headers)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", st->api_url, path);
    return hn_http(method, url, headers, body, body ? strlen(body) : 0, 10000);
}

/* A logged-in session: the cookie's value and the CSRF token. */
struct sess {
    char sid[65];
    char csrf[65];
    char cookie_hdr[96];   /* "Cookie: cv_session=<sid>" */
    char csrf_hdr[96];     /* "X-CSRF-Token: <csrf>" */
};

static int is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return 0;
    return 1;
}

/* POST /ui/login with key; the reply (free it). On 200 fills s from Set-Cookie and the body. */
static struct hn_resp *login(struct hn_stack *st, const char *key, struct sess *s)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"key\":\"%s\"}", key);
    struct hn_resp *r = call(st, "POST", "/ui/login", body, NULL);
    if (r->status != 200 || !s)
        return r;
    char *sc = hn_resp_header(r, "Set-Cookie");
    cr_assert_not_null(sc, "login gave no cookie: %s", r->headers);
    cr_assert_eq(strncmp(sc, "cv_session=", 11), 0, "%s", sc);
    size_t n = strcspn(sc + 11, ";");
    cr_assert_eq(n, 64, "session id is 64 hex digits: %s", sc);
    memcpy(s->sid, sc + 11, 64);
    s->sid[64] = '\0';
    free(sc);
    cJSON *j = hn_json(r);
    cJSON *c = cJSON_GetObjectItem(j, "csrf");
    cr_assert(cJSON_IsString(c) && is_hex64(c->valuestring), "%s", r->body);
    snprintf(s->csrf, sizeof(s->csrf), "%s", c->valuestring);
    cJSON_Delete(j);
    snprintf(s->cookie_hdr, sizeof(s->cookie_hdr), "Cookie: cv_session=%s", s->sid);
    snprintf(s->csrf_hdr, sizeof(s->csrf_hdr), "X-CSRF-Token: %s", s->csrf);
    return r;
}

static void login_ok(struct hn_stack *st, struct sess *s)
{
    struct hn_resp *r = login(st, hn_test_key(), s);
    cr_assert_eq(r->status, 200, "login: %d %s", r->status, r->body);
    hn_resp_free(r);
}

/* An API alone (no worker, no simulator) and a session of the all-scopes test key. */
static void start_logged_in(struct hn_stack *st, struct sess *s)
{
    struct hn_stack_opts o = { .workers = 0, .no_sim = 1 };
    hn_start_stack(st, &o);
    login_ok(st, s);
}

/* 1 when the reply has header name and its value contains needle (case-insensitive). */
static int header_has(const struct hn_resp *r, const char *name, const char *needle)
{
    char *v = hn_resp_header(r, name);
    int ok = v && strcasestr(v, needle) != NULL;
    free(v);
    return ok;
}

static struct rds *redis(void)
{
    struct rds *c = rds_connect(hn_env("CONVEYOR_REDIS_URL"), 2000);
    cr_assert_not_null(c, "cannot reach the test Redis");
    return c;
}

/* The Redis value of the session with id sid, malloc'd, or NULL when there is none. */
static char *sess_value(const char *sid)
{
    char h[65], key[96];
    auth_sha256_hex(sid, 64, h);
    snprintf(key, sizeof(key), "cv:ui:sess:%s", h);
    struct rds *c = redis();
    const char *argv[] = { "GET", key };
    struct rds_reply *rep = rds_cmd(c, 2, argv, NULL);
    char *out = NULL;
    if (rep && rds_reply_type(rep) == RDS_STR)
        out = strdup(rds_reply_str(rep, NULL));
    rds_reply_free(rep);
    rds_free(c);
    return out;
}

/* ---- the files ---------------------------------------------------------------------- */

static void assert_security_headers(const struct hn_resp *r)
{
    cr_assert(header_has(r, "Content-Security-Policy", "default-src 'self'"), "%s", r->headers);
    cr_assert(header_has(r, "X-Frame-Options", "DENY"), "%s", r->headers);
    cr_assert(header_has(r, "Referrer-Policy", "no-referrer"), "%s", r->headers);
    cr_assert(header_has(r, "X-Content-Type-Options", "nosniff"), "%s", r->headers);
}

Test(ui, files_are_served_with_types_caching_and_security_headers)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .no_sim = 1 };
    hn_start_stack(&st, &o);

    struct hn_resp *r = call(&st, "GET", "/ui", NULL, NULL);
    cr_assert_eq(r->status, 200, "%s", r->body);
    cr_assert(header_has(r, "Content-Type", "text/html"), "%s", r->headers);
    cr_assert(strstr(r->body, "<script src=\"/ui/app.js\"") != NULL, "%s", r->body);
    cr_assert(strstr(r->body, "<script>") == NULL, "no inline script");
    cr_assert(header_has(r, "Cache-Control", "no-cache"), "%s", r->headers);
    assert_security_headers(r);
    char *etag = hn_resp_header(r, "ETag");
    cr_assert(etag && etag[0] == '"', "%s", r->headers);
    hn_resp_free(r);

    /* the same file again with its ETag: 304 and no body */
    char inm[96];
    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    const char *const h304[] = { inm, NULL };
    r = call(&st, "GET", "/ui/", NULL, h304);
    cr_assert_eq(r->status, 304, "%d %s", r->status, r->headers);
    cr_assert_eq(r->len, 0);
    hn_resp_free(r);
    free(etag);

    static const struct {
        const char *path, *type;
    } files[] = {
        { "/ui/app.js", "text/javascript" },
        { "/ui/style.css", "text/css" },
        { "/ui/index.html", "text/html" },
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        r = call(&st, "GET", files[i].path, NULL, NULL);
        cr_assert_eq(r->status, 200, "%s: %d", files[i].path, r->status);
        cr_assert(header_has(r, "Content-Type", files[i].type), "%s: %s", files[i].path,
                  r->headers);
        assert_security_headers(r);
        cr_assert(r->len > 100, "%s is the real file", files[i].path);
        hn_resp_free(r);
    }
    r = call(&st, "GET", "/ui/nope.js", NULL, NULL);
    cr_assert_eq(r->status, 404);
    assert_security_headers(r);
    hn_resp_free(r);
    r = call(&st, "GET", "/ui/..%2Fapi.h", NULL, NULL);
    cr_assert_eq(r->status, 404, "names are looked up, never opened");
    hn_resp_free(r);
    hn_stop_stack(&st);
}

/* ---- login -------------------------------------------------------------------------- */

Test(ui, login_refuses_a_wrong_key_401_and_a_non_operator_key_403)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .no_sim = 1 };
    hn_start_stack(&st, &o);

    struct hn_resp *r = login(&st, "not-a-key", NULL);
    cr_assert_eq(r->status, 401, "%s", r->body);
    cr_assert(strstr(r->body, "\"unauthorized\"") != NULL, "%s", r->body);
    cr_assert(!header_has(r, "Set-Cookie", "cv_session="), "no session for a wrong key");
    hn_resp_free(r);

    /* a real key without the operator scope (it may submit noop jobs) */
    r = login(&st, hn_test_key_scoped(), NULL);
    cr_assert_eq(r->status, 403, "%s", r->body);
    cr_assert(strstr(r->body, "operator") != NULL, "%s", r->body);
    cr_assert(!header_has(r, "Set-Cookie", "cv_session="), "no session without the scope");
    hn_resp_free(r);

    /* a form post (not JSON) is refused: no cross-site form can log anyone in */
    const char *const form[] = { "Content-Type: application/x-www-form-urlencoded", NULL };
    r = call(&st, "POST", "/ui/login", "key=test-key-all", form);
    cr_assert_eq(r->status, 415, "%s", r->body);
    hn_resp_free(r);
    r = call(&st, "POST", "/ui/login", "{\"key\":42}", NULL);
    cr_assert_eq(r->status, 400, "%s", r->body);
    hn_resp_free(r);
    /* before any key is known, a body is small */
    char big[8192];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "{\"key\":\"x\"", 10);
    big[sizeof(big) - 2] = '}';
    r = call(&st, "POST", "/ui/login", big, NULL);
    cr_assert_eq(r->status, 413, "%s", r->body);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

Test(ui, login_sets_an_httponly_samesite_cookie_that_is_not_the_key)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .no_sim = 1 };
    hn_start_stack(&st, &o);
    struct sess s;
    struct hn_resp *r = login(&st, hn_test_key(), &s);
    cr_assert_eq(r->status, 200, "%s", r->body);
    char *sc = hn_resp_header(r, "Set-Cookie");
    cr_assert(strstr(sc, "; HttpOnly") != NULL, "%s", sc);
    cr_assert(strstr(sc, "; SameSite=Strict") != NULL, "%s", sc);
    cr_assert(strstr(sc, "; Path=/") != NULL, "%s", sc);
    cr_assert(strstr(sc, "Max-Age=28800") != NULL, "%s", sc);
    cr_assert(strstr(sc, "Secure") == NULL, "plain HTTP from a direct client: not Secure: %s",
              sc);
    free(sc);
    cr_assert(strstr(r->body, hn_test_key()) == NULL, "the key never comes back");
    cr_assert(header_has(r, "Cache-Control", "no-store"), "%s", r->headers);
    hn_resp_free(r);
    cr_assert(is_hex64(s.sid));
    cr_assert(strstr(s.sid, hn_test_key()) == NULL);

    /* Redis keeps the session under the id's hash, holding the key's hash and the token */
    char *v = sess_value(s.sid);
    cr_assert_not_null(v, "the session is in Redis under cv:ui:sess:<sha256 of the id>");
    char want[200], kh[65];
    auth_sha256_hex(hn_test_key(), strlen(hn_test_key()), kh);
    snprintf(want, sizeof(want), "%s:%s", kh, s.csrf);
    cr_assert_str_eq(v, want);
    free(v);

    /* GET /ui/api/session gives the page its name and token back after a reload */
    const char *const h[] = { s.cookie_hdr, NULL };
    r = call(&st, "GET", "/ui/api/session", NULL, h);
    cr_assert_eq(r->status, 200, "%s", r->body);
    cr_assert(strstr(r->body, s.csrf) != NULL, "%s", r->body);
    cr_assert(strstr(r->body, "\"name\":\"test-all\"") != NULL, "%s", r->body);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

/* Secure is set when a trusted proxy says the client came over HTTPS, and only then. */
Test(ui, cookie_is_secure_behind_a_trusted_tls_proxy_only)
{
    static const char *const trusted[] = { "CONVEYOR_HTTP_TRUSTED_PROXIES=127.0.0.1/32",
                                           NULL };
    const char *const xfp[] = { "X-Forwarded-Proto: https", NULL };
    char body[128];
    snprintf(body, sizeof(body), "{\"key\":\"%s\"}", hn_test_key());

    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .no_sim = 1 };
    hn_start_stack(&st, &o);
    struct hn_resp *r = call(&st, "POST", "/ui/login", body, xfp);
    cr_assert_eq(r->status, 200, "%s", r->body);
    cr_assert(!header_has(r, "Set-Cookie", "Secure"),
              "X-Forwarded-Proto from a peer that is not a trusted proxy is ignored");
    hn_resp_free(r);
    hn_stop_stack(&st);

    struct hn_stack_opts o2 = { .workers = 0, .no_sim = 1, .api_env = trusted };
    hn_start_stack(&st, &o2);
    r = call(&st, "POST", "/ui/login", body, xfp);
    cr_assert_eq(r->status, 200, "%s", r->body);
    cr_assert(header_has(r, "Set-Cookie", "; Secure"), "%s", r->headers);
    hn_resp_free(r);
    r = call(&st, "POST", "/ui/login", body, NULL);
    cr_assert(!header_has(r, "Set-Cookie", "Secure"), "a trusted proxy on plain HTTP: %s",
              r->headers);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

/* ---- the cookie as auth ------------------------------------------------------------- */

Test(ui, cookie_authenticates_the_dashboards_reads_but_no_submission)
{
    struct hn_stack st;
    struct sess s;
    start_logged_in(&st, &s);
    const char *const h[] = { s.cookie_hdr, NULL };
    const char *const hc[] = { s.cookie_hdr, s.csrf_hdr, NULL };
    static const char *const reads[] = { "/v1/queues", "/v1/workers", "/v1/dead", "/v1/held",
                                         "/api/v1/logs/orders-counts",
                                         "/api/v1/logs/orders-view?limit=5" };
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
        struct hn_resp *r = call(&st, "GET", reads[i], NULL, h);
        cr_assert_eq(r->status, 200, "%s: %d %s", reads[i], r->status, r->body);
        cr_assert(header_has(r, "Cache-Control", "no-store"), "%s: %s", reads[i], r->headers);
        cr_assert(header_has(r, "X-Content-Type-Options", "nosniff"));
        hn_resp_free(r);
    }
    /* a producer's route: the cookie is not a key there, even with the token */
    struct hn_resp *r = call(&st, "POST", "/v1/jobs/noop", "{}", hc);
    cr_assert_eq(r->status, 401, "%s", r->body);
    hn_resp_free(r);
    r = call(&st, "POST", "/api/v1/orchestrator/fetch-orders", "{}", hc);
    cr_assert_eq(r->status, 401, "%s", r->body);
    hn_resp_free(r);

    /* a forged or unknown cookie: 401, and the reply clears it */
    const char *const bad[] = {
        "Cookie: cv_session=00000000000000000000000000000000000000000000000000000000000000ab",
        NULL
    };
    r = call(&st, "GET", "/v1/queues", NULL, bad);
    cr_assert_eq(r->status, 401, "%s", r->body);
    cr_assert(header_has(r, "Set-Cookie", "Max-Age=0"), "%s", r->headers);
    hn_resp_free(r);
    const char *const junk[] = { "Cookie: a=b; cv_session=test-key-all", NULL };
    r = call(&st, "GET", "/v1/queues", NULL, junk);
    cr_assert_eq(r->status, 401, "%s", r->body);
    hn_resp_free(r);
    /* the session among other cookies, as a browser sends them */
    char among[160];
    snprintf(among, sizeof(among), "Cookie: theme=dark; cv_session=%s; lang=en", s.sid);
    const char *const mixed[] = { among, NULL };
    r = call(&st, "GET", "/v1/queues", NULL, mixed);
    cr_assert_eq(r->status, 200, "%s", r->body);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

/* The dashboard polls with If-None-Match: 304 while nothing changed, 200 once it did. */
Test(ui, polled_endpoints_answer_etags_and_304)
{
    struct hn_stack st;
    struct sess s;
    start_logged_in(&st, &s);
    const char *const h[] = { s.cookie_hdr, NULL };
    struct hn_resp *r = call(&st, "GET", "/v1/queues", NULL, h);
    cr_assert_eq(r->status, 200, "%s", r->body);
    char *etag = hn_resp_header(r, "ETag");
    cr_assert_not_null(etag, "%s", r->headers);
    hn_resp_free(r);
    char inm[96];
    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    const char *const hi[] = { s.cookie_hdr, inm, NULL };
    r = call(&st, "GET", "/v1/queues", NULL, hi);
    cr_assert_eq(r->status, 304, "%d %s", r->status, r->body);
    cr_assert_eq(r->len, 0);
    hn_resp_free(r);
    /* a list of tags, ours weak, also matches; another tag does not */
    char list[128];
    snprintf(list, sizeof(list), "If-None-Match: \"0000000000000000\", W/%s", etag);
    const char *const hl[] = { s.cookie_hdr, list, NULL };
    r = call(&st, "GET", "/v1/queues", NULL, hl);
    cr_assert_eq(r->status, 304, "%d", r->status);
    hn_resp_free(r);
    const char *const other[] = { s.cookie_hdr, "If-None-Match: \"0000000000000000\"", NULL };
    r = call(&st, "GET", "/v1/queues", NULL, other);
    cr_assert_eq(r->status, 200, "%d", r->status);
    hn_resp_free(r);

    /* a job arrives: the queue's figures change, and so does the tag */
    const char *const auth[] = { HN_AUTH_ALL, NULL };
    r = call(&st, "POST", "/v1/jobs/noop", "{}", auth);
    cr_assert_eq(r->status, 202, "%s", r->body);
    hn_resp_free(r);
    r = call(&st, "GET", "/v1/queues", NULL, hi);
    cr_assert_eq(r->status, 200, "%d", r->status);
    char *etag2 = hn_resp_header(r, "ETag");
    cr_assert(etag2 && strcmp(etag, etag2) != 0);
    cr_assert(strstr(r->body, "\"counts\":{\"enqueued\":1") != NULL, "%s", r->body);
    hn_resp_free(r);
    free(etag);
    free(etag2);
    hn_stop_stack(&st);
}

/* ---- CSRF and logout ---------------------------------------------------------------- */

static int job_is(struct hn_stack *st, const char *id, const char *status)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    const char *const auth[] = { HN_AUTH_ALL, NULL };
    struct hn_resp *r = call(st, "GET", path, NULL, auth);
    char want[64];
    snprintf(want, sizeof(want), "\"status\":\"%s\"", status);
    int ok = r->status == 200 && strstr(r->body, want) != NULL;
    hn_resp_free(r);
    return ok;
}

struct job_wait {
    struct hn_stack *st;
    const char *id, *status;
};

static int job_reached(void *arg)
{
    struct job_wait *w = arg;
    return job_is(w->st, w->id, w->status);
}

Test(ui, replay_needs_the_csrf_token_bound_to_the_session)
{
    static const char *const sim_env[] = { "CONVEYOR_SIM_ERROR_RATE=1", NULL };
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation",
                               .worker_env = fast_env, .sim_env = sim_env };
    hn_start_stack(&st, &o);
    const char *const auth[] = { HN_AUTH_ALL, NULL };
    struct hn_resp *r = call(&st, "POST", "/api/v1/activation/?max_attempts=1",
                             "{\"user_id\":9,\"offer_id\":1}", auth);
    cr_assert_eq(r->status, 202, "%s", r->body);
    cJSON *j = hn_json(r);
    char id[64];
    snprintf(id, sizeof(id), "%s", cJSON_GetObjectItem(j, "transaction_id")->valuestring);
    cJSON_Delete(j);
    hn_resp_free(r);
    struct job_wait w = { &st, id, "dead" };
    cr_assert(hn_wait_until(job_reached, &w, 15000, 20), "job %s never went dead", id);
    char url[128];
    snprintf(url, sizeof(url), "%s/admin/config", st.sim_url);
    r = hn_http("POST", url, NULL, "{\"error_rate\":0}", 16, 5000);
    cr_assert_eq(r->status, 200);
    hn_resp_free(r);

    struct sess s, other;
    login_ok(&st, &s);
    login_ok(&st, &other);
    char path[128];
    snprintf(path, sizeof(path), "/v1/dead/%s/retry", id);
    /* the cookie alone */
    const char *const no_token[] = { s.cookie_hdr, NULL };
    r = call(&st, "POST", path, NULL, no_token);
    cr_assert_eq(r->status, 403, "%s", r->body);
    cr_assert(strstr(r->body, "X-CSRF-Token") != NULL, "%s", r->body);
    hn_resp_free(r);
    /* another session's token */
    const char *const wrong[] = { s.cookie_hdr, other.csrf_hdr, NULL };
    r = call(&st, "POST", path, NULL, wrong);
    cr_assert_eq(r->status, 403, "%s", r->body);
    hn_resp_free(r);
    cr_assert(job_is(&st, id, "dead"), "refused replays changed nothing");

    const char *const right[] = { s.cookie_hdr, s.csrf_hdr, NULL };
    r = call(&st, "POST", path, NULL, right);
    cr_assert_eq(r->status, 202, "replay accepted: %d %s", r->status, r->body);
    hn_resp_free(r);
    w.status = "succeeded";
    cr_assert(hn_wait_until(job_reached, &w, 15000, 20), "the replayed job never succeeded");
    hn_stop_stack(&st);
}

Test(ui, logout_ends_the_session_everywhere)
{
    struct hn_stack st;
    struct sess s;
    start_logged_in(&st, &s);
    const char *const h[] = { s.cookie_hdr, NULL };
    const char *const hc[] = { s.cookie_hdr, s.csrf_hdr, NULL };

    /* without the token, logout is refused like any other POST, and the session stays */
    struct hn_resp *r = call(&st, "POST", "/ui/logout", NULL, h);
    cr_assert_eq(r->status, 403, "%s", r->body);
    hn_resp_free(r);
    r = call(&st, "GET", "/v1/queues", NULL, h);
    cr_assert_eq(r->status, 200);
    hn_resp_free(r);

    r = call(&st, "POST", "/ui/logout", NULL, hc);
    cr_assert_eq(r->status, 200, "%s", r->body);
    cr_assert(header_has(r, "Set-Cookie", "Max-Age=0"), "%s", r->headers);
    hn_resp_free(r);
    char *v = sess_value(s.sid);
    cr_assert_null(v, "the session is gone from Redis");
    /* the old cookie, replayed by whoever kept it, opens nothing */
    static const char *const after[] = { "/v1/queues", "/ui/api/session", "/v1/dead" };
    for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
        r = call(&st, "GET", after[i], NULL, h);
        cr_assert_eq(r->status, 401, "%s: %d %s", after[i], r->status, r->body);
        hn_resp_free(r);
    }
    r = call(&st, "POST", "/ui/logout", NULL, hc);
    cr_assert_eq(r->status, 401, "%s", r->body);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

/* The two reads added for the dashboard: held money (the reconciler's figures and the
 * PROCESSING rows) and orders per state (every state named, zeros included). */
Test(ui, held_money_and_order_counts_have_their_shape)
{
    struct hn_stack st;
    struct sess s;
    start_logged_in(&st, &s);
    hn_psql_exec("INSERT INTO transactions (transaction_id, user_id, offer_id, amount, status) "
                 "VALUES ('8e0e8a4e-5d2a-4d0e-9a55-3f1d3c2b1a01', 3, 1, 5.00, 'PROCESSING')");
    const char *const h[] = { s.cookie_hdr, NULL };
    struct hn_resp *r = call(&st, "GET", "/v1/held", NULL, h);
    cr_assert_eq(r->status, 200, "%s", r->body);
    cJSON *j = hn_json(r);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(j, "figures")), "no reconciler ran: %s", r->body);
    cJSON *t = cJSON_GetObjectItem(j, "transactions");
    cr_assert_eq(cJSON_GetArraySize(t), 1, "%s", r->body);
    cJSON *row = cJSON_GetArrayItem(t, 0);
    cr_assert_str_eq(cJSON_GetObjectItem(row, "transaction_id")->valuestring,
                     "8e0e8a4e-5d2a-4d0e-9a55-3f1d3c2b1a01");
    cr_assert_float_eq(cJSON_GetObjectItem(row, "amount")->valuedouble, 5.0, 1e-9);
    cJSON_Delete(j);
    hn_resp_free(r);

    r = call(&st, "GET", "/api/v1/logs/orders-counts", NULL, h);
    cr_assert_eq(r->status, 200, "%s", r->body);
    j = hn_json(r);
    cJSON *c = cJSON_GetObjectItem(j, "counts");
    long long sum = 0;
    static const char *const states[] = { "PENDING_POST", "POSTED", "AWAITING_TRACKING",
                                          "TRACKED", "MIRAKL_OK", "COMPLETE", "FAILED_POST",
                                          "FAILED_TRACKING", "FAILED_PUSH" };
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        cJSON *n = cJSON_GetObjectItem(c, states[i]);
        cr_assert(cJSON_IsNumber(n), "%s missing: %s", states[i], r->body);
        sum += (long long)n->valuedouble;
    }
    cr_assert_eq(sum, (long long)cJSON_GetObjectItem(j, "total")->valuedouble);
    cr_assert_eq(sum, hn_psql_int("SELECT count(*) FROM orders"));
    cJSON_Delete(j);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

/* ---- the upstreams page's read: GET /v1/upstreams ------------------------------------ */

/* Mirakl's shared budget at one call a second and no burst: of the fetches posted together
 * every one but the first has to wait for its slot (each fetch is one OR11 against an empty
 * marketplace). */
static const char *const ups_worker_env[] = {
    HN_FAST_ENV,
    "CONVEYOR_UPSTREAMS_MIRAKL_RATE_PER_MIN=60",
    "CONVEYOR_UPSTREAMS_MIRAKL_RATE_BURST=1",
    "CONVEYOR_JOBS_TYPES_ORDER_FETCH_RETRY_BASE_MS=50",
    "CONVEYOR_JOBS_TYPES_ORDER_FETCH_RETRY_MAX_MS=400",
    NULL,
};

/* The member of a /v1/upstreams body's "upstreams" array named name, or NULL. */
static const cJSON *upstream(const cJSON *body, const char *name)
{
    const cJSON *u;
    cJSON_ArrayForEach(u, cJSON_GetObjectItem(body, "upstreams"))
    {
        const cJSON *n = cJSON_GetObjectItem(u, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
            return u;
    }
    return NULL;
}

static double num_at(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    cr_assert(cJSON_IsNumber(v), "%s is not a number", k);
    return v->valuedouble;
}

/* Mirakl's buckets as the workers wrote them, read straight from Redis. */
static void mirakl_buckets(struct met_hist_series *out)
{
    const struct met_hist *h = &met_hists[MET_H_UPSTREAM];
    struct rds *c = redis();
    const char *argv[] = { "HGETALL", h->key };
    struct rds_reply *rep = rds_cmd(c, 2, argv, NULL);
    cr_assert(rep && rds_reply_type(rep) == RDS_ARR, "HGETALL %s", h->key);
    const char **f, **v;
    size_t n;
    rds_reply_hash_pairs(rep, &f, &v, &n);
    struct met_hist_series s[MET_HIST_MAX_SERIES];
    int ns = met_hist_parse(h, f, v, n, s, MET_HIST_MAX_SERIES);
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < ns; i++)
        if (strcmp(s[i].prefix, "mirakl") == 0)
            *out = s[i];
    free(f);
    free(v);
    rds_reply_free(rep);
    rds_free(c);
}

static long long mirakl_waits_in_redis(void)
{
    struct rds *c = redis();
    const char *argv[] = { "HGET", MET_UPSTREAM_WAITS_KEY, "mirakl" };
    struct rds_reply *rep = rds_cmd(c, 3, argv, NULL);
    long long n = rep && rds_reply_type(rep) == RDS_STR ? atoll(rds_reply_str(rep, NULL)) : 0;
    rds_reply_free(rep);
    rds_free(c);
    return n;
}

/* OR11 calls the sim's Mirakl answered. */
static long long sim_or11(struct hn_stack *st)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/admin/mirakl/stats", st->sim_url);
    struct hn_resp *r = hn_http("GET", url, NULL, NULL, 0, 5000);
    cr_assert_eq(r->status, 200, "%s", r->body);
    cJSON *j = hn_json(r);
    const cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "operations"), "OR11");
    cr_assert(cJSON_IsNumber(n), "%s", r->body);
    long long v = (long long)n->valuedouble;
    cJSON_Delete(j);
    hn_resp_free(r);
    return v;
}

Test(ui, upstreams_report_calls_latency_quantiles_and_rate_waits)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "order-fetch", .pipeline = 1,
                               .worker_env = ups_worker_env };
    hn_start_stack(&st, &o);
    const char *const auth[] = { HN_AUTH_ALL, NULL };

    /* three fetches at once: three OR11 through the shared rate limit */
    char ids[3][64];
    for (int i = 0; i < 3; i++) {
        struct hn_resp *r = call(&st, "POST", "/api/v1/orchestrator/fetch-orders", NULL, auth);
        cr_assert_eq(r->status, 202, "%s", r->body);
        cJSON *j = hn_json(r);
        snprintf(ids[i], sizeof(ids[i]), "%s", cJSON_GetObjectItem(j, "job_id")->valuestring);
        cJSON_Delete(j);
        hn_resp_free(r);
    }
    for (int i = 0; i < 3; i++) {
        struct job_wait w = { &st, ids[i], "succeeded" };
        cr_assert(hn_wait_until(job_reached, &w, 30000, 50), "fetch %s never succeeded", ids[i]);
    }

    struct hn_resp *r = call(&st, "GET", "/v1/upstreams", NULL, auth);
    cr_assert_eq(r->status, 200, "%s", r->body);
    cr_assert(header_has(r, "Content-Type", "application/json"), "%s", r->headers);
    cJSON *body = hn_json(r);
    cr_assert_not_null(body, "%s", r->body);

    /* Mirakl: every call the sim answered is counted, with its duration */
    const cJSON *mk = upstream(body, "mirakl");
    cr_assert_not_null(mk, "%s", r->body);
    long long calls = (long long)num_at(mk, "calls");
    cr_assert(calls >= 3, "%s", r->body);
    cr_assert_eq(calls, sim_or11(&st), "calls = the OR11 the sim answered: %s", r->body);
    cr_assert_str_eq(cJSON_GetObjectItem(mk, "circuit")->valuestring, "closed");
    const cJSON *last = cJSON_GetObjectItem(mk, "last_call");
    cr_assert(cJSON_IsObject(last), "%s", r->body);
    cr_assert_eq((int)num_at(last, "status"), 200, "%s", r->body);
    cr_assert_str_eq(cJSON_GetObjectItem(last, "class")->valuestring, "ok");
    cr_assert(num_at(last, "latency_ms") >= 0);
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(last, "at")), "%s", r->body);
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(mk, "last_ok_at")), "%s", r->body);

    /* the quantiles are the histogram's (the workers' hash, read here on our own), in ms */
    const cJSON *lat = cJSON_GetObjectItem(mk, "latency_ms");
    cr_assert(cJSON_IsObject(lat), "%s", r->body);
    double p50 = num_at(lat, "p50"), p95 = num_at(lat, "p95"), p99 = num_at(lat, "p99");
    cr_assert(p50 > 0 && p50 <= p95 && p95 <= p99 && p99 <= 10000, "%s", r->body);
    struct met_hist_series s;
    mirakl_buckets(&s);
    const struct met_hist *h = &met_hists[MET_H_UPSTREAM];
    cr_assert_eq((long long)met_hist_count(h, &s), calls, "calls = the histogram's count");
    cr_assert(fabs(p50 - 1000 * met_hist_quantile(h, s.bucket, 0.5)) < 0.051, "p50 %g", p50);
    cr_assert(fabs(p99 - 1000 * met_hist_quantile(h, s.bucket, 0.99)) < 0.051, "p99 %g", p99);

    /* the calls that waited for the budget */
    long long waits = (long long)num_at(mk, "rate_limit_waits");
    cr_assert(waits >= 1, "three calls at once under one a second: some waited: %s", r->body);
    cr_assert_eq(waits, mirakl_waits_in_redis());

    /* a configured upstream nobody called: zeros and nulls, not missing */
    const cJSON *seur = upstream(body, "seur");
    cr_assert_not_null(seur, "%s", r->body);
    cr_assert_eq((long long)num_at(seur, "calls"), 0);
    cr_assert_eq((long long)num_at(seur, "rate_limit_waits"), 0);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(seur, "latency_ms")), "%s", r->body);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(seur, "last_call")), "%s", r->body);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(seur, "last_ok_at")), "%s", r->body);
    cr_assert_str_eq(cJSON_GetObjectItem(seur, "circuit")->valuestring, "closed");
    /* the notification webhook has no URL here: not an upstream to show */
    cr_assert_null(upstream(body, "notify"), "%s", r->body);
    const cJSON *bounds = cJSON_GetObjectItem(body, "latency_bounds_ms");
    cr_assert_eq(cJSON_GetArraySize(bounds), h->nbounds);
    cr_assert_float_eq(cJSON_GetArrayItem(bounds, h->nbounds - 1)->valuedouble, 10000, 1e-9);
    cJSON_Delete(body);
    char *etag = hn_resp_header(r, "ETag");
    cr_assert_not_null(etag);
    hn_resp_free(r);

    /* the operator scope: a producer's key may not read it, nobody without a key */
    const char *const noop[] = { HN_AUTH_NOOP, NULL };
    r = call(&st, "GET", "/v1/upstreams", NULL, noop);
    cr_assert_eq(r->status, 403, "%s", r->body);
    cr_assert(strstr(r->body, "\"forbidden\"") != NULL, "%s", r->body);
    hn_resp_free(r);
    r = call(&st, "GET", "/v1/upstreams", NULL, NULL);
    cr_assert_eq(r->status, 401, "%s", r->body);
    hn_resp_free(r);

    /* the dashboard's session reads it, and polls it with the ETag */
    struct sess ss;
    login_ok(&st, &ss);
    char inm[96];
    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    const char *const hc[] = { ss.cookie_hdr, NULL };
    const char *const hi[] = { ss.cookie_hdr, inm, NULL };
    r = call(&st, "GET", "/v1/upstreams", NULL, hc);
    cr_assert_eq(r->status, 200, "%s", r->body);
    cr_assert(strstr(r->body, "\"name\":\"mirakl\"") != NULL, "%s", r->body);
    hn_resp_free(r);
    r = call(&st, "GET", "/v1/upstreams", NULL, hi);
    cr_assert_eq(r->status, 304, "nothing called since: %d %s", r->status, r->body);
    hn_resp_free(r);
    free(etag);
    hn_stop_stack(&st);
}

struct status_wait {
    struct hn_stack *st;
    int want;
    int got;
    char body[512];
};

static int upstreams_answer(void *arg)
{
    struct status_wait *w = arg;
    const char *const auth[] = { HN_AUTH_ALL, NULL };
    struct hn_resp *r = call(w->st, "GET", "/v1/upstreams", NULL, auth);
    w->got = r->status;
    snprintf(w->body, sizeof(w->body), "%s", r->body);
    hn_resp_free(r);
    return w->got == w->want;
}

/* The activation system is called outside the shared pipeline (its money-specific
 * classification): its calls still reach the Upstreams page (ups_observe). */
Test(ui, upstreams_show_the_activation_systems_calls)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 1, .worker_types = "activation", .worker_env = fast_env };
    hn_start_stack(&st, &o);
    const char *const auth[] = { HN_AUTH_ALL, NULL };
    struct hn_resp *r = call(&st, "POST", "/api/v1/activation/", "{\"user_id\":3,\"offer_id\":1}",
                             auth);
    cr_assert_eq(r->status, 202, "%s", r->body);
    cJSON *j = hn_json(r);
    char id[64];
    snprintf(id, sizeof(id), "%s", cJSON_GetObjectItem(j, "transaction_id")->valuestring);
    cJSON_Delete(j);
    hn_resp_free(r);
    struct job_wait w = { &st, id, "succeeded" };
    cr_assert(hn_wait_until(job_reached, &w, 15000, 20), "activation %s never succeeded", id);
    r = call(&st, "GET", "/v1/upstreams", NULL, auth);
    cr_assert_eq(r->status, 200, "%s", r->body);
    cJSON *body = hn_json(r);
    const cJSON *act = upstream(body, "activation");
    cr_assert_not_null(act, "%s", r->body);
    cr_assert_geq((long long)num_at(act, "calls"), 1, "%s", r->body);
    const cJSON *last = cJSON_GetObjectItem(act, "last_call");
    cr_assert(cJSON_IsObject(last), "no last call: %s", r->body);
    cr_assert_eq((long long)num_at(last, "status"), 200, "%s", r->body);
    cr_assert(!cJSON_IsNull(cJSON_GetObjectItem(act, "last_ok_at")), "%s", r->body);
    cJSON_Delete(body);
    hn_resp_free(r);
    hn_stop_stack(&st);
}

Test(ui, upstreams_answer_503_with_a_json_error_while_redis_is_down)
{
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0, .no_sim = 1 };
    hn_start_stack(&st, &o);
    struct status_wait w = { &st, 200, 0, "" };
    cr_assert(upstreams_answer(&w), "%d %s", w.got, w.body);
    cr_assert(strstr(w.body, "\"calls\":0") != NULL, "%s", w.body);

    hn_redis_kill(SIGKILL);
    /* every loop has its own link: poll until the one that answers has noticed */
    w.want = 503;
    int down = hn_wait_until(upstreams_answer, &w, 5000, 20);
    hn_redis_start();                 /* before asserting: the next tests need it */
    cr_assert(down, "while Redis is down: %d %s", w.got, w.body);
    cr_assert(strstr(w.body, "\"code\":\"unavailable\"") != NULL, "%s", w.body);
    w.want = 200;
    cr_assert(hn_wait_until(upstreams_answer, &w, 10000, 50), "after Redis is back: %d %s",
              w.got, w.body);
    hn_stop_stack(&st);
}
