/* cidr.h - lists of networks ("10.0.0.0/8, ::1/128, 192.0.2.7") and whether an
 * address is in one: webhook source allowlists and trusted proxies.
 *
 * Pure code. IPv4 addresses also match as IPv4-mapped IPv6 (::ffff:a.b.c.d),
 * which is how a dual-stack listener reports them. */
#ifndef CV_CIDR_H
#define CV_CIDR_H

#include <stddef.h>

#define CIDR_MAX 32

struct cidr {
    unsigned char addr[16];   /* IPv6, or IPv4-mapped */
    int bits;                 /* prefix length over the 128 bits */
};

struct cidr_list {
    struct cidr nets[CIDR_MAX];
    int n;
};

/* Parse a comma- or space-separated list. 0, or -1 (bad entry or more than
 * CIDR_MAX) with *bad pointing at the entry. An empty list matches nothing. */
int cidr_parse(const char *text, struct cidr_list *out, const char **bad);
/* 1 when the textual address ip is in one of the networks. */
int cidr_match(const struct cidr_list *l, const char *ip);

#endif
