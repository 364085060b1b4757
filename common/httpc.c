#include "httpc.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "log.h"
#include "mem.h"

/* A reply body is kept up to this size. Mirakl's OR11 page of 100 orders with
 * their lines is some hundreds of KiB; past the limit the transfer is cut. */
#define RESP_MAX (4 * 1024 * 1024)
#define RETRY_AFTER_MAX_MS (24LL * 3600 * 1000)

struct httpc {
    CURLM *multi;
    CURL **pool;          /* idle easy handles, kept for connection reuse */
    int npool;
    int max_conns;
    int (*should_abort)(void *);
    void *abort_arg;
};

struct xfer {
    struct httpc_req *req;
    CURL *easy;
    struct curl_slist *headers;
    size_t cap;
    int has_retry_after;
};

/* ---- classes ------------------------------------------------------------ */

static const char *const class_names[HTTPC_NCLASS] = {
    [HTTPC_OK] = "ok",
    [HTTPC_NOT_SENT] = "not_sent",
    [HTTPC_UNKNOWN] = "unknown",
    [HTTPC_AUTH] = "auth",
    [HTTPC_THROTTLED] = "throttled",
    [HTTPC_PERMANENT] = "permanent",
    [HTTPC_TRANSIENT] = "transient",
    [HTTPC_BODY_ERROR] = "body_error",
};

const char *httpc_class_str(enum httpc_class c)
{
    if ((unsigned)c >= HTTPC_NCLASS)
        return "invalid";
    return class_names[c];
}

enum cv_rc httpc_class_rc(enum httpc_class c)
{
    switch (c) {
    case HTTPC_OK:
        return CV_OK;
    case HTTPC_AUTH:
        return CV_ERR_AUTH;
    case HTTPC_THROTTLED:
        return CV_ERR_RATE;
    case HTTPC_PERMANENT:
    case HTTPC_BODY_ERROR:
        return CV_ERR_PERMANENT;
    case HTTPC_NOT_SENT:
    case HTTPC_UNKNOWN:
    case HTTPC_TRANSIENT:
    default:
        return CV_ERR_TRANSIENT;
    }
}

enum httpc_class httpc_class_of_status(int status, int has_retry_after)
{
    if (status >= 200 && status < 300)
        return HTTPC_OK;
    if (status == 401)
        return HTTPC_AUTH;
    if (status == 429 || (status == 503 && has_retry_after))
        return HTTPC_THROTTLED;
    if (status == 408 || status >= 500)
        return HTTPC_TRANSIENT;
    if (status <= 0)
        return HTTPC_UNKNOWN;
    return HTTPC_PERMANENT; /* other 4xx, and 3xx (we never follow redirects) */
}

int httpc_parse_retry_after(const char *v, int64_t now_wall_ms, int64_t *ms)
{
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v >= '0' && *v <= '9') {
        /* delta-seconds: digits only (trailing blanks allowed) */
        int64_t s = 0;
        for (; *v >= '0' && *v <= '9'; v++) {
            if (s < RETRY_AFTER_MAX_MS / 1000)
                s = s * 10 + (*v - '0');
        }
        while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
            v++;
        if (*v)
            return 0;
        *ms = s * 1000 > RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS : s * 1000;
        return 1;
    }
    /* HTTP-date (IMF-fixdate; curl_getdate also takes the obsolete RFC 850 and
     * asctime forms the RFC says a recipient must accept) */
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1)
        return 0;
    int64_t d = (int64_t)t * 1000 - now_wall_ms;
    *ms = d < 0 ? 0 : d > RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS : d;
    return 1;
}

/* ---- handles ------------------------------------------------------------ */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct httpc *httpc_new(int max_conns)
{
    /* once per process, whichever thread comes first (the trace exporter's may) */
    pthread_once(&global_once, global_init);
    struct httpc *h = xcalloc(1, sizeof(*h));
    h->multi = curl_multi_init();
    CV_ASSERT(h->multi);
    h->max_conns = max_conns > 0 ? max_conns : 16;
    h->pool = xcalloc((size_t)h->max_conns, sizeof(*h->pool));
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)h->max_conns);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->max_conns);
    return h;
}

void httpc_free(struct httpc *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->npool; i++)
        curl_easy_cleanup(h->pool[i]);
    free(h->pool);
    curl_multi_cleanup(h->multi);
    free(h);
}

void httpc_set_abort(struct httpc *h, int (*should_abort)(void *), void *arg)
{
    h->should_abort = should_abort;
    h->abort_arg = arg;
}

void httpc_req_cleanup(struct httpc_req *r)
{
    FREE_NULL(r->resp);
    r->resp_len = 0;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    struct httpc_req *r = x->req;
    size_t n = size * nmemb;
    if (r->resp_len + n > RESP_MAX)
        return 0; /* too large: abort the transfer */
    if (r->resp_len + n + 1 > x->cap) {
        x->cap = (r->resp_len + n + 1) * 2;
        r->resp = xrealloc(r->resp, x->cap);
    }
    memcpy(r->resp + r->resp_len, p, n);
    r->resp_len += n;
    r->resp[r->resp_len] = '\0';
    return n;
}

/* Header lines of the final answer: only Retry-After is kept. A status line
 * starts a new answer (a 100 Continue before the real one), so it resets. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n >= 5 && !strncmp(p, "HTTP/", 5)) {
        x->has_retry_after = 0;
        x->req->retry_after_ms = 0;
    } else if (n > sizeof(name) - 1 && !strncasecmp(p, name, sizeof(name) - 1)) {
        char v[128];
        size_t vl = n - (sizeof(name) - 1);
        if (vl >= sizeof(v))
            vl = sizeof(v) - 1;
        memcpy(v, p + sizeof(name) - 1, vl);
        v[vl] = '\0';
        int64_t ms;
        if (httpc_parse_retry_after(v, clock_wall_ms(), &ms)) {
            x->has_retry_after = 1;
            x->req->retry_after_ms = ms;
        }
    }
    return n;
}

static CURL *take_easy(struct httpc *h)
{
    if (h->npool > 0)
        return h->pool[--h->npool];
    CURL *e = curl_easy_init();
    CV_ASSERT(e);
    return e;
}

static void give_easy(struct httpc *h, CURL *e)
{
    if (h->npool < h->max_conns) {
        curl_easy_reset(e);
        h->pool[h->npool++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

static const char *ctype_line(enum httpc_ctype ct)
{
    switch (ct) {
    case HTTPC_CT_FORM:
        return "Content-Type: application/x-www-form-urlencoded";
    case HTTPC_CT_SOAP:
        return "Content-Type: text/xml; charset=utf-8";
    case HTTPC_CT_NONE:
        return "Content-Type:"; /* tells curl to send none (not even its form default) */
    case HTTPC_CT_JSON:
    default:
        return "Content-Type: application/json";
    }
}

/* A header line we pass to curl must not smuggle a second header or a body. */
static int header_ok(const char *line)
{
    return line && !strpbrk(line, "\r\n") && strchr(line, ':');
}

static void add_line(struct xfer *x, const char *name, const char *v)
{
    char line[512];
    snprintf(line, sizeof(line), "%s: %s", name, v);
    x->headers = curl_slist_append(x->headers, line);
}

/* Build the request on a pooled handle and add it to the multi. Returns 0, or
 * -1 when the request is malformed (nothing sent; the caller finishes it). */
static int start(struct httpc *h, struct xfer *x, int timeout_ms)
{
    struct httpc_req *r = x->req;
    if (r->headers) {
        for (const char *const *l = r->headers; *l; l++) {
            if (!header_ok(*l)) {
                snprintf(r->error, sizeof(r->error), "http: malformed request header");
                return -1;
            }
        }
    }
    if ((r->idempotency_key && strpbrk(r->idempotency_key, "\r\n")) ||
        (r->traceparent && strpbrk(r->traceparent, "\r\n"))) {
        snprintf(r->error, sizeof(r->error), "http: malformed request header");
        return -1;
    }
    CURL *e = take_easy(h);
    int total_ms = r->timeout_ms > 0 ? r->timeout_ms : timeout_ms;
    int conn_ms = r->connect_timeout_ms > 0 && r->connect_timeout_ms < total_ms
                      ? r->connect_timeout_ms : total_ms;
    x->easy = e;
    x->headers = curl_slist_append(NULL, ctype_line(r->content_type));
    x->headers = curl_slist_append(x->headers, "Expect:");
    if (r->idempotency_key)
        add_line(x, "Idempotency-Key", r->idempotency_key);
    if (r->traceparent && r->traceparent[0])
        add_line(x, "traceparent", r->traceparent);
    if (r->headers) {
        for (const char *const *l = r->headers; *l; l++)
            x->headers = curl_slist_append(x->headers, *l);
    }
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)r->body_len);
    }
    if (r->basic_user) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, r->basic_user);
        curl_easy_setopt(e, CURLOPT_PASSWORD, r->basic_pass ? r->basic_pass : "");
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)total_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)conn_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_multi_add_handle(h->multi, e);
    return 0;
}

/* ---- where is "sent"? ------------------------------------------------------
 * The question that matters for a create: could any byte of the request have
 * reached the server? libcurl's facts, per finished transfer:
 *  - CURLINFO_REQUEST_SIZE counts request bytes curl wrote to the socket
 *    (headers and body, summed over a connection retry). 0 means not one byte
 *    left this process.
 *  - CURLINFO_PRETRANSFER_TIME_T is set once the connection (and TLS) is up
 *    and curl is about to write the request.
 *  - Some codes can only happen before the request: COULDNT_RESOLVE_*,
 *    COULDNT_CONNECT, the TLS handshake and certificate errors, a bad URL.
 * So: those codes are NOT_SENT; otherwise the request counts as sent when
 * request_size > 0 or pretransfer was reached (a send that blocked and timed
 * out may have pushed bytes curl has not counted yet). An OPERATION_TIMEDOUT
 * with neither is a connect (or DNS) timeout: NOT_SENT.
 * Erring matters unevenly: a wrong NOT_SENT could create a shipment twice, a
 * wrong UNKNOWN costs one lookup, so every doubt goes to "sent". A reset, an
 * empty reply, a partial body, a timeout after sending all end UNKNOWN. */
static int sent_before_error(CURLcode res, CURL *e)
{
    switch (res) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        return 0;
    default:
        break;
    }
    long req_size = 0;
    curl_off_t pretransfer_us = 0;
    curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &req_size);
    curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);
    return req_size > 0 || pretransfer_us > 0;
}

static void read_timing(CURL *e, struct httpc_timing *t)
{
    curl_off_t v;
    if (curl_easy_getinfo(e, CURLINFO_NAMELOOKUP_TIME_T, &v) == CURLE_OK)
        t->dns_us = v;
    if (curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &v) == CURLE_OK)
        t->connect_us = v;
    if (curl_easy_getinfo(e, CURLINFO_STARTTRANSFER_TIME_T, &v) == CURLE_OK)
        t->first_byte_us = v;
    if (curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &v) == CURLE_OK)
        t->total_us = v;
}

static void set_class(struct httpc_req *r, enum httpc_class c)
{
    r->cls = c;
    r->rc = httpc_class_rc(c);
}

/* Classify one finished transfer (see "where is sent" above). */
static void finish(struct xfer *x, CURLcode res)
{
    struct httpc_req *r = x->req;
    CURL *e = x->easy;
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    read_timing(e, &r->timing);
    if (res != CURLE_OK) {
        r->sent = sent_before_error(res, e);
        r->status = 0;
        if (res == CURLE_WRITE_ERROR && status > 0 && !(status >= 200 && status < 300)) {
            /* our own body limit cut a non-2xx answer: its status stands */
            r->status = (int)status;
            set_class(r, httpc_class_of_status(r->status, x->has_retry_after));
            snprintf(r->error, sizeof(r->error), "http status %ld (body over limit)", status);
            return;
        }
        set_class(r, r->sent ? HTTPC_UNKNOWN : HTTPC_NOT_SENT);
        if (res == CURLE_WRITE_ERROR)
            snprintf(r->error, sizeof(r->error), "http: a reply body over %d bytes", RESP_MAX);
        else
            snprintf(r->error, sizeof(r->error), "http: %s%s", curl_easy_strerror(res),
                     r->sent ? " (after sending)" : " (not sent)");
        return;
    }
    r->sent = 1;
    r->status = (int)status;
    if (!x->has_retry_after)
        r->retry_after_ms = 0;
    enum httpc_class c = httpc_class_of_status(r->status, x->has_retry_after);
    if (c != HTTPC_OK)
        snprintf(r->error, sizeof(r->error), "http status %ld", status);
    if (r->body_check) {
        char msg[sizeof(r->error) - 24];
        msg[0] = '\0';
        enum httpc_class b = r->body_check(r, r->body_check_arg, msg, sizeof(msg));
        if (b != HTTPC_OK) {
            c = b;
            snprintf(r->error, sizeof(r->error), "http status %ld: %s", status,
                     msg[0] ? msg : "error in body");
        }
    }
    set_class(r, c);
}

static void release(struct httpc *h, struct xfer *x)
{
    curl_multi_remove_handle(h->multi, x->easy);
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    give_easy(h, x->easy);
    x->easy = NULL;
}

void httpc_run(struct httpc *h, struct httpc_req *reqs, size_t n, int timeout_ms)
{
    struct xfer *x = xcalloc(n ? n : 1, sizeof(*x));
    size_t next = 0, active = 0;
    for (size_t i = 0; i < n; i++) {
        struct httpc_req *r = &reqs[i];
        set_class(r, HTTPC_NOT_SENT);
        r->status = 0;
        r->sent = 0;
        r->retry_after_ms = 0;
        memset(&r->timing, 0, sizeof(r->timing));
        r->resp = NULL;
        r->resp_len = 0;
        r->error[0] = '\0';
        x[i].req = r;
    }
    while (next < n || active > 0) {
        while (next < n && active < (size_t)h->max_conns) {
            struct xfer *nx = &x[next++];
            if (start(h, nx, timeout_ms) == 0)
                active++;
            else
                set_class(nx->req, HTTPC_PERMANENT); /* malformed: never sent */
        }
        int running = 0;
        curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(h->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct xfer *xf;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&xf);
            finish(xf, m->data.result);
            release(h, xf);
            active--;
        }
        if (active > 0 && h->should_abort && h->should_abort(h->abort_arg)) {
            /* the worker is stopping and its grace period is over */
            for (size_t i = 0; i < next; i++) {
                if (!x[i].easy)
                    continue; /* finished */
                struct httpc_req *r = x[i].req;
                r->sent = sent_before_error(CURLE_ABORTED_BY_CALLBACK, x[i].easy);
                read_timing(x[i].easy, &r->timing);
                set_class(r, r->sent ? HTTPC_UNKNOWN : HTTPC_NOT_SENT);
                snprintf(r->error, sizeof(r->error), "aborted: worker stopping");
                release(h, &x[i]);
            }
            for (size_t i = next; i < n; i++)
                snprintf(reqs[i].error, sizeof(reqs[i].error), "aborted: worker stopping");
            break;
        }
        if (active > 0)
            curl_multi_poll(h->multi, NULL, 0, 100, NULL);
    }
    free(x);
}
