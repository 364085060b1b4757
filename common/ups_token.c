/* ups_token.c - an upstream's token or session, cached in Redis for all
 * workers, refreshed by one of them at a time.
 *
 * Two copies: ups:{n}:tok expires a margin (a fifth of the lifetime, at most a
 * minute) before the token does, ups:{n}:tok:stale when it really expires.
 * When tok is gone one worker wins the lock (SET NX PX) and fetches; the
 * others go on with the stale copy while it lasts, or, when there is none
 * (first start, or it was refused with a 401), poll for the new one. The lock
 * expires by itself (twice the upstream timeout) when its holder dies, and a
 * waiter that sees it gone without a token takes it over. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "rds.h"
#include "ups_int.h"

/* Delete KEYS[1] only while it still holds ARGV[1] (our lock, the token we saw). */
static struct rds_script del_if_same = {
    .name = "ups_del_if_same",
    .src = "for i, k in ipairs(KEYS) do\n"
           "  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end\n"
           "end\n"
           "return 0\n",
};

/* GET key into a malloc'd string; NULL when absent. *io = 1 on a Redis error. */
static char *get_str(struct ups *u, const char *key, int *io)
{
    char *v = NULL;
    struct rds_reply *r = rds_cmdf(u->rds, "GET %s", key);
    if (!r)
        *io = 1;
    else if (rds_reply_type(r) == RDS_STR)
        v = xstrdup(rds_reply_str(r, NULL));
    rds_reply_free(r);
    return v;
}

static void sleep_poll(void)
{
    struct timespec ts = { 0, UPS_POLL_MS * 1000000L };
    nanosleep(&ts, NULL);
}

/* We hold the lock: fetch, store both copies, let go of the lock. */
static enum cv_rc refresh(struct ups *u, const char *tok_key, const char *stale_key,
                          const char *lock_key, char **token, char *err, size_t err_len)
{
    int64_t ttl_ms = 0;
    char *t = NULL;
    enum cv_rc rc = u->auth->fetch_token(u, u->auth_arg, &t, &ttl_ms, err, err_len);
    if (rc == CV_OK) {
        int64_t margin = ttl_ms / 5 < 60000 ? ttl_ms / 5 : 60000;
        long long fresh_ms = ttl_ms - margin > 0 ? ttl_ms - margin : 1;
        rds_appendf(u->rds, "SET %s %s PX %lld", tok_key, t, fresh_ms);
        rds_appendf(u->rds, "SET %s %s PX %lld", stale_key, t, (long long)ttl_ms);
        for (int i = 0; i < 2; i++)
            rds_reply_free(rds_read(u->rds));
        LOG_INFO("ups.token_refreshed", "upstream=%s ttl_ms=%lld", u->conf.name,
                 (long long)ttl_ms);
        *token = t;
    } else {
        LOG_WARN("ups.token_fetch_failed", "upstream=%s rc=%s", u->conf.name, cv_rc_str(rc));
    }
    const char *argv[] = { lock_key, u->owner };
    rds_reply_free(rds_eval(u->rds, &del_if_same, 1, 2, argv, NULL));
    return rc;
}

enum cv_rc ups_token_get(struct ups *u, char **token, char *err, size_t err_len)
{
    char tok_key[160], stale_key[160], lock_key[160];
    int io = 0;
    enum cv_rc rc = CV_ERR_TRANSIENT;
    int64_t deadline = clock_mono_ms() + 2LL * u->conf.timeout_ms + 1000;
    ups_key(u, "tok", tok_key, sizeof(tok_key));
    ups_key(u, "tok:stale", stale_key, sizeof(stale_key));
    ups_key(u, "tok:lock", lock_key, sizeof(lock_key));
    *token = NULL;
    err[0] = '\0';
    int used_stale = 0;
    while (!io && clock_mono_ms() < deadline) {
        *token = get_str(u, tok_key, &io);
        if (*token || io)
            break;
        struct rds_reply *r = rds_cmdf(u->rds, "SET %s %s NX PX %lld", lock_key, u->owner,
                                       2LL * u->conf.timeout_ms + 1000);
        int won = r && rds_reply_type(r) == RDS_STATUS;
        io = !r;
        rds_reply_free(r);
        if (won)
            return refresh(u, tok_key, stale_key, lock_key, token, err, err_len);
        if (!io && !used_stale) {
            /* another worker refreshes: the old token is still good until it expires */
            *token = get_str(u, stale_key, &io);
            if (*token)
                break;
            used_stale = 1; /* none: wait for the new one */
        }
        if (!io)
            sleep_poll();
    }
    if (*token)
        return CV_OK;
    if (io) {
        rc = CV_ERR_IO;
        snprintf(err, err_len, "token cache: redis unavailable");
    } else {
        snprintf(err, err_len, "token refresh by another worker did not finish in time");
    }
    return rc;
}

void ups_token_drop(struct ups *u, const char *token)
{
    char tok_key[160], stale_key[160];
    if (!token)
        return;
    ups_key(u, "tok", tok_key, sizeof(tok_key));
    ups_key(u, "tok:stale", stale_key, sizeof(stale_key));
    const char *argv[] = { tok_key, stale_key, token };
    rds_reply_free(rds_eval(u->rds, &del_if_same, 2, 3, argv, NULL));
    LOG_INFO("ups.token_dropped", "upstream=%s", u->conf.name);
}
