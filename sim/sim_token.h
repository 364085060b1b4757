/* sim_token.h - access tokens, sessions and refresh tokens a simulated
 * system hands out, in memory.
 *
 * A token is random text (a prefix and 32 hex digits) stored with the
 * monotonic time it expires and the generation it was issued in.
 * sim_tokens_expire_all() bumps the generation, so every token issued
 * before is refused from then on ("expire all tokens now"). A token can
 * also be revoked one by one (a rotated refresh token). Tokens are never
 * deleted, only forgotten all at once by sim_tokens_clear() (admin reset).
 * Loop thread only. */
#ifndef SIM_TOKEN_H
#define SIM_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define SIM_TOKEN_LEN 40                 /* buffer size: at most 39 characters and the NUL */
#define SIM_TOKENS_MAX (1u << 20)        /* then issuing fails: reset the sim */

struct sim_table;

struct sim_tokens {
    struct sim_table *t;                 /* token -> struct tok (sim_token.c) */
    uint32_t gen;
    int64_t issued;                      /* tokens issued since the last clear */
};

void sim_tokens_init(struct sim_tokens *tk);
void sim_tokens_cleanup(struct sim_tokens *tk);
void sim_tokens_clear(struct sim_tokens *tk);

/* Issue a token valid for ttl_s seconds: prefix (at most 6 characters) and
 * 32 hex digits into out. Returns 0, or -1 when the store is full. */
int sim_tokens_issue(struct sim_tokens *tk, const char *prefix, int ttl_s,
                     char out[SIM_TOKEN_LEN]);

/* 1 when tok[0..len) was issued, is of this generation, not revoked and not expired. */
int sim_tokens_valid(const struct sim_tokens *tk, const char *tok, size_t len);

/* Refuse tok from now on (no-op when unknown). */
void sim_tokens_revoke(struct sim_tokens *tk, const char *tok, size_t len);

/* Refuse every token issued so far. */
void sim_tokens_expire_all(struct sim_tokens *tk);

#endif
