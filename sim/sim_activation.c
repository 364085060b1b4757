#include "sim_activation.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "sim.h"
#include "sim_table.h"
#include "uuid.h"

#define AMOUNT_MAX 24                    /* "123456789012345.123456" and the NUL */
#define ID_MAX 9000000000000000LL        /* ids must stay exact as JSON numbers */
#define ACTIVATIONS_PREFIX "/activations/"

enum rec_status { REC_ACTIVATED = 1, REC_DECLINED = 2 };

/* One recorded outcome, stored inline in the table under its transaction_id. */
struct act_rec {
    char activation_id[UUID_STR_LEN];    /* "" for a decline */
    char amount[AMOUNT_MAX];             /* "" when the call had none */
    uint8_t status;                      /* enum rec_status */
    int64_t user_id;
    int64_t offer_id;
    int64_t at_ms;                       /* wall clock: activated_at / declined_at */
};

struct sim_activation {
    struct sim_table *records;           /* transaction_id -> struct act_rec */
    int64_t *declines;                   /* sorted user ids */
    size_t ndeclines;
    struct sim_act_stats stats;
};

/* A validated POST /activate body. */
struct act_input {
    char txid[UUID_STR_LEN];             /* lower case */
    int64_t user_id;
    int64_t offer_id;
    char amount[AMOUNT_MAX];
};

/* ---- input ------------------------------------------------------------------ */

static void lower_uuid(const char *in, char out[UUID_STR_LEN])
{
    for (int i = 0; i < UUID_STR_LEN - 1; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[UUID_STR_LEN - 1] = '\0';
}

/* A decimal string: 1..15 digits, optionally '.' and 1..6 digits. */
static int amount_text_ok(const char *s)
{
    size_t i = 0, frac = 0;
    while (isdigit((unsigned char)s[i]))
        i++;
    if (i == 0 || i > 15)
        return 0;
    if (s[i] == '.') {
        i++;
        while (isdigit((unsigned char)s[i + frac]))
            frac++;
        if (frac == 0 || frac > 6)
            return 0;
        i += frac;
    }
    return s[i] == '\0';
}

/* amount is optional: a decimal string or a number >= 0, kept as text.
 * Numbers get at least two decimals ("12.5" -> "12.50"). */
static enum cv_rc parse_amount(const cJSON *root, char out[AMOUNT_MAX])
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "amount");
    out[0] = '\0';
    if (!it || cJSON_IsNull(it))
        return CV_OK;
    if (cJSON_IsString(it)) {
        if (!amount_text_ok(it->valuestring))
            return CV_ERR_INVALID;
        snprintf(out, AMOUNT_MAX, "%s", it->valuestring);
        return CV_OK;
    }
    if (!cJSON_IsNumber(it))
        return CV_ERR_INVALID;
    double d = it->valuedouble + 0.0;     /* + 0.0 turns -0 into 0 */
    if (!isfinite(d) || d < 0 || d >= 1e15)
        return CV_ERR_INVALID;
    int n = snprintf(out, AMOUNT_MAX, "%.6f", d);
    CV_ASSERT(n > 0 && n < AMOUNT_MAX);
    char *dot = strchr(out, '.');
    char *end = out + n;
    while (end > dot + 3 && end[-1] == '0')
        end--;
    *end = '\0';
    return CV_OK;
}

/* Validate the body and the Idempotency-Key header into in. On error returns
 * CV_ERR_INVALID with a message for the client in msg. */
static enum cv_rc parse_input(const cJSON *root, struct evhttp_request *req,
                              struct act_input *in, char *msg, size_t msglen)
{
    const char *field = "body", *txid = NULL;
    enum cv_rc rc = CV_ERR_INVALID;

    if (!cJSON_IsObject(root)) {
        snprintf(msg, msglen, "body: must be a JSON object");
        goto out;
    }
    if (json_get_str(root, "transaction_id", UUID_STR_LEN - 1, &txid, &field) != CV_OK ||
        !uuid_valid(txid)) {
        snprintf(msg, msglen, "transaction_id: required, must be a UUID");
        goto out;
    }
    lower_uuid(txid, in->txid);
    if (json_get_int64(root, "user_id", 1, ID_MAX, &in->user_id, &field) != CV_OK ||
        json_get_int64(root, "offer_id", 1, ID_MAX, &in->offer_id, &field) != CV_OK) {
        snprintf(msg, msglen, "%s: required, must be a positive integer", field);
        goto out;
    }
    if (parse_amount(root, in->amount) != CV_OK) {
        snprintf(msg, msglen, "amount: must be a decimal string or a number >= 0");
        goto out;
    }
    const char *key = evhttp_find_header(evhttp_request_get_input_headers(req),
                                         "Idempotency-Key");
    if (key && strcasecmp(key, in->txid) != 0) {
        snprintf(msg, msglen, "Idempotency-Key: must equal transaction_id");
        goto out;
    }
    rc = CV_OK;
out:
    return rc;
}

/* ---- records ------------------------------------------------------------------ */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int is_declined(const struct sim_activation *a, int64_t user_id)
{
    return a->ndeclines &&
           bsearch(&user_id, a->declines, a->ndeclines, sizeof(int64_t), cmp_i64) != NULL;
}

/* Write a record as JSON; a decline answering POST /activate also gets the
 * usual error object so clients that only look for "error" see it. */
static void put_record(struct evbuffer *out, const char *txid, const struct act_rec *r,
                       int with_error)
{
    char ts[CLOCK_RFC3339_LEN];
    clock_rfc3339(r->at_ms, ts);
    if (r->status == REC_ACTIVATED)
        evbuffer_add_printf(out, "{\"status\":\"ACTIVATED\",\"activation_id\":\"%s\",",
                            r->activation_id);
    else
        evbuffer_add_printf(out, "{\"status\":\"DECLINED\",");
    evbuffer_add_printf(out, "\"transaction_id\":\"%s\",\"user_id\":%lld,\"offer_id\":%lld,",
                        txid, (long long)r->user_id, (long long)r->offer_id);
    if (r->amount[0])
        evbuffer_add_printf(out, "\"amount\":\"%s\",", r->amount);
    else
        evbuffer_add_printf(out, "\"amount\":null,");
    if (r->status == REC_ACTIVATED) {
        evbuffer_add_printf(out, "\"activated_at\":\"%s\"}", ts);
    } else {
        evbuffer_add_printf(out, "\"declined_at\":\"%s\"", ts);
        if (with_error)
            evbuffer_add_printf(out, ",\"error\":{\"code\":\"declined\",\"message\":"
                                     "\"the user is not eligible for this offer\"}");
        evbuffer_add(out, "}", 1);
    }
}

/* The idempotent part of POST /activate: find or create the record for
 * in->txid and write the answer. Returns the HTTP status. */
static int record_or_replay(struct sim_activation *a, const struct act_input *in,
                            struct evhttp_request *req)
{
    int created;
    struct act_rec *r = sim_table_get_or_add(a->records, in->txid, UUID_STR_LEN - 1, &created);
    if (!r) {
        LOG_WARN("sim.activation.full", "records=%zu", sim_table_count(a->records));
        sim_put_error(req, "full", "the simulator holds too many activations; reset it");
        return 503;
    }
    if (!created) {
        a->stats.duplicates++;
    } else {
        r->user_id = in->user_id;
        r->offer_id = in->offer_id;
        r->at_ms = clock_wall_ms();
        memcpy(r->amount, in->amount, sizeof(r->amount));
        if (is_declined(a, in->user_id)) {
            r->status = REC_DECLINED;
            a->stats.declines++;
        } else {
            r->status = REC_ACTIVATED;
            uuid_v4(r->activation_id);
            a->stats.activations++;
        }
    }
    put_record(evhttp_request_get_output_buffer(req), in->txid, r, 1);
    return r->status == REC_ACTIVATED ? 200 : 422;
}

/* ---- handlers ---------------------------------------------------------------- */

static void h_activate(struct sim *s, const struct sim_call *c)
{
    struct sim_activation *a = s->act;
    struct evhttp_request *req = c->req;
    struct act_input in;
    cJSON *root = NULL;
    const char *body;
    size_t len;
    char msg[160];
    int status;

    a->stats.calls++;
    if (sim_body(c, &body, &len) != CV_OK) {
        status = 413;
        sim_put_error(req, cv_rc_str(CV_ERR_TOO_LARGE), "body: over 65536 bytes");
        goto answer;
    }
    root = json_parse(body, len);
    if (!root) {
        status = 400;
        sim_put_error(req, cv_rc_str(CV_ERR_INVALID), "body: not valid JSON");
        goto answer;
    }
    if (parse_input(root, req, &in, msg, sizeof(msg)) != CV_OK) {
        status = 400;
        sim_put_error(req, cv_rc_str(CV_ERR_INVALID), msg);
        goto answer;
    }
    switch (sim_faults_decide(&s->faults, &s->rng)) {
    case SIM_FAULT_TIMEOUT:
        a->stats.timeouts++;
        sim_pending_hold(&s->pending, req, c->start_us);
        goto out;
    case SIM_FAULT_FAIL_NEXT:
    case SIM_FAULT_ERROR:
        a->stats.errors++;
        status = s->faults.error_status;
        snprintf(msg, sizeof(msg), "injected fault: status %d", status);
        sim_put_error(req, "injected", msg);
        if (status == 429)
            evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        goto answer;
    case SIM_FAULT_NONE:
        break;
    }
    status = record_or_replay(a, &in, req);
answer:
    sim_pending_answer(&s->pending, req, status, sim_faults_delay_ms(&s->faults, &s->rng),
                       c->start_us);
out:
    cJSON_Delete(root);
}

static void h_get_activation(struct sim *s, const struct sim_call *c)
{
    const char *id = c->path + strlen(ACTIVATIONS_PREFIX);
    char txid[UUID_STR_LEN];
    if (!uuid_valid(id)) {
        sim_reply_error(c, 400, cv_rc_str(CV_ERR_INVALID), "transaction_id: must be a UUID");
        return;
    }
    lower_uuid(id, txid);
    const struct act_rec *r = sim_table_find(s->act->records, txid, UUID_STR_LEN - 1);
    if (!r) {
        sim_reply_error(c, 404, cv_rc_str(CV_ERR_NOT_FOUND), "no activation for this transaction");
        return;
    }
    put_record(evhttp_request_get_output_buffer(c->req), txid, r, 0);
    sim_reply(c, 200);
}

/* ---- API ---------------------------------------------------------------------- */

struct sim_activation *sim_activation_new(void)
{
    struct sim_activation *a = xcalloc(1, sizeof(*a));
    uint64_t seed;
    uuid_random_bytes(&seed, sizeof(seed));
    a->records = sim_table_new(sizeof(struct act_rec), SIM_ACT_RECORDS_MAX, seed);
    return a;
}

void sim_activation_free(struct sim_activation *a)
{
    if (!a)
        return;
    sim_table_free(a->records);
    free(a->declines);
    free(a);
}

void sim_activation_register(struct sim *s)
{
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/activate", 0, h_activate);
    sim_route_add(&s->router, EVHTTP_REQ_GET, ACTIVATIONS_PREFIX, 1, h_get_activation);
}

void sim_activation_reset(struct sim_activation *a)
{
    sim_table_clear(a->records);
    FREE_NULL(a->declines);
    a->ndeclines = 0;
    memset(&a->stats, 0, sizeof(a->stats));
}

const struct sim_act_stats *sim_activation_stats(const struct sim_activation *a)
{
    return &a->stats;
}

void sim_activation_set_declines(struct sim_activation *a, const int64_t *users, size_t n)
{
    CV_ASSERT(n <= SIM_ACT_DECLINES_MAX);
    FREE_NULL(a->declines);
    a->ndeclines = 0;
    if (n == 0)
        return;
    a->declines = xmalloc(n * sizeof(*users));
    memcpy(a->declines, users, n * sizeof(*users));
    qsort(a->declines, n, sizeof(*users), cmp_i64);
    size_t u = 1;                        /* drop repeats */
    for (size_t i = 1; i < n; i++)
        if (a->declines[i] != a->declines[u - 1])
            a->declines[u++] = a->declines[i];
    a->ndeclines = u;
}

size_t sim_activation_declines(const struct sim_activation *a, const int64_t **users)
{
    *users = a->declines;
    return a->ndeclines;
}
