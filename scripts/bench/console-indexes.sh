#!/usr/bin/env bash
# What the console's search indexes cost the webhooks' writes: the ingest transaction in
# pgbench on one database, with and without the indexes, in interleaved pairs (so the machine's
# drift hits both alike), each after a CHECKPOINT.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/bench/console-indexes.sh [--help]

Migrates a scratch database with the release webhook-api, seeds AVATARS avatars in training,
then runs PAIRS pairs of pgbench runs (without the console's indexes, then with them) of the
service's ingest transaction: a FAL completion with an avatar id and FAL's body (the indexes
see what the service writes), the avatar locked and updated, a file job. Prints each run's
transactions per second and the ratio of the medians.
Settings (environment, defaults shown):
  PAIRS=${PAIRS:-4}  DURATION=${DURATION:-12}  CONNECTIONS=${CONNECTIONS:-32}  AVATARS=${AVATARS:-200000}
Runs as root (a CHECKPOINT as the postgres user before each run).
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

PAIRS=${PAIRS:-4}
DURATION=${DURATION:-12}
CONNECTIONS=${CONNECTIONS:-32}
AVATARS=${AVATARS:-200000}
cd "$(dirname "$0")/../.."
deps_env=$(scripts/dev/deps.sh)
admin_url=$(sed -n 's/^DATABASE_URL=//p' <<<"$deps_env")
redis_url=$(sed -n 's/^REDIS_URL=//p' <<<"$deps_env")
db=bench_console_indexes
db_url="${admin_url%/*}/$db"
work=$(mktemp -d)
trap 'rm -rf "$work"; psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
log() { echo "console-indexes: $*" >&2; }

cargo build --release --locked -q -p webhook-api
bin="${CARGO_TARGET_DIR:-target}/release/webhook-api"
psql -q "$admin_url" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
  -c "CREATE DATABASE $db" >/dev/null
DATABASE_URL=$db_url REDIS_URL=$redis_url MINIO_BUCKET_NAME=bench LOG_LEVEL=warn "$bin" migrate
psql -q -v ON_ERROR_STOP=1 "$db_url" -c "INSERT INTO avatars (user_id, name, status, fal_request_id)
  SELECT gen_random_uuid(), 'bench', 'TRAINING', 'pgb-' || g FROM generate_series(1, $AVATARS) g" \
  -c "VACUUM ANALYZE avatars" >/dev/null
# A space after each colon: pgbench reads ":name" as one of its variables.
body=$(python3 -c 'import json; print(json.dumps(json.load(open("services/webhook-api/tests/fixtures/fal/ok_flux_lora_fast_training.json")), separators=(",", ": ")).replace("\x27", "\x27\x27"))')
cat >"$work/ingest.sql" <<SQL
\set n random(1, :avatars)
\set k random(1, 2000000000)
BEGIN;
SELECT id FROM avatars WHERE fal_request_id = 'pgb-' || :n ORDER BY created_at DESC NULLS LAST LIMIT 1 FOR UPDATE;
INSERT INTO webhook_events (source, delivery_key, fal_request_id, event, avatar_id, outcome, signature_scheme, http_request_id, instance_id, payload, processing_ms) VALUES ('fal', 'pgb:' || :k, 'pgb-' || :n, 'completed', md5('a' || :k)::uuid, 'applied', 'hmac', 'r', 'i', '$body', 1.5) ON CONFLICT (delivery_key) DO UPDATE SET deliveries = webhook_events.deliveries + 1 RETURNING id;
UPDATE avatars SET status = 'COMPLETED', updated_at = now() WHERE fal_request_id = 'pgb-' || :n;
INSERT INTO file_jobs (avatar_id, files) VALUES ('00000000-0000-0000-0000-000000000000', '[]') RETURNING id;
COMMIT;
SQL
indexes() { # create | drop
  local definition name
  while IFS='|' read -r name definition; do
    if [[ $1 == create ]]; then
      psql -q -v ON_ERROR_STOP=1 "$db_url" -c "CREATE INDEX $name ON $definition" >/dev/null
    else
      psql -q "$db_url" -c "SET client_min_messages = warning" -c "DROP INDEX IF EXISTS $name" >/dev/null
    fi
  done <<'INDEXES'
webhook_events_source_event_idx|webhook_events (source, event, id)
webhook_events_delivery_id_idx|webhook_events (delivery_id) WHERE delivery_id IS NOT NULL
webhook_events_avatar_idx|webhook_events (avatar_id, id) WHERE avatar_id IS NOT NULL
webhook_events_payload_idx|webhook_events USING gin (payload jsonb_path_ops) WITH (fastupdate = off)
INDEXES
}
run() { # LABEL → transactions per second
  psql -q "$db_url" -c "UPDATE avatars SET status = 'TRAINING'" >/dev/null
  runuser -u postgres -- psql -qc CHECKPOINT >/dev/null
  sync
  pgbench -n -M prepared -c "$CONNECTIONS" -j 2 -T "$DURATION" -D avatars="$AVATARS" \
    -f "$work/ingest.sql" "$db_url" 2>"$work/pgbench.err" | awk '/^tps = / {printf "%.0f", $3}'
}
without=() with=()
for pair in $(seq 1 "$PAIRS"); do
  indexes drop
  without+=("$(run without)")
  indexes create
  with+=("$(run with)")
  [[ -n "${with[-1]}" && -n "${without[-1]}" ]] || { cat "$work/pgbench.err" >&2; exit 1; }
  log "pair $pair: without ${without[-1]} tps, with ${with[-1]} tps"
done
python3 - "${without[*]}" "${with[*]}" <<'PY'
import statistics, sys
without, with_ = ([float(x) for x in a.split()] for a in sys.argv[1:3])
a, b = statistics.median(without), statistics.median(with_)
print(f"without the console's indexes: {' '.join(f'{x:.0f}' for x in without)} tps (median {a:.0f})")
print(f"with them:                     {' '.join(f'{x:.0f}' for x in with_)} tps (median {b:.0f})")
print(f"with / without: {b / a:.3f} ({(b / a - 1) * 100:+.1f} %)")
PY
