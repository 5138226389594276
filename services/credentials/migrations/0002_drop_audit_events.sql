-- Registry changes are audited in the one shared trail now (the AUDIT stream, recorded and
-- served by the orchestrator at GET /v1/orgs/{org}/audit); nothing reads this table any more.
DROP TABLE IF EXISTS audit_events;
