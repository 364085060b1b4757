#include <criterion/criterion.h>
#include <string.h>

#include "clock.h"
#include "job.h"
#include "json.h"
#include "retry.h"
#include "sbuf.h"
#include "uuid.h"

Test(job, backoff_doubles_from_base_and_caps)
{
    /* rnd 0.5 means no jitter */
    cr_assert_eq(job_backoff_ms(1, 1000, 16000, 0.5), 1000);
    cr_assert_eq(job_backoff_ms(2, 1000, 16000, 0.5), 2000);
    cr_assert_eq(job_backoff_ms(3, 1000, 16000, 0.5), 4000);
    cr_assert_eq(job_backoff_ms(4, 1000, 16000, 0.5), 8000);
    cr_assert_eq(job_backoff_ms(5, 1000, 16000, 0.5), 16000);
    cr_assert_eq(job_backoff_ms(9, 1000, 16000, 0.5), 16000);
}

Test(job, backoff_jitter_stays_within_twenty_percent)
{
    for (double r = 0; r < 1.0; r += 0.01) {
        int64_t d = job_backoff_ms(3, 1000, 16000, r);
        cr_assert(d >= 3200 && d <= 4800, "delay %lld out of range for rnd %f", (long long)d, r);
    }
    cr_assert_neq(job_backoff_ms(3, 1000, 16000, 0.0), job_backoff_ms(3, 1000, 16000, 0.99));
}

Test(job, type_names)
{
    cr_assert(job_type_valid("noop", 4));
    cr_assert(job_type_valid("order-fetch", 11));
    cr_assert(job_type_valid("tracking_push", 13));
    cr_assert_not(job_type_valid("", 0));
    cr_assert_not(job_type_valid("Noop", 4));
    cr_assert_not(job_type_valid("a b", 3));
    cr_assert_not(job_type_valid("a/b", 3));
    char longname[40];
    memset(longname, 'a', sizeof(longname));
    cr_assert_not(job_type_valid(longname, sizeof(longname)));
}

Test(job, traceparent_new_is_valid_and_unique)
{
    char a[JOB_TRACEPARENT_LEN], b[JOB_TRACEPARENT_LEN];
    job_traceparent_new(a);
    job_traceparent_new(b);
    cr_assert_eq(strlen(a), 55);
    cr_assert(job_traceparent_valid(a));
    cr_assert_str_neq(a, b);
    cr_assert(job_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    cr_assert_not(job_traceparent_valid("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    cr_assert_not(job_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"));
    cr_assert_not(job_traceparent_valid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
}

Test(job, state_names_round_trip)
{
    for (int s = JOB_STATE_QUEUED; s <= JOB_STATE_DEAD; s++)
        cr_assert_eq(job_state_parse(job_state_str((enum job_state)s)), s);
    cr_assert_eq(job_state_parse("bogus"), -1);
}

Test(uuid, v4_format)
{
    char u[UUID_STR_LEN], v[UUID_STR_LEN];
    uuid_v4(u);
    uuid_v4(v);
    cr_assert(uuid_valid(u));
    cr_assert_eq(u[14], '4');
    cr_assert(strchr("89ab", u[19]) != NULL);
    cr_assert_str_neq(u, v);
    cr_assert_not(uuid_valid("not-a-uuid"));
    cr_assert_not(uuid_valid("6f1c2b3a-1111-4222-8333-44445555666"));
    cr_assert_not(uuid_valid("6f1c2b3a-1111-4222-8333-4444555566667"));
}

Test(retry, decide_by_error_class_and_attempts)
{
    int64_t d;
    cr_assert_eq(retry_decide(CV_OK, 1, 3, 1000, 16000, 0.5, &d), BROKER_ACK);
    cr_assert_eq(retry_decide(CV_ERR_TRANSIENT, 1, 3, 1000, 16000, 0.5, &d), BROKER_RETRY);
    cr_assert_eq(d, 1000);
    cr_assert_eq(retry_decide(CV_ERR_IO, 2, 3, 1000, 16000, 0.5, &d), BROKER_RETRY);
    cr_assert_eq(d, 2000);
    cr_assert_eq(retry_decide(CV_ERR_RATE, 2, 3, 1000, 16000, 0.5, &d), BROKER_RETRY);
    cr_assert_eq(retry_decide(CV_ERR_TRANSIENT, 3, 3, 1000, 16000, 0.5, &d), BROKER_DEAD);
    cr_assert_eq(retry_decide(CV_ERR_PERMANENT, 1, 3, 1000, 16000, 0.5, &d), BROKER_FAIL);
    cr_assert_eq(retry_decide(CV_ERR_INVALID, 1, 3, 1000, 16000, 0.5, &d), BROKER_FAIL);
    cr_assert_eq(retry_decide(CV_ERR_AUTH, 1, 3, 1000, 16000, 0.5, &d), BROKER_FAIL);
}

Test(clock, rfc3339_round_trip)
{
    int64_t ms;
    char buf[CLOCK_RFC3339_LEN];
    cr_assert_eq(clock_parse_rfc3339("2025-06-01T10:00:00.123Z", &ms), 0);
    cr_assert_str_eq(clock_rfc3339(ms, buf), "2025-06-01T10:00:00.123Z");
    cr_assert_eq(clock_parse_rfc3339("1970-01-01T00:00:00Z", &ms), 0);
    cr_assert_eq(ms, 0);
    cr_assert_eq(clock_parse_rfc3339("2025-06-01T12:00:00+02:00", &ms), 0);
    int64_t utc;
    cr_assert_eq(clock_parse_rfc3339("2025-06-01T10:00:00Z", &utc), 0);
    cr_assert_eq(ms, utc);
    cr_assert_eq(clock_parse_rfc3339("2024-02-29T00:00:00Z", &ms), 0);
}

Test(clock, rfc3339_rejects_garbage)
{
    int64_t ms;
    const char *bad[] = { "", "tomorrow", "2025-13-01T00:00:00Z", "2025-02-30T00:00:00Z",
                          "2023-02-29T00:00:00Z", "2025-06-01T10:00:00", "2025-06-01T25:00:00Z",
                          "2025-06-01T10:00:00Zjunk", "2025-06-01T10:00:00.Z" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(clock_parse_rfc3339(bad[i], &ms), -1, "accepted '%s'", bad[i]);
}

Test(sbuf, json_escaping)
{
    struct sbuf b;
    sbuf_init(&b);
    sbuf_add_json_str(&b, "a\"b\\c\nd\x01");
    cr_assert_str_eq(b.p, "\"a\\\"b\\\\c\\nd\\u0001\"");
    sbuf_reset(&b);
    sbuf_addf(&b, "%d-%s", 42, "x");
    cr_assert_str_eq(b.p, "42-x");
    size_t len;
    char *p = sbuf_take(&b, &len);
    cr_assert_eq(len, 4);
    free(p);
    sbuf_cleanup(&b);
}

/* Found by tests/fuzz/fuzz_json: bytes after a NUL passed as "end of text",
 * and 1e999 parsed as inf (printed back as null). */
Test(json, parse_refuses_nul_tail_and_non_finite)
{
    static const char *const bad[] = { "{}\0junk", "[1]\0", "{\"a\":1e999}", "[-1e400]",
                                       "{\"a\":[{\"b\":1E11111}]}" };
    static const size_t len[] = { 7, 4, 11, 8, 21 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *j = json_parse(bad[i], len[i]);
        cr_expect_null(j, "accepted '%s'", bad[i]);
        cJSON_Delete(j);
    }
    cJSON *ok = json_parse("{\"a\":[1e308,-0.5]} \n", 20);
    cr_expect_not_null(ok);
    cJSON_Delete(ok);
}
