/* jstore.c - the job-status store in Redis (see jstore.h; keys and scripts in
 * jstore_lua.h). Moved out of rstream.c unchanged in behaviour, so that a
 * Kafka transport keeps status, dead letters, workers and counters in Redis too.
 *
 * Every call with a callback is written once, in callback style: on a sync
 * link the Redis round trip happens inline and the callback runs before
 * return; on an async link the same code runs from the libevent loop. */
#include "jstore.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "clock.h"
#include "jstore_lua.h"
#include "log.h"
#include "mem.h"
#include "rds.h"
#include "sbuf.h"

struct jstore {
    struct rds *sync;           /* borrowed: exactly one of sync and as */
    struct rds_async *as;
    const struct cfg *cfg;      /* borrowed: the types' max_queued */
    struct rds_script publish, start, settle, dead_retry, get;
    struct rds_script dead_list, dead_page, dead_purge, dead_expire, dead_unhold, lease, workers;
    struct rds_script counters;
};

static const char *const mode_arg[] = { [JSTORE_STREAMS] = "q", [JSTORE_EXTERNAL] = "k" };

static void num(char *buf, size_t n, long long v)
{
    snprintf(buf, n, "%lld", v);
}

static void copy_field(char *dst, size_t cap, const char *v)
{
    snprintf(dst, cap, "%s", v);
}

/* ---- hashes decoded from field tables ------------------------------------------ */

/* How a hash field's value lands in a struct. */
enum fkind {
    F_STR,      /* copied into a char[cap], truncated */
    F_INT,      /* atoi into an int */
    F_I64,      /* atoll into an int64_t */
    F_LL,       /* atoll into a long long */
    F_STATE,    /* job_state_parse into an enum job_state; unknown = queued */
    F_DUP,      /* a heap copy of the whole value (binary-safe length) into a char * */
    F_DUP_SET,  /* the same, but only when the value is not empty */
};

/* One row per field name we read: where it goes (offset into the struct) and
 * how (kind); cap is the size of an F_STR array. Fields not listed are skipped
 * (the hashes also hold fields only the scripts read: se, pr, worker). */
struct field {
    const char *name;
    enum fkind kind;
    size_t off;
    size_t cap;
};

#define STR_AT(T, m) F_STR, offsetof(T, m), sizeof(((T *)0)->m)
#define NUM_AT(kind, T, m) kind, offsetof(T, m), 0

static const struct field status_fields[] = {
    { "id", STR_AT(struct job_status, id) },
    { "type", STR_AT(struct job_status, type) },
    { "state", NUM_AT(F_STATE, struct job_status, state) },
    { "attempt", NUM_AT(F_INT, struct job_status, attempt) },
    { "max_attempts", NUM_AT(F_INT, struct job_status, max_attempts) },
    { "created_ms", NUM_AT(F_I64, struct job_status, created_ms) },
    { "updated_ms", NUM_AT(F_I64, struct job_status, updated_ms) },
    { "not_before_ms", NUM_AT(F_I64, struct job_status, not_before_ms) },
    { "started_ms", NUM_AT(F_I64, struct job_status, started_ms) },
    { "finished_ms", NUM_AT(F_I64, struct job_status, finished_ms) },
    { "epoch", NUM_AT(F_I64, struct job_status, epoch) },
    { "last_error", STR_AT(struct job_status, last_error) },
    { "tp", STR_AT(struct job_status, traceparent) },
    { "payload", NUM_AT(F_DUP, struct job_status, payload) },
    { "idem", NUM_AT(F_DUP_SET, struct job_status, idem_key) },
    { "held", NUM_AT(F_INT, struct job_status, held) },
};

static const struct field worker_fields[] = {
    { "name", STR_AT(struct worker_info, name) },
    { "host", STR_AT(struct worker_info, host) },
    { "types", STR_AT(struct worker_info, types) },
    { "pid", NUM_AT(F_INT, struct worker_info, pid) },
    { "concurrency", NUM_AT(F_INT, struct worker_info, concurrency) },
    { "started_ms", NUM_AT(F_I64, struct worker_info, started_ms) },
    { "last_seen_ms", NUM_AT(F_I64, struct worker_info, last_seen_ms) },
    { "processed", NUM_AT(F_LL, struct worker_info, processed) },
    { "recent", NUM_AT(F_LL, struct worker_info, recent) },
};

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

static const struct field *field_find(const struct field *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

/* Decode a flat HGETALL array into the struct at base, by the table t. A field
 * that appears twice (never, from our scripts) keeps its last value; an F_DUP
 * copy it replaces is freed. */
static void hash_decode(const struct rds_reply *h, const struct field *t, size_t nt, void *base)
{
    size_t n = rds_reply_len(h);
    for (size_t i = 0; i + 1 < n; i += 2) {
        const char *k = rds_reply_at_str(h, i);
        size_t vlen = 0;
        const char *v = rds_reply_str(rds_reply_at(h, i + 1), &vlen);
        const struct field *f = k && v ? field_find(t, nt, k) : NULL;
        if (!f)
            continue;
        char *at = (char *)base + f->off;
        switch (f->kind) {
        case F_STR:
            snprintf(at, f->cap, "%s", v);
            break;
        case F_INT:
            *(int *)at = atoi(v);
            break;
        case F_I64:
            *(int64_t *)at = atoll(v);
            break;
        case F_LL:
            *(long long *)at = atoll(v);
            break;
        case F_STATE: {
            int x = job_state_parse(v);
            *(enum job_state *)at = x < 0 ? JOB_STATE_QUEUED : (enum job_state)x;
            break;
        }
        case F_DUP_SET:
            if (!*v)
                break;
            /* fall through */
        case F_DUP:
            free(*(char **)at);
            *(char **)at = xstrndup(v, vlen);
            break;
        }
    }
}

int jstore_status_decode(const struct rds_reply *h, struct job_status *st)
{
    memset(st, 0, sizeof(*st));
    hash_decode(h, status_fields, NFIELDS(status_fields), st);
    if (!st->updated_ms) /* not written at publish: the job is as old as it was made */
        st->updated_ms = st->created_ms;
    return st->id[0] ? 0 : -1;
}

/* ---- shared by the transports: publish, start, settle, replay ------------------ */

struct pub_ctx {
    broker_publish_cb cb;
    void *arg;
    size_t n;
};

static void publish_done(const struct rds_reply *r, void *arg)
{
    struct pub_ctx *c = arg;
    enum cv_rc rc = rds_reply_rc(r, "publish");
    if (rc == CV_OK && rds_reply_len(r) != c->n * 2) {
        LOG_ERROR("broker.bad_reply", "op=publish");
        rc = CV_ERR_IO;
    }
    if (rc != CV_OK) {
        c->cb(c->arg, rc, NULL, NULL, 0);
        free(c);
        return;
    }
    const char **ids = xmalloc(sizeof(*ids) * c->n);
    int *dup = xmalloc(sizeof(*dup) * c->n);
    for (size_t i = 0; i < c->n; i++) {
        ids[i] = rds_reply_at_str(r, 2 * i);
        dup[i] = (int)rds_reply_at_int(r, 2 * i + 1, 0);   /* 0, 1 or 2: see the script */
    }
    c->cb(c->arg, CV_OK, ids, dup, c->n);
    free(ids);
    free(dup);
    free(c);
}

#define PUB_HEAD 4      /* the publish script's ARGV before the jobs */
#define PUB_FIELDS 9    /* per job in the publish script's ARGV */

/* How long a finished job's status stays (jobs.status_ttl_s): lean successes
 * get no TTL of their own unless a settle asks for another one (jstore_lua.h). */
static long long status_ttl(const struct jstore *js)
{
    return js->cfg && js->cfg->status_ttl_s > 0 ? js->cfg->status_ttl_s : 86400;
}

void jstore_publish(struct jstore *js, enum jstore_mode m, struct job *const *jobs,
                    const char *const *keys, size_t n, int idem_ttl_s, int64_t now,
                    broker_publish_cb cb, void *arg)
{
    size_t argc = PUB_HEAD + n * PUB_FIELDS;
    const char **argv = xmalloc(sizeof(*argv) * argc);
    size_t *lens = xmalloc(sizeof(*lens) * argc);
    size_t *env_at = xmalloc(sizeof(*env_at) * (n + 1));
    char (*nums)[24] = xmalloc(sizeof(*nums) * (PUB_HEAD - 1 + n * 2));
    num(nums[0], 24, now);
    num(nums[1], 24, idem_ttl_s);
    num(nums[2], 24, (long long)n);
    argv[0] = mode_arg[m];
    for (int i = 0; i < PUB_HEAD - 1; i++)
        argv[1 + i] = nums[i];
    for (int i = 0; i < PUB_HEAD; i++)
        lens[i] = strlen(argv[i]);
    /* every envelope in one buffer (JSTORE_LUA_ENV_FN's format: attempt 1,
     * epoch base 0), pointed at once it stops growing */
    struct sbuf env;
    sbuf_init(&env);
    for (size_t i = 0; i < n; i++) {
        const struct job *j = jobs[i];
        env_at[i] = env.len;
        sbuf_addf(&env, "%s 1 %d 0 %lld %s\n", j->id, j->max_attempts,
                  (long long)(j->created_ms ? j->created_ms : now), j->traceparent);
        if (j->payload)
            sbuf_add(&env, j->payload, j->payload_len);
        else
            sbuf_adds(&env, "{}");
    }
    env_at[n] = env.len;
    char (*jn)[24] = nums + PUB_HEAD - 1;   /* 2 numbers per job */
    for (size_t i = 0; i < n; i++) {
        const struct job *j = jobs[i];
        size_t b0 = PUB_HEAD + i * PUB_FIELDS;
        num(jn[i * 2], 24, j->not_before_ms);
        num(jn[i * 2 + 1], 24,
            j->bounded && js->cfg ? cfg_type(js->cfg, j->type)->max_queued : 0);
        argv[b0] = j->id;
        argv[b0 + 1] = j->type;
        argv[b0 + 2] = env.p + env_at[i];
        argv[b0 + 3] = jn[i * 2];
        argv[b0 + 4] = j->idem_key ? j->idem_key : "";
        argv[b0 + 5] = j->producer;
        argv[b0 + 6] = keys && keys[i] ? keys[i] : "";
        argv[b0 + 7] = jn[i * 2 + 1];
        argv[b0 + 8] = j->fresh_id ? "1" : "";
        for (size_t k = 0; k < PUB_FIELDS; k++)
            lens[b0 + k] = k == 2 ? env_at[i + 1] - env_at[i] : strlen(argv[b0 + k]);
    }
    struct pub_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    c->n = n;
    rds_either_eval(js->sync, js->as, &js->publish, publish_done, c, (int)argc, argv, lens);
    sbuf_cleanup(&env);
    free(env_at);
    free(argv);
    free(lens);
    free(nums);
}

enum cv_rc jstore_start(struct jstore *js, enum jstore_mode m, const char *consumer,
                        const char *type, struct jstore_delivery *d, size_t n,
                        struct job **out, size_t *nout)
{
    if (n == 0)
        return CV_OK;
    size_t argc = 5 + n * 3;
    const char **argv = xmalloc(sizeof(*argv) * argc);
    /* the produce counts, as text: external transports only (streams send "") */
    char (*kq)[24] = m == JSTORE_EXTERNAL ? xmalloc(n * sizeof(*kq)) : NULL;
    char now[24], cnt[24];
    num(now, sizeof(now), clock_wall_ms());
    num(cnt, sizeof(cnt), (long long)n);
    argv[0] = mode_arg[m];
    argv[1] = now;
    argv[2] = consumer;
    argv[3] = type;
    argv[4] = cnt;
    for (size_t i = 0; i < n; i++) {
        d[i].res = JSTORE_SKIP;
        if (kq)
            num(kq[i], sizeof(kq[i]), d[i].kq);
        argv[5 + i * 3] = d[i].msg_id;
        argv[6 + i * 3] = d[i].id;
        argv[7 + i * 3] = kq ? kq[i] : "";
    }
    struct rds_reply *r = rds_eval(js->sync, &js->start, 0, (int)argc, argv, NULL);
    free(argv);
    free(kq);
    enum cv_rc rc = rds_reply_rc(r, "start");
    if (rc == CV_OK && rds_reply_len(r) != n)
        rc = CV_ERR_IO;
    for (size_t i = 0; rc == CV_OK && i < n; i++) {
        const struct rds_reply *e = rds_reply_at(r, i);
        if (rds_reply_len(e) < 7) {
            const char *what = rds_reply_at_str(e, 2);
            if (what && !strcmp(what, "wait")) {
                d[i].res = JSTORE_WAIT;
                d[i].wait_until_ms = rds_reply_at_int(e, 3, 0);
            }
            continue; /* skip: the job already ended, is gone or the message is stale */
        }
        struct job *j = job_new(type);
        copy_field(j->msg_id, sizeof(j->msg_id), d[i].msg_id);
        copy_field(j->id, sizeof(j->id), rds_reply_at_str(e, 1));
        j->attempt = (int)rds_reply_at_int(e, 2, 1);
        j->max_attempts = (int)rds_reply_at_int(e, 3, 1);
        size_t plen = 0;
        const char *p = rds_reply_str(rds_reply_at(e, 4), &plen);
        job_set_payload(j, p ? p : "{}", p ? plen : 2);
        const char *tp = rds_reply_at_str(e, 5);
        copy_field(j->traceparent, sizeof(j->traceparent), tp ? tp : "");
        j->epoch = rds_reply_at_int(e, 6, 0);
        j->deliveries = rds_reply_at_int(e, 7, j->epoch);
        d[i].res = JSTORE_STARTED;
        out[(*nout)++] = j;
    }
    rds_reply_free(r);
    return rc;
}

int jstore_ix_key(const char *type, const char *id, char *out, size_t cap)
{
    if (!uuid_valid(id) || id[14] != '7')
        return -1;
    char hex[13];
    memcpy(hex, id, 8);
    memcpy(hex + 8, id + 9, 4);
    hex[12] = '\0';
    unsigned long long ms = strtoull(hex, NULL, 16);
    snprintf(out, cap, "cv:ix:%s:%llu", type, ms / JSTORE_IX_SPAN_MS);
    return 0;
}

struct job *jstore_entry_job(const char *type, const char *msg_id, const struct rds_reply *fields,
                             long long deliveries)
{
    /* one field j, or b when the job's status is in the index's bucket
     * (jstore_lua.h): "<id> <attempt> <max> <epoch base> <created_ms> <tp>\n<payload>" */
    const char *f = rds_reply_at_str(fields, 0);
    size_t len = 0;
    const char *v = rds_reply_str(rds_reply_at(fields, 1), &len);
    if (!f || (strcmp(f, "j") != 0 && strcmp(f, "b") != 0) || !v || deliveries < 1)
        return NULL;
    const char *nl = memchr(v, '\n', len);
    char head[JOB_TRACEPARENT_LEN + UUID_STR_LEN + 96];
    if (!nl || (size_t)(nl - v) >= sizeof(head))
        return NULL;
    memcpy(head, v, (size_t)(nl - v));
    head[nl - v] = '\0';
    char id[UUID_STR_LEN], tp[JOB_TRACEPARENT_LEN];
    long long attempt, max, base, created;
    tp[0] = '\0';
    if (sscanf(head, "%36s %lld %lld %lld %lld %55s", id, &attempt, &max, &base, &created, tp) <
        5)
        return NULL;
    struct job *j = job_new(type);
    copy_field(j->msg_id, sizeof(j->msg_id), msg_id);
    copy_field(j->id, sizeof(j->id), id);
    job_set_payload(j, nl + 1, len - (size_t)(nl + 1 - v));
    copy_field(j->traceparent, sizeof(j->traceparent), tp);
    j->attempt = (int)attempt;
    j->max_attempts = (int)max;
    j->created_ms = created;
    j->epoch = base + deliveries;
    j->deliveries = deliveries;
    j->lean = 1;
    return j;
}

static const char *outcome_str(enum broker_outcome o)
{
    switch (o) {
    case BROKER_ACK: return "ack";
    case BROKER_RETRY: return "retry";
    case BROKER_FAIL: return "fail";
    case BROKER_DEAD: return "dead";
    case BROKER_DEFER: return "defer";
    }
    return "dead";
}

#define SETTLE_FIELDS 13  /* per delivery but lean successes, in the settle script's ARGV */

/* 1 when stream entry id x ("<ms>-<seq>") comes before y. */
static int msgid_before(const char *x, const char *y)
{
    char *ex, *ey;
    unsigned long long xm = strtoull(x, &ex, 10), ym = strtoull(y, &ey, 10);
    if (xm != ym)
        return xm < ym;
    return strtoull(*ex == '-' ? ex + 1 : ex, NULL, 10) <
           strtoull(*ey == '-' ? ey + 1 : ey, NULL, 10);
}

/* Settle's ARGV (jstore_lua.h): the lean successes (3 strings each) grouped by
 * type, then the rest (SETTLE_FIELDS each). order[] says which job each reply
 * is for: the script answers in the order the deliveries were given. */
enum cv_rc jstore_settle(struct jstore *js, enum jstore_mode m, struct job *const *jobs,
                         struct broker_settle *st, size_t n, int status_ttl_s)
{
    if (n == 0)
        return CV_OK;
    /* the types of the batch, once: their retain bounds, and the groups of
     * lean successes */
    const char **ctype = xmalloc(sizeof(*ctype) * n);
    size_t ntype = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < ntype && strcmp(ctype[k], jobs[i]->type) != 0)
            k++;
        if (k == ntype)
            ctype[ntype++] = jobs[i]->type;
    }
    size_t ncaps = m == JSTORE_STREAMS ? ntype : 0;
    size_t argc = 7 + ncaps * 2 + ntype * 4 + n * SETTLE_FIELDS;
    const char **argv = xmalloc(sizeof(*argv) * argc);
    size_t *lens = xcalloc(argc, sizeof(*lens));
    size_t *order = xmalloc(sizeof(*order) * n);
    char (*nums)[24] = xmalloc(sizeof(*nums) * (6 + ncaps + ntype + n * 5));
    size_t a = 0, nn = 0, no = 0;
#define NUM(v) (num(nums[nn], 24, (long long)(v)), nums[nn++])
    argv[a++] = mode_arg[m];
    argv[a++] = NUM(clock_wall_ms());
    argv[a++] = NUM(status_ttl_s);
    /* lean successes keep no status TTL of their own unless the caller asks
     * for another one than jobs.status_ttl_s */
    argv[a++] = status_ttl_s != status_ttl(js) ? "1" : "0";
    argv[a++] = NUM(ncaps);
    for (size_t k = 0; k < ncaps; k++) {
        argv[a++] = ctype[k];
        argv[a++] = NUM(js->cfg ? cfg_type(js->cfg, ctype[k])->retain : 100000);
    }
    size_t at_ntypes = a++, groups = 0;
    for (size_t k = 0; k < ntype; k++) {
        size_t at = a, c = 0;
        const char *lo = NULL, *hi = NULL;
        a += 4;
        for (size_t i = 0; i < n; i++) {
            const struct job *j = jobs[i];
            if (!j->lean || st[i].outcome != BROKER_ACK || strcmp(j->type, ctype[k]) != 0)
                continue;
            if (!lo || msgid_before(j->msg_id, lo))
                lo = j->msg_id;
            if (!hi || msgid_before(hi, j->msg_id))
                hi = j->msg_id;
            argv[a++] = j->msg_id;
            argv[a++] = NUM(j->deliveries);
            argv[a++] = j->id;
            order[no++] = i;
            c++;
        }
        if (c == 0) {
            a -= 4;
            continue;
        }
        argv[at] = ctype[k];
        argv[at + 1] = NUM(c);
        argv[at + 2] = lo;
        argv[at + 3] = hi;
        groups++;
    }
    argv[at_ntypes] = NUM(groups);
    argv[a++] = NUM(n - no);
    for (size_t i = 0; i < n; i++) {
        const struct job *j = jobs[i];
        if (j->lean && st[i].outcome == BROKER_ACK)
            continue;
        /* a lean delivery that does not succeed writes its envelope into the
         * status (the promoter and a replay take it from there): the bytes
         * travel only then */
        int env = j->lean;
        size_t b0 = a;
        argv[a++] = j->id;
        argv[a++] = j->type;
        argv[a++] = j->msg_id;
        argv[a++] = NUM(j->epoch);
        argv[a++] = outcome_str(st[i].outcome);
        argv[a++] = NUM(st[i].delay_ms);
        argv[a++] = st[i].error ? st[i].error : "";
        argv[a++] = st[i].held ? "1" : "0";
        argv[a++] = j->lean ? NUM(j->deliveries) : "";
        argv[a++] = NUM(j->attempt);
        argv[a++] = NUM(j->max_attempts);
        argv[a++] = env && j->payload ? j->payload : "";
        argv[a++] = env ? j->traceparent : "";
        if (env && j->payload)
            lens[b0 + 11] = j->payload_len;
        order[no++] = i;
    }
#undef NUM
    for (size_t i = 0; i < a; i++)
        if (!lens[i])
            lens[i] = strlen(argv[i]);
    for (size_t i = 0; i < n; i++)
        st[i].fenced = 0;
    struct rds_reply *r = rds_eval(js->sync, &js->settle, 0, (int)a, argv, lens);
    enum cv_rc rc = rds_reply_rc(r, "settle");
    if (rc == CV_OK && rds_reply_len(r) != n)
        rc = CV_ERR_IO;
    for (size_t i = 0; rc == CV_OK && i < n; i++) {
        const char *v = rds_reply_at_str(r, i);
        st[order[i]].fenced = v && !strcmp(v, "fenced");
    }
    rds_reply_free(r);
    free(argv);
    free(lens);
    free(order);
    free(nums);
    free(ctype);
    return rc;
}

struct replay_ctx {
    jstore_replay_cb cb;
    void *arg;
};

static void dead_retry_done(const struct rds_reply *r, void *arg)
{
    struct replay_ctx *c = arg;
    enum cv_rc rc = rds_reply_rc(r, "dead_retry");
    const char *s = rc == CV_OK ? rds_reply_at_str(r, 0) : NULL;
    if (rc == CV_OK)
        rc = !s ? CV_ERR_IO
             : !strcmp(s, "ok") ? CV_OK
             : !strcmp(s, "not_found") ? CV_ERR_NOT_FOUND
                                       : CV_ERR_CONFLICT;
    if (rc == CV_OK)
        c->cb(c->arg, rc, rds_reply_at_str(r, 1), rds_reply_at_str(r, 2),
              rds_reply_at_int(r, 3, 0));
    else
        c->cb(c->arg, rc, NULL, NULL, 0);
    free(c);
}

void jstore_dead_retry(struct jstore *js, enum jstore_mode m, const char *id,
                       jstore_replay_cb cb, void *arg)
{
    char now[24];
    num(now, sizeof(now), clock_wall_ms());
    const char *argv[] = { mode_arg[m], id, now };
    struct replay_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    rds_either_eval(js->sync, js->as, &js->dead_retry, dead_retry_done, c, 3, argv, NULL);
}

/* ---- get ---------------------------------------------------------------------- */

struct get_ctx {
    broker_status_cb cb;
    void *arg;
};

static void get_done(const struct rds_reply *r, void *arg)
{
    struct get_ctx *c = arg;
    enum cv_rc rc = rds_reply_rc(r, "get");
    struct job_status st;
    memset(&st, 0, sizeof(st));
    if (rc == CV_OK && jstore_status_decode(r, &st))
        rc = CV_ERR_NOT_FOUND;
    c->cb(c->arg, rc, rc == CV_OK ? &st : NULL);
    job_status_cleanup(&st);
    free(c);
}

void jstore_get(struct jstore *js, const char *id, broker_status_cb cb, void *arg)
{
    char now[24];
    num(now, sizeof(now), clock_wall_ms());
    const char *argv[] = { id, now };
    struct get_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    rds_either_eval(js->sync, js->as, &js->get, get_done, c, 2, argv, NULL);
}

struct list_ctx {
    broker_list_cb cb;
    void *arg;
};

/* The status hashes r[from..n) decoded into a new array (free with
 * statuses_free); *k of them were well-formed. */
static struct job_status *statuses_decode(const struct rds_reply *r, size_t from, size_t n,
                                          size_t *k)
{
    struct job_status *st = xcalloc(n > from ? n - from : 1, sizeof(*st));
    *k = 0;
    for (size_t i = from; i < n; i++)
        if (jstore_status_decode(rds_reply_at(r, i), &st[*k]) == 0)
            (*k)++;
        else
            job_status_cleanup(&st[*k]);
    return st;
}

static void statuses_free(struct job_status *st, size_t k)
{
    for (size_t i = 0; i < k; i++)
        job_status_cleanup(&st[i]);
    free(st);
}

static void dead_list_done(const struct rds_reply *r, void *arg)
{
    struct list_ctx *c = arg;
    enum cv_rc rc = rds_reply_rc(r, "dead_list");
    size_t k;
    struct job_status *st = statuses_decode(r, 0, rc == CV_OK ? rds_reply_len(r) : 0, &k);
    c->cb(c->arg, rc, st, k);
    statuses_free(st, k);
    free(c);
}

void jstore_dead_list(struct jstore *js, const char *type, int limit, broker_list_cb cb,
                         void *arg)
{
    char lim[16];
    num(lim, sizeof(lim), limit > 0 ? limit : 100);
    const char *argv[] = { type ? type : "", lim };
    struct list_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    rds_either_eval(js->sync, js->as, &js->dead_list, dead_list_done, c, 2, argv, NULL);
}

struct page_ctx {
    broker_page_cb cb;
    void *arg;
};

/* The reply is {cursor, hash, hash, ...} (JSTORE_LUA_DEAD_PAGE). */
static void dead_page_done(const struct rds_reply *r, void *arg)
{
    struct page_ctx *c = arg;
    enum cv_rc rc = rds_reply_rc(r, "dead_page");
    size_t n = rc == CV_OK ? rds_reply_len(r) : 0, k;
    const char *cur = n > 0 ? rds_reply_at_str(r, 0) : NULL;
    char next[BROKER_CURSOR_LEN] = "";
    if (rc == CV_OK && (n == 0 || !cur || strlen(cur) >= sizeof(next))) {
        LOG_ERROR("broker.bad_reply", "op=dead_page");
        rc = CV_ERR_IO;
        n = 0;
    }
    if (cur && rc == CV_OK)
        copy_field(next, sizeof(next), cur);
    struct job_status *st = statuses_decode(r, 1, n, &k);
    c->cb(c->arg, rc, st, k, next);
    statuses_free(st, k);
    free(c);
}

void jstore_dead_page(struct jstore *js, const char *type, int64_t since_ms, const char *cursor,
                      int limit, broker_page_cb cb, void *arg)
{
    char lim[16], since[24] = "";
    num(lim, sizeof(lim), limit > 0 ? limit : 100);
    if (since_ms > 0)
        num(since, sizeof(since), (long long)since_ms * 1000);
    const char *argv[] = { type ? type : "", lim, cursor ? cursor : "", since };
    struct page_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    rds_either_eval(js->sync, js->as, &js->dead_page, dead_page_done, c, 4, argv, NULL);
}

struct purge_ctx {
    broker_purge_cb cb;
    void *arg;
};

static void dead_purge_done(const struct rds_reply *r, void *arg)
{
    struct purge_ctx *c = arg;
    enum cv_rc rc = rds_reply_rc(r, "dead_purge");
    const char *s = rc == CV_OK ? rds_reply_str(r, NULL) : NULL;
    enum broker_purge what = BROKER_PURGE_UNKNOWN;
    if (rc == CV_OK) {
        if (!s)
            rc = CV_ERR_IO;
        else if (!strcmp(s, "ok"))
            what = BROKER_PURGED;
        else if (!strcmp(s, "live"))
            what = BROKER_PURGE_LIVE;
        else if (!strcmp(s, "held"))
            what = BROKER_PURGE_HELD;
    }
    c->cb(c->arg, rc, what);
    free(c);
}

void jstore_dead_purge(struct jstore *js, const char *id, broker_purge_cb cb, void *arg)
{
    const char *argv[] = { id };
    struct purge_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    rds_either_eval(js->sync, js->as, &js->dead_purge, dead_purge_done, c, 1, argv, NULL);
}

struct workers_ctx {
    broker_workers_cb cb;
    void *arg;
};

static void workers_done(const struct rds_reply *r, void *arg)
{
    struct workers_ctx *c = arg;
    enum cv_rc rc = rds_reply_rc(r, "workers");
    size_t n = rc == CV_OK ? rds_reply_len(r) : 0;
    struct worker_info *w = xcalloc(n ? n : 1, sizeof(*w));
    for (size_t i = 0; i < n; i++)
        hash_decode(rds_reply_at(r, i), worker_fields, NFIELDS(worker_fields), &w[i]);
    c->cb(c->arg, rc, w, n);
    free(w);
    free(c);
}

void jstore_workers(struct jstore *js, int64_t alive_ms, broker_workers_cb cb, void *arg)
{
    char now[24], alive[24];
    num(now, sizeof(now), clock_wall_ms());
    num(alive, sizeof(alive), alive_ms);
    const char *argv[] = { now, alive };
    struct workers_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    rds_either_eval(js->sync, js->as, &js->workers, workers_done, c, 2, argv, NULL);
}

struct counters_ctx {
    broker_counters_cb cb;
    void *arg;
};

static void counters_done(const struct rds_reply *r, void *arg)
{
    struct counters_ctx *c = arg;
    enum cv_rc rc = rds_reply_rc(r, "counters");
    size_t n = rc == CV_OK ? rds_reply_len(r) : 0;
    struct type_counters *tc = xcalloc(n ? n : 1, sizeof(*tc));
    for (size_t i = 0; i < n; i++) {
        const struct rds_reply *e = rds_reply_at(r, i);
        const char *t = rds_reply_at_str(e, 0);
        copy_field(tc[i].type, sizeof(tc[i].type), t ? t : "");
        const struct rds_reply *h = rds_reply_at(e, 1);
        for (size_t k = 0; k + 1 < rds_reply_len(h); k += 2) {
            const char *f = rds_reply_at_str(h, k);
            long long v = rds_reply_at_int(h, k + 1, 0);
            for (int x = 0; f && x < BROKER_NCOUNTERS; x++)
                if (!strcmp(f, broker_counter_names[x]))
                    tc[i].n[x] = v;
            for (int x = 0; f && x < BROKER_NEVENTS; x++)
                if (!strcmp(f, broker_event_names[x]))
                    tc[i].ev[x] = v;
        }
    }
    c->cb(c->arg, rc, tc, n);
    free(tc);
    free(c);
}

void jstore_counters(struct jstore *js, broker_counters_cb cb, void *arg)
{
    struct counters_ctx *c = xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    rds_either_eval(js->sync, js->as, &js->counters, counters_done, c, 0, NULL, NULL);
}

enum cv_rc jstore_dead_expire(struct jstore *js, const char *type, int64_t retention_ms,
                                 size_t max, size_t *removed)
{
    char cutoff[32], mx[24];
    /* scores are ms * 1000 + a sequence: everything below cutoff ended before then */
    num(cutoff, sizeof(cutoff), (clock_wall_ms() - retention_ms) * 1000);
    num(mx, sizeof(mx), (long long)max);
    const char *argv[] = { type, cutoff, mx };
    long long v = 0;
    enum cv_rc rc = rds_eval_int(js->sync, &js->dead_expire, 3, argv, "dead_expire", &v);
    if (removed)
        *removed = (size_t)v;
    return rc;
}

enum cv_rc jstore_held_ids(struct jstore *js, size_t max, char (*ids)[UUID_STR_LEN],
                              size_t *n)
{
    *n = 0;
    char cnt[24];
    num(cnt, sizeof(cnt), (long long)max);
    const char *argv[] = { "SRANDMEMBER", "cv:held", cnt };
    struct rds_reply *r = rds_cmd(js->sync, 3, argv, NULL);
    enum cv_rc rc = rds_reply_rc(r, "held_ids");
    for (size_t i = 0; rc == CV_OK && i < rds_reply_len(r) && *n < max; i++) {
        const char *id = rds_reply_at_str(r, i);
        if (id && strlen(id) < UUID_STR_LEN)
            copy_field(ids[(*n)++], UUID_STR_LEN, id);
    }
    rds_reply_free(r);
    return rc;
}

enum cv_rc jstore_dead_unhold(struct jstore *js, const char *id)
{
    const char *argv[] = { id };
    return rds_eval_int(js->sync, &js->dead_unhold, 1, argv, "dead_unhold", NULL);
}

int jstore_lease(struct jstore *js, const char *name, const char *owner, int64_t ttl_ms)
{
    char ttl[24];
    num(ttl, sizeof(ttl), ttl_ms);
    const char *argv[] = { name, owner, ttl };
    long long v = 0;
    if (rds_eval_int(js->sync, &js->lease, 3, argv, "lease", &v) != CV_OK)
        return -1;
    return v == 1;
}

enum cv_rc jstore_heartbeat(struct jstore *js, const struct worker_info *w, int ttl_ms)
{
    char key[160], now[24], pid[16], conc[16], started[24], processed[24], recent[24], ttl[16];
    snprintf(key, sizeof(key), "cv:worker:%s", w->name);
    int64_t t = clock_wall_ms();
    num(now, sizeof(now), t);
    num(pid, sizeof(pid), w->pid);
    num(conc, sizeof(conc), w->concurrency);
    num(started, sizeof(started), w->started_ms);
    num(processed, sizeof(processed), w->processed);
    num(recent, sizeof(recent), w->recent);
    num(ttl, sizeof(ttl), ttl_ms);
    const char *hset[] = { "HSET", key, "name", w->name, "host", w->host, "types", w->types,
                           "pid", pid, "concurrency", conc, "started_ms", started,
                           "last_seen_ms", now, "processed", processed, "recent", recent };
    const char *expire[] = { "PEXPIRE", key, ttl };
    const char *zadd[] = { "ZADD", "cv:workers", now, w->name };
    enum cv_rc rc = CV_OK;
    if (rds_append(js->sync, (int)(sizeof(hset) / sizeof(hset[0])), hset, NULL) || rds_append(js->sync, 3, expire, NULL) ||
        rds_append(js->sync, 4, zadd, NULL))
        return CV_ERR_IO;
    for (int i = 0; i < 3; i++) {
        struct rds_reply *r = rds_read(js->sync);
        if (rds_reply_rc(r, "heartbeat") != CV_OK)
            rc = CV_ERR_IO;
        rds_reply_free(r);
    }
    return rc;
}

/* ---- new/free ------------------------------------------------------------- */

struct jstore *jstore_new(struct rds *sync, struct rds_async *as, const struct cfg *cfg)
{
    struct jstore *js = xcalloc(1, sizeof(*js));
    js->sync = sync;
    js->as = as;
    js->cfg = cfg;
    js->publish = (struct rds_script){ "publish", JSTORE_LUA_PUBLISH, "" };
    js->start = (struct rds_script){ "start", JSTORE_LUA_START, "" };
    js->settle = (struct rds_script){ "settle", JSTORE_LUA_SETTLE, "" };
    js->dead_retry = (struct rds_script){ "dead_retry", JSTORE_LUA_DEAD_RETRY, "" };
    js->get = (struct rds_script){ "get", JSTORE_LUA_GET, "" };
    js->dead_list = (struct rds_script){ "dead_list", JSTORE_LUA_DEAD_LIST, "" };
    js->dead_page = (struct rds_script){ "dead_page", JSTORE_LUA_DEAD_PAGE, "" };
    js->dead_purge = (struct rds_script){ "dead_purge", JSTORE_LUA_DEAD_PURGE, "" };
    js->dead_expire = (struct rds_script){ "dead_expire", JSTORE_LUA_DEAD_EXPIRE, "" };
    js->dead_unhold = (struct rds_script){ "dead_unhold", JSTORE_LUA_DEAD_UNHOLD, "" };
    js->lease = (struct rds_script){ "lease", JSTORE_LUA_LEASE, "" };
    js->workers = (struct rds_script){ "workers", JSTORE_LUA_WORKERS, "" };
    js->counters = (struct rds_script){ "counters", JSTORE_LUA_COUNTERS, "" };
    /* an async link loads each script on its first use (rds_async_eval) */
    struct rds_script *all[] = { &js->publish, &js->start, &js->settle, &js->dead_retry, &js->get,
                                 &js->dead_list, &js->dead_page, &js->dead_purge, &js->dead_expire,
                                 &js->dead_unhold, &js->lease, &js->workers, &js->counters };
    for (size_t i = 0; sync && js && i < sizeof(all) / sizeof(all[0]); i++)
        if (rds_script_load(sync, all[i]))
            FREE_NULL(js);
    return js;
}

void jstore_free(struct jstore *js)
{
    free(js);
}
