/* akey.h - API keys stored in PostgreSQL (migrations/0008_api_keys.sql), in
 * addition to the configuration's (cfg->api_keys).
 *
 * Why a table: an operator adds or revokes a key at 3 a.m. without a deploy or
 * a restart. `conveyorctl keys add` makes a random secret, prints it once and
 * stores only its SHA-256; every conveyor-api event loop reads the table every
 * AKEY_REFRESH_MS (api/api_keys.c), so a new key works, and a revoked one stops
 * working, within that period. A revoked name is refused whether its key comes
 * from the table or from the configuration (a leaked CONVEYOR_API_KEYS entry
 * is cut off at once and dropped from the configuration at the next deploy).
 *
 * Every SQL statement on the table is here: the API's (for its own
 * asynchronous connection: akey_sql_*) and conveyorctl's (synchronous calls).
 * Nothing here ever sees a secret except akey_secret_new, which makes one. */
#ifndef CV_AKEY_H
#define CV_AKEY_H

#include <stddef.h>

#include "cfg.h"
#include "rc.h"

struct db;
struct db_res;

/* How often the API reads the table (a failed read: again after up to 60 s). */
#define AKEY_REFRESH_MS 2000
/* Rows the API loads at most (newest first): far above any real fleet. */
#define AKEY_LOAD_MAX 1000

/* A secret: "cvk_" and 64 hex digits (32 random bytes from the kernel), NUL. */
#define AKEY_SECRET_LEN 69
void akey_secret_new(char out[AKEY_SECRET_LEN]);

/* The API's statements.
 *   akey_sql_load   no parameters. Columns: name, sha256 (NULL for a revocation
 *                   only), scopes as "a|b", revoked ("t"/"f"); at most
 *                   AKEY_LOAD_MAX rows.
 *   akey_sql_touch  $1 the names used since the last touch, as a text[] literal
 *                   ("{a,b}": names are [A-Za-z0-9._-], nothing to quote). */
extern const char akey_sql_load[];
extern const char akey_sql_touch[];

/* Row row of an akey_sql_load result into *k. 1 when it is a usable key, 0 when
 * the name is revoked (k->name is set, the rest is zero), -1 when the row is
 * malformed (k zeroed; the API skips it). */
int akey_from_row(const struct db_res *r, int row, struct cfg_api_key *k);

/* Check a comma-separated scope list ("operator,noop") and write it in the
 * configuration's form ("operator|noop") into out. Each scope is a job type,
 * "activation", "operator", "orders" or "*", at most CFG_MAX_KEY_TYPES of them,
 * none twice. 0, or -1 with *why (a static string naming the problem; the bad
 * scope is copied into bad, cap 32). */
int akey_scopes_parse(const char *csv, char *out, size_t cap, char bad[32], const char **why);

/* ---- conveyorctl (synchronous connection) ------------------------------- */

/* Store a new key. CV_OK; CV_ERR_CONFLICT when the name exists in any state
 * (revoked names are not reused: the audit trail stays readable) or the hash
 * does; CV_ERR_IO / CV_ERR_INTERNAL from db_exec (logged). */
enum cv_rc akey_add(struct db *d, const char *name, const char *sha256_hex,
                    const char *scopes_bar);

/* Revoke the key called name. *what: "revoked" (a stored key), "already" (it
 * was revoked before), "config" (no stored key: a revocation-only row was
 * written, for a configuration key of that name; only when config_ok, else
 * CV_ERR_NOT_FOUND and nothing written). */
enum cv_rc akey_revoke(struct db *d, const char *name, int config_ok, const char **what);

/* One row for `keys list`. Strings malloc'd, NULL for SQL NULL; sha_prefix is
 * the first 8 hex digits of the hash (the whole hash never leaves the table). */
struct akey_row {
    char *name, *sha_prefix, *scopes, *created_at, *revoked_at, *last_used_at;
};
/* Every row, by name. Free with akey_rows_free. */
enum cv_rc akey_list(struct db *d, struct akey_row **rows, size_t *n);
void akey_rows_free(struct akey_row *rows, size_t n);

#endif
