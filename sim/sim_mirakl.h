/* sim_mirakl.h - the Mirakl seller API (a marketplace), simulated under /mirakl.
 *
 *   GET /mirakl/api/orders                 OR11: order_state_codes (comma list),
 *                                          start_update_date (ISO 8601, last_updated_date
 *                                          >= it), order_ids (comma list), offset (0..),
 *                                          max (1..100, default 10; above: 400)
 *                                          -> {"orders":[...],"total_count":N}
 *   PUT /mirakl/api/orders/{id}/accept     OR21: WAITING_ACCEPTANCE -> SHIPPING; 204
 *   PUT /mirakl/api/orders/{id}/tracking   OR23: {carrier_code, carrier_name, carrier_url,
 *                                          tracking_number}; 204 (SHIPPING or SHIPPED)
 *   PUT /mirakl/api/orders/{id}/ship       OR24: SHIPPING -> SHIPPED once tracking is set;
 *                                          204, else 400 ORDER_INVALID_STATE
 *
 * Auth: "Authorization: <shop key>" (401 otherwise); demo key in sim_mirakl.c.
 * Errors: {"status":N,"code":"...","message":"..."}. Each order: order_id, order_state,
 * created_date, last_updated_date, shipping_deadline, customer{firstname, lastname,
 * shipping_address{street_1, city, zip_code, country_iso_code}}, order_lines[{order_line_id,
 * offer_sku, product_title, quantity, weight (kg per unit), price}], total_price, and the
 * shipping fields the seller pushed (carrier_code, tracking_number...).
 *
 * Orders start in SHIPPING (already accepted) unless created otherwise. They come from
 * the admin API or, for the demo, sim.mirakl_order_rate per second (0 = off):
 *
 *   POST /admin/mirakl/orders      {"generate":N,"seed":S} N orders (1..10000) whose total
 *                                  weights cycle through < 1 kg, 1-5 kg and > 5 kg in
 *                                  Spain, and Portugal/France (international); same seed,
 *                                  same orders (ids aside). Or {"orders":[{order_id?,
 *                                  weight, quantity?, country_iso_code?, zip_code?, city?,
 *                                  street_1?, order_state?}, ...]}. -> {"created":[ids]}
 *   GET  /admin/mirakl/orders/{id} the order as OR11 shows it, plus or21/or23/or24 calls
 *   POST /admin/mirakl/budget      {"OR11":n,"OR21":n,"OR23":n,"OR24":n}: calls allowed
 *                                  per minute per operation (0 = no limit); over it 429
 *                                  with Retry-After = seconds to the next minute
 *   POST /admin/mirakl/order_rate  {"per_second":x} (0..10000)
 *
 * /admin/mirakl/stats adds "operations":{"OR11":n,...}, "orders_count", "orders_by_state"
 * and "orders":{"<id>":{"state","or23","or24" (calls),"ships" (OR24s that shipped),
 *                                  "tracking_number","carrier_code"}} for the
 * first 10000 orders. Loop thread only. */
#ifndef SIM_MIRAKL_H
#define SIM_MIRAKL_H

struct sim;

/* Create the Mirakl system, add its routes, start the order generator. */
void sim_mirakl_register(struct sim *s);

#endif
