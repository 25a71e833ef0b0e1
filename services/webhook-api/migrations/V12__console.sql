-- The operators' console in the browser: a session per sign-in. The session id is only in the
-- browser's cookie (its SHA-256 here); the token it was opened with only as its digest, so a
-- token removed from OPERATOR_TOKENS or changed ends its sessions. Its search indexes are
-- built after start, concurrently (tasks/console_indexes.rs), not here.
CREATE TABLE IF NOT EXISTS console_sessions (
    id_sha256 bytea PRIMARY KEY,
    token_name text NOT NULL,
    token_sha256 bytea NOT NULL,
    csrf text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expires_idx ON console_sessions (expires_at);

-- A replay of every delivery a filter matches, asked for in the console and worked through by
-- any instance (tasks/console_replays.rs) under a lease, newest first from `cursor` down: the
-- set is fixed when it is asked for (deliveries stored later are not in it), at most `cap`.
CREATE TABLE IF NOT EXISTS console_replays (
    id bigserial PRIMARY KEY,
    requested_by text NOT NULL,
    -- The filter (store::console::DeliveryFilter), and as the deliveries page writes it.
    filter jsonb NOT NULL,
    filter_query text NOT NULL,
    estimate bigint NOT NULL,
    cap integer NOT NULL CHECK (cap > 0),
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'done', 'cancelled', 'failed')),
    cancel_requested boolean NOT NULL DEFAULT false,
    -- Deliveries below this id are still to do.
    cursor bigint NOT NULL,
    -- Replayed and done (applied, announced), skipped (a duplicate, nothing to replay), failed.
    done integer NOT NULL DEFAULT 0,
    skipped integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    last_error text,
    lease_owner text,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS console_replays_open_idx ON console_replays (id)
    WHERE state IN ('queued', 'running');
