SET LOCAL client_min_messages = warning;

-- One job per completed avatar with files to copy from FAL's CDN into S3. Enqueued in the
-- transaction that applies the completion; claimed with FOR UPDATE SKIP LOCKED under a lease.
CREATE TABLE IF NOT EXISTS file_jobs (
    id bigserial PRIMARY KEY,
    avatar_id uuid NOT NULL,
    event_id bigint REFERENCES webhook_events (id),
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'running', 'done', 'failed', 'dead')),
    files jsonb NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    run_after timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_expires_at timestamptz,
    last_error text,
    -- Multipart uploads an attempt started ({key, upload_id}); the next attempt aborts them, so
    -- a worker killed mid-copy leaves nothing behind on any S3 server.
    open_uploads jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE INDEX IF NOT EXISTS file_jobs_claimable_idx ON file_jobs (run_after)
    WHERE state IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS file_jobs_avatar_idx ON file_jobs (avatar_id);

-- What was stored: one row per avatar and file kind.
CREATE TABLE IF NOT EXISTS avatar_files (
    avatar_id uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('lora', 'config')),
    object_key text NOT NULL,
    sha256 text NOT NULL,
    size_bytes bigint NOT NULL,
    source_url text NOT NULL,
    job_id bigint REFERENCES file_jobs (id),
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (avatar_id, kind)
);

-- Why the files could not be copied, for the bot and operators (cleared when they are).
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS files_error text;
