/* h_activation.c - offer activation: debit, activate, refund on failure.
 *
 * Effects happen exactly once under at-least-once delivery:
 *  1. reserve (one PostgreSQL transaction for the whole batch): record the
 *     transaction and debit the account only when none is recorded yet and
 *     the balance covers the price; a redelivery finds the row and debits
 *     nothing.
 *  2. call the activation system with the transaction id as Idempotency-Key,
 *     so a repeated call returns the first outcome.
 *  3. finish (one transaction for the batch): SUCCESS and activate the user
 *     offer, or FAILED and refund, only while the row is still PROCESSING.
 * Every write in 1 and 3 carries the delivery's lease epoch: a worker whose
 * delivery was reclaimed by a newer one is fenced and changes nothing.
 * Redis (transaction:<uuid>) follows every transition. When the activation
 * system stays unreachable past the last attempt the job goes dead and the
 * money stays held (PROCESSING): the outcome is unknown, and a replay after
 * the outage settles it through the same idempotency key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "httpc.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "met.h"
#include "rds.h"
#include "sbuf.h"
#include "wrk.h"

struct act {
    char txn[UUID_STR_LEN];
    int64_t user_id, offer_id;
    int valid;
    char outcome[16];        /* from reserve, then from finish */
    char status[16];
    char amount[32];
    char error[JOB_ERROR_MAX];
    int finish;              /* 1 = needs finish */
    int ok;                  /* finish as success */
    int64_t started_us;
};

static const char RESERVE_SQL[] =
    "SELECT transaction_id::text, outcome, status, amount::text, error "
    "FROM cv_activation_reserve($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[])";
static const char FINISH_SQL[] =
    "SELECT transaction_id::text, outcome, status "
    "FROM cv_activation_finish($1::uuid[], $2::boolean[], $3::bigint[], $4::text[])";

static int parse(const struct job *j, struct act *a, const char **field)
{
    cJSON *root = json_parse(j->payload, j->payload_len);
    const char *txn = NULL;
    int rc = -1;
    *field = "payload";
    if (!cJSON_IsObject(root))
        goto out;
    if (json_get_str(root, "transaction_id", 36, &txn, field) != CV_OK || !uuid_valid(txn))
        goto out;
    if (json_get_int64(root, "user_id", 1, INT64_MAX, &a->user_id, field) != CV_OK ||
        json_get_int64(root, "offer_id", 1, INT64_MAX, &a->offer_id, field) != CV_OK)
        goto out;
    for (int i = 0; i < 36; i++)
        a->txn[i] = (char)(txn[i] >= 'A' && txn[i] <= 'F' ? txn[i] - 'A' + 'a' : txn[i]);
    a->txn[36] = '\0';
    a->valid = 1;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int h_activation_parse(const struct job *j, char txn[UUID_STR_LEN], int64_t *user_id,
                       int64_t *offer_id, const char **field)
{
    struct act a = { .valid = 0 };
    int rc = parse(j, &a, field);
    memcpy(txn, a.txn, UUID_STR_LEN);
    *user_id = a.user_id;
    *offer_id = a.offer_id;
    return rc;
}

/* Append one element to a PostgreSQL array literal, quoted and escaped. */
static void arr_add(struct sbuf *b, const char *v)
{
    sbuf_add(b, b->len > 1 ? "," : "", b->len > 1 ? 1 : 0);
    sbuf_add(b, "\"", 1);
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            sbuf_add(b, "\\", 1);
        sbuf_add(b, v, 1);
    }
    sbuf_add(b, "\"", 1);
}

static struct act *find(struct act *a, size_t n, const char *txn)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].valid && strcmp(a[i].txn, txn) == 0)
            return &a[i];
    return NULL;
}

static void copy(char *dst, size_t cap, const char *v)
{
    snprintf(dst, cap, "%s", v ? v : "");
}

/* Write the transaction hashes of the given acts in one pipeline. */
static enum cv_rc redis_follow(struct wrk_ctx *ctx, struct act *a, size_t n, const int *which,
                               int with_metrics)
{
    char now[CLOCK_RFC3339_LEN], ttl[16];
    clock_rfc3339(clock_wall_ms(), now);
    snprintf(ttl, sizeof(ttl), "%d", ctx->cfg->status_ttl_s);
    int sent = 0;
    int64_t t_us = clock_mono_us();
    for (size_t i = 0; i < n; i++) {
        if (!which[i])
            continue;
        char key[64], user[24], offer[24];
        snprintf(key, sizeof(key), "transaction:%s", a[i].txn);
        snprintf(user, sizeof(user), "%lld", (long long)a[i].user_id);
        snprintf(offer, sizeof(offer), "%lld", (long long)a[i].offer_id);
        const char *argv[] = { "HSET", key, "transaction_id", a[i].txn, "user_id", user,
                               "offer_id", offer, "status", a[i].status, "updated_at", now,
                               "amount", a[i].amount, "error", a[i].error };
        const char *exp[] = { "EXPIRE", key, ttl };
        if (rds_append(ctx->rds, 16, argv, NULL) || rds_append(ctx->rds, 3, exp, NULL))
            goto io;
        sent += 2;
        if (with_metrics) {
            char bucket[64], sumf[64], countf[64], sum[32];
            double secs = (double)(t_us - a[i].started_us) / 1e6;
            met_bucket_field(a[i].status, secs, bucket);
            snprintf(sumf, sizeof(sumf), "%s:sum", a[i].status);
            snprintf(countf, sizeof(countf), "%s:count", a[i].status);
            snprintf(sum, sizeof(sum), "%.6f", secs);
            const char *inc[] = { "HINCRBY", MET_ACTIVATION_HIST_KEY, bucket, "1" };
            const char *incf[] = { "HINCRBYFLOAT", MET_ACTIVATION_HIST_KEY, sumf, sum };
            const char *incc[] = { "HINCRBY", MET_ACTIVATION_HIST_KEY, countf, "1" };
            if (rds_append(ctx->rds, 4, inc, NULL) || rds_append(ctx->rds, 4, incf, NULL) ||
                rds_append(ctx->rds, 4, incc, NULL))
                goto io;
            sent += 3;
        }
    }
    enum cv_rc rc = CV_OK;
    for (int i = 0; i < sent; i++) {
        struct rds_reply *r = rds_read(ctx->rds);
        if (!r || rds_reply_type(r) == RDS_ERR)
            rc = CV_ERR_IO;
        rds_reply_free(r);
    }
    return rc;
io:
    /* drain what was queued so the connection stays in step */
    for (int i = 0; i < sent; i++)
        rds_reply_free(rds_read(ctx->rds));
    return CV_ERR_IO;
}

/* Four PostgreSQL array literals, one element per job of the batch: the
 * parameters of both batch functions. */
struct cols {
    struct sbuf c[4];
    size_t n;
};

static void cols_init(struct cols *c)
{
    for (int i = 0; i < 4; i++) {
        sbuf_init(&c->c[i]);
        sbuf_adds(&c->c[i], "{");
    }
    c->n = 0;
}

static void cols_row(struct cols *c, const char *v0, const char *v1, const char *v2,
                     const char *v3)
{
    const char *v[4] = { v0, v1, v2, v3 };
    for (int i = 0; i < 4; i++)
        arr_add(&c->c[i], v[i]);
    c->n++;
}

static void cols_cleanup(struct cols *c)
{
    for (int i = 0; i < 4; i++)
        sbuf_cleanup(&c->c[i]);
}

/* Run one batch function and copy each returned row (transaction_id,
 * outcome, status[, amount, error]) onto its act. */
static enum cv_rc run_batch(struct wrk_ctx *ctx, const char *sql, struct cols *c,
                            struct act *a, size_t n)
{
    enum cv_rc rc = CV_OK;
    if (c->n == 0)
        return rc;
    for (int i = 0; i < 4; i++)
        sbuf_adds(&c->c[i], "}");
    const char *params[] = { c->c[0].p, c->c[1].p, c->c[2].p, c->c[3].p };
    struct db_res *r = db_exec(ctx->db, sql, 4, params, &rc);
    for (int row = 0; r && row < db_res_rows(r); row++) {
        struct act *x = find(a, n, db_res_get(r, row, 0));
        if (!x)
            continue;
        copy(x->outcome, sizeof(x->outcome), db_res_get(r, row, 1));
        copy(x->status, sizeof(x->status), db_res_get(r, row, 2));
        if (db_res_cols(r) >= 5) {
            copy(x->amount, sizeof(x->amount), db_res_get(r, row, 3));
            copy(x->error, sizeof(x->error), db_res_get(r, row, 4));
        }
    }
    db_res_free(r);
    return rc;
}

static enum cv_rc reserve(struct wrk_ctx *ctx, struct job **jobs, struct act *a, size_t n)
{
    struct cols c;
    cols_init(&c);
    for (size_t i = 0; i < n; i++) {
        if (!a[i].valid)
            continue;
        char user[24], offer[24], epoch[24];
        snprintf(user, sizeof(user), "%lld", (long long)a[i].user_id);
        snprintf(offer, sizeof(offer), "%lld", (long long)a[i].offer_id);
        snprintf(epoch, sizeof(epoch), "%lld", (long long)jobs[i]->epoch);
        cols_row(&c, a[i].txn, user, offer, epoch);
    }
    enum cv_rc rc = run_batch(ctx, RESERVE_SQL, &c, a, n);
    cols_cleanup(&c);
    return rc;
}

static enum cv_rc finish(struct wrk_ctx *ctx, struct job **jobs, struct act *a, size_t n)
{
    struct cols c;
    cols_init(&c);
    for (size_t i = 0; i < n; i++) {
        if (!a[i].finish)
            continue;
        char epoch[24];
        snprintf(epoch, sizeof(epoch), "%lld", (long long)jobs[i]->epoch);
        cols_row(&c, a[i].txn, a[i].ok ? "t" : "f", epoch, a[i].ok ? "" : a[i].error);
    }
    enum cv_rc rc = run_batch(ctx, FINISH_SQL, &c, a, n);
    cols_cleanup(&c);
    return rc;
}

static void call_activation_system(struct wrk_ctx *ctx, struct job **jobs, struct act *a,
                                   size_t n, struct wrk_result *res)
{
    struct httpc_req *reqs = xcalloc(n, sizeof(*reqs));
    char **bodies = xcalloc(n, sizeof(*bodies));
    size_t *map = xmalloc(sizeof(*map) * n);
    size_t m = 0;
    char *url = xasprintf("%s/activate", ctx->cfg->activation_url);
    for (size_t i = 0; i < n; i++) {
        if (!a[i].valid || strcmp(a[i].outcome, "proceed") != 0)
            continue;
        bodies[m] = xasprintf("{\"transaction_id\":\"%s\",\"user_id\":%lld,\"offer_id\":%lld,"
                              "\"amount\":\"%s\"}",
                              a[i].txn, (long long)a[i].user_id, (long long)a[i].offer_id,
                              a[i].amount);
        reqs[m].method = "POST";
        reqs[m].url = url;
        reqs[m].body = bodies[m];
        reqs[m].body_len = strlen(bodies[m]);
        reqs[m].idempotency_key = a[i].txn;
        reqs[m].traceparent = jobs[i]->traceparent;
        map[m++] = i;
    }
    if (m > 0)
        httpc_run(ctx->http, reqs, m, ctx->cfg->http_timeout_ms);
    for (size_t k = 0; k < m; k++) {
        struct act *x = &a[map[k]];
        if (reqs[k].rc == CV_OK) {
            x->finish = 1;
            x->ok = 1;
        } else if (reqs[k].rc == CV_ERR_PERMANENT) {
            x->finish = 1;
            x->ok = 0;
            snprintf(x->error, sizeof(x->error), "activation declined: %s", reqs[k].error);
        } else {
            wrk_fail(&res[map[k]], CV_ERR_TRANSIENT, "activation system: %s", reqs[k].error);
        }
        httpc_req_cleanup(&reqs[k]);
        free(bodies[k]);
    }
    free(url);
    free(reqs);
    free(bodies);
    free(map);
}

void h_activation(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res)
{
    struct act *a = xcalloc(n, sizeof(*a));
    int *which = xcalloc(n, sizeof(*which));
    int64_t t0 = clock_mono_us();
    size_t valid = 0;
    for (size_t i = 0; i < n; i++) {
        const char *field;
        a[i].started_us = t0;
        res[i].rc = CV_ERR_INTERNAL;
        if (parse(jobs[i], &a[i], &field)) {
            wrk_fail(&res[i], CV_ERR_INVALID, "invalid payload: %s", field);
            continue;
        }
        valid++;
    }
    if (valid == 0)
        goto out;
    if (db_ensure(ctx->db) || reserve(ctx, jobs, a, n) != CV_OK) {
        for (size_t i = 0; i < n; i++)
            if (a[i].valid)
                wrk_fail(&res[i], CV_ERR_IO, "database unavailable (reserve)");
        goto out;
    }
    /* Redis follows: PROCESSING for the ones going on, final for the rest. */
    for (size_t i = 0; i < n; i++) {
        which[i] = 0;
        if (!a[i].valid)
            continue;
        if (!a[i].outcome[0]) {
            wrk_fail(&res[i], CV_ERR_INTERNAL, "reserve returned no row");
        } else if (!strcmp(a[i].outcome, "fenced")) {
            res[i].rc = CV_ERR_FENCED;
        } else {
            which[i] = 1;
            if (!strcmp(a[i].outcome, "rejected"))
                wrk_fail(&res[i], CV_ERR_PERMANENT, "%s", a[i].error);
            else if (!strcmp(a[i].outcome, "done"))
                res[i].rc = CV_OK;
        }
    }
    if (redis_follow(ctx, a, n, which, 0) != CV_OK)
        LOG_WARN("activation.redis_follow_failed", "stage=reserve");

    call_activation_system(ctx, jobs, a, n, res);

    if (finish(ctx, jobs, a, n) != CV_OK) {
        for (size_t i = 0; i < n; i++)
            if (a[i].finish)
                wrk_fail(&res[i], CV_ERR_IO, "database unavailable (finish)");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        which[i] = 0;
        if (!a[i].finish)
            continue;
        if (!strcmp(a[i].outcome, "fenced")) {
            res[i].rc = CV_ERR_FENCED;
        } else if (!strcmp(a[i].outcome, "success") || !strcmp(a[i].outcome, "done")) {
            res[i].rc = CV_OK;
            which[i] = 1;
        } else if (!strcmp(a[i].outcome, "failed")) {
            wrk_fail(&res[i], CV_ERR_PERMANENT, "%s", a[i].error);
            which[i] = 1;
        } else {
            wrk_fail(&res[i], CV_ERR_INTERNAL, "finish: %s", a[i].outcome);
        }
    }
    /* The final state must reach Redis: if it does not, retry the job; the
     * next delivery finds the row final ('done') and writes it again. */
    if (redis_follow(ctx, a, n, which, 1) != CV_OK) {
        for (size_t i = 0; i < n; i++)
            if (which[i])
                wrk_fail(&res[i], CV_ERR_IO, "redis unavailable (status)");
    }
out:
    free(a);
    free(which);
}
