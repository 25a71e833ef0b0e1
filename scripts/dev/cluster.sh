#!/usr/bin/env bash
# The whole cluster on this machine without containers: PostgreSQL, Redis, the S3 server, two
# webhook-api instances and nginx with the production configuration (rendered for local paths,
# unprivileged ports and a self-signed certificate).
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/dev/cluster.sh up|env|down|status|logs [NAME]|stop-api N [SIGNAL]|start-api N

  up            start everything (builds the release binary unless WEBHOOK_API_BIN is set)
  env           write CLUSTER_DIR/api.env, the instances' environment, as up does; start nothing
  down          stop the instances and nginx (PostgreSQL, Redis, S3 keep running)
  status        health of each part
  logs [NAME]   follow the logs: api-1, api-2, nginx (access log); all when omitted
  stop-api N    send SIGNAL (default TERM) to instance N (1 or 2) and wait until it exits
  start-api N   start instance N again

Settings (environment, defaults shown):
  CLUSTER_DIR=${CLUSTER_DIR:-/var/tmp/webhook-cluster}   state: config, certificate, logs, pids
  API_PORT_1=${API_PORT_1:-8001}  API_PORT_2=${API_PORT_2:-8002}
  NGINX_HTTP_PORT=${NGINX_HTTP_PORT:-8080}  NGINX_HTTPS_PORT=${NGINX_HTTPS_PORT:-9443}  NGINX_WEBHOOK_PORT=${NGINX_WEBHOOK_PORT:-8443}
  NGINX_CONSOLE_PORT=${NGINX_CONSOLE_PORT:-9444}   the operators' console (https://localhost:9444/console/)
  CLUSTER_DB=${CLUSTER_DB:-webhook_cluster}        database (created when missing)
  INSTANCE_PREFIX=${INSTANCE_PREFIX:-}            prefix of the instances' INSTANCE_ID (api-1, api-2)
  MINIO_BUCKET_NAME=${MINIO_BUCKET_NAME:-cluster-avatars}  ENVIRONMENT=${ENVIRONMENT:-development}  LOG_LEVEL=${LOG_LEVEL:-info}
  FAL_WEBHOOK_SECRET=<development default>   HMAC secret of the callbacks
  WEBHOOK_RATE_LIMIT=${WEBHOOK_RATE_LIMIT:-50r/s}  WEBHOOK_RATE_BURST=${WEBHOOK_RATE_BURST:-100}
  WEBHOOK_API_BIN=<cargo release build>       the binary to run
  OPERATOR_TOKENS=   more operators' tokens (name:scope+scope:token); the cluster's own, with every
                     scope, is made once in CLUSTER_DIR/operator.token
Every other variable of prod.env.example set here reaches the instances (the local
PostgreSQL, Redis and S3 server's addresses and keys come from scripts/dev/deps.sh).
USAGE
}

CLUSTER_DIR=${CLUSTER_DIR:-/var/tmp/webhook-cluster}
API_PORT_1=${API_PORT_1:-8001}
API_PORT_2=${API_PORT_2:-8002}
export NGINX_HTTP_PORT=${NGINX_HTTP_PORT:-8080}
export NGINX_HTTPS_PORT=${NGINX_HTTPS_PORT:-9443}
export NGINX_WEBHOOK_PORT=${NGINX_WEBHOOK_PORT:-8443}
export NGINX_CONSOLE_PORT=${NGINX_CONSOLE_PORT:-9444}
CLUSTER_DB=${CLUSTER_DB:-webhook_cluster}

repo=$(cd "$(dirname "$0")/../.." && pwd)
log() { echo "cluster: $*" >&2; }
api_port() { if [[ $1 == 1 ]]; then echo "$API_PORT_1"; else echo "$API_PORT_2"; fi; }
pid_of() { cat "$CLUSTER_DIR/$1.pid" 2>/dev/null || true; }
alive() { local pid; pid=$(pid_of "$1"); [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; }

wait_for() { # URL [seconds]
  local deadline=$((SECONDS + ${2:-30}))
  until curl -fsk -o /dev/null "$1"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# The cluster's own operator token (read, replay, deploy): made once, kept in CLUSTER_DIR.
entry() { printf '%s=%q\n' "$1" "$2"; } # NAME VALUE: one line of api.env, quoted for `source`
operator_get() { curl -fsS -H "Authorization: Bearer $(cat "$CLUSTER_DIR/operator.token")" "$@"; }

start_api() {
  local n=$1 port
  port=$(api_port "$n")
  if alive "api-$n"; then log "api-$n already running"; return; fi
  local instance="${INSTANCE_PREFIX:-}api-$n"
  # shellcheck disable=SC1091 # written by `up`
  (set -a && source "$CLUSTER_DIR/api.env" && set +a &&
    INSTANCE_ID="$instance" PORT=$port SPOOL_DIR="$CLUSTER_DIR/spool-$n" \
    exec "$(cat "$CLUSTER_DIR/api.bin")" serve) \
    >>"$CLUSTER_DIR/logs/api-$n.log" 2>&1 &
  echo $! >"$CLUSTER_DIR/api-$n.pid"
  # Ready, and really ours: a port taken by another process must not pass for this instance.
  if ! wait_for "http://127.0.0.1:$port/health/ready" 30 || ! alive "api-$n" ||
    ! operator_get "http://127.0.0.1:$port/health" | grep -q "\"instance_id\":\"$instance\""; then
    log "api-$n did not become ready on port $port; last log lines:"
    tail -20 "$CLUSTER_DIR/logs/api-$n.log" >&2
    exit 1
  fi
  log "api-$n ready on 127.0.0.1:$port"
}

# The names of prod.env.example (set or commented out there), and the per-source and _FILE
# forms of its names: every one set in this environment reaches the instances.
example_names() {
  grep -oE '^#? ?[A-Z][A-Z0-9_]*=' "$repo/prod.env.example" | tr -d '# =' | sort -u
}

# The instances' environment, CLUSTER_DIR/api.env (development secrets only; mode 600): the
# local dependencies (deps.sh) and the cluster's defaults, then every variable of
# prod.env.example set here. PORT, INSTANCE_ID and SPOOL_DIR are each instance's own.
write_env() { # DEPS_ENV DATABASE_URL
  local deps_env=$1 database_url=$2 names name line
  mkdir -p "$CLUSTER_DIR"
  umask 077
  [[ -s "$CLUSTER_DIR/operator.token" ]] || openssl rand -hex 32 >"$CLUSTER_DIR/operator.token"
  names=$(example_names)
  # Sourced with `set -a`, so every value is written quoted (%q): a DEPLOY_COMMAND with an
  # argument stays one value, not a command.
  {
    entry OPERATOR_TOKENS "cluster:read+replay+deploy:$(cat "$CLUSTER_DIR/operator.token")${OPERATOR_TOKENS:+,$OPERATOR_TOKENS}"
    entry HOST 127.0.0.1
    entry ENVIRONMENT development
    entry LOG_FORMAT json
    entry LOG_LEVEL info
    entry MINIO_BUCKET_NAME cluster-avatars
    entry FAL_WEBHOOK_SECRET local-development-secret
    entry REDIS_KEY_PREFIX aisha:
    while IFS= read -r name; do
      case "$name" in
        OPERATOR_TOKENS | PORT | INSTANCE_ID | SPOOL_DIR | DATABASE_URL | REDIS_URL | MINIO_ENDPOINT | MINIO_ACCESS_KEY | MINIO_SECRET_KEY) continue ;;
      esac
      entry "$name" "${!name}"
    done < <(compgen -e | while IFS= read -r name; do
      if grep -qx "$name" <<<"$names" || [[ "$name" =~ ^WEBHOOK_SOURCE_[A-Z0-9_]+$ ]] ||
        { [[ "$name" == *_FILE ]] && grep -qx "${name%_FILE}" <<<"$names"; }; then
        echo "$name"
      fi
    done)
    while IFS= read -r line; do entry "${line%%=*}" "${line#*=}"; done < <(grep '^REDIS_URL=\|^MINIO_' <<<"$deps_env")
    entry DATABASE_URL "$database_url"
  } >"$CLUSTER_DIR/api.env"
  umask 022
}

up() {
  mkdir -p "$CLUSTER_DIR"/{logs,tls,conf,nginx,acme}
  local deps_env
  deps_env=$("$repo/scripts/dev/deps.sh")
  if ! command -v nginx >/dev/null 2>&1; then
    log "installing nginx-light"
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y -qq nginx-light >/dev/null; else sudo apt-get install -y -qq nginx-light >/dev/null; fi
  fi
  local bin=${WEBHOOK_API_BIN:-}
  if [[ -z "$bin" ]]; then
    (cd "$repo" && cargo build --release -q -p webhook-api)
    bin="${CARGO_TARGET_DIR:-$repo/target}/release/webhook-api"
  fi
  echo "$bin" >"$CLUSTER_DIR/api.bin"

  local admin_url database_url
  admin_url=$(sed -n 's/^DATABASE_URL=//p' <<<"$deps_env")
  database_url="${admin_url%/*}/$CLUSTER_DB"
  psql -qtA "$admin_url" -c "SELECT 1 FROM pg_database WHERE datname = '$CLUSTER_DB'" | grep -q 1 ||
    psql -q "$admin_url" -c "CREATE DATABASE $CLUSTER_DB" >/dev/null

  write_env "$deps_env" "$database_url"

  if [[ ! -s "$CLUSTER_DIR/tls/fullchain.pem" ]]; then
    # A local CA and a localhost certificate it signs: clients trust tls/ca.pem.
    log "making a local CA and a certificate for localhost"
    CERT_DAYS=365 "$repo/scripts/dev/certs.sh" "$CLUSTER_DIR/tls" DNS:localhost,IP:127.0.0.1
  fi

  start_api 1
  start_api 2

  # nginx cannot raise its open-file limit past the hard limit it inherits.
  local nofile_hard
  nofile_hard=$(ulimit -Hn)
  [[ "$nofile_hard" == unlimited ]] || export NGINX_WORKER_NOFILE=${NGINX_WORKER_NOFILE:-$nofile_hard}
  WEBHOOK_UPSTREAM_1="127.0.0.1:$API_PORT_1" WEBHOOK_UPSTREAM_2="127.0.0.1:$API_PORT_2" \
    NGINX_TLS_CERT="$CLUSTER_DIR/tls/fullchain.pem" NGINX_TLS_KEY="$CLUSTER_DIR/tls/privkey.pem" \
    NGINX_LOG_DIR="$CLUSTER_DIR/logs" NGINX_STATE_DIR="$CLUSTER_DIR/nginx" \
    NGINX_PID_FILE="$CLUSTER_DIR/nginx.pid" NGINX_ACME_ROOT="$CLUSTER_DIR/acme" \
    NGINX_METRICS_ALLOW="${NGINX_METRICS_ALLOW:-10.0.0.0/8 172.16.0.0/12 192.168.0.0/16}" \
    "$repo/nginx/render.sh" "$CLUSTER_DIR/conf"
  local nginx_args=(-c "$CLUSTER_DIR/conf/nginx.conf" -p "$CLUSTER_DIR" -e "$CLUSTER_DIR/logs/error.log")
  nginx -t -q "${nginx_args[@]}"
  if alive nginx; then
    nginx "${nginx_args[@]}" -s reload
  else
    nginx "${nginx_args[@]}"
  fi
  wait_for "https://127.0.0.1:$NGINX_WEBHOOK_PORT/health" 15 || { log "nginx not answering"; exit 1; }
  log "up: https://localhost:$NGINX_WEBHOOK_PORT/api/v1/avatar/status_update (CA: $CLUSTER_DIR/tls/ca.pem)"
}

down() {
  if alive nginx; then
    nginx -c "$CLUSTER_DIR/conf/nginx.conf" -p "$CLUSTER_DIR" -e "$CLUSTER_DIR/logs/error.log" -s quit || true
  fi
  for n in 1 2; do
    if alive "api-$n"; then kill -TERM "$(pid_of "api-$n")"; fi
  done
  for _ in $(seq 1 100); do
    alive api-1 || alive api-2 || alive nginx || break
    sleep 0.2
  done
  rm -f "$CLUSTER_DIR"/api-*.pid
  log "down"
}

status() {
  local code=0
  for n in 1 2; do
    if curl -fsS -o /dev/null "http://127.0.0.1:$(api_port "$n")/health/ready"; then
      echo "api-$n: ready (pid $(pid_of "api-$n"), port $(api_port "$n"))"
    else
      echo "api-$n: DOWN"; code=1
    fi
  done
  if curl -fsSk -o /dev/null "https://127.0.0.1:$NGINX_WEBHOOK_PORT/health"; then
    echo "nginx: up (https $NGINX_HTTPS_PORT, $NGINX_WEBHOOK_PORT; http $NGINX_HTTP_PORT)"
    curl -sk "https://127.0.0.1:$NGINX_WEBHOOK_PORT/health"; echo
  else
    echo "nginx: DOWN"; code=1
  fi
  return $code
}

case "${1:-}" in
  up) up ;;
  env)
    deps_env=$("$repo/scripts/dev/deps.sh")
    admin_url=$(sed -n 's/^DATABASE_URL=//p' <<<"$deps_env")
    write_env "$deps_env" "${admin_url%/*}/$CLUSTER_DB"
    echo "$CLUSTER_DIR/api.env" ;;
  down) down ;;
  status) status ;;
  logs)
    case "${2:-all}" in
      all) tail -F "$CLUSTER_DIR"/logs/api-1.log "$CLUSTER_DIR"/logs/api-2.log "$CLUSTER_DIR"/logs/access.log ;;
      nginx) tail -F "$CLUSTER_DIR/logs/access.log" "$CLUSTER_DIR/logs/error.log" ;;
      *) tail -F "$CLUSTER_DIR/logs/$2.log" ;;
    esac ;;
  stop-api)
    [[ "${2:-}" == 1 || "${2:-}" == 2 ]] || { usage; exit 2; }
    if alive "api-$2"; then
      pid=$(pid_of "api-$2")
      kill -"${3:-TERM}" "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      if kill -0 "$pid" 2>/dev/null; then log "api-$2 (pid $pid) still running after 30 s"; exit 1; fi
    fi
    rm -f "$CLUSTER_DIR/api-$2.pid" ;;
  start-api)
    [[ "${2:-}" == 1 || "${2:-}" == 2 ]] || { usage; exit 2; }
    start_api "$2" ;;
  -h|--help) usage ;;
  *) usage; exit 2 ;;
esac
