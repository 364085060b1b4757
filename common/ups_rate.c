/* ups_rate.c - one rate limit per upstream shared by every worker process:
 * GCRA (the generic cell rate algorithm) in one Lua script on Redis TIME.
 *
 * State is one number, the theoretical arrival time (TAT) of the next call, in
 * ms (ups:{n}:rate). With interval I = 60000 / rate_per_min and burst b, a call
 * arriving at now may go at max(TAT - (b-1)*I, now). When that is at most
 * max_wait_ms away the slot is reserved (TAT += I) and the caller sleeps until
 * it; further away, nothing is reserved and the caller defers the call by the
 * wait. Reserving before sleeping means two workers never sleep for one slot. */
#include <stdio.h>

#include "log.h"
#include "rds.h"
#include "ups_int.h"

/* KEYS: rate. ARGV: interval_ms (may be fractional), burst, max_wait_ms.
 * Returns {1, wait} reserved or {0, wait} not. */
static struct rds_script gcra_lua = {
    .name = "ups_rate_gcra",
    .src = "local t = redis.call('TIME')\n"
           "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
           "local interval = tonumber(ARGV[1])\n"
           "local tol = interval * (tonumber(ARGV[2]) - 1)\n"
           "local tat = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
           "if tat < now then tat = now end\n"
           "local wait = math.ceil(tat - tol - now)\n"
           "if wait < 0 then wait = 0 end\n"
           "if wait > tonumber(ARGV[3]) then return {0, wait} end\n"
           "local new_tat = tat + interval\n"
           "redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX',"
           " math.ceil(new_tat - now) + 1000)\n"
           "return {1, wait}\n",
};

int ups_rate_take(struct ups *u, int64_t max_wait_ms, int64_t *wait_ms)
{
    char key[160], interval[32], burst[16], maxw[24];
    int got = -1;
    *wait_ms = 0;
    if (u->conf.rate_per_min <= 0)
        return 1;
    ups_key(u, "rate", key, sizeof(key));
    snprintf(interval, sizeof(interval), "%.3f", 60000.0 / u->conf.rate_per_min);
    snprintf(burst, sizeof(burst), "%d", u->conf.rate_burst > 0 ? u->conf.rate_burst : 1);
    snprintf(maxw, sizeof(maxw), "%lld", (long long)max_wait_ms);
    const char *argv[] = { key, interval, burst, maxw };
    struct rds_reply *r = rds_eval(u->rds, &gcra_lua, 1, 4, argv, NULL);
    if (r && rds_reply_type(r) == RDS_ARR) {
        got = (int)rds_reply_at_int(r, 0, 0);
        *wait_ms = rds_reply_at_int(r, 1, 0);
    } else {
        LOG_WARN("ups.rate_unavailable", "upstream=%s", u->conf.name);
    }
    rds_reply_free(r);
    return got;
}
