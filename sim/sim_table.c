#include "sim_table.h"

#include <stdlib.h>
#include <string.h>

#include "mem.h"

#define SLOTS_MIN 1024u

struct slot {
    uint32_t hash;                       /* low 32 bits of the key's hash */
    uint32_t ref;                        /* entry index + 1; 0 = empty */
};

struct sim_table {
    struct slot *slots;
    uint32_t mask;                       /* slot count - 1 (a power of two) */
    uint32_t count;
    uint32_t max_entries;
    size_t entry_size;                   /* key area + value, 8-byte multiple */
    char **chunks;
    size_t nchunks;
    uint64_t seed;
};

/* ---- low level ----------------------------------------------------------- */

uint64_t sim_table_hash(const char *key, size_t keylen, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;          /* FNV-1a ... */
    for (size_t i = 0; i < keylen; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;                                       /* ... and murmur3's fmix64 */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static char *entry_at(const struct sim_table *t, uint32_t idx)
{
    return t->chunks[idx / SIM_TABLE_CHUNK_ENTRIES] +
           (size_t)(idx % SIM_TABLE_CHUNK_ENTRIES) * t->entry_size;
}

/* The slot holding key, or the empty slot where it would go. */
static struct slot *probe(const struct sim_table *t, const char *key, size_t keylen,
                          uint32_t h)
{
    uint32_t i = h & t->mask;
    for (;;) {
        struct slot *sl = &t->slots[i];
        if (sl->ref == 0)
            return sl;
        if (sl->hash == h) {
            const char *k = entry_at(t, sl->ref - 1);
            if (memcmp(k, key, keylen) == 0 && k[keylen] == '\0')
                return sl;
        }
        i = (i + 1) & t->mask;
    }
}

static void grow_slots(struct sim_table *t)
{
    uint32_t ncap = (t->mask + 1) * 2;
    struct slot *ns = xcalloc(ncap, sizeof(*ns));
    for (uint32_t i = 0; i <= t->mask; i++) {
        struct slot *sl = &t->slots[i];
        if (sl->ref == 0)
            continue;
        uint32_t j = sl->hash & (ncap - 1);
        while (ns[j].ref != 0)
            j = (j + 1) & (ncap - 1);
        ns[j] = *sl;
    }
    free(t->slots);
    t->slots = ns;
    t->mask = ncap - 1;
}

/* ---- API ------------------------------------------------------------------ */

struct sim_table *sim_table_new(size_t value_size, uint32_t max_entries, uint64_t seed)
{
    CV_ASSERT(max_entries > 0 && max_entries <= (1u << 30));
    struct sim_table *t = xcalloc(1, sizeof(*t));
    t->entry_size = SIM_TABLE_KEY_MAX + ((value_size + 7) & ~(size_t)7);
    t->max_entries = max_entries;
    t->seed = seed;
    t->slots = xcalloc(SLOTS_MIN, sizeof(*t->slots));
    t->mask = SLOTS_MIN - 1;
    return t;
}

void sim_table_free(struct sim_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nchunks; i++)
        free(t->chunks[i]);
    free(t->chunks);
    free(t->slots);
    free(t);
}

void *sim_table_find(const struct sim_table *t, const char *key, size_t keylen)
{
    if (keylen == 0 || keylen >= SIM_TABLE_KEY_MAX)
        return NULL;
    uint32_t h = (uint32_t)sim_table_hash(key, keylen, t->seed);
    struct slot *sl = probe(t, key, keylen, h);
    if (sl->ref == 0)
        return NULL;
    return entry_at(t, sl->ref - 1) + SIM_TABLE_KEY_MAX;
}

void *sim_table_get_or_add(struct sim_table *t, const char *key, size_t keylen, int *created)
{
    *created = 0;
    if (keylen == 0 || keylen >= SIM_TABLE_KEY_MAX)
        return NULL;
    uint32_t h = (uint32_t)sim_table_hash(key, keylen, t->seed);
    struct slot *sl = probe(t, key, keylen, h);
    if (sl->ref != 0)
        return entry_at(t, sl->ref - 1) + SIM_TABLE_KEY_MAX;
    if (t->count >= t->max_entries)
        return NULL;
    /* keep the load at or below one half so probes stay short */
    if ((size_t)(t->count + 1) * 2 > (size_t)t->mask + 1) {
        grow_slots(t);
        sl = probe(t, key, keylen, h);
    }
    uint32_t idx = t->count;
    size_t chunk = idx / SIM_TABLE_CHUNK_ENTRIES;
    if (chunk >= t->nchunks) {
        t->chunks = xrealloc(t->chunks, (t->nchunks + 1) * sizeof(*t->chunks));
        t->chunks[t->nchunks++] = xmalloc(SIM_TABLE_CHUNK_ENTRIES * t->entry_size);
    }
    char *e = entry_at(t, idx);
    memset(e, 0, t->entry_size);
    memcpy(e, key, keylen);
    sl->hash = h;
    sl->ref = idx + 1;
    t->count++;
    *created = 1;
    return e + SIM_TABLE_KEY_MAX;
}

const char *sim_table_key(const void *value)
{
    return (const char *)value - SIM_TABLE_KEY_MAX;
}

size_t sim_table_count(const struct sim_table *t)
{
    return t->count;
}

void *sim_table_at(const struct sim_table *t, size_t i)
{
    CV_ASSERT(i < t->count);
    return entry_at(t, (uint32_t)i) + SIM_TABLE_KEY_MAX;
}

void sim_table_clear(struct sim_table *t)
{
    for (size_t i = 1; i < t->nchunks; i++)
        free(t->chunks[i]);
    if (t->nchunks > 1)
        t->nchunks = 1;
    free(t->slots);
    t->slots = xcalloc(SLOTS_MIN, sizeof(*t->slots));
    t->mask = SLOTS_MIN - 1;
    t->count = 0;
}
