/* sim_otlp.c - a collector's OTLP/HTTP traces endpoint (see sim_otlp.h).
 *
 * It checks what a real collector would refuse (ids of the wrong length or
 * not hex, a name missing, times that are not decimal strings or end before
 * they start) and keeps the last spans for the tests to read back. */
#include "sim_otlp.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mem.h"
#include "sim.h"
#include "sim_http.h"

struct kept {
    char service[48], name[64], trace_id[33], span_id[17], parent[17], module[16],
        job_id[40], status[32];
    int kind;
    long long duration_us;
};

static struct {
    struct kept *ring;
    size_t head, len;
    long long received, rejected;
} col;

static int hex_len(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static int nanos(const cJSON *v, long long *out)
{
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return 0;
    char *end;
    *out = strtoll(v->valuestring, &end, 10);
    return *end == '\0' && *out > 0;
}

static const char *attr(const cJSON *span, const char *key)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(span, "attributes"))
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(a, "key");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(a, "value"), "stringValue");
        if (cJSON_IsString(k) && cJSON_IsString(v) && strcmp(k->valuestring, key) == 0)
            return v->valuestring;
    }
    return "";
}

/* One span: 1 kept, 0 malformed. */
static int take(const char *service, const cJSON *sp)
{
    const cJSON *tid = cJSON_GetObjectItemCaseSensitive(sp, "traceId");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(sp, "spanId");
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(sp, "parentSpanId");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "name");
    long long t0, t1;
    if (!cJSON_IsString(tid) || !hex_len(tid->valuestring, 32) || !cJSON_IsString(sid) ||
        !hex_len(sid->valuestring, 16) ||
        (pid && (!cJSON_IsString(pid) || !hex_len(pid->valuestring, 16))) ||
        !cJSON_IsString(name) || !name->valuestring[0] ||
        !nanos(cJSON_GetObjectItemCaseSensitive(sp, "startTimeUnixNano"), &t0) ||
        !nanos(cJSON_GetObjectItemCaseSensitive(sp, "endTimeUnixNano"), &t1) || t1 < t0)
        return 0;
    if (!col.ring)
        col.ring = xcalloc(SIM_OTLP_KEEP, sizeof(*col.ring));
    struct kept *k = &col.ring[(col.head + col.len) % SIM_OTLP_KEEP];
    if (col.len == SIM_OTLP_KEEP)
        col.head = (col.head + 1) % SIM_OTLP_KEEP;
    else
        col.len++;
    memset(k, 0, sizeof(*k));
    snprintf(k->service, sizeof(k->service), "%s", service);
    snprintf(k->name, sizeof(k->name), "%s", name->valuestring);
    snprintf(k->trace_id, sizeof(k->trace_id), "%s", tid->valuestring);
    snprintf(k->span_id, sizeof(k->span_id), "%s", sid->valuestring);
    snprintf(k->parent, sizeof(k->parent), "%s", pid ? pid->valuestring : "");
    snprintf(k->module, sizeof(k->module), "%s", attr(sp, "conveyor.module"));
    snprintf(k->job_id, sizeof(k->job_id), "%s", attr(sp, "conveyor.job_id"));
    snprintf(k->status, sizeof(k->status), "%s", attr(sp, "conveyor.status"));
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(sp, "kind");
    k->kind = cJSON_IsNumber(kind) ? kind->valueint : 0;
    k->duration_us = (t1 - t0) / 1000;
    return 1;
}

static void h_traces(struct sim *s, const struct sim_call *c)
{
    (void)s;
    const char *body;
    size_t len;
    cJSON *root = NULL;
    if (sim_body(c, &body, &len) != CV_OK || !(root = json_parse(body, len)) ||
        !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "resourceSpans"))) {
        sim_reply_error(c, 400, "invalid", "not an ExportTraceServiceRequest in JSON");
        cJSON_Delete(root);
        return;
    }
    long long ok = 0, bad = 0;
    const cJSON *rs, *ss, *sp;
    cJSON_ArrayForEach(rs, cJSON_GetObjectItemCaseSensitive(root, "resourceSpans"))
    {
        const char *service = attr(cJSON_GetObjectItemCaseSensitive(rs, "resource"),
                                   "service.name");
        cJSON_ArrayForEach(ss, cJSON_GetObjectItemCaseSensitive(rs, "scopeSpans"))
        {
            cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(ss, "spans"))
            {
                if (take(service, sp))
                    ok++;
                else
                    bad++;
            }
        }
    }
    cJSON_Delete(root);
    col.received += ok;
    col.rejected += bad;
    struct evbuffer *out = evhttp_request_get_output_buffer(c->req);
    if (bad)
        evbuffer_add_printf(out, "{\"partialSuccess\":{\"rejectedSpans\":\"%lld\","
                                 "\"errorMessage\":\"malformed spans\"}}", bad);
    else
        evbuffer_add_printf(out, "{\"partialSuccess\":{}}");
    sim_reply(c, 200);
}

static void h_spans(struct sim *s, const struct sim_call *c)
{
    (void)s;
    struct evbuffer *b = evhttp_request_get_output_buffer(c->req);
    evbuffer_add_printf(b, "{\"received\":%lld,\"rejected\":%lld,\"spans\":[", col.received,
                        col.rejected);
    for (size_t i = 0; i < col.len; i++) {
        const struct kept *k = &col.ring[(col.head + i) % SIM_OTLP_KEEP];
        evbuffer_add_printf(b, "%s{\"service\":", i ? "," : "");
        sim_put_json_str(b, k->service);
        evbuffer_add_printf(b, ",\"name\":");
        sim_put_json_str(b, k->name);
        evbuffer_add_printf(b, ",\"trace_id\":\"%s\",\"span_id\":\"%s\",\"parent_span_id\":\"%s\","
                               "\"kind\":%d,\"module\":",
                            k->trace_id, k->span_id, k->parent, k->kind);
        sim_put_json_str(b, k->module);
        evbuffer_add_printf(b, ",\"job_id\":");
        sim_put_json_str(b, k->job_id);
        evbuffer_add_printf(b, ",\"status\":");
        sim_put_json_str(b, k->status);
        evbuffer_add_printf(b, ",\"duration_us\":%lld}", k->duration_us);
    }
    evbuffer_add_printf(b, "]}");
    sim_reply(c, 200);
}

static void h_reset(struct sim *s, const struct sim_call *c)
{
    (void)s;
    col.head = col.len = 0;
    col.received = col.rejected = 0;
    evbuffer_add_printf(evhttp_request_get_output_buffer(c->req), "{\"reset\":true}");
    sim_reply(c, 200);
}

void sim_otlp_register(struct sim *s)
{
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/otlp/v1/traces", 0, h_traces);
    sim_route_add(&s->router, EVHTTP_REQ_GET, "/admin/otlp/spans", 0, h_spans);
    sim_route_add(&s->router, EVHTTP_REQ_POST, "/admin/otlp/reset", 0, h_reset);
}

void sim_otlp_free(void)
{
    FREE_NULL(col.ring);
    col.head = col.len = 0;
}
