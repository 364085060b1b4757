#include "sim_carrier.h"

#include <event2/buffer.h>
#include <string.h>

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "sim.h"
#include "sim_table.h"
#include "sim_webhook.h"

static void put_stats(struct sim *s, struct sim_sys *y, struct evbuffer *out)
{
    struct sim_carrier *k = (struct sim_carrier *)y;
    size_t n = sim_ships_count(&k->ships);
    evbuffer_add_printf(out, ",\"shipments_created\":%lld,\"references_count\":%zu,"
                             "\"references\":{",
                        (long long)k->ships.creates, n);
    for (size_t i = 0; i < n && i < SIM_CARRIER_STATS_REFS; i++) {
        const struct sim_ship *sp = sim_ships_at(&k->ships, i);
        if (i)
            evbuffer_add(out, ",", 1);
        sim_put_json_str(out, sim_ship_ref(sp));
        evbuffer_add_printf(out, ":{\"creates\":%d,\"code\":\"%s\",\"tracking\":\"%s\"}",
                            (int)sp->creates, sp->code, sp->tracking);
    }
    evbuffer_add(out, "}", 1);
    if (k->push_name && s->wh) {
        const struct sim_wh_stats *w = sim_webhook_stats(s->wh);
        evbuffer_add_printf(out, ",\"webhooks\":{\"scheduled\":%lld,\"attempts\":%lld,"
                                 "\"delivered\":%lld,\"retries\":%lld,\"failed\":%lld,"
                                 "\"skipped\":%lld,\"duplicates\":%lld,\"reversed\":%lld,"
                                 "\"bad_signatures\":%lld,\"stale\":%lld,\"queued\":%zu}",
                            (long long)w->scheduled, (long long)w->attempts,
                            (long long)w->delivered, (long long)w->retries,
                            (long long)w->failed, (long long)w->skipped,
                            (long long)w->duplicates, (long long)w->reversed,
                            (long long)w->bad_signatures, (long long)w->stale,
                            sim_webhook_queued(s->wh));
    }
}

static void reset(struct sim *s, struct sim_sys *y)
{
    (void)s;
    sim_ships_clear(&((struct sim_carrier *)y)->ships);
}

void sim_carrier_init(struct sim *s, struct sim_carrier *k, enum sim_sys_id id, const char *name,
                      const char *push_name, const char *code_prefix, const char *trk_prefix,
                      const struct sim_cred_def *defs, int ndefs, int token_ttl_s)
{
    sim_sys_init(s, &k->sys, id, name, defs, ndefs, token_ttl_s);
    sim_ships_init(&k->ships);
    k->push_name = push_name;
    k->code_prefix = code_prefix;
    k->trk_prefix = trk_prefix;
    k->sys.put_stats = put_stats;
    k->sys.reset = reset;
}

void sim_carrier_cleanup(struct sim_carrier *k)
{
    sim_ships_cleanup(&k->ships);
    sim_sys_cleanup(&k->sys);
}

struct sim_ship *sim_carrier_create(struct sim *s, struct sim_carrier *k, const char *ref,
                                    const char *zip, const char **why)
{
    struct sim_ship *sp = NULL;
    size_t reflen = ref ? strlen(ref) : 0;
    char rbuf[LOG_STR_MAX];
    *why = NULL;
    if (reflen == 0 || reflen >= SIM_TABLE_KEY_MAX)
        *why = "reference: required, 1..39 characters";
    else if (sim_sys_fails(&k->sys, ref))
        *why = "reference: rejected by the carrier";
    else if (sim_sys_fails(&k->sys, zip))
        *why = "postal code: not served by the carrier";
    if (*why) {
        k->sys.stats.validation_errors++;
        goto out;
    }
    const struct cfg *c = s->cfg;
    struct sim_ship_delays d = { c->sim_webhook_delay_ms, c->sim_transit_delay_ms,
                                 c->sim_deliver_delay_ms };
    sp = sim_ships_create(&k->ships, ref, reflen, k->code_prefix, k->trk_prefix, &d);
    if (!sp) {
        *why = "the carrier simulator is full; reset it";
        goto out;
    }
    LOG_DEBUG("sim.shipment_created", "system=%s reference=%s code=%s creates=%d", k->sys.name,
              log_str(rbuf, ref), sp->code, (int)sp->creates);
    if (k->push_name && s->wh)
        sim_webhook_shipment(s->wh, k->push_name, sp, &k->sys.faults.wh);
out:
    return sp;
}

void sim_carrier_put_events(struct evbuffer *out, const struct sim_ship *sp)
{
    struct sim_ship_event ev[SIM_SHIP_EVENTS];
    int n = sim_ship_events(sp, clock_wall_ms(), ev);
    evbuffer_add(out, "[", 1);
    for (int i = 0; i < n; i++) {
        char at[CLOCK_RFC3339_LEN];
        clock_rfc3339(ev[i].at_ms, at);
        evbuffer_add_printf(out, "%s{\"status\":\"%s\",\"seq\":%d,\"event_at\":\"%s\"}",
                            i ? "," : "", sim_ship_status_str(ev[i].status), ev[i].seq, at);
    }
    evbuffer_add(out, "]", 1);
}
