/* api_trace.c - the tracing switch (trc.h): GET, PUT and DELETE /v1/trace, and
 * the loop that follows it.
 *
 * The switch lives in Redis (TRC_KEY: "ups,worker", "all" or "off"), so that
 * one PUT reaches every process: workers read it at each heartbeat, and loop 0
 * of each API process every TRC_REFRESH_MS (the mask is per process, one
 * loop is enough). DELETE removes the key: every process goes back to its
 * configured trace.modules. The API that took the PUT applies it at once, so
 * that the request after it is already traced. Operator scope. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "mem.h"
#include "rds.h"
#include "trc.h"

struct api_trace {
    struct api_thread *t;
    struct event *timer;
    int reading;
};

/* ---- following the switch -------------------------------------------------- */

static void on_read(const struct rds_reply *reply, void *arg)
{
    struct api_trace *x = arg;
    x->reading = 0;
    if (reply && rds_reply_type(reply) == RDS_STR)
        trc_follow(rds_reply_str(reply, NULL));
    else if (reply && rds_reply_type(reply) == RDS_NIL)
        trc_follow(NULL);
    /* else Redis is down: the mask stays as it was */
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct api_trace *x = arg;
    (void)fd;
    (void)what;
    if (x->reading || x->t->closing || !x->t->rds)
        return;
    x->reading = 1;
    const char *argv[] = { "GET", TRC_KEY };
    rds_async_cmd(x->t->rds, on_read, x, 2, argv, NULL);
}

int api_trace_init(struct api_thread *t)
{
    if (t->idx != 0)
        return 0;
    struct api_trace *x = xcalloc(1, sizeof(*x));
    x->t = t;
    x->timer = event_new(t->base, -1, EV_PERSIST, on_tick, x);
    struct timeval tv = { TRC_REFRESH_MS / 1000, (TRC_REFRESH_MS % 1000) * 1000 };
    if (!x->timer || event_add(x->timer, &tv) != 0) {
        if (x->timer)
            event_free(x->timer);
        free(x);
        return -1;
    }
    t->trace = x;
    return 0;
}

void api_trace_free(struct api_thread *t)
{
    struct api_trace *x = t->trace;
    if (!x)
        return;
    event_free(x->timer);
    free(x);
    t->trace = NULL;
}

/* ---- the routes ---------------------------------------------------------------- */

/* {"modules":"ups,worker","configured":"off","source":"redis"|"configuration"} */
static void reply_state(struct req *r, const char *source)
{
    char now[96], conf[96];
    unsigned configured = 0;
    trc_parse(r->t->cfg->trace_modules, &configured);
    struct sbuf b;
    sbuf_init(&b);
    sbuf_add(&b, "{", 1);
    api_json_str(&b, "modules", trc_format(trc_mask(), now, sizeof(now)), 1);
    api_json_str(&b, "configured", trc_format(configured, conf, sizeof(conf)), 0);
    api_json_str(&b, "source", source, 0);
    api_json_str(&b, "otlp_export", r->t->cfg->trace_otlp_url[0] ? "on" : "off", 0);
    sbuf_add(&b, "}", 1);
    api_reply_json(r, 200, &b);
    sbuf_cleanup(&b);
}

static void on_get(const struct rds_reply *reply, void *arg)
{
    struct req *r = arg;
    if (!reply || rds_reply_type(reply) == RDS_ERR) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "the switch cannot be read right now; retry", NULL);
    } else {
        if (rds_reply_type(reply) == RDS_STR)
            trc_follow(rds_reply_str(reply, NULL));
        else
            trc_follow(NULL);
        reply_state(r, rds_reply_type(reply) == RDS_STR ? "redis" : "configuration");
    }
    api_req_release(r);
}

void api_h_trace_get(struct req *r)
{
    if (!r->t->rds) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "Redis is not reachable", NULL);
        return;
    }
    const char *argv[] = { "GET", TRC_KEY };
    api_req_hold(r);
    rds_async_cmd(r->t->rds, on_get, r, 2, argv, NULL);
}

static void on_written(const struct rds_reply *reply, void *arg)
{
    struct req *r = arg;
    if (!reply || rds_reply_type(reply) == RDS_ERR) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "the switch cannot be written right now; retry",
                      NULL);
    } else {
        int deleted = rds_reply_type(reply) == RDS_INT;
        trc_follow(deleted ? NULL : r->key_param);
        LOG_INFO("trace.set", "modules=%s by=%s", deleted ? "configured" : r->key_param,
                 r->key ? r->key->name : "-");
        reply_state(r, deleted ? "configuration" : "redis");
    }
    api_req_release(r);
}

/* PUT {"modules":"ups,worker"} (or a list: ["ups","worker"]) */
void api_h_trace_put(struct req *r)
{
    cJSON *root = api_parse_body_or_reply(r);
    if (!root)
        return;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "modules");
    char list[96] = "";
    unsigned mask;
    if (cJSON_IsString(m)) {
        snprintf(list, sizeof(list), "%s", m->valuestring);
    } else if (cJSON_IsArray(m)) {
        const cJSON *it;
        size_t o = 0;
        cJSON_ArrayForEach(it, m)
        {
            if (!cJSON_IsString(it) || o + strlen(it->valuestring) + 2 > sizeof(list)) {
                o = sizeof(list);
                break;
            }
            o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", o ? "," : "",
                                  it->valuestring);
        }
        if (o >= sizeof(list))
            m = NULL;
    }
    if ((!cJSON_IsString(m) && !cJSON_IsArray(m)) || strlen(list) >= sizeof(list) - 1 ||
        trc_parse(list, &mask) != 0) {
        api_reply_err(r, CV_ERR_INVALID,
                      "modules: a list of api, worker, broker, ups, db, or \"all\" or \"off\"",
                      "modules");
        cJSON_Delete(root);
        return;
    }
    cJSON_Delete(root);
    if (!r->t->rds) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "Redis is not reachable", NULL);
        return;
    }
    trc_format(mask, r->key_param, sizeof(r->key_param));
    const char *argv[] = { "SET", TRC_KEY, r->key_param };
    api_req_hold(r);
    rds_async_cmd(r->t->rds, on_written, r, 3, argv, NULL);
}

void api_h_trace_delete(struct req *r)
{
    if (!r->t->rds) {
        api_reply_err(r, CV_ERR_UNAVAILABLE, "Redis is not reachable", NULL);
        return;
    }
    const char *argv[] = { "DEL", TRC_KEY };
    api_req_hold(r);
    rds_async_cmd(r->t->rds, on_written, r, 2, argv, NULL);
}
