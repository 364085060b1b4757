/* httpc.h - outbound HTTP (libcurl multi), the only module that includes curl.
 *
 * A worker hands a batch of requests to httpc_run, which performs them
 * concurrently on reused connections and classifies each outcome where it
 * starts: 2xx -> CV_OK; network errors, timeouts, 5xx, 408 and 429 ->
 * CV_ERR_TRANSIENT; any other status -> CV_ERR_PERMANENT. */
#ifndef CV_HTTPC_H
#define CV_HTTPC_H

#include <stddef.h>

#include "rc.h"

struct httpc;

struct httpc_req {
    /* in */
    const char *method;          /* "POST", "GET", ... */
    const char *url;
    const char *body;            /* may be NULL */
    size_t body_len;
    const char *idempotency_key; /* sent as Idempotency-Key when non-NULL */
    const char *traceparent;     /* sent as traceparent when non-NULL and non-empty */
    /* out */
    enum cv_rc rc;
    int status;                  /* 0 when no response */
    char *resp;                  /* response body (NUL-terminated, at most 64 KiB), owned */
    size_t resp_len;
    char error[160];             /* why, for last_error; never contains secrets */
};

/* max_conns bounds concurrent transfers. Free with httpc_free. */
struct httpc *httpc_new(int max_conns);
void httpc_free(struct httpc *h);

/* Give up early when should_abort(arg) returns non-zero (checked between
 * socket events, at least every 100 ms): transfers still running end with
 * CV_ERR_TRANSIENT and error "aborted". NULL turns it off. */
void httpc_set_abort(struct httpc *h, int (*should_abort)(void *), void *arg);

/* Perform n requests concurrently; each gets at most timeout_ms. Returns when
 * all are done. Free response bodies with httpc_req_cleanup. */
void httpc_run(struct httpc *h, struct httpc_req *reqs, size_t n, int timeout_ms);
void httpc_req_cleanup(struct httpc_req *r);

/* Classify an HTTP status: CV_OK, CV_ERR_TRANSIENT or CV_ERR_PERMANENT. */
enum cv_rc httpc_classify_status(int status);

#endif
