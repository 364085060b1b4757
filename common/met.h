/* met.h - metrics: in-process counters and the Prometheus text format 0.0.4.
 *
 * Counters. Every series is registered up front, before any thread starts:
 * met_family() names a counter and its labels, met_series() adds one set of
 * label values and returns its index, met_freeze() allocates one shard per
 * thread. On the hot path a thread bumps its own shard with met_inc(): a
 * relaxed atomic add on a cache line no other thread writes, so no lock and no
 * contention. A scrape (any thread) sums the shards with met_value() or
 * met_render(); relaxed reads are fine because counters only grow.
 *
 * Histogram shared with the workers. Workers record activation processing
 * times in the Redis hash MET_ACTIVATION_HIST_KEY with HINCRBY on the field
 * met_bucket_field() names (non-cumulative: one bucket per observation, or
 * "<status>:+Inf" above the last bound) and HINCRBYFLOAT "<status>:sum",
 * HINCRBY "<status>:count". conveyor-api reads the hash with HGETALL and
 * met_hist_render() turns it into cumulative _bucket/_sum/_count lines. */
#ifndef CV_MET_H
#define CV_MET_H

#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

#define MET_ACTIVATION_HIST_KEY "cv:met:h:activation_processing_seconds"
#define MET_ACTIVATION_HIST_NAME "activation_processing_seconds"
/* Outbound call durations, labelled by upstream (ups.c, one write per batch). */
#define MET_UPSTREAM_HIST_KEY "cv:met:h:upstream_request_duration_seconds"
#define MET_UPSTREAM_HIST_NAME "conveyor_upstream_request_duration_seconds"
/* Calls that waited for an upstream's shared rate limit, by upstream (ups.c). */
#define MET_UPSTREAM_WAITS_KEY "cv:met:ups_rate_waits"

/* Upper bounds (seconds) of the histogram buckets, ascending:
 * 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10. */
extern const double met_buckets[];
extern const int met_nbuckets;
#define MET_MAX_BUCKETS 15

/* The bucket of an observation: the index of the smallest bound >= seconds,
 * met_nbuckets when above them all (+Inf). */
int met_bucket_index(double seconds);

/* The hash field for one observation: "<status>:<bound>" with the smallest
 * bound >= seconds (formatted %g, e.g. "SUCCESS:0.05"), or "<status>:+Inf".
 * status is cut at 40 bytes. Returns buf. Thread-safe. */
const char *met_bucket_field(const char *status, double seconds, char buf[64]);

/* ---- counters ----------------------------------------------------------- */
#define MET_MAX_LABELS 3

struct met;

/* A registry with nshards shards (one per thread that increments). Free with
 * met_free(). */
struct met *met_new(int nshards);
void met_free(struct met *m);

/* Register a counter family; returns its id. name, help and the label names
 * must outlive m (string literals). skip_zero: render only series above 0
 * (for families with many label combinations, such as route x code). */
int met_family(struct met *m, const char *name, const char *help, int nlabels,
               const char *const *labels, int skip_zero);
/* Register one series of a family with its label values (copied); returns
 * the series index for met_inc(). */
int met_series(struct met *m, int family, const char *const *values);
/* Allocate the shards; no registration after this. */
void met_freeze(struct met *m);

/* Add to a series from the thread that owns shard. Lock-free. */
void met_add(struct met *m, int shard, int series, uint64_t n);
#define met_inc(m, shard, series) met_add((m), (shard), (series), 1)
/* The sum over all shards. Any thread. */
uint64_t met_value(const struct met *m, int series);
/* Append every family in registration order. Any thread. */
void met_render(const struct met *m, struct sbuf *out);

/* ---- Prometheus text helpers ---------------------------------------------- */
/* "# HELP name help\n# TYPE name type\n" (help escaped). */
void met_text_header(struct sbuf *b, const char *name, const char *type, const char *help);
/* Append `name="value"` with the value escaped (\\, \", \n), preceded by a
 * comma unless first. */
void met_text_label(struct sbuf *b, const char *name, const char *value, int first);
/* Append "name{labels} value\n"; labels is already rendered (k="v",k="v") or NULL. */
void met_text_u64(struct sbuf *b, const char *name, const char *labels, unsigned long long v);
void met_text_dbl(struct sbuf *b, const char *name, const char *labels, double v);

/* Render the histogram family name from the flat field/value pairs of the
 * hash described above, grouped by status (label `label`), statuses sorted.
 * Buckets become cumulative; le="+Inf" and _count are the total of all
 * buckets so the output is always self-consistent. Unknown fields and
 * non-numeric values are skipped. At most 16 statuses. */
void met_hist_render(struct sbuf *b, const char *name, const char *help, const char *label,
                     const char *const *fields, const char *const *values, size_t n);

#endif
