/* ctl_parse.c - conveyorctl's parsers of operator input: durations, --since,
 * and the lines of a jobs file. Pure functions (no I/O), unit-tested in
 * tests/unit/test_ctl.c. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "ctl.h"
#include "job.h"
#include "jobopt.h"
#include "jobtype.h"
#include "json.h"

#define DURATION_MAX_MS (3650LL * 24 * 3600 * 1000)
#define LINE_MAX_FIELDS 8

/* ---- durations -------------------------------------------------------------- */

int ctl_parse_duration_ms(const char *s, int64_t *ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {
        /* "ms" before "m": the longest unit that matches */
        { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
    };
    int64_t total = 0;
    const char *p = s;
    if (!s || !*s)
        return -1;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return -1;
        int64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (*p++ - '0');
            if (v > DURATION_MAX_MS)
                return -1;
        }
        size_t k = 0, nunits = sizeof(units) / sizeof(units[0]);
        while (k < nunits && strncmp(p, units[k].unit, strlen(units[k].unit)) != 0)
            k++;
        if (k == nunits)
            return -1;          /* a bare number: seconds or minutes? say it */
        p += strlen(units[k].unit);
        if (v > (DURATION_MAX_MS - total) / units[k].ms)
            return -1;
        total += v * units[k].ms;
    }
    *ms = total;
    return 0;
}

int ctl_parse_since(const char *s, int64_t now_ms, int64_t *ms)
{
    int64_t d;
    if (ctl_parse_duration_ms(s, &d) == 0) {
        *ms = now_ms - d;
        return 0;
    }
    return clock_parse_rfc3339(s, ms);
}

/* ---- jobs files ------------------------------------------------------------- */

/* The options a line may carry, under the API's names (common/jobopt.h). */
static const char *const line_opts[] = { "idempotency_key", "delay_ms", "run_at",
                                         "max_attempts" };

/* The text jobopt_set wants for an option's JSON value: a string as is, an
 * integer in decimal. NULL when the value has another type. */
static const char *opt_text(const cJSON *v, char buf[32])
{
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
        fabs(v->valuedouble) < 9e15) {
        snprintf(buf, 32, "%lld", (long long)v->valuedouble);
        return buf;
    }
    return NULL;
}

int ctl_ndjson_job(const struct cfg *c, const char *line, size_t len, int64_t now_ms,
                   struct job **out, char *why, size_t cap)
{
    int ret = -1;
    cJSON *root = NULL, *empty = NULL;
    const char *w = NULL, *field = NULL;
    struct jobopt o;
    *out = NULL;
    memset(&o, 0, sizeof(o));
    while (len > 0 && isspace((unsigned char)line[len - 1]))
        len--;
    size_t lead = 0;
    while (lead < len && isspace((unsigned char)line[lead]))
        lead++;
    if (lead == len) {
        ret = 0;
        goto out;
    }
    root = json_parse(line + lead, len - lead);
    if (!cJSON_IsObject(root)) {
        snprintf(why, cap, "%s", root ? "not a JSON object" : "not valid JSON");
        goto out;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    const cJSON *payload = cJSON_GetObjectItemCaseSensitive(root, "payload");
    if (!cJSON_IsString(type)) {
        snprintf(why, cap, "\"type\" is required (a string)");
        goto out;
    }
    const struct jobtype *t = jobtype_find(type->valuestring, strlen(type->valuestring));
    if (!t) {
        snprintf(why, cap, "unknown type \"%.64s\" (known: %s)", type->valuestring,
                 jobtype_names());
        goto out;
    }
    for (const cJSON *m = root->child; m; m = m->next) {
        char buf[32];
        size_t k = 0, n = sizeof(line_opts) / sizeof(line_opts[0]);
        if (strcmp(m->string, "type") == 0 || strcmp(m->string, "payload") == 0)
            continue;
        while (k < n && strcmp(m->string, line_opts[k]) != 0)
            k++;
        if (k == n) {
            snprintf(why, cap, "unknown member \"%.64s\" (type, payload, idempotency_key, "
                               "delay_ms, run_at, max_attempts)", m->string);
            goto out;
        }
        const char *text = opt_text(m, buf);
        if (!text || jobopt_set(&o, line_opts[k], text, now_ms, &w) != CV_OK) {
            snprintf(why, cap, "%s: %s", line_opts[k], text ? w : "wrong JSON type");
            goto out;
        }
    }
    if (!payload)
        payload = empty = cJSON_CreateObject();
    if (jobopt_make(c, t, &o, NULL, "", payload, NULL, 0, now_ms, out, &field, &w) != CV_OK) {
        snprintf(why, cap, "payload%s%s: %s", field ? "." : "", field ? field : "", w);
        goto out;
    }
    ret = 1;
out:
    cJSON_Delete(root);
    cJSON_Delete(empty);
    return ret;
}
