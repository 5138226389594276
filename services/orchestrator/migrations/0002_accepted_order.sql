-- Of two deployments of one component in one environment, the one accepted later wins, whatever
-- order their events reach the orchestrator in; this index answers "was a later one recorded?".
CREATE INDEX deployments_accepted ON deployments (component_id, environment, accepted_at DESC);
