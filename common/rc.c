#include "rc.h"

static const char *const names[] = {
    [CV_OK] = "ok",
    [CV_ERR_INVALID] = "invalid",
    [CV_ERR_NOT_FOUND] = "not_found",
    [CV_ERR_AUTH] = "unauthorized",
    [CV_ERR_FORBIDDEN] = "forbidden",
    [CV_ERR_TOO_LARGE] = "too_large",
    [CV_ERR_CONFLICT] = "conflict",
    [CV_ERR_TRANSIENT] = "transient",
    [CV_ERR_PERMANENT] = "permanent",
    [CV_ERR_IO] = "io",
    [CV_ERR_FENCED] = "fenced",
    [CV_ERR_UNSUPPORTED] = "unsupported",
    [CV_ERR_RATE] = "rate_limited",
    [CV_ERR_CONFIG] = "config",
    [CV_ERR_INTERNAL] = "internal",
    [CV_ERR_UNAVAILABLE] = "unavailable",
    [CV_ERR_BUSY] = "busy",
};

const char *cv_rc_str(enum cv_rc rc)
{
    if ((unsigned)rc >= sizeof(names) / sizeof(names[0]) || !names[rc])
        return "unknown";
    return names[rc];
}

int cv_rc_retryable(enum cv_rc rc)
{
    return rc == CV_ERR_TRANSIENT || rc == CV_ERR_IO || rc == CV_ERR_RATE;
}
