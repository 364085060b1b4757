/* api_jobs.c - POST /v1/jobs/{type}, POST /v1/jobs/{type}/batch, GET /v1/jobs/{id}.
 *
 * Validation happens in full before anything is published: a request that
 * gets a 4xx never enqueues. A batch is validated element by element (the
 * error names "[i]" or "[i].field") and then published with one atomic
 * broker_publish call. */
#include <ctype.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "broker.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "met.h"

/* ==== options ================================================================ */

int api_opts_or_reply(struct req *r, int single, struct jobopt *o)
{
    int rc = -1;
    struct evkeyvalq q;
    const char *why = NULL;
    int64_t now = clock_wall_ms();
    TAILQ_INIT(&q);
    memset(o, 0, sizeof(*o));

    const char *query = api_query(r);
    if (query && *query) {
        if (evhttp_parse_query_str(query, &q) != 0) {
            api_reply_err(r, CV_ERR_INVALID, "malformed query string", "query");
            goto out;
        }
        struct evkeyval *kv;
        TAILQ_FOREACH(kv, &q, next)
        {
            /* headers are not query options */
            enum cv_rc e = strcmp(kv->key, "delay_ms") == 0 || strcmp(kv->key, "run_at") == 0 ||
                                   strcmp(kv->key, "max_attempts") == 0
                               ? jobopt_set(o, kv->key, kv->value, now, &why)
                               : CV_ERR_NOT_FOUND;
            if (e == CV_ERR_NOT_FOUND) {
                api_reply_err(r, CV_ERR_INVALID, "unknown option (known: " JOBOPT_NAMES ")",
                              "query");
                goto out;
            }
            if (e != CV_OK) {
                api_reply_err(r, CV_ERR_INVALID, why, strncmp(why, "give", 4) ? kv->key
                                                                               : "run_at");
                goto out;
            }
        }
    }
    const char *v = api_header(r, "Idempotency-Key");
    if (v && jobopt_set(o, "idempotency_key", v, now, &why) != CV_OK) {
        api_reply_err(r, CV_ERR_INVALID, why, "Idempotency-Key");
        goto out;
    }
    /* Conveyor-Job-Id: the id the API named in an unknown-outcome reply, sent
     * back with the retry. Only single-job routes take one. */
    v = api_header(r, API_JOB_ID_HEADER);
    if (v && !single) {
        api_reply_err(r, CV_ERR_INVALID, API_JOB_ID_HEADER " applies to single jobs only",
                      API_JOB_ID_HEADER);
        goto out;
    }
    if (v && jobopt_set(o, "job_id", v, now, &why) != CV_OK) {
        api_reply_err(r, CV_ERR_INVALID, API_JOB_ID_HEADER " must be a UUID", API_JOB_ID_HEADER);
        goto out;
    }
    jobopt_set(o, "traceparent", api_header(r, "traceparent"), now, &why);
    if (!o->traceparent[0])
        job_traceparent_new(o->traceparent);
    memcpy(r->trace_id, o->traceparent + 3, 32);  /* "00-<trace>-..." */
    r->trace_id[32] = '\0';
    rc = 0;
out:
    evhttp_clear_headers(&q);
    return rc;
}

struct job *api_job_make_or_reply(struct req *r, const struct jobtype *t, const struct jobopt *o,
                                  const char *idem, const cJSON *node, const char *raw,
                                  size_t rawlen, int64_t now, const char *where)
{
    struct job *j = NULL;
    const char *field = NULL, *why = NULL;
    if (jobopt_make(r->t->cfg, t, o, idem, r->key ? r->key->name : "", node, raw, rawlen, now,
                    &j, &field, &why) == CV_OK) {
        j->bounded = 1;   /* a client's job: its type's max_queued applies */
        return j;
    }
    char f[128];
    snprintf(f, sizeof(f), "%s%s%.64s", where ? where : "", where && field ? "." : "",
             field ? field : "");
    if (!f[0])
        snprintf(f, sizeof(f), "body");
    api_reply_err(r, CV_ERR_INVALID, why, f);
    return NULL;
}

/* ==== POST /v1/jobs/{type} ===================================================== */

void api_reply_published(struct req *r, enum api_pub_outcome o, const char *id,
                         const char *id_field)
{
    if (o != API_PUB_NEW && o != API_PUB_DUP) {
        if (o != API_PUB_FULL)
            snprintf(r->id, sizeof(r->id), "%s", id);
        api_reply_pub_failure(r, o, "job", id);
        return;
    }
    snprintf(r->id, sizeof(r->id), "%s", id);
    if (o == API_PUB_NEW)
        met_inc(r->t->g->met, r->t->idx, r->t->g->m_enqueued[r->type_idx]);
    struct sbuf b;
    sbuf_init(&b);
    sbuf_add(&b, "{", 1);
    api_json_str(&b, id_field, id, 1);
    api_json_str(&b, "type", r->type, 0);
    api_json_str(&b, "status", r->scheduled ? "scheduled" : "queued", 0);
    if (o == API_PUB_DUP)
        sbuf_adds(&b, ",\"duplicate\":true");
    sbuf_add(&b, "}", 1);
    char loc[64];
    snprintf(loc, sizeof(loc), "/v1/jobs/%s", id);
    api_add_header(r, "Location", loc);
    api_reply_json(r, 202, &b);
    sbuf_cleanup(&b);
}

static void on_published_one(void *arg, enum api_pub_outcome o, const char *id)
{
    struct req *r = arg;
    api_reply_published(r, o, id, "id");
    api_req_release(r);
}

void api_h_job_create(struct req *r)
{
    struct jobopt o;
    struct job *j = NULL;
    cJSON *root = NULL;
    /* the router checked the type and the key's scope (API_AUTH_PATH_TYPE) */
    if (api_require_json_or_reply(r) || api_opts_or_reply(r, 1, &o))
        goto out;
    root = api_parse_body_or_reply(r);
    if (!root)
        goto out;
    size_t len;
    const char *body = api_body(r, &len);
    int64_t now = clock_wall_ms();
    j = api_job_make_or_reply(r, jobtype_at(r->type_idx), &o, NULL, root, body, len, now, NULL);
    if (!j)
        goto out;
    r->scheduled = o.not_before_ms > now;
    api_req_hold(r);
    api_publish_one(r->t, j, on_published_one, r);
    j = NULL;
out:
    job_free(j);
    cJSON_Delete(root);
}

/* ==== POST /v1/jobs/{type}/batch ================================================ */

/* The batch went to Redis and no answer came: all or none of it is enqueued
 * (one script), and we cannot tell which. */
static void batch_unknown_reply(struct req *r)
{
    struct sbuf b, extra;
    sbuf_init(&b);
    sbuf_init(&extra);
    sbuf_adds(&extra, "\"ids\":[");
    for (size_t i = 0; i < r->batch_n; i++) {
        if (i)
            sbuf_add(&extra, ",", 1);
        sbuf_add_json_str(&extra, r->batch_ids[i]);
    }
    sbuf_add(&extra, "]", 1);
    api_err_json_extra(&b, API_CODE_OUTCOME_UNKNOWN,
                       r->batch_idem
                           ? "Redis did not answer in time: the batch may or may not have been "
                             "enqueued (all or none). Resend it with the same Idempotency-Key: "
                             "the resend enqueues it at most once."
                           : "Redis did not answer in time: the batch may or may not have been "
                             "enqueued (all or none); ids lists the ids it was given. Send "
                             "batches with an Idempotency-Key so that a resend enqueues at most "
                             "once.",
                       extra.p);
    api_reply_json(r, API_STATUS_OUTCOME_UNKNOWN, &b);
    sbuf_cleanup(&b);
    sbuf_cleanup(&extra);
}

static void on_published_batch(void *arg, enum cv_rc rc, const char *const *ids, const int *dup,
                               size_t n)
{
    struct req *r = arg;
    if (rc != CV_OK) {
        /* called before broker_publish returned: nothing left this process */
        if (r->pub_calling || rc == CV_ERR_BUSY)
            api_reply_err(r, rc, "could not enqueue the batch; nothing was enqueued; retry",
                          NULL);
        else if (rc == CV_ERR_UNAVAILABLE)
            api_reply_err(r, rc,
                          "the broker did not confirm the batch in time: it is recorded and "
                          "runs once the broker is back. Resend it with the same "
                          "Idempotency-Key: the resend never enqueues it twice",
                          NULL);
        else
            batch_unknown_reply(r);
        goto out;
    }
    /* backpressure refuses a type's jobs together: the batch is not enqueued */
    for (size_t i = 0; i < n; i++)
        if (dup[i] == 3) {
            api_reply_full(r, ids[i]);
            goto out;
        }
    struct sbuf b;
    sbuf_init(&b);
    size_t ndup = 0, nconflict = 0;
    sbuf_adds(&b, "{\"ids\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sbuf_add(&b, ",", 1);
        sbuf_add_json_str(&b, ids[i]);
        ndup += dup[i] == 1;
        nconflict += dup[i] == 2;   /* never for server-made ids; counted all the same */
    }
    sbuf_add(&b, "]", 1);
    api_json_str(&b, "status", r->scheduled ? "scheduled" : "queued", 0);
    if (ndup)
        api_json_i64(&b, "duplicates", (long long)ndup, 0);
    sbuf_add(&b, "}", 1);
    if (n > ndup + nconflict)
        met_add(r->t->g->met, r->t->idx, r->t->g->m_enqueued[r->type_idx],
                n - ndup - nconflict);
    api_reply_json(r, 202, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_job_batch(struct req *r)
{
    const struct cfg *cfg = r->t->cfg;
    struct jobopt o;
    struct job **jobs = NULL;
    size_t n = 0;
    cJSON *root = NULL;
    if (api_require_json_or_reply(r) || api_opts_or_reply(r, 0, &o))
        goto out;
    root = api_parse_body_or_reply(r);
    if (!root)
        goto out;
    if (!cJSON_IsArray(root)) {
        api_reply_err(r, CV_ERR_INVALID, "a batch is a JSON array of payloads", "body");
        goto out;
    }
    int count = cJSON_GetArraySize(root);
    if (count == 0) {
        api_reply_err(r, CV_ERR_INVALID, "empty batch", "body");
        goto out;
    }
    if (count > cfg->batch_max) {
        char msg[96];
        snprintf(msg, sizeof(msg), "batch of %d jobs; at most %d", count, cfg->batch_max);
        api_reply_err(r, CV_ERR_TOO_LARGE, msg, "body");
        goto out;
    }
    /* job i gets the key "<key>:<i>" so that a replayed batch maps job by job */
    char idem[JOB_IDEM_MAX + 16];
    if (o.idem[0] && strlen(o.idem) + 1 + (size_t)snprintf(idem, sizeof(idem), "%d", count - 1) >
                      JOB_IDEM_MAX) {
        api_reply_err(r, CV_ERR_INVALID, "Idempotency-Key too long for a batch of this size",
                      "Idempotency-Key");
        goto out;
    }
    jobs = xcalloc((size_t)count, sizeof(*jobs));
    int64_t now = clock_wall_ms();
    const cJSON *el;
    cJSON_ArrayForEach(el, root)
    {
        char where[24];
        snprintf(where, sizeof(where), "[%zu]", n);
        if (o.idem[0])
            snprintf(idem, sizeof(idem), "%s:%zu", o.idem, n);
        struct job *j = api_job_make_or_reply(r, jobtype_at(r->type_idx), &o,
                                              o.idem[0] ? idem : NULL, el, NULL, 0, now, where);
        if (!j)
            goto out;
        jobs[n++] = j;
    }
    r->scheduled = o.not_before_ms > now;
    r->batch_idem = o.idem[0] != 0;
    /* ids kept for an unknown-outcome reply (the jobs are freed below) */
    r->batch_ids = xmalloc(n * sizeof(*r->batch_ids));
    r->batch_n = n;
    for (size_t i = 0; i < n; i++)
        memcpy(r->batch_ids[i], jobs[i]->id, UUID_STR_LEN);
    api_req_hold(r);
    r->pub_calling = 1;
    broker_publish(r->t->broker, jobs, n, cfg->idempotency_ttl_s, on_published_batch, r);
    r->pub_calling = 0;
out:
    for (size_t i = 0; i < n; i++)
        job_free(jobs[i]);
    free(jobs);
    cJSON_Delete(root);
}

/* ==== GET /v1/jobs/{id} ========================================================= */

void api_json_job_status(struct sbuf *b, const struct job_status *st, size_t payload_max)
{
    sbuf_add(b, "{", 1);
    api_json_str(b, "id", st->id, 1);
    api_json_str(b, "type", st->type, 0);
    api_json_str(b, "status", job_state_str(st->state), 0);
    api_json_i64(b, "attempt", st->attempt, 0);
    api_json_i64(b, "max_attempts", st->max_attempts, 0);
    if (st->held)
        sbuf_adds(b, ",\"held\":true");
    api_json_time(b, "created_at", st->created_ms, 0);
    api_json_time(b, "updated_at", st->updated_ms, 0);
    api_json_time(b, "not_before", st->not_before_ms, 0);
    api_json_time(b, "started_at", st->started_ms, 0);
    api_json_time(b, "finished_at", st->finished_ms, 0);
    api_json_str_or_null(b, "last_error", st->last_error[0] ? st->last_error : NULL, 0);
    sbuf_adds(b, ",\"payload\":");
    size_t plen = st->payload ? strlen(st->payload) : 0;
    cJSON *check = NULL;
    if (!st->payload) {
        sbuf_adds(b, "null");
    } else if (plen > payload_max) {
        sbuf_adds(b, "null");
        api_json_i64(b, "payload_bytes", (long long)plen, 0);
    } else if ((check = json_parse(st->payload, plen)) != NULL) {
        sbuf_add(b, st->payload, plen);     /* stored JSON, verified: embed as is */
    } else {
        sbuf_add_json_str(b, st->payload);  /* not JSON (another producer): a string */
    }
    cJSON_Delete(check);
    sbuf_add(b, "}", 1);
}

static void on_status(void *arg, enum cv_rc rc, const struct job_status *st)
{
    struct req *r = arg;
    /* A job of a type the key may not use answers exactly like a job that
     * does not exist: a 403 would tell a prober that the id is real. The
     * operator scope sees every job here as it does in /v1/dead (the
     * dashboard's inspect and replay follow-up). */
    if (rc == CV_ERR_NOT_FOUND ||
        (rc == CV_OK && st && !auth_allows_type(r->key, st->type) &&
         !auth_allows(r->key, AUTH_SCOPE_OPERATOR))) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "no such job (or its status expired)", NULL);
    } else if (rc != CV_OK || !st) {
        api_reply_err(r, rc != CV_OK ? rc : CV_ERR_INTERNAL, "could not read the job", NULL);
    } else {
        struct sbuf b;
        sbuf_init(&b);
        api_json_job_status(&b, st, (size_t)r->t->cfg->body_max_bytes);
        api_reply_json(r, 200, &b);
        sbuf_cleanup(&b);
    }
    api_req_release(r);
}

void api_h_job_get(struct req *r)
{
    if (api_param_uuid_or_reply(r, "id"))
        return;
    api_req_hold(r);
    broker_get(r->t->broker, r->id, on_status, r);
}
