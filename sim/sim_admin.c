#include "sim_admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "mem.h"
#include "sim.h"
#include "sim_activation.h"
#include "sim_webhook.h"

#define USER_ID_MAX 9000000000000000LL

/* What each settable field must be, for the 400 message. */
static const struct {
    const char *key;
    const char *want;
} fields[] = {
    { "latency_ms", "an integer 0..600000" },
    { "error_rate", "a number 0..1" },
    { "error_status", "an integer 400..599" },
    { "timeout_rate", "a number 0..1" },
    { "fail_next", "an integer 0..1000000000" },
    { "decline_users", "an array of at most 10000 positive integers" },
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

/* ---- low level ------------------------------------------------------------------ */

int sim_admin_int_of(const cJSON *it, int64_t min, int64_t max, int64_t *out)
{
    if (!cJSON_IsNumber(it))
        return -1;
    double d = it->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max)
        return -1;
    *out = (int64_t)d;
    return 0;
}

int sim_admin_rate_of(const cJSON *it, double *out)
{
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < 0 ||
        it->valuedouble > 1)
        return -1;
    *out = it->valuedouble;
    return 0;
}

/* decline_users: a whole new set. *users is allocated (free it) unless empty. */
static int users_of(const cJSON *it, int64_t **users, size_t *n)
{
    if (!cJSON_IsArray(it))
        return -1;
    int len = cJSON_GetArraySize(it);
    if (len < 0 || len > SIM_ACT_DECLINES_MAX)
        return -1;
    free(*users);
    *users = len ? xmalloc((size_t)len * sizeof(**users)) : NULL;
    *n = 0;
    for (const cJSON *u = it->child; u; u = u->next)
        if (sim_admin_int_of(u, 1, USER_ID_MAX, &(*users)[(*n)++]))
            return -1;
    return 0;
}

cJSON *sim_admin_json_or_reply(const struct sim_call *c)
{
    const char *body;
    size_t len;
    cJSON *root = NULL;
    if (sim_body(c, &body, &len) != CV_OK) {
        sim_reply_error(c, 413, cv_rc_str(CV_ERR_TOO_LARGE), "body: over 65536 bytes");
        return NULL;
    }
    root = json_parse(body, len);
    if (!cJSON_IsObject(root)) {
        sim_reply_error(c, 400, cv_rc_str(CV_ERR_INVALID), "body: must be a JSON object");
        cJSON_Delete(root);
        root = NULL;
    }
    return root;
}

void sim_admin_bad_field(const struct sim_call *c, const char *field, const char *want)
{
    char msg[160];
    if (strcmp(field, "body") == 0)
        snprintf(msg, sizeof(msg), "body: must be a JSON object");
    else if (want)
        snprintf(msg, sizeof(msg), "%s: must be %s", field, want);
    else                                 /* an untrusted key: cap its length */
        snprintf(msg, sizeof(msg), "%.48s: not a setting", field);
    sim_reply_error(c, 400, cv_rc_str(CV_ERR_INVALID), msg);
}

/* Parse a POST /admin/config body into f (a copy of the live faults) and
 * the decline set. Nothing live changes here. On error *field is the bad key. */
static enum cv_rc parse_config(const cJSON *root, struct sim_faults *f, int64_t **users,
                               size_t *nusers, int *has_users, const char **field)
{
    enum cv_rc rc = CV_ERR_INVALID;
    int64_t v;
    *field = "body";
    if (!cJSON_IsObject(root))
        goto out;
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *k = it->string;
        *field = k;
        if (strcmp(k, "latency_ms") == 0) {
            if (sim_admin_int_of(it, 0, SIM_LATENCY_MAX_MS, &v))
                goto out;
            f->latency_ms = (int)v;
        } else if (strcmp(k, "error_rate") == 0) {
            if (sim_admin_rate_of(it, &f->error_rate))
                goto out;
        } else if (strcmp(k, "error_status") == 0) {
            if (sim_admin_int_of(it, SIM_ERROR_STATUS_MIN, SIM_ERROR_STATUS_MAX, &v))
                goto out;
            f->error_status = (int)v;
        } else if (strcmp(k, "timeout_rate") == 0) {
            if (sim_admin_rate_of(it, &f->timeout_rate))
                goto out;
        } else if (strcmp(k, "fail_next") == 0) {
            if (sim_admin_int_of(it, 0, SIM_FAIL_NEXT_MAX, &f->fail_next))
                goto out;
        } else if (strcmp(k, "decline_users") == 0) {
            if (users_of(it, users, nusers))
                goto out;
            *has_users = 1;
        } else {
            goto out;
        }
    }
    if (sim_faults_check(f, field))
        goto out;
    *field = NULL;
    rc = CV_OK;
out:
    return rc;
}

static void put_config(struct sim *s, struct evbuffer *out)
{
    const struct sim_faults *f = &s->faults;
    const int64_t *users;
    size_t n = sim_activation_declines(s->act, &users);
    evbuffer_add_printf(out,
                        "{\"latency_ms\":%d,\"error_rate\":%.15g,\"error_status\":%d,"
                        "\"timeout_rate\":%.15g,\"fail_next\":%lld,\"decline_users\":[",
                        f->latency_ms, f->error_rate, f->error_status, f->timeout_rate,
                        (long long)f->fail_next);
    for (size_t i = 0; i < n; i++)
        evbuffer_add_printf(out, "%s%lld", i ? "," : "", (long long)users[i]);
    evbuffer_add(out, "]}", 2);
}

static void log_config(const struct sim *s, const char *evt)
{
    const int64_t *users;
    const struct sim_faults *f = &s->faults;
    size_t n = sim_activation_declines(s->act, &users);
    LOG_INFO(evt, "latency_ms=%d error_rate=%g error_status=%d timeout_rate=%g fail_next=%lld "
                  "decline_users=%zu",
             f->latency_ms, f->error_rate, f->error_status, f->timeout_rate,
             (long long)f->fail_next, n);
}

/* ---- handlers ------------------------------------------------------------------- */

static void h_get_config(struct sim *s, const struct sim_call *c)
{
    put_config(s, evhttp_request_get_output_buffer(c->req));
    sim_reply(c, 200);
}

static void h_post_config(struct sim *s, const struct sim_call *c)
{
    struct sim_faults f = s->faults;
    int64_t *users = NULL;
    size_t nusers = 0;
    int has_users = 0;
    const char *field = NULL;
    cJSON *root = sim_admin_json_or_reply(c);

    if (!root)
        goto out;
    if (parse_config(root, &f, &users, &nusers, &has_users, &field) != CV_OK) {
        const char *want = NULL;
        for (size_t i = 0; i < NFIELDS; i++)
            if (strcmp(fields[i].key, field) == 0)
                want = fields[i].want;
        sim_admin_bad_field(c, field, want);
        goto out;
    }
    s->faults = f;
    if (has_users)
        sim_activation_set_declines(s->act, users, nusers);
    log_config(s, "sim.config_changed");
    h_get_config(s, c);
out:
    free(users);
    cJSON_Delete(root);
}

static void h_stats(struct sim *s, const struct sim_call *c)
{
    const struct sim_act_stats *st = sim_activation_stats(s->act);
    evbuffer_add_printf(evhttp_request_get_output_buffer(c->req),
                        "{\"calls\":%lld,\"activations\":%lld,\"errors\":%lld,\"timeouts\":%lld,"
                        "\"declines\":%lld,\"duplicates\":%lld,\"held\":%zu}",
                        (long long)st->calls, (long long)st->activations, (long long)st->errors,
                        (long long)st->timeouts, (long long)st->declines,
                        (long long)st->duplicates, s->pending.nheld);
    sim_reply(c, 200);
}

static void h_reset(struct sim *s, const struct sim_call *c)
{
    s->faults = s->faults_start;
    sim_activation_reset(s->act);
    for (int i = 0; i < SIM_SYS_N; i++)
        if (s->sys[i])
            sim_sys_reset(s, s->sys[i]);
    if (s->wh)
        sim_webhook_reset(s->wh);
    log_config(s, "sim.reset");
    evbuffer_add_printf(evhttp_request_get_output_buffer(c->req), "{\"status\":\"ok\"}");
    sim_reply(c, 200);
}

/* ---- API ---------------------------------------------------------------------------- */

void sim_admin_register(struct sim *s)
{
    sim_route_add(&s->router, EVHTTP_REQ_GET, "/admin/config", 0, h_get_config);
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/admin/config", 0, h_post_config);
    sim_route_add(&s->router, EVHTTP_REQ_GET, "/admin/stats", 0, h_stats);
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/admin/reset", 0, h_reset);
}
