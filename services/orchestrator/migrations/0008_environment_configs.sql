-- Per-environment configuration (issue 14): every change is a new, immutable version.
-- A deployment pins the version it runs with (`config_version`): a rollback brings back the
-- version of the last succeeded deployment, everything else takes the environment's current one.
-- No secret value is stored here: `secret_names` lists names, `secrets_version` is the KV v2
-- version (in Vault) the credentials service seals at dispatch.
CREATE TABLE environment_configs (
    component_id     text NOT NULL REFERENCES components (id) ON DELETE CASCADE,
    environment      text NOT NULL,
    version          integer NOT NULL CHECK (version >= 1),
    body             jsonb NOT NULL,
    secret_names     jsonb NOT NULL DEFAULT '[]',
    secrets_version  integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text,
    PRIMARY KEY (component_id, environment, version)
);

ALTER TABLE deployments ADD COLUMN config_version integer;
ALTER TABLE deployments ADD COLUMN rolled_back_by text;
ALTER TABLE deployments DROP CONSTRAINT deployments_source_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_source_check
    CHECK (source IN ('webhook', 'manual', 'promotion', 'rollback', 'config'));

-- record_deployment gains the config version: NULL takes the environment's current version (read
-- under the same advisory lock, so a config change and a deploy of one pair are ordered).
DROP FUNCTION record_deployment(text, text, text, text, text, text, text, text, text, text, text, text,
                                text, jsonb, text, text, timestamptz);
CREATE FUNCTION record_deployment(
    p_id text, p_component_id text, p_org text, p_project text, p_component text,
    p_environment text, p_dataplane_id text, p_image text, p_digest text, p_status text,
    p_reason text, p_message text, p_source text, p_notes jsonb, p_token_prefix text,
    p_idempotency_key text, p_accepted_at timestamptz, p_config_version integer DEFAULT NULL
) RETURNS SETOF deployments LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    newer text;
    inserted deployments;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(p_component_id), hashtext(p_environment));
    IF p_config_version IS NULL THEN
        SELECT max(c.version) INTO p_config_version FROM environment_configs c
         WHERE c.component_id = p_component_id AND c.environment = p_environment;
    END IF;
    IF p_status NOT IN ('succeeded', 'failed', 'superseded') THEN
        SELECT d.id INTO newer FROM deployments d
         WHERE d.component_id = p_component_id AND d.environment = p_environment
           AND d.accepted_at > p_accepted_at AND d.id <> p_id
         ORDER BY d.accepted_at DESC LIMIT 1;
        IF newer IS NOT NULL THEN
            p_status := 'superseded';
            p_reason := 'superseded';
            p_message := format('superseded by %s, which was accepted later but recorded first', newer);
            p_notes := p_notes || jsonb_build_array(p_message);
        END IF;
    END IF;
    INSERT INTO deployments (id, component_id, org, project, component, environment, dataplane_id,
                             image, digest, status, reason, message, source, notes, token_prefix,
                             idempotency_key, accepted_at, finished_at, config_version)
    VALUES (p_id, p_component_id, p_org, p_project, p_component, p_environment, p_dataplane_id,
            p_image, p_digest, p_status, p_reason, p_message, p_source, p_notes, p_token_prefix,
            p_idempotency_key, p_accepted_at,
            CASE WHEN p_status IN ('succeeded', 'failed', 'superseded') THEN now() END, p_config_version)
    ON CONFLICT (id) DO NOTHING
    RETURNING * INTO inserted;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN NEXT inserted;
    IF p_status NOT IN ('succeeded', 'failed', 'superseded') THEN
        RETURN QUERY
        UPDATE deployments d
           SET status = 'superseded', reason = 'superseded', message = 'superseded by ' || p_id,
               finished_at = now(), updated_at = now()
         WHERE d.component_id = p_component_id AND d.environment = p_environment
           AND d.seq < inserted.seq AND d.status IN ('pending', 'dispatched', 'progressing')
        RETURNING d.*;
    END IF;
END
$$;
