/* log.h - one logfmt line per event on stderr.
 *
 *   ts=2025-06-01T10:00:00.123Z lvl=info svc=worker pid=812 evt=job.done job_id=... type=noop
 *
 * Callers pass the event name and then "key=value" pairs already formatted
 * with log_kv-safe values (use LOG_STR for untrusted strings: it quotes and
 * escapes). Lines are capped at 2 KiB. Thread-safe: one write(2) per line. */
#ifndef CV_LOG_H
#define CV_LOG_H

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

extern enum log_level log_min_level;

/* Set the service name printed as svc=. Call once at start. */
void log_init(const char *svc, enum log_level min);
/* Parse "debug"/"info"/"warn"/"error"; returns -1 when unknown. */
int log_level_parse(const char *s);

void log_emit(enum log_level lvl, const char *src, const char *evt, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LOG_STR_MAX 256
/* Quote and escape s into buf (at most LOG_STR_MAX bytes) for use as a value. */
const char *log_str(char buf[LOG_STR_MAX], const char *s);

#define CV_STR2(x) #x
#define CV_STR(x) CV_STR2(x)
#define LOG_SRC __FILE__ ":" CV_STR(__LINE__)

#define LOG_DEBUG(evt, ...) do { if (log_min_level <= LOG_LVL_DEBUG) \
    log_emit(LOG_LVL_DEBUG, NULL, evt, __VA_ARGS__); } while (0)
#define LOG_INFO(evt, ...) do { if (log_min_level <= LOG_LVL_INFO) \
    log_emit(LOG_LVL_INFO, NULL, evt, __VA_ARGS__); } while (0)
#define LOG_WARN(evt, ...) log_emit(LOG_LVL_WARN, LOG_SRC, evt, __VA_ARGS__)
#define LOG_ERROR(evt, ...) log_emit(LOG_LVL_ERROR, LOG_SRC, evt, __VA_ARGS__)

#endif
