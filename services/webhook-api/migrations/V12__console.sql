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
