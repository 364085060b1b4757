/* trc.c - trace events and spans: the module switch and ENTER/EXIT (see trc.h). */
#include "trc.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "clock.h"
#include "log.h"
#include "uuid.h"

const char *const trc_module_names[TRC_N] = {
    [TRC_API] = "api", [TRC_WORKER] = "worker", [TRC_BROKER] = "broker",
    [TRC_UPS] = "ups", [TRC_DB] = "db",
};

static _Atomic unsigned mask_now;
static _Atomic unsigned mask_configured;
static _Atomic int export_on;

int trc_parse(const char *list, unsigned *mask)
{
    unsigned m = 0;
    const char *p = list ? list : "";
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        size_t len = (size_t)(e - p);
        if (len == 0)
            break;
        if ((len == 3 && !strncmp(p, "all", 3)))
            m = TRC_ALL;
        else if (!(len == 3 && !strncmp(p, "off", 3))) {
            int k = 0;
            while (k < TRC_N &&
                   !(strlen(trc_module_names[k]) == len && !strncmp(p, trc_module_names[k], len)))
                k++;
            if (k == TRC_N)
                return -1;
            m |= 1u << k;
        }
        p = e;
    }
    *mask = m;
    return 0;
}

const char *trc_format(unsigned mask, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int k = 0; k < TRC_N; k++) {
        if (!(mask & (1u << k)))
            continue;
        int w = snprintf(buf + o, n - o, "%s%s", o ? "," : "", trc_module_names[k]);
        if (w < 0 || (size_t)w >= n - o)
            break;
        o += (size_t)w;
    }
    if (o == 0)
        snprintf(buf, n, "off");
    return buf;
}

void trc_set(unsigned mask)
{
    unsigned old = atomic_exchange_explicit(&mask_now, mask & TRC_ALL, memory_order_relaxed);
    if (old != (mask & TRC_ALL)) {
        char was[64], now[64];
        LOG_INFO("trace.switched", "from=%s to=%s", trc_format(old, was, sizeof(was)),
                 trc_format(mask, now, sizeof(now)));
    }
}

unsigned trc_mask(void)
{
    return atomic_load_explicit(&mask_now, memory_order_relaxed);
}

int trc_on(enum trc_module m)
{
    return (trc_mask() >> m) & 1u;
}

void trc_configure(unsigned configured)
{
    atomic_store_explicit(&mask_configured, configured & TRC_ALL, memory_order_relaxed);
    trc_set(configured);
}

void trc_follow(const char *key_value)
{
    unsigned m = atomic_load_explicit(&mask_configured, memory_order_relaxed);
    if (key_value && trc_parse(key_value, &m) != 0) {
        /* an operator's typo must not switch tracing off or on at random */
        m = trc_mask();
    }
    trc_set(m);
}

/* ---- spans ---------------------------------------------------------------- */

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* The trace context: "00-<32 hex>-<16 hex>-<2 hex>", or 32 hex alone. */
static void take_ctx(struct trc_span *s, const char *ctx)
{
    size_t n = ctx ? strlen(ctx) : 0;
    if (n == 55 && ctx[2] == '-' && ctx[35] == '-' && ctx[52] == '-' && is_hex(ctx + 3, 32) &&
        is_hex(ctx + 36, 16)) {
        memcpy(s->trace_id, ctx + 3, 32);
        s->trace_id[32] = '\0';
        memcpy(s->parent_id, ctx + 36, 16);
        s->parent_id[16] = '\0';
    } else if (n == 32 && is_hex(ctx, 32)) {
        memcpy(s->trace_id, ctx, 32);
        s->trace_id[32] = '\0';
    } else {
        unsigned char b[16];
        uuid_random_bytes(b, sizeof(b));
        auth_hex(b, sizeof(b), s->trace_id);
    }
}

void trc_enter(struct trc_span *s, enum trc_module m, const char *fn, const char *job_id,
               const char *ctx)
{
    s->on = trc_on(m);
    if (!s->on)
        return;
    s->mod = m;
    s->parent_id[0] = '\0';
    snprintf(s->fn, sizeof(s->fn), "%s", fn ? fn : "?");
    snprintf(s->job_id, sizeof(s->job_id), "%s", job_id ? job_id : "");
    take_ctx(s, ctx);
    unsigned char b[8];
    uuid_random_bytes(b, sizeof(b));
    auth_hex(b, sizeof(b), s->span_id);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->start_unix_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    s->t0_us = clock_mono_us();
    char f[LOG_STR_MAX];
    log_emit(LOG_LVL_INFO, NULL, "ENTER", "module=%s function=%s job_id=%s trace_id=%s span_id=%s",
             trc_module_names[m], log_str(f, s->fn), s->job_id[0] ? s->job_id : "-",
             s->trace_id, s->span_id);
}

void trc_exit(struct trc_span *s, const char *status)
{
    if (!s->on)
        return;
    s->on = 0;
    int64_t us = clock_mono_us() - s->t0_us;
    char f[LOG_STR_MAX], st[LOG_STR_MAX];
    log_emit(LOG_LVL_INFO, NULL, "EXIT",
             "module=%s function=%s duration_us=%lld job_id=%s trace_id=%s span_id=%s status=%s",
             trc_module_names[s->mod], log_str(f, s->fn), (long long)us,
             s->job_id[0] ? s->job_id : "-", s->trace_id, s->span_id,
             log_str(st, status ? status : "ok"));
    if (atomic_load_explicit(&export_on, memory_order_relaxed))
        trc_export_push(s, s->start_unix_ns + us * 1000, status);
}

void trc_export_enable(int on)
{
    atomic_store_explicit(&export_on, on, memory_order_relaxed);
}
