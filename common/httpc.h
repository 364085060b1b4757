/* httpc.h - outbound HTTP (libcurl multi), the only module that includes curl.
 *
 * A worker hands a batch of requests to httpc_run, which performs them
 * concurrently on reused connections and classifies each outcome where it
 * starts, as a client must see it (enum httpc_class): was anything sent? did a
 * complete answer come back? what does it say? httpc_class_rc() maps a class to
 * the one retry policy (enum cv_rc, cv_rc_retryable()).
 *
 * Threads: one struct httpc per thread; httpc_run blocks until every request
 * of the batch is done (never call it on a libevent loop). */
#ifndef CV_HTTPC_H
#define CV_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#include "rc.h"

struct httpc;

/* What an outcome means to a client. Values are stable (logs, comm_log.class). */
enum httpc_class {
    HTTPC_OK = 0,      /* 2xx, and the body check (if any) found no error */
    HTTPC_NOT_SENT,    /* DNS, refused, connect timeout, TLS handshake: no byte of the
                        * request reached the server; any request may be sent again */
    HTTPC_UNKNOWN,     /* sent, no complete answer (timeout after sending, reset, partial
                        * reply, empty reply): a create must be looked up before it is
                        * sent again */
    HTTPC_AUTH,        /* 401: refresh the credentials (once) */
    HTTPC_THROTTLED,   /* 429, or 503 with Retry-After: wait retry_after_ms, not a failure */
    HTTPC_PERMANENT,   /* any other 4xx (and 3xx): never retry as it stands */
    HTTPC_TRANSIENT,   /* 5xx, 408: retry with backoff */
    HTTPC_BODY_ERROR,  /* a complete answer whose body reports an error (body check) */
};
#define HTTPC_NCLASS (HTTPC_BODY_ERROR + 1)

/* The stable lower-case name ("not_sent", ...). Never NULL. */
const char *httpc_class_str(enum httpc_class c);

/* The class as a return code: OK -> CV_OK; NOT_SENT, UNKNOWN, TRANSIENT ->
 * CV_ERR_TRANSIENT; AUTH -> CV_ERR_AUTH; THROTTLED -> CV_ERR_RATE; PERMANENT,
 * BODY_ERROR -> CV_ERR_PERMANENT. Whether to retry is cv_rc_retryable()'s call. */
enum cv_rc httpc_class_rc(enum httpc_class c);

/* The class of a complete answer with this status (no body check).
 * has_retry_after: the answer carried a valid Retry-After. */
enum httpc_class httpc_class_of_status(int status, int has_retry_after);

/* Content-Type sent with the body. */
enum httpc_ctype {
    HTTPC_CT_JSON = 0,  /* application/json (the default) */
    HTTPC_CT_FORM,      /* application/x-www-form-urlencoded */
    HTTPC_CT_SOAP,      /* text/xml; charset=utf-8 (SOAP 1.1; SOAPAction goes in headers) */
    HTTPC_CT_NONE,      /* no Content-Type header */
};

/* Per-request timings in microseconds from the start of the transfer (0 when
 * the phase was not reached; dns and connect are ~0 on a reused connection). */
struct httpc_timing {
    int64_t dns_us;
    int64_t connect_us;
    int64_t first_byte_us;
    int64_t total_us;
};

struct httpc_req;

/* Looks at a complete answer (any status; r->status, r->resp are set) and
 * returns HTTPC_OK when its body reports no error (the status then decides),
 * else the class the body means: normally HTTPC_BODY_ERROR ("codigoRetorno":
 * 3 in a 200, a SOAP Fault in a 200), or another class when the body knows
 * better than the status (HTTPC_AUTH for an expired SOAP session,
 * HTTPC_PERMANENT for a SOAP Client fault in a 500). It writes the upstream's
 * message (no secrets) into msg (msg_len bytes, NUL-terminated). Runs on the
 * thread that called httpc_run. */
typedef enum httpc_class (*httpc_body_check)(const struct httpc_req *r, void *arg, char *msg,
                                             size_t msg_len);

struct httpc_req {
    /* in (all strings belong to the caller and must live until httpc_run returns) */
    const char *method;          /* "POST", "GET", ... */
    const char *url;
    const char *body;            /* may be NULL */
    size_t body_len;
    enum httpc_ctype content_type;
    const char *const *headers;  /* NULL-terminated "Name: value" lines, or NULL; a line
                                  * with CR or LF fails the request (PERMANENT, not sent) */
    const char *basic_user;      /* HTTP Basic when non-NULL (with basic_pass) */
    const char *basic_pass;
    int timeout_ms;              /* total; 0 = httpc_run's timeout_ms */
    int connect_timeout_ms;      /* 0 = the total timeout */
    const char *idempotency_key; /* sent as Idempotency-Key when non-NULL */
    const char *traceparent;     /* sent as traceparent when non-NULL and non-empty */
    httpc_body_check body_check; /* NULL = the status alone decides */
    void *body_check_arg;
    /* out */
    enum httpc_class cls;
    enum cv_rc rc;               /* httpc_class_rc(cls) */
    int status;                  /* 0 when no response */
    int sent;                    /* 1 when bytes of the request may have reached the server */
    int64_t retry_after_ms;      /* from Retry-After (delta-seconds or HTTP-date), else 0 */
    struct httpc_timing timing;
    char *resp;                  /* response body (NUL-terminated, at most 4 MiB), owned */
    size_t resp_len;
    char error[160];             /* why, for last_error; never contains secrets */
};

/* max_conns bounds concurrent transfers. Free with httpc_free. */
struct httpc *httpc_new(int max_conns);
void httpc_free(struct httpc *h);

/* Give up early when should_abort(arg) returns non-zero (checked between
 * socket events, at least every 100 ms): transfers still running end with
 * error "aborted" and class UNKNOWN (NOT_SENT when nothing was sent yet).
 * NULL turns it off. */
void httpc_set_abort(struct httpc *h, int (*should_abort)(void *), void *arg);

/* Perform n requests concurrently; each gets at most its own timeout_ms, or
 * this timeout_ms when it has none. Returns when all are done. Free response
 * bodies with httpc_req_cleanup. */
void httpc_run(struct httpc *h, struct httpc_req *reqs, size_t n, int timeout_ms);
void httpc_req_cleanup(struct httpc_req *r);

/* Parse a Retry-After value (delta-seconds or an HTTP-date, RFC 9110 10.2.3)
 * against now_wall_ms. Returns 1 and sets *ms (0 for a date in the past,
 * capped at one day) when valid, else 0. */
int httpc_parse_retry_after(const char *v, int64_t now_wall_ms, int64_t *ms);

#endif
