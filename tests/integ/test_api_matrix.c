/* The bad-input matrix: every file in tests/fixtures/http/ is one request and
 * the status and error code it must get. Each request runs against a live
 * conveyor-api (no workers), and Redis must hold exactly the keys it held
 * before: bad input never enqueues and never half-writes a job.
 *
 * File format:
 *   # description
 *   METHOD /path?query
 *   Header: value          ($KEY = the all-types test key, $NOOPKEY = noop only)
 *   <blank line>
 *   body                   (@repeat N c = N bytes of c; @batch N {} = JSON array of N {})
 *   --- expect
 *   STATUS
 *   CODE                   (the JSON error code, or - for a success) */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "harness.h"
#include "rds.h"
#include "sbuf.h"

struct fixture {
    char name[128];
    char method[16];
    char path[1024];
    char *headers[32];
    int nheaders;
    struct sbuf body;
    int status;
    char code[64];
};

static char *subst_keys(const char *line)
{
    struct sbuf b;
    sbuf_init(&b);
    for (const char *p = line; *p;) {
        if (!strncmp(p, "$NOOPKEY", 8)) {
            sbuf_adds(&b, hn_test_key_scoped());
            p += 8;
        } else if (!strncmp(p, "$KEY", 4)) {
            sbuf_adds(&b, hn_test_key());
            p += 4;
        } else {
            sbuf_add(&b, p++, 1);
        }
    }
    return sbuf_take(&b, NULL);
}

static void body_line(struct fixture *f, const char *line, int first)
{
    long n;
    char what[64];
    if (sscanf(line, "@repeat %ld %63s", &n, what) == 2) {
        for (long i = 0; i < n; i++)
            sbuf_add(&f->body, what, 1);
    } else if (sscanf(line, "@batch %ld %63s", &n, what) == 2) {
        sbuf_adds(&f->body, "[");
        for (long i = 0; i < n; i++) {
            if (i)
                sbuf_adds(&f->body, ",");
            sbuf_adds(&f->body, what);
        }
        sbuf_adds(&f->body, "]");
    } else {
        if (!first)
            sbuf_adds(&f->body, "\n");
        sbuf_adds(&f->body, line);
    }
}

static void load(const char *dir, const char *name, struct fixture *f)
{
    char path[1024], line[8192];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "cannot open %s", path);
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    sbuf_init(&f->body);
    enum { REQ, HEAD, BODY, EXPECT_STATUS, EXPECT_CODE, DONE } st = REQ;
    int first_body = 1;
    while (fgets(line, sizeof(line), fp)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (st == REQ) {
            if (line[0] == '#' || !line[0])
                continue;
            cr_assert_eq(sscanf(line, "%15s %1023s", f->method, f->path), 2, "%s: request line",
                         name);
            st = HEAD;
        } else if (st == HEAD) {
            if (!line[0]) {
                st = BODY;
                continue;
            }
            if (!strcmp(line, "--- expect")) {
                st = EXPECT_STATUS;
                continue;
            }
            cr_assert(f->nheaders < 31);
            f->headers[f->nheaders++] = subst_keys(line);
        } else if (st == BODY) {
            if (!strcmp(line, "--- expect")) {
                st = EXPECT_STATUS;
                continue;
            }
            body_line(f, line, first_body);
            first_body = 0;
        } else if (st == EXPECT_STATUS) {
            f->status = atoi(line);
            st = EXPECT_CODE;
        } else if (st == EXPECT_CODE) {
            snprintf(f->code, sizeof(f->code), "%.63s", line);
            st = DONE;
        }
    }
    fclose(fp);
    cr_assert_eq(st, DONE, "%s: incomplete fixture", name);
    /* send exactly the headers the fixture names: no default Content-Type */
    int has_ct = 0;
    for (int i = 0; i < f->nheaders; i++)
        has_ct |= strncasecmp(f->headers[i], "Content-Type:", 13) == 0;
    if (!has_ct)
        f->headers[f->nheaders++] = strdup("Content-Type:");
    f->headers[f->nheaders] = NULL;
}

static void unload(struct fixture *f)
{
    for (int i = 0; i < f->nheaders; i++)
        free(f->headers[i]);
    sbuf_cleanup(&f->body);
}

static long long dbsize(struct rds *r)
{
    struct rds_reply *x = rds_cmdf(r, "DBSIZE");
    long long n = rds_reply_int(x);
    rds_reply_free(x);
    return n;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(api_matrix, every_bad_request_gets_its_status_and_enqueues_nothing, .timeout = 180)
{
    hn_flush_redis();
    struct hn_stack st;
    struct hn_stack_opts o = { .workers = 0 };
    hn_start_stack(&st, &o);
    struct cfg cfg;
    cr_assert_eq(cfg_load(&cfg, NULL), 0);
    struct rds *r = rds_connect(cfg.redis_url, 5000);
    cr_assert_not_null(r);

    const char *dir = "tests/fixtures/http";
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "run from the repository root");
    char *names[512];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 512;)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof(names[0]), cmp);
    cr_assert(n >= 20, "only %d fixtures", n);

    int failures = 0;
    for (int i = 0; i < n; i++) {
        struct fixture f;
        load(dir, names[i], &f);
        char url[1200];
        snprintf(url, sizeof(url), "%s%s", st.api_url, f.path);
        long long before = dbsize(r);
        struct hn_resp *resp = hn_http(f.method, url, (const char *const *)f.headers,
                                       f.body.len ? f.body.p : NULL, f.body.len, 10000);
        long long after = dbsize(r);
        cJSON *j = hn_json(resp);
        const char *code = "-";
        cJSON *err = cJSON_GetObjectItem(j, "error");
        if (err && cJSON_IsString(cJSON_GetObjectItem(err, "code")))
            code = cJSON_GetObjectItem(err, "code")->valuestring;
        int ok = resp->status == f.status && !strcmp(code, f.code) && before == after &&
                 (f.status < 400 || (j && err));
        if (!ok) {
            failures++;
            cr_log_error("%s: %s %s -> %d %s (want %d %s), redis keys %lld -> %lld, body %.300s",
                         f.name, f.method, f.path, resp->status, code, f.status, f.code,
                         before, after, resp->body);
        }
        cJSON_Delete(j);
        hn_resp_free(resp);
        unload(&f);
        free(names[i]);
    }
    cr_assert_eq(failures, 0, "%d of %d fixtures failed (see above)", failures, n);
    cr_assert(hn_alive(st.api), "the API survived every bad request");
    rds_free(r);
    cfg_cleanup(&cfg);
    hn_stop_stack(&st);
}
