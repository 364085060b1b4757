/* api_stats.c - GET /stats (seed 001): the counts and cache hit rates as JSON.
 *
 * For a person or a script, not Prometheus: per job type every counter of
 * cv:stats:<type> (the outcomes of conveyor_jobs_total, and the reclaimed and
 * fenced events), their totals over the types, and how the caches of this
 * process did since it started: /metrics's per-loop cache (scrapes served
 * from it against those that read Redis). One counters script per call, no
 * cache of its own: it is an operator's read. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "broker.h"
#include "met.h"

static void on_counters(void *arg, enum cv_rc rc, const struct type_counters *c, size_t n)
{
    struct req *r = arg;
    if (rc != CV_OK) {
        api_reply_err(r, rc, "could not read the counters; retry", NULL);
        goto out;
    }
    long long tot[BROKER_NCOUNTERS] = { 0 }, ev[BROKER_NEVENTS] = { 0 };
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"jobs\":{");
    for (size_t i = 0; i < n; i++) {
        sbuf_adds(&b, i ? "," : "");
        sbuf_add_json_str(&b, c[i].type);
        sbuf_adds(&b, ":{");
        for (int k = 0; k < BROKER_NCOUNTERS; k++) {
            api_json_i64(&b, broker_counter_names[k], c[i].n[k], k == 0);
            tot[k] += c[i].n[k];
        }
        for (int e = 0; e < BROKER_NEVENTS; e++) {
            api_json_i64(&b, broker_event_names[e], c[i].ev[e], 0);
            ev[e] += c[i].ev[e];
        }
        sbuf_adds(&b, "}");
    }
    sbuf_adds(&b, "},\"totals\":{");
    for (int k = 0; k < BROKER_NCOUNTERS; k++)
        api_json_i64(&b, broker_counter_names[k], tot[k], k == 0);
    for (int e = 0; e < BROKER_NEVENTS; e++)
        api_json_i64(&b, broker_event_names[e], ev[e], 0);
    const struct api_global *g = r->t->g;
    unsigned long long hits = met_value(g->met, g->m_scrape[0]);
    unsigned long long reads = met_value(g->met, g->m_scrape[1]);
    sbuf_addf(&b,
              "},\"caches\":{\"metrics\":{\"hits\":%llu,\"misses\":%llu,\"hit_rate\":%.3f}}}",
              hits, reads, hits + reads ? (double)hits / (double)(hits + reads) : 0.0);
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
out:
    api_req_release(r);
}

void api_h_stats(struct req *r)
{
    api_req_hold(r);
    broker_counters(r->t->broker, on_counters, r);
}
