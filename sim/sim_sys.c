#include "sim_sys.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "json.h"
#include "log.h"
#include "mem.h"
#include "sim.h"
#include "sim_admin.h"

/* ---- the faults table: one row per settable field --------------------------- */

enum fkind { F_INT, F_I64, F_RATE, F_BOOL };

static const struct {
    const char *key;
    enum fkind kind;
    size_t off;
    int64_t min, max;
    const char *want;
} ffields[] = {
#define FO(f) offsetof(struct sim_sys_faults, f)
    { "latency_ms", F_INT, FO(base.latency_ms), 0, SIM_LATENCY_MAX_MS, "an integer 0..600000" },
    { "error_rate", F_RATE, FO(base.error_rate), 0, 0, "a number 0..1" },
    { "error_status", F_INT, FO(base.error_status), SIM_ERROR_STATUS_MIN, SIM_ERROR_STATUS_MAX,
      "an integer 400..599" },
    { "timeout_rate", F_RATE, FO(base.timeout_rate), 0, 0, "a number 0..1" },
    { "fail_next", F_I64, FO(base.fail_next), 0, SIM_FAIL_NEXT_MAX, "an integer 0..1000000000" },
    { "apply_then_timeout_next", F_I64, FO(apply_then_timeout_next), 0, SIM_FAIL_NEXT_MAX,
      "an integer 0..1000000000" },
    { "throttle_next", F_I64, FO(throttle_next), 0, SIM_FAIL_NEXT_MAX,
      "an integer 0..1000000000" },
    { "throttle_on", F_BOOL, FO(throttle_on), 0, 1, "true or false" },
    { "retry_after_s", F_INT, FO(retry_after_s), 1, SIM_RETRY_AFTER_MAX_S, "an integer 1..3600" },
    { "unauthorized_next", F_I64, FO(unauthorized_next), 0, SIM_FAIL_NEXT_MAX,
      "an integer 0..1000000000" },
    { "token_ttl_s", F_INT, FO(token_ttl_s), 1, 86400, "an integer 1..86400" },
    { "webhook_duplicate_next", F_I64, FO(wh.duplicate_next), 0, SIM_FAIL_NEXT_MAX,
      "an integer 0..1000000000" },
    { "webhook_duplicate_rate", F_RATE, FO(wh.duplicate_rate), 0, 0, "a number 0..1" },
    { "webhook_reverse_next", F_I64, FO(wh.reverse_next), 0, SIM_FAIL_NEXT_MAX,
      "an integer 0..1000000000" },
    { "webhook_reverse_rate", F_RATE, FO(wh.reverse_rate), 0, 0, "a number 0..1" },
    { "webhook_bad_signature_next", F_I64, FO(wh.bad_signature_next), 0, SIM_FAIL_NEXT_MAX,
      "an integer 0..1000000000" },
    { "webhook_bad_signature_rate", F_RATE, FO(wh.bad_signature_rate), 0, 0, "a number 0..1" },
    { "webhook_stale_next", F_I64, FO(wh.stale_next), 0, SIM_FAIL_NEXT_MAX,
      "an integer 0..1000000000" },
    { "webhook_stale_rate", F_RATE, FO(wh.stale_rate), 0, 0, "a number 0..1" },
#undef FO
};
#define NFFIELDS (sizeof(ffields) / sizeof(ffields[0]))

/* ---- low level ---------------------------------------------------------------- */

static void *field_at(struct sim_sys_faults *f, size_t i)
{
    return (char *)f + ffields[i].off;
}

static void put_faults(const struct sim_sys_faults *f, struct evbuffer *out)
{
    evbuffer_add(out, "{", 1);
    for (size_t i = 0; i < NFFIELDS; i++) {
        const void *p = (const char *)f + ffields[i].off;
        evbuffer_add_printf(out, "%s\"%s\":", i ? "," : "", ffields[i].key);
        switch (ffields[i].kind) {
        case F_INT:
            evbuffer_add_printf(out, "%d", *(const int *)p);
            break;
        case F_I64:
            evbuffer_add_printf(out, "%lld", (long long)*(const int64_t *)p);
            break;
        case F_RATE:
            evbuffer_add_printf(out, "%.15g", *(const double *)p);
            break;
        case F_BOOL:
            evbuffer_add_printf(out, "%s", *(const int *)p ? "true" : "false");
            break;
        }
    }
    evbuffer_add_printf(out, ",\"fail_keys\":[");
    for (int i = 0; i < f->nfail_keys; i++) {
        if (i)
            evbuffer_add(out, ",", 1);
        sim_put_json_str(out, f->fail_keys[i]);
    }
    evbuffer_add(out, "]}", 2);
}

/* One field of a POST /admin/<name>/faults body into f. 0, or -1 (bad value). */
static int set_field(struct sim_sys_faults *f, size_t i, const cJSON *it)
{
    int64_t v;
    void *p = field_at(f, i);
    switch (ffields[i].kind) {
    case F_INT:
        if (sim_admin_int_of(it, ffields[i].min, ffields[i].max, &v))
            return -1;
        *(int *)p = (int)v;
        return 0;
    case F_I64:
        return sim_admin_int_of(it, ffields[i].min, ffields[i].max, (int64_t *)p);
    case F_RATE:
        return sim_admin_rate_of(it, (double *)p);
    case F_BOOL:
        if (!cJSON_IsBool(it))
            return -1;
        *(int *)p = cJSON_IsTrue(it);
        return 0;
    }
    return -1;
}

static int set_fail_keys(struct sim_sys_faults *f, const cJSON *it)
{
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) > SIM_SYS_FAIL_KEYS_MAX)
        return -1;
    int n = 0;
    for (const cJSON *k = it->child; k; k = k->next) {
        if (!cJSON_IsString(k) || !k->valuestring[0] ||
            strlen(k->valuestring) >= SIM_SYS_FAIL_KEY_LEN)
            return -1;
        snprintf(f->fail_keys[n++], SIM_SYS_FAIL_KEY_LEN, "%s", k->valuestring);
    }
    f->nfail_keys = n;
    return 0;
}

/* Parse the body into a copy of the live faults; nothing live changes here.
 * *expire says whether expire_tokens_now was asked. */
static enum cv_rc parse_faults(const cJSON *root, struct sim_sys_faults *f, int *expire,
                               const char **field, const char **want)
{
    *field = "body";
    *want = NULL;
    if (!cJSON_IsObject(root))
        return CV_ERR_INVALID;
    for (const cJSON *it = root->child; it; it = it->next) {
        *field = it->string;
        if (strcmp(it->string, "fail_keys") == 0) {
            *want = "an array of at most 64 strings of 1..39 bytes";
            if (set_fail_keys(f, it))
                return CV_ERR_INVALID;
            continue;
        }
        if (strcmp(it->string, "expire_tokens_now") == 0) {
            *want = "true or false";
            if (!cJSON_IsBool(it))
                return CV_ERR_INVALID;
            *expire = cJSON_IsTrue(it);
            continue;
        }
        size_t i = 0;
        while (i < NFFIELDS && strcmp(ffields[i].key, it->string) != 0)
            i++;
        if (i == NFFIELDS) {
            *want = NULL;
            return CV_ERR_INVALID;
        }
        *want = ffields[i].want;
        if (set_field(f, i, it))
            return CV_ERR_INVALID;
    }
    return CV_OK;
}

/* ---- admin handlers --------------------------------------------------------------- */

static void h_faults(struct sim *s, struct sim_sys *y, const struct sim_call *c)
{
    struct sim_sys_faults f = y->faults;
    cJSON *root = NULL;
    const char *field, *want;
    int expire = 0;

    if (evhttp_request_get_command(c->req) == EVHTTP_REQ_POST) {
        root = sim_admin_json_or_reply(c);
        if (!root)
            goto out;
        if (parse_faults(root, &f, &expire, &field, &want) != CV_OK) {
            sim_admin_bad_field(c, field, want);
            goto out;
        }
        y->faults = f;
        if (expire)
            sim_tokens_expire_all(&y->tokens);
        LOG_INFO("sim.faults_changed", "system=%s latency_ms=%d error_rate=%g fail_next=%lld "
                                       "throttle_on=%d expire_tokens=%d",
                 y->name, f.base.latency_ms, f.base.error_rate, (long long)f.base.fail_next,
                 f.throttle_on, expire);
    }
    put_faults(&y->faults, evhttp_request_get_output_buffer(c->req));
    sim_reply(c, 200);
out:
    (void)s;
    cJSON_Delete(root);
}

static void h_stats(struct sim *s, struct sim_sys *y, const struct sim_call *c)
{
    const struct sim_sys_stats *st = &y->stats;
    struct evbuffer *out = evhttp_request_get_output_buffer(c->req);
    evbuffer_add_printf(out,
                        "{\"system\":\"%s\",\"calls\":%lld,\"errors\":%lld,\"timeouts\":%lld,"
                        "\"throttled\":%lld,\"unauthorized\":%lld,\"applied_then_timeout\":%lld,"
                        "\"validation_errors\":%lld,\"logins\":%lld,\"tokens_issued\":%lld",
                        y->name, (long long)st->calls, (long long)st->errors,
                        (long long)st->timeouts, (long long)st->throttled,
                        (long long)st->unauthorized, (long long)st->applied_then_timeout,
                        (long long)st->validation_errors, (long long)st->logins,
                        (long long)y->tokens.issued);
    if (y->put_stats)
        y->put_stats(s, y, out);
    evbuffer_add(out, "}", 1);
    sim_reply(c, 200);
}

static void h_credentials(struct sim_sys *y, const struct sim_call *c)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(c->req);
    struct sim_cred next[SIM_SYS_CREDS_MAX];
    cJSON *root = NULL;

    memcpy(next, y->creds, sizeof(next));
    if (evhttp_request_get_command(c->req) == EVHTTP_REQ_POST) {
        root = sim_admin_json_or_reply(c);
        if (!root)
            goto out;
        for (const cJSON *it = root->child; it; it = it->next) {
            int i = 0;
            while (i < y->ncreds && strcmp(next[i].name, it->string) != 0)
                i++;
            if (i == y->ncreds || !cJSON_IsString(it) || !it->valuestring[0] ||
                strlen(it->valuestring) >= SIM_SYS_CRED_LEN) {
                sim_admin_bad_field(c, it->string, i == y->ncreds ? NULL : "a string of 1..95 bytes");
                goto out;
            }
            snprintf(next[i].value, SIM_SYS_CRED_LEN, "%s", it->valuestring);
        }
        memcpy(y->creds, next, sizeof(next));
        LOG_INFO("sim.credentials_changed", "system=%s", y->name);   /* never the values */
    }
    evbuffer_add_printf(out, "{\"system\":\"%s\",\"credentials\":[", y->name);
    for (int i = 0; i < y->ncreds; i++)
        evbuffer_add_printf(out, "%s\"%s\"", i ? "," : "", y->creds[i].name);
    evbuffer_add(out, "]}", 2);
    sim_reply(c, 200);
out:
    cJSON_Delete(root);
}

/* /admin/<name>/...: the shared routes, then the system's own. */
static void h_admin(struct sim *s, const struct sim_call *c)
{
    struct sim_sys *y = NULL;
    for (int i = 0; i < SIM_SYS_N && !y; i++)
        if (s->sys[i] && strncmp(c->path, s->sys[i]->admin_prefix,
                                 strlen(s->sys[i]->admin_prefix)) == 0)
            y = s->sys[i];
    if (!y) {
        sim_reply_error(c, 404, cv_rc_str(CV_ERR_NOT_FOUND), "no such system");
        return;
    }
    const char *rest = c->path + strlen(y->admin_prefix);
    enum evhttp_cmd_type m = evhttp_request_get_command(c->req);
    int get_or_post = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_POST;
    if (strcmp(rest, "faults") == 0 && get_or_post)
        h_faults(s, y, c);
    else if (strcmp(rest, "stats") == 0 && m == EVHTTP_REQ_GET)
        h_stats(s, y, c);
    else if (strcmp(rest, "credentials") == 0 && get_or_post)
        h_credentials(y, c);
    else if (y->admin)
        y->admin(s, y, c, rest);
    else
        sim_reply_error(c, 404, cv_rc_str(CV_ERR_NOT_FOUND), "no such admin path");
}

/* ---- API ------------------------------------------------------------------------------ */

void sim_sys_init(struct sim *s, struct sim_sys *y, enum sim_sys_id id, const char *name,
                  const struct sim_cred_def *defs, int ndefs, int token_ttl_s)
{
    CV_ASSERT(ndefs <= SIM_SYS_CREDS_MAX && !s->sys[id]);
    y->id = id;
    y->name = name;
    y->faults_start = (struct sim_sys_faults){ .base = s->faults_start, .retry_after_s = 1,
                                               .token_ttl_s = token_ttl_s };
    y->faults = y->faults_start;
    y->cred_defs = defs;
    y->ncreds = ndefs;
    for (int i = 0; i < ndefs; i++) {
        y->creds[i].name = defs[i].name;
        snprintf(y->creds[i].value, SIM_SYS_CRED_LEN, "%s", defs[i].value);
    }
    sim_tokens_init(&y->tokens);
    snprintf(y->admin_prefix, sizeof(y->admin_prefix), "/admin/%s/", name);
    s->sys[id] = y;
    if (!s->sys_admin_routed) {          /* one prefix route serves every system */
        sim_route_add(&s->router, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                      EVHTTP_REQ_DELETE, "/admin/", 1, h_admin);
        s->sys_admin_routed = 1;
    }
}

void sim_sys_cleanup(struct sim_sys *y)
{
    sim_tokens_cleanup(&y->tokens);
}

void sim_sys_reset(struct sim *s, struct sim_sys *y)
{
    y->faults = y->faults_start;
    memset(&y->stats, 0, sizeof(y->stats));
    for (int i = 0; i < y->ncreds; i++)
        snprintf(y->creds[i].value, SIM_SYS_CRED_LEN, "%s", y->cred_defs[i].value);
    sim_tokens_clear(&y->tokens);
    if (y->reset)
        y->reset(s, y);
}

const char *sim_sys_cred(const struct sim_sys *y, const char *name)
{
    for (int i = 0; i < y->ncreds; i++)
        if (strcmp(y->creds[i].name, name) == 0)
            return y->creds[i].value;
    return "";
}

int sim_sys_cred_eq(const struct sim_sys *y, const char *name, const char *presented)
{
    /* Compare fixed-size buffers: no early exit on the first differing byte,
     * nor on the length. */
    char a[SIM_SYS_CRED_LEN] = { 0 }, b[SIM_SYS_CRED_LEN] = { 0 };
    if (!presented || strlen(presented) >= SIM_SYS_CRED_LEN)
        return 0;
    snprintf(a, sizeof(a), "%s", sim_sys_cred(y, name));
    memcpy(b, presented, strlen(presented));
    return a[0] && CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

void sim_sys_answer(struct sim *s, struct sim_sys *y, const struct sim_call *c, int status,
                    int created)
{
    if (created && y->faults.apply_then_timeout_next > 0) {
        y->faults.apply_then_timeout_next--;
        y->stats.applied_then_timeout++;
        LOG_INFO("sim.applied_then_timeout", "system=%s", y->name);
        sim_pending_hold(&s->pending, c->req, c->start_us);
        return;
    }
    sim_pending_answer(&s->pending, c->req, status,
                       sim_faults_delay_ms(&y->faults.base, &s->rng), c->start_us);
}

void sim_sys_fail(struct sim *s, struct sim_sys *y, const struct sim_call *c, int status,
                  const char *code, const char *msg)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(c->req);
    evbuffer_drain(out, evbuffer_get_length(out));
    y->put_error(c->req, status, code, msg);
    sim_sys_answer(s, y, c, status, 0);
}

void sim_sys_throttle(struct sim *s, struct sim_sys *y, const struct sim_call *c,
                      int retry_after_s)
{
    char ra[16];
    snprintf(ra, sizeof(ra), "%d", retry_after_s);
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Retry-After", ra);
    y->stats.throttled++;
    sim_sys_fail(s, y, c, 429, "TOO_MANY_REQUESTS", "rate limit exceeded, retry later");
}

int sim_sys_gate(struct sim *s, struct sim_sys *y, const struct sim_call *c)
{
    char msg[64];
    y->stats.calls++;
    if (y->faults.throttle_on || y->faults.throttle_next > 0) {
        if (!y->faults.throttle_on)
            y->faults.throttle_next--;
        sim_sys_throttle(s, y, c, y->faults.retry_after_s);
        return 1;
    }
    switch (sim_faults_decide(&y->faults.base, &s->rng)) {
    case SIM_FAULT_TIMEOUT:
        y->stats.timeouts++;
        sim_pending_hold(&s->pending, c->req, c->start_us);
        return 1;
    case SIM_FAULT_FAIL_NEXT:
    case SIM_FAULT_ERROR:
        y->stats.errors++;
        snprintf(msg, sizeof(msg), "injected fault: status %d", y->faults.base.error_status);
        if (y->faults.base.error_status == 429) {
            y->stats.errors--;           /* counted as throttled */
            sim_sys_throttle(s, y, c, y->faults.retry_after_s);
        } else {
            sim_sys_fail(s, y, c, y->faults.base.error_status, "INJECTED", msg);
        }
        return 1;
    case SIM_FAULT_NONE:
        break;
    }
    return 0;
}

int sim_sys_bearer_or_reply(struct sim *s, struct sim_sys *y, const struct sim_call *c)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(c->req),
                                       "Authorization");
    const char *tok = NULL;
    if (h && strncasecmp(h, "Bearer ", 7) == 0)
        tok = h + 7;
    int ok = tok && sim_tokens_valid(&y->tokens, tok, strlen(tok));
    if (ok && y->faults.unauthorized_next > 0) {
        y->faults.unauthorized_next--;   /* a valid token refused once: the client refreshes */
        ok = 0;
    }
    if (ok)
        return 0;
    y->stats.unauthorized++;
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "WWW-Authenticate",
                      "Bearer error=\"invalid_token\"");
    sim_sys_fail(s, y, c, 401, "UNAUTHORIZED", "the access token is missing, invalid or expired");
    return 1;
}

int sim_sys_fails(const struct sim_sys *y, const char *key)
{
    for (int i = 0; key && i < y->faults.nfail_keys; i++)
        if (strcmp(y->faults.fail_keys[i], key) == 0)
            return 1;
    return 0;
}


/* Parse a query string (URL or form body) and copy name's value into out. */
static int kv_get(const char *q, const char *name, char *out, size_t outlen)
{
    struct evkeyvalq kv;
    int found = 0;
    TAILQ_INIT(&kv);
    if (!q || evhttp_parse_query_str(q, &kv) != 0)
        goto out;
    const char *v = evhttp_find_header(&kv, name);
    if (v) {
        snprintf(out, outlen, "%s", v);
        found = 1;
    }
out:
    evhttp_clear_headers(&kv);
    return found;
}

int sim_query(const struct sim_call *c, const char *name, char *out, size_t outlen)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(c->req);
    return kv_get(u ? evhttp_uri_get_query(u) : NULL, name, out, outlen);
}

int sim_form(const struct sim_call *c, const char *name, char *out, size_t outlen)
{
    const char *body;
    size_t len;
    if (sim_body(c, &body, &len) != CV_OK)
        return 0;
    char *text = xstrndup(body, len);
    int found = kv_get(text, name, out, outlen);
    free(text);
    return found;
}

void sim_sys_token_reply(struct sim *s, struct sim_sys *y, const struct sim_call *c,
                         const char *prefix, const char *refresh)
{
    char tok[SIM_TOKEN_LEN];
    if (sim_tokens_issue(&y->tokens, prefix, y->faults.token_ttl_s, tok) != 0) {
        sim_sys_fail(s, y, c, 503, "FULL", "the simulator holds too many tokens; reset it");
        return;
    }
    y->stats.logins++;
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    evbuffer_add_printf(b, "{\"access_token\":\"%s\",\"token_type\":\"Bearer\","
                           "\"expires_in\":%d", tok, y->faults.token_ttl_s);
    if (refresh)
        evbuffer_add_printf(b, ",\"refresh_token\":\"%s\"", refresh);
    evbuffer_add(b, "}", 1);
    sim_sys_answer(s, y, c, 200, 0);
}
