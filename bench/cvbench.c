/* cvbench - the measuring half of `make bench` (bench/run.sh drives it).
 *
 *   cvbench fill TYPE N [PAYLOAD]     publish N jobs straight to the broker in batches of 1000
 *                                     (activation jobs get their own transaction ids)
 *   cvbench wait TYPE N TIMEOUT_S     wait until N jobs of TYPE ended; prints jobs/s
 *   cvbench latency URL KEY N RATE [B]
 *                                     POST N noop jobs through the API at RATE/s (open loop,
 *                                     up to 64 POSTs in flight; B > 1: B jobs per batch POST
 *                                     at RATE/B per second), wait for them, print the rate
 *                                     reached and p50/p99 submit->done latency (done: seen
 *                                     acked by polling the stream every ms, or finished_ms)
 *   cvbench raw N                     the bare Redis limits every figure is judged against:
 *                                     N pipelined XADDs (1000 per round trip), then N entries
 *                                     read back by XREADGROUP + XACK, 100 per call
 *
 * Reads redis.url from the usual config/env. Prints one "name value unit" line per figure. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "cfg.h"
#include "clock.h"
#include "jstore.h"
#include "log.h"
#include "mem.h"
#include "rds.h"

static struct cfg cfg;

static void on_pub(void *arg, enum cv_rc rc, const char *const *ids, const int *dup, size_t n)
{
    (void)ids;
    (void)dup;
    (void)n;
    *(enum cv_rc *)arg = rc;
}

static int fill(const char *type, long n, const char *payload)
{
    struct broker *b = broker_open(&cfg, NULL);
    if (!b)
        return 1;
    struct job *jobs[1000];
    int64_t t0 = clock_mono_us();
    for (long done = 0; done < n;) {
        size_t k = n - done > 1000 ? 1000 : (size_t)(n - done);
        for (size_t i = 0; i < k; i++) {
            jobs[i] = job_new(type);
            job_fresh_id(jobs[i]);  /* drawn here, published once */
            if (strcmp(type, "activation") == 0) {
                /* as the API builds them: transaction id = job id, users 1..100 */
                char p[160];
                int len = snprintf(p, sizeof(p),
                                   "{\"transaction_id\":\"%s\",\"user_id\":%ld,"
                                   "\"offer_id\":1}", jobs[i]->id, 1 + (done + (long)i) % 100);
                job_set_payload(jobs[i], p, (size_t)len);
            } else {
                job_set_payload(jobs[i], payload, strlen(payload));
            }
            jobs[i]->max_attempts = cfg_max_attempts(&cfg, type);
            jobs[i]->created_ms = clock_wall_ms();
            job_traceparent_new(jobs[i]->traceparent);
        }
        enum cv_rc rc = CV_ERR_INTERNAL;
        broker_publish(b, jobs, k, 60, on_pub, &rc);
        for (size_t i = 0; i < k; i++)
            job_free(jobs[i]);
        if (rc != CV_OK) {
            fprintf(stderr, "cvbench: publish failed: %s\n", cv_rc_str(rc));
            broker_close(b);
            return 1;
        }
        done += (long)k;
    }
    double s = (double)(clock_mono_us() - t0) / 1e6;
    printf("broker_publish_batch1000 %.0f jobs/s\n", (double)n / s);
    broker_close(b);
    return 0;
}

static long long ended(struct rds *r, const char *type)
{
    struct rds_reply *x = rds_cmdf(r, "HMGET cv:stats:%s succeeded failed dead", type);
    long long v = rds_reply_at_int(x, 0, 0) + rds_reply_at_int(x, 1, 0) +
                  rds_reply_at_int(x, 2, 0);
    rds_reply_free(x);
    return v;
}

static int wait_done(const char *type, long n, int timeout_s)
{
    struct rds *r = rds_connect(cfg.redis_url, 5000);
    if (!r)
        return 1;
    long long base = 0; /* counters are absolute: the caller starts from a clean Redis */
    int64_t t0 = clock_mono_us(), end = clock_mono_ms() + timeout_s * 1000LL;
    long long got = 0;
    int64_t first_us = 0;
    while (clock_mono_ms() < end) {
        got = ended(r, type) - base;
        if (got > 0 && !first_us)
            first_us = clock_mono_us();
        if (got >= n)
            break;
        usleep(2000);
    }
    /* timed from the first job that ended: a worker's start (a Kafka group's
     * join, seconds) is not part of the drain */
    double s = (double)(clock_mono_us() - (first_us ? first_us : t0)) / 1e6;
    rds_free(r);
    if (got < n) {
        fprintf(stderr, "cvbench: only %lld of %ld %s jobs ended in %d s\n", got, n, type,
                timeout_s);
        return 1;
    }
    printf("%s_drain %.0f jobs/s (%ld jobs in %.2f s)\n", type, (double)n / s, n, s);
    return 0;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

#define BATCH_MAX 200

struct body {
    char buf[64 + BATCH_MAX * 40];   /* {"ids":["<uuid>",...]} */
    size_t len;
};

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
    struct body *o = arg;
    size_t n = sz * nm;
    size_t k = n < sizeof(o->buf) - 1 - o->len ? n : sizeof(o->buf) - 1 - o->len;
    memcpy(o->buf + o->len, p, k);
    o->len += k;
    o->buf[o->len] = '\0';
    return n;
}

/* One POST in flight: its easy handle, the reply, the job it is for. */
struct post {
    CURL *c;
    long i, k;                  /* jobs i..i+k */
    struct body body;
};

#define POSTS_IN_FLIGHT 64

/* ---- when did a job end: the lean stream path writes nothing at success -----------
 * A job's latency runs from the moment its POST was handed to curl (the
 * client's clock, in microseconds) to the poll that saw it done. A watcher
 * polls (about every millisecond while jobs are out): it reads each newly
 * answered job's stream entry id (its status's field m), then the group's
 * last-delivered id and its pending entries; a job whose entry the group read
 * and no longer holds pending was acked, and is stamped done at that poll. So
 * a figure may be up to one poll (~1 ms) high, never low. Jobs whose status
 * has finished_ms (the Kafka transport writes it) are read from there, to
 * the millisecond, from the API's created_ms. */
struct wentry {
    unsigned long long ms, seq;
    int64_t done;               /* clock_mono_us() of the poll that saw it acked */
    int known;                  /* m read */
};

struct watch {
    struct wentry *e;           /* per job, as ids[] */
    long open;                  /* e[0..open) are all done */
    long asked;                 /* ids[0..asked) answered and their m asked */
};

static void split_id(const char *s, unsigned long long *ms, unsigned long long *seq)
{
    *ms = strtoull(s, NULL, 10);
    const char *d = strchr(s, '-');
    *seq = d ? strtoull(d + 1, NULL, 10) : 0;
}

static int id_le(unsigned long long am, unsigned long long as, unsigned long long bm,
                 unsigned long long bs)
{
    return am < bm || (am == bm && as <= bs);
}

/* One poll over jobs ids[0..answered) (answered in order: the caller passes
 * the count of the prefix that is). */
static void watch_poll(struct rds *r, struct watch *w, char (*ids)[UUID_STR_LEN], long answered)
{
    long from = w->asked;
    /* the entry id: in the status index for ids the API drew (jstore_lua.h) */
    char ix[128];
    for (long i = from; i < answered; i++) {
        if (jstore_ix_key("noop", ids[i], ix, sizeof(ix)) == 0)
            rds_appendf(r, "HGET %s %s", ix, ids[i]);
        else
            rds_appendf(r, "HGET cv:job:%s m", ids[i]);
    }
    for (long i = from; i < answered; i++) {
        struct rds_reply *x = rds_read(r);
        const char *m = rds_reply_str(x, NULL);
        if (m && *m) {
            split_id(m, &w->e[i].ms, &w->e[i].seq);
            w->e[i].known = 1;
        }
        rds_reply_free(x);
    }
    rds_appendf(r, "XINFO GROUPS cv:q:noop");
    rds_appendf(r, "XPENDING cv:q:noop cv - + 100000");
    w->asked = answered;
    struct rds_reply *g = rds_read(r), *p = rds_read(r);
    int64_t now = clock_mono_us();
    unsigned long long lm = 0, ls = 0;
    for (size_t i = 0; i < rds_reply_len(g); i++) {
        const struct rds_reply *gr = rds_reply_at(g, i);
        const char *name = NULL, *ld = NULL;
        for (size_t k = 0; k + 1 < rds_reply_len(gr); k += 2) {
            const char *f = rds_reply_at_str(gr, k);
            if (f && !strcmp(f, "name"))
                name = rds_reply_at_str(gr, k + 1);
            else if (f && !strcmp(f, "last-delivered-id"))
                ld = rds_reply_at_str(gr, k + 1);
        }
        if (name && ld && !strcmp(name, "cv"))
            split_id(ld, &lm, &ls);
    }
    size_t np = rds_reply_len(p);
    unsigned long long(*pend)[2] = xcalloc(np ? np : 1, sizeof(*pend));
    for (size_t i = 0; i < np; i++)
        split_id(rds_reply_at_str(rds_reply_at(p, i), 0), &pend[i][0], &pend[i][1]);
    for (long i = w->open; i < w->asked; i++) {
        struct wentry *we = &w->e[i];
        if (we->done || !we->known || !id_le(we->ms, we->seq, lm, ls))
            continue;
        size_t lo = 0, hi = np;             /* pending ids come sorted */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (id_le(pend[mid][0], pend[mid][1], we->ms, we->seq) &&
                !(pend[mid][0] == we->ms && pend[mid][1] == we->seq))
                lo = mid + 1;
            else
                hi = mid;
        }
        if (!(lo < np && pend[lo][0] == we->ms && pend[lo][1] == we->seq))
            we->done = now;
    }
    while (w->open < w->asked && w->e[w->open].done)
        w->open++;
    free(pend);
    rds_reply_free(g);
    rds_reply_free(p);
}

/* POST n noop jobs at rate per second, open loop: each is sent at its time
 * (t0 + i / rate) on one of up to POSTS_IN_FLIGHT connections, whatever the
 * answers to the earlier ones, so a slow answer does not lower the rate. */
/* The k ids of a reply, in order, into ids[0..k): 0, or -1 when it holds fewer. */
static int reply_ids(const char *body, long k, char (*ids)[UUID_STR_LEN])
{
    const char *q = strstr(body, k == 1 ? "\"id\":" : "\"ids\":[");
    for (long j = 0; j < k; j++) {
        q = q ? strchr(q + (j ? 38 : 5), '"') : NULL;
        if (!q || strlen(q) < 38 || q[37] != '"')
            return -1;
        memcpy(ids[j], q + 1, 36);
        ids[j][36] = '\0';
    }
    return 0;
}

static int latency(const char *url, const char *key, long n, long rate, long batch)
{
    CURLM *m = curl_multi_init();
    struct rds *r = rds_connect(cfg.redis_url, 5000);
    if (!m || !r)
        return 1;
    char (*ids)[UUID_STR_LEN] = xcalloc((size_t)n, UUID_STR_LEN);
    char auth[300], full[512];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    snprintf(full, sizeof(full), "%s/v1/jobs/noop%s", url, batch > 1 ? "/batch" : "");
    /* "[{},{},...]" of batch elements; a shorter last batch sends a prefix of it */
    char *bodies = xcalloc((size_t)batch * 3 + 2, 1);
    if (batch > 1) {
        for (long j = 0; j < batch; j++)
            strcat(bodies, j ? ",{}" : "[{}");
    } else {
        strcpy(bodies, "{}");
    }
    struct curl_slist *h = curl_slist_append(NULL, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    struct post *posts = xcalloc(POSTS_IN_FLIGHT, sizeof(*posts));
    struct post *freel[POSTS_IN_FLIGHT];
    int nfree = 0;
    for (int k = 0; k < POSTS_IN_FLIGHT; k++) {
        struct post *p = &posts[k];
        p->c = curl_easy_init();
        curl_easy_setopt(p->c, CURLOPT_URL, full);
        curl_easy_setopt(p->c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(p->c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(p->c, CURLOPT_WRITEDATA, &p->body);
        curl_easy_setopt(p->c, CURLOPT_PRIVATE, p);
        freel[nfree++] = p;
    }
    struct watch w = { .e = xcalloc((size_t)n, sizeof(struct wentry)) };
    long prefix = 0;                /* ids[0..prefix) are answered */
    char *got = xcalloc((size_t)n, 1);
    int64_t *sent_us = xcalloc((size_t)n, sizeof(*sent_us));
    int64_t t0 = clock_mono_us(), polled = 0;
    long sent = 0, answered = 0;
    int failed = 0;
    while (answered < n && !failed) {
        int64_t now = clock_mono_us();
        while (sent < n && nfree > 0 && t0 + sent * 1000000 / rate <= now) {
            struct post *p = freel[--nfree];
            p->i = sent;
            p->k = n - sent < batch ? n - sent : batch;
            sent += p->k;
            if (batch > 1) {
                /* the prefix of k elements, closed: "[{},{}" + "]" */
                char *b = xmalloc((size_t)p->k * 3 + 2);
                memcpy(b, bodies, (size_t)p->k * 3);
                b[p->k * 3] = ']';
                b[p->k * 3 + 1] = '\0';
                curl_easy_setopt(p->c, CURLOPT_COPYPOSTFIELDS, b);
                free(b);
            } else {
                curl_easy_setopt(p->c, CURLOPT_POSTFIELDS, bodies);
            }
            int64_t at = clock_mono_us();
            for (long j = 0; j < p->k; j++)
                sent_us[p->i + j] = at;
            p->body.len = 0;
            p->body.buf[0] = '\0';
            curl_multi_add_handle(m, p->c);
        }
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct post *p = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&p);
            if (msg->data.result != CURLE_OK || reply_ids(p->body.buf, p->k, ids + p->i)) {
                fprintf(stderr, "cvbench: POST failed: %s\n", p->body.buf);
                failed = 1;
            } else {
                memset(got + p->i, 1, (size_t)p->k);
            }
            curl_multi_remove_handle(m, p->c);
            freel[nfree++] = p;
            answered += p->k;
        }
        while (prefix < n && got[prefix])
            prefix++;
        if (clock_mono_us() - polled >= 1000) {
            watch_poll(r, &w, ids, prefix);
            polled = clock_mono_us();
        }
        int64_t next = sent < n ? t0 + sent * 1000000 / rate : now + 1000;
        int wait_ms = (int)((next - clock_mono_us()) / 1000);
        curl_multi_poll(m, NULL, 0, wait_ms < 0 ? 0 : wait_ms > 1 ? 1 : wait_ms, NULL);
    }
    double secs = (double)(clock_mono_us() - t0) / 1e6;
    for (int k = 0; k < POSTS_IN_FLIGHT; k++)
        curl_easy_cleanup(posts[k].c);
    free(posts);
    free(bodies);
    curl_multi_cleanup(m);
    curl_slist_free_all(h);
    if (failed)
        return 1;
    printf("submit_rate %.0f jobs/s\n", (double)n / secs);
    long long *lat = xcalloc((size_t)n, sizeof(*lat));     /* microseconds */
    int64_t end = clock_mono_ms() + 30000;
    long have = 0;
    while (have < n && clock_mono_ms() < end) {
        watch_poll(r, &w, ids, n);
        /* the Kafka transport writes finished_ms; the lean stream path does not */
        for (long i = have; i < n; i++)
            rds_appendf(r, "HMGET cv:job:%s created_ms finished_ms", ids[i]);
        long k = have;
        for (long i = have; i < n; i++) {
            struct rds_reply *x = rds_read(r);
            long long cr = rds_reply_at_int(x, 0, 0), fin = rds_reply_at_int(x, 1, 0);
            rds_reply_free(x);
            if (fin > 0 && i == k)
                lat[k++] = (fin - cr) * 1000;
        }
        if (k == have && w.open == n)
            break;                          /* every stream entry ended: read them below */
        have = k;
        if (have < n)
            usleep(1000);
    }
    if (have < n && w.open == n)
        for (have = 0; have < n; have++)
            lat[have] = w.e[have].done - sent_us[have];
    free(w.e);
    free(sent_us);
    free(got);
    if (have < n) {
        fprintf(stderr, "cvbench: %ld of %ld jobs seen finished\n", have, n);
        return 1;
    }
    qsort(lat, (size_t)n, sizeof(*lat), cmp_ll);
    printf("submit_to_done_p50 %.1f ms\nsubmit_to_done_p99 %.1f ms\n", (double)lat[n / 2] / 1e3,
           (double)lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1e3);
    free(lat);
    free(ids);
    rds_free(r);
    return 0;
}

/* ---- the bare Redis limits ------------------------------------------------------ */

#define RAW_STREAM "cvbench:raw"

static double raw_xadd(struct rds *r, long n)
{
    int64_t t0 = clock_mono_us();
    for (long done = 0; done < n;) {
        long k = n - done > 1000 ? 1000 : n - done;
        for (long i = 0; i < k; i++)
            rds_appendf(r, "XADD " RAW_STREAM " * id %ld", done + i);
        for (long i = 0; i < k; i++)
            rds_reply_free(rds_read(r));
        done += k;
    }
    return (double)n / ((double)(clock_mono_us() - t0) / 1e6);
}

static double raw_read_ack(struct rds *r, long n)
{
    rds_reply_free(rds_cmdf(r, "XGROUP CREATE " RAW_STREAM " g 0"));
    int64_t t0 = clock_mono_us();
    long got = 0;
    while (got < n) {
        struct rds_reply *x =
            rds_cmdf(r, "XREADGROUP GROUP g c COUNT 100 STREAMS " RAW_STREAM " >");
        const struct rds_reply *entries = rds_reply_at(rds_reply_at(x, 0), 1);
        size_t k = rds_reply_len(entries);
        if (k == 0) {
            rds_reply_free(x);
            break;
        }
        const char *argv[104] = { "XACK", RAW_STREAM, "g" };
        for (size_t i = 0; i < k; i++)
            argv[3 + i] = rds_reply_at_str(rds_reply_at(entries, i), 0);
        rds_reply_free(rds_cmd(r, (int)(3 + k), argv, NULL));
        rds_reply_free(x);
        got += (long)k;
    }
    return (double)got / ((double)(clock_mono_us() - t0) / 1e6);
}

static int raw(long n)
{
    struct rds *r = rds_connect(cfg.redis_url, 30000);
    if (!r)
        return 1;
    rds_reply_free(rds_cmdf(r, "DEL " RAW_STREAM));
    printf("raw_xadd_pipelined %.0f entries/s\n", raw_xadd(r, n));
    printf("raw_xreadgroup_xack_100 %.0f entries/s\n", raw_read_ack(r, n));
    rds_reply_free(rds_cmdf(r, "DEL " RAW_STREAM));
    rds_free(r);
    return 0;
}

int main(int argc, char **argv)
{
    log_init("bench", LOG_LVL_WARN);
    if (cfg_load(&cfg, NULL))
        return 2;
    log_min_level = LOG_LVL_WARN;
    if (argc >= 4 && !strcmp(argv[1], "fill"))
        return fill(argv[2], atol(argv[3]), argc > 4 ? argv[4] : "{}");
    if (argc >= 5 && !strcmp(argv[1], "wait"))
        return wait_done(argv[2], atol(argv[3]), atoi(argv[4]));
    if (argc >= 3 && !strcmp(argv[1], "raw"))
        return raw(atol(argv[2]));
    if (argc >= 6 && !strcmp(argv[1], "latency")) {
        long b = argc >= 7 ? atol(argv[6]) : 1;
        if (b < 1 || b > BATCH_MAX) {
            fprintf(stderr, "cvbench: a batch is 1..%d jobs\n", BATCH_MAX);
            return 2;
        }
        return latency(argv[2], argv[3], atol(argv[4]), atol(argv[5]), b);
    }
    fprintf(stderr, "usage: cvbench fill TYPE N [PAYLOAD] | wait TYPE N TIMEOUT_S | "
                    "latency URL KEY N RATE [B] | raw N\n");
    return 2;
}
