/* api_admin.c - operators' endpoints: the dead-letter set, queues, workers.
 *
 *   GET  /v1/dead?type=&limit=     newest first
 *   POST /v1/dead/{id}/retry       202, 404, 409
 *   POST /v1/dead/{id}/purge       200, 404, 409 (not dead, or held)
 *   GET  /v1/queues
 *   GET  /v1/workers               heartbeat younger than 10 s
 *
 * All of them need the operator scope (a key listing "operator", or "*"):
 * they show every producer's jobs, host names and pids. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "broker.h"
#include "mem.h"


/* ==== GET /v1/dead ========================================================== */

static void on_dead_list(void *arg, enum cv_rc rc, const struct job_status *st, size_t n)
{
    struct req *r = arg;
    if (rc != CV_OK) {
        api_reply_err(r, rc, "could not read the dead-letter set; retry", NULL);
        goto out;
    }
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"jobs\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sbuf_add(&b, ",", 1);
        api_json_job_status(&b, &st[i], API_LIST_PAYLOAD_MAX);
    }
    sbuf_adds(&b, "]}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_dead_list(struct req *r)
{
    int64_t limit;
    if (api_query_str_or_reply(r, "type", r->type, sizeof(r->type)) ||
        api_query_int_or_reply(r, "limit", 1, 1000, 100, &limit))
        return;
    if (r->type[0] && !job_type_valid(r->type, strlen(r->type))) {
        api_reply_err(r, CV_ERR_INVALID, "type must be 1..31 of [a-z0-9_-]", "type");
        return;
    }
    api_req_hold(r);
    broker_dead_list(r->t->broker, r->type[0] ? r->type : NULL, (int)limit, on_dead_list, r);
}

/* ==== POST /v1/dead/{id}/retry ============================================== */

static void on_dead_retry(void *arg, enum cv_rc rc)
{
    struct req *r = arg;
    if (rc == CV_OK) {
        struct sbuf b;
        sbuf_init(&b);
        sbuf_add(&b, "{", 1);
        api_json_str(&b, "id", r->id, 1);
        api_json_str(&b, "status", "queued", 0);
        sbuf_add(&b, "}", 1);
        char loc[64];
        snprintf(loc, sizeof(loc), "/v1/jobs/%s", r->id);
        api_add_header(r, "Location", loc);
        api_reply_json(r, 202, &b);
        sbuf_cleanup(&b);
    } else if (rc == CV_ERR_NOT_FOUND) {
        api_reply_err(r, rc, "no such job", NULL);
    } else if (rc == CV_ERR_CONFLICT) {
        api_reply_err(r, rc, "job is not dead or failed", NULL);
    } else {
        api_reply_err(r, rc, "could not retry the job; retry", NULL);
    }
    api_req_release(r);
}

void api_h_dead_retry(struct req *r)
{
    if (api_param_uuid_or_reply(r, "id"))
        return;
    api_req_hold(r);
    broker_dead_retry(r->t->broker, r->id, on_dead_retry, r);
}

/* ==== POST /v1/dead/{id}/purge ============================================== */

/* An operator's way to delete a dead job for good. Refused (409) while the job
 * is held: its money may be debited, and its status is the only handle on it
 * until the reconciler settles it. */
static void on_dead_purge(void *arg, enum cv_rc rc, enum broker_purge what)
{
    struct req *r = arg;
    if (rc != CV_OK) {
        api_reply_err(r, rc, "could not purge the job; retry", NULL);
    } else if (what == BROKER_PURGED) {
        struct sbuf b;
        sbuf_init(&b);
        sbuf_add(&b, "{", 1);
        api_json_str(&b, "id", r->id, 1);
        api_json_str(&b, "status", "purged", 0);
        sbuf_add(&b, "}", 1);
        api_reply_json(r, 200, &b);
        sbuf_cleanup(&b);
    } else if (what == BROKER_PURGE_UNKNOWN) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "no such job", NULL);
    } else if (what == BROKER_PURGE_LIVE) {
        api_reply_err(r, CV_ERR_CONFLICT, "job is not dead or failed", NULL);
    } else {
        api_reply_err(r, CV_ERR_CONFLICT,
                      "job is held: its effects (money) may be unsettled; the reconciler "
                      "settles it, then it can be purged",
                      NULL);
    }
    api_req_release(r);
}

void api_h_dead_purge(struct req *r)
{
    if (api_param_uuid_or_reply(r, "id"))
        return;
    api_req_hold(r);
    broker_dead_purge(r->t->broker, r->id, on_dead_purge, r);
}

/* ==== GET /v1/queues ========================================================== */

static void on_queues(void *arg, enum cv_rc rc, const struct queue_stat *q, size_t n)
{
    struct req *r = arg;
    if (rc != CV_OK) {
        api_reply_err(r, rc, "could not read the queues; retry", NULL);
        goto out;
    }
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{");
    api_json_str(&b, "transport", broker_transport(r->t->broker), 1);
    sbuf_adds(&b, ",\"queues\":[");
    for (size_t i = 0; i < n; i++) {
        sbuf_adds(&b, i ? ",{" : "{");
        api_json_str(&b, "type", q[i].type, 1);
        api_json_i64(&b, "depth", q[i].depth, 0);
        if (q[i].lag >= 0)
            api_json_i64(&b, "lag", q[i].lag, 0);
        else
            sbuf_adds(&b, ",\"lag\":null");
        api_json_i64(&b, "pending", q[i].pending, 0);
        api_json_i64(&b, "consumers", q[i].consumers, 0);
        api_json_i64(&b, "scheduled", q[i].scheduled, 0);
        api_json_i64(&b, "dead", q[i].dead, 0);
        api_json_i64(&b, "oldest_age_ms", (long long)q[i].oldest_age_ms, 0);
        sbuf_add(&b, "}", 1);
    }
    sbuf_adds(&b, "]}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_queues(struct req *r)
{
    api_req_hold(r);
    broker_queues(r->t->broker, on_queues, r);
}

/* ==== GET /v1/workers ========================================================= */

/* "a,b" -> ["a","b"] */
static void types_array(struct sbuf *b, const char *types)
{
    sbuf_add(b, "[", 1);
    int first = 1;
    const char *p = types;
    while (*p) {
        const char *e = p + strcspn(p, ", ");
        if (e > p) {
            if (!first)
                sbuf_add(b, ",", 1);
            sbuf_add_json_strn(b, p, (size_t)(e - p));
            first = 0;
        }
        p = *e ? e + 1 : e;
    }
    sbuf_add(b, "]", 1);
}

static void on_workers(void *arg, enum cv_rc rc, const struct worker_info *w, size_t n)
{
    struct req *r = arg;
    if (rc != CV_OK) {
        api_reply_err(r, rc, "could not read the workers; retry", NULL);
        goto out;
    }
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"workers\":[");
    for (size_t i = 0; i < n; i++) {
        sbuf_adds(&b, i ? ",{" : "{");
        api_json_str(&b, "name", w[i].name, 1);
        api_json_str(&b, "host", w[i].host, 0);
        api_json_i64(&b, "pid", w[i].pid, 0);
        sbuf_adds(&b, ",\"types\":");
        types_array(&b, w[i].types);
        api_json_i64(&b, "concurrency", w[i].concurrency, 0);
        api_json_time(&b, "started_at", w[i].started_ms, 0);
        api_json_time(&b, "last_seen", w[i].last_seen_ms, 0);
        api_json_i64(&b, "processed", w[i].processed, 0);
        /* settled since its previous heartbeat: busy when > 0 */
        api_json_i64(&b, "recent", w[i].recent, 0);
        sbuf_adds(&b, w[i].recent > 0 ? ",\"busy\":true" : ",\"busy\":false");
        sbuf_add(&b, "}", 1);
    }
    sbuf_adds(&b, "]}");
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_workers(struct req *r)
{
    api_req_hold(r);
    broker_workers(r->t->broker, WORKER_ALIVE_MS, on_workers, r);
}
