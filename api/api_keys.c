/* api_keys.c - API keys stored in PostgreSQL (common/akey.h), per event loop.
 *
 * Each loop keeps its own copy of the api_keys table, read on its own
 * asynchronous connection every AKEY_REFRESH_MS (a failed read is tried again
 * after a longer wait, up to 60 s, so that a missing table or a PostgreSQL
 * outage costs one log line a minute, not one per request). Until the first
 * read succeeds, and whenever PostgreSQL is down, the last copy stays in force:
 * an outage never locks operators out, but a revocation needs one successful
 * read to take effect.
 *
 * A request is checked against the configuration's keys and the stored ones,
 * every hash compared in constant time whichever matches (auth_match on both
 * sets, always both). A name revoked in the table is refused from either set.
 * The copy may be replaced while a request that matched a stored key is still
 * in flight (async calls), so the request gets its own copy of that key
 * (req->key_copy); configuration keys live as long as the process.
 *
 * "Last used": a matched stored key is marked in the copy; the next refresh
 * sends one UPDATE for every key marked since the previous one (never a write
 * per request).
 *
 * Everything here runs on the loop's thread. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "akey.h"
#include "api.h"
#include "auth.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "sbuf.h"

#define RETRY_MAX_MS 60000

struct api_keys {
    struct api_thread *t;
    struct event *timer;
    int loading;                  /* a read is out */
    int failures;                 /* reads failed in a row */
    int loaded;                   /* a read has succeeded once */
    struct cfg_api_key *keys;     /* usable stored keys */
    unsigned char *used;          /* per key: matched since the last touch */
    int n;
    char (*revoked)[64];          /* revoked names */
    int nrevoked;
};

static void arm(struct api_keys *k, int64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(k->timer, &tv);
}

static void on_touched(void *arg, enum cv_rc rc, const struct db_res *res)
{
    (void)arg;
    (void)rc;   /* a failed touch is logged by db.c; last_used_at is best effort */
    (void)res;
}

/* One UPDATE for the keys used since the previous touch. */
static void touch(struct api_keys *k)
{
    struct sbuf names;
    sbuf_init(&names);
    sbuf_add(&names, "{", 1);
    for (int i = 0; i < k->n; i++) {
        if (!k->used[i])
            continue;
        k->used[i] = 0;
        if (names.len > 1)
            sbuf_add(&names, ",", 1);
        sbuf_adds(&names, k->keys[i].name);
    }
    sbuf_add(&names, "}", 1);
    if (names.len > 2) {
        const char *params[] = { names.p };
        db_async_query(k->t->db, akey_sql_touch, 1, params, on_touched, k);
    }
    sbuf_cleanup(&names);
}

/* Replace the copy with the rows of res, carrying the "used" marks over. */
static void swap_in(struct api_keys *k, const struct db_res *res)
{
    int rows = db_res_rows(res), n = 0, nrev = 0;
    struct cfg_api_key *keys = xcalloc((size_t)(rows ? rows : 1), sizeof(*keys));
    unsigned char *used = xcalloc((size_t)(rows ? rows : 1), 1);
    char(*revoked)[64] = xcalloc((size_t)(rows ? rows : 1), sizeof(*revoked));
    for (int i = 0; i < rows; i++) {
        struct cfg_api_key one;
        int got = akey_from_row(res, i, &one);
        if (got == 1) {
            keys[n] = one;
            for (int j = 0; j < k->n; j++)
                if (k->used[j] && strcmp(k->keys[j].name, one.name) == 0)
                    used[n] = 1;
            n++;
        } else if (got == 0) {
            snprintf(revoked[nrev++], sizeof(revoked[0]), "%s", one.name);
        }
    }
    if (!k->loaded || n != k->n || nrev != k->nrevoked)
        LOG_INFO("api.keys_loaded", "thread=%d keys=%d revoked=%d", k->t->idx, n, nrev);
    free(k->keys);
    free(k->used);
    free(k->revoked);
    k->keys = keys;
    k->used = used;
    k->n = n;
    k->revoked = revoked;
    k->nrevoked = nrev;
    k->loaded = 1;
}

static void on_loaded(void *arg, enum cv_rc rc, const struct db_res *res)
{
    struct api_keys *k = arg;
    k->loading = 0;
    if (k->t->closing)
        return;
    if (rc == CV_OK && res) {
        if (k->failures > 0)
            LOG_INFO("api.keys_reloaded", "thread=%d after_failures=%d", k->t->idx,
                     k->failures);
        k->failures = 0;
        swap_in(k, res);
        arm(k, AKEY_REFRESH_MS);
        return;
    }
    /* db.c logged why; say once that the stored keys are stale */
    if (k->failures++ == 0)
        LOG_WARN("api.keys_stale", "thread=%d rc=%s stored_keys=%d msg=\"cannot read api_keys: "
                 "the last copy stays in force\"", k->t->idx, cv_rc_str(rc), k->n);
    int64_t wait = AKEY_REFRESH_MS;
    for (int i = 0; i < k->failures && wait < RETRY_MAX_MS; i++)
        wait *= 2;
    arm(k, wait < RETRY_MAX_MS ? wait : RETRY_MAX_MS);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct api_keys *k = arg;
    (void)fd;
    (void)what;
    if (k->loading || k->t->closing)
        return;
    touch(k);
    k->loading = 1;
    db_async_query(k->t->db, akey_sql_load, 0, NULL, on_loaded, k);
}

int api_keys_init(struct api_thread *t)
{
    if (!t->db)
        return 0;     /* no PostgreSQL: the configuration's keys only */
    struct api_keys *k = xcalloc(1, sizeof(*k));
    k->t = t;
    k->timer = evtimer_new(t->base, on_tick, k);
    if (!k->timer) {
        free(k);
        return -1;
    }
    t->keys = k;
    arm(k, 0);        /* the first read as soon as the loop runs */
    return 0;
}

void api_keys_free(struct api_thread *t)
{
    struct api_keys *k = t->keys;
    if (!k)
        return;
    /* after db_async_free: no callback of ours can run any more */
    event_free(k->timer);
    free(k->keys);
    free(k->used);
    free(k->revoked);
    free(k);
    t->keys = NULL;
}

static int is_revoked(const struct api_keys *k, const char *name)
{
    for (int i = 0; k && i < k->nrevoked; i++)
        if (strcmp(k->revoked[i], name) == 0)
            return 1;
    return 0;
}

enum cv_rc api_keys_check(struct api_thread *t, const char *authorization,
                          struct cfg_api_key *copy, const struct cfg_api_key **key)
{
    unsigned char sha[32];
    *key = NULL;
    if (auth_bearer_sha(authorization, sha) != CV_OK)
        return CV_ERR_AUTH;
    return api_keys_match(t, sha, copy, key);
}

enum cv_rc api_keys_match(struct api_thread *t, const unsigned char sha[32],
                          struct cfg_api_key *copy, const struct cfg_api_key **key)
{
    struct api_keys *k = t->keys;
    *key = NULL;
    /* both sets, always: the time taken does not say which one holds the key */
    const struct cfg_api_key *c = auth_match(t->cfg->api_keys, t->cfg->napi_keys, sha);
    const struct cfg_api_key *s = k ? auth_match(k->keys, k->n, sha) : NULL;
    if (c && !is_revoked(k, c->name)) {
        *key = c;
        return CV_OK;
    }
    if (s && !c) {
        k->used[s - k->keys] = 1;
        *copy = *s;
        *key = copy;
        return CV_OK;
    }
    return CV_ERR_AUTH;
}
