/* uuid.h - UUIDs for job and transaction ids: random (v4), time-ordered (v7), named (v8). */
#ifndef CV_UUID_H
#define CV_UUID_H

#include <stdint.h>

#define UUID_STR_LEN 37 /* 36 characters and the NUL */

/* Write a new lower-case v4 UUID into out. Thread-safe. */
void uuid_v4(char out[UUID_STR_LEN]);

/* A version 7 UUID (RFC 9562): the first 48 bits are ms, the Unix time in
 * milliseconds, the rest random. Job ids the API draws are v7: the Redis
 * Streams transport finds a queued job's entry by the id's time (jstore_lua.h,
 * the status index). Thread-safe. */
void uuid_v7(int64_t ms, char out[UUID_STR_LEN]);

/* A version 8 UUID from 16 bytes of a hash: the same name gives the same id
 * (follow-up jobs: a republish after a crash is a duplicate, not a new job). */
void uuid_v8(const unsigned char hash[16], char out[UUID_STR_LEN]);

/* 1 when s is a canonical UUID (any version, either case), else 0. */
int uuid_valid(const char *s);

/* n (at most 1024) random bytes from a per-thread pool refilled from the
 * kernel: for ids and trace ids, not for secrets. */
void uuid_pool_bytes(void *buf, unsigned n);

/* Fill buf with n random bytes from the kernel (getrandom); aborts on failure. */
void uuid_random_bytes(void *buf, unsigned n);

#endif
