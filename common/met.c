/* met.c - counters sharded per thread, and the Prometheus text format. */
#include "met.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

const double met_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
const int met_nbuckets = (int)(sizeof(met_buckets) / sizeof(met_buckets[0]));

int met_bucket_index(double seconds)
{
    int i = 0;
    while (i < met_nbuckets && !(seconds <= met_buckets[i]))
        i++;
    return i;
}

const char *met_bucket_field(const char *status, double seconds, char buf[64])
{
    int i = met_bucket_index(seconds);
    if (i < met_nbuckets)
        snprintf(buf, 64, "%.40s:%g", status, met_buckets[i]);
    else
        snprintf(buf, 64, "%.40s:+Inf", status);
    return buf;
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

#define HIST_MAX_STATUS 16
#define HIST_STATUS_MAX 48

struct hist_status {
    char status[HIST_STATUS_MAX];
    unsigned long long bucket[16];       /* met_nbuckets bounds, then +Inf */
    double sum;
};

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

/* The bucket index of a bound text ("0.05", "+Inf"), or -1. */
static int bucket_index(const char *le)
{
    if (!strcmp(le, "+Inf") || !strcmp(le, "Inf") || !strcmp(le, "inf"))
        return met_nbuckets;
    char *end;
    double d = strtod(le, &end);
    if (end == le || *end != '\0')
        return -1;
    for (int i = 0; i < met_nbuckets; i++)
        if (fabs(d - met_buckets[i]) <= met_buckets[i] * 1e-9)
            return i;
    return -1;
}

static int cmp_status(const void *a, const void *b)
{
    return strcmp(((const struct hist_status *)a)->status,
                  ((const struct hist_status *)b)->status);
}

void met_hist_render(struct sbuf *b, const char *name, const char *help, const char *label,
                     const char *const *fields, const char *const *values, size_t n)
{
    struct hist_status *st = xcalloc(HIST_MAX_STATUS, sizeof(*st));
    int nst = 0;
    CV_ASSERT(met_nbuckets <= MET_MAX_BUCKETS);
    for (size_t i = 0; i < n; i++) {
        const char *f = fields[i], *v = values[i];
        const char *colon = f ? strrchr(f, ':') : NULL;
        if (!colon || colon == f || (size_t)(colon - f) >= HIST_STATUS_MAX || !v)
            continue;
        size_t slen = (size_t)(colon - f);
        const char *what = colon + 1;
        int bi = -1, is_sum = 0;
        if (!strcmp(what, "sum"))
            is_sum = 1;
        else if (!strcmp(what, "count"))
            continue;                 /* derived from the buckets, see met.h */
        else if ((bi = bucket_index(what)) < 0)
            continue;
        int k = 0;
        while (k < nst && !(strlen(st[k].status) == slen && !memcmp(st[k].status, f, slen)))
            k++;
        if (k == nst) {
            if (nst == HIST_MAX_STATUS)
                continue;
            memcpy(st[k].status, f, slen);
            st[k].status[slen] = '\0';
            nst++;
        }
        if (is_sum) {
            char *end;
            double d = strtod(v, &end);
            if (end != v && *end == '\0' && isfinite(d))
                st[k].sum = d;
        } else {
            unsigned long long c;
            if (parse_count(v, &c) == 0)
                st[k].bucket[bi] = c;
        }
    }
    qsort(st, (size_t)nst, sizeof(*st), cmp_status);

    met_text_header(b, name, "histogram", help);
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
        for (int i = 0; i <= met_nbuckets; i++) {
            cum += st[k].bucket[i];
            if (i < met_nbuckets)
                snprintf(le, sizeof(le), "%g", met_buckets[i]);
            else
                snprintf(le, sizeof(le), "+Inf");
            sbuf_reset(&lab);
            met_text_label(&lab, label, st[k].status, 1);
            met_text_label(&lab, "le", le, 0);
            met_text_u64(b, bname, lab.p, cum);
        }
        sbuf_reset(&lab);
        met_text_label(&lab, label, st[k].status, 1);
        met_text_dbl(b, sname, lab.p, st[k].sum);
        met_text_u64(b, cname, lab.p, cum);
    }
    sbuf_cleanup(&lab);
    free(bname);
    free(sname);
    free(cname);
    free(st);
}
