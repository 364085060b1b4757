/* car.c - the table of carriers and the helpers their files share (car.h). */
#include "car.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct car *const cars[] = { &car_seur, &car_ontime, &car_tipsa, &car_cex };

const struct car *car_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof(cars) / sizeof(cars[0]); i++)
        if (strcmp(cars[i]->name, name) == 0)
            return cars[i];
    return NULL;
}

const struct car *car_by_ups(int ups_id)
{
    for (size_t i = 0; i < sizeof(cars) / sizeof(cars[0]); i++)
        if (cars[i]->ups_id == ups_id)
            return cars[i];
    return NULL;
}

void car_json_str(const cJSON *obj, const char *key, char *out, size_t cap)
{
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    out[0] = '\0';
    if (cJSON_IsString(it))
        snprintf(out, cap, "%s", it->valuestring);
    else if (cJSON_IsNumber(it))
        snprintf(out, cap, "%.0f", it->valuedouble);
}

void car_form_add(struct sbuf *b, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    if (b->len)
        sbuf_add(b, "&", 1);
    sbuf_adds(b, name);
    sbuf_add(b, "=", 1);
    for (const unsigned char *p = (const unsigned char *)(value ? value : ""); *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            sbuf_add(b, p, 1);
        } else {
            char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
            sbuf_add(b, e, 3);
        }
    }
}

void car_url_escape(struct sbuf *b, const char *value)
{
    struct sbuf t;
    sbuf_init(&t);
    car_form_add(&t, "x", value);
    sbuf_add(b, t.p + 2, t.len - 2);
    sbuf_cleanup(&t);
}

/* OAuth-style token answer {access_token, expires_in}: 0, or -1 with err. */
int car_token_parse(const struct httpc_req *r, char **token, int64_t *ttl_ms, char *err,
                    size_t err_len)
{
    cJSON *root = r->resp ? json_parse(r->resp, r->resp_len) : NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "access_token");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "expires_in");
    int rc = -1;
    if (cJSON_IsString(t) && t->valuestring[0]) {
        *token = xstrdup(t->valuestring);
        *ttl_ms = cJSON_IsNumber(e) && e->valuedouble > 1 ? (int64_t)e->valuedouble * 1000
                                                           : 300000;
        rc = 0;
    } else {
        snprintf(err, err_len, "token endpoint: no access_token in the answer (status %d)",
                 r->status);
    }
    cJSON_Delete(root);
    return rc;
}

int car_status_lookup(const struct car_status *t, const char *code, int *terminal)
{
    for (; code && t->code; t++) {
        if (strcasecmp(t->code, code) == 0) {
            if (t->terminal)
                *terminal = 1;
            return (int)t->status;
        }
    }
    return -1;
}
