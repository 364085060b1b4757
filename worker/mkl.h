/* mkl.h - Mirakl's seller API as the worker speaks it (the shapes; the
 * pipeline is common/ups.h's, upstream "mirakl").
 *
 *   GET /api/orders?order_state_codes=&start_update_date=&offset=&max=   OR11
 *       -> {"orders":[...],"total_count":N}
 *   PUT /api/orders/{id}/tracking {carrier_code, carrier_name, carrier_url,
 *       tracking_number}                                                  OR23
 *   PUT /api/orders/{id}/ship                                              OR24
 * Auth "Authorization: <shop key>" (upstreams.mirakl.auth_secret). Errors
 * {"status","code","message"}: ORDER_INVALID_STATE on a ship that Mirakl
 * cannot take (already shipped, or no tracking yet). */
#ifndef CV_MKL_H
#define CV_MKL_H

#include <stddef.h>

#include "ostore.h"
#include "sbuf.h"
#include "ups.h"

/* One OR11 page turned into store rows. Strings are owned by the page. */
struct mkl_page {
    struct ostore_order_in *orders;
    size_t n;
    long long total_count;
    char max_updated[40];     /* the latest last_updated_date seen, "" when none */
    char **owned;             /* every string the rows point to */
    size_t nowned;
};

/* Build an OR11 call into c (its path into path). since may be NULL. */
void mkl_list_req(struct ups_call *c, struct sbuf *path, const char *states, const char *since,
                  long long offset, int max);
/* Build an OR11 call for the orders ids[0..n) (order_ids, at most 100). */
void mkl_ids_req(struct ups_call *c, struct sbuf *path, const char *const *ids, size_t n);
/* Parse an OR11 answer; 0, or -1 when it is not the expected shape. Free with
 * mkl_page_free (also after a failure). */
int mkl_page_parse(const char *resp, size_t len, struct mkl_page *out);
void mkl_page_free(struct mkl_page *p);

/* OR23 for order_id: the carrier's code, name, tracking URL and number. */
void mkl_tracking_req(struct ups_call *c, struct sbuf *path, struct sbuf *body,
                      const char *order_id, const char *carrier_code, const char *carrier_name,
                      const char *carrier_url, const char *tracking_number);
/* OR24 for order_id. */
void mkl_ship_req(struct ups_call *c, struct sbuf *path, const char *order_id);
/* Mirakl's error code of an answer ("ORDER_INVALID_STATE"), "" when none. */
void mkl_error_code(const char *resp, size_t len, char *code, size_t cap, char *msg,
                    size_t msg_cap);

#endif
