/* sim_ontime.h - OnTime (a carrier that pushes tracking and takes batches),
 * simulated under /ontime.
 *
 *   POST /ontime/oauth/token              form: grant_type=client_credentials, client_id,
 *                                         client_secret -> 200 {access_token, token_type,
 *                                         expires_in}; else 401 {"error":"invalid_client"}
 *   POST /ontime/api/v1/shipments         Bearer; JSON {"reference", "recipient":{"name",
 *                                         "address","postal_code","city","country"},
 *                                         "weight_kg"} -> 201 {id, tracking_number,
 *                                         reference, state:"created"}; invalid -> 422
 *   POST /ontime/api/v1/shipments/batch   Bearer; a JSON array of 1..50 such objects
 *                                         -> 200 {"results":[{"index", "status":201, id,
 *                                         tracking_number, reference} or {"index",
 *                                         "status":422, "error", "message"}]}; more than
 *                                         50 -> 413. Items are independent: a refused one
 *                                         does not stop the others
 *   GET  /ontime/api/v1/shipments?reference=R
 *                                         Bearer; -> 200 {"data":[{id, tracking_number,
 *                                         reference, shipments, events}]} ([] when none)
 *
 * Errors: {"error":"<code>","message":"..."}. Webhooks to
 * <sim.webhook_url>/api/v1/carriers/ontime/webhook (sim_webhook.h). Loop thread only. */
#ifndef SIM_ONTIME_H
#define SIM_ONTIME_H

#define SIM_ONTIME_BATCH_MAX 50

struct sim;

void sim_ontime_register(struct sim *s);

#endif
