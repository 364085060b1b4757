/* soap.c - the SOAP and XML helpers of soap.h. */
#include "soap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

void soap_escape(struct sbuf *b, const char *s)
{
    for (const char *p = s ? s : ""; *p; p++) {
        switch (*p) {
        case '<': sbuf_adds(b, "&lt;"); break;
        case '>': sbuf_adds(b, "&gt;"); break;
        case '&': sbuf_adds(b, "&amp;"); break;
        case '"': sbuf_adds(b, "&quot;"); break;
        case '\'': sbuf_adds(b, "&apos;"); break;
        default: sbuf_add(b, p, 1); break;
        }
    }
}

void soap_field(struct sbuf *b, const char *name, const char *value)
{
    sbuf_addf(b, "<%s>", name);
    soap_escape(b, value);
    sbuf_addf(b, "</%s>", name);
}

char *soap_with_header(const char *body, const char *header_xml)
{
    const char *at = body ? strstr(body, "<soap:Body>") : NULL;
    if (!at)
        return NULL;
    return xasprintf("%.*s%s%s", (int)(at - body), body, header_xml, at);
}

/* One UTF-8 encoding of code point cp into out; its length (0 when invalid). */
static size_t utf8_put(unsigned long cp, char *out)
{
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int soap_unescape(const char *text, size_t n, char *out, size_t cap)
{
    static const struct {
        const char *ent;
        char ch;
    } ents[] = { { "&lt;", '<' }, { "&gt;", '>' }, { "&amp;", '&' }, { "&quot;", '"' },
                 { "&apos;", '\'' } };
    size_t o = 0;
    if (cap == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char tmp[4];
        size_t tl = 1;
        tmp[0] = text[i];
        if (text[i] == '&') {
            const char *semi = memchr(text + i, ';', n - i);
            size_t el = semi ? (size_t)(semi - (text + i)) + 1 : 0;
            int done = 0;
            for (size_t e = 0; semi && e < sizeof(ents) / sizeof(ents[0]); e++) {
                if (el == strlen(ents[e].ent) && strncmp(text + i, ents[e].ent, el) == 0) {
                    tmp[0] = ents[e].ch;
                    done = 1;
                }
            }
            if (!done && semi && el > 3 && text[i + 1] == '#') {
                char num[12];
                int hex = text[i + 2] == 'x' || text[i + 2] == 'X';
                size_t d0 = hex ? 3 : 2;
                if (el - 1 - d0 < sizeof(num) && el - 1 > d0) {
                    memcpy(num, text + i + d0, el - 1 - d0);
                    num[el - 1 - d0] = '\0';
                    char *end;
                    unsigned long cp = strtoul(num, &end, hex ? 16 : 10);
                    if (*end == '\0' && (tl = utf8_put(cp, tmp)) > 0)
                        done = 1;
                    else
                        tl = 1;
                }
            }
            if (done)
                i += el - 1;
        }
        if (o + tl >= cap) {
            out[o] = '\0';
            return -1;
        }
        memcpy(out + o, tmp, tl);
        o += tl;
    }
    out[o] = '\0';
    return 0;
}

const char *soap_find(const char *x, const char *name, const char **content, size_t *content_len,
                      const char **attrs, size_t *attrs_len)
{
    size_t nl = strlen(name);
    for (const char *p = x ? strchr(x, '<') : NULL; p; p = strchr(p + 1, '<')) {
        const char *q = p + 1, *local = q;
        if (*q == '/' || *q == '?' || *q == '!')
            continue;
        while (*q && *q != ':' && *q != '>' && *q != ' ' && *q != '/' && *q != '\t' &&
               *q != '\r' && *q != '\n')
            q++;
        if (*q == ':')
            local = q + 1;
        if (strncmp(local, name, nl) != 0 || !local[nl] || !strchr("> \t\r\n/", local[nl]))
            continue;
        const char *gt = strchr(local + nl, '>');
        if (!gt)
            return NULL;
        int empty = gt[-1] == '/';
        *attrs = local + nl;
        *attrs_len = (size_t)(gt - *attrs) - (empty ? 1 : 0);
        *content = gt + 1;
        *content_len = 0;
        if (empty)
            return p;
        /* the end tag: "</" + the same prefix and local name + ">" */
        for (const char *e = strstr(gt + 1, "</"); e; e = strstr(e + 2, "</")) {
            const char *l = e + 2, *c = l;
            while (*c && *c != ':' && *c != '>')
                c++;
            if (*c == ':')
                l = c + 1;
            if (strncmp(l, name, nl) == 0 && (l[nl] == '>' || l[nl] == ' ')) {
                *content_len = (size_t)(e - *content);
                return p;
            }
        }
        return NULL;   /* not closed: not a document we understand */
    }
    return NULL;
}

int soap_text(const char *x, const char *name, char *out, size_t cap)
{
    const char *c, *a;
    size_t cl, al;
    if (!soap_find(x, name, &c, &cl, &a, &al)) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    return soap_unescape(c, cl, out, cap) == 0;
}

int soap_attr(const char *attrs, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *end = attrs + len;
    if (cap)
        out[0] = '\0';
    for (const char *p = attrs; p + nl + 2 < end; p++) {
        if ((p == attrs || strchr(" \t\r\n", p[-1])) && strncmp(p, name, nl) == 0) {
            const char *q = p + nl;
            while (q < end && (*q == ' ' || *q == '\t'))
                q++;
            if (q >= end || *q != '=')
                continue;
            q++;
            while (q < end && (*q == ' ' || *q == '\t'))
                q++;
            if (q >= end || (*q != '"' && *q != '\''))
                continue;
            const char *v = q + 1, *ve = memchr(v, *q, (size_t)(end - v));
            if (!ve)
                return 0;
            return soap_unescape(v, (size_t)(ve - v), out, cap) == 0;
        }
    }
    return 0;
}

int soap_fault(const char *x, char *code, size_t code_cap, char *msg, size_t msg_cap, char *err,
               size_t err_cap)
{
    const char *c, *a;
    size_t cl, al;
    char fc[64];
    code[0] = msg[0] = err[0] = '\0';
    if (!soap_find(x, "Fault", &c, &cl, &a, &al))
        return 0;
    char *f = xstrndup(c, cl);
    soap_text(f, "faultcode", fc, sizeof(fc));
    const char *colon = strrchr(fc, ':');
    snprintf(code, code_cap, "%s", colon ? colon + 1 : fc);
    soap_text(f, "faultstring", msg, msg_cap);
    soap_text(f, "errorCode", err, err_cap);
    free(f);
    return 1;
}
