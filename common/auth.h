/* auth.h - producer API keys.
 *
 * Producers send `Authorization: Bearer <key>`. The configuration holds only
 * the SHA-256 of each key (cfg->api_keys), with its name and the job types it
 * may use. A presented key is hashed and compared with every configured hash
 * in constant time (CRYPTO_memcmp, no early exit), so timing tells neither
 * whether nor where a key matched. Keys and the header are never logged.
 * Every function here is thread-safe. */
#ifndef CV_AUTH_H
#define CV_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "rc.h"

/* Longest token accepted after "Bearer " (bytes). */
#define AUTH_TOKEN_MAX 512
/* Scopes. A key lists the job types it may submit and read, plus, when it
 * lists them, these words: "activation" (the seed endpoints: activation,
 * status, offers, accounts; also the activation job type) and "operator"
 * (queues, workers, dead letters). "*" grants every job type and every scope,
 * operator included. */
#define AUTH_SCOPE_ACTIVATION "activation"
#define AUTH_SCOPE_OPERATOR "operator"
#define AUTH_SCOPE_ORDERS "orders"   /* order reads, orchestrator routes, order job types */

/* SHA-256 of len bytes. */
void auth_sha256(const void *data, size_t len, unsigned char out[32]);
/* Lower-case hex of b[0..n) into out (2n + 1 bytes with the NUL). */
void auth_hex(const unsigned char *b, size_t n, char *out);
/* Lower-case hex of the SHA-256 (65 bytes with the NUL), for tools and tests. */
void auth_sha256_hex(const void *data, size_t len, char out[65]);

/* The key among keys[0..n) whose hash equals sha, or NULL. Looks at every key
 * whatever matches (constant time in the position of the match). */
const struct cfg_api_key *auth_match(const struct cfg_api_key *keys, int n,
                                     const unsigned char sha[32]);

/* The SHA-256 of the token of an Authorization header value (may be NULL):
 * CV_OK, or CV_ERR_AUTH when missing, not Bearer, empty or longer than
 * AUTH_TOKEN_MAX. For a caller that matches the hash against more than the
 * configuration's keys (api/api_keys.c: keys stored in PostgreSQL). */
enum cv_rc auth_bearer_sha(const char *authorization, unsigned char sha[32]);
/* The same for a bare key token[0..len) (the dashboard's login form). */
enum cv_rc auth_token_sha(const char *token, size_t len, unsigned char sha[32]);

/* Check an Authorization header value (may be NULL). CV_OK with *key set to
 * the configured key, or CV_ERR_AUTH when missing, not Bearer, empty, longer
 * than AUTH_TOKEN_MAX or unknown. *key points into c. */
enum cv_rc auth_check(const struct cfg *c, const char *authorization,
                      const struct cfg_api_key **key);

/* The same check for a bare key token[0..len) (the dashboard's login form):
 * CV_OK with *key, or CV_ERR_AUTH when empty, longer than AUTH_TOKEN_MAX or
 * unknown. Hashed and compared in constant time like auth_check. */
enum cv_rc auth_check_token(const struct cfg *c, const char *token, size_t len,
                            const struct cfg_api_key **key);

/* 1 when a[0..n) equals b[0..n), in time that depends on n only (secrets:
 * CSRF tokens, signatures). */
int auth_equal(const void *a, const void *b, size_t n);

/* 1 when k may use job type (or scope) type: a "*" key or one that lists it.
 * NULL k is never allowed. */
int auth_allows(const struct cfg_api_key *k, const char *type);
/* 1 when k may submit and read jobs of type: auth_allows() of the type's
 * name, or of the scope word its row in the job-type table names ("orders"
 * grants every order job). */
int auth_allows_type(const struct cfg_api_key *k, const char *type);

/* HMAC-SHA256 of data[0..len) under key[0..keylen) into out. Thread-safe.
 * Used by the Standard Webhooks signature (webhook-signature: v1,<base64>). */
void auth_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                      unsigned char out[32]);

/* Length of the standard base64 (RFC 4648, with padding) of n bytes, without the NUL. */
#define AUTH_B64_LEN(n) ((((n) + 2) / 3) * 4)

/* Standard base64 of data[0..len) with padding into out, NUL-terminated; out must hold
 * AUTH_B64_LEN(len) + 1 bytes. Returns the length written (without the NUL). */
size_t auth_b64_encode(const void *data, size_t len, char *out);

/* Decode standard base64 text[0..len) (padding optional, no whitespace) into out, which
 * must hold len / 4 * 3 + 3 bytes. Returns the number of bytes decoded, or -1 when the
 * text is not base64 (bad character, bad length, bits after the padding). */
long auth_b64_decode(const char *text, size_t len, unsigned char *out);

/* ---- Standard Webhooks (https://www.standardwebhooks.com) -------------------
 * A sender signs "<webhook-id>.<webhook-timestamp>.<body>" with HMAC-SHA256 and
 * sends "v1,<base64 signature>" in webhook-signature (several, space-separated,
 * while it rotates keys). Our secrets are "whsec_<base64 key>", comma- or
 * space-separated (several while we rotate). */
enum auth_wh {
    AUTH_WH_OK,
    AUTH_WH_MISSING,      /* a header is missing or malformed */
    AUTH_WH_STALE,        /* the timestamp is outside the tolerance (replay) */
    AUTH_WH_BAD,          /* no signature matches any secret */
    AUTH_WH_NO_SECRET,    /* we have no usable secret for this sender */
};
const char *auth_wh_str(enum auth_wh v);
/* Check one delivery. now_s is the wall clock; tolerance_s the window either
 * side. Every (signature, secret) pair is compared in constant time. */
enum auth_wh auth_webhook_verify(const char *secrets, const char *id, const char *timestamp,
                                 const char *signatures, const void *body, size_t len,
                                 int64_t now_s, int tolerance_s);
/* Sign as a sender does: "v1,<base64>" into out (at least 48 bytes). For
 * tests and the simulator. secret is one "whsec_..." value. -1 when the
 * secret is malformed. */
int auth_webhook_sign(const char *secret, const char *id, const char *timestamp,
                      const void *body, size_t len, char *out, size_t cap);

/* HMAC-SHA256 of data[0..len) under key[0..keylen) into out. Thread-safe.
 * Used by the Standard Webhooks signature (webhook-signature: v1,<base64>). */
void auth_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                      unsigned char out[32]);

/* Length of the standard base64 (RFC 4648, with padding) of n bytes, without the NUL. */
#define AUTH_B64_LEN(n) ((((n) + 2) / 3) * 4)

/* Standard base64 of data[0..len) with padding into out, NUL-terminated; out must hold
 * AUTH_B64_LEN(len) + 1 bytes. Returns the length written (without the NUL). */
size_t auth_b64_encode(const void *data, size_t len, char *out);

/* Decode standard base64 text[0..len) (padding optional, no whitespace) into out, which
 * must hold len / 4 * 3 + 3 bytes. Returns the number of bytes decoded, or -1 when the
 * text is not base64 (bad character, bad length, bits after the padding). */
long auth_b64_decode(const char *text, size_t len, unsigned char *out);

#endif
