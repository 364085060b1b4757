/* sim_otlp.h - an OpenTelemetry collector's OTLP/HTTP traces endpoint, for the
 * tests of trace.otlp_url (trc_export.c).
 *
 *   POST /otlp/v1/traces     an ExportTraceServiceRequest in OTLP's JSON encoding
 *                            (resourceSpans[].scopeSpans[].spans[]) -> 200
 *                            {"partialSuccess":{}} when every span is well formed,
 *                            {"partialSuccess":{"rejectedSpans":N,"errorMessage":...}}
 *                            when some are not; 400 when the body is not that JSON
 *
 * Admin:
 *   GET  /admin/otlp/spans   {"received":N,"rejected":M,"spans":[{service, name, trace_id,
 *                            span_id, parent_span_id, kind, module, job_id, status,
 *                            duration_us}]} (the last SIM_OTLP_KEEP spans, oldest first)
 *   POST /admin/otlp/reset   forget them
 * Loop thread only. */
#ifndef SIM_OTLP_H
#define SIM_OTLP_H

#define SIM_OTLP_KEEP 2000

struct sim;

void sim_otlp_register(struct sim *s);
/* Free what it keeps (at exit). */
void sim_otlp_free(void);

#endif
