/* jobopt.c - job options and job making (jobopt.h). */
#include "jobopt.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "clock.h"
#include "mem.h"
#include "sbuf.h"

enum { SEEN_DELAY = 1, SEEN_RUN_AT = 2, SEEN_MAX = 4, SEEN_IDEM = 8, SEEN_ID = 16, SEEN_TP = 32 };

/* Whole decimal number 0..max, digits only (no sign, no spaces). */
static int parse_uint(const char *s, int64_t max, int64_t *out)
{
    int64_t v = 0;
    if (!s || !*s || strlen(s) > 15)
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int idem_valid(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > JOB_IDEM_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x20 || (unsigned char)k[i] > 0x7e)
            return 0;
    return 1;
}

static enum cv_rc once(struct jobopt *o, unsigned bit, const char **why, const char *msg)
{
    if (o->seen & bit) {
        *why = msg;
        return CV_ERR_INVALID;
    }
    o->seen |= bit;
    return CV_OK;
}

enum cv_rc jobopt_set(struct jobopt *o, const char *name, const char *value, int64_t now,
                      const char **why)
{
    int64_t v;
    if (strcmp(name, "delay_ms") == 0) {
        *why = "delay_ms must be given once, 0..2592000000";
        if (once(o, SEEN_DELAY, why, *why) || parse_uint(value, JOBOPT_DELAY_MAX_MS, &v))
            return CV_ERR_INVALID;
        if (o->seen & SEEN_RUN_AT) {
            *why = "give delay_ms or run_at, not both";
            return CV_ERR_INVALID;
        }
        o->not_before_ms = v ? now + v : 0;
        return CV_OK;
    }
    if (strcmp(name, "run_at") == 0) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%s", value ? value : "");
        /* an unencoded '+' of the UTC offset arrives as a space */
        for (char *p = buf; *p; p++)
            if (*p == ' ' && p - buf > 10)
                *p = '+';
        *why = "run_at must be one RFC 3339 timestamp";
        if (once(o, SEEN_RUN_AT, why, *why) || clock_parse_rfc3339(buf, &v))
            return CV_ERR_INVALID;
        if (o->seen & SEEN_DELAY) {
            *why = "give delay_ms or run_at, not both";
            return CV_ERR_INVALID;
        }
        if (v > now + JOBOPT_DELAY_MAX_MS) {
            *why = "run_at is more than 30 days ahead";
            return CV_ERR_INVALID;
        }
        o->not_before_ms = v > now ? v : 0;
        return CV_OK;
    }
    if (strcmp(name, "max_attempts") == 0) {
        *why = "max_attempts must be given once, 1..100";
        if (once(o, SEEN_MAX, why, *why) || parse_uint(value, JOBOPT_ATTEMPTS_MAX, &v) || v < 1)
            return CV_ERR_INVALID;
        o->max_attempts = (int)v;
        return CV_OK;
    }
    if (strcmp(name, "idempotency_key") == 0) {
        *why = "Idempotency-Key must be 1..128 printable ASCII";
        if (once(o, SEEN_IDEM, why, *why) || !value || !idem_valid(value))
            return CV_ERR_INVALID;
        snprintf(o->idem, sizeof(o->idem), "%s", value);
        return CV_OK;
    }
    if (strcmp(name, "job_id") == 0) {
        *why = "the job id must be a UUID";
        if (once(o, SEEN_ID, why, *why) || !value || !uuid_valid(value))
            return CV_ERR_INVALID;
        for (int i = 0; i < UUID_STR_LEN; i++)
            o->job_id[i] = (char)tolower((unsigned char)value[i]);
        return CV_OK;
    }
    if (strcmp(name, "traceparent") == 0) {
        o->seen |= SEEN_TP;
        if (value && job_traceparent_valid(value))
            snprintf(o->traceparent, sizeof(o->traceparent), "%s", value);
        return CV_OK;
    }
    *why = "unknown option (known: " JOBOPT_NAMES ")";
    return CV_ERR_NOT_FOUND;
}

enum cv_rc jobopt_make(const struct cfg *c, const struct jobtype *t, const struct jobopt *o,
                       const char *idem, const char *producer, const cJSON *node,
                       const char *raw, size_t rawlen, int64_t now, struct job **out,
                       const char **field, const char **why)
{
    struct sbuf canon;
    struct job *j = job_new(t->name);
    sbuf_init(&canon);
    if (o->job_id[0])
        memcpy(j->id, o->job_id, UUID_STR_LEN);
    else
        job_fresh_id(j);    /* drawn just now: see job.h */
    snprintf(j->producer, sizeof(j->producer), "%s", producer ? producer : "");
    j->max_attempts = o->max_attempts ? o->max_attempts : cfg_max_attempts(c, t->name);
    j->created_ms = now;
    j->not_before_ms = o->not_before_ms;
    if (!idem && o->idem[0])
        idem = o->idem;
    if (idem)
        j->idem_key = xstrdup(idem);
    if (o->traceparent[0])
        memcpy(j->traceparent, o->traceparent, sizeof(j->traceparent));
    else
        job_traceparent_new(j->traceparent);
    /* the payload last: validators may name the job id in it */
    enum cv_rc rc = jobtype_check(t, node, j->id, &canon, field, why);
    if (rc != CV_OK) {
        job_free(j);
        j = NULL;
    } else if (canon.len) {
        job_set_payload(j, canon.p, canon.len);
    } else if (raw && rawlen) {
        job_set_payload(j, raw, rawlen);
    } else {
        size_t n;
        char *s = json_print(node, &n);
        job_set_payload(j, s, n);
        free(s);
    }
    sbuf_cleanup(&canon);
    *out = j;
    return rc;
}

struct job *jobopt_derived(const struct cfg *c, const char *traceparent, const char *type,
                           const char *key, const char *payload, int64_t delay_ms)
{
    CV_ASSERT(jobtype_find(type, strlen(type)));
    struct job *j = job_new(type);
    unsigned char h[32];
    char *name = xasprintf("conveyor-derived|%s|%s", type, key);
    auth_sha256(name, strlen(name), h);
    free(name);
    uuid_v8(h, j->id);
    snprintf(j->producer, sizeof(j->producer), "%s", JOBOPT_PRODUCER);
    j->max_attempts = cfg_max_attempts(c, type);
    j->created_ms = clock_wall_ms();
    j->not_before_ms = delay_ms > 0 ? j->created_ms + delay_ms : 0;
    job_set_payload(j, payload, strlen(payload));
    /* the same trace, a new span: "00-<trace 32>-<span 16>-01" */
    job_traceparent_new(j->traceparent);
    if (traceparent && job_traceparent_valid(traceparent))
        memcpy(j->traceparent + 3, traceparent + 3, 32);
    return j;
}
