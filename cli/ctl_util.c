/* ctl_util.c - what every conveyorctl command shares: options, messages,
 * exit codes and opening the broker or PostgreSQL. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "ctl.h"
#include "db.h"

int ctl_json;

int ctl_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        ctl_usage("%s needs a value", name);
        return -1;
    }
    *i += 1;
    *val = argv[*i];
    return 1;
}

int ctl_flag(char **argv, int i, const char *name)
{
    return strcmp(argv[i], name) == 0;
}

int ctl_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void vsay(const char *fmt, va_list ap)
{
    fputs("conveyorctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int ctl_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
    fputs("(see conveyorctl --help)\n", stderr);
    return CTL_EXIT_USAGE;
}

int ctl_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
    return CTL_EXIT_FAIL;
}

int ctl_failx(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
    return code;
}

int ctl_exit_of(enum cv_rc rc)
{
    switch (rc) {
    case CV_OK: return CTL_EXIT_OK;
    case CV_ERR_NOT_FOUND: return CTL_EXIT_NOT_FOUND;
    case CV_ERR_CONFLICT: return CTL_EXIT_CONFLICT;
    case CV_ERR_IO:
    case CV_ERR_UNAVAILABLE: return CTL_EXIT_UNAVAILABLE;
    default: return CTL_EXIT_FAIL;
    }
}

int ctl_call_result(const struct ctl_call *k, const char *what, const char *id)
{
    if (!k->called)
        return ctl_failx(CTL_EXIT_UNAVAILABLE, "%s: the broker did not answer", what);
    switch (k->rc) {
    case CV_OK:
        return CTL_EXIT_OK;
    case CV_ERR_NOT_FOUND:
        return ctl_failx(CTL_EXIT_NOT_FOUND, "%s: no job %s", what, id ? id : "");
    case CV_ERR_CONFLICT:
        return ctl_failx(CTL_EXIT_CONFLICT, "%s: job %s is not dead or failed", what,
                         id ? id : "");
    default:
        return ctl_failx(ctl_exit_of(k->rc), "%s failed: %s", what, cv_rc_str(k->rc));
    }
}

int ctl_broker_open(const struct cfg *c, const char *what, struct broker **out)
{
    *out = broker_open(c, NULL);
    if (!*out)
        return ctl_failx(CTL_EXIT_UNAVAILABLE,
                         "%s: cannot reach the broker at redis.url (the reason is logged above)",
                         what);
    return CTL_EXIT_OK;
}

int ctl_db_open(const struct cfg *c, const char *what, struct db **out)
{
    *out = NULL;
    if (cfg_require(c, "pg.dsn") != 0)
        return CTL_EXIT_USAGE;
    *out = db_connect(c->pg_dsn);
    if (!*out)
        return ctl_failx(CTL_EXIT_UNAVAILABLE,
                         "%s: cannot reach PostgreSQL at pg.dsn (the reason is logged above)",
                         what);
    return CTL_EXIT_OK;
}

void ctl_put_safe(const char *s)
{
    if (!s || !*s) {
        fputs("-", stdout);
        return;
    }
    for (; *s; s++)
        putchar((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s);
}
