/* test_ctl.c - conveyorctl's parsers of operator input (cli/ctl_parse.c): durations,
 * --since, and the lines of a jobs file (submit --file). The commands themselves run
 * against real Redis and PostgreSQL in tests/integ/test_ctl.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "cfg.h"
#include "clock.h"
#include "ctl.h"
#include "job.h"

#include "../fuzz/fuzz_env.h"

/* ---- durations ------------------------------------------------------------------- */

Test(ctl, duration_units_and_sums)
{
    static const struct {
        const char *s;
        int64_t ms;
    } ok[] = {
        { "500ms", 500 },        { "90s", 90000 },       { "15m", 900000 },
        { "2h", 7200000 },       { "7d", 604800000 },    { "1h30m", 5400000 },
        { "1m500ms", 60500 },    { "0s", 0 },            { "3650d", 3650LL * 86400000 },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t ms = -1;
        cr_assert_eq(ctl_parse_duration_ms(ok[i].s, &ms), 0, "%s", ok[i].s);
        cr_assert_eq(ms, ok[i].ms, "%s: %lld", ok[i].s, (long long)ms);
    }
}

Test(ctl, duration_refuses_what_is_not_one)
{
    /* a bare number is refused: seconds or minutes is the operator's to say */
    static const char *const bad[] = { "",   "90",  "s",    "1x",  "-5m", "1.5h", "1h 30m",
                                       "m5", "3651d", "99999999999999999999s", "5mss" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 42;
        cr_assert_eq(ctl_parse_duration_ms(bad[i], &ms), -1, "'%s' was accepted", bad[i]);
        cr_assert_eq(ms, 42, "'%s' wrote the result", bad[i]);
    }
    cr_assert_eq(ctl_parse_duration_ms(NULL, NULL), -1);
}

Test(ctl, since_is_a_duration_ago_or_a_time)
{
    int64_t now = 1764300000000LL, ms = 0;
    cr_assert_eq(ctl_parse_since("15m", now, &ms), 0);
    cr_assert_eq(ms, now - 900000);
    cr_assert_eq(ctl_parse_since("2026-11-28T10:00:00Z", now, &ms), 0);
    int64_t expect;
    cr_assert_eq(clock_parse_rfc3339("2026-11-28T10:00:00Z", &expect), 0);
    cr_assert_eq(ms, expect);
    cr_assert_eq(ctl_parse_since("2026-11-28T10:00:00+01:00", now, &ms), 0);
    cr_assert_eq(ms, expect - 3600000);
    cr_assert_eq(ctl_parse_since("yesterday", now, &ms), -1);
    cr_assert_eq(ctl_parse_since("2026-13-01T00:00:00Z", now, &ms), -1);
}

/* ---- jobs files ------------------------------------------------------------------- */

static struct cfg c;

static void load_cfg(void)
{
    fuzz_clear_env();
    cr_assert_eq(cfg_load(&c, NULL), 0);
}

static void free_cfg(void)
{
    cfg_cleanup(&c);
}

/* Parse one line; returns what ctl_ndjson_job returned, the job in *j. */
static int line(const char *text, struct job **j, char *why)
{
    why[0] = '\0';
    return ctl_ndjson_job(&c, text, strlen(text), 1764300000000LL, j, why, 256);
}

Test(ctl, ndjson_line_makes_the_job, .init = load_cfg, .fini = free_cfg)
{
    struct job *j = NULL;
    char why[256];
    cr_assert_eq(line("{\"type\":\"activation\",\"payload\":{\"user_id\":7,\"offer_id\":2},"
                      "\"idempotency_key\":\"k-1\",\"delay_ms\":5000,\"max_attempts\":3}\n",
                      &j, why),
                 1, "%s", why);
    cr_assert_str_eq(j->type, "activation");
    cr_assert_str_eq(j->idem_key, "k-1");
    cr_assert_eq(j->not_before_ms, 1764300000000LL + 5000);
    cr_assert_eq(j->max_attempts, 3);
    cr_assert_eq(j->producer[0], '\0');   /* conveyorctl's jobs: the empty producer */
    /* the type's canonical payload: transaction_id is the job's id */
    cr_assert(strstr(j->payload, j->id) != NULL, "payload %s", j->payload);
    job_free(j);

    /* payload defaults to {}; CRLF and surrounding blanks are fine */
    cr_assert_eq(line("  {\"type\":\"noop\"}\r\n", &j, why), 1, "%s", why);
    cr_assert_str_eq(j->type, "noop");
    cr_assert_str_eq(j->payload, "{}");
    cr_assert_eq(j->not_before_ms, 0);
    job_free(j);

    /* now is 2025-11-28T03:20:00Z: three days ahead is fine */
    int64_t at;
    cr_assert_eq(clock_parse_rfc3339("2025-12-01T00:00:00Z", &at), 0);
    cr_assert_eq(line("{\"type\":\"noop\",\"run_at\":\"2025-12-01T00:00:00Z\"}", &j, why), 1,
                 "%s", why);
    cr_assert_eq(j->not_before_ms, at);
    job_free(j);
}

Test(ctl, ndjson_blank_lines_are_skipped, .init = load_cfg, .fini = free_cfg)
{
    struct job *j = (struct job *)1;
    char why[256];
    cr_assert_eq(line("", &j, why), 0);
    cr_assert_null(j);
    cr_assert_eq(line(" \t\r\n", &j, why), 0);
    cr_assert_null(j);
}

Test(ctl, ndjson_refusals_say_why, .init = load_cfg, .fini = free_cfg)
{
    static const struct {
        const char *line, *why;
    } bad[] = {
        { "{\"type\":\"noop\"", "not valid JSON" },
        { "[1,2]", "not a JSON object" },
        { "{\"payload\":{}}", "\"type\" is required" },
        { "{\"type\":7}", "\"type\" is required" },
        { "{\"type\":\"nope\"}", "unknown type \"nope\"" },
        { "{\"type\":\"noop\",\"paylaod\":{}}", "unknown member \"paylaod\"" },
        { "{\"type\":\"noop\",\"delay_ms\":-1}", "delay_ms: " },
        { "{\"type\":\"noop\",\"delay_ms\":1.5}", "delay_ms: wrong JSON type" },
        { "{\"type\":\"noop\",\"delay_ms\":\"soon\"}", "delay_ms: " },
        { "{\"type\":\"noop\",\"max_attempts\":0}", "max_attempts: " },
        { "{\"type\":\"noop\",\"idempotency_key\":\"\"}", "idempotency_key: " },
        { "{\"type\":\"noop\",\"delay_ms\":5,\"run_at\":\"2026-11-28T10:00:00Z\"}",
          "run_at: give delay_ms or run_at, not both" },
        { "{\"type\":\"activation\",\"payload\":{\"user_id\":7}}", "payload.offer_id: " },
        { "{\"type\":\"activation\",\"payload\":{\"user_id\":0,\"offer_id\":1}}",
          "payload.user_id: " },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct job *j = (struct job *)1;
        char why[256];
        cr_assert_eq(line(bad[i].line, &j, why), -1, "%s was accepted", bad[i].line);
        cr_assert_null(j, "%s", bad[i].line);
        cr_assert(strstr(why, bad[i].why) != NULL, "%s: why '%s', want '%s'", bad[i].line, why,
                  bad[i].why);
    }
}

Test(ctl, ndjson_why_is_bounded, .init = load_cfg, .fini = free_cfg)
{
    /* a long unknown name does not overflow the caller's buffer */
    char text[600], why[32];
    struct job *j = NULL;
    memset(text, 'x', sizeof(text));
    memcpy(text, "{\"type\":\"", 9);
    memcpy(text + sizeof(text) - 3, "\"}", 3);
    cr_assert_eq(ctl_ndjson_job(&c, text, strlen(text), 0, &j, why, sizeof(why)), -1);
    cr_assert_lt(strlen(why), sizeof(why));
}
