#!/usr/bin/env bash
# Shared by the deploy scripts: settings, dry-run aware execution, compose, health waits.
# Sourced, not run.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ENV_FILE=${ENV_FILE:-$REPO_ROOT/prod.env}
# REGISTRY and TAG: the environment wins over prod.env.
env_setting() { # NAME DEFAULT
  local value=${!1:-}
  if [[ -z "$value" && -f "$ENV_FILE" ]]; then
    value=$(sed -n "s/^$1=//p" "$ENV_FILE" | tail -1)
  fi
  echo "${value:-$2}"
}
REGISTRY=$(env_setting REGISTRY localhost:5000)
TAG=$(env_setting TAG latest)
COMPOSE_FILE=${COMPOSE_FILE:-$REPO_ROOT/docker-compose.webhook.prod.yml}
COMPOSE_PROJECT=${COMPOSE_PROJECT:-aisha-webhook}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-120}
DRY_RUN=${DRY_RUN:-0}
# shellcheck disable=SC2034 # used by the scripts that source this file
API_SERVICES=(aisha-webhook-api-1 aisha-webhook-api-2)
# shellcheck disable=SC2034
NGINX_SERVICE=aisha-nginx-webhook

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# The flags of the build-and-deploy scripts; the caller defines `usage`.
# shellcheck disable=SC2034 # BUILD and PULL are read by the scripts that source this file
BUILD=1
# shellcheck disable=SC2034
PULL=1
# shellcheck disable=SC2034
parse_flags() {
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      --no-build) BUILD=0 ;;
      --no-pull) PULL=0 ;;
      -h|--help) usage; exit 0 ;;
      *) usage; die "unknown argument $arg" ;;
    esac
  done
}
die() { log "ERROR: $*"; exit 1; }

# Runs a command, or only shows it with --dry-run.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "dry-run: $*" >&2
  else
    "$@"
  fi
}

compose() { # compose with the cluster's project, env file and TAG
  run env TAG="$TAG" REGISTRY="$REGISTRY" ENV_FILE="$ENV_FILE" docker-compose -p "$COMPOSE_PROJECT" \
    --env-file "$ENV_FILE" -f "$COMPOSE_FILE" "$@"
}

version() { sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_ROOT/services/webhook-api/Cargo.toml" | head -1; }
git_revision() { git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown; }

# Builds both images, tagged $TAG, the version, the git revision and latest.
# BUILD_ARGS (space-separated KEY=VALUE) reach both builds, e.g. base images;
# API_BUILD_TARGET=prebuilt uses dist/webhook-api instead of compiling in the image.
build_images() {
  local rev ver args=()
  rev=$(git_revision)
  ver=$(version)
  for arg in ${BUILD_ARGS:-}; do args+=(--build-arg "$arg"); done
  local api_target=()
  [[ -n "${API_BUILD_TARGET:-}" ]] && api_target=(--target "$API_BUILD_TARGET")
  for image in webhook-api nginx-webhook; do
    local dockerfile=$REPO_ROOT/docker/webhook-api/Dockerfile target=("${api_target[@]}")
    if [[ $image == nginx-webhook ]]; then dockerfile=$REPO_ROOT/docker/nginx/Dockerfile; target=(); fi
    log "building $REGISTRY/$image:$TAG ($ver, $rev)"
    run docker build "${args[@]}" "${target[@]}" \
      --build-arg "VERSION=$ver" --build-arg "GIT_REVISION=$rev" --build-arg "IMAGE_TAG=$TAG" \
      -f "$dockerfile" \
      -t "$REGISTRY/$image:$TAG" -t "$REGISTRY/$image:$ver" -t "$REGISTRY/$image:$rev" \
      -t "$REGISTRY/$image:latest" "$REPO_ROOT"
  done
}

push_images() {
  local rev ver
  rev=$(git_revision)
  ver=$(version)
  for image in webhook-api nginx-webhook; do
    for tag in "$TAG" "$ver" "$rev" latest; do
      run docker push "$REGISTRY/$image:$tag" >/dev/null
    done
    log "pushed $REGISTRY/$image ($TAG, $ver, $rev, latest)"
  done
}

container_health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null || echo missing; }

# Waits until the container's own health check says healthy; on failure shows its logs.
wait_healthy() { # CONTAINER
  [[ "$DRY_RUN" == 1 ]] && { echo "dry-run: wait until $1 is healthy" >&2; return 0; }
  local deadline=$((SECONDS + HEALTH_TIMEOUT)) state
  while ((SECONDS < deadline)); do
    state=$(container_health "$1")
    [[ "$state" == healthy ]] && { log "$1 healthy"; return 0; }
    [[ "$state" == unhealthy || "$state" == exited || "$state" == dead ]] && break
    sleep 2
  done
  log "$1 is not healthy (state: $(container_health "$1")); its last log lines:"
  docker logs --tail 50 "$1" >&2 || true
  return 1
}

# GET URL until 200 within HEALTH_TIMEOUT seconds.
wait_http() { # URL
  [[ "$DRY_RUN" == 1 ]] && { echo "dry-run: wait for $1" >&2; return 0; }
  local deadline=$((SECONDS + HEALTH_TIMEOUT))
  until curl -fsk -o /dev/null --max-time 5 "$1"; do
    ((SECONDS < deadline)) || { log "$1 did not answer 200 within ${HEALTH_TIMEOUT}s"; return 1; }
    sleep 2
  done
  log "$1 answers"
}
