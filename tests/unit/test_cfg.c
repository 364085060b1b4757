#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "cfg.h"
#include "log.h"

#include "../fuzz/fuzz_env.h"

static char *write_tmp(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/cvcfgXXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* Every CONVEYOR_* variable: a shell that sourced var/stack.env (the kafka
 * stack's CONVEYOR_KAFKA_*, say) must not leak into the tests. */
static void clear_env(void)
{
    fuzz_clear_env();
}

Test(cfg, defaults_then_file_then_env, .init = clear_env)
{
    struct cfg c;
    char *p = write_tmp("http: { port = 9000; };\nworker: { concurrency = 8; };\n");
    setenv("CONVEYOR_HTTP_PORT", "9100", 1);
    cr_assert_eq(cfg_load(&c, p), 0);
    cr_assert_eq(c.http_port, 9100);         /* env beats file */
    cr_assert_eq(c.concurrency, 8);          /* file beats default */
    cr_assert_eq(c.types[JT_ACTIVATION].max_attempts, 8);
    cr_assert_eq(cfg_set(&c, "http.port", "9200"), 0); /* flag beats env */
    cr_assert_eq(c.http_port, 9200);
    cfg_cleanup(&c);
    unlink(p);
}

Test(cfg, syntax_error_names_file_and_line, .init = cr_redirect_stderr)
{
    clear_env();
    struct cfg c;
    char *p = write_tmp("http: {\n  port = 9000\n  bind = ;\n};\n");
    cr_assert_eq(cfg_load(&c, p), -1);
    fflush(stderr);
    char expect[128];
    snprintf(expect, sizeof(expect), "conveyor: %s:3:", p);
    char buf[512] = { 0 };
    FILE *f = cr_get_redirected_stderr();
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    cr_assert(n > 0);
    cr_assert(strstr(buf, expect) != NULL, "got: %s", buf);
    unlink(p);
}

Test(cfg, out_of_range_value_is_refused, .init = cr_redirect_stderr)
{
    clear_env();
    struct cfg c;
    char *p = write_tmp("http: { port = 70000; };\n");
    cr_assert_eq(cfg_load(&c, p), -1);
    fflush(stderr);
    char buf[512] = { 0 };
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    cr_assert(n > 0);
    cr_assert(strstr(buf, "http.port: must be 1..65535") != NULL, "got: %s", buf);
    unlink(p);
}

Test(cfg, missing_required_names_key_and_env, .init = cr_redirect_stderr)
{
    clear_env();
    struct cfg c;
    cr_assert_eq(cfg_load(&c, NULL), 0);
    cr_assert_eq(cfg_require(&c, "pg.dsn"), -1);
    fflush(stderr);
    char buf[256] = { 0 };
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    cr_assert(n > 0);
    cr_assert(strstr(buf, "missing required pg.dsn (env CONVEYOR_PG_DSN)") != NULL);
    cfg_cleanup(&c);
}

Test(cfg, api_keys_from_env_and_file, .init = clear_env)
{
    struct cfg c;
    const char *sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const char *sha2 = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
    char env[200];
    snprintf(env, sizeof(env), "ops:%s:*,noop-only:%s:noop|activation", sha, sha2);
    setenv("CONVEYOR_API_KEYS", env, 1);
    cr_assert_eq(cfg_load(&c, NULL), 0);
    cr_assert_eq(c.napi_keys, 2);
    cr_assert(c.api_keys[0].all_types);
    cr_assert_str_eq(c.api_keys[1].name, "noop-only");
    cr_assert_eq(c.api_keys[1].ntypes, 2);
    cr_assert_str_eq(c.api_keys[1].types[1], "activation");
    cr_assert_eq(c.api_keys[0].sha256[0], 0x9f);
    cfg_cleanup(&c);

    struct cfg_api_key k;
    cr_assert_eq(cfg_parse_api_key("x:zz:*", &k), -1);
    cr_assert_eq(cfg_parse_api_key("nocolon", &k), -1);
}

/* Found by tests/fuzz/fuzz_cfg: (long)1e300 was undefined behaviour, and nan
 * passed the range check. */
Test(cfg, non_finite_numbers_are_refused, .init = cr_redirect_stderr)
{
    static const char *const bad[][2] = {
        { "CONVEYOR_HTTP_THREADS", "1e300" }, { "CONVEYOR_HTTP_PORT", "inf" },
        { "CONVEYOR_SIM_ERROR_RATE", "nan" }, { "CONVEYOR_SIM_TIMEOUT_RATE", "-nan" },
        { "CONVEYOR_CONCURRENCY", "-1e19" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cfg c;
        clear_env();
        setenv(bad[i][0], bad[i][1], 1);
        cr_expect_eq(cfg_load(&c, NULL), -1, "%s=%s was accepted", bad[i][0], bad[i][1]);
        cfg_cleanup(&c);
        unsetenv(bad[i][0]);
    }
}

/* Found by tests/fuzz/fuzz_cfg: a file key with name "" was accepted (the
 * environment's keys already needed a name). */
Test(cfg, file_key_needs_a_name, .init = cr_redirect_stderr)
{
    clear_env();
    struct cfg c;
    char *p = write_tmp("api_keys = ( { name = \"\"; sha256 = "
                        "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"; "
                        "types = [\"*\"]; } );\n");
    cr_expect_eq(cfg_load(&c, p), -1);
    cfg_cleanup(&c);
    unlink(p);
}

Test(cfg, two_keys_with_one_hash_are_refused, .init = clear_env)
{
    cr_redirect_stderr();
    struct cfg c;
    const char *sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    char env[200];
    /* before: loaded, and the last key silently won for that secret */
    snprintf(env, sizeof(env), "ops:%s:*,noop-only:%s:noop", sha, sha);
    setenv("CONVEYOR_API_KEYS", env, 1);
    cr_assert_eq(cfg_load(&c, NULL), -1);
    cfg_cleanup(&c);
    unsetenv("CONVEYOR_API_KEYS");
    char text[600];
    snprintf(text, sizeof(text),
             "api_keys = ( { name = \"a\"; sha256 = \"%s\"; types = [\"*\"]; },\n"
             "             { name = \"b\"; sha256 = \"%s\"; types = [\"noop\"]; } );\n",
             sha, sha);
    cr_assert_eq(cfg_load(&c, write_tmp(text)), -1);
    cfg_cleanup(&c);
    fflush(stderr);
    cr_assert_stderr_eq_str("conveyor: api_keys: keys 1 (ops) and 2 (noop-only) have the same "
                            "sha256; give each key its own secret\n"
                            "conveyor: api_keys: keys 1 (a) and 2 (b) have the same sha256; "
                            "give each key its own secret\n");
}

Test(cfg, key_names_are_a_safe_alphabet, .init = clear_env)
{
    struct cfg_api_key k;
    const char *sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    char spec[200];
    snprintf(spec, sizeof(spec), "tenant-a.v2_x:%s:noop|operator", sha);
    cr_assert_eq(cfg_parse_api_key(spec, &k), 0);
    cr_assert_str_eq(k.name, "tenant-a.v2_x");
    cr_assert_str_eq(k.types[1], "operator");
    snprintf(spec, sizeof(spec), "a b:%s:noop", sha);
    cr_assert_eq(cfg_parse_api_key(spec, &k), -1);
    snprintf(spec, sizeof(spec), ":%s:noop", sha);
    cr_assert_eq(cfg_parse_api_key(spec, &k), -1);
}

Test(cfg, http_limits_have_defaults_and_env, .init = clear_env)
{
    struct cfg c;
    setenv("CONVEYOR_HTTP_HEADER_TIMEOUT_MS", "500", 1);
    cr_assert_eq(cfg_load(&c, NULL), 0);
    cr_assert_eq(c.http_header_timeout_ms, 500);
    cr_assert_eq(c.http_body_timeout_ms, 30000);
    cr_assert_eq(c.http_idle_timeout_ms, 60000);
    cr_assert_eq(c.http_max_connections, 10000);
    cr_assert_eq(c.metrics_cache_ms, 2000);
    cfg_cleanup(&c);
    unsetenv("CONVEYOR_HTTP_HEADER_TIMEOUT_MS");
}

Test(cfg, the_example_file_loads, .init = clear_env)
{
    /* run from the repository root, as `make unit` does; before, its two keys shared
     * one hash, and the second silently replaced the first */
    struct cfg c;
    cr_assert_eq(cfg_load(&c, "conveyor.cfg.example"), 0);
    cr_assert_eq(c.napi_keys, 2);
    cr_assert(c.api_keys[0].all_types);
    cfg_cleanup(&c);
}

/* Issue 6: per-type and per-upstream settings are groups, not one key each. */
Test(cfg, job_type_groups_from_table_file_and_env, .init = clear_env)
{
    struct cfg c;
    const char *p = write_tmp("jobs = { max_attempts = 7; types = {\n"
                              "  carrier-post = { max_attempts = 2; dead_retention_s = 60; };\n"
                              "  order-fetch = { every_s = 30; }; }; };\n"
                              "upstreams = { mirakl = { rate_per_min = 500; auth_secret = \"k\"; }; };\n");
    setenv("CONVEYOR_JOBS_TYPES_TRACKING_PUSH_RETRY_MAX_MS", "4000", 1);
    setenv("CONVEYOR_UPSTREAMS_CORREOS_EXPRESS_URL", "http://cex.example", 1);
    cr_assert_eq(cfg_load(&c, p), 0);
    unsetenv("CONVEYOR_JOBS_TYPES_TRACKING_PUSH_RETRY_MAX_MS");
    unsetenv("CONVEYOR_UPSTREAMS_CORREOS_EXPRESS_URL");
    cr_assert_eq(c.types[JT_CARRIER_POST].max_attempts, 2, "the file");
    cr_assert_eq(c.types[JT_CARRIER_POST].dead_retention_s, 60);
    cr_assert_eq(c.types[JT_ORDER_FETCH].every_s, 30);
    cr_assert_eq(c.types[JT_ORDER_FETCH].max_attempts, 3, "the job-type table's default");
    cr_assert_eq(c.types[JT_NOOP].max_attempts, 7, "no own default: the global key");
    cr_assert_eq(cfg_max_attempts(&c, "unknown-type"), 7);
    cr_assert_eq(c.types[JT_TRACKING_PUSH].retry_max_ms, 4000, "the env");
    cr_assert_eq(c.types[JT_ACTIVATION].retry_max_ms, 60000);
    cr_assert_eq(c.ups[CFG_UPS_MIRAKL].rate_per_min, 500);
    cr_assert_str_eq(c.ups[CFG_UPS_MIRAKL].auth_secret, "k");
    cr_assert_str_eq(c.ups[CFG_UPS_CEX].url, "http://cex.example");
    cr_assert_str_eq(c.ups[CFG_UPS_SEUR].url, "http://127.0.0.1:8090/seur");
    cr_assert_str_eq(c.ups[CFG_UPS_ACTIVATION].url, c.activation_url);
    cr_assert_eq(c.ups[CFG_UPS_ONTIME].batch_max, 50);
    cr_assert_eq(cfg_set(&c, "jobs.types.noop.max_attempts", "9"), 0);
    cr_assert_eq(c.types[JT_NOOP].max_attempts, 9);
    cr_assert_eq(cfg_ups_find("correos-express"), CFG_UPS_CEX);
    cfg_cleanup(&c);
}

Test(cfg, unknown_group_names_and_fields_are_refused, .init = cr_redirect_stderr)
{
    static const char *const bad[] = {
        "jobs = { types = { carrier_post = { max_attempts = 2; }; }; };\n",
        "jobs = { types = { noop = { max_attempt = 2; }; }; };\n",
        "jobs = { types = { noop = { max_attempts = 0; }; }; };\n",
        "upstreams = { sure = { url = \"x\"; }; };\n",
        "upstreams = { seur = { timeout_ms = \"5\"; }; };\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cfg c;
        cr_assert_eq(cfg_load(&c, write_tmp(bad[i])), -1, "%s", bad[i]);
        cfg_cleanup(&c);
    }
    struct cfg c;
    cr_assert_eq(cfg_load(&c, NULL), 0);
    cr_assert_eq(cfg_set(&c, "jobs.types.nope.max_attempts", "2"), -1);
    cr_assert_eq(cfg_set(&c, "upstreams.seur.nope", "2"), -1);
    cfg_cleanup(&c);
}

/* Issue 7: the transport is chosen by name; a name this build lacks stops the
 * program at start and says which ones it has. */
Test(cfg, broker_transport_is_a_known_name, .init = cr_redirect_stderr)
{
    clear_env();
    struct cfg c;
    cr_assert_eq(cfg_load(&c, NULL), 0);
    cr_assert_str_eq(c.broker_transport, "redis");
    cr_assert(broker_transport_known("redis"));
    cr_assert(broker_transport_known("kafka"));
    cr_assert_not(broker_transport_known("rabbit"));
    cr_assert_eq(cfg_set(&c, "broker.transport", "rabbit"), -1, "a flag is checked too");
    cfg_cleanup(&c);
    setenv("CONVEYOR_BROKER_TRANSPORT", "rabbit", 1);
    cr_assert_eq(cfg_load(&c, NULL), -1);
    cfg_cleanup(&c);
    unsetenv("CONVEYOR_BROKER_TRANSPORT");
    fflush(stderr);
    char buf[512] = { 0 };
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    cr_assert(n > 0);
    cr_assert(strstr(buf, "broker.transport: unknown transport 'rabbit' (known: redis, kafka)") != NULL,
              "got: %s", buf);
}

/* Issue 7: every kafka.* key passes to librdkafka; the env wins; secrets are
 * named so that they are never logged. */
Test(cfg, kafka_keys_pass_through_from_file_env_and_flags, .init = clear_env)
{
    struct cfg c;
    const char *p = write_tmp("broker = { transport = \"kafka\"; topic_prefix = \"shop-1\"; };\n"
                              "kafka = { bootstrap_servers = \"k1:9092,k2:9092\";\n"
                              "  session_timeout_ms = 6000; enable_idempotence = true;\n"
                              "  sasl_password = \"from-file\"; };\n");
    setenv("CONVEYOR_KAFKA_SASL_PASSWORD", "from-env", 1);
    setenv("CONVEYOR_KAFKA_SECURITY_PROTOCOL", "sasl_ssl", 1);
    cr_assert_eq(cfg_load(&c, p), 0);
    unsetenv("CONVEYOR_KAFKA_SASL_PASSWORD");
    unsetenv("CONVEYOR_KAFKA_SECURITY_PROTOCOL");
    cr_assert_str_eq(c.broker_transport, "kafka");
    cr_assert_str_eq(c.broker_topic_prefix, "shop-1");
    const char *want[][2] = { { "bootstrap.servers", "k1:9092,k2:9092" },
                              { "session.timeout.ms", "6000" },
                              { "enable.idempotence", "true" },
                              { "sasl.password", "from-env" },
                              { "security.protocol", "sasl_ssl" } };
    cr_assert_eq(c.kafka_nprops, 5);
    for (size_t i = 0; i < 5; i++) {
        size_t k = 0;
        while (k < c.kafka_nprops && strcmp(c.kafka_props[2 * k], want[i][0]))
            k++;
        cr_assert_lt(k, c.kafka_nprops, "%s missing", want[i][0]);
        cr_assert_str_eq(c.kafka_props[2 * k + 1], want[i][1]);
    }
    cr_assert_eq(cfg_set(&c, "kafka.session.timeout.ms", "7000"), 0);
    cr_assert_eq(c.kafka_nprops, 5, "a flag replaces");
    cr_assert(cfg_secret_name("sasl.password"));
    cr_assert(cfg_secret_name("ssl.key.password"));
    cr_assert(cfg_secret_name("sasl.oauthbearer.client.secret"));
    cr_assert_not(cfg_secret_name("bootstrap.servers"));
    cr_assert_eq(cfg_set(&c, "broker.topic_prefix", "bad prefix!"), -1);
    cfg_cleanup(&c);
}

/* The value of kafka property name in c, or NULL. */
static const char *kafka_prop(const struct cfg *c, const char *name)
{
    for (size_t i = 0; i < c->kafka_nprops; i++)
        if (strcmp(c->kafka_props[2 * i], name) == 0)
            return c->kafka_props[2 * i + 1];
    return NULL;
}

/* Issue 7: every setting of the kafka group reaches librdkafka by its own name
 * ('_' read as '.'), each value as text; env CONVEYOR_KAFKA_* wins over the file
 * for the same name, a flag over both. */
Test(cfg, kafka_group_from_file_env_and_flags, .init = clear_env)
{
    struct cfg c;
    const char *p = write_tmp("kafka = { bootstrap_servers = \"h1:9092\"; sasl_password = \"x\";\n"
                              "  session_timeout_ms = 6000; enable_idempotence = true;\n"
                              "  queue_buffering_max_kbytes = 1048576L; batch_size = 1e6;\n"
                              "  socket_nagle_disable = false; };\n");
    setenv("CONVEYOR_KAFKA_BOOTSTRAP_SERVERS", "h2:9092,h3:9092", 1);
    setenv("CONVEYOR_KAFKA_LINGER_MS", "5", 1);
    cr_assert_eq(cfg_load(&c, p), 0);
    unsetenv("CONVEYOR_KAFKA_BOOTSTRAP_SERVERS");
    unsetenv("CONVEYOR_KAFKA_LINGER_MS");
    cr_assert_eq(c.kafka_nprops, 8);
    cr_assert_str_eq(kafka_prop(&c, "bootstrap.servers"), "h2:9092,h3:9092", "env wins");
    cr_assert_str_eq(kafka_prop(&c, "sasl.password"), "x");
    cr_assert_str_eq(kafka_prop(&c, "session.timeout.ms"), "6000");
    cr_assert_str_eq(kafka_prop(&c, "enable.idempotence"), "true");
    cr_assert_str_eq(kafka_prop(&c, "socket.nagle.disable"), "false");
    cr_assert_str_eq(kafka_prop(&c, "queue.buffering.max.kbytes"), "1048576");
    cr_assert_str_eq(kafka_prop(&c, "batch.size"), "1e+06");
    cr_assert_str_eq(kafka_prop(&c, "linger.ms"), "5", "env alone adds a pair");
    cr_assert_eq(cfg_set(&c, "kafka.bootstrap.servers", "h4:9092"), 0);
    cr_assert_eq(cfg_set(&c, "kafka.session_timeout_ms", "7000"), 0);
    cr_assert_eq(cfg_set(&c, "kafka.acks", "all"), 0);
    cr_assert_eq(c.kafka_nprops, 9, "two flags replaced a pair, one added one");
    cr_assert_str_eq(kafka_prop(&c, "bootstrap.servers"), "h4:9092");
    cr_assert_str_eq(kafka_prop(&c, "session.timeout.ms"), "7000");
    cr_assert_str_eq(kafka_prop(&c, "acks"), "all");
    cfg_cleanup(&c);
    cr_assert_eq(c.kafka_nprops, 0);
    cr_assert_null(c.kafka_props);
    unlink(p);
}

Test(cfg, kafka_bad_names_and_values_are_refused, .init = cr_redirect_stderr)
{
    clear_env();
    static const char *const bad[] = {
        "kafka = { bootstrap_servers = [\"a\", \"b\"]; };\n",
        "kafka = { sasl = { username = \"u\"; }; };\n",
        "kafka = \"h:9092\";\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cfg c;
        cr_assert_eq(cfg_load(&c, write_tmp(bad[i])), -1, "%s", bad[i]);
        cfg_cleanup(&c);
    }
    struct cfg c;
    setenv("CONVEYOR_KAFKA_", "x", 1);
    cr_assert_eq(cfg_load(&c, NULL), -1, "an env name with no property");
    cfg_cleanup(&c);
    unsetenv("CONVEYOR_KAFKA_");
    setenv("CONVEYOR_KAFKA_SASL:PASSWORD", "x", 1);
    cr_assert_eq(cfg_load(&c, NULL), -1, "a name outside the alphabet");
    cfg_cleanup(&c);
    unsetenv("CONVEYOR_KAFKA_SASL:PASSWORD");
    cr_assert_eq(cfg_load(&c, NULL), 0);
    cr_assert_eq(c.kafka_nprops, 0);
    cr_assert_eq(cfg_set(&c, "kafka.", "x"), -1);
    cr_assert_eq(cfg_set(&c, "kafka.a b", "x"), -1);
    cr_assert_eq(c.kafka_nprops, 0, "nothing added by a refused flag");
    cfg_cleanup(&c);
    fflush(stderr);
    char buf[2048] = { 0 };
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    cr_assert(n > 0);
    cr_assert(strstr(buf, "kafka.bootstrap_servers: want a string, number or boolean") != NULL,
              "got: %s", buf);
    cr_assert(strstr(buf, "env CONVEYOR_KAFKA_SASL:PASSWORD: kafka.SASL:PASSWORD: not a "
                          "librdkafka property name") != NULL,
              "got: %s", buf);
}

Test(cfg, kafka_secret_names)
{
    cr_assert(cfg_secret_name("sasl.password"));
    cr_assert(cfg_secret_name("ssl.key.password"));
    cr_assert(cfg_secret_name("ssl.key.pem"));
    cr_assert(cfg_secret_name("sasl.oauthbearer.client.secret"));
    cr_assert(cfg_secret_name("SASL.PASSWORD"));
    cr_assert_not(cfg_secret_name("bootstrap.servers"));
    cr_assert_not(cfg_secret_name("sasl.username"));
    cr_assert_not(cfg_secret_name("ssl.ca.location"));
}

/* cfg_log writes kafka.* pairs on a line of their own, with the values of
 * secret-looking names masked. */
Test(cfg, kafka_log_masks_secrets, .init = cr_redirect_stderr)
{
    clear_env();
    struct cfg c;
    setenv("CONVEYOR_KAFKA_SASL_PASSWORD", "hunter2-pw", 1);
    setenv("CONVEYOR_KAFKA_SSL_KEY_PEM", "BEGIN-PRIVATE", 1);
    setenv("CONVEYOR_KAFKA_SASL_USERNAME", "conveyor-user", 1);
    cr_assert_eq(cfg_load(&c, NULL), 0);
    unsetenv("CONVEYOR_KAFKA_SASL_PASSWORD");
    unsetenv("CONVEYOR_KAFKA_SSL_KEY_PEM");
    unsetenv("CONVEYOR_KAFKA_SASL_USERNAME");
    cr_assert_eq(cfg_set(&c, "kafka.sasl.oauthbearer.client.secret", "s3cr3t-value"), 0);
    log_init("test", LOG_LVL_INFO);
    cfg_log(&c);
    cfg_cleanup(&c);
    fflush(stderr);
    char buf[8192] = { 0 };
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    cr_assert(n > 0);
    const char *k = strstr(buf, "evt=config.kafka");
    cr_assert(k != NULL, "got: %s", buf);
    cr_assert(strstr(k, "kafka.sasl.username=\"conveyor-user\"") != NULL, "got: %s", k);
    cr_assert(strstr(k, "kafka.sasl.password=***") != NULL, "got: %s", k);
    cr_assert(strstr(k, "kafka.ssl.key.pem=***") != NULL, "got: %s", k);
    cr_assert(strstr(k, "kafka.sasl.oauthbearer.client.secret=***") != NULL, "got: %s", k);
    cr_assert_null(strstr(buf, "hunter2-pw"));
    cr_assert_null(strstr(buf, "BEGIN-PRIVATE"));
    cr_assert_null(strstr(buf, "s3cr3t-value"));
}

/* Topics and groups are <prefix>.<type>: the prefix is a part of a Kafka topic name. */
Test(cfg, topic_prefix_default_env_and_alphabet, .init = cr_redirect_stderr)
{
    clear_env();
    struct cfg c;
    cr_assert_eq(cfg_load(&c, NULL), 0);
    cr_assert_str_eq(c.broker_topic_prefix, "conveyor");
    cr_assert_eq(cfg_set(&c, "broker.topic_prefix", "prod-eu.cv_1"), 0);
    cr_assert_str_eq(c.broker_topic_prefix, "prod-eu.cv_1");
    cr_assert_eq(cfg_set(&c, "broker.topic_prefix", "a/b"), -1);
    cr_assert_eq(cfg_set(&c, "broker.topic_prefix", ""), -1);
    char longp[102];
    memset(longp, 'a', 101);
    longp[101] = '\0';
    cr_assert_eq(cfg_set(&c, "broker.topic_prefix", longp), -1, "101 bytes");
    longp[100] = '\0';
    cr_assert_eq(cfg_set(&c, "broker.topic_prefix", longp), 0, "100 bytes");
    cfg_cleanup(&c);
    setenv("CONVEYOR_BROKER_TOPIC_PREFIX", "staging", 1);
    cr_assert_eq(cfg_load(&c, NULL), 0);
    cr_assert_str_eq(c.broker_topic_prefix, "staging");
    cfg_cleanup(&c);
    setenv("CONVEYOR_BROKER_TOPIC_PREFIX", "has space", 1);
    cr_assert_eq(cfg_load(&c, NULL), -1);
    cfg_cleanup(&c);
    unsetenv("CONVEYOR_BROKER_TOPIC_PREFIX");
    char *p = write_tmp("broker = { topic_prefix = \"ok.prefix\"; };\n");
    cr_assert_eq(cfg_load(&c, p), 0);
    cr_assert_str_eq(c.broker_topic_prefix, "ok.prefix");
    cfg_cleanup(&c);
    unlink(p);
    fflush(stderr);
    char buf[2048] = { 0 };
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    cr_assert(n > 0);
    cr_assert(strstr(buf, "broker.topic_prefix: must be 1..100 of A-Z a-z 0-9 . _ - "
                          "(got 'has space')") != NULL,
              "got: %s", buf);
}

/* The deploy example of the kafka group loads, with every value librdkafka needs for
 * SASL_SSL and no secret in the file (they come from the environment). */
Test(cfg, the_kafka_deploy_example_loads_without_secrets, .init = clear_env)
{
    struct cfg c;
    cr_assert_eq(cfg_load(&c, "deploy/kafka/conveyor-kafka.cfg"), 0);
    cr_assert_str_eq(kafka_prop(&c, "security.protocol"), "SASL_SSL");
    cr_assert_str_eq(kafka_prop(&c, "sasl.mechanism"), "SCRAM-SHA-512");
    cr_assert_not_null(kafka_prop(&c, "ssl.ca.location"));
    cr_assert_not_null(kafka_prop(&c, "bootstrap.servers"));
    for (size_t i = 0; i < c.kafka_nprops; i++)
        cr_assert_not(cfg_secret_name(c.kafka_props[2 * i]), "%s in the file",
                      c.kafka_props[2 * i]);
    cfg_cleanup(&c);
}
