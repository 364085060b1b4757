#include <criterion/criterion.h>
#include <string.h>

#include "trc.h"

Test(trc, parse_and_format_module_lists)
{
    unsigned m = 99;
    char buf[96];
    cr_assert_eq(trc_parse("", &m), 0);
    cr_assert_eq(m, 0);
    cr_assert_eq(trc_parse(" ups , worker ", &m), 0);
    cr_assert_eq(m, (1u << TRC_UPS) | (1u << TRC_WORKER));
    cr_assert_str_eq(trc_format(m, buf, sizeof(buf)), "worker,ups");
    cr_assert_eq(trc_parse("all", &m), 0);
    cr_assert_eq(m, TRC_ALL);
    cr_assert_str_eq(trc_format(m, buf, sizeof(buf)), "api,worker,broker,ups,db");
    cr_assert_eq(trc_parse("off", &m), 0);
    cr_assert_str_eq(trc_format(m, buf, sizeof(buf)), "off");
    m = 5;
    cr_assert_eq(trc_parse("ups,nosuch", &m), -1);
    cr_assert_eq(m, 5, "a refused list leaves the mask alone");
    cr_assert_eq(trc_parse("upsx", &m), -1);
    cr_assert_eq(trc_parse("api;db", &m), -1);
}

Test(trc, follow_the_key_then_back_to_the_configuration)
{
    trc_configure(1u << TRC_DB);
    cr_assert(trc_on(TRC_DB) && !trc_on(TRC_API));
    trc_follow("api");
    cr_assert(trc_on(TRC_API) && !trc_on(TRC_DB));
    trc_follow("bogus"); /* a typo in the key changes nothing */
    cr_assert(trc_on(TRC_API) && !trc_on(TRC_DB));
    trc_follow(NULL);    /* the key gone: as configured */
    cr_assert(trc_on(TRC_DB) && !trc_on(TRC_API));
    trc_configure(0);
}

Test(trc, a_span_of_a_module_off_does_nothing_and_one_on_takes_the_trace_context)
{
    struct trc_span s;
    trc_configure(0);
    trc_enter(&s, TRC_UPS, "mirakl PUT", "job-1", NULL);
    cr_assert_eq(s.on, 0);
    trc_exit(&s, NULL); /* a no-op */
    trc_configure(1u << TRC_UPS);
    trc_enter(&s, TRC_UPS, "mirakl PUT", "job-1",
              "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    cr_assert_eq(s.on, 1);
    cr_assert_str_eq(s.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    cr_assert_str_eq(s.parent_id, "00f067aa0ba902b7");
    cr_assert_eq(strlen(s.span_id), 16);
    trc_exit(&s, NULL);
    cr_assert_eq(s.on, 0, "ended once");
    trc_enter(&s, TRC_UPS, "x", NULL, "4bf92f3577b34da6a3ce929d0e0e4736");
    cr_assert_str_eq(s.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    cr_assert_str_eq(s.parent_id, "");
    trc_exit(&s, "transient 503");
    trc_enter(&s, TRC_UPS, "x", NULL, "not-a-context");
    cr_assert_eq(strlen(s.trace_id), 32, "a new trace id when there is none");
    trc_exit(&s, NULL);
    trc_configure(0);
}
