/* ups_notify.c - error notification (seed 000): a Slack-compatible webhook,
 * rate-limited across all workers by a per-minute counter in Redis. */
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "log.h"
#include "rds.h"
#include "sbuf.h"
#include "ups.h"

#define NOTIFY_TIMEOUT_MS 2000

int ups_notify_failure(struct rds *rds, struct httpc *http, const struct ups_conf *conf,
                       int per_min, const char *text)
{
    char key[64];
    int sent = 0;
    struct sbuf body;
    if (!conf || !conf->url || !conf->url[0] || per_min <= 0)
        return 0;
    snprintf(key, sizeof(key), "ups:notify:%lld", (long long)(clock_wall_ms() / 60000));
    struct rds_reply *r = rds_cmdf(rds, "INCR %s", key);
    long long n = r && rds_reply_type(r) == RDS_INT ? rds_reply_int(r) : -1;
    rds_reply_free(r);
    if (n == 1)
        rds_reply_free(rds_cmdf(rds, "EXPIRE %s 120", key));
    if (n < 0 || n > per_min) {
        LOG_INFO("ups.notify_skipped", "reason=%s", n < 0 ? "redis" : "budget");
        return 0;
    }
    sbuf_init(&body);
    sbuf_adds(&body, "{\"text\":");
    sbuf_add_json_str(&body, text ? text : "");
    sbuf_adds(&body, "}");
    int timeout = conf->timeout_ms > 0 && conf->timeout_ms < NOTIFY_TIMEOUT_MS ? conf->timeout_ms
                                                                                : NOTIFY_TIMEOUT_MS;
    struct httpc_req q = {
        .method = "POST", .url = conf->url, .body = body.p, .body_len = body.len,
        .timeout_ms = timeout,
    };
    httpc_run(http, &q, 1, timeout);
    sent = q.cls == HTTPC_OK;
    if (!sent)
        LOG_WARN("ups.notify_failed", "class=%s status=%d", httpc_class_str(q.cls), q.status);
    httpc_req_cleanup(&q);
    sbuf_cleanup(&body);
    return sent;
}
