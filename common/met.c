/* met.c - counters sharded per thread, and the Prometheus text format. */
#include "met.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "rds.h"

/* The histograms the workers write and the API renders: one row each. */
static const double short_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                       0.5,   1,    2.5,   5,    10 };
/* an order's life: past seed 004's five-minute alert, up to four hours */
static const double long_bounds[] = { 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 14400 };
#define NB(a) ((int)(sizeof(a) / sizeof(a[0])))

const struct met_hist met_hists[MET_H_N] = {
    [MET_H_ACTIVATION] = { "cv:met:h:activation_processing_seconds",
                           "activation_processing_seconds",
                           "Time spent processing activations, by final status.", "status",
                           short_bounds, NB(short_bounds) },
    [MET_H_UPSTREAM] = { "cv:met:h:upstream_request_duration_seconds",
                         "conveyor_upstream_request_duration_seconds",
                         "Duration of the calls the workers made to each outside system.",
                         "upstream", short_bounds, NB(short_bounds) },
    [MET_H_FETCH_TO_COMPLETE] = { "cv:met:h:order_fetch_to_complete_seconds",
                                  "conveyor_order_fetch_to_complete_seconds",
                                  "From an order's first fetch from the marketplace to COMPLETE.",
                                  NULL, long_bounds, NB(long_bounds) },
};

int met_bucket_index(const struct met_hist *h, double seconds)
{
    int i = 0;
    while (i < h->nbounds && !(seconds <= h->bounds[i]))
        i++;
    return i;
}

const char *met_bucket_field_at(const struct met_hist *h, const char *prefix, int i,
                                char buf[64])
{
    if (i < h->nbounds)
        snprintf(buf, 64, "%.40s:%g", prefix, h->bounds[i]);
    else
        snprintf(buf, 64, "%.40s:+Inf", prefix);
    return buf;
}

const char *met_bucket_field(const struct met_hist *h, const char *prefix, double seconds,
                             char buf[64])
{
    return met_bucket_field_at(h, prefix, met_bucket_index(h, seconds), buf);
}

void met_obs_add(struct met_obs *o, const struct met_hist *h, double seconds)
{
    o->per[met_bucket_index(h, seconds)]++;
    o->n++;
    o->sum += seconds;
}

int met_obs_append(struct rds *r, const struct met_hist *h, const char *prefix,
                   const struct met_obs *o, int *sent)
{
    char field[64], val[32];
    *sent = 0;
    if (o->n == 0)
        return 0;
    for (int b = 0; b <= h->nbounds; b++) {
        if (!o->per[b])
            continue;
        met_bucket_field_at(h, prefix, b, field);
        snprintf(val, sizeof(val), "%llu", o->per[b]);
        const char *argv[] = { "HINCRBY", h->key, field, val };
        if (rds_append(r, 4, argv, NULL) != 0)
            return -1;
        (*sent)++;
    }
    snprintf(field, sizeof(field), "%.40s:sum", prefix);
    snprintf(val, sizeof(val), "%.6f", o->sum);
    const char *argv[] = { "HINCRBYFLOAT", h->key, field, val };
    if (rds_append(r, 4, argv, NULL) != 0)
        return -1;
    (*sent)++;
    return 0;
}

/* ==== counters ========================================================== */

#define SHARD_ALIGN 64

struct family {
    const char *name;
    const char *help;
    int nlabels;
    const char *labels[MET_MAX_LABELS];
    int skip_zero;
};

struct series {
    int family;
    char *labels;          /* rendered: k="v",k="v" */
};

struct met {
    int nshards;
    int nfamilies, cap_families;
    struct family *families;
    int nseries, cap_series;
    struct series *series;
    _Atomic uint64_t **shards;   /* nshards arrays of nseries counters */
};

struct met *met_new(int nshards)
{
    CV_ASSERT(nshards > 0);
    struct met *m = xcalloc(1, sizeof(*m));
    m->nshards = nshards;
    return m;
}

void met_free(struct met *m)
{
    if (!m)
        return;
    for (int i = 0; m->shards && i < m->nshards; i++)
        free(m->shards[i]);
    free(m->shards);
    for (int i = 0; i < m->nseries; i++)
        free(m->series[i].labels);
    free(m->series);
    free(m->families);
    free(m);
}

int met_family(struct met *m, const char *name, const char *help, int nlabels,
               const char *const *labels, int skip_zero)
{
    CV_ASSERT(!m->shards && nlabels >= 0 && nlabels <= MET_MAX_LABELS);
    if (m->nfamilies == m->cap_families) {
        m->cap_families = m->cap_families ? m->cap_families * 2 : 8;
        m->families = xrealloc(m->families, sizeof(*m->families) * (size_t)m->cap_families);
    }
    struct family *f = &m->families[m->nfamilies];
    memset(f, 0, sizeof(*f));
    f->name = name;
    f->help = help;
    f->nlabels = nlabels;
    for (int i = 0; i < nlabels; i++)
        f->labels[i] = labels[i];
    f->skip_zero = skip_zero;
    return m->nfamilies++;
}

int met_series(struct met *m, int family, const char *const *values)
{
    CV_ASSERT(!m->shards && family >= 0 && family < m->nfamilies);
    const struct family *f = &m->families[family];
    if (m->nseries == m->cap_series) {
        m->cap_series = m->cap_series ? m->cap_series * 2 : 64;
        m->series = xrealloc(m->series, sizeof(*m->series) * (size_t)m->cap_series);
    }
    struct sbuf b;
    sbuf_init(&b);
    for (int i = 0; i < f->nlabels; i++)
        met_text_label(&b, f->labels[i], values[i], i == 0);
    struct series *s = &m->series[m->nseries];
    s->family = family;
    s->labels = f->nlabels ? sbuf_take(&b, NULL) : NULL;
    sbuf_cleanup(&b);
    return m->nseries++;
}

void met_freeze(struct met *m)
{
    CV_ASSERT(!m->shards);
    m->shards = xcalloc((size_t)m->nshards, sizeof(*m->shards));
    /* Round each shard up to whole cache lines so that two threads never
     * write the same line. */
    size_t bytes = sizeof(uint64_t) * (size_t)(m->nseries ? m->nseries : 1);
    bytes = (bytes + SHARD_ALIGN - 1) / SHARD_ALIGN * SHARD_ALIGN;
    for (int i = 0; i < m->nshards; i++) {
        void *p = aligned_alloc(SHARD_ALIGN, bytes);
        CV_ASSERT(p);
        memset(p, 0, bytes);
        m->shards[i] = p;
    }
}

void met_add(struct met *m, int shard, int series, uint64_t n)
{
    CV_ASSERT(m->shards && shard >= 0 && shard < m->nshards && series >= 0 &&
              series < m->nseries);
    atomic_fetch_add_explicit(&m->shards[shard][series], n, memory_order_relaxed);
}

uint64_t met_value(const struct met *m, int series)
{
    uint64_t v = 0;
    if (!m->shards || series < 0 || series >= m->nseries)
        return 0;
    for (int i = 0; i < m->nshards; i++)
        v += atomic_load_explicit(&m->shards[i][series], memory_order_relaxed);
    return v;
}

void met_render(const struct met *m, struct sbuf *out)
{
    for (int f = 0; f < m->nfamilies; f++) {
        const struct family *fam = &m->families[f];
        met_text_header(out, fam->name, "counter", fam->help);
        for (int s = 0; s < m->nseries; s++) {
            if (m->series[s].family != f)
                continue;
            uint64_t v = met_value(m, s);
            if (v == 0 && fam->skip_zero)
                continue;
            met_text_u64(out, fam->name, m->series[s].labels, (unsigned long long)v);
        }
    }
}

/* ==== text format ======================================================= */

static void add_escaped(struct sbuf *b, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            sbuf_add(b, "\\\\", 2);
        else if (*s == '\n')
            sbuf_add(b, "\\n", 2);
        else if (*s == '"' && quote)
            sbuf_add(b, "\\\"", 2);
        else
            sbuf_add(b, s, 1);
    }
}

void met_text_header(struct sbuf *b, const char *name, const char *type, const char *help)
{
    sbuf_adds(b, "# HELP ");
    sbuf_adds(b, name);
    sbuf_adds(b, " ");
    add_escaped(b, help, 0);
    sbuf_addf(b, "\n# TYPE %s %s\n", name, type);
}

void met_text_label(struct sbuf *b, const char *name, const char *value, int first)
{
    if (!first)
        sbuf_add(b, ",", 1);
    sbuf_adds(b, name);
    sbuf_add(b, "=\"", 2);
    add_escaped(b, value, 1);
    sbuf_add(b, "\"", 1);
}

static void sample_name(struct sbuf *b, const char *name, const char *labels)
{
    sbuf_adds(b, name);
    if (labels && *labels) {
        sbuf_add(b, "{", 1);
        sbuf_adds(b, labels);
        sbuf_add(b, "}", 1);
    }
    sbuf_add(b, " ", 1);
}

void met_text_u64(struct sbuf *b, const char *name, const char *labels, unsigned long long v)
{
    sample_name(b, name, labels);
    sbuf_addf(b, "%llu\n", v);
}

void met_text_dbl(struct sbuf *b, const char *name, const char *labels, double v)
{
    sample_name(b, name, labels);
    if (isnan(v))
        sbuf_adds(b, "NaN\n");
    else if (isinf(v))
        sbuf_adds(b, v > 0 ? "+Inf\n" : "-Inf\n");
    else
        sbuf_addf(b, "%.15g\n", v);
}

/* ==== the histogram from the Redis hash ================================== */

static int parse_count(const char *v, unsigned long long *out)
{
    char *end;
    if (!v || !*v || *v == '-')
        return -1;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end != '\0')
        return -1;
    *out = x;
    return 0;
}

/* The bucket index of a bound text ("0.05", "+Inf") in h, or -1. */
static int bucket_index(const struct met_hist *h, const char *le)
{
    if (!strcmp(le, "+Inf") || !strcmp(le, "Inf") || !strcmp(le, "inf"))
        return h->nbounds;
    char *end;
    double d = strtod(le, &end);
    if (end == le || *end != '\0')
        return -1;
    for (int i = 0; i < h->nbounds; i++)
        if (fabs(d - h->bounds[i]) <= h->bounds[i] * 1e-9)
            return i;
    return -1;
}

static int cmp_series(const void *a, const void *b)
{
    return strcmp(((const struct met_hist_series *)a)->prefix,
                  ((const struct met_hist_series *)b)->prefix);
}

int met_hist_parse(const struct met_hist *h, const char *const *fields,
                   const char *const *values, size_t n, struct met_hist_series *out, int max)
{
    int nst = 0;
    CV_ASSERT(h->nbounds <= MET_MAX_BUCKETS);
    for (size_t i = 0; i < n; i++) {
        const char *f = fields[i], *v = values[i];
        const char *colon = f ? strrchr(f, ':') : NULL;
        if (!colon || colon == f || (size_t)(colon - f) >= MET_HIST_PREFIX_MAX || !v)
            continue;
        size_t slen = (size_t)(colon - f);
        const char *what = colon + 1;
        if (!h->label && (slen != strlen(MET_HIST_ALL) || memcmp(f, MET_HIST_ALL, slen) != 0))
            continue;                 /* one series: only its own prefix */
        int bi = -1, is_sum = 0;
        if (!strcmp(what, "sum"))
            is_sum = 1;
        else if (!strcmp(what, "count"))
            continue;                 /* derived from the buckets, see met.h */
        else if ((bi = bucket_index(h, what)) < 0)
            continue;
        int k = 0;
        while (k < nst && !(strlen(out[k].prefix) == slen && !memcmp(out[k].prefix, f, slen)))
            k++;
        if (k == nst) {
            if (nst == max)
                continue;
            memset(&out[k], 0, sizeof(out[k]));
            memcpy(out[k].prefix, f, slen);
            out[k].prefix[slen] = '\0';
            nst++;
        }
        if (is_sum) {
            char *end;
            double d = strtod(v, &end);
            if (end != v && *end == '\0' && isfinite(d))
                out[k].sum = d;
        } else {
            unsigned long long c;
            if (parse_count(v, &c) == 0)
                out[k].bucket[bi] = c;
        }
    }
    qsort(out, (size_t)nst, sizeof(*out), cmp_series);
    return nst;
}

unsigned long long met_hist_count(const struct met_hist *h, const struct met_hist_series *s)
{
    unsigned long long n = 0;
    for (int i = 0; i <= h->nbounds; i++)
        n += s->bucket[i];
    return n;
}

/* Prometheus' bucketQuantile (promql/quantile.go) on our buckets, which need none
 * of its repairs: they are one consistent read, non-cumulative, so the cumulative
 * counts cannot decrease, and the bounds are a fixed ascending table. One
 * difference: for q = 0 (rank 0) Prometheus takes the first bucket even when it
 * is empty and answers 0/0, NaN; this takes the first bucket that holds an
 * observation and answers its lower bound. For any rank above 0 the first
 * bucket whose cumulative count reaches it is never empty, so the two agree. */
double met_hist_quantile(const struct met_hist *h, const unsigned long long *bucket, double q)
{
    double cum[MET_MAX_BUCKETS + 1], total = 0;
    CV_ASSERT(h->nbounds > 0 && h->nbounds <= MET_MAX_BUCKETS);
    if (!(q >= 0 && q <= 1))
        return NAN;                   /* also a NaN q */
    for (int i = 0; i <= h->nbounds; i++) {
        total += (double)bucket[i];
        cum[i] = total;
    }
    if (total == 0)
        return NAN;
    double rank = q * total;
    int b = 0;                        /* the first finite bucket whose cumulative count >= rank */
    while (b < h->nbounds && (cum[b] < rank || bucket[b] == 0))
        b++;
    if (b == h->nbounds)
        return h->bounds[h->nbounds - 1];   /* in +Inf: the last finite bound */
    double lo = b ? h->bounds[b - 1] : 0, hi = h->bounds[b];
    if (b > 0)
        rank -= cum[b - 1];
    return lo + (hi - lo) * (rank / (double)bucket[b]);   /* bucket[b] > 0, see above */
}

void met_hist_render(struct sbuf *b, const struct met_hist *h, const char *const *fields,
                     const char *const *values, size_t n)
{
    const char *name = h->name, *label = h->label;
    struct met_hist_series *st = xcalloc(MET_HIST_MAX_SERIES, sizeof(*st));
    int nst = met_hist_parse(h, fields, values, n, st, MET_HIST_MAX_SERIES);

    met_text_header(b, name, "histogram", h->help);
    size_t nlen = strlen(name);
    char *bname = xmalloc(nlen + 16), *sname = xmalloc(nlen + 16), *cname = xmalloc(nlen + 16);
    snprintf(bname, nlen + 16, "%s_bucket", name);
    snprintf(sname, nlen + 16, "%s_sum", name);
    snprintf(cname, nlen + 16, "%s_count", name);
    struct sbuf lab;
    sbuf_init(&lab);
    for (int k = 0; k < nst; k++) {
        unsigned long long cum = 0;
        char le[32];
        for (int i = 0; i <= h->nbounds; i++) {
            cum += st[k].bucket[i];
            if (i < h->nbounds)
                snprintf(le, sizeof(le), "%g", h->bounds[i]);
            else
                snprintf(le, sizeof(le), "+Inf");
            sbuf_reset(&lab);
            if (label)
                met_text_label(&lab, label, st[k].prefix, 1);
            met_text_label(&lab, "le", le, !label);
            met_text_u64(b, bname, lab.p, cum);
        }
        sbuf_reset(&lab);
        if (label)
            met_text_label(&lab, label, st[k].prefix, 1);
        met_text_dbl(b, sname, label ? lab.p : NULL, st[k].sum);
        met_text_u64(b, cname, label ? lab.p : NULL, cum);
    }
    sbuf_cleanup(&lab);
    free(bname);
    free(sname);
    free(cname);
    free(st);
}
