#include "sim_ship.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "mem.h"
#include "sim_table.h"
#include "uuid.h"

static const char *const status_names[] = {
    [SIM_SHIP_ACCEPTED] = "ACCEPTED",
    [SIM_SHIP_IN_TRANSIT] = "IN_TRANSIT",
    [SIM_SHIP_OUT_FOR_DELIVERY] = "OUT_FOR_DELIVERY",
    [SIM_SHIP_DELIVERED] = "DELIVERED",
    [SIM_SHIP_EXCEPTION] = "EXCEPTION",
};

const char *sim_ship_status_str(enum sim_ship_status st)
{
    if ((unsigned)st >= sizeof(status_names) / sizeof(status_names[0]))
        return "UNKNOWN";
    return status_names[st];
}

void sim_ships_init(struct sim_ships *sh)
{
    uint64_t seed;
    uuid_random_bytes(&seed, sizeof(seed));
    *sh = (struct sim_ships){ .t = sim_table_new(sizeof(struct sim_ship), SIM_SHIPS_MAX, seed),
                              .next_no = 1 };
}

void sim_ships_cleanup(struct sim_ships *sh)
{
    sim_table_free(sh->t);
    sh->t = NULL;
}

void sim_ships_clear(struct sim_ships *sh)
{
    sim_table_clear(sh->t);
    sh->creates = 0;                     /* next_no keeps counting: codes stay unique */
}

struct sim_ship *sim_ships_create(struct sim_ships *sh, const char *ref, size_t reflen,
                                  const char *code_prefix, const char *trk_prefix,
                                  const struct sim_ship_delays *d)
{
    int created;
    struct sim_ship *sp = sim_table_get_or_add(sh->t, ref, reflen, &created);
    if (!sp)
        return NULL;
    int64_t no = sh->next_no++;
    int64_t now = clock_wall_ms();
    sp->creates++;
    sh->creates++;
    snprintf(sp->code, sizeof(sp->code), "%.8s%010lld", code_prefix, (long long)no);
    snprintf(sp->tracking, sizeof(sp->tracking), "%.8s%010lld", trk_prefix,
             (long long)(no * 7919 % 10000000000LL));
    sp->created_ms = now;
    sp->at_ms[0] = now + d->accepted_ms;
    sp->at_ms[1] = d->transit_ms > 0 ? sp->at_ms[0] + d->transit_ms : 0;
    sp->at_ms[2] = sp->at_ms[1] && d->deliver_ms > 0 ? sp->at_ms[1] + d->deliver_ms : 0;
    return sp;
}

struct sim_ship *sim_ships_find(const struct sim_ships *sh, const char *ref, size_t reflen)
{
    return sim_table_find(sh->t, ref, reflen);
}

const char *sim_ship_ref(const struct sim_ship *sp)
{
    return sim_table_key(sp);
}

int sim_ship_events(const struct sim_ship *sp, int64_t now_ms, struct sim_ship_event *ev)
{
    static const enum sim_ship_status st[SIM_SHIP_EVENTS] = {
        SIM_SHIP_ACCEPTED, SIM_SHIP_IN_TRANSIT, SIM_SHIP_DELIVERED
    };
    int n = 0;
    for (int i = 0; i < SIM_SHIP_EVENTS; i++) {
        if (sp->at_ms[i] == 0 || sp->at_ms[i] > now_ms)
            break;
        ev[n++] = (struct sim_ship_event){ st[i], sp->at_ms[i], i + 1 };
    }
    return n;
}

size_t sim_ships_count(const struct sim_ships *sh)
{
    return sim_table_count(sh->t);
}

struct sim_ship *sim_ships_at(const struct sim_ships *sh, size_t i)
{
    return sim_table_at(sh->t, i);
}
