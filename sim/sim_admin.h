/* sim_admin.h - run-time control of the simulator, for tests and benchmarks.
 *
 *   GET  /admin/config  {latency_ms, error_rate, error_status, timeout_rate,
 *                        fail_next, decline_users:[...]}
 *   POST /admin/config  any subset of those fields; all are checked before any
 *                       is applied (400 names the bad one); answers the new config
 *   GET  /admin/stats   {calls, activations, errors, timeouts, declines,
 *                        duplicates, held}
 *   POST /admin/reset   records, stats and faults back to the start config
 *
 * No authentication: the sim binds 127.0.0.1 and is a test tool. */
#ifndef SIM_ADMIN_H
#define SIM_ADMIN_H

#include <stdint.h>

#include "json.h"

struct sim;
struct sim_call;

/* Read a JSON number that is whole and in [min,max] into *out: 0, or -1. */
int sim_admin_int_of(const cJSON *it, int64_t min, int64_t max, int64_t *out);
/* Read a JSON number in [0,1] into *out: 0, or -1. */
int sim_admin_rate_of(const cJSON *it, double *out);
/* The request body parsed as a JSON object, or NULL after answering 413 (too large) or
 * 400 (not JSON, not an object). Free with cJSON_Delete(). */
cJSON *sim_admin_json_or_reply(const struct sim_call *c);
/* Answer 400 naming field and what it must be (field is untrusted: capped). */
void sim_admin_bad_field(const struct sim_call *c, const char *field, const char *want);

/* Add the /admin routes to s->router. */
void sim_admin_register(struct sim *s);

#endif
