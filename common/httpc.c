#include "httpc.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

#define RESP_MAX (64 * 1024)

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
};

enum cv_rc httpc_classify_status(int status)
{
    if (status >= 200 && status < 300)
        return CV_OK;
    if (status == 408 || status == 429 || status >= 500 || status == 0)
        return CV_ERR_TRANSIENT;
    return CV_ERR_PERMANENT;
}

struct httpc *httpc_new(int max_conns)
{
    static int inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        inited = 1;
    }
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

static void start(struct httpc *h, struct xfer *x, int timeout_ms)
{
    struct httpc_req *r = x->req;
    CURL *e = take_easy(h);
    char line[256];
    x->easy = e;
    x->headers = curl_slist_append(NULL, "Content-Type: application/json");
    x->headers = curl_slist_append(x->headers, "Expect:");
    if (r->idempotency_key) {
        snprintf(line, sizeof(line), "Idempotency-Key: %s", r->idempotency_key);
        x->headers = curl_slist_append(x->headers, line);
    }
    if (r->traceparent && r->traceparent[0]) {
        snprintf(line, sizeof(line), "traceparent: %s", r->traceparent);
        x->headers = curl_slist_append(x->headers, line);
    }
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)r->body_len);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_multi_add_handle(h->multi, e);
}

void httpc_run(struct httpc *h, struct httpc_req *reqs, size_t n, int timeout_ms)
{
    struct xfer *x = xcalloc(n ? n : 1, sizeof(*x));
    size_t next = 0, active = 0;
    for (size_t i = 0; i < n; i++) {
        reqs[i].rc = CV_ERR_TRANSIENT;
        reqs[i].status = 0;
        reqs[i].resp = NULL;
        reqs[i].resp_len = 0;
        reqs[i].error[0] = '\0';
        x[i].req = &reqs[i];
    }
    while (next < n || active > 0) {
        while (next < n && active < (size_t)h->max_conns) {
            start(h, &x[next++], timeout_ms);
            active++;
        }
        int running = 0;
        curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(h->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            CURL *e = m->easy_handle;
            struct xfer *xf;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&xf);
            struct httpc_req *r = xf->req;
            long status = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            if (m->data.result != CURLE_OK) {
                r->rc = CV_ERR_TRANSIENT;
                r->status = 0;
                snprintf(r->error, sizeof(r->error), "http: %s",
                         curl_easy_strerror(m->data.result));
            } else {
                r->status = (int)status;
                r->rc = httpc_classify_status((int)status);
                if (r->rc != CV_OK)
                    snprintf(r->error, sizeof(r->error), "http status %ld", status);
            }
            curl_multi_remove_handle(h->multi, e);
            curl_slist_free_all(xf->headers);
            xf->headers = NULL;
            give_easy(h, e);
            active--;
        }
        if (active > 0 && h->should_abort && h->should_abort(h->abort_arg)) {
            /* the worker is stopping and its grace period is over */
            for (size_t i = 0; i < next; i++) {
                if (!x[i].headers)
                    continue; /* finished */
                CURL *e = NULL;
                snprintf(x[i].req->error, sizeof(x[i].req->error), "aborted: worker stopping");
                x[i].req->rc = CV_ERR_TRANSIENT;
                curl_slist_free_all(x[i].headers);
                x[i].headers = NULL;
                e = x[i].easy;
                curl_multi_remove_handle(h->multi, e);
                give_easy(h, e);
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
