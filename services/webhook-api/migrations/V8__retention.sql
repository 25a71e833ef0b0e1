SET LOCAL client_min_messages = warning;

-- Retention (`retention.rs`): after RETENTION_PAYLOAD_DAYS a delivery's payload and headers are
-- dropped; the row keeps its metadata and what the payload was: its size and a SHA-256 of the
-- stored JSON text, so dedup, counts and "was it this body?" still work.
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS payload_sha256 text;
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS payload_bytes integer;
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS payload_dropped_at timestamptz;

-- How far each retention rule has gone through webhook_events, by id: a run goes on from there
-- along the primary key instead of scanning again what it kept.
CREATE TABLE IF NOT EXISTS retention_progress (
    rule text PRIMARY KEY,
    through_id bigint NOT NULL DEFAULT 0
);
