-- Every verified delivery, kept with its outcome. `delivery_key` makes a redelivery of the
-- same event a duplicate; `deliveries` counts how often it arrived.
CREATE TABLE IF NOT EXISTS webhook_events (
    id bigserial PRIMARY KEY,
    source text NOT NULL,
    delivery_key text NOT NULL UNIQUE,
    fal_request_id text,
    event text NOT NULL,
    avatar_id uuid,
    outcome text NOT NULL CHECK (outcome IN ('applied', 'ignored', 'unmatched')),
    outcome_reason text,
    signature_scheme text NOT NULL,
    http_request_id text,
    instance_id text,
    training_type text,
    payload jsonb NOT NULL,
    deliveries integer NOT NULL DEFAULT 1,
    received_at timestamptz NOT NULL DEFAULT now(),
    last_delivered_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS webhook_events_fal_request_id_idx ON webhook_events (fal_request_id);
CREATE INDEX IF NOT EXISTS webhook_events_received_at_idx ON webhook_events (received_at);
