/* fuzz_job.c - the job envelope's fields and payloads (issue 5, section 7).
 *
 * Each input goes, as text, through every check a job's fields pass on their
 * way from a producer to a worker, each against an oracle:
 *   - uuid_valid, job_type_valid, job_traceparent_valid: the same answer as a
 *     reference written here from the spec (RFC 4122 text form, [a-z0-9_-]{1,31},
 *     W3C Trace Context level 1);
 *   - job_state_parse: a name it accepts prints back the same;
 *   - clock_parse_rfc3339 (run_at): an instant it accepts prints back, with
 *     clock_rfc3339, to text that parses to the same instant;
 *   - as a payload: what api_activation_payload accepts, the worker's
 *     h_activation_parse must accept with the same user, offer and the job's
 *     id; whatever the worker accepts has a canonical id and ids >= 1;
 *   - json_get_int64 / json_get_str on each member: a value they return is in
 *     the bounds asked for.
 * A disagreement aborts (a finding). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "clock.h"
#include "job.h"
#include "json.h"
#include "jobtype.h"
#include "mem.h"
#include "sbuf.h"
#include "uuid.h"
#include "wrk.h"

#define YEAR_10000_MS 253402300800000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void finding(const char *what, const char *input)
{
    fprintf(stderr, "fuzz_job: %s\n--- input ---\n%.2000s\n--- end ---\n", what, input);
    abort();
}

/* ---- references, from the specs ---------------------------------------------- */

static int hex_lower(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int hex_any(char c)
{
    return hex_lower(c) || (c >= 'A' && c <= 'F');
}

static int ref_uuid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !hex_any(s[i]))
            return 0;
    }
    return 1;
}

static int ref_type(const char *s, size_t n)
{
    if (n < 1 || n > 31)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789_-", s[i]) || s[i] == '\0')
            return 0;
    return 1;
}

/* W3C Trace Context: version "00" (ff is invalid), trace-id 32 and parent-id 16
 * lower-case hex digits not all zero, flags 2 hex digits; we take version 00 only
 * at its exact length, and other versions at the same length. */
static int ref_traceparent(const char *s)
{
    if (strlen(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return 0;
    if (!hex_lower(s[0]) || !hex_lower(s[1]) || (s[0] == 'f' && s[1] == 'f'))
        return 0;
    int nz_trace = 0, nz_parent = 0;
    for (int i = 3; i < 35; i++) {
        if (!hex_lower(s[i]))
            return 0;
        nz_trace |= s[i] != '0';
    }
    for (int i = 36; i < 52; i++) {
        if (!hex_lower(s[i]))
            return 0;
        nz_parent |= s[i] != '0';
    }
    return nz_trace && nz_parent && hex_lower(s[53]) && hex_lower(s[54]);
}

/* ---- the checks ---------------------------------------------------------------- */

static void check_fields(const char *s, size_t len)
{
    if (uuid_valid(s) != ref_uuid(s))
        finding("uuid_valid disagrees with the RFC 4122 text form", s);
    if (job_type_valid(s, len) != ref_type(s, len))
        finding("job_type_valid disagrees with [a-z0-9_-]{1,31}", s);
    if (job_traceparent_valid(s) != ref_traceparent(s))
        finding("job_traceparent_valid disagrees with W3C Trace Context", s);
    int st = job_state_parse(s);
    if (st >= 0 && strcmp(job_state_str((enum job_state)st), s) != 0)
        finding("job_state_parse accepts a name that prints back otherwise", s);
}

static void check_time(const char *s)
{
    int64_t ms, again;
    char buf[CLOCK_RFC3339_LEN];
    if (clock_parse_rfc3339(s, &ms) != 0)
        return;
    /* an offset can move 1970-01-01 before the epoch, or 9999-12-31 into year
     * 10000: four-digit years cannot say those, and run_at refuses them */
    if (ms < 0 || ms >= YEAR_10000_MS)
        return;
    clock_rfc3339(ms, buf);
    if (clock_parse_rfc3339(buf, &again) != 0 || again != ms) {
        fprintf(stderr, "fuzz_job: %lld -> %s -> %lld\n", (long long)ms, buf, (long long)again);
        finding("an RFC 3339 time does not survive print and parse", s);
    }
}

/* The API's canonical activation payload must be what the worker reads. */
static void check_payload(const char *s, size_t len)
{
    static const char id[] = "0f1e2d3c-4b5a-4697-8877-665544332211";
    struct job j = { .payload = (char *)s, .payload_len = len };
    char txn[UUID_STR_LEN];
    int64_t u, o;
    const char *field;
    memcpy(j.id, id, sizeof(id));
    if (h_activation_parse(&j, txn, &u, &o, &field) == 0 &&
        (!uuid_valid(txn) || u < 1 || o < 1 || strspn(txn, "0123456789abcdef-") != 36))
        finding("the worker accepts a payload with a bad id", s);

    cJSON *root = json_parse(s, len);
    if (!cJSON_IsObject(root))
        goto out;
    struct sbuf canon;
    int64_t au = 0, ao = 0;
    const char *why;
    sbuf_init(&canon);
    /* the one validator the API and the worker share (common/jobtype.c) */
    if (jobtype_check(jobtype_at(JT_ACTIVATION), root, id, &canon, &field, &why) == CV_OK) {
        json_get_int64(root, "user_id", 1, INT64_MAX, &au, &field);
        json_get_int64(root, "offer_id", 1, INT64_MAX, &ao, &field);
        j.payload = canon.p;
        j.payload_len = canon.len;
        if (h_activation_parse(&j, txn, &u, &o, &field) != 0)
            finding("the worker refuses the payload the API made", canon.p);
        if (u != au || o != ao || strcmp(txn, id) != 0)
            finding("the worker reads other ids than the API wrote", canon.p);
    }
    sbuf_cleanup(&canon);

    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        int64_t v;
        const char *str;
        if (!it->string)
            continue;
        if (json_get_int64(root, it->string, 1, 1000, &v, &field) == CV_OK &&
            (v < 1 || v > 1000))
            finding("json_get_int64 returns a value out of its bounds", s);
        if (json_get_int64(root, it->string, INT64_MIN, INT64_MAX, &v, &field) == CV_OK &&
            field != NULL)
            finding("json_get_int64 names a field on success", s);
        if (json_get_str(root, it->string, 8, &str, &field) == CV_OK &&
            (strlen(str) < 1 || strlen(str) > 8))
            finding("json_get_str returns a string out of its bounds", s);
    }
out:
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the fields arrive as C strings (headers, hash fields), payloads with a
     * length (they may hold a NUL); the copy is NUL-terminated for both */
    char *s = xmalloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    check_fields(s, strlen(s));
    check_time(s);
    check_payload(s, size);
    free(s);
    return 0;
}
