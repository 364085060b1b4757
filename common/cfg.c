#include "cfg.h"

#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

enum cfg_type { T_STR, T_INT, T_DBL };

struct cfg_row {
    const char *key;      /* dotted libconfig path */
    const char *env;
    enum cfg_type type;
    const char *def;
    double min, max;
    int secret;
    size_t off;
};

#define O(f) offsetof(struct cfg, f)
static const struct cfg_row rows[] = {
    { "redis.url", "CONVEYOR_REDIS_URL", T_STR, "redis://127.0.0.1:6379", 0, 0, 1, O(redis_url) },
    { "pg.dsn", "CONVEYOR_PG_DSN", T_STR, "", 0, 0, 1, O(pg_dsn) },
    { "pg.connect_timeout_ms", "CONVEYOR_PG_CONNECT_TIMEOUT_MS", T_INT, "5000", 100, 600000, 0,
      O(pg_connect_timeout_ms) },
    { "pg.statement_timeout_ms", "CONVEYOR_PG_STATEMENT_TIMEOUT_MS", T_INT, "10000", 100,
      3600000, 0, O(pg_statement_timeout_ms) },
    { "http.bind", "CONVEYOR_HTTP_BIND", T_STR, "127.0.0.1", 0, 0, 0, O(http_bind) },
    { "http.port", "CONVEYOR_HTTP_PORT", T_INT, "8080", 1, 65535, 0, O(http_port) },
    { "http.threads", "CONVEYOR_HTTP_THREADS", T_INT, "0", 0, 256, 0, O(http_threads) },
    { "http.body_max_bytes", "CONVEYOR_BODY_MAX_BYTES", T_INT, "1048576", 1024, 67108864, 0,
      O(body_max_bytes) },
    { "http.batch_max", "CONVEYOR_BATCH_MAX", T_INT, "1000", 1, 10000, 0, O(batch_max) },
    { "http.header_timeout_ms", "CONVEYOR_HTTP_HEADER_TIMEOUT_MS", T_INT, "10000", 100, 600000,
      0, O(http_header_timeout_ms) },
    { "http.body_timeout_ms", "CONVEYOR_HTTP_BODY_TIMEOUT_MS", T_INT, "30000", 100, 3600000, 0,
      O(http_body_timeout_ms) },
    { "http.idle_timeout_ms", "CONVEYOR_HTTP_IDLE_TIMEOUT_MS", T_INT, "60000", 100, 3600000, 0,
      O(http_idle_timeout_ms) },
    { "http.max_connections", "CONVEYOR_HTTP_MAX_CONNECTIONS", T_INT, "10000", 1, 1000000, 0,
      O(http_max_connections) },
    { "http.metrics_cache_ms", "CONVEYOR_HTTP_METRICS_CACHE_MS", T_INT, "2000", 0, 600000, 0,
      O(metrics_cache_ms) },
    { "log.level", "CONVEYOR_LOG_LEVEL", T_STR, "info", 0, 0, 0, O(log_level) },
    { "jobs.max_attempts", "CONVEYOR_MAX_ATTEMPTS", T_INT, "5", 1, 100, 0, O(max_attempts) },
    { "jobs.activation_max_attempts", "CONVEYOR_ACTIVATION_MAX_ATTEMPTS", T_INT, "8", 1, 100, 0,
      O(activation_max_attempts) },
    { "jobs.retry_base_ms", "CONVEYOR_RETRY_BASE_MS", T_INT, "1000", 1, 3600000, 0,
      O(retry_base_ms) },
    { "jobs.retry_max_ms", "CONVEYOR_RETRY_MAX_MS", T_INT, "16000", 1, 86400000, 0,
      O(retry_max_ms) },
    { "jobs.status_ttl_s", "CONVEYOR_STATUS_TTL_S", T_INT, "86400", 1, 31536000, 0,
      O(status_ttl_s) },
    { "jobs.idempotency_ttl_s", "CONVEYOR_IDEMPOTENCY_TTL_S", T_INT, "86400", 1, 31536000, 0,
      O(idempotency_ttl_s) },
    { "jobs.dead_retention", "CONVEYOR_DEAD_RETENTION", T_STR, "", 0, 0, 0, O(dead_retention) },
    { "jobs.max_deliveries", "CONVEYOR_MAX_DELIVERIES", T_INT, "6", 2, 1000, 0,
      O(max_deliveries) },
    { "jobs.activation_retry_max_ms", "CONVEYOR_ACTIVATION_RETRY_MAX_MS", T_INT, "60000", 1,
      86400000, 0, O(activation_retry_max_ms) },
    { "worker.types", "CONVEYOR_WORKER_TYPES", T_STR, "activation,noop", 0, 0, 0,
      O(worker_types) },
    { "worker.concurrency", "CONVEYOR_CONCURRENCY", T_INT, "64", 1, 4096, 0, O(concurrency) },
    { "worker.block_ms", "CONVEYOR_BLOCK_MS", T_INT, "1000", 10, 60000, 0, O(block_ms) },
    { "worker.visibility_timeout_ms", "CONVEYOR_VISIBILITY_TIMEOUT_MS", T_INT, "30000", 100,
      86400000, 0, O(visibility_timeout_ms) },
    { "worker.reclaim_interval_ms", "CONVEYOR_RECLAIM_INTERVAL_MS", T_INT, "5000", 50, 3600000,
      0, O(reclaim_interval_ms) },
    { "worker.heartbeat_ms", "CONVEYOR_HEARTBEAT_MS", T_INT, "1000", 50, 600000, 0,
      O(heartbeat_ms) },
    { "worker.grace_ms", "CONVEYOR_GRACE_MS", T_INT, "10000", 0, 600000, 0, O(grace_ms) },
    { "worker.pause_max_ms", "CONVEYOR_PAUSE_MAX_MS", T_INT, "5000", 10, 600000, 0,
      O(pause_max_ms) },
    { "reconcile.interval_ms", "CONVEYOR_RECONCILE_INTERVAL_MS", T_INT, "10000", 100, 86400000,
      0, O(reconcile_interval_ms) },
    { "reconcile.held_after_s", "CONVEYOR_RECONCILE_HELD_AFTER_S", T_INT, "60", 1, 31536000, 0,
      O(reconcile_held_after_s) },
    { "activation.url", "CONVEYOR_ACTIVATION_URL", T_STR, "http://127.0.0.1:8090", 0, 0, 0,
      O(activation_url) },
    { "outbound.timeout_ms", "CONVEYOR_HTTP_TIMEOUT_MS", T_INT, "5000", 10, 600000, 0,
      O(http_timeout_ms) },
    { "sim.port", "CONVEYOR_SIM_PORT", T_INT, "8090", 0, 65535, 0, O(sim_port) },
    { "sim.latency_ms", "CONVEYOR_SIM_LATENCY_MS", T_INT, "0", 0, 600000, 0, O(sim_latency_ms) },
    { "sim.error_rate", "CONVEYOR_SIM_ERROR_RATE", T_DBL, "0", 0, 1, 0, O(sim_error_rate) },
    { "sim.error_status", "CONVEYOR_SIM_ERROR_STATUS", T_INT, "503", 400, 599, 0,
      O(sim_error_status) },
    { "sim.timeout_rate", "CONVEYOR_SIM_TIMEOUT_RATE", T_DBL, "0", 0, 1, 0,
      O(sim_timeout_rate) },
    /* sim: order pipeline */
    { "sim.webhook_url", "CONVEYOR_SIM_WEBHOOK_URL", T_STR, "", 0, 0, 0, O(sim_webhook_url) },
    { "sim.webhook_secret", "CONVEYOR_SIM_WEBHOOK_SECRET", T_STR,
      "whsec_Y29udmV5b3Itc2ltLWRlbW8td2ViaG9vay1rZXk=", 0, 0, 1, O(sim_webhook_secret) },
    { "sim.webhook_delay_ms", "CONVEYOR_SIM_WEBHOOK_DELAY_MS", T_INT, "500", 0, 3600000, 0,
      O(sim_webhook_delay_ms) },
    { "sim.transit_delay_ms", "CONVEYOR_SIM_TRANSIT_DELAY_MS", T_INT, "2000", 0, 3600000, 0,
      O(sim_transit_delay_ms) },
    { "sim.deliver_delay_ms", "CONVEYOR_SIM_DELIVER_DELAY_MS", T_INT, "4000", 0, 3600000, 0,
      O(sim_deliver_delay_ms) },
    { "sim.mirakl_order_rate", "CONVEYOR_SIM_MIRAKL_ORDER_RATE", T_DBL, "0", 0, 10000, 0,
      O(sim_mirakl_order_rate) },
    { "sim.token_ttl_s", "CONVEYOR_SIM_TOKEN_TTL_S", T_INT, "3600", 1, 86400, 0,
      O(sim_token_ttl_s) },
    { "sim.session_ttl_s", "CONVEYOR_SIM_SESSION_TTL_S", T_INT, "1800", 1, 86400, 0,
      O(sim_session_ttl_s) },
};
#define NROWS (sizeof(rows) / sizeof(rows[0]))

static const struct cfg_row *find_row(const char *key)
{
    for (size_t i = 0; i < NROWS; i++)
        if (strcmp(rows[i].key, key) == 0)
            return &rows[i];
    return NULL;
}

/* The one setter every source goes through. where is "file:line", "env X" or
 * "flag" for the error message. */
static int set_row(struct cfg *c, const struct cfg_row *r, const char *v, const char *where)
{
    char *base = (char *)c;
    if (r->type == T_STR) {
        char **dst = (char **)(base + r->off);
        free(*dst);
        *dst = xstrdup(v);
        return 0;
    }
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    /* the range first: (long)d of 1e300, inf or nan is undefined, and nan
     * passes any comparison (found by tests/fuzz/fuzz_cfg) */
    int bad = errno || end == v || *end != '\0' || isnan(d);
    if (!bad && (d < r->min || d > r->max)) {
        fprintf(stderr, "conveyor: %s: %s: must be %g..%g (got %s)\n", where, r->key, r->min,
                r->max, v);
        return -1;
    }
    if (bad || (r->type == T_INT && d != (double)(long)d)) {
        fprintf(stderr, "conveyor: %s: %s: not a %s: '%s'\n", where, r->key,
                r->type == T_INT ? "whole number" : "number", v);
        return -1;
    }
    if (r->type == T_INT)
        *(int *)(base + r->off) = (int)d;
    else
        *(double *)(base + r->off) = d;
    return 0;
}

int cfg_set(struct cfg *c, const char *key, const char *value)
{
    const struct cfg_row *r = find_row(key);
    if (!r) {
        fprintf(stderr, "conveyor: unknown setting '%s'\n", key);
        return -1;
    }
    return set_row(c, r, value, "flag");
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static int parse_sha(const char *hex, size_t len, unsigned char out[32])
{
    if (len != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static int add_type(struct cfg_api_key *k, const char *t, size_t len)
{
    if (len == 1 && t[0] == '*') {
        k->all_types = 1;
        return 0;
    }
    if (len == 0 || len >= sizeof(k->types[0]) || k->ntypes >= CFG_MAX_KEY_TYPES)
        return -1;
    memcpy(k->types[k->ntypes], t, len);
    k->types[k->ntypes][len] = '\0';
    k->ntypes++;
    return 0;
}

/* Key names go into Redis key names (cv:idem:<type>:<name>:<key>): a fixed
 * alphabet without ':' keeps two producers from ever sharing a key. */
static int name_valid(const char *s, size_t len)
{
    if (len == 0 || len >= sizeof(((struct cfg_api_key *)0)->name))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

int cfg_parse_api_key(const char *spec, struct cfg_api_key *k)
{
    memset(k, 0, sizeof(*k));
    const char *c1 = strchr(spec, ':');
    if (!c1 || !name_valid(spec, (size_t)(c1 - spec)))
        return -1;
    const char *c2 = strchr(c1 + 1, ':');
    if (!c2)
        return -1;
    memcpy(k->name, spec, (size_t)(c1 - spec));
    if (parse_sha(c1 + 1, (size_t)(c2 - c1 - 1), k->sha256))
        return -1;
    const char *t = c2 + 1;
    for (;;) {
        const char *bar = strchr(t, '|');
        size_t len = bar ? (size_t)(bar - t) : strlen(t);
        if (add_type(k, t, len))
            return -1;
        if (!bar)
            break;
        t = bar + 1;
    }
    return 0;
}

static int load_file_keys(struct cfg *c, config_t *lc, const char *path)
{
    config_setting_t *list = config_lookup(lc, "api_keys");
    if (!list)
        return 0;
    int n = config_setting_length(list);
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *name = NULL, *sha = NULL;
        int line = config_setting_source_line(e);
        if (c->napi_keys >= CFG_MAX_KEYS) {
            fprintf(stderr, "conveyor: %s:%d: api_keys: at most %d keys\n", path, line,
                    CFG_MAX_KEYS);
            return -1;
        }
        struct cfg_api_key *k = &c->api_keys[c->napi_keys];
        memset(k, 0, sizeof(*k));
        if (!config_setting_lookup_string(e, "name", &name) || !name_valid(name, strlen(name)) ||
            !config_setting_lookup_string(e, "sha256", &sha) ||
            parse_sha(sha, strlen(sha), k->sha256)) {
            fprintf(stderr,
                    "conveyor: %s:%d: api_keys: each key needs a name (1..63 of A-Z a-z 0-9 . _ -) "
                    "and a sha256 (64 hex digits)\n",
                    path, line);
            return -1;
        }
        strcpy(k->name, name);
        config_setting_t *types = config_setting_lookup(e, "types");
        int nt = types ? config_setting_length(types) : 0;
        for (int j = 0; j < nt; j++) {
            const char *t = config_setting_get_string_elem(types, (unsigned)j);
            if (!t || add_type(k, t, strlen(t))) {
                fprintf(stderr, "conveyor: %s:%d: api_keys: bad type in types\n", path, line);
                return -1;
            }
        }
        if (nt == 0) {
            fprintf(stderr, "conveyor: %s:%d: api_keys: types is required ([\"*\"] for all)\n",
                    path, line);
            return -1;
        }
        c->napi_keys++;
    }
    return 0;
}

static int load_file(struct cfg *c, const char *path)
{
    config_t lc;
    int rc = -1;
    config_init(&lc);
    if (!config_read_file(&lc, path)) {
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            fprintf(stderr, "conveyor: %s: cannot read file\n", path);
        else
            fprintf(stderr, "conveyor: %s:%d: %s\n", path, config_error_line(&lc),
                    config_error_text(&lc));
        goto out;
    }
    for (size_t i = 0; i < NROWS; i++) {
        const struct cfg_row *r = &rows[i];
        config_setting_t *s = config_lookup(&lc, r->key);
        if (!s)
            continue;
        char where[512], num[64];
        snprintf(where, sizeof(where), "%s:%d", path, config_setting_source_line(s));
        const char *v = num;
        switch (config_setting_type(s)) {
        case CONFIG_TYPE_STRING:
            v = config_setting_get_string(s);
            if (r->type != T_STR) {
                fprintf(stderr, "conveyor: %s: %s: expected a number, not a string\n", where,
                        r->key);
                goto out;
            }
            break;
        case CONFIG_TYPE_INT:
            snprintf(num, sizeof(num), "%d", config_setting_get_int(s));
            break;
        case CONFIG_TYPE_INT64:
            snprintf(num, sizeof(num), "%lld", config_setting_get_int64(s));
            break;
        case CONFIG_TYPE_FLOAT:
            snprintf(num, sizeof(num), "%.17g", config_setting_get_float(s));
            break;
        default:
            fprintf(stderr, "conveyor: %s: %s: unsupported value type\n", where, r->key);
            goto out;
        }
        if (r->type == T_STR && config_setting_type(s) != CONFIG_TYPE_STRING) {
            fprintf(stderr, "conveyor: %s: %s: expected a string\n", where, r->key);
            goto out;
        }
        if (set_row(c, r, v, where))
            goto out;
    }
    if (load_file_keys(c, &lc, path))
        goto out;
    rc = 0;
out:
    config_destroy(&lc);
    return rc;
}

static int load_env(struct cfg *c)
{
    for (size_t i = 0; i < NROWS; i++) {
        const char *v = getenv(rows[i].env);
        if (!v)
            continue;
        char where[96];
        snprintf(where, sizeof(where), "env %s", rows[i].env);
        if (set_row(c, &rows[i], v, where))
            return -1;
    }
    const char *keys = getenv("CONVEYOR_API_KEYS");
    if (keys && *keys) {
        /* Keys from env replace keys from the file: one source of truth. */
        c->napi_keys = 0;
        char *dup = xstrdup(keys), *save = NULL;
        for (char *tok = strtok_r(dup, ",; \n", &save); tok; tok = strtok_r(NULL, ",; \n", &save)) {
            if (c->napi_keys >= CFG_MAX_KEYS ||
                cfg_parse_api_key(tok, &c->api_keys[c->napi_keys])) {
                fprintf(stderr,
                        "conveyor: env CONVEYOR_API_KEYS: entry %d: want name:sha256hex:types "
                        "(name 1..63 of A-Z a-z 0-9 . _ -)\n",
                        c->napi_keys + 1);
                free(dup);
                return -1;
            }
            c->napi_keys++;
        }
        free(dup);
    }
    return 0;
}

/* Walk "type=seconds,..." calling fn(type, len, seconds, arg) per entry; -1 on a
 * malformed entry. */
static int retention_walk(const char *spec,
                          int (*fn)(const char *t, size_t len, int64_t s, void *arg), void *arg)
{
    const char *p = spec ? spec : "";
    while (*p) {
        size_t n = strcspn(p, ", ");
        const char *eq = memchr(p, '=', n);
        if (n == 0) {
            p++;
            continue;
        }
        if (!eq || eq == p || (size_t)(eq - p) >= 32)
            return -1;
        char *end;
        errno = 0;
        long long v = strtoll(eq + 1, &end, 10);
        if (errno || end != p + n || end == eq + 1 || v < 0 || v > 315360000LL)
            return -1;
        if (fn && fn(p, (size_t)(eq - p), v, arg))
            return 0;
        p += n;
    }
    return 0;
}

/* Two keys with one hash would be one secret with two sets of scopes, and
 * auth_match() would pick one of them silently: refuse the configuration. */
static int check_unique_hashes(const struct cfg *c)
{
    for (int i = 0; i < c->napi_keys; i++) {
        for (int j = i + 1; j < c->napi_keys; j++) {
            if (memcmp(c->api_keys[i].sha256, c->api_keys[j].sha256, 32) == 0) {
                fprintf(stderr,
                        "conveyor: api_keys: keys %d (%s) and %d (%s) have the same sha256; "
                        "give each key its own secret\n",
                        i + 1, c->api_keys[i].name, j + 1, c->api_keys[j].name);
                return -1;
            }
        }
    }
    return 0;
}

static int check_retention(const char *spec)
{
    if (retention_walk(spec, NULL, NULL) == 0)
        return 0;
    fprintf(stderr, "conveyor: jobs.dead_retention: want type=seconds[,type=seconds] "
                    "(0..315360000), got '%s'\n", spec);
    return -1;
}

struct ret_find {
    const char *type;
    int64_t s;
};

static int ret_match(const char *t, size_t len, int64_t s, void *arg)
{
    struct ret_find *f = arg;
    if (strlen(f->type) != len || strncmp(t, f->type, len) != 0)
        return 0;
    f->s = s;
    return 1;
}

int64_t cfg_dead_retention_s(const struct cfg *c, const char *type)
{
    struct ret_find f = { type, 0 };
    retention_walk(c->dead_retention, ret_match, &f);
    return f.s;
}

int cfg_load(struct cfg *c, const char *path)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NROWS; i++)
        if (set_row(c, &rows[i], rows[i].def, "default"))
            return -1;
    if (!path)
        path = getenv("CONVEYOR_CONFIG");
    if (path && *path && load_file(c, path))
        return -1;
    if (load_env(c) || check_unique_hashes(c))
        return -1;
    if (check_retention(c->dead_retention))
        return -1;
    int lvl = log_level_parse(c->log_level);
    if (lvl < 0) {
        fprintf(stderr, "conveyor: log.level: must be debug, info, warn or error\n");
        return -1;
    }
    log_min_level = (enum log_level)lvl;
    return 0;
}

int cfg_require(const struct cfg *c, const char *key)
{
    const struct cfg_row *r = find_row(key);
    CV_ASSERT(r && r->type == T_STR);
    const char *v = *(char *const *)((const char *)c + r->off);
    if (v && *v)
        return 0;
    fprintf(stderr, "conveyor: missing required %s (env %s)\n", key, r->env);
    return -1;
}

void cfg_log(const struct cfg *c)
{
    char line[1800];
    size_t o = 0;
    for (size_t i = 0; i < NROWS && o < sizeof(line) - 128; i++) {
        const struct cfg_row *r = &rows[i];
        const char *base = (const char *)c;
        int n;
        if (r->secret)
            n = snprintf(line + o, sizeof(line) - o, "%s%s=***", o ? " " : "", r->key);
        else if (r->type == T_STR)
            n = snprintf(line + o, sizeof(line) - o, "%s%s=%s", o ? " " : "", r->key,
                         *(char *const *)(base + r->off));
        else if (r->type == T_INT)
            n = snprintf(line + o, sizeof(line) - o, "%s%s=%d", o ? " " : "", r->key,
                         *(const int *)(base + r->off));
        else
            n = snprintf(line + o, sizeof(line) - o, "%s%s=%g", o ? " " : "", r->key,
                         *(const double *)(base + r->off));
        if (n < 0 || (size_t)n >= sizeof(line) - o)
            break;
        o += (size_t)n;
    }
    LOG_INFO("config.loaded", "%s api_keys=%d", line, c->napi_keys);
}

void cfg_cleanup(struct cfg *c)
{
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].type == T_STR)
            FREE_NULL(*(char **)((char *)c + rows[i].off));
}

int cfg_max_attempts(const struct cfg *c, const char *type)
{
    if (strcmp(type, "activation") == 0)
        return c->activation_max_attempts;
    return c->max_attempts;
}

int cfg_retry_max_ms(const struct cfg *c, const char *type)
{
    if (strcmp(type, "activation") == 0)
        return c->activation_retry_max_ms;
    return c->retry_max_ms;
}
