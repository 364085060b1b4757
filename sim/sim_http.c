#include "sim_http.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "sim.h"

static const struct {
    enum evhttp_cmd_type m;
    const char *name;
} methods[] = {
    { EVHTTP_REQ_GET, "GET" },         { EVHTTP_REQ_POST, "POST" },
    { EVHTTP_REQ_HEAD, "HEAD" },       { EVHTTP_REQ_PUT, "PUT" },
    { EVHTTP_REQ_DELETE, "DELETE" },   { EVHTTP_REQ_OPTIONS, "OPTIONS" },
    { EVHTTP_REQ_TRACE, "TRACE" },     { EVHTTP_REQ_CONNECT, "CONNECT" },
    { EVHTTP_REQ_PATCH, "PATCH" },
};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

const char *sim_method_str(enum evhttp_cmd_type m)
{
    for (size_t i = 0; i < NMETHODS; i++)
        if (methods[i].m == m)
            return methods[i].name;
    return "OTHER";
}

/* ---- replies ---------------------------------------------------------------- */

void sim_put_json_str(struct evbuffer *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;
    evbuffer_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        evbuffer_add(b, run, (size_t)(s - run));
        char e[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
        if (ch == '"' || ch == '\\') {
            e[1] = (char)ch;
            evbuffer_add(b, e, 2);
        } else {
            evbuffer_add(b, e, 6);
        }
        run = s + 1;
    }
    evbuffer_add(b, run, (size_t)(s - run));
    evbuffer_add(b, "\"", 1);
}

void sim_put_error(struct evhttp_request *req, const char *code, const char *msg)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    evbuffer_drain(out, evbuffer_get_length(out));
    evbuffer_add_printf(out, "{\"error\":{\"code\":");
    sim_put_json_str(out, code);
    evbuffer_add_printf(out, ",\"message\":");
    sim_put_json_str(out, msg);
    evbuffer_add(out, "}}", 2);
}

/* Reason phrases libevent 2.1 does not know (it says "Client Error"). */
static const char *reason_of(int status)
{
    switch (status) {
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    default: return NULL;
    }
}

void sim_send(struct evhttp_request *req, int status, int64_t start_us)
{
    if (log_min_level <= LOG_LVL_DEBUG) {
        char pbuf[LOG_STR_MAX];
        const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
        const char *path = u ? evhttp_uri_get_path(u) : NULL;
        LOG_DEBUG("sim.request", "method=%s path=%s status=%d dur_us=%lld",
                  sim_method_str(evhttp_request_get_command(req)),
                  log_str(pbuf, path ? path : ""), status,
                  (long long)(clock_mono_us() - start_us));
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (!evhttp_find_header(h, "Content-Type"))      /* SOAP systems set text/xml */
        evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_send_reply(req, status, reason_of(status), NULL);
}

void sim_reply(const struct sim_call *c, int status)
{
    sim_send(c->req, status, c->start_us);
}

void sim_reply_error(const struct sim_call *c, int status, const char *code, const char *msg)
{
    sim_put_error(c->req, code, msg);
    sim_send(c->req, status, c->start_us);
}

enum cv_rc sim_body(const struct sim_call *c, const char **body, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t n = evbuffer_get_length(in);
    if (n > SIM_BODY_MAX_BYTES)
        return CV_ERR_TOO_LARGE;
    *body = n ? (const char *)evbuffer_pullup(in, -1) : "";
    *len = n;
    return CV_OK;
}

/* ---- routing ------------------------------------------------------------- */

void sim_route_add(struct sim_router *r, unsigned methods_mask, const char *path, int prefix,
                   sim_handler_fn fn)
{
    CV_ASSERT(r->n < SIM_ROUTES_MAX);
    r->routes[r->n++] = (struct sim_route){ path, prefix, methods_mask, fn };
}

static int path_matches(const struct sim_route *rt, const char *path)
{
    if (rt->prefix)
        return strncmp(path, rt->path, strlen(rt->path)) == 0;
    return strcmp(path, rt->path) == 0;
}

static void reply_405(const struct sim_call *c, unsigned allow)
{
    char list[128];
    size_t o = 0;
    if (allow & EVHTTP_REQ_GET)
        allow |= EVHTTP_REQ_HEAD;
    list[0] = '\0';
    for (size_t i = 0; i < NMETHODS; i++) {
        if (!(allow & methods[i].m))
            continue;
        int n = snprintf(list + o, sizeof(list) - o, "%s%s", o ? ", " : "", methods[i].name);
        if (n < 0 || (size_t)n >= sizeof(list) - o)
            break;
        o += (size_t)n;
    }
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Allow", list);
    sim_reply_error(c, 405, cv_rc_str(CV_ERR_UNSUPPORTED), "method not allowed for this path");
}

static void h_health(struct sim *s, const struct sim_call *c)
{
    (void)s;
    evbuffer_add(evhttp_request_get_output_buffer(c->req), "{\"status\":\"ok\"}", 15);
    sim_reply(c, 200);
}

void sim_http_register(struct sim *s)
{
    sim_route_add(&s->router, EVHTTP_REQ_GET, "/health", 0, h_health);
}

void sim_http_dispatch(struct evhttp_request *req, void *arg)
{
    struct sim *s = arg;
    /* the start time only feeds the debug line: skip the clock otherwise */
    struct sim_call c = { .req = req, .path = NULL,
                          .start_us = log_min_level <= LOG_LVL_DEBUG ? clock_mono_us() : 0 };
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    unsigned m = (unsigned)evhttp_request_get_command(req);
    unsigned allow = 0;

    c.path = path && *path ? path : "/";
    if (m == EVHTTP_REQ_HEAD)
        m = EVHTTP_REQ_GET;
    for (int i = 0; i < s->router.n; i++) {
        const struct sim_route *rt = &s->router.routes[i];
        if (!path_matches(rt, c.path))
            continue;
        if (rt->methods & m) {
            rt->fn(s, &c);
            return;
        }
        allow |= rt->methods;
    }
    if (allow)
        reply_405(&c, allow);
    else
        sim_reply_error(&c, 404, cv_rc_str(CV_ERR_NOT_FOUND), "no such path");
}
