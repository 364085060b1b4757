/* api_err.c - the one table from enum cv_rc to an HTTP status and a JSON code.
 *
 * The codes are part of the API: clients branch on them, logs and metrics
 * carry them. Never change a published code; add rows only when rc.h grows. */
#include <stddef.h>

#include "api.h"

static const struct api_err table[] = {
    [CV_OK] = { 200, "ok", "OK" },
    [CV_ERR_INVALID] = { 400, "invalid", "Bad Request" },
    [CV_ERR_NOT_FOUND] = { 404, "not_found", "Not Found" },
    [CV_ERR_AUTH] = { 401, "unauthorized", "Unauthorized" },
    [CV_ERR_FORBIDDEN] = { 403, "forbidden", "Forbidden" },
    [CV_ERR_TOO_LARGE] = { 413, "too_large", "Payload Too Large" },
    [CV_ERR_CONFLICT] = { 409, "conflict", "Conflict" },
    [CV_ERR_TRANSIENT] = { 503, "unavailable", "Service Unavailable" },
    /* the API calls no outside system; should one say no, it is our bug */
    [CV_ERR_PERMANENT] = { 500, "internal", "Internal Server Error" },
    [CV_ERR_IO] = { 503, "unavailable", "Service Unavailable" },
    [CV_ERR_FENCED] = { 409, "conflict", "Conflict" },
    /* 415 for media types; the router sends 405 (same code) for methods */
    [CV_ERR_UNSUPPORTED] = { 415, "unsupported", "Unsupported Media Type" },
    [CV_ERR_RATE] = { 429, "rate_limited", "Too Many Requests" },
    [CV_ERR_CONFIG] = { 500, "internal", "Internal Server Error" },
    [CV_ERR_INTERNAL] = { 500, "internal", "Internal Server Error" },
    [CV_ERR_UNAVAILABLE] = { 503, "unavailable", "Service Unavailable" },
    [CV_ERR_BUSY] = { 503, "unavailable", "Service Unavailable" },
};

const struct api_err *api_err_lookup(enum cv_rc rc)
{
    if ((unsigned)rc >= sizeof(table) / sizeof(table[0]) || !table[rc].code)
        return &table[CV_ERR_INTERNAL];
    return &table[rc];
}

const char *api_status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static void err_json(struct sbuf *b, const char *code, const char *message, const char *field,
                     const char *extra)
{
    sbuf_adds(b, "{\"error\":{\"code\":");
    sbuf_add_json_str(b, code);
    sbuf_adds(b, ",\"message\":");
    sbuf_add_json_str(b, message);
    if (field) {
        sbuf_adds(b, ",\"field\":");
        sbuf_add_json_str(b, field);
    }
    if (extra) {
        sbuf_add(b, ",", 1);
        sbuf_adds(b, extra);
    }
    sbuf_adds(b, "}}");
}

void api_err_json(struct sbuf *b, enum cv_rc rc, const char *message, const char *field)
{
    const struct api_err *e = api_err_lookup(rc);
    err_json(b, e->code, message ? message : e->reason, field, NULL);
}

void api_err_json_extra(struct sbuf *b, const char *code, const char *message,
                        const char *extra)
{
    err_json(b, code, message, NULL, extra);
}
