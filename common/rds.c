/* rds.c - hiredis behind our own types. See rds.h.
 *
 * hiredis 0.14 (Debian 12) has no async timeouts and no RESP3: this module
 * adds its own timer for the async side and never sends HELLO. */
#include "rds.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "clock.h"
#include "log.h"
#include "mem.h"

#define MAX_SCRIPTS 32

/* ---- replies ---------------------------------------------------------- */

#define R(x) ((const redisReply *)(x))

enum rds_type rds_reply_type(const struct rds_reply *r)
{
    if (!r)
        return RDS_NIL;
    switch (R(r)->type) {
    case REDIS_REPLY_STRING: return RDS_STR;
    case REDIS_REPLY_ARRAY: return RDS_ARR;
    case REDIS_REPLY_INTEGER: return RDS_INT;
    case REDIS_REPLY_NIL: return RDS_NIL;
    case REDIS_REPLY_STATUS: return RDS_STATUS;
    case REDIS_REPLY_ERROR: return RDS_ERR;
    default: return RDS_OTHER;
    }
}

const char *rds_reply_str(const struct rds_reply *r, size_t *len)
{
    if (!r)
        return NULL;
    int t = R(r)->type;
    if (t != REDIS_REPLY_STRING && t != REDIS_REPLY_STATUS && t != REDIS_REPLY_ERROR)
        return NULL;
    if (len)
        *len = R(r)->len;
    return R(r)->str;
}

long long rds_reply_int(const struct rds_reply *r)
{
    if (!r)
        return 0;
    if (R(r)->type == REDIS_REPLY_INTEGER)
        return R(r)->integer;
    if (R(r)->type == REDIS_REPLY_STRING)
        return strtoll(R(r)->str, NULL, 10);
    return 0;
}

size_t rds_reply_len(const struct rds_reply *r)
{
    return r && R(r)->type == REDIS_REPLY_ARRAY ? R(r)->elements : 0;
}

const struct rds_reply *rds_reply_at(const struct rds_reply *r, size_t i)
{
    if (!r || R(r)->type != REDIS_REPLY_ARRAY || i >= R(r)->elements)
        return NULL;
    return (const struct rds_reply *)R(r)->element[i];
}

const char *rds_reply_at_str(const struct rds_reply *r, size_t i)
{
    return rds_reply_str(rds_reply_at(r, i), NULL);
}

long long rds_reply_at_int(const struct rds_reply *r, size_t i, long long def)
{
    const struct rds_reply *e = rds_reply_at(r, i);
    if (!e || (R(e)->type != REDIS_REPLY_INTEGER && R(e)->type != REDIS_REPLY_STRING))
        return def;
    return rds_reply_int(e);
}

void rds_reply_free(struct rds_reply *r)
{
    if (r)
        freeReplyObject(r);
}

/* ---- URL and scripts ---------------------------------------------------- */

struct rds_url {
    char host[256];
    int port;
    char path[256];     /* unix socket when non-empty */
    char password[256];
    int db;
};

static int parse_url(const char *url, struct rds_url *u)
{
    memset(u, 0, sizeof(*u));
    u->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        snprintf(u->path, sizeof(u->path), "%s", url + 7);
        return u->path[0] ? 0 : -1;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return -1;
    const char *p = url + 8;
    const char *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t n = (size_t)(at - pw);
        if (n >= sizeof(u->password))
            return -1;
        memcpy(u->password, pw, n);
        p = at + 1;
    }
    const char *end = p + strcspn(p, ":/");
    size_t hn = (size_t)(end - p);
    if (hn == 0 || hn >= sizeof(u->host))
        return -1;
    memcpy(u->host, p, hn);
    p = end;
    if (*p == ':') {
        char *e;
        long port = strtol(p + 1, &e, 10);
        if (port < 1 || port > 65535)
            return -1;
        u->port = (int)port;
        p = e;
    }
    if (*p == '/' && p[1]) {
        char *e;
        long db = strtol(p + 1, &e, 10);
        if (db < 0 || db > 1000 || *e)
            return -1;
        u->db = (int)db;
    }
    return 0;
}

/* A script's SHA-1, computed on first use. Scripts are often static and
 * shared by the API's loop threads (api_webhook's rate script, the upstream
 * breaker's): without the lock a second thread could see sha[0] written and
 * the rest not yet, send an EVALSHA with a short SHA, get NOSCRIPT and trip
 * eval_again's check (seen once, in a Kafka chaos run). The lock is taken per
 * eval, uncontended but for that first moment. */
static pthread_mutex_t sha_mu = PTHREAD_MUTEX_INITIALIZER;

static void script_sha(struct rds_script *s)
{
    pthread_mutex_lock(&sha_mu);
    if (!s->sha[0]) {
        unsigned char d[SHA_DIGEST_LENGTH];
        char hex[sizeof(s->sha)];
        SHA1((const unsigned char *)s->src, strlen(s->src), d);
        for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
            snprintf(hex + 2 * i, 3, "%02x", d[i]);
        memcpy(s->sha, hex, sizeof(hex));
    }
    pthread_mutex_unlock(&sha_mu);
}

static int is_noscript(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* ---- sync ------------------------------------------------------------- */

struct rds {
    redisContext *c;
    struct rds_url url;
    int timeout_ms;
    int pending;                          /* appended, not yet read */
    struct rds_script *scripts[MAX_SCRIPTS];
    int nscripts;
};

static int sync_connect(struct rds *r)
{
    struct timeval tv = { r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000 };
    redisContext *c = r->url.path[0] ? redisConnectUnixWithTimeout(r->url.path, tv)
                                     : redisConnectWithTimeout(r->url.host, r->url.port, tv);
    if (!c || c->err) {
        LOG_WARN("redis.connect_failed", "host=%s port=%d err=\"%s\"", r->url.host, r->url.port,
                 c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return -1;
    }
    redisSetTimeout(c, tv);
    redisEnableKeepAlive(c);
    r->c = c;
    r->pending = 0;
    redisReply *rep = NULL;
    if (r->url.password[0]) {
        rep = redisCommand(c, "AUTH %s", r->url.password);
        if (!rep || rep->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(rep);
    }
    if (r->url.db) {
        rep = redisCommand(c, "SELECT %d", r->url.db);
        if (!rep || rep->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(rep);
    }
    for (int i = 0; i < r->nscripts; i++) {
        rep = redisCommand(c, "SCRIPT LOAD %s", r->scripts[i]->src);
        if (!rep || rep->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(rep);
    }
    return 0;
fail:
    LOG_WARN("redis.setup_failed", "err=\"%s\"", rep ? rep->str : c->errstr);
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    r->c = NULL;
    return -1;
}

struct rds *rds_connect(const char *url, int timeout_ms)
{
    struct rds *r = xcalloc(1, sizeof(*r));
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    if (parse_url(url, &r->url)) {
        LOG_ERROR("redis.bad_url", "msg=\"want redis://[:password@]host:port[/db]\"");
        free(r);
        return NULL;
    }
    if (sync_connect(r)) {
        free(r);
        return NULL;
    }
    return r;
}

void rds_free(struct rds *r)
{
    if (!r)
        return;
    if (r->c)
        redisFree(r->c);
    free(r);
}

int rds_ensure(struct rds *r)
{
    if (r->c && !r->c->err)
        return 0;
    if (r->c) {
        redisFree(r->c);
        r->c = NULL;
    }
    return sync_connect(r);
}

static void broken(struct rds *r)
{
    if (r->c) {
        LOG_WARN("redis.io_error", "err=\"%s\"", r->c->errstr);
        redisFree(r->c);
        r->c = NULL;
    }
    r->pending = 0;
}

struct rds_reply *rds_cmd(struct rds *r, int argc, const char **argv, const size_t *lens)
{
    if (rds_ensure(r))
        return NULL;
    CV_ASSERT(r->pending == 0);
    redisReply *rep = redisCommandArgv(r->c, argc, argv, lens);
    if (!rep)
        broken(r);
    return (struct rds_reply *)rep;
}

struct rds_reply *rds_cmdf(struct rds *r, const char *fmt, ...)
{
    if (rds_ensure(r))
        return NULL;
    CV_ASSERT(r->pending == 0);
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(r->c, fmt, ap);
    va_end(ap);
    if (!rep)
        broken(r);
    return (struct rds_reply *)rep;
}

int rds_append(struct rds *r, int argc, const char **argv, const size_t *lens)
{
    if (r->pending == 0 && rds_ensure(r))
        return -1;
    if (!r->c || redisAppendCommandArgv(r->c, argc, argv, lens) != REDIS_OK)
        return -1;
    r->pending++;
    return 0;
}

int rds_appendf(struct rds *r, const char *fmt, ...)
{
    if (r->pending == 0 && rds_ensure(r))
        return -1;
    if (!r->c)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAppendCommand(r->c, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK)
        return -1;
    r->pending++;
    return 0;
}

struct rds_reply *rds_read(struct rds *r)
{
    if (!r->c || r->pending <= 0)
        return NULL;
    void *rep = NULL;
    if (redisGetReply(r->c, &rep) != REDIS_OK || !rep) {
        broken(r);
        return NULL;
    }
    r->pending--;
    return rep;
}

static int eval_argv(struct rds_script *s, const char *first, int nkeys, int argc,
                     const char **argv, const size_t *lens, const char ***oargv, size_t **olens)
{
    int n = argc + 3;
    const char **av = xmalloc(sizeof(*av) * (size_t)n);
    size_t *al = xmalloc(sizeof(*al) * (size_t)n);
    static __thread char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    av[0] = first;
    al[0] = strlen(first);
    av[1] = strcmp(first, "EVAL") == 0 ? s->src : s->sha;
    al[1] = strlen(av[1]);
    av[2] = nk;
    al[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        av[i + 3] = argv[i];
        al[i + 3] = lens ? lens[i] : strlen(argv[i]);
    }
    *oargv = av;
    *olens = al;
    return n;
}

int rds_script_load(struct rds *r, struct rds_script *s)
{
    script_sha(s);
    int known = 0;
    for (int i = 0; i < r->nscripts; i++)
        known |= r->scripts[i] == s;
    if (!known) {
        CV_ASSERT(r->nscripts < MAX_SCRIPTS);
        r->scripts[r->nscripts++] = s;
    }
    struct rds_reply *rep = rds_cmdf(r, "SCRIPT LOAD %s", s->src);
    int ok = rep && rds_reply_type(rep) == RDS_STR;
    if (rep && !ok)
        LOG_ERROR("redis.script_load_failed", "script=%s err=\"%s\"", s->name,
                  rds_reply_str(rep, NULL));
    rds_reply_free(rep);
    return ok ? 0 : -1;
}

struct rds_reply *rds_eval(struct rds *r, struct rds_script *s, int nkeys, int argc,
                           const char **argv, const size_t *lens)
{
    script_sha(s);
    const char **av;
    size_t *al;
    int n = eval_argv(s, "EVALSHA", nkeys, argc, argv, lens, &av, &al);
    struct rds_reply *rep = rds_cmd(r, n, av, al);
    if (is_noscript(R(rep))) {
        rds_reply_free(rep);
        av[0] = "EVAL";
        al[0] = 4;
        av[1] = s->src;
        al[1] = strlen(s->src);
        rep = rds_cmd(r, n, av, al);
    }
    free(av);
    free(al);
    return rep;
}

int rds_append_eval(struct rds *r, struct rds_script *s, int nkeys, int argc, const char **argv,
                    const size_t *lens)
{
    script_sha(s);
    const char **av;
    size_t *al;
    int n = eval_argv(s, "EVALSHA", nkeys, argc, argv, lens, &av, &al);
    int rc = rds_append(r, n, av, al);
    free(av);
    free(al);
    return rc;
}

/* ---- async ------------------------------------------------------------ */

struct acmd {
    struct rds_async *a;
    rds_cb cb;
    void *arg;
    int64_t sent_us;
    struct acmd *next;        /* FIFO of commands in flight, for the timeout */
    struct rds_script *script; /* an EVALSHA that may still fall back to EVAL */
    char *cmd;                /* that EVALSHA as sent (RESP), until its reply */
    int cmd_len;
};

struct rds_async {
    struct event_base *base;
    redisAsyncContext *ac;
    struct rds_url url;
    int timeout_ms;
    int connected;
    int backoff_ms;
    struct event *reconnect_ev;
    struct event *tick_ev;
    struct acmd *head, *tail; /* in flight, oldest first */
    struct rds_script *scripts[MAX_SCRIPTS];
    int nscripts;
    int freeing;
    int64_t noscript_logged_ms; /* the last redis.noscript line (one a second at most) */
};

static void async_start(struct rds_async *a);

static void acmd_unlink(struct rds_async *a, struct acmd *c)
{
    /* replies arrive in order, so c is almost always the head */
    struct acmd **pp = &a->head, *prev = NULL;
    while (*pp && *pp != c) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = c->next;
    if (a->tail == c)
        a->tail = prev;
}

static void acmd_free(struct acmd *c)
{
    if (c->cmd)
        redisFreeCommand(c->cmd);
    free(c);
}

static void acmd_push(struct rds_async *a, struct acmd *c)
{
    c->sent_us = clock_mono_us();
    c->next = NULL;
    if (a->tail)
        a->tail->next = c;
    else
        a->head = c;
    a->tail = c;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* The prefix of an EVALSHA as redisFormatCommandArgv writes it, after the
 * "*<argc>\r\n" header: the command name and the 40-digit SHA. */
#define EVALSHA_HEAD "$7\r\nEVALSHA\r\n$40\r\n"
#define EVALSHA_HEAD_LEN (sizeof(EVALSHA_HEAD) - 1 + 40 + 2)

/* Redis answered NOSCRIPT to c's EVALSHA (SCRIPT FLUSH, a restart, a proxy
 * that switched servers): send the same command as EVAL with the script's
 * source, with c as its callback data again, so the caller's callback runs
 * once, on the EVAL's reply. The EVAL is built from the EVALSHA as sent: the
 * name and SHA are swapped for "EVAL" and the source, the arguments are kept
 * byte for byte. EVAL also puts the script back in Redis's cache, so the
 * EVALSHAs that follow succeed again.
 *
 * Order: the EVAL goes to the end of the pipeline, so commands sent after
 * the EVALSHA run before it. Callers already wait for a reply before they
 * depend on a script's effect; EVALSHAs that hit the same flush are resent in
 * the order their replies came, i.e. the order they were sent.
 *
 * Returns 1 when the EVAL is on its way, 0 when it could not be sent (the
 * caller then gets the NOSCRIPT error). */
static int eval_again(struct rds_async *a, struct acmd *c)
{
    struct rds_script *s = c->script;
    c->script = NULL;                       /* once: EVAL never answers NOSCRIPT */
    const char *hdr_end = memchr(c->cmd, '\n', (size_t)c->cmd_len);
    CV_ASSERT(hdr_end);
    size_t hdr = (size_t)(hdr_end + 1 - c->cmd);
    CV_ASSERT(hdr + EVALSHA_HEAD_LEN <= (size_t)c->cmd_len &&
              memcmp(c->cmd + hdr, EVALSHA_HEAD, sizeof(EVALSHA_HEAD) - 1) == 0);
    const char *rest = c->cmd + hdr + EVALSHA_HEAD_LEN;
    size_t rest_len = (size_t)c->cmd_len - hdr - EVALSHA_HEAD_LEN;
    size_t src_len = strlen(s->src);
    char src_hdr[32];
    int sh = snprintf(src_hdr, sizeof(src_hdr), "$4\r\nEVAL\r\n$%zu\r\n", src_len);
    size_t len = hdr + (size_t)sh + src_len + 2 + rest_len;
    char *eval = xmalloc(len);
    char *p = eval;
    memcpy(p, c->cmd, hdr);
    p += hdr;
    memcpy(p, src_hdr, (size_t)sh);
    p += sh;
    memcpy(p, s->src, src_len);
    p += src_len;
    memcpy(p, "\r\n", 2);
    p += 2;
    memcpy(p, rest, rest_len);
    redisFreeCommand(c->cmd);
    c->cmd = NULL;
    int ok = 0;
    if (a->ac && !a->freeing) {
        acmd_push(a, c);
        ok = redisAsyncFormattedCommand(a->ac, on_reply, c, eval, len) == REDIS_OK;
        if (!ok)
            acmd_unlink(a, c);
    }
    free(eval);
    int64_t now = clock_mono_ms();
    if (ok && now - a->noscript_logged_ms >= 1000) {
        a->noscript_logged_ms = now;
        LOG_WARN("redis.noscript", "script=%s msg=\"script cache was empty: sent EVAL\"",
                 s->name ? s->name : "");
    }
    return ok;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct acmd *c = priv;
    struct rds_async *a = c->a;
    acmd_unlink(a, c);
    if (c->script && is_noscript(reply) && eval_again(a, c))
        return;                 /* c is in flight again: its callback runs on the EVAL */
    if (c->cb)
        c->cb((const struct rds_reply *)reply, c->arg);
    acmd_free(c);
}

static void on_script_loaded(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    (void)priv;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ERROR)
        LOG_ERROR("redis.script_load_failed", "err=\"%s\"", r->str);
}

static void schedule_reconnect(struct rds_async *a)
{
    if (a->freeing)
        return;
    a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : 50;
    if (a->backoff_ms > 2000)
        a->backoff_ms = 2000;
    struct timeval tv = { a->backoff_ms / 1000, (a->backoff_ms % 1000) * 1000 };
    evtimer_add(a->reconnect_ev, &tv);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rds_async *a = ac->data;
    if (status != REDIS_OK) {
        LOG_WARN("redis.connect_failed", "host=%s port=%d err=\"%s\"", a->url.host, a->url.port,
                 ac->errstr);
        a->ac = NULL; /* hiredis frees the context after this callback */
        a->connected = 0;
        schedule_reconnect(a);
        return;
    }
    a->connected = 1;
    a->backoff_ms = 0;
    LOG_INFO("redis.connected", "host=%s port=%d", a->url.host, a->url.port);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rds_async *a = ac->data;
    (void)status;
    a->ac = NULL;
    a->connected = 0;
    if (!a->freeing) {
        LOG_WARN("redis.disconnected", "host=%s port=%d", a->url.host, a->url.port);
        schedule_reconnect(a);
    }
}

static void async_start(struct rds_async *a)
{
    redisAsyncContext *ac = a->url.path[0] ? redisAsyncConnectUnix(a->url.path)
                                           : redisAsyncConnect(a->url.host, a->url.port);
    if (!ac || ac->err) {
        LOG_WARN("redis.connect_failed", "host=%s port=%d err=\"%s\"", a->url.host, a->url.port,
                 ac ? ac->errstr : "oom");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(a);
        return;
    }
    ac->data = a;
    a->ac = ac;
    redisLibeventAttach(ac, a->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* These are written first when the socket connects, ahead of any command. */
    if (a->url.password[0])
        redisAsyncCommand(ac, on_script_loaded, NULL, "AUTH %s", a->url.password);
    if (a->url.db)
        redisAsyncCommand(ac, on_script_loaded, NULL, "SELECT %d", a->url.db);
    for (int i = 0; i < a->nscripts; i++)
        redisAsyncCommand(ac, on_script_loaded, NULL, "SCRIPT LOAD %s", a->scripts[i]->src);
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_start(arg);
}

/* The timeout hiredis 0.14 lacks: when the oldest command in flight is older
 * than timeout_ms, drop the link; hiredis then fails every callback. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rds_async *a = arg;
    if (a->ac && a->head && clock_mono_us() - a->head->sent_us > (int64_t)a->timeout_ms * 1000) {
        /* A hard close: redisAsyncDisconnect would wait for the replies that
         * are late. Freeing fails every command in flight now (callbacks get
         * NULL) and we reconnect. */
        LOG_WARN("redis.timeout", "timeout_ms=%d", a->timeout_ms);
        redisAsyncContext *ac = a->ac;
        a->ac = NULL;
        a->connected = 0;
        redisAsyncFree(ac);
        if (!evtimer_pending(a->reconnect_ev, NULL))
            schedule_reconnect(a);
    }
}

struct rds_async *rds_async_new(struct event_base *base, const char *url, int timeout_ms)
{
    struct rds_async *a = xcalloc(1, sizeof(*a));
    a->base = base;
    a->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    if (parse_url(url, &a->url)) {
        LOG_ERROR("redis.bad_url", "msg=\"want redis://[:password@]host:port[/db]\"");
        free(a);
        return NULL;
    }
    a->reconnect_ev = evtimer_new(base, on_reconnect, a);
    a->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, a);
    struct timeval tv = { 0, 100000 };
    evtimer_add(a->tick_ev, &tv);
    async_start(a);
    return a;
}

void rds_async_free(struct rds_async *a)
{
    if (!a)
        return;
    a->freeing = 1;
    if (a->ac)
        redisAsyncFree(a->ac); /* runs pending callbacks with NULL */
    event_free(a->reconnect_ev);
    event_free(a->tick_ev);
    free(a);
}

int rds_async_connected(const struct rds_async *a)
{
    return a && a->connected;
}

static struct acmd *acmd_new(struct rds_async *a, rds_cb cb, void *arg)
{
    struct acmd *c = xcalloc(1, sizeof(*c));
    c->a = a;
    c->cb = cb;
    c->arg = arg;
    acmd_push(a, c);
    return c;
}

void rds_async_cmd(struct rds_async *a, rds_cb cb, void *arg, int argc, const char **argv,
                   const size_t *lens)
{
    if (!a->ac || !a->connected) {
        cb(NULL, arg);
        return;
    }
    struct acmd *c = acmd_new(a, cb, arg);
    if (redisAsyncCommandArgv(a->ac, on_reply, c, argc, argv, lens) != REDIS_OK) {
        acmd_unlink(a, c);
        acmd_free(c);
        cb(NULL, arg);
    }
}

void rds_async_eval(struct rds_async *a, struct rds_script *s, rds_cb cb, void *arg, int nkeys,
                    int argc, const char **argv, const size_t *lens)
{
    script_sha(s);
    int known = 0;
    for (int i = 0; i < a->nscripts; i++)
        known |= a->scripts[i] == s;
    if (!known) {
        CV_ASSERT(a->nscripts < MAX_SCRIPTS);
        a->scripts[a->nscripts++] = s;
        if (a->ac && a->connected)
            redisAsyncCommand(a->ac, on_script_loaded, NULL, "SCRIPT LOAD %s", s->src);
    }
    if (!a->ac || !a->connected) {
        cb(NULL, arg);
        return;
    }
    const char **av;
    size_t *al;
    int n = eval_argv(s, "EVALSHA", nkeys, argc, argv, lens, &av, &al);
    /* Formatted here rather than by redisAsyncCommandArgv (which formats and
     * frees): the text is kept until the reply, for eval_again(). */
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, n, av, al);
    free(av);
    free(al);
    CV_ASSERT(len > 0 && cmd);
    struct acmd *c = acmd_new(a, cb, arg);
    c->script = s;
    c->cmd = cmd;
    c->cmd_len = len;
    if (redisAsyncFormattedCommand(a->ac, on_reply, c, cmd, (size_t)len) != REDIS_OK) {
        acmd_unlink(a, c);
        acmd_free(c);
        cb(NULL, arg);
    }
}

/* ---- either mode ------------------------------------------------------ */

void rds_either_cmd(struct rds *sync, struct rds_async *as, rds_cb cb, void *arg, int argc,
                    const char **argv, const size_t *lens)
{
    if (sync) {
        struct rds_reply *r = rds_cmd(sync, argc, argv, lens);
        cb(r, arg);
        rds_reply_free(r);
    } else {
        rds_async_cmd(as, cb, arg, argc, argv, lens);
    }
}

void rds_either_eval(struct rds *sync, struct rds_async *as, struct rds_script *s, rds_cb cb,
                     void *arg, int argc, const char **argv, const size_t *lens)
{
    if (sync) {
        struct rds_reply *r = rds_eval(sync, s, 0, argc, argv, lens);
        cb(r, arg);
        rds_reply_free(r);
    } else {
        rds_async_eval(as, s, cb, arg, 0, argc, argv, lens);
    }
}

/* The event keeps the name it had in rstream.c, where it began: alerts count it. */
const char *rds_reply_hash_get(const struct rds_reply *h, const char *k)
{
    size_t n = rds_reply_len(h);
    for (size_t i = 0; i + 1 < n; i += 2) {
        const char *f = rds_reply_at_str(h, i);
        if (f && strcmp(f, k) == 0)
            return rds_reply_at_str(h, i + 1);
    }
    return NULL;
}

void rds_reply_hash_pairs(const struct rds_reply *h, const char ***fields, const char ***values,
                          size_t *n)
{
    size_t k = rds_reply_len(h) / 2;
    *fields = k ? xcalloc(k, sizeof(**fields)) : NULL;
    *values = k ? xcalloc(k, sizeof(**values)) : NULL;
    for (size_t i = 0; i < k; i++) {
        (*fields)[i] = rds_reply_at_str(h, 2 * i);
        (*values)[i] = rds_reply_at_str(h, 2 * i + 1);
    }
    *n = k;
}

enum cv_rc rds_reply_rc(const struct rds_reply *r, const char *op)
{
    if (!r)
        return CV_ERR_IO;
    if (rds_reply_type(r) == RDS_ERR) {
        const char *e = rds_reply_str(r, NULL);
        if (e && !strncmp(e, "OOM ", 4)) {
            /* maxmemory reached: Redis refused the command (a script before it
             * ran), so nothing was written; the caller may say "later" */
            LOG_WARN("redis.full", "op=%s", op);
            return CV_ERR_BUSY;
        }
        LOG_ERROR("broker.redis_error", "op=%s err=\"%.200s\"", op, e);
        return CV_ERR_IO;
    }
    return CV_OK;
}

enum cv_rc rds_eval_int(struct rds *r, struct rds_script *s, int argc, const char **argv,
                        const char *op, long long *out)
{
    struct rds_reply *rep = rds_eval(r, s, 0, argc, argv, NULL);
    enum cv_rc rc = rds_reply_rc(rep, op);
    if (out)
        *out = rc == CV_OK ? rds_reply_int(rep) : 0;
    rds_reply_free(rep);
    return rc;
}
