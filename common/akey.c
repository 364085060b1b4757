/* akey.c - API keys stored in PostgreSQL: the statements and the row format. */
#include "akey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "db.h"
#include "jobtype.h"
#include "mem.h"
#include "uuid.h"

/* ---- secrets ---------------------------------------------------------------- */

void akey_secret_new(char out[AKEY_SECRET_LEN])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[32];
    uuid_random_bytes(b, sizeof(b));   /* the kernel's, not the id pool: a secret */
    memcpy(out, "cvk_", 4);
    for (int i = 0; i < 32; i++) {
        out[4 + 2 * i] = hex[b[i] >> 4];
        out[4 + 2 * i + 1] = hex[b[i] & 15];
    }
    out[68] = '\0';
}

/* ---- the API's statements --------------------------------------------------- */

const char akey_sql_load[] =
    "SELECT name, sha256, array_to_string(scopes, '|'), revoked_at IS NOT NULL"
    " FROM api_keys ORDER BY created_at DESC LIMIT 1000";
/* Keep the LIMIT above equal to AKEY_LOAD_MAX. */
_Static_assert(AKEY_LOAD_MAX == 1000, "akey_sql_load's LIMIT");

const char akey_sql_touch[] =
    "UPDATE api_keys SET last_used_at = now() WHERE name = ANY($1::text[])"
    " AND revoked_at IS NULL";

int akey_from_row(const struct db_res *r, int row, struct cfg_api_key *k)
{
    const char *name = db_res_get(r, row, 0), *sha = db_res_get(r, row, 1);
    const char *scopes = db_res_get(r, row, 2), *revoked = db_res_get(r, row, 3);
    memset(k, 0, sizeof(*k));
    if (!name || !*name || strlen(name) >= sizeof(k->name) || !revoked)
        return -1;
    if (strcmp(revoked, "t") == 0 || !sha) {
        snprintf(k->name, sizeof(k->name), "%s", name);
        return 0;
    }
    /* The configuration's parser checks name, hash and scopes as it does for
     * CONVEYOR_API_KEYS: a row takes the same path as an entry there. */
    char *spec = xasprintf("%s:%s:%s", name, sha, scopes ? scopes : "");
    int ok = cfg_parse_api_key(spec, k) == 0;
    free(spec);
    if (!ok) {
        memset(k, 0, sizeof(*k));
        return -1;
    }
    return 1;
}

static int is_word(const char *p, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(p, word, len) == 0;
}

int akey_scopes_parse(const char *csv, char *out, size_t cap, char bad[32], const char **why)
{
    int rc = -1, n = 0;
    size_t o = 0;
    char seen[CFG_MAX_KEY_TYPES][32];
    bad[0] = '\0';
    *why = "no scope given";
    for (const char *p = csv; p && *p;) {
        size_t len = strcspn(p, ",");
        snprintf(bad, 32, "%.*s", (int)(len < 31 ? len : 31), p);
        *why = "empty scope";
        if (len == 0)
            goto out;
        *why = "unknown scope (a job type, activation, operator, orders or *)";
        if (len >= 32)
            goto out;
        if (!is_word(p, len, "*") && !jobtype_find(p, len) &&
            !is_word(p, len, AUTH_SCOPE_ACTIVATION) && !is_word(p, len, AUTH_SCOPE_OPERATOR) &&
            !is_word(p, len, AUTH_SCOPE_ORDERS))
            goto out;
        *why = "scope given twice";
        for (int i = 0; i < n; i++)
            if (is_word(p, len, seen[i]))
                goto out;
        *why = "too many scopes";
        if (n >= CFG_MAX_KEY_TYPES || o + len + 2 > cap)
            goto out;
        memcpy(seen[n], p, len);
        seen[n][len] = '\0';
        n++;
        if (o)
            out[o++] = '|';
        memcpy(out + o, p, len);
        o += len;
        p += len;
        if (*p == ',')
            p++;
        if (*p == '\0' && p[-1] == ',') {
            *why = "empty scope";
            bad[0] = '\0';
            goto out;
        }
    }
    *why = "no scope given";
    if (n == 0)
        goto out;
    out[o] = '\0';
    bad[0] = '\0';
    *why = NULL;
    rc = 0;
out:
    return rc;
}

/* ---- conveyorctl -------------------------------------------------------------- */

enum cv_rc akey_add(struct db *d, const char *name, const char *sha256_hex,
                    const char *scopes_bar)
{
    enum cv_rc rc;
    const char *params[] = { name, sha256_hex, scopes_bar };
    /* string_to_array: the scopes travel as one text parameter, like the load's */
    struct db_res *r = db_exec(d,
                               "INSERT INTO api_keys (name, sha256, scopes)"
                               " VALUES ($1, $2, string_to_array($3, '|'))"
                               " ON CONFLICT DO NOTHING RETURNING name",
                               3, params, &rc);
    if (!r)
        return rc;
    rc = db_res_rows(r) == 1 ? CV_OK : CV_ERR_CONFLICT;
    db_res_free(r);
    return rc;
}

enum cv_rc akey_revoke(struct db *d, const char *name, int config_ok, const char **what)
{
    enum cv_rc rc;
    const char *params[] = { name };
    *what = NULL;
    /* revoked_at keeps the first revocation's time (an audit trail) */
    struct db_res *r = db_exec(d,
                               "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
                               " WHERE name = $1 RETURNING revoked_at = now()",
                               1, params, &rc);
    if (!r)
        return rc;
    if (db_res_rows(r) == 1) {
        const char *now = db_res_get(r, 0, 0);
        *what = now && strcmp(now, "t") == 0 ? "revoked" : "already";
        db_res_free(r);
        return CV_OK;
    }
    db_res_free(r);
    if (!config_ok)
        return CV_ERR_NOT_FOUND;
    r = db_exec(d,
                "INSERT INTO api_keys (name, revoked_at) VALUES ($1, now())"
                " ON CONFLICT DO NOTHING RETURNING name",
                1, params, &rc);
    if (!r)
        return rc;
    /* a concurrent revoke of the same name won the race: revoked all the same */
    *what = db_res_rows(r) == 1 ? "config" : "already";
    db_res_free(r);
    return CV_OK;
}

enum cv_rc akey_list(struct db *d, struct akey_row **rows, size_t *n)
{
    enum cv_rc rc;
    *rows = NULL;
    *n = 0;
    struct db_res *r = db_exec(d,
                               "SELECT name, left(sha256, 8), array_to_string(scopes, ','),"
                               " cv_ts(created_at), cv_ts(revoked_at), cv_ts(last_used_at)"
                               " FROM api_keys ORDER BY name",
                               0, NULL, &rc);
    if (!r)
        return rc;
    size_t k = (size_t)db_res_rows(r);
    struct akey_row *v = xcalloc(k ? k : 1, sizeof(*v));
    for (size_t i = 0; i < k; i++) {
        char **f[] = { &v[i].name,       &v[i].sha_prefix, &v[i].scopes,
                       &v[i].created_at, &v[i].revoked_at, &v[i].last_used_at };
        for (int c = 0; c < 6; c++) {
            const char *s = db_res_get(r, (int)i, c);
            *f[c] = s ? xstrdup(s) : NULL;
        }
    }
    db_res_free(r);
    *rows = v;
    *n = k;
    return CV_OK;
}

void akey_rows_free(struct akey_row *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].name);
        free(rows[i].sha_prefix);
        free(rows[i].scopes);
        free(rows[i].created_at);
        free(rows[i].revoked_at);
        free(rows[i].last_used_at);
    }
    free(rows);
}
