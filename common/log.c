#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_min_level = LOG_LVL_INFO;
static const char *log_svc = "conveyor";

static const char *const lvl_names[] = { "debug", "info", "warn", "error" };

void log_init(const char *svc, enum log_level min)
{
    log_svc = svc;
    log_min_level = min;
}

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, lvl_names[i]) == 0)
            return i;
    return -1;
}

const char *log_str(char buf[LOG_STR_MAX], const char *s)
{
    size_t o = 0;
    buf[o++] = '"';
    /* room for the widest step (\xNN, 4 bytes) plus "..", the quote and the
     * NUL: with - 6 a control character at offset 249 wrote one byte past
     * (issue 5; seen again by tests/fuzz/fuzz_json) */
    for (; s && *s && o < LOG_STR_MAX - 7; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(buf + o, 5, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    if (s && *s) {
        buf[o++] = '.';
        buf[o++] = '.';
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void log_emit(enum log_level lvl, const char *src, const char *evt, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ lvl=%s svc=%s pid=%d evt=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), lvl_names[lvl], log_svc,
                     (int)getpid(), evt);
    if (n < 0)
        return;
    size_t o = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    if (fmt && *fmt && o < sizeof(line) - 2) {
        line[o++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + o, sizeof(line) - o, fmt, ap);
        va_end(ap);
        if (m > 0)
            o += (size_t)m < sizeof(line) - o ? (size_t)m : sizeof(line) - o - 1;
    }
    if (src && o < sizeof(line) - 8) {
        int m = snprintf(line + o, sizeof(line) - o, " src=%s", src);
        if (m > 0)
            o += (size_t)m < sizeof(line) - o ? (size_t)m : sizeof(line) - o - 1;
    }
    if (o >= sizeof(line) - 1)
        o = sizeof(line) - 2;
    line[o++] = '\n';
    ssize_t w = write(2, line, o);
    (void)w;
}
