/* h_ml_notification.c - a Mercado Livre notification (seed 002): the
 * notification only says "resource R of topic T changed"; the job GETs R
 * with our token and applies it only when it changed (cv_ml_apply in
 * migrations/0004_meli.sql: an unchanged body writes nothing but fetched_at;
 * a change writes the row and an operations row, scope meli).
 *
 * Payload {resource, topic, user_id, application_id?, attempts?, sent?,
 * received?} as Mercado Livre posts it (the API enqueues it unchanged).
 * Topics orders_v2, items and messages; the resource must be a path of its
 * topic (meli_resource_ok): it is fetched with our bearer token, so a
 * notification naming a full URL or another path is refused, never called.
 *
 * Outcomes: applied (new, changed, unchanged, stale) -> done; 404 -> failed
 * (the resource is gone or not ours); 5xx, timeouts, throttling -> retry
 * (Retry-After honoured); circuit open or rate budget spent -> wait, no
 * attempt spent; refresh token refused -> failed (an operator must store a
 * new one, meli.h); PostgreSQL down -> CV_ERR_UNAVAILABLE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "db.h"
#include "log.h"
#include "meli.h"
#include "ord.h"

#define RESOURCE_MAX 160

static void one(struct wrk_ctx *ctx, struct job *j, struct wrk_result *r)
{
    cJSON *p = json_parse(j->payload, j->payload_len);
    char resource[RESOURCE_MAX], topic[40], trace[33];
    struct ups_call c;
    cJSON *body = NULL;
    ord_call_init(&c, j, NULL, NULL);
    car_json_str(p, "resource", resource, sizeof(resource));
    car_json_str(p, "topic", topic, sizeof(topic));
    cJSON_Delete(p);
    if (!meli_topic_action(topic)) {
        wrk_fail(r, CV_ERR_PERMANENT, "meli: topic '%s' is not handled", topic);
        goto out;
    }
    if (!meli_resource_ok(topic, resource)) {
        wrk_fail(r, CV_ERR_PERMANENT, "meli: resource '%.80s' is not a %s path", resource, topic);
        goto out;
    }
    c.method = "GET";
    c.path = resource;
    c.content_type = HTTPC_CT_NONE;
    ups_run(wrk_ups(ctx, CFG_UPS_MELI), &c, 1);
    if (c.outcome == UPS_DEFERRED) {
        wrk_fail(r, CV_ERR_BUSY, "meli: %s", c.error);
        r->delay_ms = c.delay_ms;
        goto out;
    }
    if (c.outcome != UPS_DONE) {
        wrk_fail(r, c.rc == CV_ERR_AUTH ? CV_ERR_PERMANENT : c.rc, "meli: %s", c.error);
        goto out;
    }
    if (c.cls != HTTPC_OK) {
        enum cv_rc rc = httpc_class_rc(c.cls);
        wrk_fail(r, rc == CV_ERR_AUTH ? CV_ERR_PERMANENT : rc, "meli: GET %s: %s", resource,
                 c.error[0] ? c.error : httpc_class_str(c.cls));
        r->delay_ms = c.retry_after_ms;
        goto out;
    }
    body = c.resp ? json_parse(c.resp, c.resp_len) : NULL;
    if (!cJSON_IsObject(body)) {
        wrk_fail(r, CV_ERR_TRANSIENT, "meli: GET %s: the answer is not a JSON object", resource);
        goto out;
    }
    ord_trace_id(j, trace);
    const char *params[] = { topic, resource, c.resp, j->id, trace };
    enum cv_rc rc;
    struct db_res *res = db_exec(ctx->db, "SELECT cv_ml_apply($1, $2, $3::jsonb, $4::uuid, $5)",
                                 5, params, &rc);
    if (!res) {
        wrk_fail(r, rc == CV_ERR_IO ? CV_ERR_UNAVAILABLE : CV_ERR_PERMANENT,
                 "meli: storing %s: %s", resource, cv_rc_str(rc));
        goto out;
    }
    LOG_INFO("meli.resource_fetched", "topic=%s resource=%s outcome=%s job_id=%s", topic,
             resource, db_res_rows(res) == 1 ? db_res_get(res, 0, 0) : "?", j->id);
    db_res_free(res);
    r->rc = CV_OK;
out:
    cJSON_Delete(body);
    ups_call_cleanup(&c);
}

void h_ml_notification(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res)
{
    for (size_t i = 0; i < n; i++)
        one(ctx, jobs[i], &res[i]);
    wrk_out_flush(ctx);
}
