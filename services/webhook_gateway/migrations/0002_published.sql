-- When the ImagePushed of an accepted request was stored on JetStream. The row is committed first and
-- published after (see repository.py): NULL means not known to be published yet, and a retry with the
-- same Idempotency-Key publishes it again (same Nats-Msg-Id, so JetStream keeps one copy).
ALTER TABLE accepted_deployments ADD COLUMN published_at timestamptz;
-- Rows from before this migration were committed only after their publish.
UPDATE accepted_deployments SET published_at = created_at;
