/* hn_srv.h - a tiny scripted HTTP/1.1 server for tests of outbound calls.
 *
 * It listens on a free 127.0.0.1 port, serves each connection on its own thread
 * (keep-alive: several requests per connection), and asks a handler what to do
 * with every request: send a reply, or misbehave the ways upstreams do (never
 * answer, answer half and close or reset, reset before answering). Handlers are
 * called one at a time (under the server's lock), so a test's counters need no
 * locking of their own as long as the test reads them after its calls return
 * (or with hn_srv_lock).
 *
 * Test-only: it is not the simulator and knows no upstream. */
#ifndef CV_HN_SRV_H
#define CV_HN_SRV_H

#include <stddef.h>

#include "sbuf.h"

struct hn_srv;

struct hn_srv_req {
    char method[16];
    char path[1024];        /* with the query string */
    const char *headers;    /* the raw header lines (CRLF separated), NUL-terminated */
    const char *body;       /* NUL-terminated */
    size_t body_len;
    int conn_seq;           /* which request on this connection (0, 1, ...) */
};

enum hn_srv_act {
    HN_SRV_REPLY = 0,       /* send out->raw, keep the connection */
    HN_SRV_HANG,            /* send nothing; wait until the client goes away */
    HN_SRV_SEND_HANG,       /* send out->raw (a part of a reply), then wait as HANG */
    HN_SRV_SEND_CLOSE,      /* send out->raw, then close (FIN) */
    HN_SRV_SEND_RESET,      /* send out->raw (may be empty), then reset (RST) */
};

struct hn_srv_reply {
    enum hn_srv_act act;
    struct sbuf raw;        /* bytes to send; the handler appends to it */
    int delay_ms;           /* wait this long (interrupted by hn_srv_stop) before acting */
};

/* Called for every request, under the server's lock, on a connection thread. */
typedef void (*hn_srv_fn)(void *arg, const struct hn_srv_req *req, struct hn_srv_reply *out);

/* Start on a free port. Never NULL (fails the test). Stop with hn_srv_stop. */
struct hn_srv *hn_srv_start(hn_srv_fn fn, void *arg);
int hn_srv_port(const struct hn_srv *s);
/* Close the listener, wake and join every connection thread, free s. */
void hn_srv_stop(struct hn_srv *s);
/* The handlers' lock, for a test that reads handler state while calls run. */
void hn_srv_lock(struct hn_srv *s);
void hn_srv_unlock(struct hn_srv *s);

/* Append a complete reply: status line, extra header lines (each ending in
 * "\r\n", may be NULL), Content-Length, and body (may be NULL). */
void hn_srv_reply_add(struct hn_srv_reply *out, int status, const char *headers,
                      const char *body);

/* The value of header name in req (case-insensitive) copied into buf, or NULL. */
const char *hn_srv_header(const struct hn_srv_req *req, const char *name, char *buf,
                          size_t len);

#endif
