/* wrk_out.c - the worker's upstream pipelines, one per outside system. */
#include <stdlib.h>

#include "car.h"
#include "cfg.h"
#include "log.h"
#include "mem.h"
#include "meli.h"
#include "ups.h"
#include "wrk.h"

struct wrk_out {
    struct ups_conf conf[CFG_UPS_N];
    struct ups *ups[CFG_UPS_N];
    struct ups_log *log;
};

struct wrk_out *wrk_out_new(struct wrk_ctx *ctx)
{
    struct wrk_out *o = xcalloc(1, sizeof(*o));
    if (ctx->db)
        o->log = ups_log_new(ctx->db, 0);
    return o;
}

void wrk_out_free(struct wrk_out *o)
{
    if (!o)
        return;
    for (int i = 0; i < CFG_UPS_N; i++)
        ups_free(o->ups[i]);
    ups_log_free(o->log);
    free(o);
}

/* The credentials of each upstream, and what its hooks get as arg. */
static const struct ups_auth *auth_of(const struct wrk_ctx *ctx, int id, void **arg)
{
    *arg = (void *)ctx->cfg;
    switch (id) {
    case CFG_UPS_MIRAKL: return &ups_auth_header;
    case CFG_UPS_CEX: return &ups_auth_basic;
    case CFG_UPS_MELI: return &meli_auth;
    case CFG_UPS_ACTIVATION:
    case CFG_UPS_NOTIFY: return &ups_auth_none;
    default: break;
    }
    const struct car *car = car_by_ups(id);
    if (!car)
        return &ups_auth_none;
    if (car->auth_arg)
        *arg = (void *)car->auth_arg;
    return car->auth;
}

struct ups *wrk_ups(struct wrk_ctx *ctx, int id)
{
    struct wrk_out *o = ctx->out;
    CV_ASSERT(o && id >= 0 && id < CFG_UPS_N);
    if (!o->ups[id]) {
        void *arg;
        const struct ups_auth *auth = auth_of(ctx, id, &arg);
        ups_conf_from_cfg(&o->conf[id], ctx->cfg, id);
        o->ups[id] = ups_new(&o->conf[id], auth, arg, ctx->rds, ctx->http, o->log);
    }
    return o->ups[id];
}

void wrk_out_flush(struct wrk_ctx *ctx)
{
    if (ctx->out && ctx->out->log && ups_log_flush(ctx->out->log) != CV_OK)
        LOG_WARN("worker.comm_log_unwritten", "will retry with the next batch");
}
