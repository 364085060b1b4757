/* The outbound classification matrix: every file in tests/fixtures/outbound/
 * is one scripted upstream reply (or misbehaviour) and the class httpc must
 * give it. A tiny scripted server (tests/harness/hn_srv.c) on a free
 * 127.0.0.1 port plays each fixture; httpc_run calls it and the test asserts
 * class, status, "sent" and retry_after_ms. Needs no Redis or PostgreSQL.
 *
 * File format:
 *   # expect: CLASS [status=N] [retry_after_ms=N[~TOLERANCE]] [check=codigo|soap]
 *   then either a raw HTTP reply (LF line ends are sent as CRLF in the head;
 *   Content-Length is added when missing; "$DATE+N" becomes the HTTP-date N
 *   seconds from now), or one directive line:
 *   refuse             nothing listens on the port
 *   dns                the host is unresolvable (.invalid)
 *   hang-before-reply  the request is read, no byte comes back
 *   slow-headers       the status line comes, the rest never does
 *   close-mid-body     half the promised body, then FIN
 *   reset-mid-body     half the promised body, then RST
 *   reset-before-reply the request is read, then RST */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "hn_srv.h"
#include "httpc.h"
#include "mem.h"
#include "sbuf.h"

#define FIXTURE_DIR "tests/fixtures/outbound"
#define CALL_TIMEOUT_MS 700

struct fixture {
    char name[128];
    char expect_class[32];
    int status;
    long long retry_after_ms;     /* -1: not checked */
    long long retry_tolerance_ms;
    char check[16];
    char directive[32];           /* "" for a raw reply */
    struct sbuf raw;
};

/* ---- body checks, as the carrier code will write them ------------------ */

/* Correos Express style: a 2xx whose JSON says codigoRetorno != 0 is a refusal. */
static enum httpc_class check_codigo(const struct httpc_req *r, void *arg, char *msg, size_t len)
{
    (void)arg;
    enum httpc_class c = HTTPC_OK;
    cJSON *j = r->resp ? cJSON_Parse(r->resp) : NULL;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "codigoRetorno");
    if (r->status / 100 == 2 && cJSON_IsNumber(code) && code->valueint != 0) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "mensajeRetorno");
        snprintf(msg, len, "codigoRetorno %d: %s", code->valueint,
                 cJSON_IsString(m) ? m->valuestring : "");
        c = HTTPC_BODY_ERROR;
    }
    cJSON_Delete(j);
    return c;
}

/* Copy the text between <tag> and </tag> (any namespace prefix on neither). */
static int xml_text(const char *doc, const char *tag, char *out, size_t len)
{
    char open[64];
    snprintf(open, sizeof(open), "%s>", tag);
    const char *p = strstr(doc, open);
    if (!p)
        return 0;
    p += strlen(open);
    const char *e = strchr(p, '<');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n >= len)
        n = len - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 1;
}

/* SOAP 1.1: a Fault in a 2xx is a body error; in a 500 a Client fault is permanent and
 * a Server fault is left to the status (transient). */
static enum httpc_class check_soap(const struct httpc_req *r, void *arg, char *msg, size_t len)
{
    (void)arg;
    char code[64] = "", text[128] = "";
    if (!r->resp || !strstr(r->resp, "Fault>"))
        return HTTPC_OK;
    xml_text(r->resp, "faultcode", code, sizeof(code));
    xml_text(r->resp, "faultstring", text, sizeof(text));
    snprintf(msg, len, "SOAP Fault %s: %s", code, text);
    if (r->status / 100 == 2)
        return HTTPC_BODY_ERROR;
    return strstr(code, "Client") ? HTTPC_PERMANENT : HTTPC_OK;
}

/* ---- fixtures ----------------------------------------------------------- */

static void add_date(struct sbuf *b, long secs)
{
    char d[64];
    time_t t = time(NULL) + secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(d, sizeof(d), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    sbuf_adds(b, d);
}

static void load(const char *name, struct fixture *f)
{
    char path[512], line[4096];
    memset(f, 0, sizeof(*f));
    sbuf_init(&f->raw);
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(path, sizeof(path), FIXTURE_DIR "/%s", name);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "cannot open %s", path);
    cr_assert_not_null(fgets(line, sizeof(line), fp), "%s: empty", name);
    cr_assert(!strncmp(line, "# expect: ", 10), "%s: first line must be '# expect: ...'", name);
    f->retry_after_ms = -1;
    char *save = NULL;
    for (char *t = strtok_r(line + 10, " \n", &save); t; t = strtok_r(NULL, " \n", &save)) {
        if (!f->expect_class[0])
            snprintf(f->expect_class, sizeof(f->expect_class), "%s", t);
        else if (!strncmp(t, "status=", 7))
            f->status = atoi(t + 7);
        else if (!strncmp(t, "retry_after_ms=", 15))
            sscanf(t + 15, "%lld~%lld", &f->retry_after_ms, &f->retry_tolerance_ms);
        else if (!strncmp(t, "check=", 6))
            snprintf(f->check, sizeof(f->check), "%s", t + 6);
        else
            cr_assert_fail("%s: unknown expectation %s", name, t);
    }
    struct sbuf head, body;
    sbuf_init(&head);
    sbuf_init(&body);
    int in_body = 0, first = 1, has_len = 0;
    while (fgets(line, sizeof(line), fp)) {
        line[strcspn(line, "\n")] = '\0';
        if (first && strncmp(line, "HTTP/", 5) != 0) {
            snprintf(f->directive, sizeof(f->directive), "%.31s", line);
            break;
        }
        first = 0;
        if (!in_body && !line[0]) {
            in_body = 1;
            continue;
        }
        if (in_body) {
            if (body.len)
                sbuf_adds(&body, "\n");
            sbuf_adds(&body, line);
            continue;
        }
        if (!strncasecmp(line, "Content-Length:", 15))
            has_len = 1;
        const char *d = strstr(line, "$DATE+");
        if (d) {
            sbuf_add(&head, line, (size_t)(d - line));
            add_date(&head, strtol(d + 6, NULL, 10));
        } else {
            sbuf_adds(&head, line);
        }
        sbuf_adds(&head, "\r\n");
    }
    fclose(fp);
    if (!f->directive[0]) {
        sbuf_add(&f->raw, head.p, head.len);
        if (!has_len)
            sbuf_addf(&f->raw, "Content-Length: %zu\r\n", body.len);
        sbuf_adds(&f->raw, "\r\n");
        sbuf_add(&f->raw, body.p ? body.p : "", body.len);
    }
    sbuf_cleanup(&head);
    sbuf_cleanup(&body);
}

#define PARTIAL_REPLY "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" \
                      "Content-Length: 100\r\n\r\n{\"partial\":"

/* The server's side of a fixture. */
static void play(void *arg, const struct hn_srv_req *req, struct hn_srv_reply *out)
{
    const struct fixture *f = arg;
    const char *d = f->directive;
    (void)req;
    if (!d[0]) {
        sbuf_add(&out->raw, f->raw.p, f->raw.len);
    } else if (!strcmp(d, "hang-before-reply")) {
        out->act = HN_SRV_HANG;
    } else if (!strcmp(d, "slow-headers")) {
        out->act = HN_SRV_SEND_HANG;
        sbuf_adds(&out->raw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n");
    } else if (!strcmp(d, "close-mid-body")) {
        out->act = HN_SRV_SEND_CLOSE;
        sbuf_adds(&out->raw, PARTIAL_REPLY);
    } else if (!strcmp(d, "reset-mid-body")) {
        out->act = HN_SRV_SEND_RESET;
        sbuf_adds(&out->raw, PARTIAL_REPLY);
    } else if (!strcmp(d, "reset-before-reply")) {
        out->act = HN_SRV_SEND_RESET;
    } else {
        cr_assert_fail("%s: unknown directive %s", f->name, d);
    }
}

/* Run one fixture; returns the number of failed expectations (printed). */
static int run_fixture(struct httpc *h, struct fixture *f)
{
    char url[256];
    struct hn_srv *srv = NULL;
    if (!strcmp(f->directive, "dns")) {
        snprintf(url, sizeof(url), "http://conveyor-fixture.invalid/v1/shipments");
    } else if (!strcmp(f->directive, "refuse")) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/shipments", hn_free_port());
    } else {
        srv = hn_srv_start(play, f);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/shipments", hn_srv_port(srv));
    }
    struct httpc_req r = {
        .method = "POST",
        .url = url,
        .body = "{\"ref\":\"o-1\"}",
        .body_len = 13,
        .timeout_ms = CALL_TIMEOUT_MS,
        .connect_timeout_ms = 300,
    };
    if (!strcmp(f->check, "codigo"))
        r.body_check = check_codigo;
    else if (!strcmp(f->check, "soap"))
        r.body_check = check_soap;
    else
        cr_assert(!f->check[0], "%s: unknown check %s", f->name, f->check);
    httpc_run(h, &r, 1, 5000);
    hn_srv_stop(srv);

    int bad = 0;
    const char *got = httpc_class_str(r.cls);
    if (strcmp(got, f->expect_class) != 0) {
        cr_log_error("%s: class %s, want %s (status %d, error \"%s\")", f->name, got,
                     f->expect_class, r.status, r.error);
        bad++;
    }
    if (r.status != f->status) {
        cr_log_error("%s: status %d, want %d", f->name, r.status, f->status);
        bad++;
    }
    if (r.rc != httpc_class_rc(r.cls)) {
        cr_log_error("%s: rc %s does not follow the class", f->name, cv_rc_str(r.rc));
        bad++;
    }
    int want_sent = strcmp(f->expect_class, "not_sent") != 0;
    if (r.sent != want_sent) {
        cr_log_error("%s: sent %d, want %d", f->name, r.sent, want_sent);
        bad++;
    }
    if (f->retry_after_ms >= 0 && (r.retry_after_ms < f->retry_after_ms - f->retry_tolerance_ms ||
                                   r.retry_after_ms > f->retry_after_ms + f->retry_tolerance_ms)) {
        cr_log_error("%s: retry_after_ms %lld, want %lld~%lld", f->name,
                     (long long)r.retry_after_ms, f->retry_after_ms, f->retry_tolerance_ms);
        bad++;
    }
    if (r.cls != HTTPC_OK && !r.error[0]) {
        cr_log_error("%s: no error text", f->name);
        bad++;
    }
    if (r.status > 0 && r.timing.total_us <= 0) {
        cr_log_error("%s: no total time", f->name);
        bad++;
    }
    httpc_req_cleanup(&r);
    return bad;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_fixture(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 5 && !strcmp(d->d_name + n - 5, ".http");
}

Test(httpc_class, fixtures)
{
    struct dirent **names = NULL;
    int n = scandir(FIXTURE_DIR, &names, is_fixture, by_name);
    cr_assert(n >= 30, "only %d fixtures in " FIXTURE_DIR, n);
    struct httpc *h = httpc_new(4);
    int failures = 0, seen[HTTPC_NCLASS] = { 0 };
    for (int i = 0; i < n; i++) {
        struct fixture f;
        load(names[i]->d_name, &f);
        int bad = run_fixture(h, &f);
        failures += bad ? 1 : 0;
        for (int c = 0; c < HTTPC_NCLASS; c++)
            seen[c] += !strcmp(f.expect_class, httpc_class_str((enum httpc_class)c));
        sbuf_cleanup(&f.raw);
        free(names[i]);
    }
    free(names);
    httpc_free(h);
    for (int c = 0; c < HTTPC_NCLASS; c++)
        cr_expect(seen[c] > 0, "no fixture expects class %s", httpc_class_str((enum httpc_class)c));
    cr_assert_eq(failures, 0, "%d of %d fixtures failed (see above)", failures, n);
}

/* ---- request shape ------------------------------------------------------ */

struct seen {
    int hits;
    char auth[128], ctype[128], custom[64], soapaction[64], trace[128], idem[64];
    char body[64];
};

static void record(void *arg, const struct hn_srv_req *req, struct hn_srv_reply *out)
{
    struct seen *s = arg;
    s->hits++;
    hn_srv_header(req, "Authorization", s->auth, sizeof(s->auth));
    hn_srv_header(req, "Content-Type", s->ctype, sizeof(s->ctype));
    hn_srv_header(req, "X-Shop", s->custom, sizeof(s->custom));
    hn_srv_header(req, "SOAPAction", s->soapaction, sizeof(s->soapaction));
    hn_srv_header(req, "traceparent", s->trace, sizeof(s->trace));
    hn_srv_header(req, "Idempotency-Key", s->idem, sizeof(s->idem));
    snprintf(s->body, sizeof(s->body), "%s", req->body);
    hn_srv_reply_add(out, 200, "Content-Type: text/xml\r\n", "<ok/>");
}

/* A server that records what it got; url receives http://127.0.0.1:PORT/path. */
static struct hn_srv *recorder(struct seen *s, const char *path, char *url, size_t len)
{
    struct hn_srv *srv = hn_srv_start(record, s);
    snprintf(url, len, "http://127.0.0.1:%d%s", hn_srv_port(srv), path);
    return srv;
}

Test(httpc_class, sends_headers_basic_soap_and_timings)
{
    struct seen s = { 0 };
    char url[128];
    struct hn_srv *srv = recorder(&s, "/soap", url, sizeof(url));
    const char *hdrs[] = { "X-Shop: 42", "SOAPAction: \"urn:GrabaEnvio4\"", NULL };
    struct httpc_req r = {
        .method = "POST", .url = url, .body = "<e/>", .body_len = 4,
        .content_type = HTTPC_CT_SOAP, .headers = hdrs,
        .basic_user = "user", .basic_pass = "s3cret",
        .idempotency_key = "k-1",
        .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    };
    struct httpc *h = httpc_new(2);
    httpc_run(h, &r, 1, 2000);
    hn_srv_stop(srv);
    cr_assert_eq(r.cls, HTTPC_OK, "class %s: %s", httpc_class_str(r.cls), r.error);
    cr_assert_eq(s.hits, 1);
    cr_assert_str_eq(s.auth, "Basic dXNlcjpzM2NyZXQ="); /* user:s3cret */
    cr_assert_str_eq(s.ctype, "text/xml; charset=utf-8");
    cr_assert_str_eq(s.custom, "42");
    cr_assert_str_eq(s.soapaction, "\"urn:GrabaEnvio4\"");
    cr_assert_str_eq(s.idem, "k-1");
    cr_assert_str_eq(s.trace, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    cr_assert_str_eq(s.body, "<e/>");
    cr_assert_str_eq(r.resp, "<ok/>");
    cr_assert_gt(r.timing.total_us, 0);
    cr_assert_geq(r.timing.total_us, r.timing.first_byte_us);
    cr_assert_gt(r.timing.first_byte_us, 0);
    cr_assert_geq(r.timing.first_byte_us, r.timing.connect_us);
    cr_assert_geq(r.timing.connect_us, r.timing.dns_us);
    httpc_req_cleanup(&r);
    httpc_free(h);
}

Test(httpc_class, form_and_no_content_type)
{
    struct seen s = { 0 };
    char url[128];
    struct hn_srv *srv = recorder(&s, "/pic_token", url, sizeof(url));
    struct httpc_req r[2] = {
        { .method = "POST", .url = url, .body = "grant_type=password", .body_len = 19,
          .content_type = HTTPC_CT_FORM },
        { .method = "GET", .url = url, .content_type = HTTPC_CT_NONE },
    };
    struct httpc *h = httpc_new(1); /* one connection: the two requests go in order */
    httpc_run(h, &r[0], 1, 2000);
    cr_assert_str_eq(s.ctype, "application/x-www-form-urlencoded");
    cr_assert_str_eq(s.body, "grant_type=password");
    s.ctype[0] = '\0';
    httpc_run(h, &r[1], 1, 2000);
    hn_srv_stop(srv);
    cr_assert_eq(s.hits, 2);
    cr_assert_str_eq(s.ctype, "", "no Content-Type was asked for");
    cr_assert_eq(r[1].cls, HTTPC_OK);
    httpc_req_cleanup(&r[0]);
    httpc_req_cleanup(&r[1]);
    httpc_free(h);
}

Test(httpc_class, header_with_newline_is_never_sent)
{
    struct seen s = { 0 };
    char url[128];
    struct hn_srv *srv = recorder(&s, "/x", url, sizeof(url));
    const char *hdrs[] = { "X-Shop: 1\r\nX-Injected: 1", NULL };
    struct httpc_req r[2] = {
        { .method = "GET", .url = url, .headers = hdrs },
        { .method = "GET", .url = url }, /* the batch goes on */
    };
    struct httpc *h = httpc_new(2);
    httpc_run(h, r, 2, 2000);
    hn_srv_stop(srv);
    cr_assert_eq(r[0].cls, HTTPC_PERMANENT);
    cr_assert_eq(r[0].sent, 0);
    cr_assert_eq(r[1].cls, HTTPC_OK);
    cr_assert_eq(s.hits, 1, "only the good request reached the server");
    httpc_req_cleanup(&r[0]);
    httpc_req_cleanup(&r[1]);
    httpc_free(h);
}

/* ---- pure parts --------------------------------------------------------- */

Test(httpc_class, retry_after_values)
{
    int64_t ms = -1;
    const int64_t now = 1445412480000LL; /* Wed, 21 Oct 2015 07:28:00 GMT */
    cr_assert(httpc_parse_retry_after("120", now, &ms));
    cr_assert_eq(ms, 120000);
    cr_assert(httpc_parse_retry_after(" 0 ", now, &ms));
    cr_assert_eq(ms, 0);
    cr_assert(httpc_parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now, &ms));
    cr_assert_eq(ms, 30000);
    cr_assert(httpc_parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now, &ms));
    cr_assert_eq(ms, 0, "a date in the past means now");
    cr_assert(httpc_parse_retry_after("99999999999", now, &ms));
    cr_assert_eq(ms, 24LL * 3600 * 1000, "capped at a day");
    cr_assert_not(httpc_parse_retry_after("12abc", now, &ms));
    cr_assert_not(httpc_parse_retry_after("-5", now, &ms));
    cr_assert_not(httpc_parse_retry_after("soon", now, &ms));
    cr_assert_not(httpc_parse_retry_after("", now, &ms));
}

Test(httpc_class, class_to_rc_and_names)
{
    cr_assert_eq(httpc_class_rc(HTTPC_OK), CV_OK);
    cr_assert_eq(httpc_class_rc(HTTPC_NOT_SENT), CV_ERR_TRANSIENT);
    cr_assert_eq(httpc_class_rc(HTTPC_UNKNOWN), CV_ERR_TRANSIENT);
    cr_assert_eq(httpc_class_rc(HTTPC_TRANSIENT), CV_ERR_TRANSIENT);
    cr_assert_eq(httpc_class_rc(HTTPC_AUTH), CV_ERR_AUTH);
    cr_assert_eq(httpc_class_rc(HTTPC_THROTTLED), CV_ERR_RATE);
    cr_assert_eq(httpc_class_rc(HTTPC_PERMANENT), CV_ERR_PERMANENT);
    cr_assert_eq(httpc_class_rc(HTTPC_BODY_ERROR), CV_ERR_PERMANENT);
    cr_assert(cv_rc_retryable(httpc_class_rc(HTTPC_THROTTLED)));
    cr_assert_not(cv_rc_retryable(httpc_class_rc(HTTPC_BODY_ERROR)));
    for (int c = 0; c < HTTPC_NCLASS; c++)
        cr_assert_str_neq(httpc_class_str((enum httpc_class)c), "invalid");
    cr_assert_str_eq(httpc_class_str((enum httpc_class)99), "invalid");
    cr_assert_eq(httpc_class_of_status(503, 0), HTTPC_TRANSIENT);
    cr_assert_eq(httpc_class_of_status(503, 1), HTTPC_THROTTLED);
    cr_assert_eq(httpc_class_of_status(500, 1), HTTPC_TRANSIENT, "Retry-After on a 500 is a hint only");
}
