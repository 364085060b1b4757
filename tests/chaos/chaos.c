/* chaos.c - entry point of the kit's tool: `cv-chaos load ...` or `cv-chaos check ...` (chaos.h). */
#include "chaos.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void usage(FILE *f)
{
    fprintf(f, "usage: cv-chaos load --api URL --jobs N --seconds S --seed N --users N "
               "--offers ID,ID,... --out FILE\n"
               "       cv-chaos check --acked FILE --jobs N --sim URL [--drain-s S] "
               "[--held-wait-s S]\n"
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
