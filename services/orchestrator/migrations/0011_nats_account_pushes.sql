-- The NATS account JWT is pushed by any orchestrator replica (after a revocation, and at start), and
-- nats-server takes the last one pushed. One row, updated by every push in the transaction that reads
-- the revocations: the update's row lock serializes the pushes (the last one always has every
-- revocation committed before it), and `last_iat` makes each JWT's `iat` greater than the one before,
-- whatever the replicas' clocks say (the resolver keeps the newest on disk across restarts).
CREATE TABLE nats_account_pushes (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_iat  bigint NOT NULL DEFAULT 0
);
INSERT INTO nats_account_pushes DEFAULT VALUES;
