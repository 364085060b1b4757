/* fuzz_json.c - what we write from untrusted text: JSON replies and log values
 * (issue 5, section 7).
 *
 * Job payloads, errors and keys come from producers or from Redis (written by
 * any producer); they end up quoted in replies and in log lines. Oracles:
 *   - sbuf_add_json_strn: the quoted text parses back (cJSON) to the same
 *     bytes, up to a NUL;
 *   - log_str: the value fits LOG_STR_MAX (the buffer is exactly that big, so
 *     ASan sees a byte past it), is quoted, holds no control character and no
 *     quote that is not escaped;
 *   - api_json_job_status: a status whose fields come from the input (lines:
 *     payload, last_error, type, idempotency key) renders as one JSON object
 *     whose payload is null, the stored JSON as is, or the stored text;
 *   - json_parse: a tree it returns prints and parses back to an equal tree.
 * A violation aborts (a finding). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "broker.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "sbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void finding(const char *what, const char *out)
{
    fprintf(stderr, "fuzz_json: %s\n--- output ---\n%.2000s\n--- end ---\n", what, out);
    abort();
}

static void check_quote(const char *s, size_t n)
{
    struct sbuf b;
    sbuf_init(&b);
    sbuf_add_json_strn(&b, s, n);
    cJSON *v = json_parse(b.p, b.len);
    size_t want = strnlen(s, n);
    if (!cJSON_IsString(v) || strlen(v->valuestring) != want ||
        memcmp(v->valuestring, s, want) != 0)
        finding("a quoted string does not parse back to itself", b.p);
    cJSON_Delete(v);
    sbuf_cleanup(&b);
}

static void check_log_str(const char *s)
{
    char *buf = xmalloc(LOG_STR_MAX);
    const char *out = log_str(buf, s);
    size_t n = strnlen(out, LOG_STR_MAX);
    if (n == LOG_STR_MAX || n < 2 || out[0] != '"' || out[n - 1] != '"')
        finding("log_str: not one quoted value within LOG_STR_MAX", out);
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c == 0x7f)
            finding("log_str: a control character in a log value", out);
        if (c == '\\')
            i++;                      /* the escaped character */
        else if (c == '"')
            finding("log_str: a quote that ends the value early", out);
    }
    free(buf);
}

static void check_status(char *const *line, int nlines)
{
    struct job_status st;
    memset(&st, 0, sizeof(st));
    snprintf(st.id, sizeof(st.id), "6f1c3e1a-2b4d-4c5e-8f90-123456789abc");
    st.payload = nlines > 0 ? line[0] : NULL;
    if (nlines > 1)
        snprintf(st.last_error, sizeof(st.last_error), "%s", line[1]);
    if (nlines > 2)
        snprintf(st.type, sizeof(st.type), "%s", line[2]);
    st.idem_key = nlines > 3 ? line[3] : NULL;
    st.state = (enum job_state)(nlines % 8);     /* 7 is out of range: "unknown" */
    st.attempt = nlines;
    st.created_ms = 1780000000000;
    st.finished_ms = nlines > 2 ? -1 : 1780000000123;

    struct sbuf b;
    sbuf_init(&b);
    api_json_job_status(&b, &st, 64);
    cJSON *root = json_parse(b.p, b.len);
    if (!cJSON_IsObject(root))
        finding("a job status that is not one JSON object", b.p);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "payload");
    cJSON *stored = st.payload ? json_parse(st.payload, strlen(st.payload)) : NULL;
    int ok = cJSON_IsNull(p) ||
             (stored && cJSON_Compare(p, stored, 1)) ||
             (!stored && cJSON_IsString(p) && !strcmp(p->valuestring, st.payload));
    if (!p || !ok)
        finding("a job status whose payload is not the stored one", b.p);
    cJSON_Delete(stored);
    cJSON_Delete(root);
    sbuf_cleanup(&b);
}

static void check_parse(const char *s, size_t n)
{
    cJSON *a = json_parse(s, n);
    if (!a)
        return;
    char *text = json_print(a, NULL);
    cJSON *b = json_parse(text, strlen(text));
    if (!b || !cJSON_Compare(a, b, 1))
        finding("a parsed tree does not survive print and parse", text);
    cJSON_Delete(b);
    free(text);
    cJSON_Delete(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = xmalloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    check_quote(s, size);
    check_log_str(s);
    check_parse(s, size);

    char *line[4];
    int n = 0;
    char *save = NULL;
    for (char *l = strtok_r(s, "\n", &save); l && n < 4; l = strtok_r(NULL, "\n", &save))
        line[n++] = l;
    check_status(line, n);
    free(s);
    return 0;
}
