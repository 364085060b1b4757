/* ups_int.h - the inside of struct ups, for common/ups*.c only (not for callers). */
#ifndef CV_UPS_INT_H
#define CV_UPS_INT_H

#include "ups.h"

struct ups {
    struct ups_conf conf;          /* defaults applied */
    const struct ups_auth *auth;
    void *auth_arg;
    struct rds *rds;
    struct httpc *http;
    struct ups_log *log;
    char owner[33];                /* random id: this pipeline's locks and probes */
};

/* "ups:{<name>}:<suffix>" into buf (the braces keep an upstream's keys in one
 * cluster slot). */
void ups_key(const struct ups *u, const char *suffix, char *buf, size_t len);

/* Milliseconds between polls of another worker's work (token refresh). */
#define UPS_POLL_MS 20

#endif
