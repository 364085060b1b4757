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

/* The dashboard's login form: a bare key, no "Bearer". */
Test(auth, bare_token_check)
{
    struct cfg c;
    const struct cfg_api_key *k;
    char big[AUTH_TOKEN_MAX + 2];
    two_keys(&c);
    cr_assert_eq(auth_check_token(&c, "admin-secret", 12, &k), CV_OK);
    cr_assert_str_eq(k->name, "admin");
    cr_assert_eq(auth_check_token(&c, "admin-secret", 11, &k), CV_ERR_AUTH, "a prefix is not it");
    cr_assert_null(k);
    cr_assert_eq(auth_check_token(&c, "Bearer admin-secret", 19, &k), CV_ERR_AUTH);
    cr_assert_eq(auth_check_token(&c, "", 0, &k), CV_ERR_AUTH);
    cr_assert_eq(auth_check_token(&c, NULL, 0, &k), CV_ERR_AUTH);
    memset(big, 'a', sizeof(big));
    cr_assert_eq(auth_check_token(&c, big, AUTH_TOKEN_MAX + 1, &k), CV_ERR_AUTH);
}

Test(auth, equal_and_hex)
{
    cr_assert(auth_equal("abcdef", "abcdef", 6));
    cr_assert_not(auth_equal("abcdef", "abcdeF", 6));
    cr_assert_not(auth_equal("Xbcdef", "abcdef", 6));
    char hex[9];
    auth_hex((const unsigned char *)"\x00\x7f\xa5\xff", 4, hex);
    cr_assert_str_eq(hex, "007fa5ff");
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

/* ---- HMAC-SHA256 (RFC 4231) and base64 (RFC 4648) --------------------------------- */

static void hex_of(const unsigned char *b, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

Test(auth, hmac_sha256_rfc4231_vectors)
{
    unsigned char key[131], data[152], mac[32];
    char hex[65];

    memset(key, 0x0b, 20);               /* test case 1 */
    auth_hmac_sha256(key, 20, "Hi There", 8, mac);
    hex_of(mac, 32, hex);
    cr_assert_str_eq(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    auth_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);   /* case 2 */
    hex_of(mac, 32, hex);
    cr_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    memset(key, 0xaa, 20);               /* case 3 */
    memset(data, 0xdd, 50);
    auth_hmac_sha256(key, 20, data, 50, mac);
    hex_of(mac, 32, hex);
    cr_assert_str_eq(hex, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

    memset(key, 0xaa, 131);              /* case 6: a key longer than the block */
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    auth_hmac_sha256(key, 131, m6, strlen(m6), mac);
    hex_of(mac, 32, hex);
    cr_assert_str_eq(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

Test(auth, b64_rfc4648_vectors_round_trip)
{
    static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
                                       "Zm9vYmFy" };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        char out[16];
        unsigned char dec[16];
        size_t n = auth_b64_encode(plain[i], strlen(plain[i]), out);
        cr_assert_eq(n, strlen(enc[i]));
        cr_assert_str_eq(out, enc[i]);
        long d = auth_b64_decode(enc[i], strlen(enc[i]), dec);
        cr_assert_eq(d, (long)strlen(plain[i]), "decode %s", enc[i]);
        cr_assert_eq(memcmp(dec, plain[i], (size_t)d), 0);
    }
    unsigned char dec[16];
    cr_assert_eq(auth_b64_decode("Zm9vYg", 6, dec), 4, "padding is optional");
    cr_assert_eq(auth_b64_decode("Zm9v!g==", 8, dec), -1, "bad character");
    cr_assert_eq(auth_b64_decode("Zm9vY", 5, dec), -1, "bad length");
    cr_assert_eq(auth_b64_decode("Zh==", 4, dec), -1, "bits after the last byte");
}
