/* api_webhook.c - inbound webhooks: carriers' tracking pushes and Mercado
 * Livre's notifications. The API only checks and enqueues; the work is a job.
 *
 * POST /api/v1/carriers/{carrier}/webhook, checked in this order (each step
 * cheaper than the next, and none tells an outsider more than it must):
 *   1. the carrier is one we know (upstreams.<carrier>)          -> 404
 *   2. the source address is in upstreams.<carrier>.webhook_cidrs -> 403
 *      (X-Forwarded-For is believed only from http.trusted_proxies:
 *      the client is the rightmost address that is not a trusted proxy)
 *   3. the Standard Webhooks signature with one of
 *      upstreams.<carrier>.webhook_secrets (several while rotating), its
 *      timestamp within API_WEBHOOK_TOLERANCE_S (a replayed delivery is
 *      stale)                                                    -> 401
 *   4. the body: {"type","timestamp","data":{carrier, reference, status,
 *      event_at, seq, tracking_number, expedition_id, description}},
 *      checked by the tracking-event job type's validator          -> 400
 *   5. the carrier's budget, webhook_rate_per_hour (seed 004: 1000), one
 *      counter per carrier and hour in Redis shared by every API process
 *                                                                -> 429
 *   6. enqueue a tracking-event job whose id is derived from the carrier and
 *      the webhook-id: a duplicate delivery (the carrier retrying, or
 *      replaying) is the same job, acknowledged again with no second effect.
 * The reply is 200 {"received":true,"job_id":...,"duplicate":bool} as soon as
 * Redis took the job: no PostgreSQL, no outside call, well within 500 ms.
 *
 * POST /api/webhook/mercado-livre (seed 002): the real notification body
 * {resource, user_id, topic, application_id, attempts, sent, received}.
 * Mercado Livre does not sign; its source addresses are checked against
 * upstreams.meli.webhook_cidrs. Topics orders_v2, items and messages become
 * an ml-notification job (a hint: the job GETs the resource and applies it
 * only when it changed); other topics are acknowledged and ignored. The job
 * id is derived from topic, resource and `sent`, so the retries of one
 * notification are one job. 200 within 500 ms. */
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "api.h"
#include "auth.h"
#include "cidr.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "met.h"
#include "rds.h"

#define API_WEBHOOK_TOLERANCE_S 300

int api_webhook_init(struct api_global *g, const struct cfg *cfg)
{
    const char *bad = NULL;
    if (cidr_parse(cfg->trusted_proxies, &g->proxies, &bad) != 0) {
        fprintf(stderr, "conveyor: http.trusted_proxies: bad network at '%.40s'\n", bad);
        return -1;
    }
    for (int i = 0; i < CFG_UPS_N; i++) {
        if (cidr_parse(cfg->ups[i].webhook_cidrs, &g->wh_cidrs[i], &bad) != 0) {
            fprintf(stderr, "conveyor: upstreams.%s.webhook_cidrs: bad network at '%.40s'\n",
                    cfg_ups_name(i), bad);
            return -1;
        }
    }
    return 0;
}

/* The client's address: the peer, or, when the peer is a trusted proxy, the
 * rightmost X-Forwarded-For entry that is not one. */
static void client_ip(struct req *r, char *out, size_t cap)
{
    struct evhttp_connection *c = evhttp_request_get_connection(r->http);
    char *host = NULL;
    ev_uint16_t port = 0;
    out[0] = '\0';
    if (c)
        evhttp_connection_get_peer(c, &host, &port);
    snprintf(out, cap, "%s", host ? host : "");
    const char *xff = api_header(r, "X-Forwarded-For");
    if (!xff || !cidr_match(&r->t->g->proxies, out))
        return;
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", xff);
    for (;;) {
        char *comma = strrchr(buf, ',');
        char *ip = comma ? comma + 1 : buf;
        while (*ip == ' ')
            ip++;
        size_t n = strcspn(ip, " ");
        if (n >= cap)
            n = cap - 1;
        memcpy(out, ip, n);
        out[n] = '\0';
        if (!comma || !cidr_match(&r->t->g->proxies, out))
            return;
        *comma = '\0';
    }
}

/* ---- the per-carrier, per-hour budget --------------------------------------- */

static struct rds_script rate_script = {
    "wh_rate",
    "local n = redis.call('INCR', KEYS[1])\n"
    "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"
    "return n\n",
    ""
};

static void on_published(void *arg, enum api_pub_outcome o, const char *id)
{
    struct req *r = arg;
    if (o != API_PUB_NEW && o != API_PUB_DUP) {
        api_reply_pub_failure(r, o, "webhook", id);
    } else {
        struct sbuf b;
        sbuf_init(&b);
        if (o == API_PUB_NEW)
            met_inc(r->t->g->met, r->t->idx, r->t->g->m_enqueued[r->type_idx]);
        sbuf_adds(&b, "{\"received\":true");
        api_json_str(&b, "job_id", id, 0);
        sbuf_addf(&b, ",\"duplicate\":%s}", o == API_PUB_DUP ? "true" : "false");
        LOG_INFO("webhook.received", "source=%s job_id=%s duplicate=%d trace=%s", r->type, id,
                 o == API_PUB_DUP, r->trace_id);
        api_reply_json(r, 200, &b);
        sbuf_cleanup(&b);
    }
    api_req_release(r);
}

static void on_rate(const struct rds_reply *reply, void *arg)
{
    struct req *r = arg;
    struct job *j = r->pending_job;
    r->pending_job = NULL;
    if (!reply || rds_reply_type(reply) != RDS_INT) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "Redis is unavailable; retry", NULL);
        goto out;
    }
    int up = cfg_ups_find(r->type);
    long long limit = up >= 0 ? r->t->cfg->ups[up].webhook_rate_per_hour : 0;
    if (limit > 0 && rds_reply_int(reply) > limit) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%lld", (long long)(3600 - (clock_wall_ms() / 1000) % 3600));
        api_add_header(r, "Retry-After", ra);
        api_reply_err(r, CV_ERR_RATE, "webhook budget of this carrier spent for this hour",
                      NULL);
        goto out;
    }
    if (r->t->closing) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "shutting down; retry", NULL);
        goto out;
    }
    api_req_hold(r);
    api_publish_one(r->t, j, on_published, r);
    j = NULL;
out:
    job_free(j);
    api_req_release(r);
}

/* Count the delivery against its carrier's hour, then publish j. */
static void rate_then_publish(struct req *r, struct job *j)
{
    char key[96], ttl[8] = "3700";
    snprintf(key, sizeof(key), "cv:wh:rate:%s:%lld", r->type,
             (long long)(clock_wall_ms() / 3600000));
    const char *argv[] = { key, ttl };
    r->pending_job = j;
    api_req_hold(r);
    rds_async_eval(r->t->rds, &rate_script, on_rate, r, 1, 2, argv, NULL);
}

/* The job of type ti whose id is derived from key, with payload text, on the
 * request's trace: counted against the source's budget, then published. */
static void enqueue_derived(struct req *r, int ti, const char *key, const char *text)
{
    struct job *j = jobopt_derived(r->t->cfg, api_header(r, "traceparent"),
                                   jobtype_at(ti)->name, key, text, 0);
    j->bounded = 1;   /* a full queue tells the sender to come back later */
    memcpy(r->trace_id, j->traceparent + 3, 32);
    r->trace_id[32] = '\0';
    r->type_idx = ti;
    rate_then_publish(r, j);
}

/* ---- carriers ---------------------------------------------------------------- */

/* The tracking-event payload from the webhook's data object, into out. */
static const char *const track_fields[] = { "status", "event_at", "seq", "tracking_number",
                                            "expedition_id", "description" };

void api_h_carrier_webhook(struct req *r)
{
    const char *carrier = r->param[0];
    int up = cfg_ups_find(carrier);
    cJSON *root = NULL, *payload = NULL;
    char ip[64];
    if (up < 0 || up == CFG_UPS_MIRAKL || up == CFG_UPS_MELI || up == CFG_UPS_ACTIVATION ||
        up == CFG_UPS_NOTIFY) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "unknown carrier", "carrier");
        goto out;
    }
    snprintf(r->type, sizeof(r->type), "%s", carrier);
    client_ip(r, ip, sizeof(ip));
    if (!cidr_match(&r->t->g->wh_cidrs[up], ip)) {
        LOG_WARN("webhook.refused", "carrier=%s ip=%s why=address", carrier, ip);
        api_reply_err(r, CV_ERR_FORBIDDEN, "source address not allowed for this carrier", NULL);
        goto out;
    }
    size_t len;
    const char *body = api_body(r, &len);
    const char *wid = api_header(r, "webhook-id");
    enum auth_wh v = auth_webhook_verify(r->t->cfg->ups[up].webhook_secrets, wid,
                                         api_header(r, "webhook-timestamp"),
                                         api_header(r, "webhook-signature"), body, len,
                                         clock_wall_ms() / 1000, API_WEBHOOK_TOLERANCE_S);
    if (v != AUTH_WH_OK) {
        char msg[96];
        LOG_WARN("webhook.refused", "carrier=%s ip=%s why=%s", carrier, ip, auth_wh_str(v));
        snprintf(msg, sizeof(msg), "webhook signature: %s", auth_wh_str(v));
        api_reply_err(r, CV_ERR_AUTH, msg, NULL);
        goto out;
    }
    if (api_require_json_or_reply(r))
        goto out;
    root = api_parse_body_or_reply(r);
    if (!root)
        goto out;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsObject(data)) {
        api_reply_err(r, CV_ERR_INVALID, "data must be an object", "data");
        goto out;
    }
    const cJSON *dc = cJSON_GetObjectItemCaseSensitive(data, "carrier");
    if (dc && !(cJSON_IsString(dc) && strcmp(dc->valuestring, carrier) == 0)) {
        api_reply_err(r, CV_ERR_INVALID, "data.carrier is not the carrier of this URL",
                      "data.carrier");
        goto out;
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(data, "reference");
    payload = cJSON_CreateObject();
    cJSON_AddStringToObject(payload, "carrier", carrier);
    if (ref)
        cJSON_AddItemToObject(payload, "order_id", cJSON_Duplicate(ref, 1));
    for (size_t i = 0; i < sizeof(track_fields) / sizeof(track_fields[0]); i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(data, track_fields[i]);
        if (f)
            cJSON_AddItemToObject(payload, track_fields[i], cJSON_Duplicate(f, 1));
    }
    cJSON_AddStringToObject(payload, "webhook_id", wid);
    const char *field = NULL, *why = NULL;
    struct sbuf canon;
    sbuf_init(&canon);
    enum cv_rc rc = jobtype_check(jobtype_at(JT_TRACKING_EVENT), payload, "", &canon, &field,
                                  &why);
    sbuf_cleanup(&canon);
    if (rc != CV_OK) {
        char f[64];
        snprintf(f, sizeof(f), "data.%s", field && strcmp(field, "order_id") == 0 ? "reference"
                                          : field                                   ? field
                                                                                    : "");
        api_reply_err(r, CV_ERR_INVALID, why, f);
        goto out;
    }
    char key[320], *text = json_print(payload, NULL);
    snprintf(key, sizeof(key), "webhook:%s:%s", carrier, wid);
    enqueue_derived(r, JT_TRACKING_EVENT, key, text);
    free(text);
out:
    cJSON_Delete(root);
    cJSON_Delete(payload);
}

/* ---- Mercado Livre ------------------------------------------------------------ */

void api_h_ml_notification(struct req *r)
{
    cJSON *root = NULL;
    char ip[64];
    snprintf(r->type, sizeof(r->type), "meli");
    client_ip(r, ip, sizeof(ip));
    if (!cidr_match(&r->t->g->wh_cidrs[CFG_UPS_MELI], ip)) {
        LOG_WARN("webhook.refused", "source=meli ip=%s why=address", ip);
        api_reply_err(r, CV_ERR_FORBIDDEN, "source address not allowed", NULL);
        goto out;
    }
    if (api_require_json_or_reply(r))
        goto out;
    root = api_parse_body_or_reply(r);
    if (!root)
        goto out;
    const char *field = NULL, *why = NULL;
    struct sbuf canon;
    sbuf_init(&canon);
    enum cv_rc rc = jobtype_check(jobtype_at(JT_ML_NOTIFICATION), root, "", &canon, &field,
                                  &why);
    sbuf_cleanup(&canon);
    if (rc != CV_OK) {
        api_reply_err(r, CV_ERR_INVALID, why, field ? field : "body");
        goto out;
    }
    const char *topic = cJSON_GetObjectItemCaseSensitive(root, "topic")->valuestring;
    const char *res = cJSON_GetObjectItemCaseSensitive(root, "resource")->valuestring;
    if (strcmp(topic, "orders_v2") != 0 && strcmp(topic, "items") != 0 &&
        strcmp(topic, "messages") != 0) {
        struct sbuf b;
        sbuf_init(&b);
        sbuf_adds(&b, "{\"received\":true,\"ignored\":\"topic\"}");
        api_reply_json(r, 200, &b);
        sbuf_cleanup(&b);
        goto out;
    }
    const cJSON *sent = cJSON_GetObjectItemCaseSensitive(root, "sent");
    char key[700];
    snprintf(key, sizeof(key), "ml:%s:%.512s:%s", topic, res,
             cJSON_IsString(sent) ? sent->valuestring : "");
    size_t len;
    const char *body = api_body(r, &len);
    char *text = xstrndup(body, len);
    enqueue_derived(r, JT_ML_NOTIFICATION, key, text);
    free(text);
out:
    cJSON_Delete(root);
}
