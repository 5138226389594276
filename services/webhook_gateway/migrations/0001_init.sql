-- CI tokens: only the SHA-256 of a token and its first 12 characters are kept.
CREATE TABLE ci_tokens (
    id            text PRIMARY KEY,
    org           text NOT NULL,
    project       text NOT NULL,
    component     text NOT NULL,
    name          text NOT NULL DEFAULT '',
    token_prefix  text NOT NULL,
    token_sha256  bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX ci_tokens_component ON ci_tokens (org, project, component, created_at);

-- Requests the gateway accepted (and stored on JetStream) from CI.
CREATE TABLE accepted_deployments (
    deployment_id    text PRIMARY KEY,
    token_id         text NOT NULL REFERENCES ci_tokens (id),
    org              text NOT NULL,
    project          text NOT NULL,
    component        text NOT NULL,
    image            text NOT NULL,
    idempotency_key  text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
-- One live Idempotency-Key per component; an expired key is set to NULL before reuse.
CREATE UNIQUE INDEX accepted_deployments_idempotency
    ON accepted_deployments (org, project, component, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Components whose webhooks must be signed; the secret itself lives in Vault.
CREATE TABLE signing_required (
    org         text NOT NULL,
    project     text NOT NULL,
    component   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, project, component)
);

-- webhook-id values seen recently (replay protection for signed requests).
CREATE TABLE seen_webhook_ids (
    org         text NOT NULL,
    project     text NOT NULL,
    component   text NOT NULL,
    webhook_id  text NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, project, component, webhook_id)
);
CREATE INDEX seen_webhook_ids_seen_at ON seen_webhook_ids (seen_at);
