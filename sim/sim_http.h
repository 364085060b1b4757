/* sim_http.h - routing and replies for the simulator's HTTP server.
 *
 * Routes are a small table (path, exact or prefix, allowed methods, handler)
 * that each system fills at start. sim_http_dispatch() is the evhttp generic
 * callback: it answers 404 for an unknown path and 405 (with Allow) for a
 * known path with the wrong method, both as JSON. Every reply is JSON with
 * errors as {"error":{"code","message"}}, and each finished request is one
 * debug-level log line (evt=sim.request). Loop thread only. */
#ifndef SIM_HTTP_H
#define SIM_HTTP_H

#include <event2/http.h>
#include <stddef.h>
#include <stdint.h>

#include "rc.h"

#define SIM_ROUTES_MAX 64
#define SIM_BODY_MAX_BYTES 65536         /* larger bodies get 413 */
#define SIM_HTTP_MAX_BODY_BYTES 1048576  /* evhttp's own hard limit (plain 413) */
#define SIM_HTTP_MAX_HEADERS_BYTES 16384
#define SIM_HTTP_IDLE_TIMEOUT_S 60

struct sim;

/* One request being handled. Valid during the handler only; copy what a
 * timer needs. */
struct sim_call {
    struct evhttp_request *req;
    const char *path;                    /* the URI path, not decoded */
    int64_t start_us;                    /* monotonic, when dispatch began (debug only, else 0) */
};

/* A handler answers exactly once: now (sim_reply*), later
 * (sim_pending_answer) or never (sim_pending_hold). */
typedef void (*sim_handler_fn)(struct sim *s, const struct sim_call *c);

struct sim_route {
    const char *path;
    int prefix;                          /* 1: path is a prefix ("/activations/") */
    unsigned methods;                    /* EVHTTP_REQ_* bits; GET also allows HEAD */
    sim_handler_fn fn;
};

struct sim_router {
    struct sim_route routes[SIM_ROUTES_MAX];
    int n;
};

/* Add a route; path is not copied (use a literal). Aborts past SIM_ROUTES_MAX. */
void sim_route_add(struct sim_router *r, unsigned methods, const char *path, int prefix,
                   sim_handler_fn fn);

/* Add the routes of the server itself (GET /health) to s->router. */
void sim_http_register(struct sim *s);

/* The evhttp generic callback; arg is the struct sim. */
void sim_http_dispatch(struct evhttp_request *req, void *arg);

/* The request body, at most SIM_BODY_MAX_BYTES (else CV_ERR_TOO_LARGE). The
 * pointer is into the request's input buffer, not NUL-terminated. */
enum cv_rc sim_body(const struct sim_call *c, const char **body, size_t *len);

/* Append s to b as a quoted, escaped JSON string. */
void sim_put_json_str(struct evbuffer *b, const char *s);
/* Write {"error":{"code":code,"message":msg}} as the response body. */
void sim_put_error(struct evhttp_request *req, const char *code, const char *msg);

/* Send the response now with the body already in req's output buffer, and
 * log it. Frees req when its client has gone (evhttp does). */
void sim_send(struct evhttp_request *req, int status, int64_t start_us);
void sim_reply(const struct sim_call *c, int status);
void sim_reply_error(const struct sim_call *c, int status, const char *code, const char *msg);

/* "GET", "POST", ... for logs. */
const char *sim_method_str(enum evhttp_cmd_type m);

#endif
