/* sim_meli.h - Mercado Livre (a marketplace that notifies), simulated under /meli.
 *
 *   POST /meli/oauth/token   form: grant_type=refresh_token, client_id, client_secret,
 *                            refresh_token -> 200 {access_token, token_type, expires_in,
 *                            refresh_token (a new one: the one used is spent), user_id,
 *                            scope}; else 400 {"message","error":"invalid_grant","status",
 *                            "cause":[]}. The first refresh token is the demo credential
 *                            "refresh_token" (usable once per reset)
 *   GET  /meli/orders/{id}   Bearer (401 when expired) -> 200 {id, status, date_created,
 *                            last_updated, total_amount, currency_id, buyer{id},
 *                            order_items[{item{id,title},quantity,unit_price}],
 *                            shipping{id}} or 404
 *
 * Admin (besides the shared /admin/meli/faults|stats|credentials):
 *   POST /admin/meli/orders  {"id":"2000001","status":"paid","total_amount":12.5,
 *                            "notify":true}: create or change an order (last_updated moves);
 *                            notify sends the orders_v2 notification
 *   POST /admin/meli/notify  {"resource":"/orders/2000001","topic":"orders_v2"|"items"|
 *                            "messages"}: send one notification
 * A notification is POST <sim.webhook_url>/api/webhook/mercado-livre with the real
 * payload {"resource","user_id","topic","application_id","attempts":1,"sent","received"},
 * unsigned, retried like the carriers' webhooks. Loop thread only. */
#ifndef SIM_MELI_H
#define SIM_MELI_H

struct sim;

void sim_meli_register(struct sim *s);

#endif
