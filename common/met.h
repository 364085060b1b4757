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
 * Histograms shared with the workers (met_hists[], one row per histogram).
 * Workers record observations in the histogram's Redis hash: HINCRBY on the
 * field met_bucket_field() names ("<prefix>:<bound>", non-cumulative: one
 * bucket per observation, or "<prefix>:+Inf" above the last bound) and
 * HINCRBYFLOAT "<prefix>:sum"; the prefix is the value of the histogram's
 * label (a status, an upstream), or MET_HIST_ALL when it has none. A batch of
 * observations goes in one pipeline with met_obs_add() and met_obs_append().
 * conveyor-api reads the hash with HGETALL and met_hist_render() turns it into
 * cumulative _bucket/_sum/_count lines. */
#ifndef CV_MET_H
#define CV_MET_H

#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

struct rds;

/* Calls that waited for an upstream's shared rate limit, by upstream (ups.c). */
#define MET_UPSTREAM_WAITS_KEY "cv:met:ups_rate_waits"

#define MET_MAX_BUCKETS 15
#define MET_HIST_ALL "all"

struct met_hist {
    const char *key;          /* the Redis hash the workers write */
    const char *name;         /* the Prometheus family */
    const char *help;
    const char *label;        /* the label a field's prefix fills; NULL: one series */
    const double *bounds;     /* upper bounds in seconds, ascending */
    int nbounds;              /* at most MET_MAX_BUCKETS */
};

enum met_hist_id {
    MET_H_ACTIVATION,         /* activation processing, by final status (h_activation.c) */
    MET_H_UPSTREAM,           /* outbound calls, by upstream (ups.c) */
    MET_H_FETCH_TO_COMPLETE,  /* an order's fetch to COMPLETE (h_tracking_push.c) */
    MET_H_N
};
extern const struct met_hist met_hists[MET_H_N];

/* The bucket of an observation: the index of the smallest bound >= seconds,
 * h->nbounds when above them all (+Inf). */
int met_bucket_index(const struct met_hist *h, double seconds);

/* The hash field of bucket i (met_bucket_index): "<prefix>:<bound>" (bound
 * formatted %g, e.g. "SUCCESS:0.05"), or "<prefix>:+Inf"; prefix is cut at 40
 * bytes. Returns buf. Thread-safe. */
const char *met_bucket_field_at(const struct met_hist *h, const char *prefix, int i,
                                char buf[64]);
/* The hash field of one observation of seconds. */
const char *met_bucket_field(const struct met_hist *h, const char *prefix, double seconds,
                             char buf[64]);

/* Observations of one prefix, summed before they are written. */
struct met_obs {
    unsigned long long per[MET_MAX_BUCKETS + 1];
    unsigned long long n;
    double sum;
};
void met_obs_add(struct met_obs *o, const struct met_hist *h, double seconds);
/* Append to r's pipeline an HINCRBY per bucket o touched and one HINCRBYFLOAT
 * for the sum (nothing when o is empty). *sent: the commands appended, whose
 * replies the caller reads, also when this fails. 0, or -1 on a broken link. */
int met_obs_append(struct rds *r, const struct met_hist *h, const char *prefix,
                   const struct met_obs *o, int *sent);

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

/* ---- histograms read back from their hash ---------------------------------- */
#define MET_HIST_PREFIX_MAX 48    /* a prefix's bytes, NUL included */
#define MET_HIST_MAX_SERIES 16    /* prefixes read from one hash */

/* One prefix's part of a histogram's hash. Plain data: the caller owns it. */
struct met_hist_series {
    char prefix[MET_HIST_PREFIX_MAX];
    unsigned long long bucket[MET_MAX_BUCKETS + 1];   /* non-cumulative: the bounds, then +Inf */
    double sum;                                       /* seconds */
};

/* Group the flat field/value pairs of h's hash (HGETALL: fields[i] = values[i])
 * by prefix into out[0..max), sorted by prefix; returns how many. Unknown
 * fields, non-numeric values, "<prefix>:count" and prefixes past max are
 * skipped; when h->label is NULL only MET_HIST_ALL's fields count. Any thread. */
int met_hist_parse(const struct met_hist *h, const char *const *fields,
                   const char *const *values, size_t n, struct met_hist_series *out, int max);

/* The observations of a series: the sum of its buckets, +Inf included. */
unsigned long long met_hist_count(const struct met_hist *h, const struct met_hist_series *s);

/* The q-quantile (0 <= q <= 1), in seconds, of the observations counted in
 * bucket[0..h->nbounds] (non-cumulative, the last one +Inf), estimated as
 * Prometheus' histogram_quantile() does: the bucket that holds rank q * count
 * is found on the cumulative counts, and the value is interpolated linearly
 * between that bucket's lower bound (0 for the first bucket) and its upper
 * bound, on the assumption that its observations are spread evenly. A rank in
 * the +Inf bucket gives the last finite bound (the true value is at least
 * that). NaN when there is no observation or q is outside [0, 1]. Pure. */
double met_hist_quantile(const struct met_hist *h, const unsigned long long *bucket, double q);

/* Render histogram h from the flat field/value pairs of its hash
 * (met_hist_parse), one series per prefix (h->label; none when NULL), prefixes
 * sorted. Buckets become cumulative; le="+Inf" and _count are the total of all
 * buckets so the output is always self-consistent. At most
 * MET_HIST_MAX_SERIES prefixes. */
void met_hist_render(struct sbuf *b, const struct met_hist *h, const char *const *fields,
                     const char *const *values, size_t n);

#endif
