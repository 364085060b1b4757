/* Standard Webhooks verification (auth.c) and the network lists (cidr.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "auth.h"
#include "cidr.h"

/* The test vector published with the Standard Webhooks libraries. */
#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define MSG_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define TS "1614265330"
#define BODY "{\"test\": 2432232314}"
#define SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static enum auth_wh verify(const char *secrets, const char *id, const char *ts,
                           const char *sig, const char *body, long long now)
{
    return auth_webhook_verify(secrets, id, ts, sig, body, strlen(body), now, 300);
}

Test(webhook, the_published_vector_verifies)
{
    cr_assert_eq(verify(SECRET, MSG_ID, TS, SIG, BODY, 1614265330), AUTH_WH_OK);
    char out[64];
    cr_assert_eq(auth_webhook_sign(SECRET, MSG_ID, TS, BODY, strlen(BODY), out, sizeof(out)), 0);
    cr_assert_str_eq(out, SIG);
}

Test(webhook, every_failure_has_its_answer)
{
    long long now = 1614265330;
    cr_assert_eq(verify(SECRET, MSG_ID, TS, SIG, "{\"test\": 2432232315}", now), AUTH_WH_BAD);
    cr_assert_eq(verify(SECRET, "msg_other", TS, SIG, BODY, now), AUTH_WH_BAD);
    cr_assert_eq(verify("whsec_" "QUJDREVGR0hJSktMTU5PUA==", MSG_ID, TS, SIG, BODY, now),
                 AUTH_WH_BAD, "another secret");
    cr_assert_eq(verify(SECRET, MSG_ID, TS, SIG, BODY, now + 301), AUTH_WH_STALE);
    cr_assert_eq(verify(SECRET, MSG_ID, TS, SIG, BODY, now - 301), AUTH_WH_STALE, "future");
    cr_assert_eq(verify(SECRET, MSG_ID, "16142x", SIG, BODY, now), AUTH_WH_MISSING);
    cr_assert_eq(verify(SECRET, MSG_ID, TS, "v2,abc", BODY, now), AUTH_WH_MISSING);
    cr_assert_eq(auth_webhook_verify(SECRET, NULL, TS, SIG, BODY, strlen(BODY), now, 300),
                 AUTH_WH_MISSING);
    cr_assert_eq(verify("", MSG_ID, TS, SIG, BODY, now), AUTH_WH_NO_SECRET);
    cr_assert_eq(verify("whsec_!!", MSG_ID, TS, SIG, BODY, now), AUTH_WH_NO_SECRET);
}

Test(webhook, rotation_on_either_side)
{
    long long now = 1614265330;
    /* we hold the old and the new secret */
    cr_assert_eq(verify("whsec_QUJDREVGR0hJSktMTU5PUA==, " SECRET, MSG_ID, TS, SIG, BODY, now),
                 AUTH_WH_OK);
    /* the sender signs with two keys, one of which we know */
    cr_assert_eq(verify(SECRET, MSG_ID, TS, "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " SIG,
                        BODY, now),
                 AUTH_WH_OK);
}

Test(cidr, lists_match_v4_v6_and_mapped)
{
    struct cidr_list l;
    const char *bad;
    cr_assert_eq(cidr_parse("10.0.0.0/8, 192.0.2.7 2001:db8::/32,::1/128", &l, &bad), 0);
    cr_assert_eq(l.n, 4);
    cr_assert(cidr_match(&l, "10.200.3.4"));
    cr_assert(cidr_match(&l, "::ffff:10.1.2.3"), "IPv4-mapped");
    cr_assert(cidr_match(&l, "192.0.2.7"));
    cr_assert_not(cidr_match(&l, "192.0.2.8"));
    cr_assert(cidr_match(&l, "2001:db8:1::5"));
    cr_assert_not(cidr_match(&l, "2001:db9::5"));
    cr_assert(cidr_match(&l, "::1"));
    cr_assert_not(cidr_match(&l, "11.0.0.1"));
    cr_assert_not(cidr_match(&l, "not-an-ip"));
    cr_assert_not(cidr_match(&l, NULL));
    cr_assert_eq(cidr_parse("10.0.0.0/33", &l, &bad), -1);
    cr_assert_eq(cidr_parse("10.0.0.0/8,nope", &l, &bad), -1);
    cr_assert_str_eq(bad, "nope");
    cr_assert_eq(cidr_parse("", &l, &bad), 0);
    cr_assert_not(cidr_match(&l, "127.0.0.1"), "an empty list matches nothing");
    cr_assert_eq(cidr_parse("172.16.0.0/12", &l, &bad), 0);
    cr_assert(cidr_match(&l, "172.31.255.255"));
    cr_assert_not(cidr_match(&l, "172.32.0.0"));
}
