#!/usr/bin/env bash
# A first quick load check: signed FAL completions against one release instance, with wrk.
# Every request is a distinct, HMAC-signed callback for a distinct avatar in `training`, so each
# one is a real commit ("applied"), not a duplicate.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/bench/quick-load.sh [--help]

Starts PostgreSQL and Redis (scripts/dev/deps.sh), one release webhook-api on a free port with
a database of its own, then drives it with wrk. Settings (environment, defaults shown):
  DURATION=${DURATION:-20s}       wrk run time
  CONNECTIONS=${CONNECTIONS:-32}   concurrent kept-alive connections
  THREADS=${THREADS:-2}         wrk threads
  AVATARS=${AVATARS:-200000}    avatars (and distinct signed callbacks) prepared
  PORT=${PORT:-18400}         port of the instance under test
Prints wrk's figures (requests/s, latency percentiles) and the outcome counts from PostgreSQL.
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
AVATARS=${AVATARS:-200000}
PORT=${PORT:-18400}
SECRET=quick-load-secret

cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
deps_env=$(scripts/dev/deps.sh)
admin_url=$(sed -n 's/^DATABASE_URL=//p' <<<"$deps_env")
redis_url=$(sed -n 's/^REDIS_URL=//p' <<<"$deps_env")
# The S3 settings are required; the file worker is off (FILE_WORKERS=0) so that the CDN URLs in
# the generated callbacks are never fetched.
while IFS= read -r line; do
  [[ "$line" == MINIO_* ]] && export "${line?}"
done <<<"$deps_env"
export MINIO_BUCKET_NAME=quick-load FILE_WORKERS=0
db="quickload_$$"
db_url="${admin_url%/*}/$db"
work=$(mktemp -d)
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q -p webhook-api
bin="${CARGO_TARGET_DIR:-target}/release/webhook-api"
psql -q "$admin_url" -c "CREATE DATABASE $db" >/dev/null
DATABASE_URL=$db_url REDIS_URL=$redis_url "$bin" migrate

echo "preparing $AVATARS avatars and signed callbacks" >&2
psql -q "$db_url" -c "INSERT INTO avatars (user_id, name, status, fal_request_id)
  SELECT gen_random_uuid(), 'load', 'training', 'load-' || g FROM generate_series(1, $AVATARS) g" >/dev/null
python3 - "$AVATARS" "$SECRET" >"$work/requests.tsv" <<'PY'
import hashlib, hmac, sys
count, secret = int(sys.argv[1]), sys.argv[2].encode()
for i in range(1, count + 1):
    body = ('{"request_id":"load-%d","gateway_request_id":"load-%d","status":"OK","error":null,'
            '"payload":{"diffusers_lora_file":{"url":"https://v3.fal.media/files/load/%d_lora.safetensors",'
            '"content_type":"application/octet-stream","file_name":"pytorch_lora_weights.safetensors",'
            '"file_size":89745224},"config_file":{"url":"https://v3.fal.media/files/load/%d_config.json",'
            '"file_name":"config.json","file_size":942}}}') % (i, i, i, i)
    sig = hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()
    print(f"{sig}\t{body}")
PY

cat >"$work/signed.lua" <<LUA
local requests = {}
for line in io.lines("$work/requests.tsv") do
  local sig, body = line:match("^(%x+)\t(.*)$")
  requests[#requests + 1] = { sig = sig, body = body }
end
local threads, thread_index = $THREADS, 0
function setup(thread)
  thread:set("offset", thread_index)
  thread_index = thread_index + 1
end
local n = 0
function request()
  local r = requests[(offset + n * threads) % #requests + 1]
  n = n + 1
  return wrk.format("POST", "/api/v1/avatar/status_update",
    { ["Content-Type"] = "application/json", ["X-Signature"] = "sha256=" .. r.sig }, r.body)
end
LUA

DATABASE_URL=$db_url REDIS_URL=$redis_url REDIS_KEY_PREFIX="quickload:" PORT=$PORT HOST=127.0.0.1 \
  REDIS_STATUS_TTL_SECS=120 FAL_WEBHOOK_SECRET=$SECRET LOG_LEVEL=warn "$bin" serve &
server_pid=$!
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break
  sleep 0.2
done

wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency -s "$work/signed.lua" \
  "http://127.0.0.1:$PORT/api/v1/avatar/status_update"
echo "outcomes in PostgreSQL:"
psql -q "$db_url" -c "SELECT outcome, count(*), sum(deliveries) AS deliveries FROM webhook_events GROUP BY 1"
redis-cli -u "$redis_url" del quickload:avatar:events >/dev/null
