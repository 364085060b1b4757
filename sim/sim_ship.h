/* sim_ship.h - the shipments a simulated carrier holds, by our reference.
 *
 * Carriers take no idempotency key: every create makes a new shipment, even
 * for a reference seen before. The record under a reference counts those
 * creates (tests prove "one shipment per order" with it) and keeps the
 * latest shipment: its code (expedition id), tracking number and its
 * scripted life. A shipment's states are not stored as they happen: they are
 * a schedule fixed at create (wall-clock ms of ACCEPTED, IN_TRANSIT and
 * DELIVERED, 0 = never) from which lookups, change feeds and webhooks all
 * read, so they always agree. In memory only; loop thread only. */
#ifndef SIM_SHIP_H
#define SIM_SHIP_H

#include <stddef.h>
#include <stdint.h>

#define SIM_SHIPS_MAX (4u << 20)
#define SIM_SHIP_CODE_LEN 24
#define SIM_SHIP_EVENTS 3                /* ACCEPTED, IN_TRANSIT, DELIVERED */

enum sim_ship_status {
    SIM_SHIP_ACCEPTED,
    SIM_SHIP_IN_TRANSIT,
    SIM_SHIP_OUT_FOR_DELIVERY,
    SIM_SHIP_DELIVERED,
    SIM_SHIP_EXCEPTION,
};
/* "ACCEPTED", "IN_TRANSIT", ... (the webhook's status words). */
const char *sim_ship_status_str(enum sim_ship_status st);

struct sim_ship_event {
    enum sim_ship_status status;
    int64_t at_ms;                       /* wall clock */
    int seq;                             /* 1, 2, 3 per shipment */
};

struct sim_ship {
    int32_t creates;                     /* shipments created under this reference */
    char code[SIM_SHIP_CODE_LEN];        /* latest: the carrier's shipment id */
    char tracking[SIM_SHIP_CODE_LEN];    /* latest: tracking number */
    int64_t created_ms;                  /* wall clock */
    int64_t at_ms[SIM_SHIP_EVENTS];      /* scheduled ACCEPTED, IN_TRANSIT, DELIVERED; 0 = never */
};

struct sim_table;

struct sim_ships {
    struct sim_table *t;                 /* reference -> struct sim_ship */
    int64_t next_no;                     /* shipment numbers, never reused */
    int64_t creates;                     /* all creates since the last clear */
};

/* The delays a new shipment's schedule is built from (ms, 0 = never). */
struct sim_ship_delays {
    int accepted_ms;                     /* after the create */
    int transit_ms;                      /* after ACCEPTED */
    int deliver_ms;                      /* after IN_TRANSIT */
};

void sim_ships_init(struct sim_ships *sh);
void sim_ships_cleanup(struct sim_ships *sh);
void sim_ships_clear(struct sim_ships *sh);

/* Create a shipment under ref (1..39 bytes): count it, give it a code
 * (code_prefix + number) and a tracking number (trk_prefix + number), and
 * schedule its states from now. Returns the record (valid until clear), or
 * NULL when ref is empty or too long or the store is full. */
struct sim_ship *sim_ships_create(struct sim_ships *sh, const char *ref, size_t reflen,
                                  const char *code_prefix, const char *trk_prefix,
                                  const struct sim_ship_delays *d);

struct sim_ship *sim_ships_find(const struct sim_ships *sh, const char *ref, size_t reflen);
/* The reference a record is stored under. */
const char *sim_ship_ref(const struct sim_ship *sp);

/* The events of sp that happened at or before now_ms, oldest first, into
 * ev[SIM_SHIP_EVENTS]. Returns how many. */
int sim_ship_events(const struct sim_ship *sp, int64_t now_ms, struct sim_ship_event *ev);

size_t sim_ships_count(const struct sim_ships *sh);
/* The i-th record (0 <= i < count) in creation order of references. */
struct sim_ship *sim_ships_at(const struct sim_ships *sh, size_t i);

#endif
