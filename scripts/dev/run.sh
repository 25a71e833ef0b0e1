#!/usr/bin/env bash
# Runs one webhook-api instance on this machine, with its local PostgreSQL and Redis.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/dev/run.sh [--help]

Starts PostgreSQL, Redis and the S3 server (scripts/dev/deps.sh), then builds and runs webhook-api.
Settings (environment, defaults shown; any variable of prod.env.example is passed on):
  PORT=${PORT:-8000}                         HTTP port
  ENVIRONMENT=${ENVIRONMENT:-development}
  FAL_WEBHOOK_SECRET=<development default>   HMAC secret(s), comma-separated; set your own
  FAL_JWKS_URL=<FAL's>                       use file:///path/jwks.json offline
  MINIO_BUCKET_NAME=${MINIO_BUCKET_NAME:-aisha-avatars}         bucket for trained files
  LOG_LEVEL=${LOG_LEVEL:-info}
  CARGO_PROFILE=${CARGO_PROFILE:-release}    cargo profile to build with
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

cd "$(dirname "$0")/../.."
deps_env=$(scripts/dev/deps.sh)
export DATABASE_URL=${DATABASE_URL:-$(sed -n 's/^DATABASE_URL=//p' <<<"$deps_env")}
export REDIS_URL=${REDIS_URL:-$(sed -n 's/^REDIS_URL=//p' <<<"$deps_env")}
export MINIO_ENDPOINT=${MINIO_ENDPOINT:-$(sed -n 's/^MINIO_ENDPOINT=//p' <<<"$deps_env")}
export MINIO_ACCESS_KEY=${MINIO_ACCESS_KEY:-$(sed -n 's/^MINIO_ACCESS_KEY=//p' <<<"$deps_env")}
export MINIO_SECRET_KEY=${MINIO_SECRET_KEY:-$(sed -n 's/^MINIO_SECRET_KEY=//p' <<<"$deps_env")}
export MINIO_BUCKET_NAME=${MINIO_BUCKET_NAME:-aisha-avatars}
export PORT=${PORT:-8000}
export ENVIRONMENT=${ENVIRONMENT:-development}
export LOG_LEVEL=${LOG_LEVEL:-info}
# A fixed secret is fine for a local run only; production takes it from prod.env.
export FAL_WEBHOOK_SECRET=${FAL_WEBHOOK_SECRET:-local-development-secret}
exec cargo run --profile "${CARGO_PROFILE:-release}" -p webhook-api -- serve
