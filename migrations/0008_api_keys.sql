-- 0008_api_keys.sql - API keys an operator adds and revokes without a restart
-- (issue 9, `conveyorctl keys add|revoke|list`).
--
-- Keys of the configuration (api_keys, CONVEYOR_API_KEYS "name:sha256:scopes")
-- stay as they are; these rows come in addition. Every conveyor-api event loop
-- reads the table every few seconds (api/api_keys.c), so a key added here works
-- and a key revoked here stops working within that period, with no restart.
--
-- Only the SHA-256 of a key is stored, never the key: conveyorctl prints the
-- secret once and forgets it. A revoked row stays (revoked_at set) so that its
-- name is not silently reused and `keys list` shows when it went.
--
-- A row with sha256 NULL is a revocation only: it names a key of the
-- configuration (same name) that must no longer be accepted, until the
-- configuration drops it at the next deploy. The API refuses every key whose
-- name is revoked here, whether it comes from this table or the configuration.
--
-- last_used_at is written by the API at most once per refresh period per loop
-- (not per request): "within a few seconds", never exact.

CREATE TABLE api_keys (
    name         text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._-]{1,63}$'),
    sha256       text UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    scopes       text[] NOT NULL DEFAULT '{}' CHECK (cardinality(scopes) <= 16),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz,
    -- a key has scopes; a revocation-only row is revoked from the start
    CHECK (sha256 IS NULL OR cardinality(scopes) >= 1),
    CHECK (sha256 IS NOT NULL OR revoked_at IS NOT NULL)
);
