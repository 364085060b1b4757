/* ups_auth.c - the built-in credential kinds of an upstream (see ups.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mem.h"
#include "sbuf.h"
#include "ups_int.h"

static void apply_none(struct ups *u, void *arg, struct ups_call *c, const char *token)
{
    (void)u;
    (void)arg;
    (void)c;
    (void)token;
}

static void apply_header(struct ups *u, void *arg, struct ups_call *c, const char *token)
{
    (void)arg;
    (void)token;
    snprintf(c->auth_header, sizeof(c->auth_header), "Authorization: %s",
             u->conf.auth_secret ? u->conf.auth_secret : "");
}

static void apply_basic(struct ups *u, void *arg, struct ups_call *c, const char *token)
{
    (void)arg;
    (void)token;
    c->basic_user = u->conf.auth_user ? u->conf.auth_user : "";
    c->basic_pass = u->conf.auth_secret ? u->conf.auth_secret : "";
}

void ups_auth_apply_bearer(struct ups *u, void *arg, struct ups_call *c, const char *token)
{
    (void)u;
    (void)arg;
    snprintf(c->auth_header, sizeof(c->auth_header), "Authorization: Bearer %s",
             token ? token : "");
}

/* Percent-encode s for a form body. */
static void form_add(struct sbuf *b, const char *name, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    if (b->len)
        sbuf_adds(b, "&");
    sbuf_adds(b, name);
    sbuf_adds(b, "=");
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            sbuf_add(b, p, 1);
        } else {
            char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
            sbuf_add(b, e, 3);
        }
    }
}

/* OAuth2 client credentials (RFC 6749 4.4). arg: the token path. */
static enum cv_rc fetch_cc(struct ups *u, void *arg, char **token, int64_t *ttl_ms, char *err,
                           size_t err_len)
{
    enum cv_rc rc = CV_ERR_TRANSIENT;
    struct sbuf form;
    cJSON *j = NULL;
    char *url = xasprintf("%s%s", u->conf.url, arg ? (const char *)arg : "/oauth/token");
    sbuf_init(&form);
    form_add(&form, "grant_type", "client_credentials");
    form_add(&form, "client_id", u->conf.auth_user);
    form_add(&form, "client_secret", u->conf.auth_secret);
    struct httpc_req r = {
        .method = "POST", .url = url, .body = form.p, .body_len = form.len,
        .content_type = HTTPC_CT_FORM,
    };
    ups_call_raw(u, &r);
    if (r.cls != HTTPC_OK) {
        rc = r.cls == HTTPC_AUTH || r.cls == HTTPC_PERMANENT ? CV_ERR_AUTH : r.rc;
        snprintf(err, err_len, "token endpoint: %s", r.error);
        goto out;
    }
    j = r.resp ? cJSON_Parse(r.resp) : NULL;
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "access_token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    if (!cJSON_IsString(at) || !at->valuestring[0]) {
        rc = CV_ERR_PERMANENT;
        snprintf(err, err_len, "token endpoint: no access_token in the answer");
        goto out;
    }
    *token = xstrdup(at->valuestring);
    *ttl_ms = cJSON_IsNumber(exp) && exp->valuedouble > 0 ? (int64_t)(exp->valuedouble * 1000)
                                                         : 300000;
    rc = CV_OK;
out:
    cJSON_Delete(j);
    httpc_req_cleanup(&r);
    /* the form held the client secret */
    if (form.p)
        memset(form.p, 0, form.len);
    sbuf_cleanup(&form);
    free(url);
    return rc;
}

const struct ups_auth ups_auth_none = { "none", NULL, apply_none };
const struct ups_auth ups_auth_header = { "header", NULL, apply_header };
const struct ups_auth ups_auth_basic = { "basic", NULL, apply_basic };
const struct ups_auth ups_auth_bearer_cc = { "bearer", fetch_cc, ups_auth_apply_bearer };
