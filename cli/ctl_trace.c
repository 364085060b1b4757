/* ctl_trace.c - `conveyorctl trace`: the tracing switch (common/trc.h).
 *
 *   trace [--json]        the modules traced now, and what the configuration says
 *   trace set MODULES     api, worker, broker, ups, db (comma-separated), all or off:
 *                         every worker within a heartbeat, every API within 2 s
 *   trace reset           back to each process's trace.modules
 *
 * The switch is the Redis key TRC_KEY, as PUT/DELETE /v1/trace write it. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "rds.h"
#include "sbuf.h"
#include "trc.h"

#define RDS_TIMEOUT_MS 5000

static void show(const struct cfg *c, const char *key_value)
{
    unsigned now = 0, conf = 0;
    char a[96], b[96];
    trc_parse(c->trace_modules, &conf);
    if (!key_value || trc_parse(key_value, &now) != 0)
        now = conf;
    trc_format(now, a, sizeof(a));
    trc_format(conf, b, sizeof(b));
    if (ctl_json) {
        struct sbuf j;
        sbuf_init(&j);
        sbuf_adds(&j, "{\"modules\":");
        sbuf_add_json_str(&j, a);
        sbuf_adds(&j, ",\"configured\":");
        sbuf_add_json_str(&j, b);
        sbuf_addf(&j, ",\"source\":\"%s\"}", key_value ? "redis" : "configuration");
        puts(j.p);
        sbuf_cleanup(&j);
    } else {
        printf("traced: %s (%s)\n", a, key_value ? "set at run time" : "as configured");
        if (key_value)
            printf("configured: %s (trace reset goes back to it)\n", b);
    }
}

int ctl_trace(const struct cfg *c, int argc, char **argv)
{
    /* argv[0] is "trace" */
    argc--;
    argv++;
    const char *verb = argc > 0 ? argv[0] : "status";
    unsigned mask = 0;
    char list[96];
    if (strcmp(verb, "set") == 0) {
        if (argc != 2)
            return ctl_usage("trace set MODULES (api, worker, broker, ups, db, all or off)");
        if (trc_parse(argv[1], &mask) != 0)
            return ctl_usage("trace set: unknown module in '%s' (api, worker, broker, ups, db, "
                             "all or off)", argv[1]);
    } else if (strcmp(verb, "reset") == 0 || strcmp(verb, "status") == 0) {
        if (argc > 1)
            return ctl_usage("trace %s takes no argument", verb);
    } else {
        return ctl_usage("trace [status | set MODULES | reset]");
    }
    struct rds *r = rds_connect(c->redis_url, RDS_TIMEOUT_MS);
    if (!r)
        return ctl_failx(CTL_EXIT_UNAVAILABLE, "cannot reach Redis at redis.url");
    int ret = CTL_EXIT_OK;
    struct rds_reply *rep = NULL;
    if (strcmp(verb, "set") == 0) {
        trc_format(mask, list, sizeof(list));
        rep = rds_cmdf(r, "SET %s %s", TRC_KEY, list);
    } else if (strcmp(verb, "reset") == 0) {
        rep = rds_cmdf(r, "DEL %s", TRC_KEY);
    }
    if (strcmp(verb, "status") != 0 && (!rep || rds_reply_type(rep) == RDS_ERR)) {
        ret = ctl_failx(CTL_EXIT_UNAVAILABLE, "Redis refused the switch");
        goto out;
    }
    rds_reply_free(rep);
    rep = rds_cmdf(r, "GET %s", TRC_KEY);
    if (!rep || rds_reply_type(rep) == RDS_ERR) {
        ret = ctl_failx(CTL_EXIT_UNAVAILABLE, "cannot read the switch from Redis");
        goto out;
    }
    show(c, rds_reply_type(rep) == RDS_STR ? rds_reply_str(rep, NULL) : NULL);
out:
    rds_reply_free(rep);
    rds_free(r);
    return ret;
}
