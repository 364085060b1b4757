/* ups_log.c - the communication log: one comm_log row per outbound request,
 * buffered and written in batches (one multi-row INSERT) on a connection of
 * its own, so that an order transaction that rolls back keeps its calls'
 * records. URLs lose userinfo and secret query values here, before they are
 * buffered; headers (Authorization) and bodies are never stored. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db.h"
#include "log.h"
#include "mem.h"
#include "sbuf.h"
#include "ups.h"
#include "uuid.h"

#define NCOLS 12
#define DEFAULT_FLUSH_ROWS 64
#define MAX_FLUSH_ROWS 500
#define KEEP_MAX_ROWS 5000        /* rows kept while PostgreSQL is down, then the oldest go */

struct row {
    char *v[NCOLS];               /* text values in column order (NULL = SQL NULL) */
};

struct ups_log {
    struct db *db;
    int flush_rows;
    struct row *rows;
    size_t n, cap;
    long long dropped;
};

static const char *const secret_words[] = {
    "token", "key", "secret", "pass", "signature", "auth", "session", NULL,
};
/* Names that hide their value only when they are the whole name: "code" (an
 * OAuth authorization code) must not hide order_state_codes. */
static const char *const secret_names[] = { "code", "sid", NULL };

static int secret_name(const char *name, size_t len)
{
    char low[64];
    if (len >= sizeof(low))
        return 1; /* a name this long is not one we know: hide its value */
    for (size_t i = 0; i < len; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[len] = '\0';
    for (int i = 0; secret_words[i]; i++) {
        if (strstr(low, secret_words[i]))
            return 1;
    }
    for (int i = 0; secret_names[i]; i++) {
        if (strcmp(low, secret_names[i]) == 0)
            return 1;
    }
    return 0;
}

void ups_url_redact(const char *url, char *out, size_t out_len)
{
    struct sbuf b;
    sbuf_init(&b);
    const char *p = url ? url : "";
    const char *scheme = strstr(p, "://");
    if (scheme) {
        const char *auth = scheme + 3;
        size_t alen = strcspn(auth, "/?#");
        const char *at = NULL;
        for (const char *q = auth; q < auth + alen; q++) {
            if (*q == '@')
                at = q;
        }
        sbuf_add(&b, p, (size_t)(auth - p));
        p = at ? at + 1 : auth; /* userinfo (user:password@) goes */
    }
    size_t before_q = strcspn(p, "?#");
    sbuf_add(&b, p, before_q);
    p += before_q;
    if (*p == '?') {
        sbuf_adds(&b, "?");
        p++;
        while (*p && *p != '#') {
            size_t plen = strcspn(p, "&#");
            size_t nlen = strcspn(p, "=&#");
            sbuf_add(&b, p, nlen);
            if (nlen < plen) { /* has a value */
                if (secret_name(p, nlen))
                    sbuf_adds(&b, "=***");
                else
                    sbuf_add(&b, p + nlen, plen - nlen);
            }
            p += plen;
            if (*p == '&') {
                sbuf_adds(&b, "&");
                p++;
            }
        }
    }
    /* a fragment never reaches the server: drop it */
    snprintf(out, out_len, "%s", b.p ? b.p : "");
    sbuf_cleanup(&b);
}

struct ups_log *ups_log_new(struct db *db, int flush_rows)
{
    struct ups_log *l = xcalloc(1, sizeof(*l));
    l->db = db;
    l->flush_rows = flush_rows > 0 ? flush_rows : DEFAULT_FLUSH_ROWS;
    if (l->flush_rows > MAX_FLUSH_ROWS)
        l->flush_rows = MAX_FLUSH_ROWS;
    return l;
}

static void row_free(struct row *r)
{
    for (int i = 0; i < NCOLS; i++)
        free(r->v[i]);
}

void ups_log_free(struct ups_log *l)
{
    if (!l)
        return;
    ups_log_flush(l);
    for (size_t i = 0; i < l->n; i++)
        row_free(&l->rows[i]);
    free(l->rows);
    free(l);
}

static char *dup_or_null(const char *s)
{
    return s && s[0] ? xstrdup(s) : NULL;
}

void ups_log_add(struct ups_log *l, const struct ups_log_row *in)
{
    char url[2048];
    if (l->n == KEEP_MAX_ROWS) {
        row_free(&l->rows[0]);
        memmove(&l->rows[0], &l->rows[1], sizeof(l->rows[0]) * (l->n - 1));
        l->n--;
        if (l->dropped++ % 1000 == 0)
            LOG_WARN("ups.comm_log_dropped", "dropped=%lld", l->dropped);
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->rows = xrealloc(l->rows, sizeof(*l->rows) * l->cap);
    }
    struct row *r = &l->rows[l->n++];
    ups_url_redact(in->url, url, sizeof(url));
    r->v[0] = xasprintf("%lld", (long long)in->at_ms);
    r->v[1] = dup_or_null(in->upstream);
    r->v[2] = dup_or_null(in->method);
    r->v[3] = xstrdup(url);
    r->v[4] = in->status > 0 ? xasprintf("%d", in->status) : NULL;
    r->v[5] = dup_or_null(in->cls);
    r->v[6] = xasprintf("%lld", (long long)in->duration_ms);
    r->v[7] = xasprintf("%d", in->attempt);
    r->v[8] = in->job_id && uuid_valid(in->job_id) ? xstrdup(in->job_id) : NULL;
    r->v[9] = dup_or_null(in->trace_id);
    r->v[10] = dup_or_null(in->order_id);
    r->v[11] = dup_or_null(in->error);
    if (l->n >= (size_t)l->flush_rows)
        ups_log_flush(l);
}

/* One row's placeholders, $k.. with the casts the columns need. */
static void add_placeholders(struct sbuf *sql, int k)
{
    sbuf_addf(sql,
              "(to_timestamp($%d::float8 / 1000), $%d, $%d, $%d, $%d::int, $%d, $%d::bigint,"
              " $%d::int, $%d::uuid, $%d, $%d, $%d)",
              k, k + 1, k + 2, k + 3, k + 4, k + 5, k + 6, k + 7, k + 8, k + 9, k + 10, k + 11);
}

enum cv_rc ups_log_flush(struct ups_log *l)
{
    enum cv_rc rc = CV_OK;
    while (l->n > 0 && rc == CV_OK) {
        size_t m = l->n < (size_t)l->flush_rows ? l->n : (size_t)l->flush_rows;
        struct sbuf sql;
        const char **params = xmalloc(sizeof(*params) * m * NCOLS);
        sbuf_init(&sql);
        sbuf_adds(&sql, "INSERT INTO comm_log (at, upstream, method, url, status, class,"
                        " duration_ms, attempt, job_id, trace_id, order_id, error) VALUES ");
        for (size_t i = 0; i < m; i++) {
            if (i)
                sbuf_adds(&sql, ", ");
            add_placeholders(&sql, (int)(i * NCOLS + 1));
            for (int c = 0; c < NCOLS; c++)
                params[i * NCOLS + c] = l->rows[i].v[c];
        }
        rc = db_run(l->db, sql.p, (int)(m * NCOLS), params);
        sbuf_cleanup(&sql);
        free(params);
        if (rc == CV_OK) {
            for (size_t i = 0; i < m; i++)
                row_free(&l->rows[i]);
            memmove(&l->rows[0], &l->rows[m], sizeof(l->rows[0]) * (l->n - m));
            l->n -= m;
        }
    }
    return rc;
}
