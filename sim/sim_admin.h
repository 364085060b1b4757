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

struct sim;

/* Add the /admin routes to s->router. */
void sim_admin_register(struct sim *s);

#endif
