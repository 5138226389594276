-- Org API keys (`lfk_…`): the orchestrator owns them, every service verifies them through it.
-- Only the SHA-256 of the whole key is kept (with 256 random bits a fast hash is right) and its
-- first characters for people to recognise it; the key itself exists only in the 201 answer.
-- A name is unique among an org's keys that are not revoked, so a revoked key's name can be reused.
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    org         text NOT NULL REFERENCES orgs (name),
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('viewer', 'developer', 'owner')),
    key_sha256  bytea NOT NULL UNIQUE,
    key_prefix  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE UNIQUE INDEX api_keys_org_name_live ON api_keys (org, name) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_org ON api_keys (org, created_at DESC);
