#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

/* 1 when every number under node is finite. cJSON reads 1e999 as inf and
 * prints inf as null: a payload kept as text would differ from one printed
 * from the tree (batch elements), and the worker would read inf. */
static int all_finite(const cJSON *node)
{
    if (cJSON_IsNumber(node))
        return isfinite(node->valuedouble);
    for (const cJSON *c = node->child; c; c = c->next)
        if (!all_finite(c))
            return 0;
    return 1;
}

cJSON *json_parse(const char *s, size_t len)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!root)
        return NULL;
    /* reject trailing garbage after the value (whitespace is fine), a NUL
     * included: "{}\0junk" is not JSON (found by tests/fuzz/fuzz_json) */
    while (end && (size_t)(end - s) < len &&
           (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (!end || (size_t)(end - s) < len || !all_finite(root)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

enum cv_rc json_get_int64(const cJSON *obj, const char *key, int64_t min, int64_t max,
                          int64_t *out, const char **field)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *field = key;
    int64_t v;
    if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        if (!isfinite(d) || d != floor(d) || d < -9.0e15 || d > 9.0e15)
            return CV_ERR_INVALID;
        v = (int64_t)d;
    } else if (cJSON_IsString(it) && it->valuestring[0]) {
        char *end;
        errno = 0;
        long long ll = strtoll(it->valuestring, &end, 10);
        if (errno || *end != '\0')
            return CV_ERR_INVALID;
        v = ll;
    } else {
        return CV_ERR_INVALID;
    }
    if (v < min || v > max)
        return CV_ERR_INVALID;
    *out = v;
    *field = NULL;
    return CV_OK;
}

enum cv_rc json_get_str(const cJSON *obj, const char *key, size_t maxlen, const char **out,
                        const char **field)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *field = key;
    if (!cJSON_IsString(it))
        return CV_ERR_INVALID;
    size_t n = strlen(it->valuestring);
    if (n == 0 || n > maxlen)
        return CV_ERR_INVALID;
    *out = it->valuestring;
    *field = NULL;
    return CV_OK;
}

char *json_print(const cJSON *node, size_t *len)
{
    char *s = cJSON_PrintUnformatted(node);
    CV_ASSERT(s);
    if (len)
        *len = strlen(s);
    return s;
}
