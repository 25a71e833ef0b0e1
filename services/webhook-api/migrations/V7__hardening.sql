SET LOCAL client_min_messages = warning;

-- Every replay and deploy-related call of the operators' API, with the token's name.
CREATE TABLE IF NOT EXISTS operator_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    token_name text NOT NULL,
    action text NOT NULL,
    target text,
    status_code smallint NOT NULL,
    instance_id text NOT NULL,
    http_request_id text NOT NULL
);

-- A deploy is bound to what was signed: once per (repository, branch, commit), whatever the
-- delivery id a replayed push carries. Only an operator's explicit request (`requested_by`,
-- the token's name) deploys a commit again.
ALTER TABLE deploys ADD COLUMN IF NOT EXISTS requested_by text;
ALTER TABLE deploys DROP CONSTRAINT IF EXISTS deploys_event_id_key;
-- Deploys of one commit queued before this rule stay listed, as if asked for by hand.
UPDATE deploys d SET requested_by = 'before-v7'
WHERE requested_by IS NULL AND commit_sha IS NOT NULL AND EXISTS (
    SELECT FROM deploys e
    WHERE e.repository = d.repository AND e.branch = d.branch
      AND e.commit_sha = d.commit_sha AND e.id < d.id
);
CREATE UNIQUE INDEX IF NOT EXISTS deploys_event_once ON deploys (event_id)
    WHERE requested_by IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS deploys_commit_once ON deploys (repository, branch, commit_sha)
    WHERE requested_by IS NULL;

-- A copy's `avatar.files_stored` is announced once, surely: the worker marks the job after
-- the XADD, and the late announcer announces the jobs left unmarked (Redis was down, or the
-- instance died between the two). Jobs finished before this migration count as announced.
ALTER TABLE file_jobs ADD COLUMN IF NOT EXISTS announced_at timestamptz;
UPDATE file_jobs SET announced_at = COALESCE(finished_at, now())
WHERE state = 'done' AND announced_at IS NULL;
CREATE INDEX IF NOT EXISTS file_jobs_unannounced_idx ON file_jobs (finished_at)
    WHERE state = 'done' AND announced_at IS NULL;
