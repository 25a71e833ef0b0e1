-- Deploys follow the sender's order, not the order their rows were committed in: a push
-- spooled during an outage and stored after a newer live one must not deploy over it.
-- `pushed_at` is when the push reached us (kept through the spool; now() for an operator's
-- explicit redeploy), `before_sha` the commit the push built on (GitHub's and Gitea's `before`).
ALTER TABLE deploys ADD COLUMN IF NOT EXISTS pushed_at timestamptz;
ALTER TABLE deploys ADD COLUMN IF NOT EXISTS before_sha text;
UPDATE deploys d SET pushed_at = CASE WHEN d.requested_by IS NULL THEN e.received_at ELSE d.queued_at END
FROM webhook_events e WHERE e.id = d.event_id AND d.pushed_at IS NULL;
UPDATE deploys SET pushed_at = queued_at WHERE pushed_at IS NULL;
ALTER TABLE deploys ALTER COLUMN pushed_at SET DEFAULT now();
ALTER TABLE deploys ALTER COLUMN pushed_at SET NOT NULL;
-- The claim looks for a newer push of the same branch.
CREATE INDEX IF NOT EXISTS deploys_branch_order_idx ON deploys (repository, branch, pushed_at);
