-- A config rollout (`source = 'config'`) deploys again an image that was accepted earlier, with a
-- new config version: its own acceptance time (when the PUT came) says nothing about that image.
-- So a webhook accepted before the rollout but recorded after it (its event was still on its way
-- while the PUT ran) is no longer recorded `superseded` by the rollout: it is recorded as usual,
-- supersedes the rollout (still in flight) and runs with the new config version. Only the check of
-- step 2 changes; everything else is record_deployment of 0008.
CREATE OR REPLACE FUNCTION record_deployment(
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
           AND d.accepted_at > p_accepted_at AND d.id <> p_id AND d.source <> 'config'
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
