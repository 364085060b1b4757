/* ctl_migrate.c - conveyorctl migrate [up|status] [--dir DIR]: apply
 * migrations/NNNN_name.sql in order (up, also plain `migrate`), or say which
 * are applied and which pending (status: reads only, takes no lock).
 *
 * A session advisory lock serialises concurrent runs (two deploy hooks, or a
 * test harness starting several stacks on one database). Each file runs in
 * its own transaction together with its schema_migrations row, so a file is
 * either applied and recorded or neither. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "db.h"
#include "mem.h"

/* pg_advisory_lock key of `conveyorctl migrate`: "cvmigrat" read as a
 * big-endian 64-bit number. */
#define MIGRATE_LOCK_KEY "7167036156481266036"
#define MIGRATION_MAX_BYTES (16 * 1024 * 1024)

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The default directory: $CONVEYOR_MIGRATIONS, ./migrations, then
 * <dir of the executable>/../migrations. Returns a new string or NULL. */
static char *default_dir(void)
{
    const char *env = getenv("CONVEYOR_MIGRATIONS");
    if (env && *env)
        return xstrdup(env);
    if (is_dir("migrations"))
        return xstrdup("migrations");
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    char *dir = xasprintf("%s/../migrations", exe);
    if (!is_dir(dir))
        FREE_NULL(dir);
    return dir;
}

/* "0001_init.sql": four digits, '_', a name, ".sql". */
static int is_migration(const char *name)
{
    size_t n = strlen(name);
    if (n < 10 || strcmp(name + n - 4, ".sql") != 0)
        return 0;
    for (int i = 0; i < 4; i++)
        if (!isdigit((unsigned char)name[i]))
            return 0;
    return name[4] == '_';
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* File names of the migrations in dir, sorted. Returns -1 when dir is unreadable. */
static int list_migrations(const char *dir, char ***out, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char **v = NULL;
    size_t len = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_migration(e->d_name))
            continue;
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof(*v));
        }
        v[len++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (len > 1)
        qsort(v, len, sizeof(*v), cmp_str);
    *out = v;
    *n = len;
    return 0;
}

/* Read a whole file into a new NUL-terminated string, or NULL (errno set). */
static char *read_file(const char *path)
{
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 65536;
            buf = xrealloc(buf, cap + 1);
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
        if (len > MIGRATION_MAX_BYTES) {
            errno = EFBIG;
            FREE_NULL(buf);
            break;
        }
    }
    if (buf && ferror(f)) {
        errno = EIO;
        FREE_NULL(buf);
    }
    fclose(f);
    if (buf) {
        buf[len] = '\0';
        if (strlen(buf) != len) {
            errno = EINVAL;     /* a NUL byte: not SQL text */
            FREE_NULL(buf);
        }
    }
    return buf;
}

static int applied_has(struct db_res *applied, const char *version)
{
    for (int i = 0; i < db_res_rows(applied); i++) {
        const char *v = db_res_get(applied, i, 0);
        if (v && strcmp(v, version) == 0)
            return 1;
    }
    return 0;
}

static int in_files(char **files, size_t n, const char *version)
{
    size_t vlen = strlen(version);
    for (size_t i = 0; i < n; i++)
        if (strncmp(files[i], version, vlen) == 0 && strcmp(files[i] + vlen, ".sql") == 0)
            return 1;
    return 0;
}

/* Apply one file in its own transaction. Returns 0 or -1 (message printed). */
static int apply_one(struct db *d, const char *dir, const char *file, const char *version)
{
    int ret = -1;
    char *path = xasprintf("%s/%s", dir, file);
    char *sql = read_file(path);
    if (!sql) {
        ctl_fail("migration %s: cannot read %s: %s", file, path, strerror(errno));
        goto out;
    }
    if (db_run(d, "BEGIN", 0, NULL) != CV_OK) {
        ctl_fail("migration %s: BEGIN failed: %s", file, db_last_error(d));
        goto out;
    }
    if (db_exec_script(d, sql) != CV_OK) {
        ctl_fail("migration %s failed: %s", file, db_last_error(d));
        db_run(d, "ROLLBACK", 0, NULL);
        goto out;
    }
    const char *params[] = { version };
    if (db_run(d, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, params) != CV_OK) {
        ctl_fail("migration %s: recording it failed: %s", file, db_last_error(d));
        db_run(d, "ROLLBACK", 0, NULL);
        goto out;
    }
    if (db_run(d, "COMMIT", 0, NULL) != CV_OK) {
        ctl_fail("migration %s: COMMIT failed: %s", file, db_last_error(d));
        goto out;
    }
    ret = 0;
out:
    free(sql);
    free(path);
    return ret;
}

/* migrate status: every file with its state, then what the database has
 * that no file names. */
static int status(struct db *d, const char *dir, char **files, size_t nfiles)
{
    enum cv_rc rc;
    int pending = 0;
    struct db_res *t = db_exec(d, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0,
                               NULL, &rc);
    if (!t)
        return ctl_failx(ctl_exit_of(rc), "migrate status: %s", db_last_error(d));
    int has_table = strcmp(db_res_get(t, 0, 0), "t") == 0;
    db_res_free(t);
    struct db_res *applied = NULL;
    if (has_table) {
        /* to_char, not cv_ts(): status must work before 0002 made it */
        applied = db_exec(d,
                          "SELECT version, to_char(applied_at AT TIME ZONE 'UTC',"
                          " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM schema_migrations"
                          " ORDER BY version",
                          0, NULL, &rc);
        if (!applied)
            return ctl_failx(ctl_exit_of(rc), "migrate status: %s", db_last_error(d));
    }
    if (ctl_json)
        fputs("{\"migrations\":[", stdout);
    else
        printf("%-40s %-8s %s\n", "MIGRATION", "STATE", "APPLIED_AT");
    for (size_t i = 0; i < nfiles; i++) {
        char *version = xstrndup(files[i], strlen(files[i]) - 4);
        const char *at = NULL;
        for (int r = 0; applied && r < db_res_rows(applied); r++)
            if (strcmp(db_res_get(applied, r, 0), version) == 0)
                at = db_res_get(applied, r, 1);
        pending += !at;
        if (ctl_json)
            printf("%s{\"version\":\"%s\",\"state\":\"%s\",\"applied_at\":%s%s%s}",
                   i ? "," : "", version, at ? "applied" : "pending", at ? "\"" : "",
                   at ? at : "null", at ? "\"" : "");
        else
            printf("%-40s %-8s %s\n", version, at ? "applied" : "pending", at ? at : "-");
        free(version);
    }
    if (ctl_json)
        fputs("],\"unknown\":[", stdout);
    int nunknown = 0;
    for (int r = 0; applied && r < db_res_rows(applied); r++) {
        const char *v = db_res_get(applied, r, 0);
        if (in_files(files, nfiles, v))
            continue;
        if (ctl_json)
            printf("%s\"%s\"", nunknown ? "," : "", v);
        else
            printf("%-40s %-8s %s\n", v, "unknown", db_res_get(applied, r, 1));
        nunknown++;
    }
    if (ctl_json)
        printf("],\"pending\":%d}\n", pending);
    else
        printf("%d pending%s (files in %s)\n", pending,
               nunknown ? ", and the database has migrations no file names (is this "
                          "conveyorctl older than the database?)"
                        : "",
               dir);
    db_res_free(applied);
    return CTL_EXIT_OK;
}

int ctl_migrate(const struct cfg *c, int argc, char **argv)
{
    int ret = CTL_EXIT_USAGE;
    const char *dir_opt = NULL;
    char *dir = NULL;
    char **files = NULL;
    size_t nfiles = 0;
    struct db *d = NULL;
    struct db_res *applied = NULL;
    int locked = 0, first = 1, is_status = 0;
    enum cv_rc rc;
    const char *key[] = { MIGRATE_LOCK_KEY };

    if (argc > 1 && (strcmp(argv[1], "up") == 0 || strcmp(argv[1], "status") == 0)) {
        is_status = strcmp(argv[1], "status") == 0;
        first = 2;
    }
    for (int i = first; i < argc; i++) {
        int m = ctl_opt(argc, argv, &i, "--dir", &dir_opt);
        if (m < 0)
            goto out;
        if (m == 0) {
            ret = ctl_usage("migrate: unexpected argument '%s'", argv[i]);
            goto out;
        }
    }
    if (cfg_require(c, "pg.dsn") != 0)
        goto out;
    dir = dir_opt ? xstrdup(dir_opt) : default_dir();
    if (!dir) {
        ret = ctl_failx(CTL_EXIT_NOT_FOUND, "migrate: no migrations directory found (give "
                        "--dir or set CONVEYOR_MIGRATIONS)");
        goto out;
    }
    if (list_migrations(dir, &files, &nfiles) != 0) {
        ret = ctl_failx(CTL_EXIT_NOT_FOUND, "migrate: cannot read directory %s: %s", dir,
                        strerror(errno));
        goto out;
    }
    if (nfiles == 0) {
        ret = ctl_failx(CTL_EXIT_NOT_FOUND, "migrate: no NNNN_name.sql files in %s", dir);
        goto out;
    }
    if (is_status) {
        ret = ctl_db_open(c, "migrate status", &d);
        if (ret == CTL_EXIT_OK)
            ret = status(d, dir, files, nfiles);
        goto out;
    }
    ret = CTL_EXIT_FAIL;
    /* No statement deadline: a migration may rewrite a big table, and the
     * advisory lock waits for another migrator. */
    d = db_connect_timeout(c->pg_dsn, DB_CONNECT_TIMEOUT_MS, 0);
    if (!d) {
        ret = ctl_failx(CTL_EXIT_UNAVAILABLE,
                        "migrate: cannot connect to PostgreSQL (pg.dsn; the reason is logged "
                        "above)");
        goto out;
    }
    if (db_run(d, "SELECT pg_advisory_lock($1::bigint)", 1, key) != CV_OK) {
        ctl_fail("migrate: cannot take the migration lock: %s", db_last_error(d));
        goto out;
    }
    locked = 1;
    if (db_run(d,
               "CREATE TABLE IF NOT EXISTS schema_migrations ("
               " version text PRIMARY KEY,"
               " applied_at timestamptz NOT NULL DEFAULT now())",
               0, NULL) != CV_OK) {
        ctl_fail("migrate: cannot create schema_migrations: %s", db_last_error(d));
        goto out;
    }
    applied = db_exec(d, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &rc);
    if (!applied) {
        ctl_fail("migrate: cannot read schema_migrations: %s", db_last_error(d));
        goto out;
    }
    for (int i = 0; i < db_res_rows(applied); i++) {
        const char *v = db_res_get(applied, i, 0);
        if (v && !in_files(files, nfiles, v))
            fprintf(stderr, "conveyorctl: note: the database has migration %s, which is not in %s "
                            "(is this conveyorctl older than the database?)\n", v, dir);
    }
    int napplied = 0;
    for (size_t i = 0; i < nfiles; i++) {
        char *version = xstrndup(files[i], strlen(files[i]) - 4);
        int skip = applied_has(applied, version);
        int failed = !skip && apply_one(d, dir, files[i], version) != 0;
        if (!skip && !failed) {
            printf("applied %s\n", version);
            fflush(stdout);
            napplied++;
        }
        free(version);
        if (failed)
            goto out;
    }
    if (napplied == 0)
        printf("up to date\n");
    ret = CTL_EXIT_OK;
out:
    if (locked)
        db_run(d, "SELECT pg_advisory_unlock($1::bigint)", 1, key);
    db_res_free(applied);
    db_free(d);
    for (size_t i = 0; i < nfiles; i++)
        free(files[i]);
    free(files);
    free(dir);
    return ret;
}
