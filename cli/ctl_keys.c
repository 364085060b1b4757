/* ctl_keys.c - conveyorctl keys: API keys without a restart (common/akey.h).
 *
 *   keys add NAME --scopes a,b [--print-only]
 *       makes a random key, prints it ONCE with its CONVEYOR_API_KEYS entry and
 *       stores only its SHA-256 in api_keys: conveyor-api accepts it within
 *       AKEY_REFRESH_MS. --print-only stores nothing (for a configuration
 *       entry only).
 *   keys revoke NAME [--force]
 *       conveyor-api refuses every key of that name within AKEY_REFRESH_MS,
 *       stored or configured. A name only this conveyorctl's configuration
 *       knows (or any name, with --force) gets a revocation-only row.
 *   keys list
 *       stored keys and this conveyorctl's configured ones: name, where, state,
 *       scopes, the first 8 hex digits of the hash, created, last used.
 *
 * The secret exists in this process only between akey_secret_new and the
 * printf that shows it; it is never logged and never stored. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "akey.h"
#include "auth.h"
#include "ctl.h"
#include "db.h"
#include "mem.h"
#include "sbuf.h"

static int add(const struct cfg *c, int argc, char **argv)
{
    const char *name = NULL, *scopes = NULL;
    int print_only = 0, ret;
    char bar[CFG_MAX_KEY_TYPES * 32 + 16], bad[32], secret[AKEY_SECRET_LEN], sha[65];
    const char *why = NULL;
    struct cfg_api_key k;
    struct db *d = NULL;
    for (int i = 2; i < argc; i++) {
        int m;
        if ((m = ctl_opt(argc, argv, &i, "--scopes", &scopes)) != 0) {
            if (m < 0)
                return CTL_EXIT_USAGE;
        } else if (ctl_flag(argv, i, "--print-only")) {
            print_only = 1;
        } else if (!name && argv[i][0] != '-') {
            name = argv[i];
        } else {
            return ctl_usage("keys add: unexpected argument '%s'", argv[i]);
        }
    }
    if (!name || !scopes)
        return ctl_usage("keys add: want 'keys add NAME --scopes a,b'");
    if (akey_scopes_parse(scopes, bar, sizeof(bar), bad, &why) != 0)
        return ctl_usage("keys add: --scopes: %s%s%s%s", why, bad[0] ? " ('" : "", bad,
                         bad[0] ? "')" : "");
    akey_secret_new(secret);
    auth_sha256_hex(secret, strlen(secret), sha);
    /* the configuration's parser checks the name as it will check the entry */
    char *spec = xasprintf("%s:%s:%s", name, sha, bar);
    int bad_name = cfg_parse_api_key(spec, &k) != 0;
    free(spec);
    if (bad_name) {
        ret = ctl_usage("keys add: a name is 1..63 of A-Z a-z 0-9 . _ -, not '%s'", name);
        goto out;
    }
    if (!print_only) {
        ret = ctl_db_open(c, "keys add", &d);
        if (ret != CTL_EXIT_OK)
            goto out;
        enum cv_rc rc = akey_add(d, name, sha, bar);
        if (rc == CV_ERR_CONFLICT) {
            ret = ctl_failx(CTL_EXIT_CONFLICT,
                            "keys add: a key called %s exists (revoked names are not reused: "
                            "choose another name)", name);
            goto out;
        }
        if (rc != CV_OK) {
            ret = ctl_failx(ctl_exit_of(rc), "keys add: cannot store it: %s", db_last_error(d));
            goto out;
        }
    }
    if (ctl_json) {
        struct sbuf b;
        sbuf_init(&b);
        sbuf_adds(&b, "{\"name\":");
        sbuf_add_json_str(&b, name);
        sbuf_addf(&b, ",\"secret\":\"%s\",\"sha256\":\"%s\",\"scopes\":", secret, sha);
        sbuf_add_json_str(&b, scopes);
        sbuf_addf(&b, ",\"env_entry\":\"%s:%s:%s\",\"stored\":%s}", name, sha, bar,
                  print_only ? "false" : "true");
        puts(b.p);
        sbuf_cleanup(&b);
    } else {
        printf("secret   %s\n", secret);
        printf("         shown once: it is stored nowhere; hand it to the client now\n");
        if (!print_only)
            printf("stored   api_keys row %s (SHA-256 only): conveyor-api accepts it within "
                   "%d s\n", name, AKEY_REFRESH_MS / 1000);
        printf("env      %s:%s:%s\n", name, sha, bar);
        printf("         the same key as a CONVEYOR_API_KEYS entry%s\n",
               print_only ? " (nothing was stored)" : ", if you prefer configuration");
    }
    ret = CTL_EXIT_OK;
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    db_free(d);
    return ret;
}

static int configured(const struct cfg *c, const char *name)
{
    for (int i = 0; i < c->napi_keys; i++)
        if (strcmp(c->api_keys[i].name, name) == 0)
            return 1;
    return 0;
}

static int revoke(const struct cfg *c, int argc, char **argv)
{
    const char *name = NULL, *what = NULL;
    int force = 0, ret;
    struct db *d = NULL;
    for (int i = 2; i < argc; i++) {
        if (ctl_flag(argv, i, "--force"))
            force = 1;
        else if (!name && argv[i][0] != '-')
            name = argv[i];
        else
            return ctl_usage("keys revoke: unexpected argument '%s'", argv[i]);
    }
    if (!name)
        return ctl_usage("keys revoke: want 'keys revoke NAME'");
    ret = ctl_db_open(c, "keys revoke", &d);
    if (ret != CTL_EXIT_OK)
        return ret;
    int conf = configured(c, name);
    enum cv_rc rc = akey_revoke(d, name, conf || force, &what);
    if (rc == CV_ERR_NOT_FOUND) {
        ret = ctl_failx(CTL_EXIT_NOT_FOUND,
                        "keys revoke: no stored key %s, and this conveyorctl's configuration "
                        "has none of that name (--force records the revocation anyway)",
                        name);
    } else if (rc != CV_OK) {
        ret = ctl_failx(ctl_exit_of(rc), "keys revoke: %s", db_last_error(d));
    } else {
        if (ctl_json) {
            struct sbuf b;
            sbuf_init(&b);
            sbuf_adds(&b, "{\"name\":");
            sbuf_add_json_str(&b, name);
            sbuf_addf(&b, ",\"result\":\"%s\",\"configured\":%s}", what, conf ? "true" : "false");
            puts(b.p);
            sbuf_cleanup(&b);
        } else if (strcmp(what, "already") == 0)
            printf("%s was revoked already\n", name);
        else
            printf("revoked %s: conveyor-api refuses it within %d s%s\n", name,
                   AKEY_REFRESH_MS / 1000,
                   conf ? "; it is also in the configuration (api_keys / CONVEYOR_API_KEYS): "
                          "remove it there at the next deploy"
                        : "");
        ret = CTL_EXIT_OK;
    }
    db_free(d);
    return ret;
}

/* The scopes of a configured key as "a,b". */
static void cfg_scopes(const struct cfg_api_key *k, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    if (k->all_types) {
        snprintf(out, cap, "*");
        return;
    }
    for (int i = 0; i < k->ntypes && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "," : "", k->types[i]);
}

static void list_row(const char *name, const char *source, const char *state,
                     const char *scopes, const char *sha8, const char *created,
                     const char *last_used)
{
    if (!ctl_json) {
        printf("%-24s %-7s %-8s %-8s %-24s %-27s %s\n", name, source, state, sha8 ? sha8 : "-",
               scopes && *scopes ? scopes : "-", created ? created : "-",
               last_used ? last_used : "-");
        return;
    }
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"name\":");
    sbuf_add_json_str(&b, name);
    sbuf_addf(&b, ",\"source\":\"%s\",\"state\":\"%s\",\"scopes\":", source, state);
    sbuf_add_json_str(&b, scopes ? scopes : "");
    const char *k[] = { "sha256_prefix", "created_at", "last_used_at" };
    const char *v[] = { sha8, created, last_used };
    for (int i = 0; i < 3; i++) {
        sbuf_addf(&b, ",\"%s\":", k[i]);
        if (v[i])
            sbuf_add_json_str(&b, v[i]);
        else
            sbuf_adds(&b, "null");
    }
    sbuf_add(&b, "}", 1);
    puts(b.p);
    sbuf_cleanup(&b);
}

static int list(const struct cfg *c, int argc, char **argv)
{
    struct db *d = NULL;
    struct akey_row *rows = NULL;
    size_t n = 0;
    if (argc > 2)
        return ctl_usage("keys list: unexpected argument '%s'", argv[2]);
    int ret = ctl_db_open(c, "keys list", &d);
    if (ret != CTL_EXIT_OK)
        return ret;
    enum cv_rc rc = akey_list(d, &rows, &n);
    if (rc != CV_OK) {
        ret = ctl_failx(ctl_exit_of(rc), "keys list: %s", db_last_error(d));
        goto out;
    }
    if (!ctl_json)
        printf("%-24s %-7s %-8s %-8s %-24s %-27s %s\n", "NAME", "SOURCE", "STATE", "SHA256",
               "SCOPES", "CREATED", "LAST_USED");
    for (size_t i = 0; i < n; i++) {
        if (!rows[i].sha_prefix)
            continue;     /* a revocation only: shown with its configured key below */
        list_row(rows[i].name, "stored", rows[i].revoked_at ? "revoked" : "active",
                 rows[i].scopes, rows[i].sha_prefix, rows[i].created_at, rows[i].last_used_at);
    }
    for (int i = 0; i < c->napi_keys; i++) {
        const struct cfg_api_key *k = &c->api_keys[i];
        char scopes[CFG_MAX_KEY_TYPES * 32 + 16], sha8[9];
        const char *state = "active";
        for (size_t r = 0; r < n; r++)
            if (strcmp(rows[r].name, k->name) == 0 && rows[r].revoked_at)
                state = "revoked";
        cfg_scopes(k, scopes, sizeof(scopes));
        snprintf(sha8, sizeof(sha8), "%02x%02x%02x%02x", k->sha256[0], k->sha256[1],
                 k->sha256[2], k->sha256[3]);
        list_row(k->name, "config", state, scopes, sha8, NULL, NULL);
    }
    ret = CTL_EXIT_OK;
out:
    akey_rows_free(rows, n);
    db_free(d);
    return ret;
}

int ctl_keys(const struct cfg *c, int argc, char **argv)
{
    if (argc < 2)
        return ctl_usage("keys: want 'keys add|revoke|list'");
    if (strcmp(argv[1], "add") == 0)
        return add(c, argc, argv);
    if (strcmp(argv[1], "revoke") == 0)
        return revoke(c, argc, argv);
    if (strcmp(argv[1], "list") == 0)
        return list(c, argc, argv);
    return ctl_usage("keys: unknown subcommand '%s' (add, revoke, list)", argv[1]);
}
