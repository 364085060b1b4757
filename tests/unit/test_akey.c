/* test_akey.c - stored API keys (common/akey.c): secrets and scope lists. The table and
 * the API's reading of it run against real PostgreSQL in tests/integ/test_ctl.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "akey.h"
#include "auth.h"
#include "cfg.h"

Test(akey, secrets_are_random_and_well_formed)
{
    char a[AKEY_SECRET_LEN], b[AKEY_SECRET_LEN];
    akey_secret_new(a);
    akey_secret_new(b);
    cr_assert_eq(strlen(a), AKEY_SECRET_LEN - 1);
    cr_assert_eq(strncmp(a, "cvk_", 4), 0);
    cr_assert_eq(strspn(a + 4, "0123456789abcdef"), 64);
    cr_assert_str_neq(a, b);
    cr_assert_leq(strlen(a), AUTH_TOKEN_MAX);   /* the API accepts it as a Bearer token */
}

Test(akey, scopes_in_the_configuration_form)
{
    char out[256], bad[32];
    const char *why = "x";
    cr_assert_eq(akey_scopes_parse("operator,noop,activation", out, sizeof(out), bad, &why), 0);
    cr_assert_str_eq(out, "operator|noop|activation");
    cr_assert_null(why);
    cr_assert_eq(akey_scopes_parse("*", out, sizeof(out), bad, &why), 0);
    cr_assert_str_eq(out, "*");
    cr_assert_eq(akey_scopes_parse("orders,carrier-post", out, sizeof(out), bad, &why), 0);
    cr_assert_str_eq(out, "orders|carrier-post");

    /* the result parses as a configured key's scopes would */
    char spec[400];
    struct cfg_api_key k;
    snprintf(spec, sizeof(spec), "ops:%064d:%s", 0, "operator|noop");
    cr_assert_eq(cfg_parse_api_key(spec, &k), 0);
    cr_assert_eq(k.ntypes, 2);
}

Test(akey, scopes_refused_with_the_culprit)
{
    static const struct {
        const char *in, *bad, *why;
    } cases[] = {
        { "", "", "no scope given" },
        { "operator,,noop", "", "empty scope" },
        { "operator,", "", "empty scope" },
        { ",noop", "", "empty scope" },
        { "operater", "operater", "unknown scope" },
        { "noop,noop", "noop", "given twice" },
        { "noop,a|b", "a|b", "unknown scope" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256], bad[32];
        const char *why = NULL;
        cr_assert_eq(akey_scopes_parse(cases[i].in, out, sizeof(out), bad, &why), -1, "%s",
                     cases[i].in);
        cr_assert(why && strstr(why, cases[i].why), "'%s': why %s", cases[i].in, why);
        cr_assert_str_eq(bad, cases[i].bad, "'%s'", cases[i].in);
    }
}

Test(akey, scopes_bounded_by_the_buffer)
{
    char out[1024], bad[32], in[1024] = "";
    const char *why = NULL;
    /* every job type and every scope word */
    const char *words[] = { "noop",           "activation",   "order-fetch", "carrier-post",
                            "tracking-event", "tracking-poll", "tracking-push",
                            "ml-notification", "operator",    "orders",      "*" };
    size_t n = sizeof(words) / sizeof(words[0]);
    for (size_t i = 0; i < n; i++)
        snprintf(in + strlen(in), sizeof(in) - strlen(in), "%s%s", i ? "," : "", words[i]);
    cr_assert_eq(akey_scopes_parse(in, out, sizeof(out), bad, &why), 0, "%s", why);
    /* a buffer too small for the result is refused, not overrun */
    cr_assert_eq(akey_scopes_parse(in, out, 20, bad, &why), -1);
}
