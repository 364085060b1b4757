/* meli.h - Mercado Livre as the worker speaks it (the pipeline is
 * common/ups.h's, upstream "meli").
 *
 *   POST /oauth/token  form grant_type=refresh_token, client_id, client_secret,
 *                      refresh_token -> {access_token, expires_in, refresh_token}
 *                      (a NEW refresh token: the one sent is spent)
 *   GET  /orders/{id}, /items/{id}, /messages/{id}   Bearer -> the resource (JSON)
 *
 * Credentials: upstreams.meli.auth_user (client id = application id),
 * auth_secret (client secret), password (the first refresh token, used only
 * while Redis holds none). The current refresh token lives in Redis under
 * MELI_REFRESH_KEY; each refresh replaces it with the one the answer brings
 * (compare-and-set on the one sent). The pipeline's token lock makes one
 * worker refresh at a time, so a refresh token is never sent twice. If a
 * worker dies between Mercado Livre's answer and the write of the new refresh
 * token, the chain is broken: every refresh fails with invalid_grant (logged
 * as meli.refresh_refused) until an operator stores a new refresh token in
 * MELI_REFRESH_KEY (or deletes it and sets upstreams.meli.password). */
#ifndef CV_MELI_H
#define CV_MELI_H

#include "ups.h"

#define MELI_REFRESH_KEY "cv:meli:refresh"

/* The bearer vtable with the refresh-token grant; its arg is the struct cfg. */
extern const struct ups_auth meli_auth;

/* The action word of a notification topic the worker applies ("order_updated"
 * for orders_v2, "item_updated", "message_updated"), or NULL for a topic it
 * does not handle. */
const char *meli_topic_action(const char *topic);

/* 1 when resource is a path the topic's notifications may name: "/orders/<id>"
 * for orders_v2, "/items/<id>", "/messages/<id>", ids of [A-Za-z0-9_-] (up to
 * 64). Anything else (a full URL, "..", a query) is refused: the resource is
 * fetched with our token. */
int meli_resource_ok(const char *topic, const char *resource);

#endif
