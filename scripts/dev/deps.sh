#!/usr/bin/env bash
# Installs (Debian packages and crates, when missing) and starts the local dependencies of the
# service: PostgreSQL 15, Redis and an S3 server (s3s-fs), on loopback; and nginx for the local
# cluster. Idempotent.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/dev/deps.sh [--help]

Installs and starts PostgreSQL, Redis and an S3-compatible server (s3s-fs, which checks
SigV4 signatures) for local runs and tests, then prints the environment to use them.
Settings (environment, defaults shown):
  PG_VERSION=${PG_VERSION:-15}        PostgreSQL major version (Debian package postgresql-\$PG_VERSION)
  PG_PORT=${PG_PORT:-5432}            port of the local cluster
  DEV_DB_USER=${DEV_DB_USER:-webhook}        role created for the service and tests (CREATEDB)
  DEV_DB_PASSWORD=${DEV_DB_PASSWORD:-webhook}    its password (local development only)
  REDIS_PORT=${REDIS_PORT:-6379}         port of the local Redis
  S3_PORT=${S3_PORT:-9000}            port of the local S3 server
  S3_DATA_DIR=${S3_DATA_DIR:-/var/tmp/webhook-dev-s3}   where it keeps objects
  S3_ACCESS_KEY=${S3_ACCESS_KEY:-devaccess} / S3_SECRET_KEY=${S3_SECRET_KEY:-devsecretkey}   its credentials
Needs root (or sudo) only to install packages and start PostgreSQL.
USAGE
}
[[ "${1:-}" == "--help" || "${1:-}" == "-h" ]] && { usage; exit 0; }

PG_VERSION=${PG_VERSION:-15}
PG_PORT=${PG_PORT:-5432}
DEV_DB_USER=${DEV_DB_USER:-webhook}
DEV_DB_PASSWORD=${DEV_DB_PASSWORD:-webhook}
REDIS_PORT=${REDIS_PORT:-6379}
S3_PORT=${S3_PORT:-9000}
S3_DATA_DIR=${S3_DATA_DIR:-/var/tmp/webhook-dev-s3}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-devaccess}
S3_SECRET_KEY=${S3_SECRET_KEY:-devsecretkey}
S3S_VERSION=0.14.1   # later versions need a newer Rust than this toolchain

SUDO=()
AS_POSTGRES=(runuser -u postgres --)
if [[ $(id -u) -ne 0 ]]; then
  SUDO=(sudo)
  AS_POSTGRES=(sudo -u postgres)
fi

log() { echo "deps: $*" >&2; }

missing=()
command -v "/usr/lib/postgresql/$PG_VERSION/bin/postgres" >/dev/null 2>&1 || missing+=("postgresql-$PG_VERSION")
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v envsubst >/dev/null 2>&1 || missing+=(gettext-base)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package starts a default nginx on port 80; the cluster runs its own.
  if [[ " ${missing[*]} " == *" nginx-light "* ]]; then "${SUDO[@]}" service nginx stop >/dev/null 2>&1 || true; fi
fi

if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main"' | grep -q .; then
  log "creating PostgreSQL cluster $PG_VERSION/main"
  "${SUDO[@]}" pg_createcluster "$PG_VERSION" main --port "$PG_PORT" >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
  log "starting PostgreSQL $PG_VERSION/main"
  "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
  sleep 1
done
pg_isready -q -h 127.0.0.1 -p "$PG_PORT" || { log "PostgreSQL did not come up on port $PG_PORT"; exit 1; }

# Role for the service and the tests; CREATEDB so each test gets its own database.
"${AS_POSTGRES[@]}" psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 \
  -v user="$DEV_DB_USER" -v password="$DEV_DB_PASSWORD" <<'SQL' >/dev/null
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'user', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'user', :'user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'user') \gexec
SQL

# A test drops its database while one of its connections may be half-way through
# authentication (the test's runtime has stopped): DROP DATABASE waits for that backend until
# authentication_timeout, 60 s by default.
"${AS_POSTGRES[@]}" psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 \
  -c "ALTER SYSTEM SET authentication_timeout = '5s'" -c "SELECT pg_reload_conf()" >/dev/null

if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null
  for _ in $(seq 1 20); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v s3s-fs >/dev/null 2>&1; then
  log "installing s3s-fs $S3S_VERSION (cargo install, about 2 minutes)"
  cargo install --quiet --locked "s3s-fs@$S3S_VERSION" --features binary >&2
fi
if ! curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/"; then
  log "starting s3s-fs on 127.0.0.1:$S3_PORT ($S3_DATA_DIR)"
  mkdir -p "$S3_DATA_DIR"
  nohup setsid s3s-fs --host 127.0.0.1 --port "$S3_PORT" \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$S3_DATA_DIR" \
    >"$S3_DATA_DIR.log" 2>&1 </dev/null &
  for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break; sleep 0.1; done
  curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" || { log "s3s-fs did not start: see $S3_DATA_DIR.log"; exit 1; }
fi

cat <<ENV
DATABASE_URL=postgresql://$DEV_DB_USER:$DEV_DB_PASSWORD@127.0.0.1:$PG_PORT/$DEV_DB_USER
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
MINIO_ENDPOINT=127.0.0.1:$S3_PORT
MINIO_ACCESS_KEY=$S3_ACCESS_KEY
MINIO_SECRET_KEY=$S3_SECRET_KEY
ENV
