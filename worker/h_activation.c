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
 * Redis (transaction:<uuid>) follows every transition through one script that
 * checks the same epoch (a stalled worker cannot write PROCESSING over a newer
 * delivery's SUCCESS).
 *
 * A delivery that finds the row already decided (a redelivery, a replay)
 * settles the job as the row says: SUCCESS acks, FAILED fails with the row's
 * error. The job's status never contradicts its transaction.
 *
 * What the activation system's answer means (verdict()): 2xx activated; 400,
 * 413 and 422 say it refused the request (declined: FAILED and refunded);
 * everything else leaves the outcome unknown (timeouts, 5xx, 408, 429, and
 * 401/403/404/409, which speak of our credentials, our URL or a concurrent
 * duplicate, not of the activation): retried with backoff for minutes. When it
 * stays unknown past the last attempt the job goes dead and held (PROCESSING,
 * money debited); the reconciler (wrk_reconcile.c) replays it later, and the
 * same idempotency key settles it.
 *
 * PostgreSQL down: CV_ERR_UNAVAILABLE, so the jobs wait without spending an
 * attempt and the worker pauses (wrk_loop.c). */
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
#include "ups.h"
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

/* The payload, checked against its job: the transaction id must be the job's
 * id (the API makes them equal), or two jobs sharing one transaction would
 * fence each other forever. */
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
    if (strcmp(a->txn, j->id) != 0) {
        *field = "transaction_id (must be the job id)";
        goto out;
    }
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

/* transaction:<id> follows the row, fenced like it: a write carries the
 * delivery's epoch and is dropped when the hash already holds a newer one.
 * ARGV: ttl, n, then n x (id epoch status user offer updated_at amount error). */
static struct rds_script follow_script = {
    "txn_follow",
    "local ttl, n = ARGV[1], tonumber(ARGV[2])\n"
    "local wrote = 0\n"
    "for i = 0, n - 1 do\n"
    "  local b = 2 + i * 8\n"
    "  local k = 'transaction:' .. ARGV[b+1]\n"
    "  local cur = tonumber(redis.call('HGET', k, 'lease_epoch') or '0')\n"
    "  if cur <= tonumber(ARGV[b+2]) then\n"
    "    redis.call('HSET', k, 'transaction_id', ARGV[b+1], 'lease_epoch', ARGV[b+2],\n"
    "      'status', ARGV[b+3], 'user_id', ARGV[b+4], 'offer_id', ARGV[b+5],\n"
    "      'updated_at', ARGV[b+6], 'amount', ARGV[b+7], 'error', ARGV[b+8])\n"
    "    redis.call('EXPIRE', k, ttl)\n"
    "    wrote = wrote + 1\n"
    "  end\n"
    "end\n"
    "return wrote\n",
    ""
};

/* Write the transaction hashes of the marked acts (one script call) and, with
 * with_metrics, their latency histogram, in one pipeline. */
static enum cv_rc redis_follow(struct wrk_ctx *ctx, struct job **jobs, struct act *a, size_t n,
                               const int *which, int with_metrics)
{
    char now[CLOCK_RFC3339_LEN], ttl[16], cnt[24];
    clock_rfc3339(clock_wall_ms(), now);
    snprintf(ttl, sizeof(ttl), "%d", ctx->cfg->status_ttl_s);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += which[i] != 0;
    if (m == 0)
        return CV_OK;
    const char **argv = xcalloc(2 + m * 8, sizeof(*argv));
    char (*nums)[24] = xcalloc(m * 3, sizeof(*nums));
    snprintf(cnt, sizeof(cnt), "%zu", m);
    argv[0] = ttl;
    argv[1] = cnt;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!which[i])
            continue;
        const char **v = argv + 2 + k * 8;
        snprintf(nums[3 * k], 24, "%lld", (long long)jobs[i]->epoch);
        snprintf(nums[3 * k + 1], 24, "%lld", (long long)a[i].user_id);
        snprintf(nums[3 * k + 2], 24, "%lld", (long long)a[i].offer_id);
        v[0] = a[i].txn;
        v[1] = nums[3 * k];
        v[2] = a[i].status;
        v[3] = nums[3 * k + 1];
        v[4] = nums[3 * k + 2];
        v[5] = now;
        v[6] = a[i].amount;
        v[7] = a[i].error;
        k++;
    }
    int sent = 0;
    if (rds_append_eval(ctx->rds, &follow_script, 0, (int)(2 + m * 8), argv, NULL))
        goto io;
    sent++;
    int64_t t_us = clock_mono_us();
    for (size_t i = 0; with_metrics && i < n; i++) {
        if (!which[i])
            continue;
        char bucket[64], sumf[64], countf[64], sum[32];
        double secs = (double)(t_us - a[i].started_us) / 1e6;
        const char *hk = met_hists[MET_H_ACTIVATION].key;
        met_bucket_field(&met_hists[MET_H_ACTIVATION], a[i].status, secs, bucket);
        snprintf(sumf, sizeof(sumf), "%s:sum", a[i].status);
        snprintf(countf, sizeof(countf), "%s:count", a[i].status);
        snprintf(sum, sizeof(sum), "%.6f", secs);
        const char *inc[] = { "HINCRBY", hk, bucket, "1" };
        const char *incf[] = { "HINCRBYFLOAT", hk, sumf, sum };
        const char *incc[] = { "HINCRBY", hk, countf, "1" };
        if (rds_append(ctx->rds, 4, inc, NULL) || rds_append(ctx->rds, 4, incf, NULL) ||
            rds_append(ctx->rds, 4, incc, NULL))
            goto io;
        sent += 3;
    }
    enum cv_rc rc = CV_OK;
    int noscript = 0;
    for (int i = 0; i < sent; i++) {
        struct rds_reply *r = rds_read(ctx->rds);
        if (i == 0 && r && rds_reply_type(r) == RDS_ERR &&
            strncmp(rds_reply_str(r, NULL), "NOSCRIPT", 8) == 0)
            noscript = 1;     /* first use on this link, or the scripts were flushed */
        else if (!r || rds_reply_type(r) == RDS_ERR)
            rc = CV_ERR_IO;
        rds_reply_free(r);
    }
    if (noscript && rc == CV_OK) {
        /* rds_eval sends the script itself when Redis does not know it */
        struct rds_reply *r = rds_eval(ctx->rds, &follow_script, 0, (int)(2 + m * 8), argv, NULL);
        if (!r || rds_reply_type(r) == RDS_ERR)
            rc = CV_ERR_IO;
        rds_reply_free(r);
    }
    free(argv);
    free(nums);
    return rc;
io:
    /* drain what was queued so the connection stays in step */
    for (int i = 0; i < sent; i++)
        rds_reply_free(rds_read(ctx->rds));
    free(argv);
    free(nums);
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

/* What an answer of the activation system says about the money: the one
 * table of it (see the header comment). */
enum verdict { V_ACTIVATED, V_DECLINED, V_UNKNOWN };

static enum verdict verdict(const struct httpc_req *q)
{
    if (q->rc == CV_OK)
        return V_ACTIVATED;
    switch (q->status) {
    case 400: /* the request was refused as it stands: nothing was activated */
    case 413:
    case 422: /* a decline */
        return V_DECLINED;
    default:  /* no answer, 5xx, 408, 429, 401/403/404 (ours), 409 (a duplicate in flight) */
        return V_UNKNOWN;
    }
}

static void call_activation_system(struct wrk_ctx *ctx, struct job **jobs, struct act *a,
                                   size_t n, struct wrk_result *res)
{
    struct httpc_req *reqs = xcalloc(n, sizeof(*reqs));
    char **bodies = xcalloc(n, sizeof(*bodies));
    size_t *map = xmalloc(sizeof(*map) * n);
    size_t m = 0;
    char *url = xasprintf("%s/activate", ctx->cfg->ups[CFG_UPS_ACTIVATION].url);
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
    if (m > 0) {
        httpc_run(ctx->http, reqs, m, ctx->cfg->ups[CFG_UPS_ACTIVATION].timeout_ms);
        /* the Upstreams page's figures (last call, latencies), as ups_run keeps them */
        ups_observe(wrk_ups(ctx, CFG_UPS_ACTIVATION), reqs, m);
    }
    for (size_t k = 0; k < m; k++) {
        struct act *x = &a[map[k]];
        switch (verdict(&reqs[k])) {
        case V_ACTIVATED:
            x->finish = 1;
            x->ok = 1;
            break;
        case V_DECLINED:
            x->finish = 1;
            x->ok = 0;
            snprintf(x->error, sizeof(x->error), "activation declined: %s", reqs[k].error);
            break;
        case V_UNKNOWN:
            /* money debited, outcome unknown: held until a later attempt knows */
            wrk_fail(&res[map[k]], CV_ERR_TRANSIENT, "activation system: %s%s", reqs[k].error,
                     reqs[k].status >= 400 && reqs[k].status < 500 ? " (not a decline)" : "");
            res[map[k]].held = 1;
            break;
        }
        httpc_req_cleanup(&reqs[k]);
        free(bodies[k]);
    }
    free(url);
    free(reqs);
    free(bodies);
    free(map);
}

/* The row was decided before this delivery: the job ends as the row says. */
static void settle_as_row(const struct act *a, struct wrk_result *res)
{
    if (!strcmp(a->status, "SUCCESS"))
        res->rc = CV_OK;
    else
        wrk_fail(res, CV_ERR_PERMANENT, "%s", a->error[0] ? a->error : "activation failed");
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
    enum cv_rc drc = db_ensure(ctx->db) ? CV_ERR_IO : reserve(ctx, jobs, a, n);
    if (drc != CV_OK) {
        /* nothing happened: the batch's transaction rolled back */
        for (size_t i = 0; i < n; i++)
            if (a[i].valid)
                wrk_fail(&res[i], drc == CV_ERR_IO ? CV_ERR_UNAVAILABLE : drc,
                         "database unavailable (reserve)");
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
                settle_as_row(&a[i], &res[i]);
        }
    }
    if (redis_follow(ctx, jobs, a, n, which, 0) != CV_OK)
        LOG_WARN("activation.redis_follow_failed", "stage=reserve");

    call_activation_system(ctx, jobs, a, n, res);

    drc = finish(ctx, jobs, a, n);
    if (drc != CV_OK) {
        /* the activation system answered but the row is still PROCESSING: the
         * next delivery asks again with the same key and gets the same answer */
        for (size_t i = 0; i < n; i++) {
            if (!a[i].finish)
                continue;
            wrk_fail(&res[i], drc == CV_ERR_IO ? CV_ERR_UNAVAILABLE : drc,
                     "database unavailable (finish)");
            res[i].held = 1;
        }
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        which[i] = 0;
        if (!a[i].finish)
            continue;
        if (!strcmp(a[i].outcome, "fenced")) {
            res[i].rc = CV_ERR_FENCED;
        } else if (!strcmp(a[i].outcome, "success")) {
            res[i].rc = CV_OK;
            which[i] = 1;
        } else if (!strcmp(a[i].outcome, "done")) {
            settle_as_row(&a[i], &res[i]);
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
    if (redis_follow(ctx, jobs, a, n, which, 1) != CV_OK) {
        for (size_t i = 0; i < n; i++)
            if (which[i])
                wrk_fail(&res[i], CV_ERR_IO, "redis unavailable (status)");
    }
out:
    free(a);
    free(which);
}
