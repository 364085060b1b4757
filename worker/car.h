/* car.h - carriers as the worker sees them: one table row per carrier with
 * its upstream, its credentials and the request and response shapes of its
 * API (car_<name>.c). The handlers (h_carrier_post.c, h_tracking_poll.c) only
 * speak this interface; everything about a carrier's wire format lives in its
 * file. */
#ifndef CV_CAR_H
#define CV_CAR_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "mem.h"
#include "ostate.h"
#include "sbuf.h"
#include "ups.h"
#include "wrk.h"

/* What a carrier needs to ship one order (read from the orders table). */
struct car_order {
    const char *order_id;          /* our reference: the carrier echoes it back */
    const char *name;              /* the receiver */
    const char *street, *city, *zip, *country;
    double weight_kg;
};

/* What a create or a lookup found. */
struct car_shipment {
    char expedition_id[64];        /* the carrier's shipment id */
    char tracking_number[64];
    char error[JOB_ERROR_MAX];     /* a refusal's message (validation) */
};

/* One state change read from a carrier's change feed (carriers that do not
 * push: TIPSA). */
struct car_event {
    char order_id[64];             /* our reference, as the carrier echoes it */
    char tracking_number[64];
    char status[32];               /* the carrier's own code: status_map makes it ours */
    char event_at[40];             /* RFC 3339 */
    int64_t seq;                   /* orders events of one instant (-1: none) */
};

/* The result of parsing one order's part of a create answer. */
enum car_verdict {
    CAR_CREATED,                   /* shipment holds the ids */
    CAR_REFUSED,                   /* the carrier said no for this order (validation):
                                    * FAILED_POST, no retry; shipment.error says why */
    CAR_RETRY,                     /* no usable answer for it: retry (look up first) */
};

struct car {
    const char *name;              /* "seur": the carrier code in orders and webhooks */
    const char *label;             /* "SEUR": carrier_name for Mirakl's OR23 */
    const char *tracking_url;      /* carrier_url for OR23 ("" when none) */
    int ups_id;                    /* enum cfg_ups_id */
    const struct ups_auth *auth;
    const void *auth_arg;
    int batch;                     /* 1 when one create request may carry several orders */
    /* Build the create request of orders o[0..n) into c (the body into body,
     * which must outlive the call). */
    void (*create_req)(const struct car_order *o, size_t n, struct ups_call *c,
                       struct sbuf *body);
    /* Read a completed create (c->outcome UPS_DONE and c->cls OK or BODY_ERROR
     * or PERMANENT): one verdict per order. */
    void (*create_parse)(const struct ups_call *c, const struct car_order *o, size_t n,
                         struct car_shipment *out, enum car_verdict *v);
    /* Build a lookup by our reference (before re-sending a create whose outcome
     * was unknown). */
    void (*lookup_req)(const struct car_order *o, struct ups_call *c, struct sbuf *body);
    /* 1 found (out set), 0 not found, -1 no usable answer. */
    int (*lookup_parse)(const struct ups_call *c, struct car_shipment *out);
    httpc_body_check body_check;   /* errors inside a 2xx (Correos Express, SOAP) */
    /* The carrier's own status code as enum otrack (-1 when unknown); sets
     * *terminal for a final exception. NULL: the code is already ours
     * (otrack_parse). */
    int (*status_map)(const char *code, int *terminal);
    /* The change feed (NULL for carriers that push): the request for page
     * (1..) of the state changes after since (RFC 3339), body into body. */
    void (*feed_req)(const char *since, int page, struct ups_call *c, struct sbuf *body);
    /* Read a feed answer (c->outcome UPS_DONE, c->cls OK): 0 with *ev (malloc'd,
     * free with free(); NULL when *n is 0), *n and *more (another page
     * follows); -1 when it is not the expected shape. */
    int (*feed_parse)(const struct ups_call *c, struct car_event **ev, size_t *n, int *more);
};

/* The carrier called name, or NULL. */
const struct car *car_find(const char *name);
/* The carrier served by upstream ups_id (enum cfg_ups_id), or NULL. */
const struct car *car_by_ups(int ups_id);

extern const struct car car_seur;
extern const struct car car_ontime;
extern const struct car car_tipsa;
extern const struct car car_cex;

/* One row of a carrier's status table: its own code, ours, and whether the
 * carrier calls it final (a terminal exception). Tables end with code NULL. */
struct car_status {
    const char *code;
    enum otrack status;
    int terminal;
};
/* The row of code in t (case-insensitive): its enum otrack, and *terminal set
 * to 1 for a final one (left as it is otherwise); -1 when unknown. */
int car_status_lookup(const struct car_status *t, const char *code, int *terminal);

/* Helpers for the carrier files: a string field of a JSON object into out
 * ("" when absent; numbers are printed). */
void car_json_str(const cJSON *obj, const char *key, char *out, size_t cap);
/* Append name=value form-encoded (with '&' when b is not empty). */
void car_form_add(struct sbuf *b, const char *name, const char *value);
/* Append value percent-encoded (a query value). */
void car_url_escape(struct sbuf *b, const char *value);
/* Read an OAuth-style token answer {access_token, expires_in} (as fetch_token
 * must): 0 with *token (malloc'd) and *ttl_ms, or -1 with err. */
int car_token_parse(const struct httpc_req *r, char **token, int64_t *ttl_ms, char *err,
                    size_t err_len);

#endif
