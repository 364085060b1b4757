/* trc.h - trace events and spans (issue 9, seed 001's ENTER/EXIT events).
 *
 * A span is one step of work: an HTTP request the API answers, a job a
 * handler runs, a read or a settle of the broker, a call to an outside
 * system, a batch statement of the order store. When its module is on, the
 * span logs two logfmt lines, whatever log.level says (tracing is its own
 * switch):
 *
 *   ... evt=ENTER module=ups function="mirakl PUT" job_id=... trace_id=... span_id=...
 *   ... evt=EXIT module=ups function="mirakl PUT" duration_us=1834 job_id=...
 *       trace_id=... span_id=... status=ok
 *
 * and, when an OTLP/HTTP collector is configured (trace.otlp_url), the
 * finished span is exported there (trc_export.c). The trace id is the job's
 * W3C trace context (its traceparent, carried from ingest to worker to the
 * outbound calls), so the logs, the collector and the upstreams' own logs
 * join on it.
 *
 * Switching per module at run time: one process-wide mask, read with a
 * relaxed atomic load when a span starts (a module that is off costs that
 * load and nothing else). It starts from trace.modules and then follows the
 * Redis key TRC_KEY, which each worker reads at its heartbeat and each API
 * loop every TRC_REFRESH_MS; operators write it with PUT /v1/trace or
 * `conveyorctl trace`. The key absent means "as configured". */
#ifndef CV_TRC_H
#define CV_TRC_H

#include <stddef.h>
#include <stdint.h>

#define TRC_KEY "cv:trace"
#define TRC_REFRESH_MS 2000

/* The modules, one table (trc.c): their names in trace.modules and TRC_KEY. */
enum trc_module {
    TRC_API,      /* an HTTP request, named by its route */
    TRC_WORKER,   /* one job through its handler, named by the handler */
    TRC_BROKER,   /* a read or a settle of a batch of deliveries */
    TRC_UPS,      /* one outbound call, named "<upstream> <METHOD>" */
    TRC_DB,       /* a batch statement of the order store */
    TRC_N
};
extern const char *const trc_module_names[TRC_N];
#define TRC_ALL ((1u << TRC_N) - 1)

/* "ups,worker", "all", "" or "off" into a mask; -1 (mask untouched) when a
 * name is unknown. Blanks around names are ignored. */
int trc_parse(const char *list, unsigned *mask);
/* The mask as "api,ups" ("off" when empty) into buf. Returns buf. */
const char *trc_format(unsigned mask, char *buf, size_t n);

/* The process's mask: set by configuration, then by TRC_KEY (trc_follow). */
void trc_set(unsigned mask);
unsigned trc_mask(void);
int trc_on(enum trc_module m);
/* The configured mask, and TRC_KEY's value as read (NULL: absent, back to the
 * configured one). Logs trace.switched when the mask changes. */
void trc_configure(unsigned configured);
void trc_follow(const char *key_value);

/* One span. The strings it is given are copied (truncated if long). */
struct trc_span {
    int on;
    enum trc_module mod;
    int64_t t0_us;             /* monotonic */
    int64_t start_unix_ns;
    char fn[64];
    char job_id[40];
    char trace_id[33];         /* 32 hex, or "" */
    char parent_id[17];        /* 16 hex, or "" */
    char span_id[17];
};

/* Start a span of module m named fn (e.g. "h_activation") about job_id (may
 * be NULL) in the trace of ctx: a traceparent ("00-<trace>-<parent>-<flags>"),
 * a bare 32-hex trace id, or NULL (a new trace). A no-op when m is off. */
void trc_enter(struct trc_span *s, enum trc_module m, const char *fn, const char *job_id,
               const char *ctx);
/* End it: the EXIT line with duration_us and status (NULL = "ok"), and the
 * export. A no-op when the span did not start. */
void trc_exit(struct trc_span *s, const char *status);

/* ---- export (trc_export.c) ------------------------------------------------ */

/* Start exporting finished spans to url (an OTLP/HTTP traces endpoint, e.g.
 * http://collector:4318/v1/traces) as service: a thread posts batches of at
 * most TRC_EXPORT_BATCH spans every TRC_EXPORT_EVERY_MS, with a timeout. The
 * queue holds TRC_EXPORT_QUEUE spans: beyond, spans are dropped and counted
 * (trace.export_dropped in the log at stop), never waited for. 0, or -1
 * when the thread cannot start. */
#define TRC_EXPORT_BATCH 512
#define TRC_EXPORT_EVERY_MS 1000
#define TRC_EXPORT_QUEUE 8192
int trc_export_start(const char *url, const char *service);
/* Post what is queued and stop the thread. Idempotent. */
void trc_export_stop(void);
/* Between trc.c and trc_export.c: the export tells trc_exit it runs, and
 * trc_exit hands it each finished span. */
void trc_export_enable(int on);
void trc_export_push(const struct trc_span *s, int64_t end_unix_ns, const char *status);

#endif
