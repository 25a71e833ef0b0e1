-- The ingest transaction webhook-api runs for a signed completion (lock the avatar, record the
-- delivery, apply it, enqueue the file job), for pgbench: the database's ceiling for this work.
-- Setup: a migrated database (own or the bot's live schema: the literals take the columns' types)
-- with avatars 'pgb-1'..'pgb-N' in status TRAINING. Run:
--   pgbench -n -M prepared -c 32 -j 2 -T 15 -D avatars=N -f scripts/bench/ingest.pgbench.sql DBURL
\set n random(1, :avatars)
\set k random(1, 2000000000)
BEGIN;
SELECT id, status::text, COALESCE(training_progress, 0) FROM avatars WHERE fal_request_id = 'pgb-' || :n ORDER BY created_at DESC NULLS LAST LIMIT 1 FOR UPDATE;
INSERT INTO webhook_events (source, delivery_key, fal_request_id, event, avatar_id, outcome, signature_scheme, http_request_id, instance_id, payload, processing_ms) VALUES ('fal', 'pgb:' || :k, 'pgb-' || :n, 'completed', NULL, 'applied', 'hmac', 'r', 'i', '{"request_id":"x","status":"OK","payload":{"diffusers_lora_file":{"url":"https://v3.fal.media/x"}}}', 1.5) ON CONFLICT (delivery_key) DO UPDATE SET deliveries = webhook_events.deliveries + 1 RETURNING id, (xmax = 0), outcome;
UPDATE avatars SET status = 'COMPLETED', training_progress = 100, training_completed_at = now(), diffusers_lora_file_url = 'https://v3.fal.media/x', fal_response_data = '{"request_id":"x","status":"OK","payload":{"diffusers_lora_file":{"url":"https://v3.fal.media/x"}}}', updated_at = now(), last_status_check = now() WHERE fal_request_id = 'pgb-' || :n;
INSERT INTO file_jobs (avatar_id, files) VALUES ('00000000-0000-0000-0000-000000000000', '[]') RETURNING id;
COMMIT;
