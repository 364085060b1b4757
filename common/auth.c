/* auth.c - Bearer keys checked against SHA-256 hashes in constant time. */
#include "auth.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mem.h"

/* OpenSSL 3 looks an algorithm up in its provider store on every implicit
 * use (EVP_sha256(), SHA256()), which takes a lock shared by all threads.
 * Fetch the implementation once and pass it explicitly. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    CV_ASSERT(sha256_md);
}

void auth_sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    pthread_once(&sha256_once, sha256_fetch);
    int ok = EVP_Digest(data, len, out, &n, sha256_md, NULL);
    CV_ASSERT(ok == 1 && n == 32);
}

void auth_hex(const unsigned char *b, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void auth_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char h[32];
    auth_sha256(data, len, h);
    auth_hex(h, 32, out);
}

const struct cfg_api_key *auth_match(const struct cfg_api_key *keys, int n,
                                     const unsigned char sha[32])
{
    /* No branch on the comparison: build a mask from each result and keep
     * the index of the (single) match with it. */
    uintptr_t found = 0;
    size_t idx = 0;
    for (int i = 0; i < n; i++) {
        uintptr_t eq = (uintptr_t)(CRYPTO_memcmp(sha, keys[i].sha256, 32) == 0);
        uintptr_t mask = (uintptr_t)0 - eq;
        idx = (idx & ~mask) | ((size_t)i & mask);
        found |= eq;
    }
    return found ? &keys[idx] : NULL;
}

enum cv_rc auth_token_sha(const char *token, size_t len, unsigned char sha[32])
{
    if (!token || len == 0 || len > AUTH_TOKEN_MAX)
        return CV_ERR_AUTH;
    auth_sha256(token, len, sha);
    return CV_OK;
}

enum cv_rc auth_bearer_sha(const char *authorization, unsigned char sha[32])
{
    if (!authorization)
        return CV_ERR_AUTH;
    const char *p = authorization;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return CV_ERR_AUTH;
    p += 6;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t len = strlen(p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    return auth_token_sha(p, len, sha);
}

/* The configuration's key of hash sha, if any. */
static enum cv_rc match_cfg(const struct cfg *c, const unsigned char sha[32],
                            const struct cfg_api_key **key)
{
    const struct cfg_api_key *k = auth_match(c->api_keys, c->napi_keys, sha);
    if (!k)
        return CV_ERR_AUTH;
    *key = k;
    return CV_OK;
}

enum cv_rc auth_check(const struct cfg *c, const char *authorization,
                      const struct cfg_api_key **key)
{
    unsigned char sha[32];
    *key = NULL;
    if (auth_bearer_sha(authorization, sha) != CV_OK)
        return CV_ERR_AUTH;
    return match_cfg(c, sha, key);
}

enum cv_rc auth_check_token(const struct cfg *c, const char *token, size_t len,
                            const struct cfg_api_key **key)
{
    unsigned char sha[32];
    *key = NULL;
    if (auth_token_sha(token, len, sha) != CV_OK)
        return CV_ERR_AUTH;
    return match_cfg(c, sha, key);
}

int auth_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

int auth_allows(const struct cfg_api_key *k, const char *type)
{
    if (!k)
        return 0;
    if (k->all_types)
        return 1;
    for (int i = 0; i < k->ntypes; i++)
        if (strcmp(k->types[i], type) == 0)
            return 1;
    return 0;
}

int auth_allows_type(const struct cfg_api_key *k, const char *type)
{
    const struct jobtype *t = jobtype_find(type, strlen(type));
    return auth_allows(k, type) || (t && t->scope && auth_allows(k, t->scope));
}

/* ---- HMAC and base64 (webhook signatures) ----------------------------------- */

void auth_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                      unsigned char out[32])
{
    unsigned int n = 0;
    pthread_once(&sha256_once, sha256_fetch);
    /* HMAC() with an explicit EVP_MD: no provider lookup per call (see above). An
     * empty key is legal HMAC; OpenSSL wants a non-NULL pointer for it. */
    unsigned char *r = HMAC(sha256_md, keylen ? key : "", (int)keylen, data, len, out, &n);
    CV_ASSERT(r && n == 32);
}

static const char b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t auth_b64_encode(const void *data, size_t len, char *out)
{
    const unsigned char *p = data;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64_chars[v >> 18];
        out[o++] = b64_chars[(v >> 12) & 63];
        out[o++] = b64_chars[(v >> 6) & 63];
        out[o++] = b64_chars[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = b64_chars[v >> 18];
        out[o++] = b64_chars[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64_chars[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long auth_b64_decode(const char *text, size_t len, unsigned char *out)
{
    long rc = -1;
    size_t o = 0;
    uint32_t acc = 0;
    int nbits = 0;
    if (len % 4 == 0 && len >= 4 && text[len - 1] == '=')
        len -= text[len - 2] == '=' ? 2 : 1;
    if (len % 4 == 1)                    /* 6 bits cannot end a byte */
        goto out;
    for (size_t i = 0; i < len; i++) {
        int v = b64_val(text[i]);
        if (v < 0)
            goto out;
        acc = (acc << 6) | (uint32_t)v;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            out[o++] = (unsigned char)(acc >> nbits);
            acc &= (1u << nbits) - 1;
        }
    }
    if (acc != 0)                        /* bits left over that no byte used */
        goto out;
    rc = (long)o;
out:
    return rc;
}

/* ---- Standard Webhooks ------------------------------------------------------ */

const char *auth_wh_str(enum auth_wh v)
{
    static const char *const names[] = { "ok", "missing", "stale", "bad_signature",
                                         "no_secret" };
    return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "?";
}

/* The key of one "whsec_<base64>" secret of len bytes into key (at most 99
 * bytes); its length, or -1. */
static long wh_key(const char *s, size_t len, unsigned char key[104])
{
    if (len > 6 && memcmp(s, "whsec_", 6) == 0) {
        s += 6;
        len -= 6;
    }
    if (len == 0 || len > 128)
        return -1;
    return auth_b64_decode(s, len, key);
}

/* HMAC of "<id>.<ts>.<body>" under key. */
static void wh_mac(const unsigned char *key, size_t keylen, const char *id, const char *ts,
                   const void *body, size_t len, unsigned char mac[32])
{
    size_t il = strlen(id), tl = strlen(ts);
    unsigned char *msg = xmalloc(il + tl + 2 + len);
    memcpy(msg, id, il);
    msg[il] = '.';
    memcpy(msg + il + 1, ts, tl);
    msg[il + 1 + tl] = '.';
    if (len)
        memcpy(msg + il + tl + 2, body, len);
    auth_hmac_sha256(key, keylen, msg, il + tl + 2 + len, mac);
    free(msg);
}

enum auth_wh auth_webhook_verify(const char *secrets, const char *id, const char *timestamp,
                                 const char *signatures, const void *body, size_t len,
                                 int64_t now_s, int tolerance_s)
{
    if (!id || !timestamp || !signatures || !*id || strlen(id) > 256 || strlen(timestamp) > 20)
        return AUTH_WH_MISSING;
    char *end = NULL;
    errno = 0;
    long long ts = strtoll(timestamp, &end, 10);
    if (errno || end == timestamp || *end)
        return AUTH_WH_MISSING;
    if (ts < now_s - tolerance_s || ts > now_s + tolerance_s)
        return AUTH_WH_STALE;
    /* the signatures we were sent: "v1,<b64>" tokens; others (v1a, ...) skipped */
    unsigned char sent[8][32];
    int nsent = 0;
    for (const char *p = signatures; *p && nsent < 8;) {
        size_t n = strcspn(p, " ");
        if (n > 3 && memcmp(p, "v1,", 3) == 0 && n - 3 <= 64) {
            unsigned char buf[64];
            if (auth_b64_decode(p + 3, n - 3, buf) == 32)
                memcpy(sent[nsent++], buf, 32);
        }
        p += n;
        while (*p == ' ')
            p++;
    }
    if (nsent == 0)
        return AUTH_WH_MISSING;
    int nkeys = 0;
    uintptr_t match = 0;
    for (const char *p = secrets ? secrets : ""; *p;) {
        size_t n = strcspn(p, ", ");
        unsigned char key[104], mac[32];
        long kl = n ? wh_key(p, n, key) : -1;
        if (kl > 0) {
            nkeys++;
            wh_mac(key, (size_t)kl, id, timestamp, body, len, mac);
            /* no early exit: every pair is compared */
            for (int i = 0; i < nsent; i++)
                match |= (uintptr_t)(CRYPTO_memcmp(mac, sent[i], 32) == 0);
            OPENSSL_cleanse(key, sizeof(key));
        }
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    if (nkeys == 0)
        return AUTH_WH_NO_SECRET;
    return match ? AUTH_WH_OK : AUTH_WH_BAD;
}

int auth_webhook_sign(const char *secret, const char *id, const char *timestamp,
                      const void *body, size_t len, char *out, size_t cap)
{
    unsigned char key[104], mac[32];
    long kl = wh_key(secret, strlen(secret), key);
    if (kl <= 0 || cap < 48)
        return -1;
    wh_mac(key, (size_t)kl, id, timestamp, body, len, mac);
    memcpy(out, "v1,", 3);
    auth_b64_encode(mac, 32, out + 3);
    return 0;
}
