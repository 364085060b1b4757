/* main.c - conveyorctl: global options, config, and the command table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "ctl.h"
#include "log.h"
#include "mem.h"

static const char usage_text[] =
    "usage: conveyorctl [-c FILE] [--dsn DSN] [--redis URL] [--json] COMMAND [ARGS]\n"
    "\n"
    "Global options (anywhere on the line):\n"
    "  -c, --config FILE    libconfig file (default: $CONVEYOR_CONFIG); CONVEYOR_* env\n"
    "                       variables override it, and these flags override both\n"
    "      --dsn DSN        PostgreSQL DSN (pg.dsn, env CONVEYOR_PG_DSN)\n"
    "      --redis URL      Redis URL (redis.url, env CONVEYOR_REDIS_URL)\n"
    "      --json           print JSON: one object, or one per line for lists and streams\n"
    "  -h, --help           this text\n"
    "\n"
    "Jobs and queues (Redis):\n"
    "  queues               per type: depth, lag, pending, consumers, scheduled, dead, oldest\n"
    "                       age\n"
    "  workers              workers seen in the last 10 s\n"
    "  watch [--count N]    queues, workers and held money, refreshed every second until\n"
    "                       Ctrl-C (or N frames); plain frames when not on a terminal\n"
    "  submit TYPE [JSON|-] [--delay-ms N] [--run-at RFC3339] [--max-attempts N]\n"
    "         [--job-id UUID] [--idempotency-key K]\n"
    "                       publish one job (JSON default {}, - reads stdin); prints its\n"
    "                       id, or \"duplicate of ID\"\n"
    "  submit --file FILE|- [--batch N]\n"
    "                       publish the jobs of a file, one JSON object a line:\n"
    "                       {\"type\":T, \"payload\":{...}, \"idempotency_key\":K,\n"
    "                       \"delay_ms\":N} (also run_at, max_attempts). Straight to the\n"
    "                       broker (no API key), batched per type in atomic chunks of N (at\n"
    "                       most 1000, the API's batch limit); each line checked as the API\n"
    "                       checks a job, a bad one refused alone. Summary: accepted,\n"
    "                       duplicates, refused (line: why); exit 1 when any was refused\n"
    "  status ID            the job's status as JSON\n"
    "  dead [list] [--type T] [--since S] [--limit N]\n"
    "                       dead-letter jobs, newest first (limit 100, at most 10000):\n"
    "                       id type state[(held)] attempt last_error. S: a duration ago\n"
    "                       (90s, 15m, 2h, 7d, 1h30m) or an RFC 3339 time\n"
    "  dead show ID         one dead job: state, attempts, last error, payload\n"
    "  dead retry ID...     put dead or failed jobs back on their queues (a new life)\n"
    "  dead retry --all [--type T] [--since S] [--limit N]\n"
    "                       replay every dead job the filters select, with a progress bar\n"
    "                       on a terminal, then a summary; Ctrl-C stops between two jobs\n"
    "  dead purge ID... [--yes]\n"
    "                       delete dead or failed jobs for good; asks first on a terminal\n"
    "                       unless --yes; refused while held (exit 4)\n"
    "  retry ID..., purge ID...\n"
    "                       the same as dead retry / dead purge\n"
    "\n"
    "Money and orders (PostgreSQL):\n"
    "  held [--min-age-s N] money held: transactions PROCESSING for at least N s (default 0),\n"
    "                       oldest first, with their job's state\n"
    "  orders               how many orders in each state\n"
    "  orders --state S | --list [--limit N]\n"
    "                       the orders (in state S), oldest change first (limit 50)\n"
    "  order ID             one order, its operations and its outbound calls\n"
    "  ops tail [--order ID] [--limit N] [--follow]\n"
    "                       the operations log; --follow prints new rows until Ctrl-C\n"
    "\n"
    "Setup:\n"
    "  migrate [up] [--dir DIR]\n"
    "                       apply the SQL migrations not applied yet, in order\n"
    "                       (DIR: $CONVEYOR_MIGRATIONS, else ./migrations, else\n"
    "                       <dir of conveyorctl>/../migrations)\n"
    "  migrate status [--dir DIR]\n"
    "                       each migration, applied (when) or pending\n"
    "  seed                 add demo accounts 1..100 and offers (idempotent)\n"
    "  keys add NAME --scopes a,b [--print-only]\n"
    "                       a new API key: prints the secret ONCE and its CONVEYOR_API_KEYS\n"
    "                       entry, stores only its SHA-256 (table api_keys): conveyor-api\n"
    "                       accepts it within 2 s, no restart. Scopes: job types,\n"
    "                       activation, operator, orders, *\n"
    "  keys revoke NAME [--force]\n"
    "                       conveyor-api refuses every key of that name within 2 s\n"
    "                       (stored, or configured: then remove it at the next deploy)\n"
    "  keys list            stored and configured keys: scopes, state, created, last used\n"
    "                       (hashes shortened to 8 hex digits)\n"
    "  trace [status]       the modules traced now (ENTER/EXIT log events, OTLP spans)\n"
    "  trace set MODULES    api, worker, broker, ups, db (comma-separated), all or off:\n"
    "                       every worker within a heartbeat, every API within 2 s\n"
    "  trace reset          back to each process's trace.modules\n"
    "  hash-key KEY|-       SHA-256 hex of an API key (- reads it from stdin), for\n"
    "                       api keys configured as name:sha256hex:scopes\n"
    "  completion bash      a bash completion script\n"
    "\n"
    "Exit status (stable, for scripts):\n"
    "  0  ok\n"
    "  1  the operation failed (a bulk one: some items failed, or it was interrupted)\n"
    "  2  bad usage or configuration\n"
    "  3  not found (job, order, key, migrations directory)\n"
    "  4  refused by state: held money, not dead or failed, name or id taken, queue full\n"
    "  5  Redis or PostgreSQL cannot be reached\n";

struct cmd {
    const char *name;
    int (*fn)(const struct cfg *c, int argc, char **argv);
};

static const struct cmd cmds[] = {
    { "migrate", ctl_migrate }, { "seed", ctl_seed },       { "submit", ctl_submit },
    { "status", ctl_status },   { "dead", ctl_dead },       { "retry", ctl_retry },
    { "purge", ctl_purge },     { "queues", ctl_queues },   { "workers", ctl_workers },
    { "watch", ctl_watch },     { "held", ctl_held },       { "orders", ctl_orders },
    { "order", ctl_order },     { "ops", ctl_ops },         { "keys", ctl_keys },
    { "trace", ctl_trace },
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
        if (strcmp(argv[i], "--json") == 0) {
            ctl_json = 1;
        } else if ((m = ctl_opt(argc, argv, &i, "-c", &v)) != 0 ||
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
    /* these work without any configuration */
    if (strcmp(rest[0], "hash-key") == 0) {
        ret = ctl_hash_key(nrest, rest);
        goto out;
    }
    if (strcmp(rest[0], "completion") == 0) {
        ret = ctl_completion(nrest, rest);
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
