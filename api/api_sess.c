/* api_sess.c - the dashboard's login, sessions and CSRF tokens.
 *
 *   POST /ui/login {"key":"..."}  a key of the operator scope (checked by
 *                                 common/auth.c: hashed, constant time) opens a
 *                                 session: 200 {"name","csrf","expires_in_s"}
 *                                 and Set-Cookie; 401 unknown key, 403 a key
 *                                 without the operator scope
 *   POST /ui/logout               ends it (X-CSRF-Token required), clears the cookie
 *   GET  /ui/api/session          {"name","csrf","scopes"}: the page reloaded
 *
 * A session is an opaque id: 32 random bytes (getrandom), sent to the browser
 * as 64 hex digits in the cookie cv_session (HttpOnly: no script reads it;
 * SameSite=Strict: no other site's page sends it; Path=/: the JSON routes are
 * under /v1 and /api/v1; Secure when the request came over HTTPS, see
 * via_https). The server keeps only the id's SHA-256, as the Redis key
 * cv:ui:sess:<hex> with the session's lifetime (ui.session_ttl_s) as its TTL,
 * so a copy of Redis opens no session. Its value is
 * "<SHA-256 of the key that logged in>:<CSRF token>": never the key itself.
 * Redis rather than a signed token because logging out must end a session
 * at once, in every API process: deleting the key does that.
 *
 * Every request the cookie authenticates (api_http.c's session_may() says on
 * which routes it may) reads the session back (one GET, pipelined on the
 * loop's Redis link), finds the key by its hash among the configured and the
 * stored keys (api_keys_match: constant time; a key removed from the
 * configuration or revoked with conveyorctl keys revoke ends its sessions
 * within one refresh of the stored keys), and, for a method other than GET and HEAD, compares the header
 * X-CSRF-Token with the session's token in constant time: the cookie alone
 * never replays or purges anything, even if SameSite were not honoured. The
 * token reaches the page in the login reply and GET /ui/api/session, which
 * another origin cannot read. */
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "auth.h"
#include "log.h"
#include "mem.h"
#include "rds.h"
#include "uuid.h"

#define SESS_PREFIX "cv:ui:sess:"
#define SESS_HEX 64                       /* a session id or CSRF token: 32 bytes in hex */
#define SESS_VALUE_LEN (SESS_HEX + 1 + SESS_HEX)
#define LOGIN_BODY_MAX 4096                /* before authentication, far below http.body_max */

/* ==== low level ============================================================== */

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* 32 bytes from 64 lower-case hex digits at s; -1 when s is not that. */
static int from_hex32(const char *s, unsigned char out[32])
{
    for (int i = 0; i < 32; i++) {
        int hi = hex_val(s[2 * i]), lo = hi < 0 ? -1 : hex_val(s[2 * i + 1]);
        if (lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static void random_hex(char out[SESS_HEX + 1])
{
    unsigned char b[SESS_HEX / 2];
    uuid_random_bytes(b, sizeof(b));
    auth_hex(b, sizeof(b), out);
}

/* The cookie's value: 1 with sid filled (64 hex digits), 0 when the cookie is
 * there but malformed, -1 when absent. The first cv_session wins. */
static int cookie_sid(struct req *r, char sid[SESS_HEX + 1])
{
    const char *p = api_header(r, "Cookie");
    const size_t nl = strlen(API_SESS_COOKIE);
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        size_t n = strcspn(p, ";");
        if (n > nl && strncmp(p, API_SESS_COOKIE, nl) == 0 && p[nl] == '=') {
            const char *v = p + nl + 1;
            size_t vl = n - nl - 1;
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            unsigned char tmp[32];
            if (vl != SESS_HEX || from_hex32(v, tmp) != 0)
                return 0;
            memcpy(sid, v, SESS_HEX);
            sid[SESS_HEX] = '\0';
            return 1;
        }
        p += n;
    }
    return -1;
}

/* Redis key of a session id: the prefix and the SHA-256 of the id. */
static void sess_key_of(const char *sid, char *out, size_t cap)
{
    char h[65];
    auth_sha256_hex(sid, SESS_HEX, h);
    snprintf(out, cap, "%s%s", SESS_PREFIX, h);
}

/* 1 when the request reached us over HTTPS: the API speaks plain HTTP, so
 * only a TLS-terminating proxy can say so, and it is believed only when the
 * peer is one of http.trusted_proxies (as X-Forwarded-For is, for the webhook
 * allowlists). Its X-Forwarded-Proto is read from the right: the value the
 * nearest proxy, the one we trust, added or set. */
static int via_https(struct req *r)
{
    char *host = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *c = r->http ? evhttp_request_get_connection(r->http) : NULL;
    if (c)
        evhttp_connection_get_peer(c, &host, &port);
    const char *xfp = api_header(r, "X-Forwarded-Proto");
    if (!host || !xfp || !cidr_match(&r->t->g->proxies, host))
        return 0;
    const char *last = strrchr(xfp, ',');
    last = last ? last + 1 : xfp;
    while (*last == ' ' || *last == '\t')
        last++;
    return strncasecmp(last, "https", 5) == 0 &&
           (last[5] == '\0' || last[5] == ' ' || last[5] == '\t');
}

/* Set-Cookie for sid (NULL: clear the cookie). */
static void set_cookie(struct req *r, const char *sid)
{
    char v[256];
    snprintf(v, sizeof(v), "%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict%s",
             API_SESS_COOKIE, sid ? sid : "", sid ? r->t->cfg->ui_session_ttl_s : 0,
             via_https(r) ? "; Secure" : "");
    api_add_header(r, "Set-Cookie", v);
}

/* What every reply of a session request carries: the dashboard's security
 * headers, and no-store (operator data is not kept in the browser's cache). */
static void sess_headers(struct req *r)
{
    api_ui_security_headers(r);
    api_add_header(r, "Cache-Control", "no-store");
}

static void reply_no_session(struct req *r)
{
    set_cookie(r, NULL);
    api_reply_err(r, CV_ERR_AUTH, "no such session (expired or logged out): log in again",
                  NULL);
}

int api_sess_cookie_present(struct req *r)
{
    char sid[SESS_HEX + 1];
    return cookie_sid(r, sid) >= 0;
}

/* ==== resolving a request's session ========================================== */

struct sess_call {
    struct req *r;
    api_sess_next next;
    char sid[SESS_HEX + 1];               /* login: the new id, for the cookie */
};

/* The session's value "<key sha256 hex>:<csrf>" into the key it names and its
 * token; NULL when malformed or when the key is no longer configured (or no
 * longer has the operator scope: the session was opened for it). */
static const struct cfg_api_key *sess_parse(struct req *r, const char *v, size_t len,
                                            char csrf[SESS_HEX + 1])
{
    unsigned char sha[32];
    if (len != SESS_VALUE_LEN || v[SESS_HEX] != ':' || from_hex32(v, sha) != 0)
        return NULL;
    memcpy(csrf, v + SESS_HEX + 1, SESS_HEX);
    csrf[SESS_HEX] = '\0';
    const struct cfg_api_key *k = NULL;
    if (api_keys_match(r->t, sha, &r->key_copy, &k) != CV_OK)
        return NULL;
    return auth_allows(k, AUTH_SCOPE_OPERATOR) ? k : NULL;
}

/* X-CSRF-Token for a state-changing method. 1 when fine. */
static int csrf_ok(struct req *r)
{
    int method = r->http ? (int)evhttp_request_get_command(r->http) : 0;
    if (method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD)
        return 1;
    const char *t = api_header(r, "X-CSRF-Token");
    return t && strlen(t) == SESS_HEX && auth_equal(t, r->sess_csrf, SESS_HEX);
}

static void on_sess_get(const struct rds_reply *reply, void *arg)
{
    struct sess_call *call = arg;
    struct req *r = call->r;
    if (r->gone)
        goto out;
    sess_headers(r);
    if (!reply || rds_reply_type(reply) == RDS_ERR) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "sessions cannot be read right now; retry", NULL);
        goto out;
    }
    size_t len = 0;
    const char *v = rds_reply_type(reply) == RDS_STR ? rds_reply_str(reply, &len) : NULL;
    const struct cfg_api_key *k = v ? sess_parse(r, v, len, r->sess_csrf) : NULL;
    if (!k) {
        reply_no_session(r);
        goto out;
    }
    if (!csrf_ok(r)) {
        LOG_WARN("ui.csrf_refused", "route=\"%s\"", r->route->name);
        api_reply_err(r, CV_ERR_FORBIDDEN, "missing or wrong X-CSRF-Token", "X-CSRF-Token");
        goto out;
    }
    r->key = k;
    r->via_session = 1;
    call->next(r);
out:
    free(call);
    api_req_release(r);
}

void api_sess_resolve(struct req *r, api_sess_next next)
{
    char sid[SESS_HEX + 1];
    if (cookie_sid(r, sid) != 1) {
        sess_headers(r);
        reply_no_session(r);
        return;
    }
    sess_key_of(sid, r->sess_key, sizeof(r->sess_key));
    if (!r->t->rds || r->t->closing) {
        sess_headers(r);
        api_reply_err(r, CV_ERR_UNAVAILABLE, "sessions cannot be read right now; retry", NULL);
        return;
    }
    struct sess_call *call = xcalloc(1, sizeof(*call));
    call->r = r;
    call->next = next;
    const char *argv[] = { "GET", r->sess_key };
    api_req_hold(r);
    rds_async_cmd(r->t->rds, on_sess_get, call, 2, argv, NULL);
}

/* ==== POST /ui/login ============================================================ */

static void on_login_set(const struct rds_reply *reply, void *arg)
{
    struct sess_call *call = arg;
    struct req *r = call->r;
    if (!reply || rds_reply_type(reply) != RDS_STATUS) {
        /* not OK: Redis down, or (NX) an id that exists, which 256 random bits
         * never give; either way no session was made */
        api_reply_err(r, CV_ERR_UNAVAILABLE, "sessions cannot be stored right now; retry",
                      NULL);
        goto out;
    }
    LOG_INFO("ui.login", "name=%s", r->key->name);
    set_cookie(r, call->sid);
    struct sbuf b;
    sbuf_init(&b);
    sbuf_add(&b, "{", 1);
    api_json_str(&b, "name", r->key->name, 1);
    api_json_str(&b, "csrf", r->sess_csrf, 0);
    api_json_i64(&b, "expires_in_s", r->t->cfg->ui_session_ttl_s, 0);
    sbuf_add(&b, "}", 1);
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    free(call);
    api_req_release(r);
}

void api_h_ui_login(struct req *r)
{
    cJSON *root = NULL;
    const char *token = NULL, *field = NULL;
    size_t len;
    sess_headers(r);
    if (api_require_json_or_reply(r))
        goto out;
    api_body(r, &len);
    if (len > LOGIN_BODY_MAX) {
        api_reply_err(r, CV_ERR_TOO_LARGE, "a login body is at most 4096 bytes", "body");
        goto out;
    }
    root = api_parse_body_or_reply(r);
    if (!root)
        goto out;
    if (json_get_str(root, "key", AUTH_TOKEN_MAX, &token, &field) != CV_OK) {
        api_reply_err(r, CV_ERR_INVALID, "key must be a string of 1..512 bytes", "key");
        goto out;
    }
    const struct cfg_api_key *k = NULL;
    unsigned char sha[32];
    if (auth_token_sha(token, strlen(token), sha) != CV_OK ||
        api_keys_match(r->t, sha, &r->key_copy, &k) != CV_OK) {
        LOG_WARN("ui.login_refused", "why=unknown_key");
        api_reply_err(r, CV_ERR_AUTH, "unknown key", "key");
        goto out;
    }
    if (!auth_allows(k, AUTH_SCOPE_OPERATOR)) {
        LOG_WARN("ui.login_refused", "why=not_operator name=%s", k->name);
        api_reply_err(r, CV_ERR_FORBIDDEN, "this key lacks the operator scope", "key");
        goto out;
    }
    if (!r->t->rds || r->t->closing) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "sessions cannot be stored right now; retry", NULL);
        goto out;
    }
    r->key = k;
    struct sess_call *call = xcalloc(1, sizeof(*call));
    call->r = r;
    random_hex(call->sid);
    random_hex(r->sess_csrf);
    sess_key_of(call->sid, r->sess_key, sizeof(r->sess_key));
    char value[SESS_VALUE_LEN + 1], ttl[16];
    auth_hex(k->sha256, 32, value);
    value[SESS_HEX] = ':';
    memcpy(value + SESS_HEX + 1, r->sess_csrf, SESS_HEX + 1);
    snprintf(ttl, sizeof(ttl), "%d", r->t->cfg->ui_session_ttl_s);
    const char *argv[] = { "SET", r->sess_key, value, "EX", ttl, "NX" };
    api_req_hold(r);
    rds_async_cmd(r->t->rds, on_login_set, call, 6, argv, NULL);
out:
    cJSON_Delete(root);
}

/* ==== POST /ui/logout, GET /ui/api/session ====================================== */

static void on_logout_del(const struct rds_reply *reply, void *arg)
{
    struct req *r = arg;
    if (!reply || rds_reply_type(reply) != RDS_INT) {
        /* the session still stands: say so rather than pretend */
        api_reply_err(r, CV_ERR_UNAVAILABLE, "could not end the session; retry", NULL);
    } else {
        LOG_INFO("ui.logout", "name=%s", r->key->name);
        set_cookie(r, NULL);
        struct sbuf b;
        sbuf_init(&b);
        sbuf_adds(&b, "{\"logged_out\":true}");
        api_reply_json(r, 200, &b);
        sbuf_cleanup(&b);
    }
    api_req_release(r);
}

void api_h_ui_logout(struct req *r)
{
    /* api_sess_resolve checked the session and its CSRF token */
    if (!r->t->rds || r->t->closing) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "could not end the session; retry", NULL);
        return;
    }
    const char *argv[] = { "DEL", r->sess_key };
    api_req_hold(r);
    rds_async_cmd(r->t->rds, on_logout_del, r, 2, argv, NULL);
}

void api_h_ui_session(struct req *r)
{
    const struct cfg_api_key *k = r->key;
    struct sbuf b;
    sbuf_init(&b);
    sbuf_add(&b, "{", 1);
    api_json_str(&b, "name", k->name, 1);
    api_json_str(&b, "csrf", r->sess_csrf, 0);
    sbuf_adds(&b, ",\"scopes\":[");
    if (k->all_types)
        sbuf_adds(&b, "\"*\"");
    for (int i = 0; !k->all_types && i < k->ntypes; i++) {
        if (i)
            sbuf_add(&b, ",", 1);
        sbuf_add_json_str(&b, k->types[i]);
    }
    sbuf_adds(&b, "]}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
}
