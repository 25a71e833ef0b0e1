SET LOCAL client_min_messages = warning;

-- What a finished training means to the avatar's owner, done after the commit that applied it
-- (`followups.rs`): a Telegram message (ready or failed), and the removal of the training
-- photos. Recorded by the statement that applies the change (`store/schema`), so a change and
-- its follow-ups commit together; one per applying delivery and kind, so a redelivery, a replay
-- or a second instance never records a second. Claimed like file jobs, under a lease.
CREATE TABLE IF NOT EXISTS avatar_followups (
    id bigserial PRIMARY KEY,
    avatar_id uuid NOT NULL,
    -- The delivery that applied the change (`webhook_events.delivery_key`).
    delivery_key text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('notify_ready', 'notify_failed', 'delete_photos')),
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'running', 'done', 'failed', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    run_after timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_expires_at timestamptz,
    -- What settled it: `sent`, `skipped: …` (done); Telegram's refusal (failed); the last error.
    last_error text,
    result text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    UNIQUE (delivery_key, kind)
);

-- Only what claiming needs: each index is one more write on the completion's statement (no
-- query looks a follow-up up by its avatar).
CREATE INDEX IF NOT EXISTS avatar_followups_claimable_idx ON avatar_followups (run_after)
    WHERE state IN ('pending', 'running');

-- A style avatar (FAL's flux-pro-trainer) is generated with from its `finetune_id`; the bot's
-- table has the column, a table this service created did not.
ALTER TABLE avatars ADD COLUMN IF NOT EXISTS finetune_id varchar(255);
