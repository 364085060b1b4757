#include "uuid.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "mem.h"

void uuid_random_bytes(void *buf, unsigned n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        CV_ASSERT(r > 0);
        p += r;
        n -= (unsigned)r;
    }
}

/* Random bytes from the per-thread pool below: cheap for small n. */
static __thread unsigned char pool[16 * 64];
static __thread unsigned used = sizeof(pool);

void uuid_pool_bytes(void *buf, unsigned n)
{
    CV_ASSERT(n <= sizeof(pool));
    if (used + n > sizeof(pool)) {
        uuid_random_bytes(pool, sizeof(pool));
        used = 0;
    }
    memcpy(buf, pool + used, n);
    used += n;
}

/* Ids come from a per-thread buffer of kernel randomness so that a batch of
 * 1000 ids costs a handful of syscalls, not a thousand. */
static void format(unsigned char b[16], int version, char out[UUID_STR_LEN])
{
    static const char hex[] = "0123456789abcdef";
    b[6] = (unsigned char)((b[6] & 0x0f) | (version << 4));
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

void uuid_v4(char out[UUID_STR_LEN])
{
    unsigned char b[16];
    uuid_pool_bytes(b, sizeof(b));
    format(b, 4, out);
}

void uuid_v7(int64_t ms, char out[UUID_STR_LEN])
{
    unsigned char b[16];
    uuid_pool_bytes(b, sizeof(b));
    uint64_t t = ms > 0 ? (uint64_t)ms : 0;
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(t >> (40 - 8 * i));
    format(b, 7, out);
}

void uuid_v8(const unsigned char hash[16], char out[UUID_STR_LEN])
{
    unsigned char b[16];
    memcpy(b, hash, sizeof(b));
    format(b, 8, out);
}

int uuid_valid(const char *s)
{
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return s[36] == '\0';
}
