/* meli.c - Mercado Livre's credentials (the rotating refresh token) and the
 * notification resources the worker may fetch (meli.h). */
#include "meli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "cfg.h"
#include "log.h"
#include "rds.h"

#define RT_MAX 512
#define ID_MAX 64

/* Replace the refresh token only if it is still the one we sent: another
 * writer (an operator seeding a new chain) wins over a late refresh. */
static struct rds_script cas_script = {
    "meli_refresh_cas",
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0",
    "",
};

/* The current refresh token into out: 0, or -1 (err set). Seeds Redis from
 * upstreams.meli.password when it holds none. */
static int refresh_token(struct ups *u, const struct cfg *cfg, char *out, size_t cap, char *err,
                         size_t err_len)
{
    struct rds *r = ups_rds(u);
    const char *seed = cfg ? cfg->ups[CFG_UPS_MELI].password : NULL;
    struct rds_reply *rep = NULL;
    int rc = -1;
    if (seed && seed[0]) {
        rep = rds_cmdf(r, "SET %s %s NX", MELI_REFRESH_KEY, seed);
        if (!rep)
            goto redis_down;
        rds_reply_free(rep);
    }
    rep = rds_cmdf(r, "GET %s", MELI_REFRESH_KEY);
    if (!rep)
        goto redis_down;
    if (rds_reply_type(rep) == RDS_STR && strlen(rds_reply_str(rep, NULL)) < cap &&
        rds_reply_str(rep, NULL)[0]) {
        snprintf(out, cap, "%s", rds_reply_str(rep, NULL));
        rc = 0;
    } else {
        snprintf(err, err_len, "meli: no refresh token (set upstreams.meli.password or %s)",
                 MELI_REFRESH_KEY);
    }
    rds_reply_free(rep);
    return rc;
redis_down:
    snprintf(err, err_len, "meli: redis unreachable for the refresh token");
    return -1;
}

static enum cv_rc meli_token(struct ups *u, void *arg, char **token, int64_t *ttl_ms, char *err,
                             size_t err_len)
{
    const struct ups_conf *c = ups_conf_of(u);
    char rt[RT_MAX], next[RT_MAX];
    struct sbuf form;
    struct httpc_req r;
    cJSON *root = NULL;
    enum cv_rc rc = CV_ERR_TRANSIENT;
    char *url = NULL;
    sbuf_init(&form);
    memset(&r, 0, sizeof(r));
    if (refresh_token(u, arg, rt, sizeof(rt), err, err_len) != 0) {
        rc = CV_ERR_AUTH;
        goto out;
    }
    car_form_add(&form, "grant_type", "refresh_token");
    car_form_add(&form, "client_id", c->auth_user);
    car_form_add(&form, "client_secret", c->auth_secret);
    car_form_add(&form, "refresh_token", rt);
    url = xasprintf("%s/oauth/token", c->url);
    r.method = "POST";
    r.url = url;
    r.body = form.p;
    r.body_len = form.len;
    r.content_type = HTTPC_CT_FORM;
    ups_call_raw(u, &r);
    if (r.cls != HTTPC_OK) {
        if (r.cls == HTTPC_PERMANENT || r.cls == HTTPC_AUTH) {
            rc = CV_ERR_AUTH;
            LOG_ERROR("meli.refresh_refused", "status=%d hint=\"the refresh token is spent or "
                      "revoked: store a new one in %s\"", r.status, MELI_REFRESH_KEY);
        } else {
            rc = httpc_class_rc(r.cls);
        }
        snprintf(err, err_len, "meli token: %s", r.error);
        goto out;
    }
    root = r.resp ? json_parse(r.resp, r.resp_len) : NULL;
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(root, "access_token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "expires_in");
    car_json_str(root, "refresh_token", next, sizeof(next));
    if (!cJSON_IsString(at) || !at->valuestring[0]) {
        snprintf(err, err_len, "meli token: no access_token in the answer");
        goto out;
    }
    /* The refresh token we sent is spent now: store its successor before
     * anything else can fail. */
    if (next[0]) {
        const char *argv[] = { MELI_REFRESH_KEY, rt, next };
        struct rds_reply *rep = rds_eval(ups_rds(u), &cas_script, 1, 3, argv, NULL);
        if (!rep || rds_reply_type(rep) != RDS_INT)
            LOG_ERROR("meli.refresh_token_unsaved", "key=%s hint=\"the rotated refresh token "
                      "could not be stored: the next refresh will fail\"", MELI_REFRESH_KEY);
        else if (rds_reply_int(rep) != 1)
            LOG_WARN("meli.refresh_token_replaced", "key=%s hint=\"changed during the refresh; "
                     "kept the newer value\"", MELI_REFRESH_KEY);
        rds_reply_free(rep);
    }
    *token = xstrdup(at->valuestring);
    *ttl_ms = cJSON_IsNumber(exp) && exp->valuedouble > 1 ? (int64_t)exp->valuedouble * 1000
                                                          : 300000;
    rc = CV_OK;
out:
    cJSON_Delete(root);
    httpc_req_cleanup(&r);
    free(url);
    /* the form held the client secret and the refresh token */
    if (form.p)
        memset(form.p, 0, form.len);
    sbuf_cleanup(&form);
    memset(rt, 0, sizeof(rt));
    memset(next, 0, sizeof(next));
    return rc;
}

const struct ups_auth meli_auth = { "bearer", meli_token, ups_auth_apply_bearer };

static const struct {
    const char *topic;
    const char *prefix;
    const char *action;
} topics[] = {
    { "orders_v2", "/orders/", "order_updated" },
    { "items", "/items/", "item_updated" },
    { "messages", "/messages/", "message_updated" },
};

const char *meli_topic_action(const char *topic)
{
    for (size_t i = 0; topic && i < sizeof(topics) / sizeof(topics[0]); i++)
        if (strcmp(topics[i].topic, topic) == 0)
            return topics[i].action;
    return NULL;
}

int meli_resource_ok(const char *topic, const char *resource)
{
    for (size_t i = 0; topic && resource && i < sizeof(topics) / sizeof(topics[0]); i++) {
        size_t pl = strlen(topics[i].prefix);
        if (strcmp(topics[i].topic, topic) != 0 || strncmp(resource, topics[i].prefix, pl) != 0)
            continue;
        const char *id = resource + pl;
        size_t n = strlen(id);
        if (n == 0 || n > ID_MAX)
            return 0;
        for (const char *p = id; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
                return 0;
        return 1;
    }
    return 0;
}
