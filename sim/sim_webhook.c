#include "sim_webhook.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "sim_faults.h"
#include "sim_http.h"
#include "sim_ship.h"
#include "uuid.h"

#define SECRET_PREFIX "whsec_"
#define FIRST_RETRY_MS 500

/* One message to send, with its timer. Owned by the sender's list from
 * queueing until it is delivered, given up, or the sender is reset or freed.
 * While a POST is in flight evhttp holds a pointer to it (the request's
 * callback argument); reset and free close the connections first, which
 * frees those requests without calling back, and only then free messages. */
struct wh_msg {
    struct wh_msg *prev, *next;
    struct sim_webhook *w;
    struct event *timer;
    char id[48];                         /* msg_<uuid> */
    char *path;
    char *body;
    size_t len;
    unsigned sign : 1, bad_signature : 1, stale : 1, inflight : 1;
    int attempt;                         /* attempts started */
};

struct sim_webhook {
    struct event_base *base;
    struct sim_rng *rng;
    char host[256];
    int port;
    char path[512];                      /* the base URL's path, no trailing slash */
    unsigned char key[SIM_WH_KEY_MAX];
    size_t keylen;
    struct evhttp_connection *conns[SIM_WH_CONNS];
    unsigned next_conn;
    struct wh_msg *head;                 /* doubly linked, not circular */
    size_t queued;
    struct sim_wh_stats stats;
};

/* ---- low level ---------------------------------------------------------------- */

static void msg_unlink_free(struct wh_msg *m)
{
    struct sim_webhook *w = m->w;
    if (m->prev)
        m->prev->next = m->next;
    else
        w->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    w->queued--;
    event_free(m->timer);
    free(m->path);
    free(m->body);
    free(m);
}

static void on_timer(evutil_socket_t fd, short what, void *arg);

static struct wh_msg *msg_new(struct sim_webhook *w, const char *path, char *body, int sign)
{
    struct wh_msg *m = xcalloc(1, sizeof(*m));
    char uuid[UUID_STR_LEN];
    uuid_v4(uuid);
    snprintf(m->id, sizeof(m->id), "msg_%s", uuid);
    m->w = w;
    m->path = xasprintf("%s%s", w->path, path);
    m->body = body;
    m->len = strlen(body);
    m->sign = sign ? 1 : 0;
    m->timer = evtimer_new(w->base, on_timer, m);
    CV_ASSERT(m->timer);
    m->next = w->head;
    if (w->head)
        w->head->prev = m;
    w->head = m;
    w->queued++;
    w->stats.scheduled++;
    return m;
}

static void msg_at(struct wh_msg *m, int64_t delay_ms)
{
    if (delay_ms < 0)
        delay_ms = 0;
    struct timeval tv = { (time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000 };
    int r = evtimer_add(m->timer, &tv);
    CV_ASSERT(r == 0);
}

/* The three signature headers of one attempt. */
static void sign_headers(struct sim_webhook *w, struct wh_msg *m, struct evkeyvalq *h)
{
    char ts[24], sig[8 + AUTH_B64_LEN(32) + 1];
    unsigned char mac[32];
    long long now_s = (long long)(clock_wall_ms() / 1000);
    if (m->stale)
        now_s -= SIM_WH_STALE_S;
    snprintf(ts, sizeof(ts), "%lld", now_s);
    /* HMAC over "<id>.<timestamp>.<body>": fed as one buffer, built here */
    size_t idl = strlen(m->id), tsl = strlen(ts);
    char *signed_text = xmalloc(idl + tsl + m->len + 3);
    memcpy(signed_text, m->id, idl);
    signed_text[idl] = '.';
    memcpy(signed_text + idl + 1, ts, tsl);
    signed_text[idl + 1 + tsl] = '.';
    memcpy(signed_text + idl + 2 + tsl, m->body, m->len);
    auth_hmac_sha256(w->key, w->keylen, signed_text, idl + tsl + m->len + 2, mac);
    free(signed_text);
    if (m->bad_signature)
        mac[0] ^= 0x5a;                  /* well-formed, wrong */
    memcpy(sig, "v1,", 3);
    auth_b64_encode(mac, sizeof(mac), sig + 3);
    evhttp_add_header(h, "webhook-id", m->id);
    evhttp_add_header(h, "webhook-timestamp", ts);
    evhttp_add_header(h, "webhook-signature", sig);
}

static struct evhttp_connection *conn_of(struct sim_webhook *w)
{
    unsigned i = w->next_conn++ % SIM_WH_CONNS;
    if (!w->conns[i]) {
        w->conns[i] = evhttp_connection_base_new(w->base, NULL, w->host, (unsigned short)w->port);
        CV_ASSERT(w->conns[i]);
        evhttp_connection_set_timeout(w->conns[i], SIM_WH_TIMEOUT_S);
        evhttp_connection_set_retries(w->conns[i], 0);
    }
    return w->conns[i];
}

/* ---- sending ----------------------------------------------------------------------- */

/* evhttp calls this once per POST: req is NULL when the connection failed.
 * evhttp frees req after we return. */
static void on_reply(struct evhttp_request *req, void *arg)
{
    struct wh_msg *m = arg;
    struct sim_webhook *w = m->w;
    int status = req ? evhttp_request_get_response_code(req) : 0;
    char pbuf[LOG_STR_MAX];
    m->inflight = 0;
    if (status >= 200 && status < 300) {
        w->stats.delivered++;
        LOG_DEBUG("sim.webhook_delivered", "id=%s path=%s status=%d attempt=%d", m->id,
                  log_str(pbuf, m->path), status, m->attempt);
        msg_unlink_free(m);
        return;
    }
    if (m->attempt >= SIM_WH_ATTEMPTS) {
        w->stats.failed++;
        LOG_WARN("sim.webhook_failed", "id=%s path=%s status=%d attempts=%d", m->id,
                 log_str(pbuf, m->path), status, m->attempt);
        msg_unlink_free(m);
        return;
    }
    w->stats.retries++;
    LOG_INFO("sim.webhook_retry", "id=%s path=%s status=%d attempt=%d", m->id,
             log_str(pbuf, m->path), status, m->attempt);
    msg_at(m, (int64_t)FIRST_RETRY_MS << (m->attempt - 1));
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct wh_msg *m = arg;
    struct sim_webhook *w = m->w;
    (void)fd;
    (void)what;
    struct evhttp_request *req = evhttp_request_new(on_reply, m);
    CV_ASSERT(req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char hostport[300];
    snprintf(hostport, sizeof(hostport), "%s:%d", w->host, w->port);
    evhttp_add_header(h, "Host", hostport);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "User-Agent", "conveyor-sim");
    if (m->sign)
        sign_headers(w, m, h);
    evbuffer_add(evhttp_request_get_output_buffer(req), m->body, m->len);
    m->attempt++;
    m->inflight = 1;
    w->stats.attempts++;
    if (evhttp_make_request(conn_of(w), req, EVHTTP_REQ_POST, m->path) != 0) {
        /* evhttp freed req; treat it as a failed attempt */
        on_reply(NULL, m);
    }
}

/* The JSON body of one tracking event; free with free(). */
static char *tracking_body(const char *carrier, const struct sim_ship *sp,
                           const struct sim_ship_event *ev)
{
    static const char *const desc[] = { "Shipment registered by the carrier",
                                        "Shipment in transit", "Out for delivery",
                                        "Delivered to the addressee", "Delivery exception" };
    char at[CLOCK_RFC3339_LEN];
    struct evbuffer *b = evbuffer_new();
    CV_ASSERT(b);
    clock_rfc3339(ev->at_ms, at);        /* the carrier emits the message when it happens */
    evbuffer_add_printf(b, "{\"type\":\"shipment.tracking\",\"timestamp\":\"%s\",\"data\":"
                           "{\"carrier\":", at);
    sim_put_json_str(b, carrier);
    evbuffer_add_printf(b, ",\"reference\":");
    sim_put_json_str(b, sim_ship_ref(sp));
    evbuffer_add_printf(b, ",\"expedition_id\":");
    sim_put_json_str(b, sp->code);
    evbuffer_add_printf(b, ",\"tracking_number\":");
    sim_put_json_str(b, sp->tracking);
    evbuffer_add_printf(b, ",\"status\":\"%s\",\"event_at\":\"%s\",\"seq\":%d,"
                           "\"description\":\"%s\"}}",
                        sim_ship_status_str(ev->status), at, ev->seq, desc[ev->status]);
    size_t n = evbuffer_get_length(b);
    char *out = xmalloc(n + 1);
    evbuffer_remove(b, out, n);
    out[n] = '\0';
    evbuffer_free(b);
    return out;
}

/* ---- API ------------------------------------------------------------------------------ */

struct sim_webhook *sim_webhook_new(struct event_base *base, struct sim_rng *rng,
                                    const char *url, const char *secret)
{
    struct sim_webhook *w = xcalloc(1, sizeof(*w));
    struct evhttp_uri *u = NULL;
    char ubuf[LOG_STR_MAX];
    w->base = base;
    w->rng = rng;
    size_t sl = strlen(secret), pl = strlen(SECRET_PREFIX);
    unsigned char key[AUTH_B64_LEN(SIM_WH_KEY_MAX)];
    long kl = -1;
    if (sl > pl && sl - pl <= AUTH_B64_LEN(SIM_WH_KEY_MAX) &&
        strncmp(secret, SECRET_PREFIX, pl) == 0)
        kl = auth_b64_decode(secret + pl, sl - pl, key);
    if (kl <= 0 || kl > SIM_WH_KEY_MAX) {
        fprintf(stderr, "conveyor-sim: sim.webhook_secret: must be whsec_ and the base64 of "
                        "1..64 bytes\n");
        goto fail;
    }
    memcpy(w->key, key, (size_t)kl);
    w->keylen = (size_t)kl;
    if (!url[0])
        return w;                        /* disabled: messages are counted as skipped */
    u = evhttp_uri_parse(url);
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    if (!scheme || strcmp(scheme, "http") != 0 || !host || !host[0] ||
        strlen(host) >= sizeof(w->host)) {
        fprintf(stderr, "conveyor-sim: sim.webhook_url: must be http://host[:port][/path], "
                        "got %s\n", log_str(ubuf, url));
        goto fail;
    }
    snprintf(w->host, sizeof(w->host), "%s", host);
    w->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
    const char *path = evhttp_uri_get_path(u);
    snprintf(w->path, sizeof(w->path), "%s", path ? path : "");
    size_t n = strlen(w->path);
    while (n > 0 && w->path[n - 1] == '/')
        w->path[--n] = '\0';
    evhttp_uri_free(u);
    return w;
fail:
    if (u)
        evhttp_uri_free(u);
    free(w);
    return NULL;
}

void sim_webhook_reset(struct sim_webhook *w)
{
    /* connections first: that frees in-flight requests without callbacks */
    for (int i = 0; i < SIM_WH_CONNS; i++) {
        if (w->conns[i])
            evhttp_connection_free(w->conns[i]);
        w->conns[i] = NULL;
    }
    while (w->head)
        msg_unlink_free(w->head);
    memset(&w->stats, 0, sizeof(w->stats));
}

void sim_webhook_free(struct sim_webhook *w)
{
    if (!w)
        return;
    sim_webhook_reset(w);
    free(w);
}

void sim_webhook_shipment(struct sim_webhook *w, const char *carrier, const struct sim_ship *sp,
                          struct sim_wh_faults *f)
{
    static const enum sim_ship_status st[SIM_SHIP_EVENTS] = {
        SIM_SHIP_ACCEPTED, SIM_SHIP_IN_TRANSIT, SIM_SHIP_DELIVERED
    };
    int n = 0;
    while (n < SIM_SHIP_EVENTS && sp->at_ms[n])
        n++;
    if (!w->host[0]) {
        w->stats.skipped += n;
        return;
    }
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/carriers/%s/webhook", carrier);
    int reverse = n > 1 && sim_faults_switch(&f->reverse_next, f->reverse_rate, w->rng);
    if (reverse)
        w->stats.reversed++;
    int64_t now = clock_wall_ms();
    for (int i = 0; i < n; i++) {
        struct sim_ship_event ev = { st[i], sp->at_ms[i], i + 1 };
        /* reversed: the newest event goes out at the first event's time */
        int64_t send_at = reverse ? sp->at_ms[n - 1 - i] : sp->at_ms[i];
        int copies = 1;
        if (sim_faults_switch(&f->duplicate_next, f->duplicate_rate, w->rng)) {
            copies = 2;
            w->stats.duplicates++;
        }
        int bad = sim_faults_switch(&f->bad_signature_next, f->bad_signature_rate, w->rng);
        int stale = sim_faults_switch(&f->stale_next, f->stale_rate, w->rng);
        w->stats.bad_signatures += bad;
        w->stats.stale += stale;
        char *body = tracking_body(carrier, sp, &ev);
        const char *first_id = NULL;
        for (int k = 0; k < copies; k++) {
            struct wh_msg *m = msg_new(w, path, k + 1 < copies ? xstrdup(body) : body, 1);
            if (first_id)                /* the duplicate: the same message again */
                memcpy(m->id, first_id, sizeof(m->id));
            else
                first_id = m->id;
            m->bad_signature = bad ? 1 : 0;
            m->stale = stale ? 1 : 0;
            msg_at(m, send_at - now + k * 20);
        }
    }
}

void sim_webhook_post(struct sim_webhook *w, const char *path, const char *body)
{
    if (!w->host[0]) {
        w->stats.skipped++;
        return;
    }
    struct wh_msg *m = msg_new(w, path, xstrdup(body), 0);
    msg_at(m, 0);
}

const struct sim_wh_stats *sim_webhook_stats(const struct sim_webhook *w)
{
    return &w->stats;
}

size_t sim_webhook_queued(const struct sim_webhook *w)
{
    return w->queued;
}
