SET LOCAL client_min_messages = warning;

-- Checks of FAL's queue API that failed in a row (5xx, 404): the next check backs off, and
-- enough 404s mark the avatar `error`. Reset by a successful check.
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS status_check_failures integer NOT NULL DEFAULT 0;

-- The partial index of trainings the reconciler looks at (avatars_training_idx) is built at
-- start (store/schema.rs): its predicate names the labels of the bot's status enum, which
-- differ between databases.

-- One instance reconciles at a time: it holds the lease, renewing it every cycle. The row also
-- tells operators (`webhook-api status`) when the last run was and what it did.
CREATE TABLE IF NOT EXISTS reconciler_lease (
    name text PRIMARY KEY,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL,
    last_run_at timestamptz,
    last_run_checked integer NOT NULL DEFAULT 0,
    last_run_applied integer NOT NULL DEFAULT 0,
    last_run_errors integer NOT NULL DEFAULT 0
);
