#include "job.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "mem.h"

static const char *const state_names[] = {
    [JOB_STATE_QUEUED] = "queued",       [JOB_STATE_SCHEDULED] = "scheduled",
    [JOB_STATE_RUNNING] = "running",     [JOB_STATE_RETRYING] = "retrying",
    [JOB_STATE_SUCCEEDED] = "succeeded", [JOB_STATE_FAILED] = "failed",
    [JOB_STATE_DEAD] = "dead",
};

const char *job_state_str(enum job_state s)
{
    if ((unsigned)s >= sizeof(state_names) / sizeof(state_names[0]))
        return "unknown";
    return state_names[s];
}

int job_state_parse(const char *s)
{
    for (unsigned i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
        if (strcmp(s, state_names[i]) == 0)
            return (int)i;
    return -1;
}

void job_fresh_id(struct job *j)
{
    uuid_v7(clock_wall_ms(), j->id);
    j->fresh_id = 1;
}

struct job *job_new(const char *type)
{
    struct job *j = xcalloc(1, sizeof(*j));
    uuid_v4(j->id);
    if (type) {
        size_t n = strlen(type);
        CV_ASSERT(n < sizeof(j->type));
        memcpy(j->type, type, n + 1);
    }
    j->attempt = 1;
    return j;
}

void job_free(struct job *j)
{
    if (!j)
        return;
    free(j->payload);
    free(j->idem_key);
    free(j);
}

void job_set_payload(struct job *j, const char *json, size_t len)
{
    free(j->payload);
    j->payload = xstrndup(json, len);
    j->payload_len = len;
}

int job_type_valid(const char *s, size_t len)
{
    if (len == 0 || len >= JOB_TYPE_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

void job_traceparent_new(char out[JOB_TRACEPARENT_LEN])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[24];
    uuid_pool_bytes(b, sizeof(b));
    int o = 0;
    memcpy(out, "00-", 3);
    o = 3;
    for (int i = 0; i < 16; i++) {
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o++] = '-';
    for (int i = 16; i < 24; i++) {
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    memcpy(out + o, "-01", 4);
}

static int hexrun(const char *s, int n)
{
    int nonzero = 0;
    for (int i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        nonzero |= c != '0';
    }
    return nonzero;
}

int job_traceparent_valid(const char *s)
{
    /* version(2)-trace(32)-span(16)-flags(2) */
    if (strlen(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return 0;
    if (!hexrun(s, 2) && !(s[0] == '0' && s[1] == '0'))
        return 0;
    if (strncmp(s, "ff", 2) == 0)
        return 0;
    return hexrun(s + 3, 32) && hexrun(s + 36, 16) &&
           (hexrun(s + 53, 2) || (s[53] == '0' && s[54] == '0'));
}

int64_t job_backoff_ms(int attempt, int base_ms, int max_ms, double rnd)
{
    if (attempt < 1)
        attempt = 1;
    int64_t d = base_ms;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    /* jitter of +-20% so that a burst of failures does not retry in lockstep */
    double j = (rnd * 0.4) - 0.2;
    int64_t out = d + (int64_t)((double)d * j);
    return out < 1 ? 1 : out;
}
