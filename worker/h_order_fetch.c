/* h_order_fetch.c - page the marketplace's orders into PostgreSQL and start
 * their carrier posts (seed 004, steps 1 and 2).
 *
 * OR11 is read from a high-water mark: the payload's `since`, else the last
 * run's latest last_updated_date (Redis cv:orders:fetch:hwm) minus
 * orders.fetch_overlap_s, because updates that land during a fetch may carry
 * an earlier date. Overlapping windows are therefore normal; the upsert
 * (cv_order_upsert) makes them harmless: an order already known takes only
 * newer marketplace fields and never moves its internal state.
 *
 * Each page (orders.fetch_page, at most 100) is one upsert round trip. Every
 * order of the page that is PENDING_POST, new or not, gets a carrier-post
 * follow-up whose id is derived from "<order>:post:<attempts>": a re-fetch, a
 * redelivered fetch, or the orchestrator's post-to-carrier sweep make the same
 * job, never a second one. The carrier comes from the rules (carrier_rules,
 * reloaded every minute) and travels in the payload.
 *
 * The high-water mark moves only after every page was stored and every
 * follow-up is about to be published with the job's settle; a fetch that
 * fails halfway is simply run again over the same window. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "car.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "mkl.h"
#include "ord.h"
#include "rds.h"

#define HWM_KEY "cv:orders:fetch:hwm"

/* The window's start: since, else the stored mark minus the overlap. */
static void window_start(struct wrk_ctx *ctx, const char *since, char *out, size_t cap)
{
    out[0] = '\0';
    if (since && *since) {
        snprintf(out, cap, "%s", since);
        return;
    }
    struct rds_reply *r = rds_cmdf(ctx->rds, "GET %s", HWM_KEY);
    const char *v = r && rds_reply_type(r) == RDS_STR ? rds_reply_str(r, NULL) : NULL;
    int64_t ms;
    if (v && clock_parse_rfc3339(v, &ms) == 0) {
        ms -= (int64_t)ctx->cfg->orders_fetch_overlap_s * 1000;
        char buf[CLOCK_RFC3339_LEN];
        snprintf(out, cap, "%s", clock_rfc3339(ms, buf));
    }
    rds_reply_free(r);
}

static void one(struct wrk_ctx *ctx, struct job *j, struct wrk_result *res)
{
    cJSON *pl = json_parse(j->payload, j->payload_len);
    char since[48], start[48], max_seen[40] = "", trace[33];
    car_json_str(pl, "since", since, sizeof(since));
    char mp[16];
    car_json_str(pl, "max_pages", mp, sizeof(mp));
    cJSON_Delete(pl);
    int max_pages = mp[0] && atoi(mp) > 0 ? atoi(mp) : ctx->cfg->orders_fetch_max_pages;
    int page_size = ctx->cfg->orders_fetch_page;
    window_start(ctx, since, start, sizeof(start));
    ord_trace_id(j, trace);
    long long offset = 0, fetched = 0, news = 0, posts = 0;
    res->rc = CV_OK;

    for (int page = 0; page < max_pages; page++) {
        struct ups_call c;
        struct sbuf path;
        struct mkl_page pg;
        sbuf_init(&path);
        ord_call_init(&c, j, NULL, NULL);
        memset(&pg, 0, sizeof(pg));
        mkl_list_req(&c, &path, ctx->cfg->orders_fetch_states, start, offset, page_size);
        ups_run(wrk_ups(ctx, CFG_UPS_MIRAKL), &c, 1);
        int stop = 0;
        if (c.outcome == UPS_DEFERRED) {
            wrk_fail(res, CV_ERR_BUSY, "mirakl: %s", c.error);
            res->delay_ms = c.delay_ms;
            stop = 1;
        } else if (c.outcome != UPS_DONE || c.cls != HTTPC_OK) {
            wrk_fail(res, c.cls == HTTPC_THROTTLED ? CV_ERR_RATE : httpc_class_rc(c.cls),
                     "mirakl OR11: %s", c.error[0] ? c.error : httpc_class_str(c.cls));
            res->delay_ms = c.retry_after_ms;
            stop = 1;
        } else if (mkl_page_parse(c.resp, c.resp_len, &pg) != 0) {
            wrk_fail(res, CV_ERR_TRANSIENT, "mirakl OR11: an answer without orders");
            stop = 1;
        } else if (pg.n > 0) {
            struct ostore_upserted *up = xcalloc(pg.n, sizeof(*up));
            enum cv_rc rc = ostore_upsert_batch(ctx->db, pg.orders, pg.n, j->id, trace, up);
            if (rc != CV_OK) {
                wrk_fail(res, rc == CV_ERR_INVALID ? CV_ERR_PERMANENT : CV_ERR_UNAVAILABLE,
                         "orders store: upsert: %s", cv_rc_str(rc));
                stop = 1;
            }
            for (size_t i = 0; rc == CV_OK && i < pg.n; i++) {
                const struct ostore_order_in *in = &pg.orders[i];
                news += up[i].outcome == OSTORE_UPSERT_NEW;
                if (up[i].state != OSTATE_PENDING_POST)
                    continue;
                enum cv_rc rrc;
                const char *carrier =
                    up[i].carrier_code[0]
                        ? up[i].carrier_code
                        : ord_rules_pick(ctx, in->country, in->weight_kg ? atof(in->weight_kg) : 0,
                                         &rrc);
                char key[160], body[200];
                snprintf(key, sizeof(key), "%s:post:0", in->order_id);
                if (carrier)
                    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"carrier\":\"%s\"}",
                             in->order_id, carrier);
                else
                    snprintf(body, sizeof(body), "{\"order_id\":\"%s\"}", in->order_id);
                wrk_follow(ctx, j, res, "carrier-post", key, body, 0);
                posts++;
            }
            free(up);
            fetched += (long long)pg.n;
            if (strcmp(pg.max_updated, max_seen) > 0)
                snprintf(max_seen, sizeof(max_seen), "%s", pg.max_updated);
        }
        size_t got = pg.n;
        long long total = pg.total_count;
        mkl_page_free(&pg);
        ups_call_cleanup(&c);
        sbuf_cleanup(&path);
        if (stop)
            break;
        offset += page_size;
        if ((int)got < page_size || offset >= total)
            break;
    }
    wrk_out_flush(ctx);
    if (res->rc == CV_OK && max_seen[0]) {
        /* only forward: two fetches finishing out of order keep the later mark */
        const char *argv[] = { "EVAL",
                               "local c = redis.call('GET', KEYS[1]) "
                               "if not c or c < ARGV[1] then "
                               "redis.call('SET', KEYS[1], ARGV[1]) end return 1",
                               "1", HWM_KEY, max_seen };
        rds_reply_free(rds_cmd(ctx->rds, 5, argv, NULL));
    }
    LOG_INFO("orders.fetched", "job_id=%s since=%s orders=%lld new=%lld posts=%lld rc=%s", j->id,
             start[0] ? start : "-", fetched, news, posts, cv_rc_str(res->rc));
}

void h_order_fetch(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res)
{
    for (size_t i = 0; i < n; i++)
        one(ctx, jobs[i], &res[i]);
}
