/* clock.h - time in the units the system uses.
 *
 * Wall time (epoch milliseconds) is what goes into job envelopes, status
 * hashes and delayed-job scores, since it must mean the same on every host.
 * Monotonic time is for local timeouts and intervals only. */
#ifndef CV_CLOCK_H
#define CV_CLOCK_H

#include <stddef.h>
#include <stdint.h>

int64_t clock_wall_ms(void);
int64_t clock_mono_ms(void);
int64_t clock_mono_us(void);

/* Format epoch ms as RFC 3339 UTC with milliseconds ("2025-06-01T10:00:00.123Z").
 * buf must hold at least CLOCK_RFC3339_LEN bytes. Returns buf. */
#define CLOCK_RFC3339_LEN 80
char *clock_rfc3339(int64_t ms, char *buf);

/* Parse RFC 3339 ("2025-06-01T10:00:00Z", optional fraction, Z or +hh:mm).
 * Returns 0 and sets *ms, or -1 when the text is not a valid timestamp. */
int clock_parse_rfc3339(const char *s, int64_t *ms);

#endif
