#include "cfg.h"

#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "mem.h"
#include "trc.h"

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
    { "broker.transport", "CONVEYOR_BROKER_TRANSPORT", T_STR, "redis", 0, 0, 0,
      O(broker_transport) },
    { "broker.topic_prefix", "CONVEYOR_BROKER_TOPIC_PREFIX", T_STR, "conveyor", 0, 0, 0,
      O(broker_topic_prefix) },
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
    { "http.trusted_proxies", "CONVEYOR_HTTP_TRUSTED_PROXIES", T_STR, "", 0, 0, 0,
      O(trusted_proxies) },
    { "ui.session_ttl_s", "CONVEYOR_UI_SESSION_TTL_S", T_INT, "28800", 60, 604800, 0,
      O(ui_session_ttl_s) },
    { "orders.home_country", "CONVEYOR_ORDERS_HOME_COUNTRY", T_STR, "ES", 0, 0, 0,
      O(orders_home_country) },
    { "orders.fetch_states", "CONVEYOR_ORDERS_FETCH_STATES", T_STR, "SHIPPING", 0, 0, 0,
      O(orders_fetch_states) },
    { "orders.fetch_page", "CONVEYOR_ORDERS_FETCH_PAGE", T_INT, "100", 1, 100, 0,
      O(orders_fetch_page) },
    { "orders.fetch_max_pages", "CONVEYOR_ORDERS_FETCH_MAX_PAGES", T_INT, "50", 1, 10000, 0,
      O(orders_fetch_max_pages) },
    { "orders.fetch_overlap_s", "CONVEYOR_ORDERS_FETCH_OVERLAP_S", T_INT, "60", 0, 86400, 0,
      O(orders_fetch_overlap_s) },
    { "log.level", "CONVEYOR_LOG_LEVEL", T_STR, "info", 0, 0, 0, O(log_level) },
    /* trc.h: modules traced from the start (api, worker, broker, ups, db, all or
     * off; Redis' cv:trace overrides it at run time) and the OTLP/HTTP traces
     * endpoint, masked in the log (a URL may carry credentials) */
    { "trace.modules", "CONVEYOR_TRACE_MODULES", T_STR, "", 0, 0, 0, O(trace_modules) },
    { "trace.otlp_url", "CONVEYOR_TRACE_OTLP_URL", T_STR, "", 0, 0, 1, O(trace_otlp_url) },
    { "jobs.max_attempts", "CONVEYOR_MAX_ATTEMPTS", T_INT, "5", 1, 100, 0, O(max_attempts) },
    { "jobs.retry_base_ms", "CONVEYOR_RETRY_BASE_MS", T_INT, "1000", 1, 3600000, 0,
      O(retry_base_ms) },
    { "jobs.retry_max_ms", "CONVEYOR_RETRY_MAX_MS", T_INT, "16000", 1, 86400000, 0,
      O(retry_max_ms) },
    { "jobs.status_ttl_s", "CONVEYOR_STATUS_TTL_S", T_INT, "86400", 1, 31536000, 0,
      O(status_ttl_s) },
    { "jobs.idempotency_ttl_s", "CONVEYOR_IDEMPOTENCY_TTL_S", T_INT, "86400", 1, 31536000, 0,
      O(idempotency_ttl_s) },
    { "jobs.retain", "CONVEYOR_JOBS_RETAIN", T_INT, "100000", 1, 1000000000, 0, O(retain) },
    { "jobs.max_deliveries", "CONVEYOR_MAX_DELIVERIES", T_INT, "6", 2, 1000, 0,
      O(max_deliveries) },
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

/* 1..max bytes of [A-Za-z0-9._-]: a producer key's name (it goes into Redis
 * key names: no ':' lets two producers share a key), a topic prefix (a part of
 * a Kafka topic name, whose alphabet this is). */
static int safe_name(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

/* The text of a scalar libconfig setting: a string as is, numbers in decimal
 * (floats with float_digits significant digits), booleans "true"/"false";
 * NULL for a group, array or list. A number's text is written into num. */
static const char *setting_text(const config_setting_t *s, char num[64], int float_digits)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_STRING:
        return config_setting_get_string(s);
    case CONFIG_TYPE_INT:
        snprintf(num, 64, "%d", config_setting_get_int(s));
        return num;
    case CONFIG_TYPE_INT64:
        snprintf(num, 64, "%lld", config_setting_get_int64(s));
        return num;
    case CONFIG_TYPE_FLOAT:
        snprintf(num, 64, "%.*g", float_digits, config_setting_get_float(s));
        return num;
    case CONFIG_TYPE_BOOL:
        return config_setting_get_bool(s) ? "true" : "false";
    default:
        return NULL;
    }
}

/* The one setter every source goes through. where is "file:line", "env X" or
 * "flag" for the error message. */
static int set_row(void *at, const struct cfg_row *r, const char *key, const char *v,
                   const char *where)
{
    char *base = at;
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
        fprintf(stderr, "conveyor: %s: %s: must be %g..%g (got %s)\n", where, key, r->min,
                r->max, v);
        return -1;
    }
    if (bad || (r->type == T_INT && d != (double)(long)d)) {
        fprintf(stderr, "conveyor: %s: %s: not a %s: '%s'\n", where, key,
                r->type == T_INT ? "whole number" : "number", v);
        return -1;
    }
    if (r->type == T_INT)
        *(int *)(base + r->off) = (int)d;
    else
        *(double *)(base + r->off) = d;
    return 0;
}

/* ==== groups: jobs.types.<name>.* and upstreams.<name>.* ====================
 *
 * A group is one struct per member (a job type, an upstream) with the same
 * rows for each. Rows whose default is NULL start "unset" (-1, or a NULL
 * string) and groups_resolve() fills them after every source was read: from
 * the member's own default (the job-type table, ups_defs below), else from
 * the global key of the same meaning. Env names are derived from the key:
 * CONVEYOR_ + the key upper-cased with '.' and '-' as '_'. */

#define OT(f) offsetof(struct cfg_jobtype, f)
static const struct cfg_row type_rows[] = {
    { "max_attempts", NULL, T_INT, NULL, 1, 100, 0, OT(max_attempts) },
    { "retry_base_ms", NULL, T_INT, NULL, 1, 3600000, 0, OT(retry_base_ms) },
    { "retry_max_ms", NULL, T_INT, NULL, 1, 86400000, 0, OT(retry_max_ms) },
    { "dead_retention_s", NULL, T_INT, "0", 0, 315360000, 0, OT(dead_retention_s) },
    { "every_s", NULL, T_INT, "0", 0, 604800, 0, OT(every_s) },
    { "max_queued", NULL, T_INT, "0", 0, 1000000000, 0, OT(max_queued) },
    { "retain", NULL, T_INT, NULL, 1, 1000000000, 0, OT(retain) },
};

#define OU(f) offsetof(struct cfg_upstream, f)
static const struct cfg_row ups_rows[] = {
    { "url", NULL, T_STR, NULL, 0, 0, 0, OU(url) },
    { "auth_user", NULL, T_STR, "", 0, 0, 0, OU(auth_user) },
    { "auth_secret", NULL, T_STR, "", 0, 0, 1, OU(auth_secret) },
    { "account", NULL, T_STR, "", 0, 0, 0, OU(account) },
    { "password", NULL, T_STR, "", 0, 0, 1, OU(password) },
    { "timeout_ms", NULL, T_INT, NULL, 10, 600000, 0, OU(timeout_ms) },
    { "connect_timeout_ms", NULL, T_INT, "2000", 10, 600000, 0, OU(connect_timeout_ms) },
    { "rate_per_min", NULL, T_INT, NULL, 0, 100000000, 0, OU(rate_per_min) },
    { "rate_burst", NULL, T_INT, "10", 1, 1000000, 0, OU(rate_burst) },
    { "breaker_failures", NULL, T_INT, "5", 1, 1000000, 0, OU(breaker_failures) },
    { "breaker_rate", NULL, T_DBL, "0.5", 0.01, 1, 0, OU(breaker_rate) },
    { "breaker_window_s", NULL, T_INT, "30", 1, 86400, 0, OU(breaker_window_s) },
    { "breaker_min_calls", NULL, T_INT, "20", 1, 1000000, 0, OU(breaker_min_calls) },
    { "breaker_open_ms", NULL, T_INT, "10000", 10, 3600000, 0, OU(breaker_open_ms) },
    { "batch_max", NULL, T_INT, NULL, 1, 1000, 0, OU(batch_max) },
    { "webhook_secrets", NULL, T_STR, "", 0, 0, 1, OU(webhook_secrets) },
    { "webhook_cidrs", NULL, T_STR, "127.0.0.0/8,::1/128", 0, 0, 0, OU(webhook_cidrs) },
    { "webhook_rate_per_hour", NULL, T_INT, "1000", 0, 100000000, 0, OU(webhook_rate_per_hour) },
};

/* Each upstream's own defaults: the simulator's path for it on the default
 * port, Mirakl's budget of seed 004 (100 requests a minute), OnTime's batch. */
static const struct {
    const char *name;
    const char *url;
    int rate_per_min;
    int batch_max;
} ups_defs[CFG_UPS_N] = {
    [CFG_UPS_MIRAKL] = { "mirakl", "http://127.0.0.1:8090/mirakl", 100, 100 },
    [CFG_UPS_TIPSA] = { "tipsa", "http://127.0.0.1:8090/tipsa", 0, 1 },
    [CFG_UPS_SEUR] = { "seur", "http://127.0.0.1:8090/seur", 0, 1 },
    [CFG_UPS_CEX] = { "correos-express", "http://127.0.0.1:8090/cex", 0, 1 },
    [CFG_UPS_ONTIME] = { "ontime", "http://127.0.0.1:8090/ontime", 0, 50 },
    [CFG_UPS_MELI] = { "meli", "http://127.0.0.1:8090/meli", 0, 1 },
    [CFG_UPS_ACTIVATION] = { "activation", NULL, 0, 1 },  /* NULL: activation.url */
    [CFG_UPS_NOTIFY] = { "notify", "", 0, 1 },
};

const char *cfg_ups_name(int id)
{
    return id >= 0 && id < CFG_UPS_N ? ups_defs[id].name : "?";
}

int cfg_ups_find(const char *name)
{
    for (int i = 0; i < CFG_UPS_N; i++)
        if (strcmp(ups_defs[i].name, name) == 0)
            return i;
    return -1;
}

static const char *type_member(int i)
{
    return jobtype_at(i)->name;
}

struct cfg_group {
    const char *prefix;
    int n;
    const char *(*member)(int i);
    const struct cfg_row *rows;
    size_t nrows;
    size_t off, stride;          /* member i is at (char *)c + off + i * stride */
};

static const struct cfg_group groups[] = {
    { "jobs.types", JT_N, type_member, type_rows, sizeof(type_rows) / sizeof(type_rows[0]),
      offsetof(struct cfg, types), sizeof(struct cfg_jobtype) },
    { "upstreams", CFG_UPS_N, cfg_ups_name, ups_rows, sizeof(ups_rows) / sizeof(ups_rows[0]),
      offsetof(struct cfg, ups), sizeof(struct cfg_upstream) },
};
#define NGROUPS (sizeof(groups) / sizeof(groups[0]))

static void *member_at(struct cfg *c, const struct cfg_group *g, int i)
{
    return (char *)c + g->off + (size_t)i * g->stride;
}

static void group_members(const struct cfg_group *g, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < g->n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? ", " : "", g->member(i));
}

/* Find "prefix.member.field": 1 with *row and *at set, 0 when key is not in a
 * group, -1 (printed) when it names a group with an unknown member or field. */
static int group_find(struct cfg *c, const char *key, const struct cfg_row **row, void **at)
{
    for (size_t gi = 0; gi < NGROUPS; gi++) {
        const struct cfg_group *g = &groups[gi];
        size_t pl = strlen(g->prefix);
        if (strncmp(key, g->prefix, pl) != 0 || key[pl] != '.')
            continue;
        const char *m = key + pl + 1, *dot = strrchr(m, '.');
        char known[256];
        for (int i = 0; dot && i < g->n; i++) {
            if (strlen(g->member(i)) != (size_t)(dot - m) ||
                strncmp(g->member(i), m, (size_t)(dot - m)) != 0)
                continue;
            for (size_t r = 0; r < g->nrows; r++) {
                if (strcmp(g->rows[r].key, dot + 1) == 0) {
                    *row = &g->rows[r];
                    *at = member_at(c, g, i);
                    return 1;
                }
            }
            fprintf(stderr, "conveyor: unknown setting '%s'\n", key);
            return -1;
        }
        group_members(g, known, sizeof(known));
        fprintf(stderr, "conveyor: %s: unknown name in %s (known: %s)\n", key, g->prefix, known);
        return -1;
    }
    return 0;
}

static void groups_default(struct cfg *c)
{
    for (size_t gi = 0; gi < NGROUPS; gi++) {
        const struct cfg_group *g = &groups[gi];
        for (int i = 0; i < g->n + (gi == 0); i++) {   /* jobs.types also fills [JT_N] */
            char *at = member_at(c, g, i);
            for (size_t r = 0; r < g->nrows; r++) {
                const struct cfg_row *row = &g->rows[r];
                if (row->def)
                    CV_ASSERT(set_row(at, row, row->key, row->def, "default") == 0);
                else if (row->type == T_INT)
                    *(int *)(at + row->off) = -1;
                else if (row->type == T_STR)
                    *(char **)(at + row->off) = NULL;
            }
        }
    }
}

static void unset_int(int *v, int own, int global)
{
    if (*v < 0)
        *v = own > 0 ? own : global;
}

/* Fill what no source set: a type's own default, else the global jobs.* key;
 * an upstream's own default. */
static void groups_resolve(struct cfg *c)
{
    for (int i = 0; i <= JT_N; i++) {
        const struct jobtype *jt = jobtype_at(i);
        struct cfg_jobtype *t = &c->types[i];
        unset_int(&t->max_attempts, jt ? jt->max_attempts : 0, c->max_attempts);
        unset_int(&t->retry_base_ms, jt ? jt->retry_base_ms : 0, c->retry_base_ms);
        unset_int(&t->retry_max_ms, jt ? jt->retry_max_ms : 0, c->retry_max_ms);
        unset_int(&t->retain, 0, c->retain);
    }
    for (int i = 0; i < CFG_UPS_N; i++) {
        struct cfg_upstream *u = &c->ups[i];
        if (!u->url)
            u->url = xstrdup(ups_defs[i].url ? ups_defs[i].url : c->activation_url);
        unset_int(&u->timeout_ms, 0, c->http_timeout_ms);
        unset_int(&u->rate_per_min, ups_defs[i].rate_per_min, 0);
        unset_int(&u->batch_max, ups_defs[i].batch_max, 1);
    }
}

const struct cfg_jobtype *cfg_type(const struct cfg *c, const char *name)
{
    int i = jobtype_index(name);
    return &c->types[i < 0 ? JT_N : i];
}

int cfg_max_attempts(const struct cfg *c, const char *type)
{
    return cfg_type(c, type)->max_attempts;
}

/* ==== the kafka group: librdkafka properties, passed through ================
 *
 * Not rows: an operator may set any librdkafka property (SASL, TLS, tuning),
 * and kfk.c hands every pair to rd_kafka_conf_set, which refuses an unknown
 * name or a bad value when a handle is made. Here names are only normalised
 * (lowercased, '_' read as '.'), so that the file's bootstrap_servers, the
 * env's CONVEYOR_KAFKA_BOOTSTRAP_SERVERS and the flag kafka.bootstrap.servers
 * name one property, and a later source replaces the earlier one's pair. */

#define KAFKA_ENV "CONVEYOR_KAFKA_"
#define KAFKA_NAME_MAX 128

int cfg_secret_name(const char *name)
{
    return strcasestr(name, "password") || strcasestr(name, "secret") || strcasestr(name, "key");
}

/* The property name of src[0..len) into out: lowercased, '_' as '.'. 0, or -1
 * when it is empty, too long or holds anything but [A-Za-z0-9._-] (librdkafka
 * names hold nothing else). */
static int kafka_name(const char *src, size_t len, char out[KAFKA_NAME_MAX])
{
    if (len == 0 || len >= KAFKA_NAME_MAX || !safe_name(src, len, len))
        return -1;
    for (size_t i = 0; i < len; i++)
        out[i] = src[i] == '_' ? '.' : (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] + 32)
                                                                          : src[i];
    out[len] = '\0';
    return 0;
}

/* Set property name to value: replace the pair of that name, else add one. */
static void kafka_put(struct cfg *c, const char *name, const char *value)
{
    for (size_t i = 0; i < c->kafka_nprops; i++) {
        if (strcmp(c->kafka_props[2 * i], name) == 0) {
            free(c->kafka_props[2 * i + 1]);
            c->kafka_props[2 * i + 1] = xstrdup(value);
            return;
        }
    }
    c->kafka_props = xrealloc(c->kafka_props, 2 * (c->kafka_nprops + 1) * sizeof(char *));
    c->kafka_props[2 * c->kafka_nprops] = xstrdup(name);
    c->kafka_props[2 * c->kafka_nprops + 1] = xstrdup(value);
    c->kafka_nprops++;
}

/* Property src[0..len) from where ("file:line", "env X", "flag"). 0 or -1 (printed). */
static int kafka_set(struct cfg *c, const char *src, size_t len, const char *value,
                     const char *where)
{
    char name[KAFKA_NAME_MAX];
    if (kafka_name(src, len, name)) {
        fprintf(stderr,
                "conveyor: %s: kafka.%.*s: not a librdkafka property name "
                "(1..%d of A-Z a-z 0-9 . _ -)\n",
                where, (int)len, src, KAFKA_NAME_MAX - 1);
        return -1;
    }
    kafka_put(c, name, value);
    return 0;
}

/* kafka = { bootstrap_servers = "h:9092"; session_timeout_ms = 6000;
 * enable_idempotence = true; }: each value as librdkafka's text (a string as
 * is, numbers in decimal, booleans "true"/"false"). */
static int load_file_kafka(struct cfg *c, config_t *lc, const char *path)
{
    config_setting_t *grp = config_lookup(lc, "kafka");
    if (!grp)
        return 0;
    if (!config_setting_is_group(grp)) {
        fprintf(stderr, "conveyor: %s:%d: kafka: must be a group: kafka = { name = value; }\n",
                path, config_setting_source_line(grp));
        return -1;
    }
    int n = config_setting_length(grp);
    for (int i = 0; i < n; i++) {
        config_setting_t *s = config_setting_get_elem(grp, (unsigned)i);
        const char *name = config_setting_name(s) ? config_setting_name(s) : "";
        char where[512], num[64];
        const char *v = setting_text(s, num, 6);    /* 6: printf's %g */
        snprintf(where, sizeof(where), "%s:%d", path, config_setting_source_line(s));
        if (!v) {
            fprintf(stderr, "conveyor: %s: kafka.%s: want a string, number or boolean\n", where,
                    name);
            return -1;
        }
        if (kafka_set(c, name, strlen(name), v, where))
            return -1;
    }
    return 0;
}

/* Every CONVEYOR_KAFKA_<NAME>=value in the environment. */
static int load_env_kafka(struct cfg *c)
{
    size_t pl = strlen(KAFKA_ENV);
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, KAFKA_ENV, pl) != 0)
            continue;
        const char *name = *e + pl, *eq = strchr(name, '=');
        char where[200];
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        snprintf(where, sizeof(where), "env " KAFKA_ENV "%.*s", (int)len, name);
        if (!eq || kafka_set(c, name, len, eq + 1, where))
            return -1;
    }
    return 0;
}

/* One line of its own (the rows' line is full), secret-looking names masked. */
static void log_kafka(const struct cfg *c)
{
    char line[1800];
    size_t o = 0;
    for (size_t i = 0; i < c->kafka_nprops; i++) {
        const char *name = c->kafka_props[2 * i];
        char b[LOG_STR_MAX];
        int n = snprintf(line + o, sizeof(line) - o, "%skafka.%s=%s", o ? " " : "", name,
                         cfg_secret_name(name) ? "***" : log_str(b, c->kafka_props[2 * i + 1]));
        if (n < 0 || (size_t)n >= sizeof(line) - o)
            break;
        o += (size_t)n;
    }
    if (o)
        LOG_INFO("config.kafka", "%s", line);
}

/* ==== checks of whole values ================================================ */

/* An unknown transport would leave workers retrying broker_open forever:
 * refuse it at start, naming the ones this build has. */
static int check_transport(const struct cfg *c)
{
    char known[256];
    if (broker_transport_known(c->broker_transport))
        return 0;
    broker_transport_names(known, sizeof(known));
    fprintf(stderr, "conveyor: broker.transport: unknown transport '%s' (known: %s)\n",
            c->broker_transport, known);
    return -1;
}

/* Topics and groups are <prefix>.<type>: the prefix must be a valid part of a
 * Kafka topic name (at most 249 bytes in all; 100 leaves room for any type). */
static int check_topic_prefix(const struct cfg *c)
{
    if (safe_name(c->broker_topic_prefix, strlen(c->broker_topic_prefix), 100))
        return 0;
    fprintf(stderr, "conveyor: broker.topic_prefix: must be 1..100 of A-Z a-z 0-9 . _ - "
                    "(got '%s')\n", c->broker_topic_prefix);
    return -1;
}

/* Run by cfg_load after every source, and by cfg_set for its key. */
static const struct {
    const char *key;
    int (*check)(const struct cfg *c);
} checks[] = {
    { "broker.transport", check_transport },
    { "broker.topic_prefix", check_topic_prefix },
};
#define NCHECKS (sizeof(checks) / sizeof(checks[0]))

static int check_all(const struct cfg *c)
{
    for (size_t i = 0; i < NCHECKS; i++)
        if (checks[i].check(c))
            return -1;
    return 0;
}

int cfg_set(struct cfg *c, const char *key, const char *value)
{
    if (strncmp(key, "kafka.", 6) == 0)
        return kafka_set(c, key + 6, strlen(key + 6), value, "flag");
    const struct cfg_row *r = find_row(key);
    void *at = c;
    if (!r && group_find(c, key, &r, &at) < 0)
        return -1;
    if (!r) {
        fprintf(stderr, "conveyor: unknown setting '%s'\n", key);
        return -1;
    }
    if (set_row(at, r, key, value, "flag"))
        return -1;
    for (size_t i = 0; i < NCHECKS; i++)
        if (strcmp(key, checks[i].key) == 0)
            return checks[i].check(c);
    return 0;
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
    return safe_name(s, len, sizeof(((struct cfg_api_key *)0)->name) - 1);
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

/* Apply one libconfig setting s to row r of the struct at `at`. */
static int load_setting(void *at, const struct cfg_row *r, const char *key, config_setting_t *s,
                        const char *path)
{
    char where[512], num[64];
    snprintf(where, sizeof(where), "%s:%d", path, config_setting_source_line(s));
    const char *v = setting_text(s, num, 17);    /* 17: a double's text reads back the same */
    if (r->type != T_STR && config_setting_type(s) == CONFIG_TYPE_STRING) {
        fprintf(stderr, "conveyor: %s: %s: expected a number, not a string\n", where, key);
        return -1;
    }
    if (!v) {
        fprintf(stderr, "conveyor: %s: %s: unsupported value type\n", where, key);
        return -1;
    }
    if (r->type == T_STR && config_setting_type(s) != CONFIG_TYPE_STRING) {
        fprintf(stderr, "conveyor: %s: %s: expected a string\n", where, key);
        return -1;
    }
    return set_row(at, r, key, v, where);
}

/* The groups in the file: every name and field must be known (a typo in a
 * carrier's name must not silently leave its secret unset). */
static int load_file_groups(struct cfg *c, config_t *lc, const char *path)
{
    for (size_t gi = 0; gi < NGROUPS; gi++) {
        const struct cfg_group *g = &groups[gi];
        config_setting_t *grp = config_lookup(lc, g->prefix);
        int n = grp ? config_setting_length(grp) : 0;
        for (int i = 0; i < n; i++) {
            config_setting_t *m = config_setting_get_elem(grp, (unsigned)i);
            int nf = config_setting_length(m);
            for (int k = 0; k < nf; k++) {
                config_setting_t *f = config_setting_get_elem(m, (unsigned)k);
                char key[256];
                const struct cfg_row *row = NULL;
                void *at = NULL;
                snprintf(key, sizeof(key), "%s.%s.%s", g->prefix,
                         config_setting_name(m) ? config_setting_name(m) : "?",
                         config_setting_name(f) ? config_setting_name(f) : "?");
                int found = group_find(c, key, &row, &at);
                if (found <= 0) {
                    fprintf(stderr, "conveyor: %s:%d: %s: not a setting\n", path,
                            config_setting_source_line(f), key);
                    return -1;
                }
                if (load_setting(at, row, key, f, path))
                    return -1;
            }
        }
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
        config_setting_t *st = config_lookup(&lc, rows[i].key);
        if (st && load_setting(c, &rows[i], rows[i].key, st, path))
            goto out;
    }
    if (load_file_groups(c, &lc, path))
        goto out;
    if (load_file_kafka(c, &lc, path))
        goto out;
    if (load_file_keys(c, &lc, path))
        goto out;
    rc = 0;
out:
    config_destroy(&lc);
    return rc;
}

/* CONVEYOR_JOBS_TYPES_CARRIER_POST_MAX_ATTEMPTS=3, CONVEYOR_UPSTREAMS_MIRAKL_URL=... */
static int load_env_groups(struct cfg *c)
{
    for (size_t gi = 0; gi < NGROUPS; gi++) {
        const struct cfg_group *g = &groups[gi];
        for (int i = 0; i < g->n; i++) {
            for (size_t r = 0; r < g->nrows; r++) {
                char key[160], env[176];
                snprintf(key, sizeof(key), "%s.%s.%s", g->prefix, g->member(i), g->rows[r].key);
                size_t o = (size_t)snprintf(env, sizeof(env), "CONVEYOR_");
                for (const char *p = key; *p && o + 1 < sizeof(env); p++)
                    env[o++] = *p == '.' || *p == '-' ? '_'
                               : (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A')
                                                          : *p;
                env[o] = '\0';
                const char *v = getenv(env);
                char where[200];
                snprintf(where, sizeof(where), "env %s", env);
                if (v && set_row(member_at(c, g, i), &g->rows[r], key, v, where))
                    return -1;
            }
        }
    }
    return 0;
}

static int load_env(struct cfg *c)
{
    for (size_t i = 0; i < NROWS; i++) {
        const char *v = getenv(rows[i].env);
        if (!v)
            continue;
        char where[96];
        snprintf(where, sizeof(where), "env %s", rows[i].env);
        if (set_row(c, &rows[i], rows[i].key, v, where))
            return -1;
    }
    if (load_env_groups(c) || load_env_kafka(c))
        return -1;
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

int cfg_load(struct cfg *c, const char *path)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NROWS; i++)
        if (set_row(c, &rows[i], rows[i].key, rows[i].def, "default"))
            return -1;
    groups_default(c);
    if (!path)
        path = getenv("CONVEYOR_CONFIG");
    if (path && *path && load_file(c, path))
        return -1;
    if (load_env(c) || check_unique_hashes(c) || check_all(c))
        return -1;
    groups_resolve(c);
    int lvl = log_level_parse(c->log_level);
    if (lvl < 0) {
        fprintf(stderr, "conveyor: log.level: must be debug, info, warn or error\n");
        return -1;
    }
    log_min_level = (enum log_level)lvl;
    unsigned tm;
    if (trc_parse(c->trace_modules, &tm) != 0) {
        fprintf(stderr, "conveyor: trace.modules: a list of api, worker, broker, ups, db, all "
                        "or off (got '%s')\n", c->trace_modules);
        return -1;
    }
    trc_configure(tm);
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
    log_kafka(c);
}

void cfg_cleanup(struct cfg *c)
{
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].type == T_STR)
            FREE_NULL(*(char **)((char *)c + rows[i].off));
    for (size_t gi = 0; gi < NGROUPS; gi++)
        for (int i = 0; i < groups[gi].n; i++)
            for (size_t r = 0; r < groups[gi].nrows; r++)
                if (groups[gi].rows[r].type == T_STR)
                    FREE_NULL(*(char **)((char *)member_at(c, &groups[gi], i) +
                                         groups[gi].rows[r].off));
    for (size_t i = 0; i < 2 * c->kafka_nprops; i++)
        free(c->kafka_props[i]);
    FREE_NULL(c->kafka_props);
    c->kafka_nprops = 0;
}

