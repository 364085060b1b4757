/* h_tracking_poll.c - read a carrier's change feed (carriers that do not push
 * tracking: TIPSA) and apply every state change to its order (seed 004, step
 * 4, "tracking intake, two ways").
 *
 * Payload {carrier?, since?}: carrier defaults to "tipsa" (the schedule,
 * jobs.types.tracking-poll.every_s, posts "{}"); since (RFC 3339) wins over
 * the high-water mark.
 *
 *   1. since = the payload's, else the high-water mark (Redis
 *      cv:track:hwm:<carrier>, epoch ms) minus an overlap of 60 s (a change
 *      the carrier records late, with an earlier time, is still read), else
 *      24 hours ago;
 *   2. read every page of changes after since (at most FEED_PAGES_MAX pages a
 *      run: the rest is read by the next run, from the new mark);
 *   3. per order, in (event_at, seq) order: claim it (ord_claim: two jobs
 *      never apply effects to one order at once; the claim fences a reclaimed
 *      delivery), apply each change with ostore_track (it keeps changes for
 *      orders not yet AWAITING_TRACKING; each change carries an id made of
 *      its albarán, code and time, so a change read again is a duplicate and
 *      the overlap does no harm), release. An order held
 *      by another job (BUSY) is left for the next poll: the new mark is
 *      pulled back to its first change so that it is read again;
 *   4. an order that reached TRACKED gets a tracking-push follow-up, keyed
 *      "<order>:push:<attempts>" like h_tracking_event.c's;
 *   5. store the new mark: the latest change applied, never behind the old
 *      mark unless an order was left for later.
 * The mark is stored only when the whole run worked: a failed run reads the
 * same changes again (ostore_track makes that harmless). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "clock.h"
#include "log.h"
#include "ord.h"
#include "rds.h"

#define DEFAULT_CARRIER "tipsa"
#define OVERLAP_MS 60000
#define FIRST_LOOKBACK_MS (24LL * 3600 * 1000)
#define FEED_PAGES_MAX 100
#define HWM_KEY_MAX 96

struct ev {
    struct car_event e;
    int64_t at_ms;
};

/* By order, then (event_at, seq): the order cv_order_track applies them in. */
static int cmp_ev(const void *a, const void *b)
{
    const struct ev *x = a, *y = b;
    int c = strcmp(x->e.order_id, y->e.order_id);
    if (c)
        return c;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return x->e.seq < y->e.seq ? -1 : x->e.seq > y->e.seq;
}

static void hwm_key(const char *carrier, char *out, size_t cap)
{
    snprintf(out, cap, "cv:track:hwm:%s", carrier);
}

/* The stored mark in epoch ms: 1 and *ms, 0 when none, -1 when Redis failed. */
static int hwm_get(struct wrk_ctx *ctx, const char *carrier, int64_t *ms)
{
    char key[HWM_KEY_MAX];
    hwm_key(carrier, key, sizeof(key));
    struct rds_reply *r = rds_cmdf(ctx->rds, "GET %s", key);
    if (!r)
        return -1;
    int rc = 0;
    if (rds_reply_type(r) == RDS_STR) {
        *ms = strtoll(rds_reply_str(r, NULL), NULL, 10);
        rc = *ms > 0;
    } else if (rds_reply_type(r) == RDS_ERR) {
        rc = -1;
    }
    rds_reply_free(r);
    return rc;
}

static int hwm_set(struct wrk_ctx *ctx, const char *carrier, int64_t ms)
{
    char key[HWM_KEY_MAX];
    hwm_key(carrier, key, sizeof(key));
    struct rds_reply *r = rds_cmdf(ctx->rds, "SET %s %lld", key, (long long)ms);
    int ok = r && rds_reply_type(r) == RDS_STATUS;
    rds_reply_free(r);
    return ok ? 0 : -1;
}

/* Step 2: every page after since into *evs. CV_OK, or the job's result set. */
static enum cv_rc read_feed(struct wrk_ctx *ctx, const struct job *j, const struct car *car,
                            const char *since, struct ev **evs, size_t *nev, int *cut,
                            struct wrk_result *r)
{
    size_t cap = 0;
    *cut = 0;
    for (int page = 1;; page++) {
        if (page > FEED_PAGES_MAX) {
            *cut = 1;
            break;
        }
        struct ups_call c;
        struct sbuf b;
        struct car_event *got = NULL;
        size_t n = 0;
        int more = 0;
        ord_call_init(&c, j, NULL, NULL);
        sbuf_init(&b);
        c.body_check = car->body_check;
        car->feed_req(since, page, &c, &b);
        ups_run(wrk_ups(ctx, car->ups_id), &c, 1);
        enum cv_rc rc = CV_OK;
        if (c.outcome == UPS_DEFERRED) {
            wrk_fail(r, CV_ERR_BUSY, "%s feed: %s", car->name, c.error);
            r->delay_ms = c.delay_ms;
            rc = CV_ERR_BUSY;
        } else if (c.outcome != UPS_DONE || c.cls != HTTPC_OK) {
            rc = c.outcome == UPS_DONE ? httpc_class_rc(c.cls) : c.rc;
            wrk_fail(r, rc, "%s feed page %d: %s", car->name, page,
                     c.error[0] ? c.error : "failed");
            r->delay_ms = c.retry_after_ms;
        } else if (car->feed_parse(&c, &got, &n, &more) != 0) {
            rc = CV_ERR_TRANSIENT;
            wrk_fail(r, rc, "%s feed page %d: not the expected shape", car->name, page);
        }
        ups_call_cleanup(&c);
        sbuf_cleanup(&b);
        if (rc != CV_OK)
            return rc;
        for (size_t i = 0; i < n; i++) {
            int64_t at;
            if (clock_parse_rfc3339(got[i].event_at, &at) != 0) {
                LOG_WARN("tracking_poll.bad_event_time", "carrier=%s order_id=%s", car->name,
                         got[i].order_id);
                continue;
            }
            if (*nev == cap) {
                cap = cap ? cap * 2 : 64;
                *evs = xrealloc(*evs, cap * sizeof(**evs));
            }
            (*evs)[*nev].e = got[i];
            (*evs)[(*nev)++].at_ms = at;
        }
        free(got);
        if (!more)
            break;
    }
    return CV_OK;
}

/* Step 3 for the changes ev[0..n) of one order. Returns CV_OK (applied or
 * left for later: *skipped), or the rc that ends the job (r set). */
static enum cv_rc apply_order(struct wrk_ctx *ctx, const struct job *j, const struct car *car,
                              const struct ev *ev, size_t n, int *skipped, size_t *applied,
                              struct wrk_result *r)
{
    const char *order_id = ev[0].e.order_id;
    struct wrk_result cr;
    char trace[33];
    int claimed = 0, tracked = 0;
    enum cv_rc rc = CV_OK;
    memset(&cr, 0, sizeof(cr));
    *skipped = 0;
    ord_trace_id(j, trace);
    enum cv_rc crc = ord_claim(ctx, j, order_id, &cr);
    if (crc == CV_ERR_BUSY) {
        *skipped = 1;   /* another job works on it: the next poll reads these again */
        return CV_OK;
    }
    if (crc == CV_ERR_FENCED || crc == CV_ERR_UNAVAILABLE) {
        *r = cr;
        return crc;
    }
    claimed = crc == CV_OK;   /* NOT_FOUND: no such order yet; the change is kept */
    for (size_t i = 0; i < n && rc == CV_OK; i++) {
        const struct car_event *e = &ev[i].e;
        int terminal = 0;
        int st = car->status_map ? car->status_map(e->status, &terminal) : otrack_parse(e->status);
        if (st < 0) {
            LOG_WARN("tracking_poll.unknown_status", "carrier=%s order_id=%s status=%s",
                     car->name, order_id, e->status);
            continue;
        }
        struct sbuf payload;
        sbuf_init(&payload);
        sbuf_adds(&payload, "{\"tracking_number\":");
        sbuf_add_json_str(&payload, e->tracking_number);
        sbuf_adds(&payload, ",\"status\":");
        sbuf_add_json_str(&payload, e->status);
        sbuf_adds(&payload, ",\"event_at\":");
        sbuf_add_json_str(&payload, e->event_at);
        sbuf_adds(&payload, ",\"source\":\"feed\"}");
        /* The feed has no event ids; this one names the change itself, so that a
         * change read again (the overlap, a failed run) is a duplicate to
         * cv_order_track: never kept twice for an order not yet posted. */
        char wid[200];
        snprintf(wid, sizeof(wid), "feed:%s:%s:%s", e->tracking_number[0] ? e->tracking_number
                                                                           : order_id,
                 e->status, e->event_at);
        struct ostore_event oe;
        memset(&oe, 0, sizeof(oe));
        oe.order_id = order_id;
        oe.carrier = car->name;
        oe.status = (enum otrack)st;
        oe.terminal = terminal;
        oe.event_at = e->event_at;
        oe.has_seq = e->seq >= 0;
        oe.seq = e->seq;
        oe.tracking_number = e->tracking_number[0] ? e->tracking_number : NULL;
        oe.webhook_id = wid;
        oe.payload_json = payload.p;
        oe.job_id = j->id;
        oe.epoch = j->epoch;
        oe.trace_id = trace;
        enum ostore_result res;
        int state = -1;
        enum cv_rc trc = ostore_track(ctx->db, &oe, &res, &state);
        sbuf_cleanup(&payload);
        if (trc != CV_OK) {
            wrk_fail(r, CV_ERR_UNAVAILABLE, "orders store: %s", cv_rc_str(trc));
            rc = CV_ERR_UNAVAILABLE;
        } else if (res == OSTORE_FENCED) {
            wrk_fail(r, CV_ERR_FENCED, "a newer delivery holds order %s", order_id);
            rc = CV_ERR_FENCED;
        } else if (res == OSTORE_BUSY) {
            *skipped = 1;   /* taken by another job between claim and apply */
            break;
        } else {
            (*applied)++;
            tracked = res == OSTORE_OK && state == OSTATE_TRACKED;
        }
    }
    if (rc == CV_OK && tracked)
        rc = ord_follow_push(ctx, j, order_id, r);   /* step 4 */
    if (claimed && rc != CV_ERR_FENCED)
        ord_release(ctx, j, order_id);
    return rc;
}

static void one(struct wrk_ctx *ctx, struct job *j, struct wrk_result *r)
{
    cJSON *p = json_parse(j->payload, j->payload_len);
    char carrier[40], since_arg[48], since[CLOCK_RFC3339_LEN];
    struct ev *evs = NULL;
    size_t nev = 0, applied = 0, skipped_orders = 0;
    int cut = 0;
    int64_t old = 0, since_ms = 0;
    car_json_str(p, "carrier", carrier, sizeof(carrier));
    car_json_str(p, "since", since_arg, sizeof(since_arg));
    cJSON_Delete(p);
    if (!carrier[0])
        snprintf(carrier, sizeof(carrier), "%s", DEFAULT_CARRIER);
    const struct car *car = car_find(carrier);
    if (!car || !car->feed_req || !car->feed_parse) {
        wrk_fail(r, CV_ERR_PERMANENT, "carrier '%s' has no change feed to poll", carrier);
        goto out;
    }
    int had = hwm_get(ctx, car->name, &old);
    if (had < 0) {
        wrk_fail(r, CV_ERR_UNAVAILABLE, "redis: cannot read the high-water mark");
        goto out;
    }
    /* the payload's since wins */
    if (!since_arg[0] || clock_parse_rfc3339(since_arg, &since_ms) != 0)
        since_ms = had ? old - OVERLAP_MS : clock_wall_ms() - FIRST_LOOKBACK_MS;
    clock_rfc3339(since_ms, since);

    if (read_feed(ctx, j, car, since, &evs, &nev, &cut, r) != CV_OK)
        goto out;
    if (nev > 1)
        qsort(evs, nev, sizeof(*evs), cmp_ev);

    int64_t newest = 0, first_skipped = 0;
    for (size_t i = 0; i < nev;) {
        size_t k = i + 1;
        while (k < nev && strcmp(evs[k].e.order_id, evs[i].e.order_id) == 0)
            k++;
        int skipped = 0;
        if (apply_order(ctx, j, car, &evs[i], k - i, &skipped, &applied, r) != CV_OK)
            goto out;   /* fenced or our store is down: the mark stays */
        if (skipped) {
            skipped_orders++;
            if (!first_skipped || evs[i].at_ms < first_skipped)
                first_skipped = evs[i].at_ms;
        } else if (evs[k - 1].at_ms > newest) {
            newest = evs[k - 1].at_ms;   /* the order's latest change */
        }
        i = k;
    }
    /* Step 5. The mark moves to the latest change read, but never past the
     * first change of an order left for later. */
    int64_t mark = newest > old ? newest : old;
    if (first_skipped && first_skipped < mark)
        mark = first_skipped;
    if (mark > 0 && mark != old && hwm_set(ctx, car->name, mark) != 0) {
        wrk_fail(r, CV_ERR_UNAVAILABLE, "redis: cannot store the high-water mark");
        goto out;
    }
    r->rc = CV_OK;
    LOG_INFO("tracking_poll.done", "carrier=%s since=%s changes=%zu applied=%zu "
             "orders_left=%zu more_pages=%d job_id=%s",
             car->name, since, nev, applied, skipped_orders, cut, j->id);
out:
    free(evs);
}

void h_tracking_poll(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res)
{
    for (size_t i = 0; i < n; i++)
        one(ctx, jobs[i], &res[i]);
    wrk_out_flush(ctx);
}
