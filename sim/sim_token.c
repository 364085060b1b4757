#include "sim_token.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "mem.h"
#include "sim_table.h"
#include "uuid.h"

struct tok {
    int64_t expires_ms;                  /* monotonic */
    uint32_t gen;
    uint8_t revoked;
};

void sim_tokens_init(struct sim_tokens *tk)
{
    uint64_t seed;
    uuid_random_bytes(&seed, sizeof(seed));
    *tk = (struct sim_tokens){ .t = sim_table_new(sizeof(struct tok), SIM_TOKENS_MAX, seed) };
}

void sim_tokens_cleanup(struct sim_tokens *tk)
{
    sim_table_free(tk->t);
    tk->t = NULL;
}

void sim_tokens_clear(struct sim_tokens *tk)
{
    sim_table_clear(tk->t);
    tk->issued = 0;
    tk->gen++;
}

int sim_tokens_issue(struct sim_tokens *tk, const char *prefix, int ttl_s,
                     char out[SIM_TOKEN_LEN])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[16];
    int n = snprintf(out, SIM_TOKEN_LEN, "%.6s", prefix);
    uuid_random_bytes(rnd, sizeof(rnd));  /* tokens are secrets: kernel randomness */
    for (int i = 0; i < 16; i++) {
        out[n++] = hex[rnd[i] >> 4];
        out[n++] = hex[rnd[i] & 15];
    }
    out[n] = '\0';
    int created;
    struct tok *t = sim_table_get_or_add(tk->t, out, (size_t)n, &created);
    if (!t || !created)
        return -1;
    t->expires_ms = clock_mono_ms() + (int64_t)ttl_s * 1000;
    t->gen = tk->gen;
    tk->issued++;
    return 0;
}

int sim_tokens_valid(const struct sim_tokens *tk, const char *tok, size_t len)
{
    const struct tok *t = sim_table_find(tk->t, tok, len);
    return t && !t->revoked && t->gen == tk->gen && clock_mono_ms() < t->expires_ms;
}

void sim_tokens_revoke(struct sim_tokens *tk, const char *tok, size_t len)
{
    struct tok *t = sim_table_find(tk->t, tok, len);
    if (t)
        t->revoked = 1;
}

void sim_tokens_expire_all(struct sim_tokens *tk)
{
    tk->gen++;
}
