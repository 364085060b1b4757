/* sim_table.h - the simulator's idempotency table: a string key to a
 * fixed-size record, in memory only.
 *
 * Open addressing with linear probing over 8-byte slots (a 32-bit hash and
 * an entry index); the entries themselves live in chunks of
 * SIM_TABLE_CHUNK_ENTRIES, so an insert costs no allocation of its own and a
 * record's address never moves until sim_table_clear() or sim_table_free().
 * There is no delete: the simulator only forgets everything at once (reset).
 *
 * Pure code (no libevent, no I/O), single-threaded: the sim's event loop is
 * the only caller. Allocation failure aborts (mem.h). */
#ifndef SIM_TABLE_H
#define SIM_TABLE_H

#include <stddef.h>
#include <stdint.h>

#define SIM_TABLE_KEY_MAX 40             /* a key is 1..39 bytes; a UUID is 36 */
#define SIM_TABLE_CHUNK_ENTRIES 4096

struct sim_table;

/* A table of records of value_size bytes, holding at most max_entries keys.
 * seed varies the hash (0 is fine in tests). Free with sim_table_free(). */
struct sim_table *sim_table_new(size_t value_size, uint32_t max_entries, uint64_t seed);
void sim_table_free(struct sim_table *t);          /* NULL-safe */

/* The record stored under key, or NULL. The pointer (8-byte aligned) stays
 * valid until sim_table_clear() or sim_table_free(). */
void *sim_table_find(const struct sim_table *t, const char *key, size_t keylen);

/* The record under key, adding a zeroed one when there is none; *created says
 * which. NULL when the key is empty or too long, or the table is full. */
void *sim_table_get_or_add(struct sim_table *t, const char *key, size_t keylen, int *created);

/* The NUL-terminated key a record returned by this table is stored under. */
const char *sim_table_key(const void *value);

size_t sim_table_count(const struct sim_table *t);

/* The i-th record added (0 <= i < count), for walks in insertion order. */
void *sim_table_at(const struct sim_table *t, size_t i);

/* Forget every record; keeps the memory of the first chunk. */
void sim_table_clear(struct sim_table *t);

/* The hash the table uses (exposed for tests). */
uint64_t sim_table_hash(const char *key, size_t keylen, uint64_t seed);

#endif
