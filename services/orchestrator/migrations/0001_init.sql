-- Orchestrator state. Unqualified names: search_path is the orchestrator schema.

CREATE TABLE orgs (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dataplanes (
    id                       text PRIMARY KEY,
    org                      text NOT NULL REFERENCES orgs (name) ON DELETE CASCADE,
    name                     text NOT NULL,
    ingress_class            text,
    -- sha256 (hex) of the one-time enrollment token; NULL once used.
    enrollment_token_sha256  text UNIQUE,
    public_key               text,
    enrolled_at              timestamptz,
    agent_version            text,
    last_seen                timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dataplanes_org_name_key UNIQUE (org, name)
);

CREATE TABLE environments (
    id            text PRIMARY KEY,
    org           text NOT NULL REFERENCES orgs (name) ON DELETE CASCADE,
    name          text NOT NULL,
    dataplane_id  text NOT NULL REFERENCES dataplanes (id),
    position      integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT environments_org_name_key UNIQUE (org, name),
    CONSTRAINT environments_org_position_key UNIQUE (org, position)
);

CREATE TABLE projects (
    id          text PRIMARY KEY,
    org         text NOT NULL REFERENCES orgs (name) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projects_org_name_key UNIQUE (org, name)
);

CREATE TABLE components (
    id             text PRIMARY KEY,
    org            text NOT NULL,
    project        text NOT NULL,
    name           text NOT NULL,
    type           text NOT NULL
                   CHECK (type IN ('service', 'web-application', 'scheduled-task', 'manual-task')),
    registry_id    text NOT NULL,
    registry_host  text NOT NULL,
    repository     text NOT NULL,
    image          text NOT NULL,
    port           integer,
    schedule       text,
    timezone       text,
    env            jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT components_org_project_name_key UNIQUE (org, project, name),
    FOREIGN KEY (org, project) REFERENCES projects (org, name) ON DELETE CASCADE
);
CREATE INDEX components_registry ON components (org, registry_id);

-- Orders the deployments of one component in one environment: newer (higher) wins.
CREATE SEQUENCE deployment_seq AS bigint;

CREATE TABLE deployments (
    id               text PRIMARY KEY,
    component_id     text NOT NULL REFERENCES components (id) ON DELETE CASCADE,
    org              text NOT NULL,
    project          text NOT NULL,
    component        text NOT NULL,
    environment      text NOT NULL,
    dataplane_id     text,
    seq              bigint NOT NULL DEFAULT nextval('deployment_seq') UNIQUE,
    image            text NOT NULL,
    digest           text,
    status           text NOT NULL
                     CHECK (status IN ('pending', 'dispatched', 'progressing', 'succeeded', 'failed', 'superseded')),
    reason           text,
    message          text,
    source           text NOT NULL CHECK (source IN ('webhook', 'manual', 'promotion', 'rollback')),
    notes            jsonb NOT NULL DEFAULT '[]',
    token_prefix     text,
    idempotency_key  text,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    accepted_at      timestamptz,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    dispatched_at    timestamptz,
    applied_at       timestamptz,
    reported_at      timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployments_history ON deployments (component_id, environment, seq DESC);
CREATE INDEX deployments_due ON deployments (next_attempt_at) WHERE status = 'pending';

CREATE TABLE executions (
    id               text PRIMARY KEY,
    deployment_id    text NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    component_id     text NOT NULL REFERENCES components (id) ON DELETE CASCADE,
    environment      text NOT NULL,
    args             jsonb NOT NULL DEFAULT '[]',
    status           text NOT NULL CHECK (status IN ('pending', 'dispatched', 'running', 'succeeded', 'failed')),
    reason           text,
    message          text,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    dispatched_at    timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX executions_component ON executions (component_id, created_at DESC);
CREATE INDEX executions_due ON executions (next_attempt_at) WHERE status = 'pending';
