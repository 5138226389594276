-- An enrollment token that nobody used is a standing credential: it now expires (24 hours by default,
-- LANDFALL_ENROLLMENT_TOKEN_TTL_SECONDS). Tokens issued before this migration get 24 hours from now.
ALTER TABLE dataplanes ADD COLUMN enrollment_expires_at timestamptz;
UPDATE dataplanes SET enrollment_expires_at = now() + interval '24 hours'
    WHERE enrollment_token_sha256 IS NOT NULL;
