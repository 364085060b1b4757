/* chaos_load.c - `cv-chaos load`: submit a paced mix of jobs through the API and record every 202.
 *
 * Job i is due at i * seconds / jobs after the start, so the load spans the whole chaos
 * window. Each job is an activation (a random user 1..users and a random offer) or a noop
 * (50/50 unless --activation-pct), chosen by a PRNG seeded with --seed: the same seed gives
 * the same jobs. Every request carries Idempotency-Key chaos-<seed>-<i>. A request that gets
 * no answer, a 5xx or a 429 is sent again with the same key (backoff 200 ms doubling to 2 s)
 * for up to RETRY_WINDOW_MS: an earlier attempt that did enqueue then answers with its id as
 * a duplicate, so nothing is enqueued twice. Any other answer is a refusal and is counted.
 *
 * Each 202 appends one CHAOS_ACK_FMT line to --out at once (flushed per batch), so the file
 * holds exactly the jobs the API acknowledged, whatever happens later. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"
#include "clock.h"
#include "json.h"
#include "mem.h"
#include "uuid.h"

#define BATCH 64
#define PARALLEL 32
#define REQ_TIMEOUT_MS 10000
#define RETRY_WINDOW_MS 60000
#define RETRY_FIRST_MS 200
#define RETRY_MAX_MS 2000
#define SHOW_REFUSALS 5

enum lj_state { LJ_PLANNED, LJ_RETRY, LJ_ACKED, LJ_REFUSED };

/* One job of the plan. */
struct lj {
    int activation;            /* 1: activation, 0: noop */
    long long user, offer;
    enum lj_state state;
    int tries;
    int64_t first_ms, due_ms;  /* relative to the start */
};

struct load {
    const char *api, *key, *out_path;
    long long jobs, seconds, seed, users, pct;
    long long offers[64];
    int noffers;
    struct lj *plan;
    FILE *out;
    long long acked, refused, gave_up, retried, duplicates, nact;
    uint64_t rng;
};

/* splitmix64: small, seedable, good enough to spread users and offers. */
static uint64_t rnd(struct load *l)
{
    uint64_t z = (l->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int parse_offers(struct load *l, const char *s)
{
    char *copy = xstrdup(s), *save = NULL;
    int rc = 0;
    l->noffers = 0;
    for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save)) {
        if (l->noffers == (int)(sizeof(l->offers) / sizeof(l->offers[0])))
            rc = -1;
        else
            rc = chaos_int_arg("--offers", t, 1, 1LL << 52, &l->offers[l->noffers++]);
    }
    free(copy);
    return rc == 0 && l->noffers > 0 ? 0 : -1;
}

static int parse_args(struct load *l, int argc, char **argv)
{
    static const struct option opts[] = {
        { "api", required_argument, NULL, 'a' },     { "jobs", required_argument, NULL, 'j' },
        { "seconds", required_argument, NULL, 's' }, { "seed", required_argument, NULL, 'S' },
        { "users", required_argument, NULL, 'u' },   { "offers", required_argument, NULL, 'o' },
        { "out", required_argument, NULL, 'O' },
        { "activation-pct", required_argument, NULL, 'p' },
        { NULL, 0, NULL, 0 },
    };
    int ch, bad = 0;
    l->pct = 50;
    l->jobs = -1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'a': l->api = optarg; break;
        case 'j': bad |= chaos_int_arg("--jobs", optarg, 1, 10000000, &l->jobs); break;
        case 's': bad |= chaos_int_arg("--seconds", optarg, 1, 86400, &l->seconds); break;
        case 'S': bad |= chaos_int_arg("--seed", optarg, 0, 1LL << 62, &l->seed); break;
        case 'u': bad |= chaos_int_arg("--users", optarg, 1, 1000000, &l->users); break;
        case 'o':
            if (parse_offers(l, optarg)) {
                fprintf(stderr, "chaos: --offers: up to 64 ids, comma-separated\n");
                bad = 1;
            }
            break;
        case 'O': l->out_path = optarg; break;
        case 'p': bad |= chaos_int_arg("--activation-pct", optarg, 0, 100, &l->pct); break;
        default: bad = 1; break;
        }
    }
    l->key = getenv("CHAOS_API_KEY");
    if (!bad && (!l->api || l->jobs < 1 || l->seconds < 1 || l->users < 1 || !l->noffers ||
                 !l->out_path || !l->key || !*l->key)) {
        fprintf(stderr, "chaos load: --api, --jobs, --seconds, --users, --offers, --out and "
                        "CHAOS_API_KEY are required\n");
        bad = 1;
    }
    return bad ? -1 : 0;
}

static void make_plan(struct load *l)
{
    l->rng = (uint64_t)l->seed;
    l->plan = xcalloc((size_t)l->jobs, sizeof(*l->plan));
    for (long long i = 0; i < l->jobs; i++) {
        struct lj *j = &l->plan[i];
        j->activation = (long long)(rnd(l) % 100) < l->pct;
        if (j->activation) {
            j->user = 1 + (long long)(rnd(l) % (uint64_t)l->users);
            j->offer = l->offers[rnd(l) % (uint64_t)l->noffers];
            l->nact++;
        }
        j->due_ms = i * l->seconds * 1000 / l->jobs;
    }
}

/* The id the API gave: transaction_id for an activation, id for a noop. */
static int reply_id(const struct ch_req *r, int activation, char id[UUID_STR_LEN], int *dup)
{
    cJSON *root = json_parse(r->resp, r->resp_len);
    const char *v = NULL, *field;
    int rc = -1;
    if (root && json_get_str(root, activation ? "transaction_id" : "id", UUID_STR_LEN - 1, &v,
                             &field) == CV_OK && uuid_valid(v)) {
        snprintf(id, UUID_STR_LEN, "%s", v);
        *dup = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "duplicate"));
        rc = 0;
    }
    cJSON_Delete(root);
    return rc;
}

static void refuse(struct load *l, const struct ch_req *r, const char *why)
{
    if (l->refused++ < SHOW_REFUSALS)
        fprintf(stderr, "chaos load: refused (%s): HTTP %d %.200s%s\n", why, r->status, r->resp,
                r->err);
}

/* Decide what the answer to job i means. */
static void settle(struct load *l, long long i, const struct ch_req *r, int64_t now)
{
    struct lj *j = &l->plan[i];
    char id[UUID_STR_LEN];
    int dup = 0;
    if (r->status == 202) {
        if (reply_id(r, j->activation, id, &dup)) {
            j->state = LJ_REFUSED;
            refuse(l, r, "a 202 without an id");
            return;
        }
        j->state = LJ_ACKED;
        l->acked++;
        l->duplicates += dup;
        fprintf(l->out, CHAOS_ACK_FMT, id, j->activation ? "activation" : "noop", j->user,
                j->offer);
        return;
    }
    if (r->status == 0 || r->status >= 500 || r->status == 429) {
        if (now - j->first_ms >= RETRY_WINDOW_MS) {
            j->state = LJ_REFUSED;
            l->gave_up++;
            refuse(l, r, "gave up after retries");
            return;
        }
        int64_t back = RETRY_FIRST_MS << (j->tries < 5 ? j->tries - 1 : 4);
        j->state = LJ_RETRY;
        j->due_ms = now + (back > RETRY_MAX_MS ? RETRY_MAX_MS : back);
        l->retried++;
        return;
    }
    j->state = LJ_REFUSED;
    refuse(l, r, "client error");
}

/* Prepare request r for job i (strings kept in the caller's per-slot buffers). */
static void build(struct load *l, long long i, struct ch_req *r, char *url, char *body,
                  char *idem, const char **hdrs, char *auth)
{
    struct lj *j = &l->plan[i];
    memset(r, 0, sizeof(*r));
    if (j->activation) {
        snprintf(url, 512, "%s/api/v1/activation/", l->api);
        snprintf(body, 96, "{\"user_id\":%lld,\"offer_id\":%lld}", j->user, j->offer);
    } else {
        snprintf(url, 512, "%s/v1/jobs/noop", l->api);
        snprintf(body, 96, "{}");
    }
    snprintf(idem, 96, "Idempotency-Key: chaos-%lld-%lld", l->seed, i);
    hdrs[0] = auth;
    hdrs[1] = idem;
    hdrs[2] = NULL;
    r->method = "POST";
    r->url = url;
    r->body = body;
    r->headers = hdrs;
}

static void run(struct load *l)
{
    struct ch_http *h = ch_http_new(PARALLEL);
    struct ch_req reqs[BATCH];
    long long which[BATCH];
    static char urls[BATCH][512], bodies[BATCH][96], idems[BATCH][96];
    const char *hdrs[BATCH][3];
    char *auth = xasprintf("Authorization: Bearer %s", l->key);
    long long next = 0, finished = 0, waiting = 0;
    int64_t t0 = clock_mono_ms();
    memset(reqs, 0, sizeof(reqs));

    while (finished < l->jobs) {
        int64_t now = clock_mono_ms() - t0, wake = now + 20;
        int nb = 0;
        for (long long i = 0; waiting > 0 && i < next && nb < BATCH; i++) {
            if (l->plan[i].state != LJ_RETRY)
                continue;
            if (l->plan[i].due_ms <= now) {
                build(l, i, &reqs[nb], urls[nb], bodies[nb], idems[nb], hdrs[nb], auth);
                which[nb++] = i;
                waiting--;
            } else if (l->plan[i].due_ms < wake) {
                wake = l->plan[i].due_ms;
            }
        }
        while (next < l->jobs && nb < BATCH && l->plan[next].due_ms <= now) {
            l->plan[next].first_ms = now;
            build(l, next, &reqs[nb], urls[nb], bodies[nb], idems[nb], hdrs[nb], auth);
            which[nb++] = next++;
        }
        if (nb == 0) {
            if (next < l->jobs && l->plan[next].due_ms < wake)
                wake = l->plan[next].due_ms;
            chaos_sleep_ms(wake > now ? wake - now : 1);
            continue;
        }
        ch_http_run(h, reqs, (size_t)nb, REQ_TIMEOUT_MS);
        now = clock_mono_ms() - t0;
        for (int k = 0; k < nb; k++) {
            l->plan[which[k]].tries++;
            settle(l, which[k], &reqs[k], now);
            if (l->plan[which[k]].state == LJ_RETRY)
                waiting++;
            else
                finished++;
            ch_req_cleanup(&reqs[k]);
        }
        fflush(l->out);
    }
    printf("load: %lld jobs (%lld activation, %lld noop) in %.1f s: %lld acknowledged, "
           "%lld refused (%lld after %d s of retries); %lld requests sent again, "
           "%lld answered as duplicates\n",
           l->jobs, l->nact, l->jobs - l->nact, (double)(clock_mono_ms() - t0) / 1000.0, l->acked,
           l->refused, l->gave_up, RETRY_WINDOW_MS / 1000, l->retried, l->duplicates);
    free(auth);
    ch_http_free(h);
}

int chaos_load(int argc, char **argv)
{
    struct load l;
    int code = CHAOS_EXIT_USAGE;
    memset(&l, 0, sizeof(l));
    if (parse_args(&l, argc, argv))
        goto out;
    code = CHAOS_EXIT_FAIL;
    l.out = fopen(l.out_path, "w");
    if (!l.out) {
        perror(l.out_path);
        goto out;
    }
    make_plan(&l);
    run(&l);
    code = fclose(l.out) == 0 ? CHAOS_EXIT_OK : CHAOS_EXIT_FAIL;
    l.out = NULL;
out:
    if (l.out)
        fclose(l.out);
    free(l.plan);
    return code;
}
