#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "met.h"
#include "sbuf.h"

#define H_ACT (&met_hists[MET_H_ACTIVATION])
#define H_F2C (&met_hists[MET_H_FETCH_TO_COMPLETE])

Test(met, bucket_bounds)
{
    for (int h = 0; h < MET_H_N; h++) {
        const struct met_hist *x = &met_hists[h];
        cr_assert(x->key && x->name && x->help, "histogram %d has no name", h);
        cr_assert(x->nbounds > 0 && x->nbounds <= MET_MAX_BUCKETS);
        for (int i = 1; i < x->nbounds; i++)
            cr_assert(x->bounds[i] > x->bounds[i - 1], "%s: bounds not ascending", x->name);
    }
    cr_assert_eq(H_ACT->nbounds, 11);
    cr_assert_float_eq(H_ACT->bounds[0], 0.005, 1e-12);
    cr_assert_float_eq(H_ACT->bounds[10], 10.0, 1e-12);
    /* fetch to complete reaches past seed 004's five-minute alert, to four hours */
    cr_assert_float_eq(H_F2C->bounds[H_F2C->nbounds - 1], 14400, 1e-9);
    cr_assert_eq(met_bucket_index(H_F2C, 301), met_bucket_index(H_F2C, 600));
    cr_assert_neq(met_bucket_index(H_F2C, 299), met_bucket_index(H_F2C, 301));
}

Test(met, bucket_fields)
{
    char buf[64];
    cr_assert_str_eq(met_bucket_field(H_ACT, "SUCCESS", 0.0, buf), "SUCCESS:0.005");
    cr_assert_str_eq(met_bucket_field(H_ACT, "SUCCESS", 0.005, buf), "SUCCESS:0.005");
    cr_assert_str_eq(met_bucket_field(H_ACT, "SUCCESS", 0.0051, buf), "SUCCESS:0.01");
    cr_assert_str_eq(met_bucket_field(H_ACT, "SUCCESS", 0.04, buf), "SUCCESS:0.05");
    cr_assert_str_eq(met_bucket_field(H_ACT, "FAILED", 1.0, buf), "FAILED:1");
    cr_assert_str_eq(met_bucket_field(H_ACT, "FAILED", 2.0, buf), "FAILED:2.5");
    cr_assert_str_eq(met_bucket_field(H_ACT, "FAILED", 10.0, buf), "FAILED:10");
    cr_assert_str_eq(met_bucket_field(H_ACT, "FAILED", 10.01, buf), "FAILED:+Inf");
    cr_assert_str_eq(met_bucket_field(H_ACT, "FAILED", 1e9, buf), "FAILED:+Inf");
    cr_assert_str_eq(met_bucket_field(H_F2C, MET_HIST_ALL, 42, buf), "all:60");
    cr_assert_str_eq(met_bucket_field(H_F2C, MET_HIST_ALL, 20000, buf), "all:+Inf");
    /* a long status is cut, never overflows */
    char st[100];
    memset(st, 'S', sizeof(st) - 1);
    st[99] = '\0';
    cr_assert(strlen(met_bucket_field(H_ACT, st, 0.1, buf)) < 64);
}

Test(met, observations_sum_per_bucket)
{
    struct met_obs o = { { 0 }, 0, 0 };
    met_obs_add(&o, H_F2C, 0.5);
    met_obs_add(&o, H_F2C, 1);
    met_obs_add(&o, H_F2C, 400);
    met_obs_add(&o, H_F2C, 1e6);
    cr_assert_eq(o.n, 4);
    cr_assert_eq(o.per[0], 2, "0.5 s and 1 s in le=1");
    cr_assert_eq(o.per[met_bucket_index(H_F2C, 600)], 1);
    cr_assert_eq(o.per[H_F2C->nbounds], 1, "above 4 h: +Inf");
    cr_assert_float_eq(o.sum, 1000401.5, 1e-6);
}

Test(met, text_helpers_escape_label_values)
{
    struct sbuf b;
    sbuf_init(&b);
    met_text_header(&b, "x_total", "counter", "A \\ help\nline");
    met_text_label(&b, "route", "a\"b\\c\nd", 1);
    met_text_label(&b, "code", "200", 0);
    cr_assert_str_eq(b.p, "# HELP x_total A \\\\ help\\nline\n# TYPE x_total counter\n"
                          "route=\"a\\\"b\\\\c\\nd\",code=\"200\"");
    sbuf_reset(&b);
    met_text_u64(&b, "x_total", "a=\"1\"", 42);
    met_text_u64(&b, "y_total", NULL, 7);
    met_text_dbl(&b, "z", NULL, 0.25);
    cr_assert_str_eq(b.p, "x_total{a=\"1\"} 42\ny_total 7\nz 0.25\n");
    sbuf_cleanup(&b);
}

Test(met, counters_sum_shards_and_render)
{
    struct met *m = met_new(3);
    const char *lab[] = { "route", "code" };
    int f = met_family(m, "http_requests_total", "Requests.", 2, lab, 1);
    const char *v1[] = { "POST /v1/jobs/{type}", "202" };
    const char *v2[] = { "GET /health", "200" };
    int s1 = met_series(m, f, v1);
    int s2 = met_series(m, f, v2);
    const char *tl[] = { "type" };
    int g = met_family(m, "enq_total", "Enqueued.", 1, tl, 0);
    const char *t1[] = { "noop" };
    int s3 = met_series(m, g, t1);
    met_freeze(m);
    met_inc(m, 0, s1);
    met_inc(m, 1, s1);
    met_add(m, 2, s1, 5);
    cr_assert_eq(met_value(m, s1), 7);
    cr_assert_eq(met_value(m, s2), 0);
    cr_assert_eq(met_value(m, s3), 0);
    struct sbuf b;
    sbuf_init(&b);
    met_render(m, &b);
    cr_assert_str_eq(b.p,
                     "# HELP http_requests_total Requests.\n"
                     "# TYPE http_requests_total counter\n"
                     "http_requests_total{route=\"POST /v1/jobs/{type}\",code=\"202\"} 7\n"
                     "# HELP enq_total Enqueued.\n"
                     "# TYPE enq_total counter\n"
                     "enq_total{type=\"noop\"} 0\n");
    sbuf_cleanup(&b);
    met_free(m);
}

struct bump {
    struct met *m;
    int shard, series;
};

static void *bump_many(void *arg)
{
    struct bump *b = arg;
    for (int i = 0; i < 100000; i++)
        met_inc(b->m, b->shard, b->series);
    return NULL;
}

Test(met, shards_are_independent_across_threads)
{
    struct met *m = met_new(4);
    int f = met_family(m, "c_total", "C.", 0, NULL, 0);
    int s = met_series(m, f, NULL);
    met_freeze(m);
    pthread_t th[4];
    struct bump b[4];
    for (int i = 0; i < 4; i++) {
        b[i] = (struct bump){ m, i, s };
        pthread_create(&th[i], NULL, bump_many, &b[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(met_value(m, s), 400000);
    met_free(m);
}

Test(met, histogram_from_hash_is_cumulative)
{
    const char *f[] = { "SUCCESS:0.05", "SUCCESS:0.005", "SUCCESS:+Inf", "SUCCESS:sum",
                        "SUCCESS:count", "FAILED:1", "FAILED:sum", "junk", "X:notabound",
                        "FAILED:2.5" };
    const char *v[] = { "3", "1", "2", "12.5", "6", "4", "2.25", "9", "1", "bad" };
    struct sbuf b;
    sbuf_init(&b);
    met_hist_render(&b, H_ACT, f, v, 10);
    const char *want =
        "# HELP activation_processing_seconds Time spent processing activations, by final "
        "status.\n"
        "# TYPE activation_processing_seconds histogram\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"0.005\"} 0\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"0.01\"} 0\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"0.025\"} 0\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"0.05\"} 0\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"0.1\"} 0\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"0.25\"} 0\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"0.5\"} 0\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"1\"} 4\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"2.5\"} 4\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"5\"} 4\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"10\"} 4\n"
        "activation_processing_seconds_bucket{status=\"FAILED\",le=\"+Inf\"} 4\n"
        "activation_processing_seconds_sum{status=\"FAILED\"} 2.25\n"
        "activation_processing_seconds_count{status=\"FAILED\"} 4\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"0.005\"} 1\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"0.01\"} 1\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"0.025\"} 1\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"0.05\"} 4\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"0.1\"} 4\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"0.25\"} 4\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"0.5\"} 4\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"1\"} 4\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"2.5\"} 4\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"5\"} 4\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"10\"} 4\n"
        "activation_processing_seconds_bucket{status=\"SUCCESS\",le=\"+Inf\"} 6\n"
        "activation_processing_seconds_sum{status=\"SUCCESS\"} 12.5\n"
        "activation_processing_seconds_count{status=\"SUCCESS\"} 6\n";
    cr_assert_str_eq(b.p, want);
    sbuf_cleanup(&b);
}

Test(met, histogram_round_trips_bucket_fields)
{
    /* what a worker writes with met_bucket_field must be what the API reads */
    char buf[64];
    const char *fields[3];
    char f0[64], f1[64];
    strcpy(f0, met_bucket_field(H_ACT, "SUCCESS", 0.3, buf));
    strcpy(f1, met_bucket_field(H_ACT, "SUCCESS", 60, buf));
    fields[0] = f0;
    fields[1] = f1;
    fields[2] = "SUCCESS:sum";
    const char *vals[] = { "2", "1", "60.6" };
    struct sbuf b;
    sbuf_init(&b);
    met_hist_render(&b, H_ACT, fields, vals, 3);
    const char *h = "activation_processing_seconds";
    char want[160];
#define HAS(fmt, ...)                                                                      \
    do {                                                                                   \
        snprintf(want, sizeof(want), fmt, h, __VA_ARGS__);                                 \
        cr_assert(strstr(b.p, want), "no %s in:\n%s", want, b.p);                           \
    } while (0)
    HAS("%s_bucket{status=\"SUCCESS\",le=\"%s\"} 0\n", "0.25");
    HAS("%s_bucket{status=\"SUCCESS\",le=\"%s\"} 2\n", "0.5");
    HAS("%s_bucket{status=\"SUCCESS\",le=\"%s\"} 2\n", "10");
    HAS("%s_bucket{status=\"SUCCESS\",le=\"%s\"} 3\n", "+Inf");
    HAS("%s_count{status=\"SUCCESS\"} %d\n", 3);
#undef HAS
    sbuf_cleanup(&b);
}

Test(met, empty_histogram_has_only_the_header)
{
    struct sbuf b;
    sbuf_init(&b);
    met_hist_render(&b, H_F2C, NULL, NULL, 0);
    cr_assert_str_eq(b.p, "# HELP conveyor_order_fetch_to_complete_seconds From an order's first "
                          "fetch from the marketplace to COMPLETE.\n"
                          "# TYPE conveyor_order_fetch_to_complete_seconds histogram\n");
    sbuf_cleanup(&b);
}

Test(met, unlabelled_histogram_renders_one_series_without_a_label)
{
    const char *f[] = { "all:60", "all:600", "all:sum", "other:60" };
    const char *v[] = { "2", "1", "500", "7" };
    struct sbuf b;
    sbuf_init(&b);
    met_hist_render(&b, H_F2C, f, v, 4);
    const char *n = "conveyor_order_fetch_to_complete_seconds";
    char want[160];
    snprintf(want, sizeof(want), "%s_bucket{le=\"30\"} 0\n%s_bucket{le=\"60\"} 2\n", n, n);
    cr_assert(strstr(b.p, want), "%s", b.p);
    snprintf(want, sizeof(want), "%s_bucket{le=\"600\"} 3\n", n);
    cr_assert(strstr(b.p, want), "%s", b.p);
    snprintf(want, sizeof(want), "%s_sum 500\n%s_count 3\n", n, n);
    cr_assert(strstr(b.p, want), "%s", b.p);
    cr_assert(!strstr(b.p, "other"), "a stray prefix made a series: %s", b.p);
    sbuf_cleanup(&b);
}

/* ---- reading a histogram back: met_hist_parse, met_hist_quantile ------------------------ */

#define H_UPS (&met_hists[MET_H_UPSTREAM])

/* buckets of H_UPS (0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf), non-cumulative */
static void set_buckets(unsigned long long *b, const int *idx, const unsigned long long *n,
                        int k)
{
    memset(b, 0, sizeof(unsigned long long) * (MET_MAX_BUCKETS + 1));
    for (int i = 0; i < k; i++)
        b[idx[i]] = n[i];
}

Test(met, quantile_interpolates_within_the_bucket_like_histogram_quantile)
{
    unsigned long long b[MET_MAX_BUCKETS + 1];
    /* 50 in (0.005, 0.01], 40 in (0.025, 0.05], 10 in (0.25, 0.5] */
    set_buckets(b, (const int[]){ 1, 3, 6 }, (const unsigned long long[]){ 50, 40, 10 }, 3);
    /* rank 50 is the 50th of the 50 in the second bucket: its upper bound */
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0.5), 0.01, 1e-12);
    /* rank 70: 20 of the 40 in (0.025, 0.05], halfway */
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0.7), 0.0375, 1e-12);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0.9), 0.05, 1e-12);
    /* rank 95: 5 of the 10 in (0.25, 0.5]; rank 99: 9 of them */
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0.95), 0.375, 1e-12);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0.99), 0.475, 1e-12);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 1), 0.5, 1e-12);
    /* rank 25: 25 of the 50 in (0.005, 0.01], halfway */
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0.25), 0.0075, 1e-12);
}

Test(met, quantile_of_the_first_bucket_starts_at_zero)
{
    unsigned long long b[MET_MAX_BUCKETS + 1];
    set_buckets(b, (const int[]){ 0 }, (const unsigned long long[]){ 10 }, 1);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0.5), 0.0025, 1e-12);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 1), 0.005, 1e-12);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0), 0, 1e-12);
    /* q = 0: the lower bound of the first bucket that holds anything */
    set_buckets(b, (const int[]){ 2, 5 }, (const unsigned long long[]){ 4, 4 }, 2);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0), 0.01, 1e-12);
}

Test(met, quantile_in_the_inf_bucket_is_the_last_bound)
{
    unsigned long long b[MET_MAX_BUCKETS + 1];
    set_buckets(b, (const int[]){ 0, 11 }, (const unsigned long long[]){ 5, 5 }, 2);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0.5), 0.005, 1e-12);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0.6), 10, 1e-12);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0.99), 10, 1e-12);
    /* only slow calls: every quantile says "at least the last bound" */
    set_buckets(b, (const int[]){ 11 }, (const unsigned long long[]){ 3 }, 1);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0.5), 10, 1e-12);
    cr_assert_float_eq(met_hist_quantile(H_UPS, b, 0), 10, 1e-12);
}

Test(met, quantile_without_observations_or_of_a_bad_q_is_nan)
{
    unsigned long long b[MET_MAX_BUCKETS + 1] = { 0 };
    cr_assert(isnan(met_hist_quantile(H_UPS, b, 0.5)));
    b[4] = 3;
    cr_assert(isnan(met_hist_quantile(H_UPS, b, -0.1)));
    cr_assert(isnan(met_hist_quantile(H_UPS, b, 1.01)));
    cr_assert(isnan(met_hist_quantile(H_UPS, b, NAN)));
    cr_assert(!isnan(met_hist_quantile(H_UPS, b, 0.5)));
}

Test(met, parse_groups_a_hash_by_prefix)
{
    const char *f[] = { "seur:0.05", "mirakl:0.01", "mirakl:+Inf", "mirakl:sum", "mirakl:count",
                        "seur:sum",  "junk",        "x:nope",      "mirakl:0.01x", ":0.05" };
    const char *v[] = { "2", "7", "1", "12.5", "99", "0.08", "1", "1", "3", "4" };
    struct met_hist_series s[MET_HIST_MAX_SERIES];
    int n = met_hist_parse(H_UPS, f, v, 10, s, MET_HIST_MAX_SERIES);
    cr_assert_eq(n, 2, "mirakl and seur; the junk fields make no series: %d", n);
    cr_assert_str_eq(s[0].prefix, "mirakl");
    cr_assert_eq(s[0].bucket[1], 7);
    cr_assert_eq(s[0].bucket[H_UPS->nbounds], 1);
    cr_assert_float_eq(s[0].sum, 12.5, 1e-12);
    cr_assert_eq(met_hist_count(H_UPS, &s[0]), 8, "count is the buckets' sum, not :count");
    cr_assert_str_eq(s[1].prefix, "seur");
    cr_assert_eq(met_hist_count(H_UPS, &s[1]), 2);
    cr_assert_float_eq(met_hist_quantile(H_UPS, s[1].bucket, 0.5), 0.0375, 1e-12);
    /* no room: the prefixes past max are left out */
    n = met_hist_parse(H_UPS, f, v, 10, s, 1);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(s[0].prefix, "seur", "the first prefix seen is kept");
}
