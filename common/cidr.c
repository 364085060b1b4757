/* cidr.c - network lists (cidr.h). */
#include "cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ip as 16 bytes (IPv4 mapped); 0 for IPv4, 1 for IPv6, -1 when not an address. */
static int to16(const char *ip, unsigned char out[16])
{
    struct in_addr v4;
    if (inet_pton(AF_INET, ip, &v4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &v4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, ip, out) == 1 ? 1 : -1;
}

int cidr_parse(const char *text, struct cidr_list *out, const char **bad)
{
    memset(out, 0, sizeof(*out));
    for (const char *p = text ? text : ""; *p;) {
        size_t n = strcspn(p, ", ");
        if (n == 0) {
            p++;
            continue;
        }
        char buf[64];
        *bad = p;
        if (n >= sizeof(buf) || out->n >= CIDR_MAX)
            return -1;
        memcpy(buf, p, n);
        buf[n] = '\0';
        char *slash = strchr(buf, '/');
        if (slash)
            *slash = '\0';
        struct cidr *c = &out->nets[out->n];
        int v6 = to16(buf, c->addr);
        if (v6 < 0)
            return -1;
        int max = v6 ? 128 : 32, bits = max;
        if (slash) {
            char *end;
            long b = strtol(slash + 1, &end, 10);
            if (end == slash + 1 || *end || b < 0 || b > max)
                return -1;
            bits = (int)b;
        }
        c->bits = v6 ? bits : 96 + bits;
        out->n++;
        p += n;
    }
    *bad = NULL;
    return 0;
}

int cidr_match(const struct cidr_list *l, const char *ip)
{
    unsigned char a[16];
    if (!ip || to16(ip, a) < 0)
        return 0;
    for (int i = 0; i < l->n; i++) {
        const struct cidr *c = &l->nets[i];
        int full = c->bits / 8, rest = c->bits % 8;
        if (memcmp(a, c->addr, (size_t)full) != 0)
            continue;
        if (rest) {
            unsigned char mask = (unsigned char)(0xff << (8 - rest));
            if ((a[full] & mask) != (c->addr[full] & mask))
                continue;
        }
        return 1;
    }
    return 0;
}
