/* ups_breaker.c - a circuit breaker per upstream, shared by all workers in
 * Redis (hash ups:{n}:br, probe lock ups:{n}:br:probe).
 *
 * Closed: every call goes. Outcomes are counted in a tumbling window of
 * breaker_window_s (calls, failures) and as a run of consecutive failures.
 * The circuit opens when the run reaches breaker_failures, or when the window
 * holds breaker_min_calls calls of which at least breaker_rate failed.
 * Open: calls are deferred until opened_at + breaker_open_ms. Then half-open:
 * the first caller to SET NX the probe key (it expires after twice the call
 * timeout, so a crashed prober cannot wedge the circuit) sends one call, all
 * others are deferred. The probe's success closes the circuit (fresh counts);
 * its failure opens it again for breaker_open_ms; a throttled probe gives the
 * probe back. Time is Redis TIME, so workers' clocks do not matter.
 * What fails: NOT_SENT, TRANSIENT, UNKNOWN (the upstream is unreachable or
 * broken). THROTTLED counts for nothing (it is working, just busy). Anything
 * else (2xx, 4xx, body errors) proves the upstream answers: a success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rds.h"
#include "ups_int.h"

#define NOW_MS "local t = redis.call('TIME')\n" \
               "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* KEYS: br, probe. ARGV: open_ms, probe_ttl_ms, owner.
 * Returns {0,0} closed, {1,0} we are the probe, {2,wait} open, {3,wait} probe busy. */
static struct rds_script allow_lua = {
    .name = "ups_breaker_allow",
    .src = NOW_MS
           "if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {0, 0} end\n"
           "local until_ms = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')"
           " + tonumber(ARGV[1])\n"
           "if now < until_ms then return {2, until_ms - now} end\n"
           "if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then return {1, 0} end\n"
           "local pt = redis.call('PTTL', KEYS[2])\n"
           "if pt < 0 then pt = 100 end\n"
           "return {3, pt}\n",
};

/* KEYS: br, probe. ARGV: outcome (s|f|n), probe (1|0), failures, rate, window_ms,
 * min_calls, open_ms, owner. Returns the state after it. */
static struct rds_script record_lua = {
    .name = "ups_breaker_record",
    .src = NOW_MS
           "local o = ARGV[1]\n"
           "local open_ms = tonumber(ARGV[7])\n"
           "local window = tonumber(ARGV[5])\n"
           "local function open()\n"
           "  redis.call('DEL', KEYS[1])\n"
           "  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)\n"
           "  redis.call('PEXPIRE', KEYS[1], open_ms * 10 + 60000)\n"
           "  return 'open'\n"
           "end\n"
           "if ARGV[2] == '1' then\n"
           "  if redis.call('GET', KEYS[2]) == ARGV[8] then redis.call('DEL', KEYS[2]) end\n"
           "  if o == 's' then redis.call('DEL', KEYS[1]) return 'closed' end\n"
           "  if o == 'f' then return open() end\n"
           "  return 'half_open'\n"
           "end\n"
           "if redis.call('HGET', KEYS[1], 'state') == 'open' then return 'open' end\n"
           "if o == 'n' then return 'closed' end\n"
           "local ws = tonumber(redis.call('HGET', KEYS[1], 'w_start') or '0')\n"
           "if now - ws >= window then\n"
           "  redis.call('HSET', KEYS[1], 'w_start', now, 'w_calls', 0, 'w_fail', 0)\n"
           "end\n"
           "local calls = redis.call('HINCRBY', KEYS[1], 'w_calls', 1)\n"
           "local fails = tonumber(redis.call('HGET', KEYS[1], 'w_fail') or '0')\n"
           "local consec = 0\n"
           "if o == 'f' then\n"
           "  fails = redis.call('HINCRBY', KEYS[1], 'w_fail', 1)\n"
           "  consec = redis.call('HINCRBY', KEYS[1], 'consec', 1)\n"
           "else\n"
           "  redis.call('HSET', KEYS[1], 'consec', 0)\n"
           "end\n"
           "local maxf = tonumber(ARGV[3])\n"
           "local rate = tonumber(ARGV[4])\n"
           "if (maxf > 0 and consec >= maxf) or\n"
           "   (rate > 0 and calls >= tonumber(ARGV[6]) and fails / calls >= rate) then\n"
           "  return open()\n"
           "end\n"
           "redis.call('PEXPIRE', KEYS[1], window * 2 + 60000)\n"
           "return 'closed'\n",
};

/* KEYS: br. ARGV: open_ms. Returns closed | open | half_open. */
static struct rds_script state_lua = {
    .name = "ups_breaker_state",
    .src = NOW_MS
           "if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 'closed' end\n"
           "local until_ms = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')"
           " + tonumber(ARGV[1])\n"
           "if now < until_ms then return 'open' end\n"
           "return 'half_open'\n",
};

static const char *const state_names[] = {
    [UPS_BREAKER_CLOSED] = "closed",
    [UPS_BREAKER_OPEN] = "open",
    [UPS_BREAKER_HALF_OPEN] = "half_open",
};

const char *ups_breaker_state_str(enum ups_breaker_state s)
{
    if ((unsigned)s > UPS_BREAKER_HALF_OPEN)
        return "unknown";
    return state_names[s];
}

static void keys(const struct ups *u, char br[160], char probe[160])
{
    ups_key(u, "br", br, 160);
    ups_key(u, "br:probe", probe, 160);
}

enum cv_rc ups_breaker_allow(struct ups *u, int *probe, int64_t *wait_ms)
{
    char br[160], pk[160], open_ms[24], probe_ttl[24];
    enum cv_rc rc = CV_ERR_IO;
    *probe = 0;
    *wait_ms = 0;
    keys(u, br, pk);
    snprintf(open_ms, sizeof(open_ms), "%d", u->conf.breaker_open_ms);
    snprintf(probe_ttl, sizeof(probe_ttl), "%lld", 2LL * u->conf.timeout_ms + 1000);
    const char *argv[] = { br, pk, open_ms, probe_ttl, u->owner };
    struct rds_reply *r = rds_eval(u->rds, &allow_lua, 2, 5, argv, NULL);
    if (!r || rds_reply_type(r) != RDS_ARR) {
        LOG_WARN("ups.breaker_unavailable", "upstream=%s", u->conf.name);
        goto out;
    }
    long long code = rds_reply_at_int(r, 0, 0);
    *wait_ms = rds_reply_at_int(r, 1, 0);
    *probe = code == 1;
    rc = code >= 2 ? CV_ERR_RATE : CV_OK;
    if (code == 1)
        LOG_INFO("ups.breaker_probe", "upstream=%s", u->conf.name);
out:
    rds_reply_free(r);
    return rc;
}

void ups_breaker_record(struct ups *u, enum httpc_class cls, int probe)
{
    char br[160], pk[160], f[16], rate[32], win[24], minc[16], open_ms[24];
    const char *o = "s";
    if (cls == HTTPC_NOT_SENT || cls == HTTPC_TRANSIENT || cls == HTTPC_UNKNOWN)
        o = "f";
    else if (cls == HTTPC_THROTTLED)
        o = "n";
    keys(u, br, pk);
    snprintf(f, sizeof(f), "%d", u->conf.breaker_failures);
    snprintf(rate, sizeof(rate), "%.4f", u->conf.breaker_rate);
    snprintf(win, sizeof(win), "%lld", 1000LL * u->conf.breaker_window_s);
    snprintf(minc, sizeof(minc), "%d", u->conf.breaker_min_calls);
    snprintf(open_ms, sizeof(open_ms), "%d", u->conf.breaker_open_ms);
    const char *argv[] = { br, pk, o, probe ? "1" : "0", f, rate, win, minc, open_ms, u->owner };
    struct rds_reply *r = rds_eval(u->rds, &record_lua, 2, 10, argv, NULL);
    const char *st = r ? rds_reply_str(r, NULL) : NULL;
    if (st && !strcmp(st, "open") && (probe || *o == 'f'))
        LOG_WARN("ups.circuit_open", "upstream=%s probe=%d class=%s", u->conf.name, probe,
                 httpc_class_str(cls));
    else if (st && probe && !strcmp(st, "closed"))
        LOG_INFO("ups.circuit_closed", "upstream=%s", u->conf.name);
    rds_reply_free(r);
}

enum ups_breaker_state ups_breaker_state(struct ups *u)
{
    char br[160], pk[160], open_ms[24];
    enum ups_breaker_state s = UPS_BREAKER_CLOSED;
    keys(u, br, pk);
    snprintf(open_ms, sizeof(open_ms), "%d", u->conf.breaker_open_ms);
    const char *argv[] = { br, open_ms };
    struct rds_reply *r = rds_eval(u->rds, &state_lua, 1, 2, argv, NULL);
    const char *st = r ? rds_reply_str(r, NULL) : NULL;
    if (st && !strcmp(st, "open"))
        s = UPS_BREAKER_OPEN;
    else if (st && !strcmp(st, "half_open"))
        s = UPS_BREAKER_HALF_OPEN;
    rds_reply_free(r);
    return s;
}
