-- Registries: metadata only. The secret (if any) is in Vault; secret_version is the
-- version of it that is current (the row is the pointer, so a Vault write whose
-- commit failed is never read).
CREATE TABLE registries (
    id              text PRIMARY KEY,
    org             text NOT NULL,
    display_name    text NOT NULL,
    host            text NOT NULL,
    auth_type       text NOT NULL CHECK (auth_type IN ('anonymous', 'basic', 'docker-config', 'vendor')),
    username        text,
    vendor          text,
    warnings        jsonb NOT NULL DEFAULT '[]'::jsonb,
    secret_version  integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (secret_version IS NULL OR auth_type IN ('basic', 'docker-config'))
);
CREATE UNIQUE INDEX registries_display_name ON registries (org, lower(display_name));
CREATE INDEX registries_org ON registries (org, created_at, id);

-- Who did what to which registry, and how it went. Never a secret.
CREATE TABLE audit_events (
    id           bigserial PRIMARY KEY,
    org          text NOT NULL,
    registry_id  text NOT NULL,
    action       text NOT NULL,
    actor        text NOT NULL,
    outcome      text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_registry ON audit_events (org, registry_id, id);
CREATE INDEX audit_events_org ON audit_events (org, id);
