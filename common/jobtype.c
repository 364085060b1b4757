/* jobtype.c - the table of job types and their payload validators (jobtype.h). */
#include "jobtype.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "job.h"
#include "uuid.h"

/* Ids of accounts and offers: JSON numbers are doubles, so the largest whole
 * number a client can send exactly is 2^53 - 1. */
#define ID_MAX 9007199254740991LL

/* The activation payload: user_id and offer_id, whole numbers > 0; the
 * canonical form adds transaction_id = the job id (a client's own
 * transaction_id is checked and then replaced: ids stay unique and
 * server-made, and the worker fences on it). */
static enum cv_rc activation_check(const cJSON *obj, const char *id, struct sbuf *out,
                                   const char **field, const char **why)
{
    static const char *const ids[] = { "user_id", "offer_id" };
    int64_t vals[2];
    for (int i = 0; i < 2; i++) {
        if (!cJSON_GetObjectItemCaseSensitive(obj, ids[i])) {
            *field = ids[i];
            *why = "is required";
            return CV_ERR_INVALID;
        }
        if (json_get_int64(obj, ids[i], 1, ID_MAX, &vals[i], field) != CV_OK) {
            *why = "must be a whole number > 0";
            return CV_ERR_INVALID;
        }
    }
    const cJSON *tx = cJSON_GetObjectItemCaseSensitive(obj, "transaction_id");
    if (tx && !cJSON_IsNull(tx) && !(cJSON_IsString(tx) && uuid_valid(tx->valuestring))) {
        *field = "transaction_id";
        *why = "must be a UUID";
        return CV_ERR_INVALID;
    }
    sbuf_adds(out, "{\"transaction_id\":");
    sbuf_add_json_str(out, id);
    sbuf_addf(out, ",\"user_id\":%lld,\"offer_id\":%lld}", (long long)vals[0],
              (long long)vals[1]);
    return CV_OK;
}

static const struct jobtype_field order_fields[] = {
    { "order_id", JTF_REF, 1 },
    { "carrier", JTF_NAME, 0 },
    { NULL, 0, 0 },
};
static const struct jobtype_field fetch_fields[] = {
    { "since", JTF_TIME, 0 },       /* start_update_date; default: the last run's */
    { "max_pages", JTF_INT, 0 },
    { NULL, 0, 0 },
};
static const struct jobtype_field track_fields[] = {
    { "carrier", JTF_NAME, 1 },
    { "order_id", JTF_REF, 1 },     /* our reference, sent with the shipment */
    { "status", JTF_CODE, 1 },
    { "event_at", JTF_TIME, 1 },
    { "seq", JTF_INT, 0 },
    { "tracking_number", JTF_REF, 0 },
    { "expedition_id", JTF_REF, 0 },
    { "webhook_id", JTF_TEXT, 0 },
    { "description", JTF_TEXT, 0 },
    { "terminal", JTF_INT, 0 },     /* 1: an EXCEPTION the carrier calls final */
    { NULL, 0, 0 },
};
static const struct jobtype_field poll_fields[] = {
    { "carrier", JTF_NAME, 0 },     /* default "tipsa": the schedule posts "{}" */
    { "since", JTF_TIME, 0 },
    { NULL, 0, 0 },
};
static const struct jobtype_field ml_fields[] = {
    { "resource", JTF_TEXT, 1 },
    { "topic", JTF_NAME, 1 },
    { "user_id", JTF_INT, 1 },
    { "application_id", JTF_INT, 0 },
    { "attempts", JTF_INT, 0 },
    { "sent", JTF_TIME, 0 },
    { "received", JTF_TIME, 0 },
    { NULL, 0, 0 },
};

/* Seed 004's retry rule for the order pipeline: 1, 2, 4, 8, 16 s, at most 3
 * attempts per operation. Activation retries for minutes (money: an unknown
 * outcome must be settled, not dropped). */
static const struct jobtype types[JT_N] = {
    [JT_NOOP] = { "noop", 0, 0, 0, 0, "key", NULL, NULL, NULL },
    [JT_ACTIVATION] = { "activation", JT_NEEDS_PG | JT_NEEDS_UPSTREAM | JT_HOLDS_EFFECTS, 8, 0,
                        60000, NULL, "activation", NULL, activation_check },
    [JT_ORDER_FETCH] = { "order-fetch", JT_NEEDS_PG | JT_NEEDS_UPSTREAM, 3, 1000, 16000, NULL,
                         "orders", fetch_fields, NULL },
    [JT_CARRIER_POST] = { "carrier-post", JT_NEEDS_PG | JT_NEEDS_UPSTREAM, 3, 1000, 16000,
                          "order_id", "orders", order_fields, NULL },
    [JT_TRACKING_EVENT] = { "tracking-event", JT_NEEDS_PG, 5, 1000, 16000, "order_id", "orders",
                            track_fields, NULL },
    [JT_TRACKING_POLL] = { "tracking-poll", JT_NEEDS_PG | JT_NEEDS_UPSTREAM, 3, 1000, 16000,
                           NULL, "orders", poll_fields, NULL },
    [JT_TRACKING_PUSH] = { "tracking-push", JT_NEEDS_PG | JT_NEEDS_UPSTREAM, 3, 1000, 16000,
                           "order_id", "orders", order_fields, NULL },
    [JT_ML_NOTIFICATION] = { "ml-notification", JT_NEEDS_PG | JT_NEEDS_UPSTREAM, 3, 1000, 16000,
                             NULL, "orders", ml_fields, NULL },
};

const struct jobtype *jobtype_at(int i)
{
    return i >= 0 && i < JT_N ? &types[i] : NULL;
}

const struct jobtype *jobtype_find(const char *name, size_t len)
{
    if (!job_type_valid(name, len))
        return NULL;
    for (int i = 0; i < JT_N; i++)
        if (strlen(types[i].name) == len && memcmp(types[i].name, name, len) == 0)
            return &types[i];
    return NULL;
}

int jobtype_index(const char *name)
{
    const struct jobtype *t = jobtype_find(name, strlen(name));
    return t ? (int)(t - types) : -1;
}

const char *jobtype_names(void)
{
    static char buf[256];
    if (!buf[0]) {
        size_t o = 0;
        for (int i = 0; i < JT_N; i++)
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", i ? ", " : "", types[i].name);
    }
    return buf;
}

/* kind: JTF_REF, JTF_NAME or JTF_CODE */
static int ref_valid(const char *s, size_t n, enum jobtype_kind kind)
{
    if (n == 0 || n > (kind == JTF_REF ? 64u : 32u))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (kind != JTF_NAME)
            ok = ok || (c >= 'A' && c <= 'Z');
        if (kind == JTF_REF)
            ok = ok || c == '.' || c == ':';
        if (!ok)
            return 0;
    }
    return 1;
}

static enum cv_rc field_check(const cJSON *obj, const struct jobtype_field *f, const char **why)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, f->name);
    if (!it || cJSON_IsNull(it)) {
        *why = "is required";
        return f->required ? CV_ERR_INVALID : CV_OK;
    }
    if (f->kind == JTF_INT) {
        int64_t v;
        const char *fld;
        *why = "must be a whole number >= 0";
        return json_get_int64(obj, f->name, 0, ID_MAX, &v, &fld);
    }
    if (!cJSON_IsString(it)) {
        *why = "must be a string";
        return CV_ERR_INVALID;
    }
    const char *s = it->valuestring;
    size_t n = strlen(s);
    int64_t ms;
    switch (f->kind) {
    case JTF_REF:
        *why = "must be 1..64 of A-Z a-z 0-9 . _ : -";
        return ref_valid(s, n, JTF_REF) ? CV_OK : CV_ERR_INVALID;
    case JTF_NAME:
        *why = "must be 1..32 of a-z 0-9 _ -";
        return ref_valid(s, n, JTF_NAME) ? CV_OK : CV_ERR_INVALID;
    case JTF_CODE:
        *why = "must be 1..32 of A-Z a-z 0-9 _ -";
        return ref_valid(s, n, JTF_CODE) ? CV_OK : CV_ERR_INVALID;
    case JTF_TIME:
        *why = "must be an RFC 3339 timestamp";
        return clock_parse_rfc3339(s, &ms) == 0 ? CV_OK : CV_ERR_INVALID;
    case JTF_TEXT:
    default:
        *why = "must be 1..512 bytes";
        return n >= 1 && n <= 512 ? CV_OK : CV_ERR_INVALID;
    }
}

enum cv_rc jobtype_check(const struct jobtype *t, const cJSON *node, const char *job_id,
                         struct sbuf *out, const char **field, const char **why)
{
    *field = NULL;
    if (!t->fields && !t->check) {
        *why = "payload must be a JSON object or array";
        return cJSON_IsObject(node) || cJSON_IsArray(node) ? CV_OK : CV_ERR_INVALID;
    }
    if (!cJSON_IsObject(node)) {
        *why = "payload must be a JSON object";
        return CV_ERR_INVALID;
    }
    for (const struct jobtype_field *f = t->fields; f && f->name; f++) {
        if (field_check(node, f, why) != CV_OK) {
            *field = f->name;
            return CV_ERR_INVALID;
        }
    }
    if (t->check) {
        enum cv_rc rc = t->check(node, job_id, out, field, why);
        if (rc != CV_OK)
            return rc;
        *field = NULL;
    }
    return CV_OK;
}

enum cv_rc jobtype_check_text(const struct jobtype *t, const char *payload, size_t len,
                              const char *job_id, struct sbuf *out, const char **field,
                              const char **why)
{
    cJSON *root = payload ? json_parse(payload, len) : NULL;
    enum cv_rc rc;
    if (!root) {
        *field = NULL;
        *why = "payload is not valid JSON";
        return CV_ERR_INVALID;
    }
    rc = jobtype_check(t, root, job_id, out, field, why);
    cJSON_Delete(root);
    return rc;
}

int jobtype_key(const struct jobtype *t, const cJSON *payload, const char *job_id, char *out,
                size_t cap)
{
    const cJSON *it = t->key_field && payload
                          ? cJSON_GetObjectItemCaseSensitive(payload, t->key_field)
                          : NULL;
    if (cJSON_IsString(it) && strlen(it->valuestring) < cap) {
        snprintf(out, cap, "%s", it->valuestring);
        return 0;
    }
    if (cJSON_IsNumber(it)) {
        snprintf(out, cap, "%.0f", it->valuedouble);
        return 0;
    }
    snprintf(out, cap, "%s", job_id);
    return t->key_field ? -1 : 0;
}
