SET LOCAL client_min_messages = warning;

-- Every source's deliveries share `webhook_events`, so operators see one list: FAL's callbacks
-- (source 'fal'), the configured sources (github, gitea, plane, hmac, standard), and requests
-- refused before they were verified ('rejected': no delivery key, no body kept).
ALTER TABLE webhook_events ALTER COLUMN delivery_key DROP NOT NULL;
ALTER TABLE webhook_events ALTER COLUMN payload DROP NOT NULL;
ALTER TABLE webhook_events DROP CONSTRAINT IF EXISTS webhook_events_outcome_check;
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_outcome_check
    CHECK (outcome IN ('applied', 'ignored', 'unmatched', 'accepted', 'rejected', 'failed'))
    -- Existing rows met the narrower check: no need to scan them under a lock.
    NOT VALID;
-- The sender's own delivery id (NULL where it sends none: the key is then the body's hash).
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS delivery_id text;
-- Request headers as received, without signatures, cookies or credentials.
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS headers jsonb;
-- The answer the first delivery got, and how long it took to reach the store.
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS status_code smallint NOT NULL DEFAULT 200;
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS processing_ms real;
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS replays integer NOT NULL DEFAULT 0;
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS last_replayed_at timestamptz;

CREATE INDEX IF NOT EXISTS webhook_events_failures_idx ON webhook_events (id)
    WHERE outcome IN ('rejected', 'unmatched', 'failed');
CREATE INDEX IF NOT EXISTS webhook_events_source_received_idx ON webhook_events (source, received_at);

-- Deploys started by a verified push. One per event (both instances may receive the same
-- delivery); one runs at a time across instances (advisory lock, see src/deploy.rs).
CREATE TABLE IF NOT EXISTS deploys (
    id bigserial PRIMARY KEY,
    event_id bigint NOT NULL UNIQUE REFERENCES webhook_events (id),
    source text NOT NULL,
    repository text NOT NULL,
    branch text NOT NULL,
    commit_sha text,
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'skipped')),
    reason text,
    exit_code integer,
    output text,
    instance_id text,
    queued_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);

CREATE INDEX IF NOT EXISTS deploys_queued_idx ON deploys (id) WHERE state IN ('queued', 'running');
