-- The least any durable receiver of a completion must do, for pgbench: record the event, lock
-- the avatar, update it, commit (a drawn key that repeats is skipped, not an error). No file job
-- and nothing read back for an answer: the floor under the service's own transaction
-- (ingest.pgbench.sql), and the baseline of the throughput target.
-- Setup: a migrated database (own or the bot's live schema: the literals take the columns' types)
-- with avatars 'pgb-1'..'pgb-N' in status TRAINING. Run:
--   pgbench -n -M prepared -c 32 -j 2 -T 15 -D avatars=N -f scripts/bench/minimal.pgbench.sql DBURL
\set n random(1, :avatars)
\set k random(1, 2000000000)
BEGIN;
INSERT INTO webhook_events (source, delivery_key, fal_request_id, event, outcome, signature_scheme, http_request_id, instance_id, payload) VALUES ('fal', 'pgb:' || :k, 'pgb-' || :n, 'completed', 'applied', 'hmac', 'r', 'i', '{"request_id":"x","status":"OK","payload":{"diffusers_lora_file":{"url":"https://v3.fal.media/x"}}}') ON CONFLICT DO NOTHING;
SELECT id FROM avatars WHERE fal_request_id = 'pgb-' || :n FOR UPDATE;
UPDATE avatars SET status = 'COMPLETED', training_progress = 100, updated_at = now() WHERE fal_request_id = 'pgb-' || :n;
COMMIT;
