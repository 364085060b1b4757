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

#include "jobtype.h"

#define CFG_MAX_KEYS 32
#define CFG_MAX_KEY_TYPES 16

/* Settings of one job type: the group jobs.types.<name> (env
 * CONVEYOR_JOBS_TYPES_<NAME>_<FIELD>, '-' read as '_'). A field left unset
 * takes the type's default from the job-type table (jobtype.h), else the
 * global jobs.* key of the same name. */
struct cfg_jobtype {
    int max_attempts;
    int retry_base_ms;
    int retry_max_ms;
    int dead_retention_s;     /* 0 = dead letters stay until an operator purges them */
    int every_s;              /* a schedule: enqueue one job every N s across the fleet (0 = off) */
    int max_queued;           /* backpressure: at most this many unsettled jobs (queued,
                               * scheduled, running, retrying); a publish past it is
                               * refused (429 + Retry-After). 0 = no bound */
    int retain;               /* Redis Streams: its stream holds at most this many entries
                               * (its unsettled ones always): the oldest finished jobs'
                               * entries and statuses past it, or older than
                               * status_ttl_s, are retired */
};

/* The outside systems, one config group each: upstreams.<name>. */
enum cfg_ups_id {
    CFG_UPS_MIRAKL,
    CFG_UPS_TIPSA,
    CFG_UPS_SEUR,
    CFG_UPS_CEX,          /* "correos-express" */
    CFG_UPS_ONTIME,
    CFG_UPS_MELI,         /* Mercado Livre */
    CFG_UPS_ACTIVATION,
    CFG_UPS_NOTIFY,       /* the error-notification webhook (Slack-compatible) */
    CFG_UPS_N
};
const char *cfg_ups_name(int id);
/* The id of an upstream name, or -1. */
int cfg_ups_find(const char *name);

struct cfg_upstream {
    char *url;                /* base URL ("" = not configured) */
    char *auth_user;          /* shop key id, client id, login or user, by system */
    char *auth_secret;        /* key, client secret or password: never logged */
    char *account;            /* a second identity some systems want: SEUR's user name,
                               * TIPSA's agency code */
    char *password;           /* its secret (SEUR's password grant): never logged */
    int timeout_ms;           /* whole call */
    int connect_timeout_ms;
    int rate_per_min;         /* shared by every worker; 0 = no limit */
    int rate_burst;
    int breaker_failures;     /* consecutive failures that open the circuit */
    double breaker_rate;      /* or this failure ratio over the window ... */
    int breaker_window_s;
    int breaker_min_calls;    /* ... once it holds this many calls */
    int breaker_open_ms;      /* open this long, then one probe */
    int batch_max;            /* items per request where the system takes batches */
    char *webhook_secrets;    /* inbound webhooks: "whsec_..." list (rotation); never logged */
    char *webhook_cidrs;      /* inbound webhooks: allowed source networks */
    int webhook_rate_per_hour;
};

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
    char *broker_transport;       /* broker.transport: a name in broker.c's table */
    char *broker_topic_prefix;    /* broker.topic_prefix: Kafka topics and groups are
                                   * <prefix>.<type> */
    /* Every key of the kafka group, passed to librdkafka as is (common/kfk.c):
     * kafka_props[2i] is the librdkafka property name ("bootstrap.servers"),
     * kafka_props[2i+1] its value, i < kafka_nprops. File: kafka = {
     * bootstrap_servers = "..."; } ('_' read as '.'); env CONVEYOR_KAFKA_<NAME>
     * (lowercased, '_' read as '.'), the env winning. Values of names holding
     * "password", "secret" or "key" are never logged. */
    size_t kafka_nprops;
    char **kafka_props;
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
    char *trace_modules;           /* trc.h: traced from the start */
    char *trace_otlp_url;          /* OTLP/HTTP traces endpoint, or "" */
    /* jobs */
    int max_attempts;
    int retry_base_ms;
    int retry_max_ms;
    int status_ttl_s;
    int retain;                   /* jobs.retain: the types' default retain */
    int idempotency_ttl_s;
    int max_deliveries;           /* poison-job guard: deliveries in a row without settling */
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
    /* groups */
    struct cfg_jobtype types[JT_N + 1];    /* by enum jobtype_id; [JT_N]: other types */
    struct cfg_upstream ups[CFG_UPS_N];    /* by enum cfg_ups_id */
    char *trusted_proxies;                 /* CIDRs whose X-Forwarded-For (and
                                            * X-Forwarded-Proto) is believed */
    int ui_session_ttl_s;                  /* a dashboard session lives this long */
    /* the order pipeline */
    char *orders_home_country;    /* ISO 3166 alpha-2: other countries are international */
    char *orders_fetch_states;    /* Mirakl order_state_codes to fetch */
    int orders_fetch_page;        /* orders per OR11 page (Mirakl: at most 100) */
    int orders_fetch_max_pages;   /* pages per fetch job; the next job goes on */
    int orders_fetch_overlap_s;   /* re-read this much before the high-water mark */
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

/* 1 when a kafka.* property name looks secret (holds "password", "secret" or
 * "key", any case): its value is never logged, by cfg_log or kfk.c. */
int cfg_secret_name(const char *name);

/* Log every key once (secrets masked): the rows as evt=config.loaded, the
 * kafka.* pairs as evt=config.kafka. */
void cfg_log(const struct cfg *c);

void cfg_cleanup(struct cfg *c);

/* Parse "name:sha256hex:type|type" (types "*" = all) into k. 0 or -1.
 * Types may also be the scope words "activation" and "operator" (auth.h). */
int cfg_parse_api_key(const char *spec, struct cfg_api_key *k);

/* The settings of job type name, or the global jobs.* values for a type the
 * table does not know. Never NULL. */
const struct cfg_jobtype *cfg_type(const struct cfg *c, const char *name);
/* cfg_type(c, type)->max_attempts. */
int cfg_max_attempts(const struct cfg *c, const char *type);

#endif
