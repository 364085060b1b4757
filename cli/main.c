/* main.c - conveyorctl: global options, config, and the command table. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "ctl.h"
#include "log.h"
#include "mem.h"

static const char usage_text[] =
    "usage: conveyorctl [-c FILE] [--dsn DSN] [--redis URL] COMMAND [ARGS]\n"
    "\n"
    "Global options (anywhere on the line):\n"
    "  -c, --config FILE    libconfig file (default: $CONVEYOR_CONFIG); CONVEYOR_* env\n"
    "                       variables override it, and these flags override both\n"
    "      --dsn DSN        PostgreSQL DSN (pg.dsn, env CONVEYOR_PG_DSN)\n"
    "      --redis URL      Redis URL (redis.url, env CONVEYOR_REDIS_URL)\n"
    "  -h, --help           this text\n"
    "\n"
    "Commands:\n"
    "  migrate [--dir DIR]  apply the SQL migrations not applied yet, in order\n"
    "                       (DIR: $CONVEYOR_MIGRATIONS, else ./migrations, else\n"
    "                       <dir of conveyorctl>/../migrations)\n"
    "  seed                 add demo accounts 1..100 and offers (idempotent)\n"
    "  submit TYPE [JSON|-] [--delay-ms N] [--run-at RFC3339] [--max-attempts N] [--job-id UUID]\n"
    "         [--idempotency-key K]\n"
    "                       publish one job (JSON default {}, - reads stdin);\n"
    "                       prints its id, or \"duplicate of ID\"\n"
    "  status ID            the job's status as JSON\n"
    "  orders [--state S] [--limit N] [--json]\n"
    "                       orders of the pipeline, by state\n"
    "  order ID [--json]    one order and its operations\n"
    "  ops tail [--order ID] [--limit N] [--follow] [--json]\n"
    "                       the operations log\n"
    "  dead [--type T] [--limit N]\n"
    "                       dead-letter jobs, newest first (default limit 100):\n"
    "                       id type state[(held)] attempt last_error\n"
    "  retry ID             put a dead or failed job back on its queue (a new life)\n"
    "  purge ID             delete a dead or failed job for good (refused while held)\n"
    "  held [--min-age-s N] money held: transactions PROCESSING for at least N s\n"
    "                       (default 0), oldest first, with their job's state\n"
    "  queues               depth, pending, consumers, scheduled, dead per type\n"
    "  workers              workers seen in the last 10 s\n"
    "  hash-key KEY|-       SHA-256 hex of an API key (- reads it from stdin), for\n"
    "                       api keys configured as name:sha256hex:types\n"
    "\n"
    "Exit status: 0 ok, 1 the operation failed, 2 bad usage or configuration.\n";

int ctl_usage(const char *fmt, ...)
{
    va_list ap;
    fputs("conveyorctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(see conveyorctl --help)\n", stderr);
    return CTL_EXIT_USAGE;
}

int ctl_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("conveyorctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CTL_EXIT_FAIL;
}

int ctl_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        ctl_usage("%s needs a value", name);
        return -1;
    }
    *i += 1;
    *val = argv[*i];
    return 1;
}

int ctl_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

struct cmd {
    const char *name;
    int (*fn)(const struct cfg *c, int argc, char **argv);
};

static const struct cmd cmds[] = {
    { "migrate", ctl_migrate }, { "seed", ctl_seed },     { "submit", ctl_submit },
    { "status", ctl_status },   { "dead", ctl_dead },     { "retry", ctl_retry },
    { "queues", ctl_queues },   { "workers", ctl_workers }, { "purge", ctl_purge },
    { "held", ctl_held },       { "orders", ctl_orders }, { "order", ctl_order },
    { "ops", ctl_ops },
};

int main(int argc, char **argv)
{
    int ret = CTL_EXIT_USAGE;
    int cfg_loaded = 0;
    const char *cfg_path = NULL, *dsn = NULL, *redis = NULL;
    struct cfg cfg;
    char **rest = xcalloc((size_t)argc + 1, sizeof(*rest));
    int nrest = 0;

    /* Global options may come before or after the command; everything else
     * (and everything after "--") belongs to the command. */
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m = 0;
        if (strcmp(argv[i], "--") == 0) {
            while (++i < argc)
                rest[nrest++] = argv[i];
            break;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            ret = CTL_EXIT_OK;
            goto out;
        }
        if ((m = ctl_opt(argc, argv, &i, "-c", &v)) != 0 ||
            (m = ctl_opt(argc, argv, &i, "--config", &v)) != 0) {
            if (m < 0)
                goto out;
            cfg_path = v;
        } else if ((m = ctl_opt(argc, argv, &i, "--dsn", &v)) != 0) {
            if (m < 0)
                goto out;
            dsn = v;
        } else if ((m = ctl_opt(argc, argv, &i, "--redis", &v)) != 0) {
            if (m < 0)
                goto out;
            redis = v;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    if (nrest == 0) {
        fputs(usage_text, stderr);
        goto out;
    }
    /* hash-key works without any configuration */
    if (strcmp(rest[0], "hash-key") == 0) {
        ret = ctl_hash_key(nrest, rest);
        goto out;
    }
    const struct cmd *cmd = NULL;
    for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++)
        if (strcmp(rest[0], cmds[k].name) == 0)
            cmd = &cmds[k];
    if (!cmd) {
        ret = ctl_usage("unknown command '%s'", rest[0]);
        goto out;
    }
    if (cfg_load(&cfg, cfg_path) != 0)
        goto out;
    cfg_loaded = 1;
    if ((dsn && cfg_set(&cfg, "pg.dsn", dsn) != 0) ||
        (redis && cfg_set(&cfg, "redis.url", redis) != 0))
        goto out;
    log_init("conveyorctl", log_min_level);
    ret = cmd->fn(&cfg, nrest, rest);
out:
    if (cfg_loaded)
        cfg_cleanup(&cfg);
    free(rest);
    return ret;
}
