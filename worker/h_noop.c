/* h_noop.c - a job that does nothing: the benchmark's measure of the
 * machinery itself (consume, start, settle). A payload may ask it to take a
 * while ("sleep_ms", at most 60 s: slow jobs for the tests and the benchmark),
 * and its "key" is its ordering key (jobtype.c), so it also shows per-key
 * order on Kafka. The batch takes the longest of its jobs' sleeps, as if they
 * ran side by side. */
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "wrk.h"

#define NOOP_SLEEP_MAX_MS 60000

static long sleep_of(const struct job *j)
{
    if (!j->payload || !memmem(j->payload, j->payload_len, "sleep_ms", 8))
        return 0;
    cJSON *p = cJSON_ParseWithLength(j->payload, j->payload_len);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(p, "sleep_ms");
    long ms = cJSON_IsNumber(s) && s->valuedouble > 0 ? (long)s->valuedouble : 0;
    cJSON_Delete(p);
    return ms > NOOP_SLEEP_MAX_MS ? NOOP_SLEEP_MAX_MS : ms;
}

void h_noop(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res)
{
    (void)ctx;
    long longest = 0;
    for (size_t i = 0; i < n; i++) {
        long ms = sleep_of(jobs[i]);
        if (ms > longest)
            longest = ms;
        res[i].rc = CV_OK;
    }
    if (longest > 0)
        usleep((useconds_t)longest * 1000);
}
