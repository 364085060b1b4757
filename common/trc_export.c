/* trc_export.c - finished spans to an OpenTelemetry collector over OTLP/HTTP.
 *
 * The span's owner thread never waits for the collector: trc_exit copies the
 * span into a bounded ring under a mutex (a few hundred bytes, no allocation)
 * and returns; when the ring is full the span is dropped and counted. One
 * exporter thread per process wakes every TRC_EXPORT_EVERY_MS (or when a batch
 * is full), takes up to TRC_EXPORT_BATCH spans out of the ring and POSTs them
 * as one ExportTraceServiceRequest in OTLP's JSON encoding (Content-Type
 * application/json; ids as hex strings, times as decimal strings of unix
 * nanoseconds, as the OTLP/HTTP specification asks for JSON). A collector that
 * is down or slow costs the spans of that batch (logged once per failure
 * streak), never a job: the timeout is short and nothing is retried. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpc.h"
#include "log.h"
#include "mem.h"
#include "sbuf.h"
#include "trc.h"

#define POST_TIMEOUT_MS 2000

struct done_span {
    struct trc_span s;
    int64_t end_ns;
    char status[24];
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int running, stop;
    char *url, *service;
    struct done_span *ring;
    size_t head, len;                 /* ring[head .. head+len) */
    unsigned long long dropped, sent, failed_posts;
} ex = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

void trc_export_push(const struct trc_span *s, int64_t end_unix_ns, const char *status)
{
    pthread_mutex_lock(&ex.mu);
    if (!ex.running) {
        /* stopped meanwhile: nothing to count against */
    } else if (ex.len == TRC_EXPORT_QUEUE) {
        ex.dropped++;
    } else {
        struct done_span *d = &ex.ring[(ex.head + ex.len) % TRC_EXPORT_QUEUE];
        d->s = *s;
        d->end_ns = end_unix_ns;
        snprintf(d->status, sizeof(d->status), "%s", status ? status : "ok");
        ex.len++;
        if (ex.len >= TRC_EXPORT_BATCH)
            pthread_cond_signal(&ex.cv);
    }
    pthread_mutex_unlock(&ex.mu);
}

/* One span as an OTLP JSON Span object. */
static void add_span(struct sbuf *b, const struct done_span *d, int first)
{
    const struct trc_span *s = &d->s;
    sbuf_addf(b, "%s{\"traceId\":\"%s\",\"spanId\":\"%s\"", first ? "" : ",", s->trace_id,
              s->span_id);
    if (s->parent_id[0])
        sbuf_addf(b, ",\"parentSpanId\":\"%s\"", s->parent_id);
    sbuf_adds(b, ",\"name\":");
    sbuf_add_json_str(b, s->fn);
    /* SPAN_KIND_SERVER for a request, CLIENT for an outbound call, INTERNAL else */
    int kind = s->mod == TRC_API ? 2 : s->mod == TRC_UPS ? 3 : 1;
    sbuf_addf(b, ",\"kind\":%d,\"startTimeUnixNano\":\"%lld\",\"endTimeUnixNano\":\"%lld\"", kind,
              (long long)s->start_unix_ns, (long long)d->end_ns);
    sbuf_addf(b,
              ",\"attributes\":[{\"key\":\"conveyor.module\",\"value\":{\"stringValue\":\"%s\"}}",
              trc_module_names[s->mod]);
    if (s->job_id[0]) {
        sbuf_adds(b, ",{\"key\":\"conveyor.job_id\",\"value\":{\"stringValue\":");
        sbuf_add_json_str(b, s->job_id);
        sbuf_adds(b, "}}");
    }
    sbuf_adds(b, ",{\"key\":\"conveyor.status\",\"value\":{\"stringValue\":");
    sbuf_add_json_str(b, d->status);
    /* STATUS_CODE_OK = 1, STATUS_CODE_ERROR = 2 */
    sbuf_addf(b, "}}],\"status\":{\"code\":%d}}", strcmp(d->status, "ok") == 0 ? 1 : 2);
}

static void post(struct httpc *h, const struct done_span *spans, size_t n)
{
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
                  "\"value\":{\"stringValue\":");
    sbuf_add_json_str(&b, ex.service);
    sbuf_adds(&b, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"conveyor\"},\"spans\":[");
    for (size_t i = 0; i < n; i++)
        add_span(&b, &spans[i], i == 0);
    sbuf_adds(&b, "]}]}]}");
    struct httpc_req r;
    memset(&r, 0, sizeof(r));
    r.method = "POST";
    r.url = ex.url;
    r.body = b.p;
    r.body_len = b.len;
    r.content_type = HTTPC_CT_JSON;
    httpc_run(h, &r, 1, POST_TIMEOUT_MS);
    if (r.cls != HTTPC_OK) {
        if (ex.failed_posts++ == 0)
            LOG_WARN("trace.export_failed", "status=%d class=%s error=\"%s\" spans=%zu", r.status,
                     httpc_class_str(r.cls), r.error, n);
    } else {
        if (ex.failed_posts)
            LOG_INFO("trace.export_recovered", "failed_posts=%llu", ex.failed_posts);
        ex.failed_posts = 0;
        ex.sent += n;
    }
    httpc_req_cleanup(&r);
    sbuf_cleanup(&b);
}

static void *exporter(void *arg)
{
    (void)arg;
    struct httpc *h = httpc_new(1);
    struct done_span *batch = xcalloc(TRC_EXPORT_BATCH, sizeof(*batch));
    pthread_mutex_lock(&ex.mu);
    for (;;) {
        if (ex.len < TRC_EXPORT_BATCH && !ex.stop) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += (long)TRC_EXPORT_EVERY_MS % 1000 * 1000000L;
            until.tv_sec += TRC_EXPORT_EVERY_MS / 1000 + until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&ex.cv, &ex.mu, &until);
        }
        size_t n = ex.len < TRC_EXPORT_BATCH ? ex.len : TRC_EXPORT_BATCH;
        for (size_t i = 0; i < n; i++)
            batch[i] = ex.ring[(ex.head + i) % TRC_EXPORT_QUEUE];
        ex.head = (ex.head + n) % TRC_EXPORT_QUEUE;
        ex.len -= n;
        int stop = ex.stop && ex.len == 0;
        pthread_mutex_unlock(&ex.mu);
        if (n)
            post(h, batch, n);             /* outside the lock: pushes go on meanwhile */
        pthread_mutex_lock(&ex.mu);
        if (stop)
            break;
    }
    pthread_mutex_unlock(&ex.mu);
    free(batch);
    httpc_free(h);
    return NULL;
}

int trc_export_start(const char *url, const char *service)
{
    if (!url || !*url || ex.running)
        return 0;
    ex.url = xstrdup(url);
    ex.service = xstrdup(service ? service : "conveyor");
    ex.ring = xcalloc(TRC_EXPORT_QUEUE, sizeof(*ex.ring));
    ex.head = ex.len = 0;
    ex.stop = 0;
    ex.running = 1;
    if (pthread_create(&ex.th, NULL, exporter, NULL) != 0) {
        ex.running = 0;
        FREE_NULL(ex.url);
        FREE_NULL(ex.service);
        FREE_NULL(ex.ring);
        return -1;
    }
    trc_export_enable(1);
    LOG_INFO("trace.export_started", "service=%s", ex.service);
    return 0;
}

void trc_export_stop(void)
{
    if (!ex.running)
        return;
    trc_export_enable(0);
    pthread_mutex_lock(&ex.mu);
    ex.stop = 1;
    pthread_cond_signal(&ex.cv);
    pthread_mutex_unlock(&ex.mu);
    pthread_join(ex.th, NULL);
    pthread_mutex_lock(&ex.mu);
    ex.running = 0;
    pthread_mutex_unlock(&ex.mu);
    LOG_INFO("trace.export_stopped", "spans_sent=%llu spans_dropped=%llu", ex.sent, ex.dropped);
    FREE_NULL(ex.url);
    FREE_NULL(ex.service);
    FREE_NULL(ex.ring);
}
