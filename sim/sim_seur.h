/* sim_seur.h - SEUR (a carrier that pushes tracking), simulated under /seur.
 *
 *   POST /seur/pic_token          form: grant_type=password, client_id, client_secret,
 *                                 username, password -> 200 {access_token, token_type,
 *                                 expires_in}; wrong ones -> 401 {"error":"invalid_grant",...}
 *   POST /seur/pic/v1/shipments   Bearer; JSON {"reference" (our order id), "receiver":
 *                                 {"name", "address":{"streetName","postalCode","cityName",
 *                                 "countryCode"}}, "parcels":[{"weight"}]} -> 200
 *                                 {"data":{"shipmentCode","ecb","reference"}}; a new
 *                                 shipment on every call, even for a known reference
 *   GET  /seur/pic/v1/tracking-services/simplified?ref=<reference>
 *                                 Bearer; -> 200 {"data":{"shipmentCode","ecb","reference",
 *                                 "shipments":n,"events":[{status,seq,event_at}]}} or 404
 *
 * Errors: {"errors":[{"title","status","detail"}]}. Webhooks to
 * <sim.webhook_url>/api/v1/carriers/seur/webhook (sim_webhook.h). Loop thread only. */
#ifndef SIM_SEUR_H
#define SIM_SEUR_H

struct sim;

void sim_seur_register(struct sim *s);

#endif
