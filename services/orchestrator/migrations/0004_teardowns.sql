-- Deleting a component removes what it runs on the data planes. The deletion and these rows commit
-- together; the sweeper publishes each as a RemoveCommand on the data plane's deploy subject (in
-- order with its deployments) and deletes the row once JetStream has it. `seq` comes from the
-- deployments' sequence: above every deployment of the component, so an agent can tell a stale
-- deploy command that arrives after the removal.
CREATE TABLE teardowns (
    id               text PRIMARY KEY,
    dataplane_id     text NOT NULL,
    org              text NOT NULL,
    project          text NOT NULL,
    component        text NOT NULL,
    environment      text NOT NULL,
    namespace        text NOT NULL,
    seq              bigint NOT NULL DEFAULT nextval('deployment_seq'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX teardowns_due ON teardowns (next_attempt_at);
