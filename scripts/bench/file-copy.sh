#!/usr/bin/env bash
# Copy throughput and memory of the file worker on one large file, against a plain sequential
# baseline measured in the same run: curl downloads the same bytes, the AWS CLI uploads them.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/bench/file-copy.sh [--help]

Serves a random file over HTTP on loopback (standing in for FAL's CDN), has one release
webhook-api instance copy it into the local S3 server through a signed completion, and reports
seconds, MB/s and the instance's RSS (idle, and peak while copying); then times the baseline.
Settings (environment, defaults shown):
  SIZE_MB=${SIZE_MB:-200}        size of the file
  PORT=${PORT:-18500}          port of the instance
  CDN_PORT=${CDN_PORT:-18501}      port of the file server
Installs the AWS CLI into a virtualenv under \$TMPDIR the first time (PyPI).
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

SIZE_MB=${SIZE_MB:-200}
PORT=${PORT:-18500}
CDN_PORT=${CDN_PORT:-18501}
SECRET=file-copy-bench-secret
BUCKET=bench-copy

cd "$(dirname "$0")/../.."
deps_env=$(scripts/dev/deps.sh)
while IFS= read -r line; do export "${line?}"; done <<<"$deps_env"
admin_url=$DATABASE_URL
db="filecopy_$$"
export DATABASE_URL="${admin_url%/*}/$db"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "file-copy: $*" >&2; }

cargo build --release -q -p webhook-api -p webhook-loadgen
bin="${CARGO_TARGET_DIR:-target}/release/webhook-api"
loadgen="${CARGO_TARGET_DIR:-target}/release/webhook-loadgen"
psql -q "$admin_url" -c "CREATE DATABASE $db" >/dev/null

log "writing ${SIZE_MB} MB of random bytes"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom >"$work/lora.safetensors"
size=$(stat -c %s "$work/lora.safetensors")
expected_sha=$(sha256sum "$work/lora.safetensors" | cut -d' ' -f1)
(cd "$work" && exec python3 -m http.server "$CDN_PORT" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)

MINIO_BUCKET_NAME=$BUCKET REDIS_KEY_PREFIX="filecopy:" PORT=$PORT HOST=127.0.0.1 \
  ENVIRONMENT=development FILE_ALLOW_HTTP=true FILE_ALLOW_PRIVATE_ADDRESSES=true \
  FILE_HOST_ALLOWLIST=127.0.0.1 FILE_ALLOWED_PORTS=$CDN_PORT FILE_WORKERS=1 \
  FAL_WEBHOOK_SECRET=$SECRET LOG_LEVEL=warn "$bin" serve &
server=$!
pids+=("$server")
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 2
rss_kib() { awk -v f="$1" '$1 == f":" {print $2}' "/proc/$server/status"; }
idle_rss=$(rss_kib VmRSS)

avatar=$(psql -qtA "$DATABASE_URL" -c "INSERT INTO avatars (user_id, name, status, fal_request_id)
  VALUES (gen_random_uuid(), 'bench', 'TRAINING', 'bench-copy-1') RETURNING id" | head -1)
body=$(printf '{"request_id":"{request_id}","status":"OK","error":null,"payload":{"diffusers_lora_file":{"url":"http://127.0.0.1:%s/lora.safetensors","file_name":"pytorch_lora_weights.safetensors","file_size":%s}}}' "$CDN_PORT" "$size")
answer=$(WEBHOOK_SECRET=$SECRET "$loadgen" deliver "http://127.0.0.1:$PORT/api/v1/avatar/status_update" \
  --prefix bench-copy- --body "$body")
[[ $answer == *'"results":{"applied":1}'* ]] || { log "the completion was not applied: $answer"; exit 1; }

peak_rss=$idle_rss
state=""
for _ in $(seq 1 6000); do
  rss=$(rss_kib VmRSS)
  ((rss > peak_rss)) && peak_rss=$rss
  state=$(psql -qtA "$DATABASE_URL" -c "SELECT state FROM file_jobs WHERE avatar_id = '$avatar'")
  [[ "$state" == "done" || "$state" == failed || "$state" == dead ]] && break
  sleep 0.05
done
[[ "$state" == "done" ]] || { log "job ended $state: $(psql -qtA "$DATABASE_URL" -c "SELECT last_error FROM file_jobs")"; exit 1; }
copy_secs=$(psql -qtA "$DATABASE_URL" -c "SELECT EXTRACT(EPOCH FROM finished_at - created_at) FROM file_jobs WHERE avatar_id = '$avatar'")
stored_sha=$(psql -qtA "$DATABASE_URL" -c "SELECT sha256 FROM avatar_files WHERE avatar_id = '$avatar'")
[[ "$stored_sha" == "$expected_sha" ]] || { log "sha256 mismatch: $stored_sha vs $expected_sha"; exit 1; }

log "baseline: curl download, then AWS CLI upload of the same bytes"
venv="${TMPDIR:-/tmp}/webhook-bench-awscli"
[[ -x "$venv/bin/aws" ]] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q awscli; }
export AWS_ACCESS_KEY_ID=$MINIO_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$MINIO_SECRET_KEY AWS_DEFAULT_REGION=us-east-1
export AWS_REQUEST_CHECKSUM_CALCULATION=when_required AWS_RESPONSE_CHECKSUM_VALIDATION=when_required
start=$(date +%s.%N)
curl -fsS -o "$work/baseline.bin" "http://127.0.0.1:$CDN_PORT/lora.safetensors"
"$venv/bin/aws" --endpoint-url "http://$MINIO_ENDPOINT" s3 cp --only-show-errors \
  "$work/baseline.bin" "s3://$BUCKET/baseline/lora.safetensors"
baseline_secs=$(echo "$(date +%s.%N) - $start" | bc -l)

mb=$(echo "$size / 1000000" | bc -l)
printf '\n%-40s %10s %10s\n' "copy of ${SIZE_MB} MiB (CDN -> S3)" "seconds" "MB/s"
printf '%-40s %10.2f %10.1f\n' "webhook-api file worker (streamed)" "$copy_secs" "$(echo "$mb / $copy_secs" | bc -l)"
printf '%-40s %10.2f %10.1f\n' "baseline: curl, then aws s3 cp" "$baseline_secs" "$(echo "$mb / $baseline_secs" | bc -l)"
printf 'ratio (worker throughput / baseline): %.2f\n' "$(echo "$baseline_secs / $copy_secs" | bc -l)"
printf 'instance RSS: idle %.1f MiB, peak while copying %.1f MiB (+%.1f MiB)\n' \
  "$(echo "$idle_rss / 1024" | bc -l)" "$(echo "$peak_rss / 1024" | bc -l)" "$(echo "($peak_rss - $idle_rss) / 1024" | bc -l)"
