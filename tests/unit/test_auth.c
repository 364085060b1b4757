#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "cfg.h"

/* Two keys: "admin-secret" for every type, "noop-secret" for noop only. */
static void two_keys(struct cfg *c)
{
    char spec[256], hex[65];
    memset(c, 0, sizeof(*c));
    auth_sha256_hex("admin-secret", strlen("admin-secret"), hex);
    snprintf(spec, sizeof(spec), "admin:%s:*", hex);
    cr_assert_eq(cfg_parse_api_key(spec, &c->api_keys[0]), 0);
    auth_sha256_hex("noop-secret", strlen("noop-secret"), hex);
    snprintf(spec, sizeof(spec), "producer:%s:noop|order-fetch", hex);
    cr_assert_eq(cfg_parse_api_key(spec, &c->api_keys[1]), 0);
    c->napi_keys = 2;
}

Test(auth, sha256_known_vectors)
{
    char hex[65];
    auth_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    auth_sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(auth, match_finds_the_right_key_wherever_it_is)
{
    struct cfg c;
    two_keys(&c);
    unsigned char h[32];
    auth_sha256("admin-secret", 12, h);
    cr_assert_eq(auth_match(c.api_keys, c.napi_keys, h), &c.api_keys[0]);
    auth_sha256("noop-secret", 11, h);
    cr_assert_eq(auth_match(c.api_keys, c.napi_keys, h), &c.api_keys[1]);
    auth_sha256("noop-secreT", 11, h);
    cr_assert_null(auth_match(c.api_keys, c.napi_keys, h));
    cr_assert_null(auth_match(c.api_keys, 0, h));
}

Test(auth, bearer_header_parsing)
{
    struct cfg c;
    const struct cfg_api_key *k;
    two_keys(&c);
    cr_assert_eq(auth_check(&c, "Bearer admin-secret", &k), CV_OK);
    cr_assert_str_eq(k->name, "admin");
    cr_assert_eq(auth_check(&c, "bearer   noop-secret  ", &k), CV_OK);
    cr_assert_str_eq(k->name, "producer");
    cr_assert_eq(auth_check(&c, "BEARER\tnoop-secret", &k), CV_OK);
    cr_assert_eq(auth_check(&c, NULL, &k), CV_ERR_AUTH);
    cr_assert_null(k);
    cr_assert_eq(auth_check(&c, "", &k), CV_ERR_AUTH);
    cr_assert_eq(auth_check(&c, "Bearer", &k), CV_ERR_AUTH);
    cr_assert_eq(auth_check(&c, "Bearer ", &k), CV_ERR_AUTH);
    cr_assert_eq(auth_check(&c, "Bearer wrong", &k), CV_ERR_AUTH);
    cr_assert_eq(auth_check(&c, "Basic admin-secret", &k), CV_ERR_AUTH);
    cr_assert_eq(auth_check(&c, "Beareradmin-secret", &k), CV_ERR_AUTH);
    cr_assert_eq(auth_check(&c, "admin-secret", &k), CV_ERR_AUTH);
    /* the token is the whole rest: a key with a suffix is another key */
    cr_assert_eq(auth_check(&c, "Bearer admin-secret x", &k), CV_ERR_AUTH);
}

Test(auth, overlong_token_is_rejected_without_hashing_it)
{
    struct cfg c;
    const struct cfg_api_key *k;
    two_keys(&c);
    char big[AUTH_TOKEN_MAX + 32];
    strcpy(big, "Bearer ");
    memset(big + 7, 'a', AUTH_TOKEN_MAX + 1);
    big[7 + AUTH_TOKEN_MAX + 1] = '\0';
    cr_assert_eq(auth_check(&c, big, &k), CV_ERR_AUTH);
}

Test(auth, scopes)
{
    struct cfg c;
    two_keys(&c);
    const struct cfg_api_key *admin = &c.api_keys[0], *prod = &c.api_keys[1];
    cr_assert(auth_allows(admin, "activation"));
    cr_assert(auth_allows(admin, "noop"));
    cr_assert(auth_allows(admin, AUTH_SCOPE_OPERATOR));   /* "*" includes operator */
    cr_assert(auth_allows(prod, "noop"));
    cr_assert(auth_allows(prod, "order-fetch"));
    cr_assert_not(auth_allows(prod, "activation"));
    cr_assert_not(auth_allows(prod, "noo"));
    cr_assert_not(auth_allows(prod, AUTH_SCOPE_OPERATOR));
    cr_assert_not(auth_allows(prod, AUTH_SCOPE_ACTIVATION));
    cr_assert_not(auth_allows(NULL, "noop"));
    cr_assert_not(auth_allows(NULL, AUTH_SCOPE_OPERATOR));
}
