/* chaos.c - entry point of the kit's tool: `cv-chaos load ...` or `cv-chaos check ...` (chaos.h). */
#include "chaos.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"

int chaos_int_arg(const char *opt, const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < min || v > max) {
        fprintf(stderr, "chaos: %s: must be a whole number %lld..%lld\n", opt, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

void chaos_sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int chaos_sql_row(struct db *db, const char *sql, int np, const char *const *params,
                  long long *out, int n)
{
    enum cv_rc rc;
    struct db_res *r = db_exec(db, sql, np, params, &rc);
    if (!r) {
        fprintf(stderr, "chaos check: SQL failed: %s\n  %s\n", db_last_error(db), sql);
        return -1;
    }
    int ok = db_res_rows(r) == 1 && db_res_cols(r) >= n;
    for (int i = 0; ok && i < n; i++) {
        const char *v = db_res_get(r, 0, i);
        out[i] = v ? strtoll(v, NULL, 10) : 0;
    }
    db_res_free(r);
    if (!ok)
        fprintf(stderr, "chaos check: SQL gave no row of %d values: %s\n", n, sql);
    return ok ? 0 : -1;
}

void chaos_sql_print(struct db *db, const char *prefix, const char *sql)
{
    enum cv_rc rc;
    struct db_res *r = db_exec(db, sql, 0, NULL, &rc);
    if (!r) {
        fprintf(stderr, "chaos check: SQL failed: %s\n  %s\n", db_last_error(db), sql);
        return;
    }
    int cols = db_res_cols(r);
    for (int row = 0; row < db_res_rows(r); row++) {
        printf("        %s", prefix);
        for (int k = 0; k < cols; k++) {
            const char *v = db_res_get(r, row, k);
            printf("%s%s", k == 0 ? "" : k == cols - 1 ? ": " : " / ", v ? v : "-");
        }
        printf("\n");
    }
    db_res_free(r);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: cv-chaos load --api URL --jobs N --seconds S --seed N --users N "
               "--offers ID,ID,... --out FILE\n"
               "       cv-chaos check --acked FILE --jobs N --sim URL [--drain-s S] "
               "[--held-wait-s S]\n"
               "                   [--orders N [--api URL --replays R]]\n"
               "                   [--kills N] [--stops N] [--redis-restarts N] "
               "[--pg-restarts N] [--workers-started N]\n"
               "load reads the API key from CHAOS_API_KEY; check reads CONVEYOR_REDIS_URL and "
               "CONVEYOR_PG_DSN.\n");
}

int main(int argc, char **argv)
{
    int code = CHAOS_EXIT_USAGE;
    if (argc < 2) {
        usage(stderr);
        return code;
    }
    log_init("chaos", LOG_LVL_WARN);
    curl_global_init(CURL_GLOBAL_ALL);
    if (strcmp(argv[1], "load") == 0)
        code = chaos_load(argc - 1, argv + 1);
    else if (strcmp(argv[1], "check") == 0)
        code = chaos_check(argc - 1, argv + 1);
    else if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        code = (usage(stdout), CHAOS_EXIT_OK);
    else
        usage(stderr);
    curl_global_cleanup();
    return code;
}
