-- Agent identities can be revoked (issue 13): the NATS user key an agent enrolled with is kept, so a
-- renewal can be checked against it, and every key that was replaced (re-enrollment) or whose data
-- plane was deleted is listed with when; the orchestrator re-signs the NATS account JWT with these
-- revocations and pushes it to nats-server (services/orchestrator/clients/nats_accounts.py).
ALTER TABLE dataplanes ADD COLUMN nats_user_public_key text;
CREATE TABLE nats_revocations (
    user_public_key  text PRIMARY KEY,
    dataplane_id     text NOT NULL,
    revoked_at       timestamptz NOT NULL DEFAULT now()
);
