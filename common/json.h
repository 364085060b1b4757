/* json.h - the only module that includes cJSON for callers; field readers
 * that name the offending field so the API can answer 400 with it. */
#ifndef CV_JSON_H
#define CV_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "rc.h"

/* Parse len bytes; NULL when not valid JSON. Free with cJSON_Delete. */
cJSON *json_parse(const char *s, size_t len);

/* Read a required integer field in [min,max]. Accepts JSON numbers that are
 * whole, and strings of digits (the seed's clients send ids both ways).
 * CV_ERR_INVALID with *field = key when missing, mistyped or out of range. */
enum cv_rc json_get_int64(const cJSON *obj, const char *key, int64_t min, int64_t max,
                          int64_t *out, const char **field);
/* Read a required string field of 1..maxlen bytes. The pointer is into obj. */
enum cv_rc json_get_str(const cJSON *obj, const char *key, size_t maxlen, const char **out,
                        const char **field);
/* Compact text of a node; free with free(). */
char *json_print(const cJSON *node, size_t *len);

#endif
