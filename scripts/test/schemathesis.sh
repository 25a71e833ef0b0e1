#!/usr/bin/env bash
# Schemathesis against a live instance: requests generated from services/webhook-api/openapi.json
# (its examples, then boundary and negative values, random ones, and stateful sequences through
# the document's links), every answer checked against the document (status codes, headers,
# content types, schemas), no 5xx, none slower than the bound. The webhook routes' bodies are
# signed as the senders sign them (scripts/test/schemathesis_hooks.py).
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/test/schemathesis.sh [--help] [-- SCHEMATHESIS_RUN_ARGS...]

Starts PostgreSQL, Redis and the S3 server (scripts/dev/deps.sh), a fresh database with the
bot's live schema and a few avatars in training, and one release instance on a free port with
an operator token, a Standard Webhooks and a GitHub source, and a local FAL JWKS; then runs schemathesis on it.
Settings (environment, defaults shown):
  SCHEMATHESIS_VENV=${SCHEMATHESIS_VENV:-\$HOME/.cache/webhook-schemathesis-venv}  where schemathesis is installed
  MAX_EXAMPLES=${MAX_EXAMPLES:-200}      test cases per operation and phase
  MAX_RESPONSE_TIME=${MAX_RESPONSE_TIME:-2}   seconds; a slower answer fails the run
  MIN_REQUESTS=${MIN_REQUESTS:-2000}    fewer requests sent than this fails the run
  OUT=<a temporary directory>  the instance's log and schemathesis' reports
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --) shift ;;
esac

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
log() { echo "schemathesis: $*" >&2; }

SCHEMATHESIS_VERSION=4.32.5
venv=${SCHEMATHESIS_VENV:-$HOME/.cache/webhook-schemathesis-venv}
VALIDATOR_VERSION=0.7.2
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION" ||
  ! "$venv/bin/python" -c 'import cryptography, openapi_spec_validator' 2>/dev/null; then
  log "installing schemathesis $SCHEMATHESIS_VERSION and openapi-spec-validator into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" \
    "openapi-spec-validator==$VALIDATOR_VERSION" "cryptography>=42"
fi

# DATABASE_URL (the admin's), REDIS_URL and the MINIO_* the instance reads.
while IFS= read -r setting; do export "${setting?}"; done < <(scripts/dev/deps.sh)
admin_url=$DATABASE_URL

cargo build --release --locked -q -p webhook-api
api_bin="${CARGO_TARGET_DIR:-$repo/target}/release/webhook-api"

work=$(mktemp -d)
OUT=${OUT:-$work}
mkdir -p "$OUT"
db="schemathesis_$$"
instance_pid=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  if [[ -n "$instance_pid" ]]; then kill "$instance_pid" 2>/dev/null || true; wait "$instance_pid" 2>/dev/null || true; fi
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Made up here, for this run only.
fal_secret=$(openssl rand -hex 24)
standard_secret="whsec_$(openssl rand -base64 24)"
github_secret=$(openssl rand -hex 24)
operator_token=$(openssl rand -hex 24)
"$venv/bin/python" - "$work" <<'PY'
import base64, json, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
key = Ed25519PrivateKey.generate()
with open(f"{sys.argv[1]}/fal-key.pem", "wb") as out:
    out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
x = base64.urlsafe_b64encode(public).rstrip(b"=").decode()
with open(f"{sys.argv[1]}/jwks.json", "w") as out:
    json.dump({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "schemathesis"}]}, out)
PY

log "database $db: the bot's live schema, avatars in training for the document's examples"
psql -q "$admin_url" -c "CREATE DATABASE $db" >/dev/null
db_url="${admin_url%/*}/$db"
psql -q -v ON_ERROR_STOP=1 "$db_url" -f services/webhook-api/tests/fixtures/bot/live_schema.sql >/dev/null
psql -q -v ON_ERROR_STOP=1 "$db_url" >/dev/null <<'SQL'
INSERT INTO users (id, telegram_id, first_name, language_code, is_bot, is_blocked, created_at, updated_at)
VALUES ('00000000-0000-4000-8000-000000000001', 'schemathesis', 'Schemathesis', 'en', false, false, now(), now());
INSERT INTO avatars (id, user_id, name, gender, avatar_type, status, training_progress, fal_mode,
  fal_iterations, fal_priority, trigger_word, lora_rank, avatar_data, training_config,
  photos_count, generations_count, created_at, updated_at, training_type, fal_request_id)
SELECT avatar_id, '00000000-0000-4000-8000-000000000001', 'st', 'FEMALE', 'CHARACTER',
  'TRAINING', 0, 'character', 500, 'QUALITY', 'TOK', 32, '{}', '{}', 0, 0, now(), now(),
  'PORTRAIT', request_id
FROM (VALUES
  -- the avatar_id example of GET /api/v1/avatar/{avatar_id}/status
  ('0b8e5a4e-7c1f-4a8e-9a36-3f1d2b6c9e01'::uuid, 'a6823810-a615-4ac8-aca3-5d2546aa81b8'),
  (gen_random_uuid(), '123e4567-e89b-12d3-a456-426614174000'),
  (gen_random_uuid(), 'test-123')) AS seeded (avatar_id, request_id);
SQL

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Schemathesis sends thousands of calls without a valid token on purpose: the per-address and
# per-token limits (whose 429 the document lists) are raised so they do not end the run early.
OPERATOR_REFUSALS_PER_MINUTE=10000 REPLAYS_PER_MINUTE=100000 DATABASE_URL=$db_url REDIS_KEY_PREFIX="schemathesis:$$:" \
  MINIO_BUCKET_NAME=schemathesis HOST=127.0.0.1 PORT=$port INSTANCE_ID=schemathesis \
  ENVIRONMENT=test LOG_LEVEL=info FILE_WORKERS=0 \
  FAL_WEBHOOK_SECRET=$fal_secret FAL_JWKS_URL="file://$work/jwks.json" \
  WEBHOOK_SOURCES=billing:standard,github:github WEBHOOK_SOURCE_BILLING_SECRETS=$standard_secret \
  WEBHOOK_SOURCE_GITHUB_SECRETS=$github_secret \
  OPERATOR_TOKENS="schemathesis:read+replay+deploy:$operator_token" SPOOL_DIR="$work/spool" \
  "$api_bin" serve >"$OUT/instance.log" 2>&1 &
instance_pid=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" || { tail "$OUT/instance.log" >&2; exit 1; }

log "the served document is valid OpenAPI 3.1 (openapi-spec-validator)"
curl -fsS "http://127.0.0.1:$port/openapi.json" -o "$OUT/openapi.json"
cmp -s "$OUT/openapi.json" services/webhook-api/openapi.json || { log "FAILED: /openapi.json differs from services/webhook-api/openapi.json"; exit 1; }
"$venv/bin/openapi-spec-validator" "$OUT/openapi.json"

log "running on http://127.0.0.1:$port (report: $OUT)"
status=0
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$repo/scripts/test" \
  SCHEMATHESIS_FAL_SECRET=$fal_secret SCHEMATHESIS_FAL_KEY="$work/fal-key.pem" \
  SCHEMATHESIS_STANDARD_SOURCE="billing:$standard_secret" \
  SCHEMATHESIS_GITHUB_SOURCE="github:$github_secret" \
  "$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --url "http://127.0.0.1:$port" \
  --header "Authorization: Bearer $operator_token" \
  --checks all --max-examples "${MAX_EXAMPLES:-200}" --seed 20261130 \
  --max-response-time "${MAX_RESPONSE_TIME:-2}" --workers 1 \
  --report junit,ndjson --report-dir "$OUT" --output-sanitize true \
  "$@" || status=$?

if ! kill -0 "$instance_pid" 2>/dev/null; then
  log "FAILED: the instance exited during the run"; tail "$OUT/instance.log" >&2; exit 1
fi
# Every delivery stored during the run reads back (what schemathesis could reach only by id).
unreadable=0
for id in $(psql -qAtX "$db_url" -c "SELECT id FROM webhook_events ORDER BY id"); do
  code=$(curl -s -o "$OUT/event.json" -w '%{http_code}' -H "Authorization: Bearer $operator_token" \
    "http://127.0.0.1:$port/api/v1/webhooks/events/$id")
  if [[ "$code" != 200 ]]; then
    log "event $id answered $code: $(head -c 300 "$OUT/event.json")"; unreadable=$((unreadable + 1))
  fi
done
if ((unreadable > 0)); then log "FAILED: $unreadable stored deliveries do not read back"; status=1; fi

# What the instance itself counted (this script's own readiness and metrics calls aside).
requests=$(curl -fsS -H "Authorization: Bearer $operator_token" "http://127.0.0.1:$port/metrics" |
  awk '/^webhook_http_requests_total\{/ { sum += $NF } END { printf "%d", sum }')
log "$requests requests answered; schemathesis exit status $status"
if ((status == 0 && requests < ${MIN_REQUESTS:-2000})); then
  log "FAILED: fewer than ${MIN_REQUESTS:-2000} requests (raise MAX_EXAMPLES)"; status=1
fi
exit "$status"
