/* fuzz_cfg.c - the configuration parser (issue 5, section 7).
 *
 * An input is a libconfig file, optionally followed by a line "#%env" and
 * lines NAME=value: those whose NAME starts with CONVEYOR_ are put in the
 * environment for the load (and taken out after it). The file is written to a
 * memfd and loaded with cfg_load("/proc/self/fd/N"), then freed with
 * cfg_cleanup, so LeakSanitizer sees every path that loses a string. The
 * whole input is also given to cfg_parse_api_key, as CONVEYOR_API_KEYS
 * entries are.
 *
 * Oracles: a load that succeeds holds every number within its bounds (no NaN),
 * and every key is well formed; a key spec that parses says the same hash and
 * names as the text. A violation aborts (a finding).
 *
 * Inputs with "@include" are skipped: libconfig would read the named file,
 * and the fuzzer would go reading /dev/zero or /proc. cfg.c prints one line
 * per refused file: stderr goes to /dev/null around the load, while sanitizer
 * reports keep going to the real stderr. */
#include <fcntl.h>
#include <sanitizer/common_interface_defs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cfg.h"
#include "job.h"
#include "mem.h"

#include "fuzz_env.h"

#define ENV_MARK "\n#%env\n"
#define MAX_ENV 32

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int file_fd = -1, err_fd = -1, null_fd = -1;
static char file_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    file_fd = memfd_create("fuzz_cfg", MFD_CLOEXEC);
    err_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
    null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    CV_ASSERT(file_fd >= 0 && err_fd >= 0 && null_fd >= 0);
    snprintf(file_path, sizeof(file_path), "/proc/self/fd/%d", file_fd);
    __sanitizer_set_report_fd((void *)(intptr_t)err_fd);
    fuzz_clear_env();
    return 0;
}

static void finding(const char *what, const char *input)
{
    dprintf(err_fd, "fuzz_cfg: %s\n--- input ---\n%.2000s\n--- end ---\n", what, input);
    abort();
}

/* ---- oracles ------------------------------------------------------------------- */

static void check_key(const struct cfg_api_key *k, const char *input)
{
    size_t n = strnlen(k->name, sizeof(k->name));
    if (n == 0 || n == sizeof(k->name))
        finding("an API key without a name, or one not terminated", input);
    if (k->ntypes < 0 || k->ntypes > CFG_MAX_KEY_TYPES || (k->ntypes == 0 && !k->all_types))
        finding("an API key without types", input);
    for (int i = 0; i < k->ntypes; i++) {
        size_t tl = strnlen(k->types[i], sizeof(k->types[i]));
        if (tl == 0 || tl == sizeof(k->types[i]))
            finding("an API key with an empty or unterminated type", input);
    }
}

static void in_range(double v, double lo, double hi, const char *what, const char *input)
{
    if (!(v >= lo && v <= hi)) {
        dprintf(err_fd, "fuzz_cfg: %s = %g\n", what, v);
        finding("a loaded value out of its bounds", input);
    }
}

static void check_cfg(const struct cfg *c, const char *input)
{
    in_range(c->http_port, 1, 65535, "http.port", input);
    in_range(c->http_threads, 0, 256, "http.threads", input);
    in_range(c->body_max_bytes, 1024, 67108864, "http.body_max_bytes", input);
    in_range(c->batch_max, 1, 10000, "http.batch_max", input);
    in_range(c->max_attempts, 1, 100, "jobs.max_attempts", input);
    in_range(c->concurrency, 1, 4096, "worker.concurrency", input);
    in_range(c->sim_error_rate, 0, 1, "sim.error_rate", input);
    in_range(c->sim_timeout_rate, 0, 1, "sim.timeout_rate", input);
    in_range(c->sim_error_status, 400, 599, "sim.error_status", input);
    if (!c->redis_url || !c->pg_dsn || !c->http_bind || !c->log_level || !c->worker_types ||
        !c->activation_url)
        finding("a string setting left NULL", input);
    if (c->napi_keys < 0 || c->napi_keys > CFG_MAX_KEYS)
        finding("api key count out of range", input);
    for (int i = 0; i < c->napi_keys; i++)
        check_key(&c->api_keys[i], input);
}

/* A spec that parses must say what the key holds: name, then the hash in hex. */
static void check_spec(const char *spec)
{
    struct cfg_api_key k;
    if (cfg_parse_api_key(spec, &k) != 0)
        return;
    check_key(&k, spec);
    size_t n = strlen(k.name);
    if (strncmp(spec, k.name, n) != 0 || spec[n] != ':')
        finding("cfg_parse_api_key: the name is not the text before ':'", spec);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", k.sha256[i]);
    if (strncasecmp(spec + n + 1, hex, 64) != 0 || spec[n + 65] != ':')
        finding("cfg_parse_api_key: the hash is not the 64 hex digits given", spec);
}

/* ---- the entry point --------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = xmalloc(size + 1);
    char *envnames[MAX_ENV];
    int nenv = 0;
    memcpy(text, data, size);
    text[size] = '\0';
    check_spec(text);
    if (memmem(data, size, "@include", 8))
        goto out;

    size_t file_len = size;
    char *mark = strstr(text, ENV_MARK);
    if (mark) {
        file_len = (size_t)(mark - text);
        char *save = NULL;
        for (char *l = strtok_r(mark + strlen(ENV_MARK), "\n", &save); l && nenv < MAX_ENV;
             l = strtok_r(NULL, "\n", &save)) {
            char *eq = strchr(l, '=');
            if (!eq || strncmp(l, "CONVEYOR_", 9) != 0)
                continue;
            *eq = '\0';
            setenv(l, eq + 1, 1);
            envnames[nenv++] = l;
        }
    }
    CV_ASSERT(ftruncate(file_fd, 0) == 0);
    CV_ASSERT(pwrite(file_fd, data, file_len, 0) == (ssize_t)file_len);

    struct cfg c;
    dup2(null_fd, 2);
    int rc = cfg_load(&c, file_path);
    dup2(err_fd, 2);
    if (rc == 0)
        check_cfg(&c, text);
    cfg_cleanup(&c);
out:
    for (int i = 0; i < nenv; i++)
        unsetenv(envnames[i]);
    free(text);
    return 0;
}
