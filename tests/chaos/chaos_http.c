/* chaos_http.c - see chaos.h: many HTTP requests at once through one libcurl multi handle.
 *
 * The multi handle owns the connection cache, so the easy handles of later calls reuse the
 * connections of earlier ones: a run of 10,000 submissions opens about `parallel`
 * connections, not 10,000. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"
#include "mem.h"

#define RESP_MAX (16 * 1024 * 1024)   /* the sim's stats list up to 10,000 orders */

struct ch_http {
    CURLM *multi;
    int parallel;
};

/* What one transfer in flight owns. */
struct xfer {
    struct ch_req *req;
    CURL *easy;
    struct curl_slist *headers;
    size_t cap;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    struct ch_req *r = x->req;
    size_t n = size * nmemb, take = n;
    if (r->resp_len + take > RESP_MAX)
        take = RESP_MAX - r->resp_len;     /* keep the head, drop the rest */
    if (r->resp_len + take + 1 > x->cap) {
        x->cap = r->resp_len + take + 1 + x->cap;   /* at least doubles */
        r->resp = xrealloc(r->resp, x->cap);
    }
    memcpy(r->resp + r->resp_len, data, take);
    r->resp_len += take;
    r->resp[r->resp_len] = '\0';
    return n;
}

static void xfer_start(struct ch_http *h, struct xfer *x, struct ch_req *r, int timeout_ms)
{
    memset(x, 0, sizeof(*x));
    x->req = r;
    r->status = 0;
    r->err[0] = '\0';
    r->resp_len = 0;
    r->resp = xrealloc(r->resp, 1);
    r->resp[0] = '\0';
    x->cap = 1;
    x->easy = curl_easy_init();
    CV_ASSERT(x->easy != NULL);
    for (size_t i = 0; r->headers && r->headers[i]; i++)
        x->headers = curl_slist_append(x->headers, r->headers[i]);
    if (r->body)
        x->headers = curl_slist_append(x->headers, "Content-Type: application/json");
    x->headers = curl_slist_append(x->headers, "Expect:");   /* no 100-continue round trip */
    curl_easy_setopt(x->easy, CURLOPT_URL, r->url);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->body) {
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->body));
    }
    curl_multi_add_handle(h->multi, x->easy);
}

static void xfer_end(struct ch_http *h, struct xfer *x, CURLcode cc)
{
    struct ch_req *r = x->req;
    long code = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    else if (!r->err[0])
        snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(cc));
    r->status = (int)code;
    curl_multi_remove_handle(h->multi, x->easy);
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    x->easy = NULL;
    x->headers = NULL;
    x->req = NULL;
}

struct ch_http *ch_http_new(int parallel)
{
    struct ch_http *h = xcalloc(1, sizeof(*h));
    h->multi = curl_multi_init();
    CV_ASSERT(h->multi != NULL);
    h->parallel = parallel > 0 ? parallel : 1;
    return h;
}

void ch_http_free(struct ch_http *h)
{
    if (!h)
        return;
    curl_multi_cleanup(h->multi);
    free(h);
}

void ch_http_run(struct ch_http *h, struct ch_req *reqs, size_t n, int timeout_ms)
{
    struct xfer *slots = xcalloc((size_t)h->parallel, sizeof(*slots));
    size_t next = 0, done = 0;
    while (done < n) {
        /* fill free slots */
        for (int s = 0; s < h->parallel && next < n; s++)
            if (!slots[s].req)
                xfer_start(h, &slots[s], &reqs[next++], timeout_ms);
        int running = 0;
        curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct xfer *x = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            xfer_end(h, x, m->data.result);
            done++;
        }
        if (done < n && running > 0)
            curl_multi_poll(h->multi, NULL, 0, 100, NULL);
    }
    free(slots);
}

void ch_req_cleanup(struct ch_req *r)
{
    FREE_NULL(r->resp);
    r->resp_len = 0;
}
