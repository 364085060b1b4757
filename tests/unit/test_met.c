#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "met.h"
#include "sbuf.h"

Test(met, bucket_bounds)
{
    cr_assert_eq(met_nbuckets, 11);
    cr_assert_float_eq(met_buckets[0], 0.005, 1e-12);
    cr_assert_float_eq(met_buckets[met_nbuckets - 1], 10.0, 1e-12);
    for (int i = 1; i < met_nbuckets; i++)
        cr_assert(met_buckets[i] > met_buckets[i - 1]);
}

Test(met, bucket_fields)
{
    char buf[64];
    cr_assert_str_eq(met_bucket_field("SUCCESS", 0.0, buf), "SUCCESS:0.005");
    cr_assert_str_eq(met_bucket_field("SUCCESS", 0.005, buf), "SUCCESS:0.005");
    cr_assert_str_eq(met_bucket_field("SUCCESS", 0.0051, buf), "SUCCESS:0.01");
    cr_assert_str_eq(met_bucket_field("SUCCESS", 0.04, buf), "SUCCESS:0.05");
    cr_assert_str_eq(met_bucket_field("FAILED", 1.0, buf), "FAILED:1");
    cr_assert_str_eq(met_bucket_field("FAILED", 2.0, buf), "FAILED:2.5");
    cr_assert_str_eq(met_bucket_field("FAILED", 10.0, buf), "FAILED:10");
    cr_assert_str_eq(met_bucket_field("FAILED", 10.01, buf), "FAILED:+Inf");
    cr_assert_str_eq(met_bucket_field("FAILED", 1e9, buf), "FAILED:+Inf");
    /* a long status is cut, never overflows */
    char st[100];
    memset(st, 'S', sizeof(st) - 1);
    st[99] = '\0';
    cr_assert(strlen(met_bucket_field(st, 0.1, buf)) < 64);
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
    met_hist_render(&b, "activation_processing_seconds", "Time spent.", "status", f, v, 10);
    const char *want =
        "# HELP activation_processing_seconds Time spent.\n"
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
    strcpy(f0, met_bucket_field("SUCCESS", 0.3, buf));
    strcpy(f1, met_bucket_field("SUCCESS", 60, buf));
    fields[0] = f0;
    fields[1] = f1;
    fields[2] = "SUCCESS:sum";
    const char *vals[] = { "2", "1", "60.6" };
    struct sbuf b;
    sbuf_init(&b);
    met_hist_render(&b, "h", "H.", "status", fields, vals, 3);
    cr_assert(strstr(b.p, "h_bucket{status=\"SUCCESS\",le=\"0.25\"} 0\n"));
    cr_assert(strstr(b.p, "h_bucket{status=\"SUCCESS\",le=\"0.5\"} 2\n"));
    cr_assert(strstr(b.p, "h_bucket{status=\"SUCCESS\",le=\"10\"} 2\n"));
    cr_assert(strstr(b.p, "h_bucket{status=\"SUCCESS\",le=\"+Inf\"} 3\n"));
    cr_assert(strstr(b.p, "h_count{status=\"SUCCESS\"} 3\n"));
    sbuf_cleanup(&b);
}

Test(met, empty_histogram_has_only_the_header)
{
    struct sbuf b;
    sbuf_init(&b);
    met_hist_render(&b, "h", "H.", "status", NULL, NULL, 0);
    cr_assert_str_eq(b.p, "# HELP h H.\n# TYPE h histogram\n");
    sbuf_cleanup(&b);
}
