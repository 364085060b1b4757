/* cfg.h - one configuration for every binary.
 *
 * Sources apply in this order, each overriding the one before: built-in
 * defaults, the libconfig file (-c FILE or CONVEYOR_CONFIG), CONVEYOR_* env
 * variables, then command-line flags through cfg_set(). Every key is one row
 * of the table in cfg.c: its env name, type, default, bounds and whether it is
 * secret. After loading, programs pass a const struct cfg * around. */
#ifndef CV_CFG_H
#define CV_CFG_H

#include <stddef.h>
#include <stdint.h>

#define CFG_MAX_KEYS 32
#define CFG_MAX_KEY_TYPES 16

/* A producer key: we store only its SHA-256, never the key itself. The name
 * is the producer's identity: idempotency keys and job ids are scoped by it,
 * so it is 1..63 of [A-Za-z0-9._-]. Several keys may share a name (a key
 * being rotated); two keys may not share a hash (cfg_load refuses that). */
struct cfg_api_key {
    char name[64];
    unsigned char sha256[32];
    int ntypes;                            /* 0 with all_types = every type */
    int all_types;
    char types[CFG_MAX_KEY_TYPES][32];
};

struct cfg {
    char *redis_url;
    char *pg_dsn;
    int pg_connect_timeout_ms;
    int pg_statement_timeout_ms;
    char *http_bind;
    int http_port;
    int http_threads;
    int body_max_bytes;
    int batch_max;
    int http_header_timeout_ms;    /* first byte of a request's head to its end */
    int http_body_timeout_ms;      /* end of the head to the end of the body */
    int http_idle_timeout_ms;      /* a keep-alive connection waiting for a request */
    int http_max_connections;      /* per process, all loops together */
    int metrics_cache_ms;          /* /metrics: Redis-derived part refreshed at most this often */
    char *log_level;
    /* jobs */
    int max_attempts;
    int activation_max_attempts;
    int retry_base_ms;
    int retry_max_ms;
    int status_ttl_s;
    int idempotency_ttl_s;
    char *dead_retention;         /* "type=seconds,..." ("" = keep dead letters until purged) */
    int max_deliveries;           /* poison-job guard: deliveries in a row without settling */
    int activation_retry_max_ms;  /* backoff cap for activation (money: retry for minutes) */
    /* worker */
    char *worker_types;
    int concurrency;
    int block_ms;
    int visibility_timeout_ms;
    int reclaim_interval_ms;
    int heartbeat_ms;
    int grace_ms;
    int pause_max_ms;             /* longest pause while our PostgreSQL/Redis is down */
    /* reconciler of held money */
    int reconcile_interval_ms;
    int reconcile_held_after_s;   /* PROCESSING this long with no live job = held */
    /* outside systems */
    char *activation_url;
    int http_timeout_ms;
    /* simulator */
    int sim_port;
    int sim_latency_ms;
    double sim_error_rate;
    int sim_error_status;
    double sim_timeout_rate;
    /* sim: order pipeline (marketplace and carriers) */
    char *sim_webhook_url;        /* API base for carrier webhooks; "" = none sent */
    char *sim_webhook_secret;     /* whsec_<base64 key>, Standard Webhooks */
    int sim_webhook_delay_ms;     /* create -> ACCEPTED */
    int sim_transit_delay_ms;     /* ACCEPTED -> IN_TRANSIT (0 = never) */
    int sim_deliver_delay_ms;     /* IN_TRANSIT -> DELIVERED (0 = never) */
    double sim_mirakl_order_rate; /* new Mirakl orders per second (0 = none) */
    int sim_token_ttl_s;          /* carrier and marketplace access tokens */
    int sim_session_ttl_s;        /* TIPSA sessions */
    /* producer keys */
    int napi_keys;
    struct cfg_api_key api_keys[CFG_MAX_KEYS];
};

/* Fill c with defaults, then the file (path may be NULL: then CONVEYOR_CONFIG,
 * else no file), then the environment. On error prints one line naming the
 * file:line or key to stderr and returns -1. Free with cfg_cleanup(). */
int cfg_load(struct cfg *c, const char *path);

/* Set one key by its dotted name from text ("http.port", "8080"). Used for
 * flags. Returns 0, or -1 after printing why. */
int cfg_set(struct cfg *c, const char *key, const char *value);

/* Fail with a message naming key and env var when a required value is empty. */
int cfg_require(const struct cfg *c, const char *key);

/* Log every key once (secrets masked). */
void cfg_log(const struct cfg *c);

void cfg_cleanup(struct cfg *c);

/* Parse "name:sha256hex:type|type" (types "*" = all) into k. 0 or -1.
 * Types may also be the scope words "activation" and "operator" (auth.h). */
int cfg_parse_api_key(const char *spec, struct cfg_api_key *k);

/* Max attempts configured for a job type. */
int cfg_max_attempts(const struct cfg *c, const char *type);
/* Backoff cap for a job type (ms). */
int cfg_retry_max_ms(const struct cfg *c, const char *type);
/* Dead-letter retention of a job type in seconds from jobs.dead_retention; 0 = keep
 * until an operator purges them. */
int64_t cfg_dead_retention_s(const struct cfg *c, const char *type);

#endif
